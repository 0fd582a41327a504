import pickle

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_bioreama.annotations.relations import Relation
from spacy_bioreama.annotations.spans import (
    OVERFLOW_KEY,
    all_mentions,
    set_entities,
    split_at_boundaries,
)


@pytest.fixture
def nlp():
    return spacy.blank("en")


@pytest.fixture
def doc(nlp):
    doc = nlp("BRCA1 mutations cause breast cancer in BRCA1 carriers.")
    set_entities(
        doc,
        [
            doc.char_span(0, 5, label="Gene", kb_id="672"),
            doc.char_span(22, 35, label="Disease", kb_id="D001943"),
            doc.char_span(39, 44, label="Gene", kb_id="672"),
        ],
    )
    doc._.relations = [Relation((0, 1), (3, 5), "672", "D001943", "Association", 0.75, "Novel")]
    return doc


def test_relations_are_plain_records(doc):
    (rel,) = doc._.relations
    assert rel.head_span(doc).text == "BRCA1"
    assert rel.tail_span(doc).text == "breast cancer"
    assert rel.score == 0.75 and rel.novel == "Novel"


def test_relations_cannot_be_appended_in_place(doc):
    with pytest.raises(AttributeError):
        doc._.relations.append(doc._.relations[0])


def test_invalid_relations_are_rejected(doc):
    with pytest.raises(ValueError, match="outside the document"):
        doc._.relations = [Relation((0, 1), (50, 51), "a", "b", "X")]
    with pytest.raises(ValueError, match="score"):
        doc._.relations = [Relation((0, 1), (3, 5), "a", "b", "X", 1.5)]


def test_docbin_and_pickle_round_trip_exactly(nlp, doc):
    data = DocBin(docs=[doc], store_user_data=True).to_bytes()
    (back,) = DocBin().from_bytes(data).get_docs(nlp.vocab)
    assert back._.relations == doc._.relations
    assert [(e.start, e.end, e.label_, e.kb_id_) for e in back.ents] == [
        (e.start, e.end, e.label_, e.kb_id_) for e in doc.ents
    ]
    assert pickle.loads(pickle.dumps(doc))._.relations == doc._.relations


def test_rel_view_indexes_doc_ents(doc):
    (item,) = doc._.rel
    assert (item.dep, item.dest, item.relation) == (0, 1, "Association")


def test_overlapping_mentions_go_to_overflow(nlp):
    doc = nlp("breast cancer cells")
    n = set_entities(
        doc,
        [
            doc.char_span(0, 13, label="Disease"),
            doc.char_span(7, 13, label="Disease"),
            doc.char_span(0, 13, label="Disease"),  # exact duplicate: merged
        ],
    )
    assert n == 1
    assert [e.text for e in doc.ents] == ["breast cancer"]
    assert [s.text for s in doc.spans[OVERFLOW_KEY]] == ["cancer"]
    assert len(all_mentions(doc)) == 2


def test_split_at_boundaries_keeps_text(nlp):
    doc = nlp("NIS-mediated iodide uptake")
    new = split_at_boundaries(doc, [2, 3])
    assert new.text == doc.text
    assert new.char_span(0, 2) is not None and new.char_span(3, 12) is not None
    assert split_at_boundaries(doc, [0, len(doc.text)]) is doc
