"""`score` (DocBins, no model) and `evaluate-instructions` (instruction records, a model)."""

import itertools
import json
import math
import os
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_bioreama.annotations.spans import all_mentions, set_entities
from spacy_bioreama.cli._util import app
from spacy_bioreama.corpora import read
from spacy_bioreama.evaluation.instruction_records import (
    EvalRecord,
    InstructionDataError,
    decide,
    evaluate_instructions,
    read_eval_records,
)
from spacy_bioreama.evaluation.scorers import SCORER_VERSION
from spacy_bioreama.models.backend import ChatPrompt, Generation
from spacy_bioreama.tasks import ner, qa
from spacy_bioreama.tasks import relation as re_task
from tests.conftest import TRAINED_ENTITY_LABELS, TRAINED_RELATION_LABELS, make_trained_gold_doc

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("BIOREAMA_DATA_DIR", REPO.parent / "shared" / "data"))
needs_data = pytest.mark.skipif(
    not (DATA_DIR / "biored" / "Dev.PubTator").exists(),
    reason=f"real corpora not found under {DATA_DIR} (set BIOREAMA_DATA_DIR)",
)


def _docbin(tmp_path, name, fmt, source, n):
    """The first `n` documents of a real corpus file as a DocBin."""
    path = tmp_path / name
    docs = list(itertools.islice(read(fmt, DATA_DIR / source), n))
    DocBin(docs=docs, store_user_data=True).to_disk(path)
    return path


def _load(path):
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def _save(docs, path):
    DocBin(docs=docs, store_user_data=True).to_disk(path)
    return path


def _score(*args):
    result = runner.invoke(app, ["score", *map(str, args)])
    return result


@needs_data
def test_score_biored_docbins(tmp_path):
    gold = _docbin(tmp_path, "gold.spacy", "pubtator", "biored/Dev.PubTator", 3)
    # 3 documents: 37 + 14 + 40 = 91 mentions, 12 + 1 + 10 = 23 relations
    result = _score(gold, gold, "--output", tmp_path / "same.json")
    assert result.exit_code == 0, result.output
    same = json.loads((tmp_path / "same.json").read_text())
    for key in ("ents_f", "rel_pair_f", "rel_micro_f", "rel_novelty_f"):
        assert same[key] == pytest.approx(1.0), key
    assert same["meta"]["task"] == "bio" and same["meta"]["documents"] == 3
    assert same["meta"]["scorer_version"] == SCORER_VERSION
    assert not any(k.startswith(("pair_", "qa_")) for k in same)

    pred = _load(gold)
    assert [d.user_data["doc_id"] for d in pred] == ["14510914", "15096016", "16152606"]
    pred[0]._.relations = []  # 12 relations missed
    parkinson = [s for s in all_mentions(pred[1]) if s.start_char == 107]
    assert [s.text for s in parkinson] == ["Parkinson's disease"]  # its concept has more
    set_entities(pred[1], [s for s in all_mentions(pred[1]) if s.start_char != 107])
    perturbed = _save(pred[::-1], tmp_path / "pred.spacy")  # order must not matter
    result = _score(
        gold, perturbed, "--output", tmp_path / "m.json", "--markdown", tmp_path / "m.md"
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["ents_p"] == pytest.approx(1.0)
    assert metrics["ents_r"] == pytest.approx(90 / 91)
    assert metrics["rel_micro_p"] == pytest.approx(1.0)
    assert metrics["rel_micro_r"] == pytest.approx(11 / 23)
    assert metrics["rel_micro_f"] == pytest.approx(11 / 17)  # 2 * (11/23) / (1 + 11/23)
    assert metrics["rel_novelty_f"] == pytest.approx(11 / 17)
    meta = metrics["meta"]
    assert meta["aligned_by"] == "doc_id" and meta["gold"] == str(gold)
    assert meta["command"].startswith("python -m spacy_bioreama")
    assert "| RE pair + type | 100.0 | 47.8 | 64.7 |" in (tmp_path / "m.md").read_text()


@needs_data
def test_score_reports_misaligned_documents(tmp_path):
    gold = _docbin(tmp_path, "gold.spacy", "pubtator", "biored/Dev.PubTator", 3)
    docs = _load(gold)
    result = _score(gold, _save(docs[:2], tmp_path / "short.spacy"))
    assert result.exit_code == 1
    assert "short.spacy: no prediction for document '16152606'" in result.output

    nlp = spacy.blank("en")
    changed = nlp.make_doc(docs[1].text.replace("Pallidal", "Palidal", 1))
    changed.user_data["doc_id"] = docs[1].user_data["doc_id"]
    result = _score(gold, _save([docs[0], changed, docs[2]], tmp_path / "changed.spacy"))
    assert result.exit_code == 1
    assert "text of document '15096016' differs" in result.output

    no_ids = []
    for doc in docs[:2]:
        doc.user_data.pop("doc_id")
        no_ids.append(doc)
    result = _score(gold, _save(no_ids, tmp_path / "no_ids.spacy"))
    assert result.exit_code == 1
    assert "has 3 documents and" in result.output and "has 2" in result.output
    result = _score(gold, tmp_path / "missing.spacy")
    assert result.exit_code == 1 and "missing.spacy" in result.output


@needs_data
def test_score_detects_pair_and_qa_corpora(tmp_path):
    gold = _docbin(tmp_path, "gad.spacy", "gad", "gad/train.tsv", 4)
    docs = _load(gold)
    assert [r.label for d in docs for r in d._.relations] == ["1", "1", "1", "0"]
    docs[0]._.relations = []  # fn
    docs[3]._.relations = [r._replace(label="1") for r in docs[3]._.relations]  # fp
    result = _score(gold, _save(docs, tmp_path / "p.spacy"), "--output", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "p.json").read_text())
    assert metrics["meta"]["task"] == "pair"
    # tp 2, fp 1, fn 1
    assert metrics["pair_p"] == pytest.approx(2 / 3) and metrics["pair_r"] == pytest.approx(2 / 3)
    assert not any(k.startswith(("ents_", "rel_")) for k in metrics)

    gold = _docbin(tmp_path, "qa.spacy", "pubmedqa", "pubmedqa/pqal_trainval.json", 3)
    docs = _load(gold)
    assert [d.user_data["answer"] for d in docs] == ["yes", "yes", "no"]
    for doc, answer in zip(docs, ["yes", "no", "no"], strict=True):
        doc.cats = {"yes": 0.1, "no": 0.1, "maybe": 0.1, answer: 0.7}
    result = _score(gold, _save(docs, tmp_path / "q.spacy"), "--output", tmp_path / "q.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "q.json").read_text())
    assert metrics["meta"]["task"] == "qa"
    # yes: tp1 fn1, no: tp1 fp1 -> F 2/3 each
    assert metrics["qa_acc"] == pytest.approx(2 / 3)
    assert metrics["qa_macro_f"] == pytest.approx(2 / 3)
    # forcing another scorer is possible
    result = _score(gold, tmp_path / "q.spacy", "--output", tmp_path / "b.json", "--task", "bio")
    assert result.exit_code == 0 and "ents_f" in json.loads((tmp_path / "b.json").read_text())


# ------------------------------------------------------------ evaluate-instructions
def _record(task, corpus, label, instruction="Pick one.", text="x", choices=None):
    choices = choices or (["yes", "no", "maybe"] if task == "qa" else ["Association", "None"])
    return {
        "id": f"{corpus}/{label}/{text}",
        "task": task,
        "corpus": corpus,
        "instruction": instruction,
        "input": text,
        "output": label,
        "choices": choices,
        "label": label,
    }


class FakeBackend:
    """Answers from a table keyed by the prompt's input; records the prompts it saw."""

    max_prompt_tokens = 20

    def __init__(self, answers):
        self.answers = answers
        self.prompts = []

    def count_prompt_tokens(self, prompt):
        return len(prompt.user.split())

    def generate(self, prompts, *, max_new_tokens, choices=None):
        out = []
        for prompt, options in zip(prompts, choices, strict=True):
            self.prompts.append(prompt)
            answer = self.answers[prompt.user.split("\n\n", 1)[1]]
            assert answer in options
            out.append(Generation(answer, math.log(0.9), 5, 1))
        return out


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_evaluate_instructions_per_corpus_scores(tmp_path):
    records = [
        _record("pair", "gad", "Association", text="g1"),  # tp
        _record("pair", "gad", "None", text="g2"),  # fp
        _record("pair", "gad", "Association", text="g3"),  # fn
        _record("pair", "gad", "None", text="g4"),  # tn
        _record("re", "biored", "Bind", text="r1", choices=["Bind", "Association", "None"]),
        # too long for the backend: not run, a fn
        _record("re", "biored", "Association", text="r2 " + "w " * 30, choices=["Association"]),
        _record("qa", "pubmedqa", "yes", text="q1"),
        _record("qa", "pubmedqa", "no", text="q2"),
        {"task": "ner", "corpus": "biored", "instruction": "i", "input": "n", "output": "o"},
    ]
    # a record written without label: the answer is the output's last line
    no_label = _record("pair", "gad", "Association", text="g5")
    del no_label["label"]
    no_label["output"] = "Evidence: something.\nAnswer: Association"
    records.append(no_label)
    answers = {
        "g1": "Association",
        "g2": "Association",
        "g3": "None",
        "g4": "None",
        "g5": "Association",
        "r1": "Bind",
        "q1": "yes",
        "q2": "maybe",
    }
    backend = FakeBackend(answers)
    path = _write_jsonl(tmp_path / "dev.jsonl", records)
    metrics, preds = evaluate_instructions(path, backend, progress=False)
    # the prompt is the training prompt: instruction, blank line, input
    assert backend.prompts[0] == ChatPrompt(user="Pick one.\n\ng1")
    gad = metrics["corpora"]["gad"]
    assert (gad["records"], gad["answered"], gad["gold_positive"]) == (5, 5, 3)
    # tp 2 (g1, g5), fp 1 (g2), fn 1 (g3)
    assert gad["pair_p"] == pytest.approx(2 / 3) and gad["pair_r"] == pytest.approx(2 / 3)
    biored = metrics["corpora"]["biored"]
    assert (biored["records"], biored["answered"], biored["too_long"]) == (2, 1, 1)
    assert biored["re_p"] == pytest.approx(1.0) and biored["re_r"] == pytest.approx(1 / 2)
    pubmedqa = metrics["corpora"]["pubmedqa"]
    assert pubmedqa["qa_acc"] == pytest.approx(1 / 2)
    # yes F 1, no F 0 (fn), maybe F 0 (fp)
    assert pubmedqa["qa_macro_f"] == pytest.approx(1 / 3)
    assert metrics["run"]["skipped_without_choices"] == {"ner": 1}
    assert len(preds) == 9 and preds[0]["prediction"] == "Association"
    assert preds[0]["probability"] == pytest.approx(0.9)

    metrics, _ = evaluate_instructions(path, FakeBackend(answers), limit_per_corpus=1)
    assert {k: v["records"] for k, v in metrics["corpora"].items()} == {
        "biored": 1,
        "gad": 1,
        "pubmedqa": 1,
    }


class _Choice(Generation):
    probabilities = {"Association": 0.25, "Bind": 0.35, "None": 0.4}


def test_none_threshold_detects_then_types():
    record = EvalRecord(
        1, "r", "re", "biored", ChatPrompt("u"), ("Association", "Bind", "None"), "x"
    )
    generation = _Choice("None", math.log(0.4), 1, 1)
    assert decide(record, generation) == ("None", pytest.approx(0.4))
    assert decide(record, generation, none_threshold=0.5) == ("Bind", 0.35)
    assert decide(record, generation, none_threshold=0.4) == ("None", 0.4)


def test_bad_records_name_file_line_and_field(tmp_path):
    good = _record("pair", "gad", "None")
    bad = dict(good, label="Maybe")
    path = _write_jsonl(tmp_path / "dev.jsonl", [good, bad])
    with pytest.raises(InstructionDataError, match=r"dev\.jsonl:2: field 'label'"):
        read_eval_records(path)
    (tmp_path / "broken.jsonl").write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(InstructionDataError, match=r"broken\.jsonl:2: not valid JSON"):
        read_eval_records(tmp_path / "broken.jsonl")
    path = _write_jsonl(tmp_path / "choices.jsonl", [dict(good, choices="None")])
    with pytest.raises(InstructionDataError, match=r"choices\.jsonl:1: field 'choices'"):
        read_eval_records(path)
    # a rationale record is scored on its options: one per choice, in order
    rationale = dict(good, answer_format="rationale(sentences=2, negatives=quote)")
    path = _write_jsonl(tmp_path / "options.jsonl", [good, rationale])
    with pytest.raises(InstructionDataError, match=r"options\.jsonl:2: field 'options' is missing"):
        read_eval_records(path)
    swapped = dict(
        rationale, options=["Evidence: x\nAnswer: None", "Evidence: x\nAnswer: Association"]
    )
    path = _write_jsonl(tmp_path / "order.jsonl", [swapped])
    with pytest.raises(InstructionDataError, match=r"order\.jsonl:1: field 'options' must list"):
        read_eval_records(path)
    records, _ = read_eval_records(
        _write_jsonl(tmp_path / "ok.jsonl", [dict(swapped, options=swapped["options"][::-1])])
    )
    assert records[0].options == ("Evidence: x\nAnswer: Association", "Evidence: x\nAnswer: None")


def test_evaluate_instructions_command_on_the_tiny_trained_model(tiny_trained_dir, tmp_path):
    nlp = spacy.blank("en")
    doc = make_trained_gold_doc(nlp)
    records = []
    for head, tail in re_task.candidate_pairs(re_task.collect_concepts(doc), set()):
        label = re_task.gold_label(doc, head, tail)
        example = re_task.build_example(doc, head, tail, TRAINED_RELATION_LABELS, target=label)
        records.append({"task": "re", "corpus": "trained", **example.to_record(), "label": label})
    assert [r["label"] for r in records].count("None") == 4 and len(records) == 6
    ner_example = ner.build_example(doc, TRAINED_ENTITY_LABELS, with_target=True)
    records.append({"corpus": "trained", **ner_example.to_record()})  # skipped
    qa_doc = nlp.make_doc("Aspirin lowers risk .")
    qa_doc.user_data.update(question="Does aspirin lower risk?", answer="yes")
    qa_example = qa.build_example(qa_doc, with_target=True)
    records.append({"corpus": "pubmedqa", **qa_example.to_record(), "label": "yes"})
    path = _write_jsonl(tmp_path / "dev.jsonl", records)
    result = runner.invoke(
        app,
        [
            "evaluate-instructions",
            str(path),
            "--model",
            str(tiny_trained_dir),
            "--device",
            "cpu",
            "--limit-per-corpus",
            "5",
            "--output",
            str(tmp_path / "m.json"),
            "--markdown",
            str(tmp_path / "m.md"),
            "--predictions",
            str(tmp_path / "preds.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    trained = metrics["corpora"]["trained"]
    # the model was trained on exactly these prompts: every answer right
    assert trained["records"] == 5 and trained["gold_positive"] == 2
    assert (trained["re_p"], trained["re_r"], trained["re_f"]) == (1.0, 1.0, 1.0)
    pubmedqa = metrics["corpora"]["pubmedqa"]
    assert metrics["run"]["skipped_without_choices"] == {"ner": 1}
    assert metrics["meta"]["adapter"] is None and metrics["meta"]["limit_per_corpus"] == 5
    preds = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    # the one PubMedQA answer is scored as what it is
    (qa_pred,) = [p for p in preds if p["task"] == "qa"]
    assert pubmedqa["answered"] == 1
    assert pubmedqa["qa_acc"] == float(qa_pred["prediction"] == qa_pred["label"])
    assert [p["prediction"] == p["label"] for p in preds[:5]] == [True] * 5
    assert "| trained | re | 5 | 100.0 | 100.0 | 100.0 | – | – |" in (tmp_path / "m.md").read_text()
