"""How scores are printed in tables and logs: one formatter, so every table agrees."""

from __future__ import annotations

from typing import Any


def interval(bounds: Any, missing: str = "") -> str:
    """A 95 % interval ``[low, high]`` in [0, 1] as ``"41.2–52.0"``; `missing` without one."""
    if not isinstance(bounds, list | tuple) or len(bounds) != 2 or None in bounds:
        return missing
    return f"{100 * float(bounds[0]):.1f}–{100 * float(bounds[1]):.1f}"


def percent(value: Any, missing: str = "–") -> str:
    """A score in [0, 1] as a percentage with one decimal (`0.4671` → `"46.7"`);
    `missing` where there is no value (a metric that does not apply)."""
    return missing if value is None else f"{100 * float(value):.1f}"
