"""What a build reports: the ``stats.json`` split statistics, the `BuildReport` the
builder returns, and the readable summary table the CLI prints (`format_stats`)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LENGTH_KINDS = ("prompt", "answer", "total")


@dataclass
class BuildReport:
    """What `build_instructions` wrote; `stats` is the content of stats.json and
    ``str(report)`` a readable table."""

    output_dir: Path
    files: dict[str, Path]
    stats: dict[str, Any]

    def examples(self, split: str = "train") -> int:
        """How many examples `split` ("train" or "dev") holds."""
        return self.stats["splits"][split]["examples"]

    def __str__(self) -> str:
        return format_stats(self.stats, self.output_dir)


def percentiles(values: Sequence[int]) -> dict[str, float]:
    """Count, mean, nearest-rank p50/p90/p99 and max of `values` (zeros when empty)."""
    if not values:
        return {"count": 0, "mean": 0.0, "p50": 0, "p90": 0, "p99": 0, "max": 0}
    ordered = sorted(values)

    def rank(q: float) -> int:  # nearest rank
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": rank(0.5),
        "p90": rank(0.9),
        "p99": rank(0.99),
        "max": ordered[-1],
    }


def split_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The statistics of one split's records: examples per task, corpus and answer
    label, and length percentiles. Reads the builder's private record fields
    (``_prompt_len``..., ``_tally``: the labels an answer without a single label lists)."""
    by_task = Counter(r["task"] for r in records)
    by_corpus = Counter(r["corpus"] for r in records)
    by_label: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        if "label" in r:
            by_label[r["task"]][r["label"]] += 1
        elif "_tally" in r:
            name, labels = r["_tally"]
            for label in labels:
                by_label[name][label] += 1
    return {
        "examples": len(records),
        "by_task": dict(sorted(by_task.items())),
        "by_corpus": dict(sorted(by_corpus.items())),
        "by_label": {
            task: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))
            for task, c in sorted(by_label.items())
        },
        "lengths": {
            kind: percentiles([r[f"_{kind}_len"] for r in records]) for kind in LENGTH_KINDS
        },
    }


def table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Lines of a text table: first column left-aligned, the others right-aligned, a
    rule under the header row."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(indent + "  ".join(cells).rstrip())
        if n == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return lines


def format_stats(stats: Mapping[str, Any], output_dir: Path | str | None = None) -> str:
    """The readable summary table of a stats.json dictionary."""
    settings = stats["settings"]
    out = [
        f"Instruction dataset{f' in {output_dir}' if output_dir else ''}: seed "
        f"{settings['seed']}, max_length {settings['max_length']} {stats['length_unit']}, "
        f"too long: {settings['too_long']}, rationale {str(settings['rationale']).lower()}"
    ]
    out += ["", "Sources:", *table(_source_rows(stats))]
    for split in ("train", "dev"):
        out += ["", *_split_lines(split, stats)]
    notes = [note for name, src in stats["sources"].items() if (note := _source_note(name, src))]
    if notes:
        out += ["", "Notes:", *notes]
    return "\n".join(out)


def _source_rows(stats: Mapping[str, Any]) -> list[list[str]]:
    rows = [["source", "task", "corpus", "docs tr/dev", "examples train", "dev", "too long"]]
    for name, src in stats["sources"].items():
        rows.append(
            [
                name,
                src["task"],
                src["corpus"],
                f"{src['docs']['train']}/{src['docs']['dev']}",
                str(src["examples"]["train"]),
                str(src["examples"]["dev"]),
                str(src["too_long"]["train"] + src["too_long"]["dev"]),
            ]
        )
    splits = stats["splits"]
    rows.append(
        [
            "total",
            "",
            "",
            "",
            str(splits["train"]["examples"]),
            str(splits["dev"]["examples"]),
            str(splits["train"]["too_long"] + splits["dev"]["too_long"]),
        ]
    )
    return rows


def _split_lines(split: str, stats: Mapping[str, Any]) -> list[str]:
    settings = stats["settings"]
    s = stats["splits"][split]
    out = [
        f"{split}: {s['examples']} examples; per task: "
        + ", ".join(f"{k} {v}" for k, v in s["by_task"].items())
        + "; per corpus: "
        + ", ".join(f"{k} {v}" for k, v in s["by_corpus"].items())
    ]
    for task, labels in s["by_label"].items():
        out.append(f"  {task} answers: " + ", ".join(f"{k} {v}" for k, v in labels.items()))
    rows = [[f"length ({stats['length_unit']})", "p50", "p90", "p99", "max", "mean"]]
    for kind in LENGTH_KINDS:
        p = s["lengths"][kind]
        rows.append(
            [kind, str(p["p50"]), str(p["p90"]), str(p["p99"]), str(p["max"]), str(p["mean"])]
        )
    out += table(rows)
    action = "dropped" if settings["too_long"] == "drop" else "kept"
    out.append(f"  longer than {settings['max_length']}: {s['too_long']} ({action})")
    return out


def _source_note(name: str, src: Mapping[str, Any]) -> str | None:
    details = []
    if src.get("train_docs_in_dev_dropped"):
        details.append(f"{src['train_docs_in_dev_dropped']} train docs also in dev dropped")
    if src.get("dev_split") and src["dev_split"] != "file":
        details.append(f"dev = {src['dev_split']}")
    if "windows" in src and src["windows"]["docs_windowed"]:
        w = src["windows"]
        details.append(f"{w['docs_windowed']} docs cut into {w['windows_of_windowed']} windows")
    if "negatives" in src:
        n = src["negatives"]
        details.append(
            f"negatives train {n['train']['kept']}/{n['train']['available']}, "
            f"dev {n['dev']['kept']}/{n['dev']['available']}"
        )
    if src.get("type_pairs"):
        details.append(f"{len(src['type_pairs'])} type pairs from train")
    for split, counts in src.get("counts", {}).items():
        for key, value in counts.items():
            if value:
                details.append(f"{split} {key.replace('_', ' ')} {value}")
    return f"  {name}: " + "; ".join(details) if details else None


__all__ = ["BuildReport", "format_stats", "percentiles", "split_stats", "table"]
