"""The KV cache argument of a causal LM's forward pass, under the name its transformers
release expects.

transformers 5.x renamed forward's ``past_key_values`` argument (and the output field)
to ``cache``; the old name warns and is removed in 5.40. Releases before the rename only
know ``past_key_values``. Every forward call of our decoding loops goes through
`cache_kwargs` / `output_cache`, so that both kinds of release work and none warns.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

NEW_NAME = "cache"
OLD_NAME = "past_key_values"


@lru_cache(maxsize=32)
def _forward_takes_cache(model_class: type) -> bool:
    return NEW_NAME in inspect.signature(model_class.forward).parameters


def cache_argument(model: Any) -> str:
    """``"cache"`` where the model's forward takes it, else ``"past_key_values"``.
    A PEFT wrapper forwards its keyword arguments, so the wrapped model decides."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return NEW_NAME if _forward_takes_cache(type(base)) else OLD_NAME


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """The keyword arguments that pass `cache` (a transformers `Cache`) to `model`."""
    return {cache_argument(model): cache, "use_cache": True}


def output_cache(out: Any) -> Any:
    """The cache a forward pass returned (``out.cache``, or ``out.past_key_values`` on
    releases before the rename)."""
    cache = getattr(out, NEW_NAME, None)
    return cache if cache is not None else out.past_key_values


__all__ = ["cache_argument", "cache_kwargs", "output_cache"]
