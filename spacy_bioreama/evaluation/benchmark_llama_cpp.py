"""llama.cpp beside us in `benchmark`: the engine a CPU user would otherwise pick.

Why: a speed-up over a naive loop says little until it is set against the engine users
actually choose on a CPU. llama.cpp runs the very GGUF file the embedded model ships as
(with the adapter converted to a GGUF LoRA, `models/gguf_lora`).

Two measurements, in the benchmark's process after our runs:

- **replay**: every prompt our fastest run sent to its backend (recorded, as the naive
  baseline replays them), with its limits, options and line guard, through
  `LlamaCppBackend.generate` at each batch size — llama.cpp's own batching (one
  sequence per prompt, one `llama_decode` per step over all of them, shared prefixes
  copied). Time covers generation only, like the naive baseline's. The answers are
  compared with ours: entity answers identical, relation labels identical.
- **pipe**: `nlp.pipe` with the component on the llama.cpp backend (`backend =
  "llama_cpp"`), the whole component as a user runs it; its relation prompts follow its
  own entity answers, so its prompt counts can differ from ours.

Memory: llama.cpp's RSS is the peak of the process's current RSS while it loads and
runs (sampled every 20 ms) minus the RSS before it loaded: what llama.cpp added beside
the already loaded Hugging Face model.

llama-cpp-python is an optional extra; without it the record says so and how to install.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..models.backend import Generation


@dataclass
class ReplayResult:
    """The recorded prompts answered by another backend (or the naive loop) at one batch
    size, with how many answers came out identical to ours."""

    docs: int
    seconds: float
    batch_size: int = 1
    prompts: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    free_prompts: int = 0
    free_identical: int = 0
    relation_prompts: int = 0
    relation_identical: int = 0

    @property
    def docs_per_s(self) -> float:
        """Documents per second of wall time (0 for an untimed run)."""
        return self.docs / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        per_s = 1 / self.seconds if self.seconds > 0 else 0.0
        return {
            "docs_per_s": round(self.docs * per_s, 4),
            "seconds": round(self.seconds, 3),
            "prompts": self.prompts,
            "prompt_tokens_per_s": round(self.prompt_tokens * per_s, 1),
            "generated_tokens_per_s": round(self.generated_tokens * per_s, 1),
            "free_prompts": self.free_prompts,
            "free_identical": self.free_identical,
            "relation_prompts": self.relation_prompts,
            "relation_identical": self.relation_identical,
        }


def replay(backend: Any, calls: Sequence[Any], docs: int, batch_size: int) -> ReplayResult:
    """Send every recorded call to `backend` at `batch_size`; compare with our answers."""
    backend.batch_size = batch_size
    result = ReplayResult(docs=docs, seconds=0.0, batch_size=batch_size)
    answered: list[tuple[Any, list[Generation]]] = []
    start = time.perf_counter()
    for call in calls:
        outs = backend.generate(
            call.prompts,
            max_new_tokens=call.max_new_tokens,
            choices=call.choices,
            line_guard=call.line_guard,
            copy=call.copy,
        )
        answered.append((call, outs))
    result.seconds = time.perf_counter() - start
    for call, outs in answered:
        for ours, theirs in zip(call.answers, outs, strict=True):
            result.prompts += 1
            result.prompt_tokens += theirs.prompt_tokens
            result.generated_tokens += theirs.new_tokens
            same = theirs.text == ours.text
            if call.constrained:
                result.relation_prompts += 1
                result.relation_identical += same
            else:
                result.free_prompts += 1
                result.free_identical += same
    return result


def llama_cpp_version() -> str | None:
    """The installed llama-cpp-python version, or None when it is not installed."""
    import importlib.metadata

    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


def load_llama_cpp(component: Any, max_prompt_tokens: int, batch_size: int) -> Any:
    """A `LlamaCppBackend` for the component's model and adapter (same prompt limit)."""
    from ..models.llama_cpp import LlamaCppBackend

    return LlamaCppBackend.from_pretrained(
        component.model,
        component.adapter,
        max_prompt_tokens=max_prompt_tokens,
        batch_size=batch_size,
        max_new_tokens=component.max_new_tokens,
    )


__all__ = ["ReplayResult", "llama_cpp_version", "load_llama_cpp", "replay"]
