"""BioC XML and BioC JSON readers (both through the `bioc` package's data model).

Document text: the passages placed at their ``offset`` (BioC offsets are document
offsets), gaps filled with spaces -- for PubTator-derived collections such as BioRED
this is exactly ``title + " " + abstract``, so the Docs equal those of the PubTator
reader. A passage given as sentences (no passage text) is assembled the same way.

Annotations anywhere (passages, sentences, document level) become mentions:
``label_`` = infon ``type``, ``kb_id_`` = infon ``identifier`` (or ``Identifier``,
``MESH``, ``NCBI Gene``, whichever exists first). An annotation with several locations
(discontinuous) is kept as one span covering its first to last location (as DDI), its
exact pieces stored in ``doc.user_data["discontinuous"]`` and reported.

Relations:
- infons ``entity1`` / ``entity2`` (BioRED): concept level, label = infon ``type``,
  ``novel`` = infon ``novel``; where two nodes also name annotations (our export writes
  them), the relation is anchored on those mentions, else on each concept's first;
- infons ``Chemical`` / ``Disease`` (BC5CDR BioC): concept level, label = infon
  ``relation`` (``CID``);
- otherwise nodes: the first two nodes' ``refid`` name annotations (mention level).

A ``score`` infon (our export writes one) becomes `Relation.score` (default 1).

BioRED's JSON as published lacks keys that ``bioc.biocjson`` requires (collection /
document / passage ``infons``, passage ``sentences`` and ``relations``, relation
``nodes``); they are filled with empty values before parsing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

import bioc
import bioc.biocjson
import bioc.biocxml
from bioc import BioCAnnotation, BioCCollection, BioCDocument, BioCRelation
from spacy.tokens import Doc

from .base import (
    CorpusFormatError,
    MakeDoc,
    MentionSpec,
    PathArg,
    RelationSpec,
    SeenIds,
    build_doc,
    read_text,
    resolve_make_doc,
    restore_scores,
)
from .report import ConversionReport

ID_INFONS = ("identifier", "Identifier", "MESH", "NCBI Gene")
LABEL_INFONS = ("type", "relation", "relation_type", "Type")
# Passages sit at their offsets, gaps filled with spaces; real gaps are a character or
# a few (a section heading left out), never this many (found by tests/test_reader_fuzz.py)
MAX_PASSAGE_GAP = 100_000


# -- loading -------------------------------------------------------------------------
def load_bioc_xml(path: PathArg) -> BioCCollection:
    """Parse a BioC XML file with `bioc.biocxml`; syntax errors name file and line."""
    from lxml import etree

    with open(path, "rb") as fp:
        try:
            return bioc.biocxml.load(fp)
        except etree.XMLSyntaxError as err:
            raise CorpusFormatError(path, f"invalid XML: {err.msg}", err.lineno) from None
        except OSError:
            # lxml reports some malformed files (bytes not in the declared encoding) as
            # an OSError without a line (found by tests/test_reader_fuzz.py); parsing
            # the bytes again gives the syntax error with its line
            fp.seek(0)
            data = io.BytesIO(fp.read())
            try:
                etree.parse(data, etree.XMLParser(resolve_entities=False, no_network=True))
            except etree.XMLSyntaxError as err:
                raise CorpusFormatError(path, f"invalid XML: {err.msg}", err.lineno) from None
            raise CorpusFormatError(path, "invalid XML (unreadable bytes)") from None
        except (ValueError, TypeError, AttributeError, KeyError) as err:
            # KeyError: a required attribute missing (a <location> without offset=)
            raise CorpusFormatError(path, f"invalid BioC XML: missing or bad {err}") from None


def _fill_json(obj: dict[str, Any], path: PathArg) -> dict[str, Any]:
    """Add the keys `bioc.biocjson` requires and BioRED's JSON leaves out, and check the
    type of every field the conversion reads: a value of the wrong type (an offset that
    is a string or a float, a list that is null, ...) is a `CorpusFormatError` naming the
    document, never a TypeError deep in the conversion nor a truncated offset (found by
    tests/test_reader_fuzz.py). Integer infon values are read as strings."""
    if not isinstance(obj, dict) or not isinstance(obj.get("documents"), list):
        raise CorpusFormatError(path, "not a BioC JSON collection (no 'documents' list)")
    for key in ("source", "date", "key"):
        obj.setdefault(key, "")
    where = "collection"

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise CorpusFormatError(path, f"{where}: {what}")

    def objects(holder: dict[str, Any], key: str) -> list[dict[str, Any]]:
        value = holder.setdefault(key, [])
        need(isinstance(value, list), f"{key!r} must be a list")
        need(all(isinstance(v, dict) for v in value), f"every item of {key!r} must be an object")
        return value

    def integer(holder: dict[str, Any], key: str) -> None:
        value = holder.get(key)
        need(isinstance(value, int) and not isinstance(value, bool), f"{key!r} must be an integer")

    def string(holder: dict[str, Any], key: str, default: str | None) -> None:
        value = holder.setdefault(key, default)
        need(value is None or isinstance(value, str), f"{key!r} must be a string")

    def infons(holder: dict[str, Any]) -> None:
        value = holder.setdefault("infons", {})
        need(isinstance(value, dict), "'infons' must be an object")
        for key, item in value.items():
            if isinstance(item, int) and not isinstance(item, bool):
                value[key] = str(item)
            need(isinstance(value[key], str), f"infon {key!r} must be a string")

    def fill_annotations(holder: dict[str, Any]) -> None:
        for ann in objects(holder, "annotations"):
            infons(ann)
            string(ann, "text", None)
            for loc in objects(ann, "locations"):
                integer(loc, "offset")
                integer(loc, "length")
        for rel in objects(holder, "relations"):
            infons(rel)
            for node in objects(rel, "nodes"):
                string(node, "refid", "")

    infons(obj)
    for doc in objects(obj, "documents"):
        need("id" in doc, "a document without an 'id'")
        need(isinstance(doc["id"], str | int) and not isinstance(doc["id"], bool), "bad 'id'")
        where = f"document {doc['id']}"
        infons(doc)
        for passage in objects(doc, "passages"):
            infons(passage)
            need("offset" in passage, "passage without 'offset'")
            integer(passage, "offset")
            string(passage, "text", None)
            for sentence in objects(passage, "sentences"):
                infons(sentence)
                integer(sentence, "offset")
                string(sentence, "text", "")
                fill_annotations(sentence)
            fill_annotations(passage)
        fill_annotations(doc)
    return obj


def load_bioc_json(path: PathArg) -> BioCCollection:
    """Parse a BioC JSON file (missing keys filled in) with `bioc.biocjson`."""
    try:
        obj = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise CorpusFormatError(path, f"invalid JSON: {err.msg}", err.lineno) from None
    obj = _fill_json(obj, path)
    try:
        return bioc.biocjson.decoder.parse_collection(obj)
    except (KeyError, TypeError, ValueError) as err:
        raise CorpusFormatError(path, f"invalid BioC JSON: missing or bad field {err}") from None


# -- conversion ------------------------------------------------------------------------
def _document_text(document: BioCDocument, path: PathArg) -> str:
    pieces: list[tuple[int, str]] = []
    for passage in document.passages:
        if passage.text is not None:
            pieces.append((int(passage.offset), passage.text))
        else:
            pieces.extend((int(s.offset), s.text or "") for s in passage.sentences)
    text = ""
    for offset, piece in sorted(pieces, key=lambda p: p[0]):
        if offset < len(text):
            raise CorpusFormatError(
                path, f"document {document.id}: text at offset {offset} overlaps earlier text"
            )
        if offset - len(text) > MAX_PASSAGE_GAP:
            # a mistyped offset must not make us allocate gigabytes of spaces (or hang)
            raise CorpusFormatError(
                path,
                f"document {document.id}: text at offset {offset} leaves a gap of "
                f"{offset - len(text)} characters (more than {MAX_PASSAGE_GAP})",
            )
        text += " " * (offset - len(text)) + piece
    return text


def _all_annotations(document: BioCDocument) -> Iterable[BioCAnnotation]:
    for passage in document.passages:
        yield from passage.annotations
        for sentence in passage.sentences:
            yield from sentence.annotations
    yield from document.annotations


def _all_relations(document: BioCDocument) -> Iterable[BioCRelation]:
    yield from document.relations
    for passage in document.passages:
        yield from passage.relations
        for sentence in passage.sentences:
            yield from sentence.relations


def _first_infon(infons: dict[str, str], keys: Iterable[str]) -> str:
    for key in keys:
        if infons.get(key) not in (None, ""):
            return str(infons[key])
    return ""


def bioc_document_to_doc(
    document: BioCDocument, make_doc: MakeDoc, report: ConversionReport, path: PathArg
) -> Doc:
    """Build the spaCy Doc of one BioC document."""
    if document.id in (None, ""):
        # else str(None) would name the Doc "None" (found by tests/test_reader_fuzz.py)
        raise CorpusFormatError(path, "a document without an <id>")
    doc_id = str(document.id)
    text = _document_text(document, path)
    mentions: list[MentionSpec] = []
    ann_ids: dict[str, str] = {}
    for ann in _all_annotations(document):
        label = _first_infon(ann.infons, ("type", "Type"))
        kb_id = _first_infon(ann.infons, ID_INFONS).strip()
        locations = sorted((int(loc.offset), int(loc.end)) for loc in ann.locations)
        if not locations:
            report.unplaceable(doc_id, "annotation without a location", annotation=repr(ann.text))
            continue
        start, end = locations[0][0], max(e for _, e in locations)
        fragments = None
        expected = ann.text
        if len(locations) > 1:
            fragments = [tuple(loc) for loc in locations]
            expected = None  # the text of a discontinuous annotation joins its pieces
            report.adjust(
                doc_id,
                f"discontinuous annotation {locations} kept as one covering span",
                start,
                end,
                f"{ann.text!r} ({label})",
            )
        key = str(ann.id) if ann.id is not None else None
        if key is not None:
            ann_ids[key] = kb_id or key
        mentions.append(MentionSpec(start, end, label, kb_id, expected, key, fragments))

    relations: list[RelationSpec] = []
    scores: list[float] = []
    for rel in _all_relations(document):
        infons = rel.infons
        label = _first_infon(infons, LABEL_INFONS)
        novel = infons.get("novel") or infons.get("Novel")
        where = f" (relation {rel.id})" if rel.id else ""
        score = _score(infons.get("score"), doc_id, where, report)
        if "entity1" in infons and "entity2" in infons:
            # nodes naming two annotations (our export writes them) anchor the relation
            # on those mentions; without them, on the first mention of each concept
            keys = [n.refid for n in rel.nodes[:2]]
            if len(keys) < 2 or not all(key in ann_ids for key in keys):
                keys = [None, None]
            relations.append(
                RelationSpec(
                    infons["entity1"],
                    infons["entity2"],
                    label,
                    novel,
                    head_key=keys[0],
                    tail_key=keys[1],
                    where=where,
                )
            )
        elif "Chemical" in infons and "Disease" in infons:
            relations.append(
                RelationSpec(infons["Chemical"], infons["Disease"], label, novel, where=where)
            )
        elif len(rel.nodes) >= 2:
            head, tail = rel.nodes[0].refid, rel.nodes[1].refid
            relations.append(
                RelationSpec(
                    ann_ids.get(head, head),
                    ann_ids.get(tail, tail),
                    label,
                    novel,
                    head_key=head,
                    tail_key=tail,
                    where=where,
                )
            )
        else:
            report.unplaceable(
                doc_id,
                "relation names neither entity1/entity2 infons nor two nodes",
                annotation=f"{label}{where}",
            )
        scores.extend([score] * (len(relations) - len(scores)))  # one per relation kept
    doc = build_doc(make_doc, text, doc_id, mentions, relations, report)
    restore_scores(
        doc, [(spec, score, None, None) for spec, score in zip(relations, scores, strict=True)]
    )
    return doc


def _score(value: str | None, doc_id: str, where: str, report: ConversionReport) -> float:
    """A relation's ``score`` infon (our export writes one) as a float in [0, 1]; 1
    where there is none, or (reported) where it is not such a number."""
    if value in (None, ""):
        return 1.0
    try:
        score = float(value)
    except ValueError:
        score = -1.0
    if not 0.0 <= score <= 1.0:
        report.adjust(doc_id, f"relation score {value!r}{where} is not in [0, 1]; read as 1")
        return 1.0
    return score


def _read_collection(
    collection: BioCCollection,
    path: PathArg,
    make_doc: MakeDoc,
    report: ConversionReport,
) -> Iterator[Doc]:
    seen = SeenIds(report)
    for document in collection.documents:
        seen.check(document.id)
        yield bioc_document_to_doc(document, make_doc, report, path)


def read_bioc_xml(
    path: PathArg,
    make_doc: MakeDoc | None = None,
    report: ConversionReport | None = None,
) -> Iterator[Doc]:
    """Read a BioC XML collection: one Doc per document."""
    report = ConversionReport("bioc-xml", str(path)) if report is None else report
    yield from _read_collection(load_bioc_xml(path), path, resolve_make_doc(make_doc), report)


def read_bioc_json(
    path: PathArg,
    make_doc: MakeDoc | None = None,
    report: ConversionReport | None = None,
) -> Iterator[Doc]:
    """Read a BioC JSON collection (BioRED's JSON included): one Doc per document."""
    report = ConversionReport("bioc-json", str(path)) if report is None else report
    yield from _read_collection(load_bioc_json(path), path, resolve_make_doc(make_doc), report)
