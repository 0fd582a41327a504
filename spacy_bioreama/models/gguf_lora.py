"""A PEFT LoRA adapter written as a GGUF LoRA file, for llama.cpp.

Why: llama.cpp applies LoRA adapters at run time on top of the quantised GGUF we ship,
so the llama.cpp backend (and the benchmark's llama.cpp engine) runs the very file the
Hugging Face path was converted from, plus the same adapter — no merged or re-quantised
copy whose answers would drift.

The layout is the one llama.cpp's `convert_lora_to_gguf.py` writes: `general.type =
adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and per target weight
`<gguf name>.lora_a` (rank × in) and `.lora_b` (out × rank), names mapped with gguf-py's
tensor map. llama.cpp's converter permutes the rows of query and key weights (its rotary
layout differs from Hugging Face's); the rows of `lora_b` are permuted the same way, so
`B @ A` lands on the permuted weight. Only plain LoRA on the llama architecture is
converted (DoRA, rsLoRA, biases, embeddings or saved modules are refused by name).

`gguf_lora_path` converts once into the cache directory (`gguf_lora/<digest>.gguf`,
keyed by the adapter's weights and config), so a changed adapter is never served stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

LORA_ARCHITECTURES = {"llama": "LLAMA"}
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class LoraConversionError(ValueError):
    """The adapter cannot be written as a GGUF LoRA (named reason)."""


def _permute_rows(weights: Any, n_head: int) -> Any:
    """llama.cpp's query/key row permutation (`LlamaModel.permute` in its converter)."""
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _check_config(adapter_dir: Path) -> dict:
    path = adapter_dir / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError) as err:
        raise LoraConversionError(f"{path}: cannot read the adapter config ({err})") from err
    if config.get("peft_type") != "LORA":
        raise LoraConversionError(f"{path}: peft_type {config.get('peft_type')!r} is not LORA")
    for key in ("use_dora", "use_rslora"):
        if config.get(key):
            raise LoraConversionError(f"{path}: {key} adapters are not supported by llama.cpp")
    if config.get("modules_to_save"):
        raise LoraConversionError(f"{path}: modules_to_save cannot be expressed as a LoRA")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise LoraConversionError(f"{path}: per-module ranks or alphas are not supported")
    return config


def write_gguf_lora(adapter_dir: str | os.PathLike, model_config: dict, out: Path) -> Path:
    """Write the PEFT adapter in `adapter_dir` as a GGUF LoRA file `out`.

    `model_config`: the base model's `config.json` (architecture, heads, layers)."""
    import gguf
    from safetensors.numpy import load_file

    adapter_dir = Path(adapter_dir)
    config = _check_config(adapter_dir)
    model_type = model_config.get("model_type", "")
    arch_name = LORA_ARCHITECTURES.get(model_type)
    if arch_name is None:
        raise LoraConversionError(
            f"{adapter_dir}: base model type {model_type!r} is not supported for llama.cpp "
            f"LoRA conversion (supported: {sorted(LORA_ARCHITECTURES)})"
        )
    arch = getattr(gguf.MODEL_ARCH, arch_name)
    n_head = int(model_config["num_attention_heads"])
    n_kv_head = int(model_config.get("num_key_value_heads") or n_head)
    names = gguf.get_tensor_name_map(arch, int(model_config["num_hidden_layers"]))
    tensors = load_file(str(adapter_dir / ADAPTER_WEIGHTS))

    pairs: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        for part, tag in ((".lora_A.weight", "a"), (".lora_B.weight", "b")):
            if key.endswith(part):
                base = key[: -len(part)].removeprefix("base_model.model.") + ".weight"
                pairs.setdefault(base, {})[tag] = value.astype("float32")
                break
        else:
            raise LoraConversionError(f"{adapter_dir / ADAPTER_WEIGHTS}: unsupported tensor {key}")

    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for base, ab in sorted(pairs.items()):
        if set(ab) != {"a", "b"}:
            raise LoraConversionError(f"{adapter_dir}: {base} lacks lora_A or lora_B")
        name = names.get_name(base, try_suffixes=(".weight",))
        if name is None:
            raise LoraConversionError(f"{adapter_dir}: no llama.cpp tensor for {base}")
        lora_b = ab["b"]
        if base.endswith("q_proj.weight"):
            lora_b = _permute_rows(lora_b, n_head)
        elif base.endswith("k_proj.weight"):
            lora_b = _permute_rows(lora_b, n_kv_head)
        writer.add_tensor(name + ".lora_a", ab["a"])
        writer.add_tensor(name + ".lora_b", lora_b.copy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def gguf_lora_path(adapter_dir: str | os.PathLike, model_dir: str | os.PathLike) -> Path:
    """The GGUF LoRA of `adapter_dir`, converted once into the cache directory (keyed by the
    adapter's weights and config, written atomically)."""
    from .embedded import cache_dir

    adapter_dir, model_dir = Path(adapter_dir), Path(model_dir)
    digest = hashlib.sha256()
    for name in (ADAPTER_WEIGHTS, "adapter_config.json"):
        path = adapter_dir / name
        if not path.is_file():
            raise LoraConversionError(f"{adapter_dir}: no {name}")
        digest.update(path.read_bytes())
    target = cache_dir() / "gguf_lora" / f"{digest.hexdigest()[:24]}.gguf"
    if target.is_file():
        return target
    model_config = json.loads((model_dir / "config.json").read_text(encoding="utf8"))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    try:
        write_gguf_lora(adapter_dir, model_config, Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


__all__ = ["LoraConversionError", "gguf_lora_path", "write_gguf_lora"]
