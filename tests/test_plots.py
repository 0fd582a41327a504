"""Plots written by `results`: per-type F1, reliability diagram, threshold sweep, and
their place on the generated page."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from matplotlib.image import imread  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from spacy_bioreama.cli._util import app  # noqa: E402
from spacy_bioreama.evaluation import plots  # noqa: E402
from spacy_bioreama.evaluation.results import DEFAULT_ROWS, build_results  # noqa: E402

REQUIRED_ROWS = tuple(row for row in DEFAULT_ROWS if not row.optional)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _prf(f: float) -> dict[str, float]:
    return {"p": f, "r": f, "f": f}


CALIBRATION = {
    "none_threshold": 0.5,
    "ece": 0.3125,
    "predictions": 9,
    "bins": [
        {"lo": 0.0, "hi": 0.5, "count": 0, "confidence": None, "accuracy": None},
        {"lo": 0.5, "hi": 0.75, "count": 4, "confidence": 0.6, "accuracy": 0.25},
        {"lo": 0.75, "hi": 1.0, "count": 5, "confidence": 0.9, "accuracy": 0.6},
    ],
    "sweep": [
        {"threshold": 0.25, "p": 0.6, "r": 0.2, "f": 0.3, "predicted": 4},
        {"threshold": 0.5, "p": 0.5, "r": 0.4, "f": 0.4444, "predicted": 9},
        {"threshold": 0.75, "p": 0.3, "r": 0.5, "f": 0.375, "predicted": 15},
    ],
}


def _metrics(key: str, calibration: dict | None) -> dict:
    """Small hand-written metrics: NER per type for all but the co-occurrence floor,
    relation per type for base, tuned and the floor only."""
    metrics: dict = {"ents_f": 0.5, "rel_micro_f": 0.1, "gold_entities": {"rel_micro_f": 0.4}}
    if key != "cooccurrence":
        metrics["ents_per_type"] = {"GeneOrGeneProduct": _prf(0.8), "ChemicalEntity": _prf(0.6)}
    if key in ("base", "tuned", "cooccurrence"):
        metrics["gold_entities"]["rel_per_type"] = {
            "Association": _prf(0.5),
            "Bind": _prf(0.2),
            "Positive_Correlation": _prf(0.3),
        }
    if key == "tuned" and calibration is not None:
        metrics["gold_entities"]["calibration"] = calibration
    metrics["meta"] = {"data": "corpus/biored_dev.spacy", "documents": 3, "command": key}
    return metrics


def _rows(tmp_path: Path, calibration: dict | None = CALIBRATION):
    """DEFAULT_ROWS (the required ones) pointed at tmp metrics files."""
    rows = []
    for row in REQUIRED_ROWS:
        path = tmp_path / f"{row.key}.json"
        path.write_text(json.dumps(_metrics(row.key, calibration)))
        rows.append(replace(row, path=path))
    return tuple(rows)


def _loaded(tmp_path: Path):
    return [(row, json.loads(row.path.read_text())) for row in _rows(tmp_path)]


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width = imread(path).shape[:2]
    assert width > 300 and height > 200


def test_short_label_drops_code_and_details():
    labels = [plots.short_label(row.label) for row in REQUIRED_ROWS]
    assert labels[1] == "(b) LoRA-tuned adapter"
    assert labels[4] == "(e) spacy-llm spacy.NER.v3"
    assert all("`" not in label for label in labels)


def test_per_type_figure_has_one_bar_per_row_and_type(tmp_path):
    loaded = _loaded(tmp_path)
    fig = plots.per_type_figure(loaded)
    ner, rel = fig.axes[:2]
    # NER: 4 rows (the floor has none) x 2 types; RE: 3 rows x 3 types
    assert len(ner.patches) == 8 and len(rel.patches) == 9
    # one legend for both panels, every row that has bars in either, colour kept per row
    assert len(fig.legends[0].get_texts()) == 5
    assert ner.patches[0].get_facecolor() == rel.patches[0].get_facecolor()  # (a) in both
    assert [t.get_text() for t in rel.get_yticklabels()] == [
        "Association",
        "Bind",
        "Positive Correlation",
    ]
    assert max(p.get_width() for p in ner.patches) == pytest.approx(80.0)
    path = plots.plot_per_type_f1(loaded, tmp_path / "out" / "per_type.png")
    _assert_png(path)


def test_per_type_leaves_out_a_panel_nobody_reports(tmp_path):
    loaded = [
        (r, {k: v for k, v in m.items() if k != "gold_entities"}) for r, m in _loaded(tmp_path)
    ]
    assert len(plots.per_type_figure(loaded).axes) == 1
    with pytest.raises(ValueError, match="per-type"):
        plots.per_type_figure([(r, {}) for r, _ in loaded])


def test_reliability_figure_bars_counts_and_title(tmp_path):
    fig = plots.reliability_figure(CALIBRATION)
    ax = fig.axes[0]
    assert len(ax.patches) == 2  # the empty bin has no bar
    assert [round(p.get_height(), 2) for p in ax.patches] == [0.25, 0.6]
    assert {"n=4", "n=5"} <= {t.get_text() for t in ax.texts}
    assert len(ax.lines) == 2  # diagonal + mean-confidence dots
    assert "ECE = 0.312 (9 predictions, threshold 0.5)" in ax.get_title()
    _assert_png(plots.plot_reliability(CALIBRATION, tmp_path / "rel.png"))


def test_threshold_sweep_figure_lines_and_chosen_marker(tmp_path):
    ax = plots.threshold_sweep_figure(CALIBRATION).axes[0]
    assert len(ax.lines) == 4  # P, R, F1 and the chosen threshold's vertical line
    assert list(ax.lines[2].get_ydata()) == pytest.approx([30.0, 44.44, 37.5])
    assert list(ax.lines[3].get_xdata()) == [0.5, 0.5]
    assert any("chosen 0.5" in t.get_text() and "F1 44.4" in t.get_text() for t in ax.texts)
    _assert_png(plots.plot_threshold_sweep(CALIBRATION, tmp_path / "sweep.png"))


def test_calibration_without_threshold_is_drawn_at_one():
    calibration = {**CALIBRATION, "none_threshold": None, "ece": None}
    assert "ECE = n/a" in plots.reliability_figure(calibration).axes[0].get_title()
    ax = plots.threshold_sweep_figure(calibration).axes[0]
    assert list(ax.lines[3].get_xdata()) == [1.0, 1.0]


def test_malformed_calibration_names_the_field():
    with pytest.raises(ValueError, match=r"calibration.bins\[0\]: missing field 'confidence'"):
        plots.reliability_figure({**CALIBRATION, "bins": [{"lo": 0, "hi": 1, "count": 1}]})
    with pytest.raises(ValueError, match="missing field 'sweep'"):
        plots.threshold_sweep_figure({"none_threshold": 0.5})


def test_build_results_writes_and_links_all_three_plots(tmp_path):
    output = tmp_path / "docs" / "results.md"
    built = build_results(
        _rows(tmp_path), output, "cmd", tmp_path / "none.json", output.parent / "plots"
    )
    names = ["per_type_f1.png", "reliability.png", "threshold_sweep.png"]
    assert [p.name for p in built.plots] == names and not built.warnings
    for name in names:
        _assert_png(output.parent / "plots" / name)
        assert f"](plots/{name})" in built.page
    page = output.read_text()
    assert page.index("## Plots") < page.index("## How each row was made")
    assert "ECE = 0.312 over 9 predictions at none_threshold 0.5" in page
    assert "chosen threshold 0.5, F1 44.4" in page


def test_build_results_without_calibration_omits_those_plots(tmp_path):
    output = tmp_path / "docs" / "results.md"
    stale = output.parent / "plots" / "reliability.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(PNG_SIGNATURE)
    built = build_results(
        _rows(tmp_path, calibration=None), output, "cmd", tmp_path / "none.json", stale.parent
    )
    assert [p.name for p in built.plots] == ["per_type_f1.png"]
    assert not stale.exists()  # no longer describes these metrics
    assert "reliability.png" not in built.page and "threshold_sweep.png" not in built.page
    assert "run `evaluate` again to record calibration" in built.page


def test_build_results_without_matplotlib_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "plots_available", lambda: False)
    output = tmp_path / "results.md"
    built = build_results(_rows(tmp_path), output, "cmd", tmp_path / "x.json", tmp_path / "p")
    assert built.plots == [] and "matplotlib is not installed" in built.warnings[0]
    assert "No plots: matplotlib is not installed" in output.read_text()
    assert not (tmp_path / "p").exists()


def test_results_command_plots_option(tmp_path, monkeypatch):
    # away from the checkout: the optional rows default to metrics/*.json, which a
    # `spacy project run best` there has written (100 documents, not these 3)
    monkeypatch.chdir(tmp_path)
    rows = _rows(tmp_path)
    args = [f"--{row.key.replace('_', '-')}={row.path}" for row in rows]
    output = tmp_path / "site" / "results.md"
    base = ["results", "--output", str(output), "--benchmark", str(tmp_path / "b.json"), *args]
    result = CliRunner().invoke(app, base)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "site" / "plots" / "threshold_sweep.png").exists()
    assert "threshold_sweep.png" in result.output
    result = CliRunner().invoke(app, [*base, "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "## Plots" not in output.read_text()
