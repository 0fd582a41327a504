"""Exports: every writer's output read back by our reader gives the same Docs (BioRED dev,
all 100 documents; a synthetic predicted document with overlapping mentions, composite
ids and scores), the title/abstract split, bad input to the brat and JSONL readers, and
the `export` command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_bioreama.annotations.relations import Relation
from spacy_bioreama.annotations.spans import OVERFLOW_KEY, all_mentions, set_entities
from spacy_bioreama.cli import app
from spacy_bioreama.corpora import ConversionReport, CorpusFormatError, read
from spacy_bioreama.export import FORMATS, PASSAGES_KEY, export_docs, pubtator_text

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("BIOREAMA_DATA_DIR", REPO.parent / "shared" / "data"))
DEV = DATA_DIR / "biored" / "Dev.PubTator"
needs_data = pytest.mark.skipif(
    not DEV.exists(), reason=f"BioRED not found under {DATA_DIR} (set BIOREAMA_DATA_DIR)"
)
runner = CliRunner()


def mentions(doc) -> list[tuple]:
    return sorted((s.start_char, s.end_char, s.label_, s.kb_id_) for s in all_mentions(doc))


def relations(doc, with_anchors: bool = True, with_scores: bool = False) -> list[tuple]:
    out = []
    for r in doc._.relations:
        row = (r.head_id, r.tail_id, r.label, r.novel)
        if with_anchors:
            h, t = r.head_span(doc), r.tail_span(doc)
            row += ((h.start_char, h.end_char), (t.start_char, t.end_char))
        if with_scores:
            row += (round(r.score, 6),)
        out.append(row)
    return out


def signature(doc, **kw) -> tuple:
    return (
        doc.user_data["doc_id"],
        doc.text,
        mentions(doc),
        sorted((s.start_char, s.end_char, s.label_, s.kb_id_) for s in doc.ents),
        relations(doc, **kw),
    )


def output_path(tmp_path: Path, fmt: str) -> Path:
    return tmp_path / ("brat_out" if FORMATS[fmt].folder else f"out.{fmt}")


def round_trip(docs, tmp_path: Path, fmt: str):
    out = output_path(tmp_path, fmt)
    export_report = export_docs(docs, out, fmt, progress=False)
    report = ConversionReport(fmt, str(out))
    back = list(read(FORMATS[fmt].reader, out, report=report))
    return back, export_report, report


@pytest.fixture(scope="module")
def dev_docs():
    return list(read("pubtator", DEV))


@needs_data
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_biored_dev_round_trip(dev_docs, tmp_path, fmt):
    assert len(dev_docs) == 100
    back, export_report, report = round_trip(dev_docs, tmp_path, fmt)
    assert export_report.documents == 100
    assert export_report.n_mentions == sum(len(all_mentions(d)) for d in dev_docs)
    assert export_report.n_relations == sum(len(d._.relations) for d in dev_docs) > 1000
    assert not export_report.adjusted and not export_report.skipped
    assert not report.unplaced and not report.adjusted
    ids = [d.user_data["doc_id"] for d in dev_docs]
    back_ids = [d.user_data["doc_id"] for d in back]
    # brat is a folder of files: read back in file-name order
    assert back_ids == (sorted(ids, key=int) if fmt == "brat" else ids)
    by_id = {d.user_data["doc_id"]: d for d in back}
    for doc in dev_docs:
        again = by_id[doc.user_data["doc_id"]]
        assert signature(again) == signature(doc)
        assert [t.text for t in again] == [t.text for t in doc]


@needs_data
def test_pubtator_export_reproduces_the_biored_file(dev_docs):
    """Mention and relation lines are the original's; titles split where BioRED splits
    them but for the odd title that holds a question mark ('benefit? A ...')."""
    original = [line for line in DEV.read_text(encoding="utf8").splitlines() if line]
    written = [line for line in pubtator_text(dev_docs).splitlines() if line]
    annotations = lambda lines: sorted(x for x in lines if "|t|" not in x and "|a|" not in x)  # noqa: E731
    assert annotations(written) == annotations(original)
    titles = lambda lines: {x for x in lines if "|t|" in x}  # noqa: E731
    assert len(titles(original) - titles(written)) <= 2


def predicted_doc():
    """A predicted-style Doc: nested and same-offset mentions (overflow), a composite
    id, a mention without id, relations with scores, one without novelty."""
    nlp = spacy.blank("en")
    text = "BRCA1 mutations cause breast cancer. In mice, breast cancer and tamoxifen: no."
    doc = nlp.make_doc(text)

    def span(sub: str, label: str, kb: str, nth: int = 0):
        start = -1
        for _ in range(nth + 1):
            start = text.index(sub, start + 1)
        return doc.char_span(start, start + len(sub), label=label, kb_id=kb)

    spans = [
        span("BRCA1", "GeneOrGeneProduct", "672"),
        span("BRCA1 mutations", "SequenceVariant", "brca1 mutations"),
        span("breast cancer", "DiseaseOrPhenotypicFeature", "D001943,D009369"),
        span("breast", "DiseaseOrPhenotypicFeature", ""),  # nested, no id
        span("breast cancer", "DiseaseOrPhenotypicFeature", "D001943", 1),
        span("breast cancer", "ChemicalEntity", "breast cancer", 1),  # same offsets
        span("mice", "OrganismTaxon", "10090"),
        span("tamoxifen", "ChemicalEntity", "D013629"),
    ]
    set_entities(doc, spans)
    assert len(doc.spans[OVERFLOW_KEY]) >= 2
    gene, variant, disease, _, disease2, _, _, chem = spans
    doc._.relations = [
        Relation((gene.start, gene.end), (disease.start, disease.end), "672", "D001943",
                 "Positive_Correlation", 0.8125, "Novel"),
        Relation((variant.start, variant.end), (disease.start, disease.end), "brca1 mutations",
                 "D009369", "Association", 0.25, None),
        # anchored on the second mention of D001943, the one next to tamoxifen
        Relation((chem.start, chem.end), (disease2.start, disease2.end), "D013629", "D001943",
                 "Negative_Correlation", 1.0, "No"),
    ]  # fmt: skip
    doc.user_data["doc_id"] = "pred-1"
    return doc


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_predicted_doc_round_trip(tmp_path, fmt):
    doc = predicted_doc()
    back, export_report, report = round_trip([doc], tmp_path, fmt)
    assert not report.unplaced and not export_report.skipped
    (again,) = back
    assert again.user_data["doc_id"] == "pred-1"
    assert again.text == doc.text
    assert mentions(again) == mentions(doc)
    assert len(again.spans[OVERFLOW_KEY]) == len(doc.spans[OVERFLOW_KEY])
    # PubTator relations name concepts only: re-anchored on a concept's first mention,
    # without scores; the others keep the representative mentions (BioC: nodes) and scores
    exact = fmt != "pubtator"
    assert relations(again, with_anchors=exact, with_scores=exact) == relations(
        doc, with_anchors=exact, with_scores=exact
    )


def test_bioc_export_keeps_scores_and_nodes(tmp_path):
    import bioc.biocxml

    doc = predicted_doc()
    export_docs([doc], tmp_path / "p.xml", "bioc-xml", progress=False)
    with open(tmp_path / "p.xml", "rb") as fp:
        (document,) = bioc.biocxml.load(fp).documents
    assert [p.infons["type"] for p in document.passages] == ["title", "abstract"]
    rel = document.relations[0]
    assert rel.infons["score"] == "0.8125" and rel.infons["novel"] == "Novel"
    anns = {a.id: a for p in document.passages for a in p.annotations}
    assert [anns[n.refid].text for n in rel.nodes] == ["BRCA1", "breast cancer"]
    assert "novel" not in document.relations[1].infons


def test_stored_passages_decide_the_title(tmp_path):
    doc = predicted_doc()
    assert pubtator_text([doc]).startswith("pred-1|t|BRCA1 mutations cause breast cancer.\n")
    doc.user_data[PASSAGES_KEY] = [[0, "title"], [doc.text.index("breast cancer and"), "abstract"]]
    lines = pubtator_text([doc]).splitlines()
    assert lines[0] == "pred-1|t|BRCA1 mutations cause breast cancer. In mice,"
    assert lines[1] == "pred-1|a|breast cancer and tamoxifen: no."
    (again,) = round_trip([doc], tmp_path, "pubtator")[0]
    assert again.text == doc.text and mentions(again) == mentions(doc)


def test_line_breaks(tmp_path):
    nlp = spacy.blank("en")
    doc = nlp.make_doc("Title line.\nAcute\nleukemia here.")
    set_entities(doc, [doc.char_span(12, 26, label="Disease", kb_id="D015470")])
    doc.user_data["doc_id"] = "nl"
    report = export_docs([doc], tmp_path / "nl.pubtator", "pubtator", progress=False)
    assert any("line break" in a for a in report.adjusted)
    (again,) = read("pubtator", tmp_path / "nl.pubtator")
    assert again.text == doc.text.replace("\n", " ") and mentions(again)[0][:2] == (12, 26)
    # brat: the text is kept verbatim; the mention is written in two fragments
    export_docs([doc], tmp_path / "b", "brat", progress=False)
    assert "T1\tDisease 12 17;18 26\tAcute leukemia" in (tmp_path / "b" / "nl.ann").read_text()
    (again,) = read("brat", tmp_path / "b")
    assert again.text == doc.text and mentions(again) == mentions(doc)
    assert again.user_data["discontinuous"] == {"T1": ((12, 17), (18, 26))}


# -- bad input to the new readers ---------------------------------------------------
def test_brat_offsets_past_the_text_are_reported_with_file_and_line(tmp_path):
    (tmp_path / "d1.txt").write_text("Aspirin helps.", encoding="utf8")
    (tmp_path / "d1.ann").write_text(
        "T1\tChemical 0 7\tAspirin\nT2\tChemical 9 40\thelps.\nR1\tTreats Arg1:T1 Arg2:T2\n",
        encoding="utf8",
    )
    report = ConversionReport("brat", str(tmp_path))
    (doc,) = read("brat", tmp_path, report=report)
    assert mentions(doc) == [(0, 7, "Chemical", "")]
    reasons = [i.reason for i in report.unplaced]
    assert any(f"{tmp_path / 'd1.ann'}:2" in r and "outside the text" in r for r in reasons)
    assert any("T2" in r for r in reasons)  # the relation on it is reported too
    assert doc._.relations == ()


def test_brat_malformed_lines(tmp_path):
    (tmp_path / "d.txt").write_text("abc def", encoding="utf8")
    ann = tmp_path / "d.ann"
    for bad, message in (
        ("T1\tX 0 3\tabc\nT2\tX zero 3\tabc\n", "bad offsets"),
        ("T1\tX 0 3\tabc\nR1\tRel T1\n", "Arg1"),
        ("T1\tX 0 3\tabc\nQ1\tsomething\n", "unknown annotation line"),
    ):
        ann.write_text(bad, encoding="utf8")
        with pytest.raises(CorpusFormatError, match=message) as err:
            list(read("brat", tmp_path))
        assert err.value.path == str(ann) and err.value.line == 2
    (tmp_path / "orphan.ann").write_text("", encoding="utf8")
    with pytest.raises(CorpusFormatError, match="no text file orphan.txt"):
        list(read("brat", tmp_path))


def test_brat_hand_written_files(tmp_path):
    """Files from brat itself: normalisations, no notes, events and other attributes."""
    (tmp_path / "x.txt").write_text("Aspirin reduces fever.", encoding="utf8")
    (tmp_path / "x.ann").write_text(
        "T1\tChemical 0 7\tAspirin\nN1\tReference T1 MESH:D001241\tAspirin\n"
        "T2\tDisease 16 21\tfever\nR1\tTreats Arg1:T1 Arg2:T2\nA1\tNegated R1\n"
        "E1\tTreat:T1 Theme:T2\n",
        encoding="utf8",
    )
    report = ConversionReport("brat", str(tmp_path))
    (doc,) = read("brat", tmp_path / "x.ann", report=report)
    assert mentions(doc) == [(0, 7, "Chemical", "MESH:D001241"), (16, 21, "Disease", "")]
    assert relations(doc, with_anchors=False) == [("MESH:D001241", "fever", "Treats", None)]
    assert len(report.adjusted) == 2  # the event and the attribute, reported


def test_jsonl_bad_lines_name_file_and_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    good = json.dumps({"id": "a", "text": "Aspirin."})
    path.write_text(good + "\n\n{not json\n", encoding="utf8")
    with pytest.raises(CorpusFormatError, match=rf"{path}:3: not valid JSON"):
        list(read("jsonl", path))
    for record, message in (
        ([1, 2], "must be a JSON object"),
        ({"id": "b"}, "'title' must be str, is missing"),
        ({"text": "x", "entities": [{"start": "0", "end": 1, "label": "X"}]}, r"entities\[0\]"),
        ({"text": "x", "relations": [{"head_id": "a", "tail_id": "b", "label": "R",
                                      "score": 2}]}, "score must be in"),
    ):  # fmt: skip
        path.write_text(good + "\n" + json.dumps(record) + "\n", encoding="utf8")
        with pytest.raises(CorpusFormatError, match=message) as err:
            list(read("jsonl", path))
        assert str(err.value).startswith(f"{path}:2: ")


def test_jsonl_plain_records(tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text(
        json.dumps({"title": "Aspirin.", "abstract": "It helps."})
        + "\n"
        + json.dumps({"id": 7, "text": "Fever.", "entities": [
            {"start": 0, "end": 5, "label": "Disease", "text": "Fevers"}]})
        + "\n",
        encoding="utf8",
    )  # fmt: skip
    report = ConversionReport("jsonl", str(path))
    first, second = read("jsonl", path, report=report)
    assert first.text == "Aspirin. It helps." and first.user_data["doc_id"] == "plain-1"
    assert second.user_data["doc_id"] == "7" and not second.ents
    assert len(report.unplaced) == 1 and "not the annotated text" in report.unplaced[0].reason


# -- the command --------------------------------------------------------------------
def test_export_command(tmp_path):
    doc = predicted_doc()
    docbin = tmp_path / "pred.spacy"
    DocBin(docs=[doc], store_user_data=True).to_disk(docbin)
    out = tmp_path / "pred.jsonl"
    result = runner.invoke(app, ["export", str(docbin), str(out), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    assert "documents: 1" in result.output and "relations: 3" in result.output
    record = json.loads(out.read_text(encoding="utf8"))
    assert record["id"] == "pred-1" and len(record["entities"]) == len(mentions(doc))
    assert record["relations"][0]["score"] == 0.8125

    result = runner.invoke(app, ["export", str(docbin), str(tmp_path / "b"), "--format", "brat"])
    assert result.exit_code == 0, result.output
    back = tmp_path / "back.spacy"
    result = runner.invoke(app, ["convert", "brat", str(tmp_path / "b"), str(back)])
    assert result.exit_code == 0, result.output
    (again,) = DocBin().from_disk(back).get_docs(spacy.blank("en").vocab)
    assert relations(again, with_scores=True) == relations(doc, with_scores=True)

    result = runner.invoke(app, ["export", str(tmp_path / "missing.spacy"), str(out)])
    assert result.exit_code == 1 and "not found" in result.output
    empty = tmp_path / "empty.spacy"
    DocBin().to_disk(empty)
    result = runner.invoke(app, ["export", str(empty), str(out)])
    assert result.exit_code == 1 and "holds no documents" in result.output
    result = runner.invoke(app, ["export", str(docbin), str(out), "--format", "tsv"])
    assert result.exit_code == 1 and "unknown format 'tsv'" in result.output
