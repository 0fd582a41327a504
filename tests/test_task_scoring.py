"""Pair-classification and QA scorers (`evaluation/scorers.py`), hand-computed expected values."""

import importlib
from pathlib import Path

import pytest
import spacy
from spacy.training import Example
from spacy.util import registry

from spacy_bioreama.annotations.relations import Relation
from spacy_bioreama.annotations.spans import set_entities
from spacy_bioreama.evaluation.metrics import choice_scores, positive_label_scores
from spacy_bioreama.evaluation.scorers import score_pairs, score_qa

GAD_TEXT = "@GENE$ variants are linked to @DISEASE$ ."
#           0      7        16  20     27 30        40


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def _gad(nlp, label=None, kb=("@GENE$", "@DISEASE$")):
    doc = nlp(GAD_TEXT)
    set_entities(
        doc,
        [
            doc.char_span(0, 6, label="GENE", kb_id=kb[0]),
            doc.char_span(30, 39, label="DISEASE", kb_id=kb[1]),
        ],
    )
    if label is not None:
        doc._.relations = [Relation((0, 1), (5, 6), kb[0], kb[1], label)]
    return doc


def test_pair_scores_binary_corpus(nlp):
    examples = [
        Example(_gad(nlp, "1"), _gad(nlp, "1")),  # tp
        Example(_gad(nlp, "1"), _gad(nlp, "0")),  # positive on a negative pair: fp
        Example(_gad(nlp), _gad(nlp, "1")),  # missed: fn
        Example(_gad(nlp), _gad(nlp, "0")),  # true negative: not scored
        Example(_gad(nlp, "0"), _gad(nlp, "0")),  # predicted negative label: not scored
        # ids of the system's own (surface forms), same mentions: mapped to gold, tp
        Example(_gad(nlp, "1", kb=("gene x", "disease y")), _gad(nlp, "1")),
    ]
    scores = score_pairs(examples)
    # tp 2, fp 1, fn 1
    assert scores["pair_p"] == pytest.approx(2 / 3)
    assert scores["pair_r"] == pytest.approx(2 / 3)
    assert scores["pair_f"] == pytest.approx(2 / 3)
    assert list(scores["pair_per_type"]) == ["1"]  # "0" is never a scored label


DDI_TEXT = "Aspirin and warfarin or heparin with ibuprofen ."
#           0       8   12       21 24      32   37        47


def _ddi(nlp, relations, kbs=("e1", "e2", "e3", "e4")):
    doc = nlp(DDI_TEXT)
    offsets = [(0, 7), (12, 20), (24, 31), (37, 46)]
    set_entities(
        doc,
        [
            doc.char_span(s, e, label="drug", kb_id=k)
            for (s, e), k in zip(offsets, kbs, strict=True)
        ],
    )
    token = {kbs[0]: (0, 1), kbs[1]: (2, 3), kbs[2]: (4, 5), kbs[3]: (6, 7)}
    doc._.relations = [Relation(token[h], token[t], h, t, label) for h, t, label in relations]
    return doc


def test_pair_scores_multi_pair_document_reversed_and_duplicated(nlp):
    gold = _ddi(
        nlp,
        [
            ("e1", "e2", "effect"),
            ("e1", "e3", "false"),
            ("e2", "e3", "mechanism"),
            ("e1", "e4", "int"),
        ],
    )
    kbs = ("A", "B", "C", "D")  # the system's own ids, same mentions
    pred = _ddi(
        nlp,
        [
            ("B", "A", "effect"),  # reversed: pairs are unordered, tp
            ("A", "B", "effect"),  # duplicate: counted once
            ("A", "C", "advise"),  # positive on a negative pair: fp
            ("A", "D", "int"),  # tp
            ("B", "D", "false"),  # predicted negative: not scored
        ],  # e2-e3 mechanism missed: fn
        kbs,
    )
    scores = score_pairs([Example(pred, gold)])
    # tp 2, fp 1, fn 1
    assert scores["pair_p"] == pytest.approx(2 / 3)
    assert scores["pair_r"] == pytest.approx(2 / 3)
    assert scores["pair_per_type"] == {
        "advise": {"p": 0.0, "r": 0.0, "f": 0.0},
        "effect": {"p": 1.0, "r": 1.0, "f": 1.0},
        "int": {"p": 1.0, "r": 1.0, "f": 1.0},
        "mechanism": {"p": 0.0, "r": 0.0, "f": 0.0},
    }


def test_wrong_positive_label_is_one_fp_and_one_fn():
    gold = [(0, "CPR:3"), (1, "CPR:4"), (2, "None")]
    pred = [(0, "CPR:4"), (1, "CPR:4"), (2, "None")]
    scores = positive_label_scores(gold, pred, "re")
    # tp 1 (item 1), fp 1 and fn 1 (item 0)
    assert scores["re_p"] == pytest.approx(1 / 2)
    assert scores["re_r"] == pytest.approx(1 / 2)
    assert scores["re_per_type"]["CPR:3"] == {"p": 0.0, "r": 0.0, "f": 0.0}
    assert scores["re_per_type"]["CPR:4"]["p"] == pytest.approx(1 / 2)
    assert scores["re_per_type"]["CPR:4"]["r"] == pytest.approx(1.0)


def test_pair_scores_nothing_to_score_is_zero():
    scores = positive_label_scores([(0, "None")], [(0, "None")])
    assert (scores["pair_p"], scores["pair_r"], scores["pair_f"]) == (0.0, 0.0, 0.0)
    assert scores["pair_per_type"] == {}


def _qa(nlp, answer=None, cats=None, copied_answer=None):
    doc = nlp("Context of the abstract .")
    doc.user_data["question"] = "Does it work?"
    if answer is not None:
        doc.user_data["answer"] = answer
        doc.cats = {a: float(a == answer) for a in ("yes", "no", "maybe")}
    if copied_answer is not None:  # a prediction doc keeps the gold user data
        doc.user_data["answer"] = copied_answer
    if cats is not None:
        doc.cats = cats
    return doc


def test_qa_accuracy_and_macro_f(nlp):
    rows = [  # (gold, predicted cats)
        ("yes", {"yes": 0.7, "no": 0.2, "maybe": 0.1}),
        ("yes", {"yes": 0.1, "no": 0.8, "maybe": 0.1}),
        ("no", {"yes": 0.0, "no": 1.0, "maybe": 0.0}),
        ("maybe", {}),  # no answer: wrong, fn of "maybe"
        ("no", {"yes": 0.2, "no": 0.3, "maybe": 0.5}),
    ]
    examples = [Example(_qa(nlp, cats=c, copied_answer=g), _qa(nlp, answer=g)) for g, c in rows]
    examples.append(Example(_qa(nlp, cats={"yes": 1.0}), _qa(nlp)))  # PQA-U: not scored
    scores = score_qa(examples)
    assert scores["qa_acc"] == pytest.approx(2 / 5)
    # yes: tp1 fn1 -> F 2/3; no: tp1 fp1 fn1 -> 1/2; maybe: fp1 fn1 -> 0
    assert scores["qa_per_type"]["yes"]["f"] == pytest.approx(2 / 3)
    assert scores["qa_per_type"]["no"]["f"] == pytest.approx(1 / 2)
    assert scores["qa_per_type"]["maybe"]["f"] == 0.0
    assert scores["qa_macro_f"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_macro_f_averages_over_answers_that_occur():
    scores = choice_scores([("yes", "yes"), ("no", "yes"), ("no", None)])
    # yes: tp1 fp1 -> F 2/3; no: fn2 -> 0; "maybe" occurs nowhere: not averaged
    assert scores["qa_acc"] == pytest.approx(1 / 3)
    assert scores["qa_macro_f"] == pytest.approx(1 / 3)
    forced = choice_scores([("yes", "yes")], answers=("yes", "no", "maybe"))
    assert forced["qa_macro_f"] == pytest.approx(1 / 3)


def test_scorers_are_registered_and_declared_as_entry_points(tiny_model_dir, nlp):
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"]["spacy_scorers"]
    expected = {
        "spacy_bioreama.pair_scorer.v1": score_pairs,
        "spacy_bioreama.qa_scorer.v1": score_qa,
    }
    for name, scorer in expected.items():
        module, attr = declared[name].split(":")
        assert getattr(importlib.import_module(module), attr)() is scorer
        assert registry.scorers.get(name)() is scorer
    # usable as the component's scorer (what `spacy evaluate` calls); no model is loaded
    pipeline = spacy.blank("en")
    component = pipeline.add_pipe(
        "bio_relation_llm",
        config={
            "model": str(tiny_model_dir),
            "scorer": {"@scorers": "spacy_bioreama.pair_scorer.v1"},
        },
    )
    scores = component.score([Example(_gad(pipeline, "1"), _gad(pipeline, "1"))])
    assert scores["pair_f"] == 1.0
