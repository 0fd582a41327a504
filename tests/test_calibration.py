"""Calibration and threshold sweeps from recorded pair scores (evaluation/calibration.py)."""

import pytest
import spacy
from spacy.tokens import Span

from spacy_bioreama.annotations.relations import Relation
from spacy_bioreama.annotations.spans import set_entities
from spacy_bioreama.evaluation.bootstrap import f1_interval
from spacy_bioreama.evaluation.calibration import (
    MIN_SLOPE,
    calibration,
    fit_calibration,
    fit_label_bias,
    fit_score_scaling,
    platt_scaling,
    relations_at,
    reliability,
    threshold_sweep,
)
from spacy_bioreama.pipeline.component import PAIR_SCORES_KEY
from spacy_bioreama.pipeline.relation_calibration import RelationCalibration
from tests.conftest import TRAINED_RELATION_LABELS, make_trained_gold_doc
from tests.test_component import _gold_doc, _nlp


def _pair(h, t, hid, tid, p_none, label, score):
    return {"head": [h, h + 1], "tail": [t, t + 1], "head_id": hid, "tail_id": tid,
            "p_none": p_none, "label": label, "score": score}  # fmt: skip


@pytest.fixture
def docs():
    """Gold: A-B Bind, A-C Association. Recorded pairs: A-B Bind (P(None) 0.2, twice:
    two windows), A-C Bind (0.3: wrong label), B-C Bind (0.6: not a gold relation)."""
    nlp = spacy.blank("en")
    words = ["A", "x", "B", "y", "C"]
    gold = spacy.tokens.Doc(nlp.vocab, words=words)
    spans = [Span(gold, i, i + 1, label="Gene", kb_id=w) for i, w in ((0, "A"), (2, "B"), (4, "C"))]
    set_entities(gold, spans)
    gold._.relations = [
        Relation((0, 1), (2, 3), "A", "B", "Bind", 1.0),
        Relation((0, 1), (4, 5), "A", "C", "Association", 1.0),
    ]
    pred = gold.copy()
    pred._.relations = []
    pred.user_data[PAIR_SCORES_KEY] = [
        _pair(0, 2, "A", "B", 0.2, "Bind", 0.7),
        _pair(0, 2, "A", "B", 0.1, "Bind", 0.9),  # a second window, more confident
        _pair(0, 4, "A", "C", 0.3, "Bind", 0.6),
        _pair(2, 4, "B", "C", 0.6, "Bind", 0.3),
    ]
    return [pred], [gold]


def test_relations_at_applies_the_threshold_and_keeps_the_best_window(docs):
    (pred,), _ = docs
    assert [(r.head_id, r.tail_id, r.score) for r in relations_at(pred, 0.25)] == [("A", "B", 0.9)]
    assert len(relations_at(pred, 0.5)) == 2 and len(relations_at(pred, 1.0)) == 3
    assert relations_at(pred, 0.1) == []  # P(None) < threshold, strictly


def test_threshold_sweep_counts_pair_and_type(docs):
    pred, gold = docs
    rows = {r["threshold"]: r for r in threshold_sweep(pred, gold, (0.1, 0.25, 0.5, 1.0))}
    assert rows[0.1]["predicted"] == 0 and rows[0.1]["f"] == 0.0
    assert (rows[0.25]["p"], rows[0.25]["r"]) == (1.0, 0.5)  # A-B Bind right
    assert (rows[0.5]["p"], rows[0.5]["r"]) == (0.5, 0.5)  # + A-C with the wrong label
    assert rows[1.0]["p"] == pytest.approx(1 / 3) and rows[1.0]["predicted"] == 3


def test_reliability_bins_and_expected_calibration_error(docs):
    (pred,), (gold,) = docs
    pred._.relations = relations_at(pred, 1.0)  # scores 0.9 (right), 0.6 and 0.3 (wrong)
    out = reliability([pred], [gold], bins=10)
    assert out["predictions"] == 3
    counts = {round(b["lo"], 1): b["count"] for b in out["bins"] if b["count"]}
    assert counts == {0.3: 1, 0.6: 1, 0.9: 1}
    # |1 - 0.9| + |0 - 0.6| + |0 - 0.3|, each weighted 1/3
    assert out["ece"] == pytest.approx((0.1 + 0.6 + 0.3) / 3)


def test_calibration_is_none_without_recorded_scores(docs):
    pred, gold = docs
    pred[0].user_data.pop(PAIR_SCORES_KEY)
    assert calibration(pred, gold, 0.5) is None


def test_calibration_block_describes_the_relations_the_run_wrote(docs):
    """At a threshold, the block re-decides from the recorded scores; without one (the
    argmax rule) it takes the relations as written, not every pair with P(None) < 1."""
    pred, gold = docs
    assert calibration(pred, gold, 0.25)["predictions"] == 1
    pred[0]._.relations = relations_at(pred[0], 0.25)  # what an argmax run wrote, say
    assert calibration(pred, gold, None)["predictions"] == 1


def test_recorded_scores_reproduce_the_component_exactly(tiny_trained_dir):
    # Re-deciding from the recorded scores at the component's own threshold gives the
    # relations it wrote: the sweep is the component run at each threshold, not a guess.
    for threshold in (0.3, 0.5, 0.9):
        nlp = _nlp(
            tiny_trained_dir, tasks=["relations"], none_threshold=threshold, keep_pair_scores=True
        )
        doc = nlp(_gold_doc(nlp))
        recorded = doc.user_data[PAIR_SCORES_KEY]
        assert len(recorded) == nlp.get_pipe("bio_relation_llm").stats["re_pairs"] == 6
        assert {e["label"] for e in recorded} <= set(TRAINED_RELATION_LABELS)
        assert relations_at(doc, threshold) == list(doc._.relations)
    gold = make_trained_gold_doc(nlp)
    block = calibration([doc], [gold], 0.9)
    assert block["none_threshold"] == 0.9 and len(block["sweep"]) == 20
    assert block["predictions"] == len(doc._.relations)


def test_pair_scores_are_off_by_default(tiny_trained_dir):
    nlp = _nlp(tiny_trained_dir, tasks=["relations"])
    assert PAIR_SCORES_KEY not in nlp(_gold_doc(nlp)).user_data


def test_fit_calibration_picks_the_best_threshold_on_the_held_back_documents(docs):
    pred, gold = docs
    fitted = fit_calibration(pred, gold)
    # only A-B Bind is right: the best F1 (2/3) needs P(None) 0.1 < t <= 0.3, lowest 0.11
    assert fitted["none_threshold"] == 0.11
    assert fitted["f1"] == pytest.approx(2 / 3) and fitted["relations"] == 1
    assert fitted["candidate_pairs"] == 4 and fitted["documents"] == 1
    # too few relations to fit: the identity
    assert fitted["score_scaling"] == {"a": 1.0, "b": 0.0, "input": "label_probability"}


def test_platt_scaling_moves_overconfident_scores_towards_their_accuracy():
    # scores 0.9 that are right only half of the time, scores 0.3 never right
    pairs = [(0.9, k % 2 == 0) for k in range(40)] + [(0.3, False)] * 20
    a, b = platt_scaling(pairs)
    scale = RelationCalibration(a=a, b=b).scale
    assert scale(0.9) == pytest.approx(0.5, abs=0.05)
    assert scale(0.3) < 0.1
    assert platt_scaling(pairs[:5]) == (1.0, 0.0)  # too few
    assert platt_scaling([(0.9, True)] * 30) == (1.0, 0.0)  # one outcome


def test_platt_scaling_without_a_ranking_reads_as_the_held_back_accuracy():
    # the quick adapter's case: higher scores are right less often (1 in 10 at 0.9, 3 in
    # 10 at 0.85), so no positive slope fits; the scores keep their order, near 20 %
    pairs = [(0.9, k % 10 == 0) for k in range(100)] + [(0.85, k % 10 < 3) for k in range(100)]
    a, b = platt_scaling(pairs)
    assert a == MIN_SLOPE
    scale = RelationCalibration(a=a, b=b).scale
    assert scale(0.9) == pytest.approx(0.2, abs=0.01) and scale(0.85) < scale(0.9)


def test_score_scaling_on_the_type_probability_reads_past_the_detection():
    # right or wrong goes with P(label | related), not with P(None): relations at
    # P(None) 0.2 and 0.8 are right alike when their typing is sure (P(label | related)
    # 0.9) and wrong alike when it is not (0.5)
    relations = []
    for p_none in (0.2, 0.8):
        rel = 1 - p_none
        relations += [(0.9 * rel, p_none, k % 10 < 8) for k in range(50)]
        relations += [(0.5 * rel, p_none, k % 10 < 2) for k in range(50)]
    scaling = fit_score_scaling(relations)
    assert scaling["input"] == "type_probability"
    scale = RelationCalibration(
        a=scaling["a"], b=scaling["b"], score_input="type_probability"
    ).scale
    assert scale(0.9 * 0.8, 0.2) == pytest.approx(0.8, abs=0.03)
    assert scale(0.9 * 0.2, 0.8) == pytest.approx(0.8, abs=0.03)
    assert scale(0.5 * 0.8, 0.2) == pytest.approx(0.2, abs=0.03)
    # on P(label) alone the same relations cannot be told apart as well
    label_only = fit_score_scaling(relations, "label_probability")
    plain = RelationCalibration(a=label_only["a"], b=label_only["b"]).scale
    assert abs(plain(0.9 * 0.2) - 0.8) > 0.1


def test_bootstrap_interval_brackets_the_f1_and_is_reproducible():
    # 50 documents: each 1 right, 1 wrong prediction, 1 missed -> F1 0.5 on every resample
    assert f1_interval([(1, 1, 1)] * 50) == pytest.approx((0.5, 0.5))
    mixed = [(2, 0, 0)] * 25 + [(0, 2, 2)] * 25
    low, high = f1_interval(mixed, resamples=500)
    assert low < 0.5 < high and high - low < 0.4
    assert f1_interval(mixed, resamples=500) == (low, high)  # seeded
    assert f1_interval([]) is None


def test_platt_scaling_stays_finite_on_saturated_scores():
    # the quick adapter's case: every kept relation at P(label) ~ 0.999, 1 in 9 right
    pairs = [(0.999, k % 9 == 0) for k in range(900)] + [(0.9999, k % 8 == 0) for k in range(80)]
    a, b = platt_scaling(pairs)
    assert abs(a) < 100 and abs(b) < 1000
    scale = RelationCalibration(a=a, b=b).scale
    assert scale(0.999) == pytest.approx(1 / 9, abs=0.03)


def test_fit_calibration_keeps_the_fallback_when_nothing_is_ever_right(docs):
    pred, gold = docs
    gold[0]._.relations = []  # no gold relation: F1 is 0 at every threshold
    fitted = fit_calibration(pred, gold)
    assert fitted["fallback"] and fitted["none_threshold"] == 0.5


def test_label_bias_corrects_a_lean_towards_one_label():
    # The model always prefers Neg (0.6 against 0.4) but 70 of 100 related pairs are Pos:
    # the fitted bias makes the typing say Pos; a balanced, informative set needs none.
    leaning = [({"Pos": 0.4, "Neg": 0.6}, "Pos")] * 70 + [({"Pos": 0.4, "Neg": 0.6}, "Neg")] * 30
    bias = fit_label_bias(leaning)
    calibration = RelationCalibration(label_bias=tuple(bias.items()))
    assert calibration.type_label({"Pos": 0.4, "Neg": 0.6}) == "Pos"
    assert bias["Pos"] > 0 > bias["Neg"]
    balanced = [({"Pos": 0.8, "Neg": 0.2}, "Pos")] * 50 + [({"Pos": 0.2, "Neg": 0.8}, "Neg")] * 50
    assert all(abs(v) < 1e-6 for v in fit_label_bias(balanced).values())
    assert fit_label_bias(leaning[:10]) == {}  # too few related pairs to fit
    # a label with few pairs keeps no bias of its own
    rare = leaning + [({"Pos": 0.3, "Neg": 0.3, "Bind": 0.4}, "Bind")] * 5
    assert set(fit_label_bias(rare)) == {"Pos", "Neg"}
    assert fit_label_bias([({"Pos": 0.4, "Neg": 0.6}, "Pos")] * 30) == {}  # one gold label


def _add_label_probabilities(doc, extra, with_b, others):
    """Append `extra` pair scores to `doc`'s, giving each the label probabilities
    `with_b` when it pairs concept B, else `others`."""
    entries = doc.user_data[PAIR_SCORES_KEY] + extra
    for e in entries:
        e["probabilities"] = with_b if "B" in (e["head_id"], e["tail_id"]) else others
    doc.user_data[PAIR_SCORES_KEY] = entries


def test_fit_calibration_fits_the_label_bias_before_the_threshold(docs):
    pred, gold = docs
    # 22 A-B windows (gold Bind) are sure of Bind; 31 A-C ones (gold Association) lean
    # to Bind
    extra = [_pair(0, 4, "A", "C", 0.3, "Bind", 0.6) for _ in range(30)]
    extra += [_pair(0, 2, "A", "B", 0.2, "Bind", 0.9) for _ in range(20)]
    _add_label_probabilities(pred[0], extra, {"Bind": 0.999, "Association": 0.001},
                             {"Bind": 0.6, "Association": 0.4})  # fmt: skip
    fitted = fit_calibration(pred, gold)
    assert fitted["label_bias"]["Association"] > fitted["label_bias"]["Bind"]
    assert fitted["typing_pairs"] == 53
    # retyped, A-C is right too: both gold relations at the threshold that relates both
    assert fitted["none_threshold"] == 0.31 and fitted["f1"] == pytest.approx(1.0)
    assert fitted["f1_without_label_bias"] == pytest.approx(0.5)  # A-C read as Bind


def test_fit_calibration_drops_a_label_bias_that_does_not_help(docs):
    pred, gold = docs
    # every window already types right by argmax (22 Bind, 21 Association): a fitted
    # bias cannot raise F1, so none is kept
    extra = [_pair(0, 2, "A", "B", 0.2, "Bind", 0.9) for _ in range(20)]
    extra += [_pair(0, 4, "A", "C", 0.3, "Association", 0.6) for _ in range(20)]
    _add_label_probabilities(pred[0], extra, {"Bind": 0.55, "Association": 0.45},
                             {"Bind": 0.45, "Association": 0.55})  # fmt: skip
    fitted = fit_calibration(pred, gold)
    assert set(fitted["label_bias_fitted"]) == {"Association", "Bind"}
    assert fitted["label_bias"] == {} and fitted["f1"] == fitted["f1_without_label_bias"] == 1.0
