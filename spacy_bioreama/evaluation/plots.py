"""Plots for `docs/results.md`: per-type F1, a reliability diagram and a threshold sweep.

Each figure is drawn from the metrics dicts the results page already reads, so the plots
can never disagree with the table. matplotlib is an optional extra (`pip install
spacy-bioreama[plots]`): it is imported inside the functions, on the headless Agg
backend, so the package imports without it. The `*_figure` functions build a Figure
(tests inspect its bars and lines); the `plot_*` functions save one PNG and return its path.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - only for type hints
    from matplotlib.figure import Figure

# (results.Row, metrics dict) pairs as `results.load_rows` gives them; typed loosely here
# because results.py imports this module (and not the other way round).
Rows = list[tuple[Any, dict[str, Any]]]

DPI = 110
_FONT = {"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 11, "legend.fontsize": 10}
_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3")


def plots_available() -> bool:
    """Whether matplotlib is installed (the `plots` extra)."""
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed); a clear error when the
    optional dependency is missing."""
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError("plots need matplotlib: pip install 'spacy-bioreama[plots]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(_FONT)
    return plt


def _save(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG at `path` (folders made) and free it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def short_label(label: str) -> str:
    """A row label short enough for a legend: `(b) LoRA-tuned adapter (`x`)` ->
    `(b) LoRA-tuned adapter`; code marks dropped."""
    match = re.match(r"(\([a-z]\) )?(.*)", label)
    prefix, rest = (match.group(1) or "", match.group(2)) if match else ("", label)
    rest = re.split(r", | \(", rest, maxsplit=1)[0]
    return (prefix + rest).replace("`", "").strip()


# --- per-type F1 --------------------------------------------------------------------------

PER_TYPE_PANELS = (
    ("Entity types (NER, strict mentions)", "ents_per_type"),
    ("Relation types (pair + type, gold entities)", "gold_entities/rel_per_type"),
)


def per_type_scores(rows: Rows, path: str) -> dict[str, dict[str, float]]:
    """{short row label: {type: F1}} for the rows whose metrics hold per-type scores at
    `path` ("a/b" into the dict); rows without them are left out."""
    out: dict[str, dict[str, float]] = {}
    for row, metrics in rows:
        per_type: Any = metrics
        for part in path.split("/"):
            per_type = per_type.get(part) if isinstance(per_type, dict) else None
        if not isinstance(per_type, dict) or not per_type:
            continue
        scores = {}
        for label, entry in per_type.items():
            if not isinstance(entry, dict) or "f" not in entry:
                raise ValueError(f"{row.path}: {path}/{label} has no 'f' (F1) value")
            scores[str(label)] = float(entry["f"])
        out[short_label(row.label)] = scores
    return out


def has_per_type(rows: Rows) -> bool:
    """Whether any row has per-type scores for any panel (else there is nothing to plot)."""
    return any(per_type_scores(rows, path) for _, path in PER_TYPE_PANELS)


def _bar_panel(
    ax: Any, title: str, systems: dict[str, dict[str, float]], colors: dict[str, str]
) -> None:
    """Grouped horizontal bars: one group per type, one bar per system (in row order,
    top to bottom), F1 in %; each system keeps its colour across panels."""
    types = sorted({t for scores in systems.values() for t in scores})
    height = 0.8 / len(systems)
    for i, (system, scores) in enumerate(systems.items()):
        offset = (i - (len(systems) - 1) / 2) * height
        ys = [j + offset for j, t in enumerate(types) if t in scores]
        xs = [100 * scores[t] for t in types if t in scores]
        bars = ax.barh(ys, xs, height=height, label=system, color=colors[system])
        ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=8)
    ax.set_yticks(range(len(types)), [t.replace("_", " ") for t in types])
    ax.invert_yaxis()  # first type on top
    ax.set_xlim(0, 108)
    ax.set_xlabel("F1 (%)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)


def per_type_figure(rows: Rows) -> Figure:
    """The per-type F1 figure: one panel per kind of type (entities, relations) that at
    least one row reports, one legend for all; a ValueError when no row reports any."""
    plt = _pyplot()
    panels = [(title, per_type_scores(rows, path)) for title, path in PER_TYPE_PANELS]
    panels = [(title, systems) for title, systems in panels if systems]
    if not panels:
        raise ValueError("no metrics row has per-type scores (ents_per_type, rel_per_type)")
    labels = [short_label(row.label) for row, _ in rows]
    colors = {label: _COLORS[i % len(_COLORS)] for i, label in enumerate(labels)}
    n_bars = max(
        len({t for s in systems.values() for t in s}) * len(systems) for _, systems in panels
    )
    fig, axes = plt.subplots(
        1, len(panels), figsize=(7 * len(panels), max(4.0, 0.22 * n_bars + 2)), squeeze=False
    )
    for ax, (title, systems) in zip(axes[0], panels, strict=True):
        _bar_panel(ax, title, systems, colors)
    shown = [label for label in labels if any(label in systems for _, systems in panels)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[label]) for label in shown]
    fig.suptitle("Per-type F1 by system", fontsize=14)
    fig.legend(handles, shown, loc="lower center", ncol=min(len(shown), 3), frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(shown) - 1) // 3), 1, 1))
    return fig


def plot_per_type_f1(rows: Rows, path: Path) -> Path:
    """Write the per-type F1 bars (entity and relation types) of every row that has them
    as a PNG at `path`; `rows` as `results.load_rows` gives them."""
    return _save(per_type_figure(rows), path)


# --- calibration ------------------------------------------------------------------------


def _require(calibration: Any, keys: tuple[str, ...], where: str = "calibration") -> None:
    """A ValueError naming the first missing field of the calibration block."""
    if not isinstance(calibration, dict):
        raise ValueError(f"{where}: expected an object, got {type(calibration).__name__}")
    for key in keys:
        if key not in calibration:
            raise ValueError(f"{where}: missing field '{key}'")


def effective_threshold(calibration: dict[str, Any]) -> float:
    """The none_threshold the calibration block was measured at; None (no threshold)
    behaves as 1.0, as in `calibration.calibration`."""
    value = calibration.get("none_threshold")
    return 1.0 if value is None else float(value)


def threshold_text(calibration: dict[str, Any]) -> str:
    """The threshold as shown in titles and captions ("0.5"; "none (1.0)")."""
    value = calibration.get("none_threshold")
    return "none (1.0)" if value is None else f"{float(value):g}"


def ece_text(calibration: dict[str, Any]) -> str:
    """The ECE with three decimals, or "n/a" where there were no predictions."""
    ece = calibration.get("ece")
    return "n/a" if ece is None else f"{float(ece):.3f}"


def _bins(calibration: dict[str, Any]) -> list[dict[str, Any]]:
    _require(calibration, ("none_threshold", "ece", "predictions", "bins"))
    for i, entry in enumerate(calibration["bins"]):
        _require(entry, ("lo", "hi", "count", "confidence", "accuracy"), f"calibration.bins[{i}]")
    return calibration["bins"]


def reliability_figure(calibration: dict[str, Any]) -> Figure:
    """Reliability diagram: per confidence bin, the accuracy (a bar, its count on top)
    and the mean confidence (a dot); the diagonal is perfect calibration."""
    plt = _pyplot()
    bins = [b for b in _bins(calibration) if b["count"] and b["accuracy"] is not None]
    fig, ax = plt.subplots(figsize=(6.5, 6))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    bars = ax.bar(
        [b["lo"] for b in bins],
        [b["accuracy"] for b in bins],
        width=[b["hi"] - b["lo"] for b in bins],
        align="edge",
        color=_COLORS[0],
        edgecolor="white",
        alpha=0.85,
        label="accuracy in bin",
    )
    ax.bar_label(bars, labels=[f"n={b['count']}" for b in bins], padding=2, fontsize=8)
    ax.plot(
        [(b["lo"] + b["hi"]) / 2 for b in bins],
        [b["confidence"] for b in bins],
        "o",
        color=_COLORS[3],
        label="mean confidence in bin",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence (the relation's score, as calibrated)")
    ax.set_ylabel("fraction correct (bars); mean confidence (dots)")
    ax.set_title(
        "Relation reliability (gold entities)\n"
        f"ECE = {ece_text(calibration)} ({calibration['predictions']} predictions, "
        f"threshold {threshold_text(calibration)})"
    )
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_reliability(calibration: dict[str, Any], path: Path) -> Path:
    """Write the reliability diagram of `metrics["gold_entities"]["calibration"]` as a
    PNG at `path`."""
    return _save(reliability_figure(calibration), path)


def _sweep(calibration: dict[str, Any]) -> list[dict[str, Any]]:
    _require(calibration, ("none_threshold", "sweep"))
    for i, entry in enumerate(calibration["sweep"]):
        _require(entry, ("threshold", "p", "r", "f"), f"calibration.sweep[{i}]")
    if not calibration["sweep"]:
        raise ValueError("calibration: field 'sweep' is empty")
    return sorted(calibration["sweep"], key=lambda e: e["threshold"])


def chosen_point(calibration: dict[str, Any]) -> dict[str, Any] | None:
    """The sweep entry at the chosen `none_threshold`, or None when the sweep skips it."""
    chosen = effective_threshold(calibration)
    for entry in _sweep(calibration):
        if math.isclose(float(entry["threshold"]), chosen, abs_tol=1e-9):
            return entry
    return None


def threshold_sweep_figure(calibration: dict[str, Any]) -> Figure:
    """P, R and F1 (%) of relations (pair + type, gold entities) against the
    none_threshold, the chosen threshold marked by a labelled vertical line."""
    plt = _pyplot()
    sweep = _sweep(calibration)
    xs = [e["threshold"] for e in sweep]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for key, name, style, color in (
        ("p", "precision", "s-", _COLORS[0]),
        ("r", "recall", "^-", _COLORS[1]),
        ("f", "F1", "o-", _COLORS[2]),
    ):
        width = 2.5 if key == "f" else 1.5
        ax.plot(xs, [100 * e[key] for e in sweep], style, color=color, lw=width, label=name)
    chosen = effective_threshold(calibration)
    point = chosen_point(calibration)
    text = f"chosen {threshold_text(calibration)}" + (
        f"\nF1 {100 * point['f']:.1f}" if point else ""
    )
    ax.axvline(chosen, color="black", ls=":", lw=1.5)
    left = chosen > min(xs) + 0.75 * (max(xs) - min(xs))
    ax.annotate(
        text,
        xy=(chosen, 0.97),
        xycoords=("data", "axes fraction"),
        xytext=(-6, 0) if left else (6, 0),  # keep the label inside the axes
        textcoords="offset points",
        va="top",
        ha="right" if left else "left",
        fontsize=10,
        bbox={"boxstyle": "round", "fc": "white", "ec": "grey", "alpha": 0.9},
    )
    ax.set_xlabel("none_threshold (a pair is kept when P(no relation) is below it)")
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Relations (pair + type, gold entities) vs. none_threshold")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_threshold_sweep(calibration: dict[str, Any], path: Path) -> Path:
    """Write the none_threshold sweep of `metrics["gold_entities"]["calibration"]` as a
    PNG at `path`."""
    return _save(threshold_sweep_figure(calibration), path)
