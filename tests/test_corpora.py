"""Corpus readers: real-data counts (../shared/data or $BIOREAMA_DATA_DIR), synthetic
fixtures for the edge cases, malformed input and an exact DocBin round trip."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_bioreama.annotations.relations import Relation
from spacy_bioreama.annotations.spans import OVERFLOW_KEY, all_mentions
from spacy_bioreama.corpora import (
    FORMATS,
    ConversionReport,
    CorpusFormatError,
    convert,
    read,
    read_bioc_json,
    read_ddi,
    read_ncbi_disease,
    read_pair_tsv,
    read_pubmedqa,
    read_pubtator,
    split_concept_ids,
)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("BIOREAMA_DATA_DIR", REPO.parent / "shared" / "data"))
FIXTURES = Path(__file__).parent / "fixtures" / "corpora"

needs_data = pytest.mark.skipif(
    not (DATA_DIR / "biored" / "Dev.PubTator").exists(),
    reason=f"real corpora not found under {DATA_DIR} (set BIOREAMA_DATA_DIR)",
)


def load(fmt: str, path: Path, **options) -> tuple[list, ConversionReport]:
    report = ConversionReport(fmt, str(path))
    return list(read(fmt, path, report=report, **options)), report


def signature(doc) -> tuple:
    """Everything a reader puts on a Doc that must be equal between formats."""
    return (
        doc.user_data["doc_id"],
        doc.text,
        [t.text for t in doc],
        [(s.start, s.end, s.label_, s.kb_id_) for s in doc.ents],
        [(s.start, s.end, s.label_, s.kb_id_) for s in all_mentions(doc)],
        list(doc._.relations),
    )


def count_pubtator_lines(path: Path) -> tuple[int, int, int]:
    """Independent count: documents (title lines), mention lines, relation lines."""
    docs = mentions = relations = 0
    for line in path.read_text(encoding="utf-8").split("\n"):
        if re.match(r"^\d+\|t\|", line):
            docs += 1
        elif re.match(r"^\d+\t\d+\t\d+\t", line):
            mentions += 1
        elif re.match(r"^\d+\t[^\t\d][^\t]*\t", line):
            relations += 1
    return docs, mentions, relations


# -- real data: module-level fixtures read each corpus once --------------------------------
@pytest.fixture(scope="module")
def biored_dev():
    return load("pubtator", DATA_DIR / "biored" / "Dev.PubTator")


@pytest.fixture(scope="module")
def biored_train():
    return load("pubtator", DATA_DIR / "biored" / "Train.PubTator")


@pytest.fixture(scope="module")
def ddi_train():
    return load("ddi", DATA_DIR / "ddi2013" / "Train")


@needs_data
@pytest.mark.parametrize(
    "split,docs,mentions,relations",
    [("train", 400, 13351, 4178), ("dev", 100, 3533, 1162)],
)
def test_biored_pubtator_counts(request, split, docs, mentions, relations):
    result, report = request.getfixturevalue(f"biored_{split}")
    assert len(result) == report.documents == docs
    assert sum(len(all_mentions(d)) for d in result) == report.n_mentions == mentions
    assert sum(len(d._.relations) for d in result) == report.n_relations == relations
    assert report.unplaced == []
    assert set(report.mentions) == {
        "GeneOrGeneProduct",
        "DiseaseOrPhenotypicFeature",
        "ChemicalEntity",
        "OrganismTaxon",
        "SequenceVariant",
        "CellLine",
    }
    assert {r.novel for d in result for r in d._.relations} == {"Novel", "No"}


@needs_data
def test_biored_relations_anchor_on_first_mention_of_concept(biored_dev):
    docs, _ = biored_dev
    checked = 0
    for doc in docs:
        ents = sorted(doc.ents, key=lambda s: (s.start, s.end))
        by_offsets = {(e.start, e.end): e for e in ents}
        for rel in doc._.relations:
            for (start, end), cid in ((rel.head, rel.head_id), (rel.tail, rel.tail_id)):
                span = by_offsets[(start, end)]  # BioRED has no overflow: anchors are ents
                primary, secondary = split_concept_ids(span.kb_id_)
                assert cid in primary or cid in secondary
                first = next(e for e in ents if cid in split_concept_ids(e.kb_id_)[0])
                assert (first.start, first.end) == (start, end)
                checked += 1
    assert checked == 2 * 1162
    # variant ids contain "|" and are one concept: the relation names them whole
    variant = next(r for d in docs for r in d._.relations if r.head_id.startswith(("c|", "p|")))
    assert "|" in variant.head_id


@needs_data
def test_biored_bioc_xml_and_json_equal_pubtator(biored_dev):
    expected = [signature(d) for d in biored_dev[0]]
    for fmt, name in (("bioc-xml", "Dev.BioC.XML"), ("bioc-json", "Dev.BioC.JSON")):
        docs, report = load(fmt, DATA_DIR / "biored" / name)
        assert [signature(d) for d in docs] == expected, fmt
        assert report.unplaced == []


@needs_data
def test_biored_train_bioc_xml_equal_pubtator(biored_train):
    docs, _ = load("bioc-xml", DATA_DIR / "biored" / "Train.BioC.XML")
    assert [signature(d) for d in docs] == [signature(d) for d in biored_train[0]]


@needs_data
def test_biored_same_annotations_as_bioc_pubtator_reader(biored_dev):
    import bioc.pubtator

    with open(DATA_DIR / "biored" / "Dev.PubTator", encoding="utf-8") as fp:
        theirs = bioc.pubtator.load(fp)
    ours = biored_dev[0]
    assert [d.pmid for d in theirs] == [d.user_data["doc_id"] for d in ours]
    for ref, doc in zip(theirs, ours, strict=True):
        # bioc strips lines: abstracts lose their trailing spaces (offsets unaffected here)
        assert doc.text.rstrip() == ref.title + " " + ref.abstract
        got = sorted((s.start_char, s.end_char, s.label_, s.kb_id_) for s in all_mentions(doc))
        assert got == sorted((a.start, a.end, a.type, a.id) for a in ref.annotations)
        assert [(r.label, r.head_id, r.tail_id, r.novel) for r in doc._.relations] == [
            (r.type, r.id1, r.id2, r.neg) for r in ref.relations
        ]


@needs_data
@pytest.mark.parametrize(
    "name", ["CDR_TrainingSet.PubTator.txt", "CDR_DevelopmentSet.PubTator.txt"]
)
def test_bc5cdr_counts_and_composite_ids(name):
    path = DATA_DIR / "bc5cdr" / name
    docs, report = load("pubtator", path)
    assert (report.documents, report.n_mentions, report.n_relations) == count_pubtator_lines(path)
    assert report.unplaced == []
    assert set(report.relations) == {"CID"}
    assert set(report.mentions) == {"Chemical", "Disease"}
    # composite mention "A|B": kb_id_ verbatim, a CID relation to B anchors on it
    doc = next(d for d in docs if d.user_data["doc_id"] == "1545575")
    composite = next(s for s in all_mentions(doc) if s.kb_id_ == "D006470|D003556")
    rel = next(r for r in doc._.relations if r.tail_id == "D003556")
    assert rel.tail == (composite.start, composite.end)


@needs_data
def test_ncbi_disease_counts_and_trailing_space_mention():
    dev_path = DATA_DIR / "ncbi_disease" / "NCBIdevelopset_corpus.txt"
    dev_docs, dev = load("ncbi-disease", dev_path)
    assert (dev.documents, dev.n_mentions) == count_pubtator_lines(dev_path)[:2] == (100, 787)
    train_path = DATA_DIR / "ncbi_disease" / "NCBItrainset_corpus.txt"
    docs, report = load("ncbi-disease", train_path)
    assert (report.documents, report.n_mentions) == count_pubtator_lines(train_path)[:2]
    assert (report.documents, report.n_mentions) == (593, 5145)
    assert report.unplaced == []
    # the mention whose text column has two trailing spaces keeps its (correct) offsets
    doc = next(d for d in docs if d.user_data["doc_id"] == "10923035")
    span = next(s for s in all_mentions(doc) if s.start_char == 711)
    assert (span.end_char, span.text) == (761, 'generalized epilepsy and febrile seizures " plus "')
    assert any(i.doc_id == "10923035" and i.start == 711 for i in report.adjusted)
    # a leading space in an id column (" D008661") is removed and reported
    first = dev_docs[0]
    assert first.user_data["doc_id"] == "8808605"
    assert first.ents[0].kb_id_ == "D008661"
    assert any(i.doc_id == "8808605" and "whitespace" in i.reason for i in dev.adjusted)
    assert sum(d.user_data["doc_id"] == "8528200" for d in docs) == 2  # in the file twice


@needs_data
def test_ddi_counts_and_choices(ddi_train):
    from lxml import etree

    docs, report = ddi_train
    n_docs = n_ents = n_disc = 0
    pair_labels: Counter = Counter()
    for file in (DATA_DIR / "ddi2013" / "Train").rglob("*.xml"):
        root = etree.parse(str(file)).getroot()
        n_docs += 1
        for ent in root.iter("entity"):
            n_ents += 1
            n_disc += ";" in ent.get("charOffset")
        for pair in root.iter("pair"):
            pair_labels[pair.get("type") or ("int" if pair.get("ddi") == "true" else "false")] += 1
    assert report.documents == n_docs == 714
    # one entity (DDI-DrugBank.d216.s16.e2) has offsets one character off: it and its four
    # pairs are reported, everything else is placed
    unplaced_ents = [i for i in report.unplaced if i.start is not None]
    assert [i.doc_id for i in unplaced_ents] == ["DDI-DrugBank.d216"]
    assert report.n_mentions == n_ents - 1 == 14764
    assert len(report.unplaced) == 5
    assert report.n_relations == sum(pair_labels.values()) - 4 == 27788
    assert report.relations["int"] == pair_labels["int"] == 189
    assert report.relations["false"] == pair_labels["false"] - 4
    # the typeless interaction is labelled "int" and reported
    typeless = [i for i in report.adjusted if "without a type" in i.reason]
    assert [i.doc_id for i in typeless] == ["DDI-DrugBank.d236"]
    # discontinuous entities: one covering span each, fragments kept, all reported
    assert n_disc == 38
    assert sum(len(d.user_data.get("discontinuous", {})) for d in docs) == n_disc - 1
    assert sum("discontinuous" in i.reason for i in report.adjusted) == n_disc
    # sentences: one span per non-empty sentence, doc.sents agrees
    assert sum(len(d.spans["sentences"]) for d in docs) == sum(len(list(d.sents)) for d in docs)


@needs_data
@pytest.mark.parametrize(
    "fmt,path,header",
    [
        ("gad", "gad/train.tsv", False),
        ("euadr", "euadr/train.tsv", False),
        ("chemprot", "chemprot/train.tsv", True),
    ],
)
def test_pair_tsv_counts(fmt, path, header):
    lines = [
        line.rstrip("\r")
        for line in (DATA_DIR / path).read_text(encoding="utf-8").split("\n")
        if line.strip()
    ]
    if header:
        lines = lines[1:]
    labels = Counter(line.rsplit("\t", 1)[1] for line in lines)
    docs, report = load(fmt, DATA_DIR / path)
    assert report.documents == len(docs) == len(lines)
    unplaced = Counter(i.annotation.split("(")[0] for i in report.unplaced)
    assert report.relations + unplaced == labels
    for doc in docs[:200]:
        assert len(doc.ents) == 2
        (rel,) = doc._.relations
        by_id = {e.kb_id_: e for e in doc.ents}
        head, tail = by_id[rel.head_id], by_id[rel.tail_id]
        assert (head.start, head.end, tail.start, tail.end) == (*rel.head, *rel.tail)
        assert (head.kb_id_, tail.kb_id_) == (rel.head_id, rel.tail_id)
        assert head.label_ in ("GENE", "CHEMICAL") and tail.label_ in ("DISEASE", "GENE")
    if fmt == "chemprot":
        # 24 lines where the chemical placeholder is missing: Doc kept, relation reported
        assert len(report.unplaced) == 24
        assert all("BC6ENT" in i.reason for i in report.unplaced)
    else:
        assert report.unplaced == []
        assert set(report.relations) == {"0", "1"}


@needs_data
def test_pubmedqa():
    path = DATA_DIR / "pubmedqa" / "pqal_trainval.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    docs, report = load("pubmedqa", path)
    assert report.documents == len(raw) == 500
    assert report.doc_labels == Counter(v["final_decision"] for v in raw.values())
    doc = docs[0]
    item = raw[doc.user_data["doc_id"]]
    assert doc.user_data["question"] == item["QUESTION"]
    assert doc.user_data["answer"] == item["final_decision"]
    assert doc.cats[item["final_decision"]] == 1.0 and sum(doc.cats.values()) == 1.0
    assert [s.text for s in doc.spans["sections"]] == item["CONTEXTS"]
    assert [s.label_ for s in doc.spans["sections"]] == item["LABELS"]


# -- synthetic fixtures ------------------------------------------------------------------
def test_pubtator_multi_ids_overlap_and_reports():
    report = ConversionReport("pubtator")
    doc, doc2 = read_pubtator(FIXTURES / "mini.pubtator", report=report)
    assert doc.user_data["doc_id"] == "111"
    mentions = {s.text: s for s in all_mentions(doc)}
    assert len(mentions) == 7
    assert mentions["ibuprofen"].kb_id_ == "D007052,D000894"  # verbatim
    assert mentions["c.68_69delAG"].kb_id_ == "c|DEL|68_69|AG;RS#:80357914"
    # "gastric" overlaps "gastric ulcer": kept in the overflow group, counted
    assert [s.text for s in doc.spans[OVERFLOW_KEY]] == ["gastric"]
    assert "gastric ulcer" in [e.text for e in doc.ents]
    assert report.overflow == 1
    rels = {(r.head_id, r.tail_id): r for r in doc._.relations}
    # a second id of a "," list, a "|" composite, an id containing "|"
    assert rels[("D000894", "D013276")].head_span(doc).text == "ibuprofen"
    assert rels[("672", "D010051")].tail_span(doc).text == "Breast and ovarian cancer"
    assert rels[("672", "D010051")].novel == "Novel"
    variant = rels[("c|DEL|68_69|AG", "D001943")]
    assert variant.head_span(doc).text == "c.68_69delAG"
    assert variant.novel == "No" and rels[("D001241", "D013276")].novel is None
    # unplaceable: relation to an absent concept, text mismatch, offsets outside
    reasons = {(i.doc_id, i.start): i.reason for i in report.unplaced}
    assert len(report.unplaced) == 3
    assert "D999999" in reasons[("111", None)]
    assert "not the annotated text" in reasons[("222", 0)]
    assert "outside" in reasons[("222", 100)]
    assert [e.text for e in doc2.ents] == ["document"]
    text = report.format()
    assert "documents: 2" in text and "overflow:  1" in text
    assert "222 [100:105] 'xxxxx' (Disease):" in text


def test_ddi_fixture_choices():
    report = ConversionReport("ddi")
    (doc,) = read_ddi(FIXTURES / "mini_ddi.xml", report=report)
    assert doc.text == (
        "Aspirin increases the effect of warfarin. Avoid loop or thiazide diuretics with lithium."
    )
    assert [s.kb_id_ for s in doc.spans["sentences"]] == ["DDI-Mini.d1.s0", "DDI-Mini.d1.s2"]
    assert [s.text for s in doc.sents] == [s.text for s in doc.spans["sentences"]]
    loop = next(s for s in all_mentions(doc) if s.kb_id_ == "DDI-Mini.d1.s2.e0")
    assert loop.text == "loop or thiazide diuretics"  # covering span
    start = loop.start_char
    assert doc.user_data["discontinuous"]["DDI-Mini.d1.s2.e0"] == (
        (start, start + 4),
        (start + 17, start + 26),
    )
    assert [s.kb_id_ for s in doc.spans[OVERFLOW_KEY]] == ["DDI-Mini.d1.s2.e1"]
    labels = {(r.head_id[-5:], r.tail_id[-5:]): r.label for r in doc._.relations}
    assert labels == {
        ("s0.e0", "s0.e1"): "effect",
        ("s2.e0", "s2.e1"): "false",
        ("s2.e0", "s2.e2"): "advise",
        ("s2.e1", "s2.e2"): "int",
    }
    rel = doc._.relations[0]
    assert (rel.head_span(doc).text, rel.tail_span(doc).text) == ("Aspirin", "warfarin")
    assert any("without a type" in i.reason for i in report.adjusted)
    (other,) = read_ddi(FIXTURES / "mini_ddi.xml", untyped_label="unknown")
    assert "unknown" in {r.label for r in other._.relations}


def test_bioc_json_nodes_and_discontinuous(tmp_path):
    text = "Aspirin and warfarin interact."
    collection = {
        "source": "x",
        "documents": [
            {
                "id": "d1",
                "passages": [
                    {
                        "offset": 0,
                        "text": text,
                        "annotations": [
                            {
                                "id": "T1",
                                "infons": {"type": "Chemical", "identifier": "D001241"},
                                "text": "Aspirin",
                                "locations": [{"offset": 0, "length": 7}],
                            },
                            {
                                "id": "T2",
                                "infons": {"type": "Chemical"},
                                "text": "Aspirin warfarin",
                                "locations": [
                                    {"offset": 12, "length": 8},
                                    {"offset": 0, "length": 7},
                                ],
                            },
                        ],
                    }
                ],
                "relations": [
                    {
                        "id": "R1",
                        "infons": {"type": "DDI"},
                        "nodes": [{"refid": "T1", "role": "a"}, {"refid": "T2", "role": "b"}],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(collection))
    report = ConversionReport()
    (doc,) = read_bioc_json(path, report=report)
    (rel,) = doc._.relations
    assert (rel.head_id, rel.tail_id, rel.label) == ("D001241", "T2", "DDI")
    assert rel.tail_span(doc).text == "Aspirin and warfarin"
    assert doc.user_data["discontinuous"]["T2"] == ((0, 7), (12, 20))
    assert len(report.adjusted) == 1 and report.unplaced == []


def test_ncbi_inline_layout(tmp_path):
    path = tmp_path / "NCBI_corpus_mini.txt"
    path.write_text(
        '1\tA <category="SpecificDisease">colon cancer</category> case.\t'
        'Seen with <category="Modifier">ataxia</category>.\n'
    )
    (doc,) = read_ncbi_disease(path)
    assert doc.text == "A colon cancer case. Seen with ataxia."
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("colon cancer", "SpecificDisease"),
        ("ataxia", "Modifier"),
    ]


def test_pair_tsv_placeholders(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text(
        "sentence\tlabel\r\nBC6ENTC inhibits BC6ENTG via BC6OTHER.\tCPR:4\r\n"
        "Only BC6ENTG here.\tFalse\r\n"
    )
    report = ConversionReport()
    doc, lone = read_pair_tsv(path, scheme="chemprot", report=report)
    assert [(e.text, e.label_, e.kb_id_) for e in doc.ents] == [
        ("BC6ENTC", "CHEMICAL", "BC6ENTC"),
        ("BC6ENTG", "GENE", "BC6ENTG"),
    ]
    assert [(r.label, r.head_span(doc).text) for r in doc._.relations] == [("CPR:4", "BC6ENTC")]
    assert lone._.relations == () and [e.text for e in lone.ents] == ["BC6ENTG"]
    assert report.unplaced[0].doc_id == "chemprot:train:3"
    gad = tmp_path / "gad.tsv"
    gad.write_text("The @GENE$ variant and @DISEASE$.\t0\n")
    (doc,) = read(format="gad", path=gad)
    assert [e.label_ for e in doc.ents] == ["GENE", "DISEASE"]
    assert doc._.relations[0].label == "0"


@pytest.mark.parametrize(
    "fmt,name,content,line",
    [
        ("pubtator", "a.pubtator", "1|t|Title\n1|a|Abs\n1\t0\t5\tTitle\n", 3),
        ("pubtator", "b.pubtator", "1|t|Title\n1\tx\ty\tTitle\tT\tID\n", 2),
        ("pubtator", "c.pubtator", "1|t|Title\n2\t0\t5\tTitle\tT\tID\n", 2),
        ("pubtator", "d.pubtator", "1\t0\t5\tTitle\tT\tID\n", 1),
        ("ncbi-disease", "e.txt", "\n1|t|Title\n1\t0\t5\tTitle\n", 3),
        ("gad", "f.tsv", "ok @GENE$ @DISEASE$\t1\nno label here\n", 2),
        ("chemprot", "g.tsv", "sentence\tlabel\nBC6ENTC BC6ENTG\t\n", 2),
        ("ddi", "h.xml", '<document id="d">\n<sentence id="s" text="ab">\n<entity', 3),
        (
            "ddi",
            "i.xml",
            '<document id="d">\n<sentence id="s" text="ab">\n'
            '<entity id="e" charOffset="0to1" type="drug" text="ab"/>\n</sentence>\n</document>',
            3,
        ),
        ("bioc-xml", "j.xml", "<collection>\n<document>\n</collection>", 3),
        ("bioc-json", "k.json", '{"documents": [\n{"id": "1",}\n]}', 2),
        ("pubmedqa", "l.json", '{"1": {\n"QUESTION": }', 2),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, fmt, name, content, line):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CorpusFormatError) as info:
        list(read(fmt, path))
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == str(path) and err.line == line
    assert str(err).startswith(f"{path}:{line}: ")


def test_malformed_structure_without_line(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"1": {"QUESTION": "q?", "CONTEXTS": "not a list"}}))
    with pytest.raises(CorpusFormatError, match="q.json: entry 1: needs QUESTION"):
        list(read_pubmedqa(path))
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"ok @GENE$ @DISEASE$\t1\n\xff\xfe\t0\n")
    with pytest.raises(CorpusFormatError, match=r"bad.tsv:2: not valid UTF-8"):
        list(read("gad", bad))


def test_docbin_round_trip_is_exact(tmp_path):
    qa = tmp_path / "qa.json"
    qa.write_text(
        json.dumps(
            {
                "9": {
                    "QUESTION": "Does it work?",
                    "CONTEXTS": ["First part.", "Second part."],
                    "LABELS": ["BACKGROUND", "RESULTS"],
                    "final_decision": "maybe",
                    "MESHES": ["Humans"],
                }
            }
        )
    )
    docs = [
        *read_pubtator(FIXTURES / "mini.pubtator"),
        *read_ddi(FIXTURES / "mini_ddi.xml"),
        *read_pubmedqa(qa),
    ]
    assert any(OVERFLOW_KEY in d.spans for d in docs)
    data = DocBin(store_user_data=True, docs=docs).to_bytes()
    back = list(DocBin(store_user_data=True).from_bytes(data).get_docs(spacy.blank("en").vocab))
    assert len(back) == len(docs)

    def groups(doc):
        return {k: [(s.start, s.end, s.label_, s.kb_id_) for s in g] for k, g in doc.spans.items()}

    for a, b in zip(docs, back, strict=True):
        assert signature(a) == signature(b)
        assert groups(a) == groups(b)
        assert all(isinstance(r, Relation) for r in b._.relations)
        assert a.cats == b.cats
        assert [t.is_sent_start for t in a] == [t.is_sent_start for t in b]
        for key in ("doc_id", "discontinuous", "question", "answer", "meshes"):
            assert a.user_data.get(key) == b.user_data.get(key)


def test_convert_writes_docbin_and_report(tmp_path):
    src = tmp_path / "train.tsv"
    src.write_text("A @GENE$ and @DISEASE$.\t1\nB @GENE$ or @DISEASE$.\t0\n")
    out = tmp_path / "out" / "euadr.spacy"
    report = convert("euadr", src, out, progress=False)
    docs = list(DocBin().from_disk(out).get_docs(spacy.blank("en").vocab))
    assert [d.user_data["doc_id"] for d in docs] == ["euadr:train:1", "euadr:train:2"]
    assert [d._.relations[0].label for d in docs] == ["1", "0"]
    assert report.to_dict()["relations_per_type"] == {"0": 1, "1": 1}
    text = str(report)
    assert "documents: 2" in text and "mentions:  4" in text and "DISEASE  2" in text
    with pytest.raises(ValueError, match="Unknown corpus format"):
        convert("nope", src, out)
    assert set(FORMATS) == {
        "pubtator",
        "ncbi-disease",
        "bioc-xml",
        "bioc-json",
        "ddi",
        "gad",
        "euadr",
        "chemprot",
        "pubmedqa",
        "brat",
        "jsonl",
    }
