"""annotate-corpus's input side (`corpus_annotation.sources`): streamed Docs equal the
corpus readers' on BioRED dev (../shared/data or $BIOREAMA_DATA_DIR), broken documents
become error items while the rest of the shard is read, inputs expand, formats are
told, documents are counted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import spacy

from spacy_bioreama.corpora import CorpusFormatError, read
from spacy_bioreama.corpora.pubtator import PubTatorLineError, parse_pubtator
from spacy_bioreama.corpus_annotation import sources
from spacy_bioreama.corpus_annotation.sources import (
    INPUT_FORMATS,
    SourceItem,
    count_documents,
    detect_format,
    expand_inputs,
    iter_source,
)
from spacy_bioreama.export import jsonl_text
from tests.test_corpora import DATA_DIR, signature

BIORED = DATA_DIR / "biored"
needs_data = pytest.mark.skipif(
    not (BIORED / "Dev.PubTator").exists(),
    reason=f"BioRED dev not found under {DATA_DIR} (set BIOREAMA_DATA_DIR)",
)
DEV_FILES = [
    ("Dev.PubTator", "pubtator"),
    ("Dev.BioC.XML", "bioc-xml"),
    ("Dev.BioC.JSON", "bioc-json"),
]


@pytest.fixture(scope="module")
def make_doc():
    return spacy.blank("en").make_doc


@pytest.fixture(scope="module")
def dev_docs(make_doc):
    return list(read("pubtator", BIORED / "Dev.PubTator", make_doc=make_doc))


def docs_of(items: list[SourceItem]) -> list:
    return [item.doc for item in items if item.doc is not None]


def errors_of(items: list[SourceItem]) -> list[SourceItem]:
    return [item for item in items if item.error is not None]


# -- BioRED dev: the same Docs as the corpus readers ------------------------------------------
@needs_data
@pytest.mark.parametrize("name,fmt", DEV_FILES)
def test_biored_dev_streams_the_readers_docs(name, fmt, make_doc, dev_docs):
    path = BIORED / name
    items = list(iter_source(path, fmt, make_doc))
    assert errors_of(items) == []
    expected = [signature(d) for d in read(fmt, path, make_doc=make_doc)]
    assert [signature(item.doc) for item in items] == expected
    # and the three formats agree with each other (BioRED is one corpus in three files)
    assert [signature(item.doc) for item in items] == [signature(d) for d in dev_docs]
    assert [item.doc_id for item in items] == [d.user_data["doc_id"] for d in dev_docs]
    assert all(isinstance(item.doc_id, str) for item in items)
    if fmt == "pubtator":
        assert items[0].where == "line 1"
        assert items[1].where == f"line {len(_blocks(path.read_text())[0].splitlines()) + 2}"
    else:
        assert [item.where for item in items] == [f"document {i}" for i in range(1, 101)]
    assert detect_format(path) == fmt
    assert count_documents(path, fmt) == len(items) == 100


@needs_data
def test_biored_dev_as_jsonl_and_text(tmp_path, make_doc, dev_docs):
    records = tmp_path / "dev.jsonl"
    records.write_text(jsonl_text(dev_docs), encoding="utf8")
    items = list(iter_source(records, "jsonl", make_doc))
    assert errors_of(items) == []
    assert [signature(i.doc) for i in items] == [signature(d) for d in read("jsonl", records)]
    assert [signature(i.doc) for i in items] == [signature(d) for d in dev_docs]
    assert count_documents(records, "jsonl") == 100

    texts = tmp_path / "dev.txt"
    texts.write_text("\n\n".join(d.text for d in dev_docs) + "\n", encoding="utf8")
    assert detect_format(texts) == "text"
    items = list(iter_source(texts, "text", make_doc))
    assert [i.doc.text for i in items] == [d.text for d in dev_docs]
    assert [i.doc_id for i in items] == [f"dev-{2 * k + 1}" for k in range(100)]
    assert count_documents(texts, "text") == 100


@needs_data
def test_count_bioc_xml_tags_across_chunk_edges(monkeypatch):
    monkeypatch.setattr(sources, "_CHUNK_BYTES", 997)
    assert count_documents(BIORED / "Dev.BioC.XML", "bioc-xml") == 100


# -- PubTator: a broken document is skipped up to the next blank line ----------------------
def _pubtator_doc(pmid: int) -> str:
    title = f"Aspirin and gene{pmid} in asthma."
    abstract = f"Aspirin binds gene{pmid}."
    gene = f"gene{pmid}"
    a2 = len(title) + 1
    return "\n".join(
        [
            f"{pmid}|t|{title}",
            f"{pmid}|a|{abstract}",
            f"{pmid}\t0\t7\tAspirin\tChemicalEntity\tD001241",
            f"{pmid}\t12\t{12 + len(gene)}\t{gene}\tGeneOrGeneProduct\t{pmid}",
            f"{pmid}\t{a2}\t{a2 + 7}\tAspirin\tChemicalEntity\tD001241",
            f"{pmid}\tBind\tD001241\t{pmid}\tNovel",
        ]
    )


def _blocks(text: str) -> list[str]:
    return [b for b in text.split("\n\n") if b.strip()]


def test_pubtator_corrupted_annotation_line_is_one_error_item(tmp_path, make_doc):
    clean = tmp_path / "clean.pubtator"
    clean.write_text("\n\n".join(_pubtator_doc(p) for p in (11, 22, 33, 44)) + "\n\n")
    text = clean.read_text().replace("22\t12\t18\tgene22", "22\tx12\t18\tgene22")
    broken = tmp_path / "broken.pubtator"
    broken.write_text(text)
    # document 2 starts on line 8 (6 lines + a blank line), its gene line is line 11
    assert text.splitlines()[7].startswith("22|t|") and "x12" in text.splitlines()[10]

    items = list(iter_source(broken, "pubtator", make_doc))
    assert [(i.where, i.doc_id, i.doc is None) for i in items] == [
        ("line 1", "11", False),
        ("line 8", "22", True),
        ("line 15", "33", False),
        ("line 22", "44", False),
    ]
    error = items[1].error
    assert error.startswith(f"{broken}:11: ") and "got 6 columns" in error
    expected = [signature(d) for d in read("pubtator", clean, make_doc=make_doc)]
    assert [signature(d) for d in docs_of(items)] == [expected[0], expected[2], expected[3]]
    assert [len(d._.relations) for d in docs_of(items)] == [1, 1, 1]
    assert count_documents(broken, "pubtator") == 4


def test_parse_pubtator_on_error_and_without(tmp_path):
    path = tmp_path / "a.pubtator"
    path.write_bytes(
        b"5\t0\t3\tabc\tT\tX\n5|t|Lost too\n\n"  # annotation before any title
        b"6|t|Title six\n6|a|Caf\xe9\n6\t0\t5\tTitle\tT\tX\n\n"  # undecodable abstract
        b"7|t|Seven\r\n7|a|Ok\r\n"
    )
    errors: list[CorpusFormatError] = []
    docs = list(parse_pubtator(path, on_error=errors.append))
    assert [(d.pmid, d.line, d.text) for d in docs] == [("7", 8, "Seven Ok")]
    assert [(e.line, e.document_line, e.pmid) for e in errors] == [(1, 1, "5"), (5, 4, "6")]
    assert all(isinstance(e, PubTatorLineError) for e in errors)
    assert str(errors[1]) == f"{path}:5: not valid UTF-8 (invalid continuation byte)"
    # without on_error: the first bad line raises, as the whole-file reader did
    with pytest.raises(CorpusFormatError, match=r"a\.pubtator:1: annotation line before"):
        list(parse_pubtator(path))


def test_pubtator_document_without_title_is_an_error_item(tmp_path, make_doc):
    path = tmp_path / "b.pubtator"
    path.write_text("1|t|One\n\n2|a|Abstract only\n\n3|t|Three\n")
    items = list(iter_source(path, "pubtator", make_doc))
    assert [(i.where, i.doc_id) for i in items] == [
        ("line 1", "1"),
        ("line 3", "2"),
        ("line 5", "3"),
    ]
    assert items[1].doc is None and "document 2 has no title line" in items[1].error
    assert [d.text for d in docs_of(items)] == ["One", "Three"]


# -- JSON Lines and text: a bad line is one error item -------------------------------------
def test_jsonl_bad_lines_are_error_items(tmp_path, make_doc):
    good = {
        "id": "a",
        "text": "Aspirin treats asthma.",
        "entities": [
            {"start": 0, "end": 7, "label": "ChemicalEntity", "concept_id": "D001241"},
            {"start": 15, "end": 21, "label": "DiseaseOrPhenotypicFeature", "concept_id": "D1"},
        ],
        "relations": [{"head_id": "D001241", "tail_id": "D1", "label": "Treat", "score": 0.5}],
    }
    bad_field = {"id": "b", "text": "x", "entities": [{"start": "0", "end": 1, "label": "L"}]}
    lines = [
        json.dumps(good),
        "",
        "{not json",
        json.dumps(bad_field),
        json.dumps({"text": "No id here."}),
        "[1, 2]",
    ]
    path = tmp_path / "recs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    items = list(iter_source(path, "jsonl", make_doc))
    assert [(i.where, i.doc_id, i.doc is None) for i in items] == [
        ("line 1", "a", False),
        ("line 3", None, True),
        ("line 4", "b", True),
        ("line 5", "recs-5", False),
        ("line 6", None, True),
    ]
    assert items[1].error.startswith(f"{path}:3: not valid JSON")
    assert items[2].error == f"{path}:4: entities[0].'start' must be int, is a str"
    assert items[4].error == f"{path}:6: a record must be a JSON object"
    # the good records are what the reader makes of them (bad lines blanked: same numbers)
    kept = tmp_path / "recs_kept.jsonl"
    kept.write_text("\n".join(ln if i in (0, 4) else "" for i, ln in enumerate(lines)) + "\n")
    expected = [signature(d) for d in read("jsonl", kept, make_doc=make_doc)]
    got = docs_of(items)
    assert [signature(d) for d in got][0] == expected[0]
    assert got[0]._.relations[0].score == 0.5
    assert got[1].text == "No id here."
    assert count_documents(path, "jsonl") == 5


def test_text_undecodable_line(tmp_path, make_doc):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"First doc.\n\n  \nCaf\xe9 au lait.\r\nThird one.\r\n")
    assert detect_format(path) == "text"
    items = list(iter_source(path, "text", make_doc))
    assert [(i.where, i.doc_id, i.doc.text if i.doc else None) for i in items] == [
        ("line 1", "notes-1", "First doc."),
        ("line 4", "notes-4", None),
        ("line 5", "notes-5", "Third one."),
    ]
    assert items[1].error == f"{path}:4: not valid UTF-8 (invalid continuation byte)"
    assert items[2].doc.user_data["doc_id"] == "notes-5"
    assert count_documents(path, "text") == len(items) == 3  # the bad line counts too


# -- BioC ---------------------------------------------------------------------------------
def _bioc_document(doc_id: str, offset: str = "0") -> str:
    return (
        f"<document><id>{doc_id}</id>\n"
        f"<passage><offset>{offset}</offset><text>Aspirin and asthma.</text>\n"
        '<annotation id="A"><infon key="type">ChemicalEntity</infon>'
        '<infon key="identifier">D001241</infon><location offset="0" length="7"/>'
        "<text>Aspirin</text></annotation>\n</passage>\n</document>\n"
    )


def test_bioc_xml_bad_document_and_truncation(tmp_path, make_doc, monkeypatch):
    whole = (
        "<?xml version='1.0' encoding='UTF-8'?>\n<collection><source>x</source>\n"
        + _bioc_document("d1")
        + _bioc_document("d2", offset="zero")  # not a number: this document only
        + _bioc_document("d3")
        + _bioc_document("d4")
        + "</collection>\n"
    )
    path = tmp_path / "c.xml"
    path.write_text(whole)
    items = list(iter_source(path, "bioc-xml", make_doc))
    assert [(i.where, i.doc_id, i.doc is None) for i in items] == [
        ("document 1", "d1", False),
        ("document 2", "d2", True),
        ("document 3", "d3", False),
        ("document 4", "d4", False),
    ]
    assert "cannot convert the document (ValueError" in items[1].error
    assert [[e.kb_id_ for e in d.ents] for d in docs_of(items)] == [["D001241"]] * 3
    assert count_documents(path, "bioc-xml") == 4
    for size in (1, 5, 9, 10, 11):  # tags cut at every place by the chunk edges
        monkeypatch.setattr(sources, "_CHUNK_BYTES", size)
        assert count_documents(path, "bioc-xml") == 4
    monkeypatch.undo()

    cut = tmp_path / "cut.xml"
    cut.write_text(whole[: whole.index("<document><id>d4") + 40])
    items = list(iter_source(cut, "bioc-xml", make_doc))
    assert [(i.where, i.doc_id) for i in items][-1] == ("document 4", None)
    assert [i.doc_id for i in items if i.doc is not None] == ["d1", "d3"]
    last_line = cut.read_text().count("\n") + 1
    assert items[-1].error.startswith(f"{cut}:{last_line}: invalid XML")


@needs_data
def test_truncated_biored_bioc_xml(tmp_path, make_doc, dev_docs):
    data = (BIORED / "Dev.BioC.XML").read_bytes()
    starts = [m.start() for m in re.finditer(b"<document>", data)][:4]
    cut = tmp_path / "cut.xml"
    cut.write_bytes(data[: starts[3] + 200])
    items = list(iter_source(cut, "bioc-xml", make_doc))
    assert len(items) == 4 and [i.where for i in items] == [
        "document 1",
        "document 2",
        "document 3",
        "document 4",
    ]
    assert [signature(i.doc) for i in items[:3]] == [signature(d) for d in dev_docs[:3]]
    assert items[3].doc is None and items[3].error.startswith(f"{cut}:1: invalid XML")


def test_bioc_json_errors(tmp_path, make_doc):
    passage = {"offset": 0, "text": "Aspirin.", "annotations": []}
    overlapping = [passage, {"offset": 3, "text": "x"}]
    collection = {
        "documents": [
            {"id": "1", "passages": [passage]},
            {"id": "2", "passages": overlapping},
            {"id": "3", "passages": [passage]},
        ]
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(collection))
    items = list(iter_source(path, "bioc-json", make_doc))
    assert [(i.where, i.doc_id, i.doc is None) for i in items] == [
        ("document 1", "1", False),
        ("document 2", "2", True),
        ("document 3", "3", False),
    ]
    assert "document 2: text at offset 3 overlaps" in items[1].error
    assert count_documents(path, "bioc-json") == 3

    bad = tmp_path / "bad.json"
    bad.write_text('{"documents": [\n{"id": "1",}\n]}')
    (item,) = iter_source(bad, "bioc-json", make_doc)
    assert item.where == "file" and item.error.startswith(f"{bad}:2: invalid JSON")
    assert count_documents(bad, "bioc-json") == 0


@pytest.mark.parametrize("fmt", INPUT_FORMATS)
def test_unreadable_file_is_one_error_item(tmp_path, fmt, make_doc):
    missing = tmp_path / "gone.txt"
    (item,) = iter_source(missing, fmt, make_doc)
    assert item.where == "file" and item.doc is None
    assert item.error.startswith(f"{missing}: cannot read the file")
    assert count_documents(missing, fmt) == 0


def test_unknown_format_raises_at_once(tmp_path, make_doc):
    with pytest.raises(ValueError, match="Unknown input format 'brat'"):
        iter_source(tmp_path / "x", "brat", make_doc)
    with pytest.raises(ValueError, match="Unknown input format"):
        count_documents(tmp_path / "x", "brat")


# -- finding shards and their formats ----------------------------------------------------------
def test_detect_format(tmp_path):
    cases = {
        "a.xml": ("<collection/>", "bioc-xml"),
        "B.BioC.XML": ("<collection/>", "bioc-xml"),
        "c.JSON": ("{}", "bioc-json"),
        "d.jsonl": ("{}", "jsonl"),
        "e.ndjson": ("{}", "jsonl"),
        "f.PubTator": ("\n\n123|t|A title\n123|a|An abstract\n", "pubtator"),
        "g.txt": ("123\tA title\tAn abstract with a|t|bar\n", "text"),
        "h": ("", "text"),
    }
    for name, (content, fmt) in cases.items():
        (tmp_path / name).write_text(content)
        assert detect_format(tmp_path / name) == fmt, name
    (tmp_path / "i.spacy").write_bytes(b"\x92\x00\x01binary")
    with pytest.raises(ValueError, match="not a text file"):
        detect_format(tmp_path / "i.spacy")


def test_expand_inputs(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.xml", "a.pubtator", ".hidden.jsonl", "c.jsonl.tmp", "sub/e.jsonl", "sub/f.txt"):
        (folder / name).write_text("1|t|x\n")
    (folder / "d.spacy").write_bytes(b"\x00\x01")
    monkeypatch.chdir(tmp_path)

    assert expand_inputs([folder]) == [folder / "a.pubtator", folder / "b.xml"]
    # as given (relative names stay relative); one file reached twice is listed once
    assert expand_inputs(["in/**/*.jsonl"]) == [Path("in/sub/e.jsonl")]
    assert expand_inputs(["in/sub/*", "in/*.xml", folder / "b.xml", "in"]) == [
        Path("in/sub/e.jsonl"),
        Path("in/sub/f.txt"),
        Path("in/b.xml"),
        Path("in/a.pubtator"),
    ]
    # a file named directly is taken as it is
    assert expand_inputs([folder / "c.jsonl.tmp"]) == [folder / "c.jsonl.tmp"]
    with pytest.raises(FileNotFoundError, match="nothing.pubtator"):
        expand_inputs([folder, "nothing.pubtator"])
    with pytest.raises(FileNotFoundError, match=r"in/\*\.csv"):
        expand_inputs(["in/*.csv"])
