"""Scorer tests with hand-computed expected values."""

import pytest
import spacy
from spacy.training import Example

from spacy_bioreama.annotations.relations import Relation
from spacy_bioreama.annotations.spans import set_entities
from spacy_bioreama.evaluation.scorers import relation_hits, score_bio

TEXT = "Aspirin reduces fever and aspirin causes ulcers in COX1 mice."
#       0      7       15    21  25      33     40     47 50  55


@pytest.fixture
def nlp():
    return spacy.blank("en")


def _doc(nlp, mentions, relations=()):
    doc = nlp(TEXT)
    set_entities(doc, [doc.char_span(s, e, label=lab, kb_id=kb) for s, e, lab, kb in mentions])
    doc._.relations = list(relations)
    return doc


GOLD_MENTIONS = [
    (0, 7, "Chemical", "C1"),
    (16, 21, "Disease", "D1"),
    (26, 33, "Chemical", "C1"),
    (41, 47, "Disease", "D2"),
    (51, 55, "Gene", "G1"),
]


def test_entities_and_relations_end_to_end(nlp):
    gold = _doc(
        nlp,
        GOLD_MENTIONS,
        [
            Relation((0, 1), (2, 3), "C1", "D1", "Negative_Correlation", novel="Novel"),
            Relation((0, 1), (6, 7), "C1", "D2", "Positive_Correlation", novel="No"),
        ],
    )
    # Predicted: aspirin (both, as concept "aspirin"), fever, "ulcers in" (wrong span),
    # "mice" (not in gold).
    pred = _doc(
        nlp,
        [
            (0, 7, "Chemical", "aspirin"),
            (16, 21, "Disease", "fever"),
            (26, 33, "Chemical", "aspirin"),
            (41, 50, "Disease", "ulcers in"),
            (56, 60, "Species", "mice"),
        ],
        [
            # reversed direction of a gold pair, right type
            Relation((2, 3), (0, 1), "fever", "aspirin", "Negative_Correlation", 0.9),
            # duplicate of the same relation
            Relation((0, 1), (2, 3), "aspirin", "fever", "Negative_Correlation", 0.8),
            # pair with an unmatched concept: false positive
            Relation((0, 1), (6, 8), "aspirin", "ulcers in", "Positive_Correlation", 0.7),
        ],
    )
    scores = score_bio([Example(pred, gold)])
    # NER: 3 tp (aspirin x2, fever), 2 fp, 2 fn
    assert scores["ents_p"] == pytest.approx(3 / 5)
    assert scores["ents_r"] == pytest.approx(3 / 5)
    assert scores["ents_per_type"]["Species"]["p"] == 0.0
    # RE: pred keys {C1-D1 Neg}, {unmatched Pos}; gold {C1-D1 Neg, C1-D2 Pos}
    assert scores["rel_micro_p"] == pytest.approx(1 / 2)
    assert scores["rel_micro_r"] == pytest.approx(1 / 2)
    assert scores["rel_pair_f"] == pytest.approx(1 / 2)
    # novelty: the system predicts none, so it has no novelty score
    assert scores["rel_novelty_f"] is None
    assert scores["rel_per_type"]["Negative_Correlation"]["f"] == pytest.approx(1.0)
    assert scores["rel_per_type"]["Positive_Correlation"]["r"] == 0.0
    # confusion over pairs: C1-D1 right, C1-D2 missed, the unmatched pair invented
    assert scores["rel_confusion"] == {
        "Negative_Correlation": {"Negative_Correlation": 1},
        "None": {"Positive_Correlation": 1},
        "Positive_Correlation": {"None": 1},
    }


def test_label_confusion_tells_typing_from_detection(nlp):
    gold = _doc(
        nlp,
        GOLD_MENTIONS,
        [
            Relation((0, 1), (2, 3), "C1", "D1", "Positive_Correlation"),
            Relation((0, 1), (6, 7), "C1", "D2", "Association"),
        ],
    )
    pred = _doc(
        nlp,
        GOLD_MENTIONS,
        [
            Relation((0, 1), (2, 3), "C1", "D1", "Negative_Correlation"),
            Relation((0, 1), (6, 7), "C1", "D2", "Association"),
            Relation((6, 7), (8, 9), "D2", "G1", "Association"),
        ],
    )
    confusion = score_bio([Example(pred, gold)])["rel_confusion"]
    assert confusion == {
        "Association": {"Association": 1},
        "None": {"Association": 1},
        "Positive_Correlation": {"Negative_Correlation": 1},
    }


def test_wrong_label_counts_for_pair_only(nlp):
    gold = _doc(nlp, GOLD_MENTIONS, [Relation((0, 1), (2, 3), "C1", "D1", "Association")])
    pred = _doc(nlp, GOLD_MENTIONS, [Relation((0, 1), (2, 3), "C1", "D1", "Bind")])
    scores = score_bio([Example(pred, gold)])
    assert scores["rel_pair_f"] == 1.0
    assert scores["rel_micro_f"] == 0.0


def test_empty_documents_score_zero_not_crash(nlp):
    empty = nlp("")
    scores = score_bio([Example(empty, nlp(""))])
    assert scores["ents_f"] == 0.0 and scores["rel_micro_f"] == 0.0


def test_unannotated_prediction_or_gold_in_a_corpus(nlp):
    relations = [
        Relation((0, 1), (2, 3), "C1", "D1", "Negative_Correlation"),
        Relation((0, 1), (6, 7), "C1", "D2", "Positive_Correlation"),
    ]
    perfect = Example(_doc(nlp, GOLD_MENTIONS, relations), _doc(nlp, GOLD_MENTIONS, relations))
    # the system predicts nothing on an annotated document: 5 mention fn, 2 relation fn
    nothing = Example(_doc(nlp, []), _doc(nlp, GOLD_MENTIONS, relations))
    # a mention on a document without gold annotations: 1 fp
    unannotated = Example(_doc(nlp, [(0, 7, "Chemical", "C1")]), _doc(nlp, []))
    scores = score_bio([perfect, nothing, unannotated])
    assert scores["ents_p"] == pytest.approx(5 / 6)
    assert scores["ents_r"] == pytest.approx(5 / 10)
    assert scores["rel_micro_p"] == pytest.approx(1.0)
    assert scores["rel_micro_r"] == pytest.approx(2 / 4)
    assert scores["rel_pair_r"] == pytest.approx(2 / 4)


def test_composite_gold_concept_counts_once(nlp):
    mentions = [(0, 7, "Chemical", "C1"), (41, 47, "Disease", "D1|D2")]
    gold = _doc(nlp, mentions, [Relation((0, 1), (6, 7), "C1", "D2", "CID")])
    # gold-entities setting: the prediction names the composite concept as a whole
    pred = _doc(nlp, mentions, [Relation((0, 1), (6, 7), "C1", "D1|D2", "CID", 0.6)])
    scores = score_bio([Example(pred, gold)])
    assert scores["rel_micro_p"] == pytest.approx(1.0)
    assert scores["rel_micro_r"] == pytest.approx(1.0)


def test_relations_of_concepts_sharing_a_mention_stay_distinct(nlp):
    # "COX1" names two concepts (BioRED "836,840" style); each has a relation of its own.
    # Gold scored against itself must be perfect: the two relations may not collapse.
    mentions = [(0, 7, "Chemical", "C1"), (51, 55, "Gene", "G1,G2"), (56, 60, "Gene", "G2")]
    relations = [
        Relation((0, 1), (8, 9), "C1", "G1", "Bind"),
        Relation((0, 1), (9, 10), "C1", "G2", "Bind"),
    ]
    scores = score_bio([Example(_doc(nlp, mentions, relations), _doc(nlp, mentions, relations))])
    assert scores["rel_micro_r"] == pytest.approx(1.0)
    assert scores["rel_micro_p"] == pytest.approx(1.0)
    # one prediction, repeated and reversed, matches one of them, not both
    again = Relation((8, 9), (0, 1), "G1", "C1", "Bind")
    pred = _doc(nlp, mentions, [relations[0], again])
    scores = score_bio([Example(pred, _doc(nlp, mentions, relations))])
    assert scores["rel_micro_p"] == pytest.approx(1.0)
    assert scores["rel_micro_r"] == pytest.approx(1 / 2)


def test_relation_of_the_other_concept_of_a_shared_mention_is_wrong(nlp):
    """A mention naming two concepts (BioRED "D004409,D006948"), gold relating only the
    first: a relation of the second is a false positive (it was credited as the first's),
    and predicting both keeps the second as one (it was merged into the first)."""
    mentions = [(0, 7, "Chemical", "C1"), (51, 55, "Gene", "G1,G2")]
    gold = _doc(nlp, mentions, [Relation((0, 1), (8, 9), "C1", "G1", "Bind")])
    wrong = Relation((0, 1), (8, 9), "C1", "G2", "Bind")
    scores = score_bio([Example(_doc(nlp, mentions, [wrong]), gold)])
    assert (scores["rel_micro_p"], scores["rel_micro_r"]) == (0.0, 0.0)
    both = [Relation((0, 1), (8, 9), "C1", "G1", "Bind"), wrong]
    scores = score_bio([Example(_doc(nlp, mentions, both), gold)])
    assert scores["rel_micro_p"] == pytest.approx(1 / 2)
    assert scores["rel_micro_r"] == pytest.approx(1.0)
    # the per-relation verdict (reliability diagram, relation view) agrees
    assert relation_hits(_doc(nlp, mentions, both), gold) == [True, False]


def test_relation_between_two_names_of_one_gold_concept_is_a_false_positive(nlp):
    """End to end: two text concepts whose mentions are one gold concept's (as "p53"
    and "tp53" would be) related to each other: a false positive, not left uncounted."""
    chem, dis = (0, 7, "Chemical", "C1"), (16, 21, "Disease", "D1")
    gold_rel = Relation((0, 1), (2, 3), "C1", "D1", "Association")
    gold = _doc(nlp, [chem, dis, (41, 47, "Gene", "G1"), (51, 55, "Gene", "G1")], [gold_rel])
    pred = _doc(nlp, [chem, dis, (41, 47, "Gene", ""), (51, 55, "Gene", "")])
    first, second = (s for s in pred.ents if s.label_ == "Gene")
    same = Relation(
        (first.start, first.end), (second.start, second.end),
        first.text.lower(), second.text.lower(), "Association",
    )  # fmt: skip
    assert first.text.lower() != second.text.lower()
    pred._.relations = [gold_rel, same]
    scores = score_bio([Example(pred, gold)])
    assert scores["rel_micro_p"] == pytest.approx(1 / 2)
    assert scores["rel_micro_r"] == pytest.approx(1.0)
    assert relation_hits(pred, gold) == [True, False]


def test_two_names_of_one_concept_related_alike_share_the_verdict(nlp):
    """End to end, "ulcers" and "COX1" both stand for gold G1: the same relation predicted
    for each is one key to the scorer (one true positive), and both read as right."""
    chem = (0, 7, "Chemical", "C1")
    gold_rel = Relation((0, 1), (6, 7), "C1", "G1", "Bind")
    gold = _doc(nlp, [chem, (41, 47, "Gene", "G1"), (51, 55, "Gene", "G1")], [gold_rel])
    pred = _doc(nlp, [chem, (41, 47, "Gene", ""), (51, 55, "Gene", "")])
    genes = [s for s in pred.ents if s.label_ == "Gene"]
    pred._.relations = [
        Relation((0, 1), (g.start, g.end), "C1", g.text.lower(), "Bind") for g in genes
    ]
    scores = score_bio([Example(pred, gold)])
    assert (scores["rel_micro_p"], scores["rel_micro_r"]) == (1.0, 1.0)
    assert relation_hits(pred, gold) == [True, True]


def test_novelty_setting_when_predicted(nlp):
    gold = _doc(
        nlp,
        GOLD_MENTIONS,
        [
            Relation((0, 1), (2, 3), "C1", "D1", "Association", novel="Novel"),
            Relation((0, 1), (6, 7), "C1", "D2", "Association", novel="No"),
        ],
    )
    pred = _doc(
        nlp,
        GOLD_MENTIONS,
        [
            Relation((0, 1), (2, 3), "C1", "D1", "Association", 0.9, "Novel"),
            Relation((0, 1), (6, 7), "C1", "D2", "Association", 0.9, "Novel"),
        ],
    )
    scores = score_bio([Example(pred, gold)])
    assert scores["rel_micro_f"] == 1.0
    assert scores["rel_novelty_p"] == pytest.approx(1 / 2)
    assert scores["rel_novelty_r"] == pytest.approx(1 / 2)


def test_negative_labels_are_not_relations(nlp):
    mentions = [(51, 55, "GENE", "@GENE$"), (41, 47, "DISEASE", "@DISEASE$")]
    gold = _doc(nlp, mentions, [Relation((8, 9), (6, 7), "@GENE$", "@DISEASE$", "0")])
    pred = _doc(nlp, mentions, [Relation((8, 9), (6, 7), "@GENE$", "@DISEASE$", "0", 0.8)])
    scores = score_bio([Example(pred, gold)])
    assert scores["rel_micro_p"] == 0.0 and scores["rel_micro_r"] == 0.0
    assert scores["rel_per_type"] == {}
    pred = _doc(nlp, mentions, [Relation((8, 9), (6, 7), "@GENE$", "@DISEASE$", "1", 0.8)])
    scores = score_bio([Example(pred, gold)])
    assert scores["rel_micro_p"] == 0.0  # a positive prediction on a negative pair: fp
    assert scores["rel_per_type"]["1"] == {"p": 0.0, "r": 0.0, "f": 0.0}


def test_text_concept_ids_are_never_split_into_several():
    """End-to-end mentions get their text as concept id: one holding an id separator
    ("2,4-dinitrophenol") stays one concept, not "2" and "4-dinitrophenol"."""
    from spacy_bioreama.annotations.spans import normalise_concept, split_concept_ids

    for text in ("2,4-Dinitrophenol", "46,XY  sex reversal", "A|B; C"):
        primary, secondary = split_concept_ids(normalise_concept(text))
        assert len(primary) == 1 and secondary == []
    assert normalise_concept(" 2,4-Dinitrophenol ") == "2 4-dinitrophenol"
