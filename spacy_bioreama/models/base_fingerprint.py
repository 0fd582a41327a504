"""Which base model an adapter was trained on, checked when it is loaded.

PEFT refuses an adapter whose tensor shapes do not fit the base model, but two models of
one architecture (SmolLM2-135M and SmolLM2-135M-Instruct, a model and its fine-tune) have
the same shapes: the adapter loads and answers garbage without a word. Training records a
fingerprint of the base model in ``training_meta.json`` (``base_model_fingerprint``);
loading compares it with the model loaded and warns, naming both, when they differ.

The fingerprint is a sha256 over the parameters that are not in a linear layer
(embeddings, norms): they are never quantised (QLoRA quantises linear layers only) and
they change in any fine-tune of the base. Values are hashed as bfloat16, so a model loaded
in float32 and the same model loaded in bfloat16 give the same fingerprint. A model whose
hashed parameters are float16 gives none (its bfloat16 rounding would differ from the
float32 original's): the check is skipped, not guessed.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

FINGERPRINT_KEY = "base_model_fingerprint"
META_FILE = "training_meta.json"


class BaseModelMismatchWarning(UserWarning):
    """An adapter is applied to a base model other than the one it was trained on."""


def base_fingerprint(model: Any) -> str | None:
    """``sha256:<hex>`` of `model`'s non-linear-layer parameters (names, shapes and
    bfloat16 values), or None when they are not all float32/bfloat16. Call it on the base
    model before any adapter wraps it (wrapping renames the parameters)."""
    import torch

    digest = hashlib.sha256()
    hashed = 0
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            continue
        for name, param in module.named_parameters(recurse=False):
            if param.dtype not in (torch.float32, torch.bfloat16):
                return None
            values = param.detach().to("cpu", torch.bfloat16).contiguous()
            digest.update(f"{module_name}.{name}{tuple(values.shape)}".encode())
            digest.update(values.view(torch.int16).numpy().tobytes())
            hashed += 1
    return f"sha256:{digest.hexdigest()}" if hashed else None


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


def check_base_model(model: Any, adapter: Path, model_name: str) -> bool:
    """Warn (`BaseModelMismatchWarning`) when `model`, the base about to receive
    `adapter`, is not the model the adapter was trained on. True when the check ran and
    the models match, False otherwise (mismatch, or nothing to compare)."""
    recorded, trained_on = recorded_fingerprint(adapter)
    if recorded is None:
        return False
    found = base_fingerprint(model)
    if found is None or found == recorded:
        return found is not None
    warnings.warn(
        f"adapter {adapter} was trained on another base model ({trained_on}) than the one "
        f"loaded ({model_name}): the weights of their embeddings and norms differ "
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
