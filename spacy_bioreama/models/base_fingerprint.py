"""Which base model an adapter was trained on, checked when it is loaded.

PEFT refuses an adapter whose tensor shapes do not fit the base model, but two models of
one architecture (SmolLM2-135M and SmolLM2-135M-Instruct, a model and its fine-tune) have
the same shapes: the adapter loads and answers garbage without a word. Training records a
fingerprint of the base model in ``training_meta.json`` (``base_model_fingerprint``);
loading compares it with the model loaded and warns, naming both, when they differ.

The fingerprint is a sha256 over the embedding matrices and the one-dimensional
parameters (norms, biases): QLoRA never quantises them, and a full fine-tune (an instruct
version of a base) changes them. A derivative that changed only linear weights (a LoRA
merged into the base) keeps them, and passes. Each tensor is hashed as bfloat16 values
with its shape, and the sorted tensor hashes are hashed again, so the fingerprint does not
depend on the dtype the model was loaded in (float32 or bfloat16), nor on module names or
their order. A model with a float16 tensor among them gives none (rounding float16 to
bfloat16 differs from rounding the float32 original), as does one with a tensor not in
memory (meta device): the check is skipped, not guessed. Take it before
``prepare_model_for_kbit_training``, which casts float16 norms to float32.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

FINGERPRINT_KEY = "base_model_fingerprint"
META_FILE = "training_meta.json"  # what training writes beside the adapter


class BaseModelMismatchWarning(UserWarning):
    """An adapter is applied to a base model other than the one it was trained on."""


def _fingerprinted(model: Any) -> list[Any]:
    """The embedding matrices and the one-dimensional parameters of `model`."""
    import torch

    tensors = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    seen = {id(t) for t in tensors}
    tensors += [p for p in model.parameters() if p.dim() == 1 and id(p) not in seen]
    return tensors


def base_fingerprint(model: Any) -> str | None:
    """``sha256:<hex>`` of `model`'s embeddings and one-dimensional parameters (shapes
    and bfloat16 values), or None when one of them is float16, quantised or not in
    memory. Call it on the base model before any adapter wraps it."""
    import torch

    hashes = []
    for param in _fingerprinted(model):
        if param.is_meta or param.dtype not in (torch.float32, torch.bfloat16):
            return None
        values = param.detach().to("cpu", torch.bfloat16).contiguous()
        digest = hashlib.sha256(str(tuple(values.shape)).encode())
        digest.update(values.view(torch.int16).numpy().tobytes())
        hashes.append(digest.hexdigest())
    if not hashes:
        return None
    return f"sha256:{hashlib.sha256(''.join(sorted(hashes)).encode()).hexdigest()}"


def recorded_fingerprint(adapter: Path) -> tuple[str | None, str]:
    """The fingerprint and base model name the adapter's training_meta.json records
    ((None, "") for an adapter from before the record, or without the file; a damaged
    file is reported where the component reads the adapter's prompts)."""
    path = adapter / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, ""
    if not isinstance(meta, dict) or not isinstance(meta.get(FINGERPRINT_KEY), str):
        return None, ""
    trained_on = meta.get("base_model_path") or meta.get("base_model") or "?"
    return meta[FINGERPRINT_KEY], str(trained_on)


def check_base_model(found: str | None, adapter: Path, model_name: str) -> bool:
    """Warn (`BaseModelMismatchWarning`) when the base model about to receive `adapter`
    (`found`: its `base_fingerprint`) is not the model the adapter was trained on. True
    when the check ran and the models match, False otherwise (mismatch, or nothing to
    compare)."""
    recorded, trained_on = recorded_fingerprint(adapter)
    if recorded is None:
        return False
    if found is None or found == recorded:
        return found is not None
    warnings.warn(
        f"adapter {adapter} was trained on another base model ({trained_on}) than the one "
        f"loaded ({model_name}): their embedding and norm weights differ "
        f"({recorded[:19]}... recorded, {found[:19]}... found), so its answers will be "
        f"wrong; load the adapter with the model it was trained on",
        BaseModelMismatchWarning,
        stacklevel=3,
    )
    return False


__all__ = [
    "FINGERPRINT_KEY",
    "BaseModelMismatchWarning",
    "base_fingerprint",
    "check_base_model",
    "recorded_fingerprint",
]
