"""The command line, end to end on the tiny trained model."""

import importlib.util
import json
import tarfile
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_bioreama.cli._util import DATA_DIR_ENV, app, default_data_dir
from spacy_bioreama.evaluation.calibration import pair_scores
from spacy_bioreama.evaluation.scorers import SCORER_VERSION
from tests.conftest import (
    TRAINED_TEXT,
    make_trained_gold_doc,
    trained_labels_nlp,
)

runner = CliRunner()


def _gold_docbin(tmp_path):
    nlp = spacy.blank("en")
    path = tmp_path / "gold.spacy"
    DocBin(docs=[make_trained_gold_doc(nlp)], store_user_data=True).to_disk(path)
    return path


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("convert", "annotate", "evaluate", "compare", "package", "demo"):
        assert command in result.output


def test_default_data_dir_is_shared_beside_the_checkout(monkeypatch, tmp_path):
    """Without $BIOREAMA_DATA_DIR the corpora are read from ../shared/data beside the
    checkout (where CI and the README put them), not from inside it."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    checkout = Path(__file__).resolve().parents[1]
    assert default_data_dir() == checkout.parent / "shared" / "data"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert default_data_dir() == tmp_path


def test_convert_reports_counts_and_bad_input(tmp_path):
    good = tmp_path / "gad.tsv"
    good.write_text("@GENE$ is linked to @DISEASE$.\t1\nNo link of @GENE$ with @DISEASE$.\t0\n")
    result = runner.invoke(app, ["convert", "gad", str(good), str(tmp_path / "gad.spacy")])
    assert result.exit_code == 0, result.output
    assert "documents: 2" in result.output
    docs = list(DocBin().from_disk(tmp_path / "gad.spacy").get_docs(spacy.blank("en").vocab))
    assert sorted(r.label for d in docs for r in d._.relations) == ["0", "1"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("ok @GENE$ @DISEASE$\t1\nno tab here\n")
    result = runner.invoke(app, ["convert", "gad", str(bad), str(tmp_path / "bad.spacy")])
    assert result.exit_code == 1
    assert "bad.tsv:2" in result.output
    # a folder where a file is read: one line naming it, no traceback
    result = runner.invoke(app, ["convert", "pubtator", str(tmp_path), str(tmp_path / "x.spacy")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert str(tmp_path) in result.output


def _trained_pipeline(model_dir, path):
    """A saved pipeline whose labels are the tiny trained model's (every pair allowed)."""
    trained_labels_nlp(model_dir).to_disk(path)
    return path


def test_evaluate_and_compare(tiny_trained_dir, tmp_path):
    gold = _gold_docbin(tmp_path)
    pipeline = _trained_pipeline(tiny_trained_dir, tmp_path / "pipeline")
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(gold),
            "--pipeline",
            str(pipeline),
            "--device",
            "cpu",
            "--output",
            str(tmp_path / "m.json"),
            "--markdown",
            str(tmp_path / "m.md"),
            "--predictions",
            str(tmp_path / "pred.spacy"),
            "--pair-scores",
            str(tmp_path / "pairs.spacy"),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    # the model answers its training document exactly: end to end and with gold entities
    assert metrics["ents_f"] == 1.0 and metrics["rel_micro_f"] == 1.0
    assert metrics["gold_entities"]["rel_micro_f"] == metrics["gold_entities"]["rel_pair_f"] == 1.0
    # the gold-entity run's documents keep every pair it scored: all 6 of 4 concepts
    (scored,) = DocBin().from_disk(tmp_path / "pairs.spacy").get_docs(spacy.blank("en").vocab)
    stats = metrics["gold_entities"]["run"]["stats"]
    assert len(pair_scores(scored)) == stats["re_pairs"] == 6
    assert metrics["meta"]["documents"] == 1
    # the tasks of the end-to-end run, not the gold-entity run's relations alone
    assert metrics["meta"]["tasks"] == ["entities", "relations"]
    assert metrics["meta"]["scorer_version"] == SCORER_VERSION  # results marks older files
    assert "| NER (strict mentions) |" in (tmp_path / "m.md").read_text()
    (predicted,) = DocBin().from_disk(tmp_path / "pred.spacy").get_docs(spacy.blank("en").vocab)
    assert [e.text for e in predicted.ents] == ["BRCA1", "PALB2", "breast cancer", "aspirin"]
    assert len(predicted._.relations) == 2
    result = runner.invoke(
        app,
        [
            "compare",
            str(tmp_path / "m.json"),
            str(tmp_path / "m.json"),
            "--output",
            str(tmp_path / "c.md"),
        ],
    )
    assert result.exit_code == 0, result.output
    # F1 with its bootstrap interval over documents (one document: a point)
    assert (
        "| NER F1 (strict mentions) | 100.0 (100.0–100.0) | 100.0 (100.0–100.0) |"
        in (tmp_path / "c.md").read_text()
    )
    assert metrics["intervals"]["ents_f"] == [1.0, 1.0]
    assert set(metrics["gold_entities"]["intervals"]) >= {"rel_pair_f", "rel_micro_f"}


def test_evaluate_refuses_a_bad_adapter_or_device_before_any_work(tiny_model_dir, tmp_path):
    """What fails when the model loads is a one-line error naming the cause, raised
    before any document is read, not a traceback on the first batch."""
    gold = _gold_docbin(tmp_path)
    out = tmp_path / "m.json"
    args = ["evaluate", str(gold), "--model", str(tiny_model_dir), "--output", str(out)]
    result = runner.invoke(app, [*args, "--adapter", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "adapter directory" in result.output and "nowhere" in result.output
    not_peft = tmp_path / "not_peft"
    not_peft.mkdir()
    result = runner.invoke(app, [*args, "--adapter", str(not_peft)])
    assert result.exit_code == 1 and "no adapter_config.json" in result.output
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "training_meta.json").write_text("{")
    result = runner.invoke(app, [*args, "--adapter", str(damaged)])
    assert result.exit_code == 1 and "training_meta.json: cannot read" in result.output
    result = runner.invoke(app, [*args, "--device", "gpu"])
    assert result.exit_code == 1 and "device must be" in result.output
    assert not out.exists()


def test_benchmark_llama_cpp_without_the_extra_fails_before_loading(tiny_model_dir, tmp_path):
    if importlib.util.find_spec("llama_cpp") is not None:
        pytest.skip("llama-cpp-python is installed here")
    gold = _gold_docbin(tmp_path)
    args = ["benchmark", str(gold), "--model", str(tiny_model_dir), "--llama-cpp"]
    result = runner.invoke(app, [*args, "--output", str(tmp_path / "b.json")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "--llama-cpp needs llama-cpp-python" in result.output
    assert "Loading weights" not in result.output  # refused before the model loaded


def test_adapter_of_another_base_model_is_a_clear_error(
    embedded_model_dir, tiny_adapter_dir, tmp_path
):
    """The tiny model's LoRA on the embedded SmolLM2: PEFT's page of tensor shapes
    becomes one line naming the adapter and the base model."""
    gold = _gold_docbin(tmp_path)
    args = ["evaluate", str(gold), "--model", str(embedded_model_dir)]
    result = runner.invoke(app, [*args, "--adapter", str(tiny_adapter_dir)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"adapter {tiny_adapter_dir} does not fit base model" in result.output


def test_annotate_text_lines_and_docbin(tiny_trained_dir, tmp_path):
    """`annotate` on a .txt file: one document per "\\n" line (a Unicode line separator
    inside a sentence does not split it), ids <stem>-<line>; on a DocBin with --score."""
    pipeline = _trained_pipeline(tiny_trained_dir, tmp_path / "pipeline")
    texts = tmp_path / "abstracts.txt"
    texts.write_text(f"{TRAINED_TEXT}\nNo entity here\u2028at all.\n", encoding="utf8")
    out = tmp_path / "out.spacy"
    base = ["annotate", "--pipeline", str(pipeline)]
    result = runner.invoke(app, [*base[:1], str(texts), str(out), *base[1:]])
    assert result.exit_code == 0, result.output
    docs = list(DocBin().from_disk(out).get_docs(spacy.blank("en").vocab))
    assert [d.user_data["doc_id"] for d in docs] == ["abstracts-1", "abstracts-2"]
    assert docs[1].text == "No entity here\u2028at all."
    assert [e.text for e in docs[0].ents] == ["BRCA1", "PALB2", "breast cancer", "aspirin"]
    assert len(docs[0]._.relations) == 2 and not docs[1].ents
    assert json.loads(result.stdout)["docs"] == 2
    # a .txt file has nothing to score against; a missing one is named
    result = runner.invoke(app, ["annotate", str(texts), str(out), *base[1:], "--score"])
    assert result.exit_code == 1 and "no annotations to --score against" in result.output
    missing = tmp_path / "missing.txt"
    result = runner.invoke(app, ["annotate", str(missing), str(out), *base[1:]])
    assert result.exit_code == 1 and "missing.txt" in result.output
    # a DocBin with gold annotations is scored
    gold = _gold_docbin(tmp_path)
    result = runner.invoke(app, ["annotate", str(gold), str(out), *base[1:], "--score"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["scores"]["ents_f"] == 1.0 and summary["scores"]["rel_micro_f"] == 1.0


def test_evaluate_entities_alone(tiny_trained_dir, tmp_path):
    """`--tasks entities` scores NER end to end and skips the gold-entity relation run;
    with `--no-end-to-end` there is then nothing to score, which is a clear error."""
    gold = _gold_docbin(tmp_path)
    args = ["evaluate", str(gold), "--model", str(tiny_trained_dir), "--device", "cpu"]
    out = tmp_path / "ner.json"
    result = runner.invoke(app, [*args, "--tasks", "entities", "--output", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert "gold_entities" not in metrics
    assert "ents_f" in metrics
    assert metrics["meta"]["tasks"] == ["entities"]
    assert metrics["meta"]["ner_copy_constraint"] is False
    # its table shows NER only: no relation rows of zeros that read like a score
    assert "| NER (strict mentions) |" in result.output
    assert "| RE pair" not in result.output
    result = runner.invoke(app, [*args, "--tasks", "entities", "--no-end-to-end"])
    assert result.exit_code == 1
    assert "nothing to score" in result.output


def _compare_table(tmp_path, runs: dict[str, dict]) -> str:
    """`compare` over one metrics file per run (named by its key); the written table."""
    files = []
    for name, metrics in runs.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(metrics))
        files.append(str(path))
    result = runner.invoke(app, ["compare", *files, "--output", str(tmp_path / "c.md")])
    assert result.exit_code == 0, result.output
    return (tmp_path / "c.md").read_text()


def test_compare_entities_only_run_has_no_end_to_end_relations(tmp_path):
    """A `--tasks entities` run predicted no relations: compare shows a dash in its
    end-to-end RE cells, not a 0.0 that reads as a score; NER stays a number."""

    def run(name, tasks):
        meta = {"command": name, "tasks": tasks, "documents": 3}
        return {"ents_f": 0.6, "rel_pair_f": 0.0, "rel_micro_f": 0.0, "meta": meta}

    table = _compare_table(
        tmp_path, {"ner": run("ner", ["entities"]), "both": run("both", ["entities", "relations"])}
    )
    assert "| NER F1 (strict mentions) | 60.0 | 60.0 |" in table
    assert "| RE F1 pair, end to end | – | 0.0 |" in table
    assert "| RE F1 pair + type, end to end | – | 0.0 |" in table


def test_compare_per_corpus_task_scores(tmp_path):
    """evaluate-instructions results side by side: one row per corpus and metric."""

    def run(name, gad_f, qa_acc):
        corpora = {
            "gad": {"corpus": "gad", "task": "pair", "pair_f": gad_f},
            "pubmedqa": {"corpus": "pubmedqa", "task": "qa", "qa_acc": qa_acc, "qa_macro_f": 0.25},
        }
        return {"corpora": corpora, "meta": {"command": name}}

    table = _compare_table(
        tmp_path, {"base": run("base", 0.5, 0.125), "tuned": run("tuned", 0.75, None)}
    )
    assert "| gad F1 (pair, positive labels) | 50.0 | 75.0 |" in table
    assert "| pubmedqa accuracy | 12.5 | – |" in table
    assert "| pubmedqa macro-F1 | 25.0 | 25.0 |" in table
    assert "NER" not in table


def test_package_contains_the_adapter(tiny_model_dir, tiny_adapter_dir, tmp_path):
    result = runner.invoke(
        app,
        [
            "package",
            str(tmp_path / "pkg"),
            "--adapter",
            str(tiny_adapter_dir),
            "--model",
            str(tiny_model_dir),
            "--name",
            "tiny_test",
            "--version",
            "0.0.1",
        ],
    )
    assert result.exit_code == 0, result.output
    (sdist,) = (tmp_path / "pkg").glob("en_tiny_test-0.0.1/dist/*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert any(n.endswith("bio_relation_llm/adapter/adapter_model.safetensors") for n in names)
    # a training run folder instead of its adapter: refused, pointing at the adapter
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_adapter_dir, run / "adapter")
    args = ["package", str(tmp_path / "pkg2"), "--adapter", str(run), "--model", "m"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and f"did you mean {run / 'adapter'}?" in result.output
    assert not (tmp_path / "pkg2" / "pipeline").exists()


def test_compare_names_unreadable_files_and_tells_same_stems_apart(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        metrics = {"ents_f": 0.5, "meta": {"command": folder, "tasks": ["entities"]}}
        (tmp_path / folder / "metrics.json").write_text(json.dumps(metrics))
    files = [str(tmp_path / f / "metrics.json") for f in ("a", "b")]
    result = runner.invoke(app, ["compare", *files])
    assert result.exit_code == 0, result.output
    assert "a/metrics" in result.output and "b/metrics" in result.output
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "other.json").write_text('{"ents_f": 1}')
    for name, message in (
        ("bad.json", "cannot read a metrics file"),
        ("other.json", "not a metrics file of evaluate"),
        ("missing.json", "cannot read a metrics file"),
    ):
        result = runner.invoke(app, ["compare", files[0], str(tmp_path / name)])
        assert result.exit_code == 1 and f"{name}: {message}" in result.output


def _calibrate_args(gold, adapter, model_dir):
    return ["calibrate", str(gold), "--adapter", str(adapter), "--model", str(model_dir),
            "--device", "cpu"]  # fmt: skip


def test_calibrate_saves_a_threshold_the_component_then_uses(
    tiny_model_dir, tiny_adapter_dir, tmp_path
):
    import shutil

    from tests.test_baselines import gold_doc

    nlp = spacy.blank("en")
    gold = tmp_path / "heldout.spacy"
    DocBin(docs=[gold_doc(nlp)], store_user_data=True).to_disk(gold)
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_adapter_dir, adapter)
    result = runner.invoke(
        app,
        [
            "calibrate",
            str(gold),
            "--adapter",
            str(adapter),
            "--model",
            str(tiny_model_dir),
            "--device",
            "cpu",
            "--output",
            str(tmp_path / "calibration.json"),
            "--pair-scores",
            str(tmp_path / "pairs.spacy"),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((adapter / "calibration.json").read_text())
    (scored,) = DocBin().from_disk(tmp_path / "pairs.spacy").get_docs(nlp.vocab)
    assert len(pair_scores(scored)) == saved["candidate_pairs"]
    # refitted from the saved run without the model, on the other score input: the same
    # threshold (it does not depend on the scaling)
    refit = [*_calibrate_args(gold, adapter, tiny_model_dir), "--score-input", "label_probability"]
    result = runner.invoke(app, [*refit, "--from-pair-scores", str(tmp_path / "pairs.spacy")])
    assert result.exit_code == 0, result.output
    again = json.loads((adapter / "calibration.json").read_text())
    assert again["none_threshold"] == saved["none_threshold"]
    assert again["score_scaling"]["input"] == "label_probability"
    assert again["pair_scores"] == str(tmp_path / "pairs.spacy") and again["seconds"] is None
    # saved scores of other documents are a clear error naming the file
    other = tmp_path / "other.spacy"
    DocBin(docs=[nlp("Another text.")], store_user_data=True).to_disk(other)
    result = runner.invoke(app, [*refit, "--from-pair-scores", str(other)])
    assert result.exit_code != 0 and "other.spacy: holds other documents" in result.output
    result = runner.invoke(app, [*refit, "--score-input", "logits"])
    assert result.exit_code != 0 and "--score-input must be one of" in result.output
    assert 0 < saved["none_threshold"] <= 1 and saved["documents"] == 1
    assert saved["candidate_pairs"] == 6 and "sweep" not in saved
    assert saved["scorer_version"] == SCORER_VERSION  # the verdicts its F1/ECE count with
    assert len(json.loads((tmp_path / "calibration.json").read_text())["sweep"]) == 100
    component = spacy.blank("en").add_pipe("bio_relation_llm", config={"adapter": str(adapter)})
    assert component.effective_none_threshold == saved["none_threshold"]
    # dev is never the calibration set: a missing held-out file is a clear error
    result = runner.invoke(
        app, ["calibrate", str(tmp_path / "nope.spacy"), "--adapter", str(adapter)]
    )
    assert result.exit_code != 0 and "nope.spacy" in result.output
