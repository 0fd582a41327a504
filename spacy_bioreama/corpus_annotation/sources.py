"""`annotate-corpus`'s input side: input shards found, their formats told, their
documents read one at a time, tolerantly.

- `expand_inputs` turns the command's inputs (files, folders, glob patterns) into the
  list of shards; `detect_format` tells a shard's format (`INPUT_FORMATS`);
- `iter_source` streams a shard's documents as `SourceItem`s, in file order. It never
  holds a whole file's documents in memory -- PubTator, JSON Lines and text are read a
  line at a time, BioC XML a ``<document>`` element at a time -- except BioC JSON,
  which has no streaming parser: that one file is loaded whole
  (`corpora.bioc_formats.load_bioc_json`) and converted one document at a time;
- a document that cannot be read does not stop the shard: it becomes an error item
  (`SourceItem.error`, with its line or document number and the reason) and reading
  goes on where the format allows (PubTator: after the next blank line; JSON Lines and
  text: the next line; BioC XML: an XML syntax error ends the shard after the documents
  read so far; a BioC JSON file that does not load is one error item);
- `count_documents` estimates a shard's size for a progress bar, without building Docs.

Every Doc is the one the corpus reader of its format gives (`corpora.read`): the same
conversion functions are used (`pubtator_to_doc`, `record_to_doc`,
`bioc_document_to_doc`), so text, entities, concept ids, overflow spans, relations and
``doc.user_data["doc_id"]`` are the same. A text shard holds one document per
non-blank line, ``doc_id`` = ``<file stem>-<line number>``.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from spacy.tokens import Doc

from ..annotations.doc_ids import DOC_ID_KEY
from ..corpora.base import CorpusFormatError, SeenIds, decode_line, stream_lines
from ..corpora.bioc_formats import bioc_document_to_doc, load_bioc_json
from ..corpora.jsonl import record_to_doc
from ..corpora.pubtator import (
    PubTatorLineError,
    parse_pubtator,
    pubtator_to_doc,
)
from ..corpora.report import ConversionReport
from ..util.jsonl import JsonLineError, json_record

INPUT_FORMATS: tuple[str, ...] = ("pubtator", "bioc-xml", "bioc-json", "jsonl", "text")

MakeDoc = Callable[[str], Doc]

_SUFFIX_FORMATS = {".xml": "bioc-xml", ".json": "bioc-json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_PUBTATOR_TITLE = re.compile(r"^[^|\t]+\|t\|")
_PUBTATOR_TITLE_BYTES = re.compile(rb"^[^|\t\n]+\|t\|", re.MULTILINE)
_BIOC_DOCUMENT_TAG = re.compile(rb"<document[\s>/]")
_GLOB_CHARS = re.compile(r"[*?\[]")
_SNIFF_BYTES = 1 << 16
_CHUNK_BYTES = 1 << 20
# what a malformed document can raise while it is converted (CorpusFormatError is a
# ValueError); anything else is a bug and is not hidden
_CONVERSION_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError)
FILE_WHERE = "file"


@dataclass(frozen=True)
class SourceItem:
    """One document of an input shard, or why one could not be read."""

    where: str  # locator in the shard: "line 12" (the document's first line, for
    # pubtator/jsonl/text) or "document 3" (1-based, bioc); "file" for an error about
    # the whole file (it cannot be opened or read; a BioC JSON file that does not load)
    doc: Doc | None = None  # the Doc (None for an error item)
    doc_id: str | None = None  # document id where known (also on error items when known)
    error: str | None = None  # reason, for an error item


# -- finding shards ------------------------------------------------------------------------
def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files, folders (every regular file directly inside whose format can be detected;
    hidden files and names ending in .tmp skipped), and glob patterns (`*`, `?`, `[`;
    `**` recursive), in the order given, each folder/glob sorted; duplicates removed. A
    name that matches nothing raises FileNotFoundError naming it.

    A file named directly is taken as it is. The files a folder or a glob yields are
    filtered alike: regular files only, no ``.tmp`` names (files being written), none
    whose format cannot be detected (binary content, unreadable). A glob's `*` does not
    match hidden names (Python's `glob`); a folder's hidden files are skipped."""
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        name = str(item)
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if not p.name.startswith(".") and _is_shard(p))
            if not found:
                raise FileNotFoundError(f"{name}: no input files in this folder")
        elif path.exists():
            found = [path]
        elif _GLOB_CHARS.search(name):
            found = sorted(p for p in map(Path, glob.glob(name, recursive=True)) if _is_shard(p))
            if not found:
                raise FileNotFoundError(f"{name}: no input files match this pattern")
        else:
            raise FileNotFoundError(f"{name}: no such file or folder")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def _is_shard(path: Path) -> bool:
    if path.name.endswith(".tmp") or not path.is_file():
        return False
    try:
        detect_format(path)
    except (OSError, ValueError):
        return False
    return True


def detect_format(path: Path) -> str:
    """By suffix: .xml → bioc-xml, .json → bioc-json, .jsonl/.ndjson → jsonl; otherwise
    by content: a first non-blank line like `PMID|t|...` → pubtator (BioRED's .PubTator,
    NCBI-disease .txt), else text (one document per line).

    Suffixes are compared case-insensitively (BioRED's ``Dev.BioC.XML``). Content that
    is not text (a NUL byte in its first 64 KiB: a DocBin, an archive) raises
    ValueError; an unreadable file raises OSError."""
    path = Path(path)
    by_suffix = _SUFFIX_FORMATS.get(path.suffix.lower())
    if by_suffix is not None:
        return by_suffix
    with open(path, "rb") as fp:
        head = fp.read(_SNIFF_BYTES)
    if b"\0" in head:
        raise ValueError(f"{path}: not a text file; cannot tell its corpus format")
    lines = head.split(b"\n")
    if len(head) == _SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # cut short by the sniff; a first line this long is text anyway
    for raw in lines:
        line = raw.decode("utf-8", errors="replace")
        if line.strip():
            return "pubtator" if _PUBTATOR_TITLE.match(line) else "text"
    return "text"


# -- reading shards ------------------------------------------------------------------------
def iter_source(path: Path, fmt: str, make_doc: Callable[[str], Doc]) -> Iterator[SourceItem]:
    """Stream the shard's documents in file order. Never raises for bad input: a
    malformed document, an undecodable line, a JSON line that does not parse, a record
    with a bad field, an XML syntax error, an unreadable file each become an error item
    (with the line / document number and the reason, e.g. the CorpusFormatError message)
    and reading continues where it can (pubtator: skip to the next blank line;
    jsonl/text: next line; bioc-xml: an XML syntax error ends the shard after the
    documents already read, with one error item naming the line). Unknown fmt raises
    ValueError.

    `fmt` is checked at once (not when the first item is asked for). The error text is
    the `CorpusFormatError` message (``path:line: reason``); an unreadable file is one
    error item ``where="file"``. Problems inside a document that its reader reports
    rather than rejects (an unplaceable mention, a repeated id) do not make it an error
    item, as with `corpora.read`."""
    readers = {
        "pubtator": _iter_pubtator,
        "bioc-xml": _iter_bioc_xml,
        "bioc-json": _iter_bioc_json,
        "jsonl": _iter_jsonl,
        "text": _iter_text,
    }
    if fmt not in readers:
        raise ValueError(f"Unknown input format {fmt!r}; known formats: {', '.join(INPUT_FORMATS)}")
    return _guarded(
        Path(path), readers[fmt](Path(path), make_doc, ConversionReport(fmt, str(path)))
    )


def _guarded(path: Path, items: Iterator[SourceItem]) -> Iterator[SourceItem]:
    """`items`, then, if the file could not be opened or read, one ``file`` error item."""
    try:
        yield from items
    except OSError as err:
        yield SourceItem(FILE_WHERE, error=_unreadable(path, err))


def _unreadable(path: Path, err: OSError) -> str:
    return str(CorpusFormatError(path, f"cannot read the file ({err.strerror or err})"))


def _conversion_error(err: Exception, path: Path, line: int | None = None) -> str:
    """The text of an error item for a document that could not be converted."""
    if isinstance(err, CorpusFormatError):
        return str(err)
    reason = f"cannot convert the document ({type(err).__name__}: {err})"
    return str(CorpusFormatError(path, reason, line))


def _iter_pubtator(path: Path, make_doc: MakeDoc, report: ConversionReport) -> Iterator[SourceItem]:
    errors: list[CorpusFormatError] = []  # collected by parse_pubtator, between documents

    def flush() -> Iterator[SourceItem]:
        for err in errors:
            line = err.document_line if isinstance(err, PubTatorLineError) else err.line
            pmid = err.pmid if isinstance(err, PubTatorLineError) else None
            yield SourceItem(f"line {line}", doc_id=pmid, error=str(err))
        errors.clear()

    seen = SeenIds(report)
    try:
        for raw in parse_pubtator(path, on_error=errors.append):
            yield from flush()
            where = f"line {raw.line}"
            seen.check(raw.pmid, f" (again at line {raw.line})")
            try:
                doc = pubtator_to_doc(raw, make_doc, report, path)
            except _CONVERSION_ERRORS as err:
                yield SourceItem(
                    where, doc_id=raw.pmid, error=_conversion_error(err, path, raw.line)
                )
                continue
            yield SourceItem(where, doc, raw.pmid)
    except OSError as err:
        yield from flush()  # the errors met before the file failed come first
        yield SourceItem(FILE_WHERE, error=_unreadable(path, err))
        return
    yield from flush()


def _iter_jsonl(path: Path, make_doc: MakeDoc, report: ConversionReport) -> Iterator[SourceItem]:
    seen = SeenIds(report)
    for lineno, raw in stream_lines(path):
        where = f"line {lineno}"
        try:
            record = json_record(decode_line(raw, path, lineno), lineno)
        except CorpusFormatError as err:
            yield SourceItem(where, error=str(err))
            continue
        except JsonLineError as err:
            yield SourceItem(where, error=str(CorpusFormatError(path, err.reason, err.lineno)))
            continue
        if record is None:
            continue
        try:
            doc = record_to_doc(record, make_doc, report, path, lineno, seen)
        except _CONVERSION_ERRORS as err:
            record_id = record.get("id")
            doc_id = None if record_id is None else str(record_id)
            yield SourceItem(where, doc_id=doc_id, error=_conversion_error(err, path, lineno))
            continue
        yield SourceItem(where, doc, str(doc.user_data[DOC_ID_KEY]))


def _iter_text(path: Path, make_doc: MakeDoc, report: ConversionReport) -> Iterator[SourceItem]:
    for lineno, raw in stream_lines(path):
        where, doc_id = f"line {lineno}", f"{path.stem}-{lineno}"
        try:
            line = decode_line(raw, path, lineno)
        except CorpusFormatError as err:
            yield SourceItem(where, doc_id=doc_id, error=str(err))
            continue
        if not line.strip():
            continue
        doc = make_doc(line)
        doc.user_data[DOC_ID_KEY] = doc_id
        yield SourceItem(where, doc, doc_id)


def _iter_bioc_xml(path: Path, make_doc: MakeDoc, report: ConversionReport) -> Iterator[SourceItem]:
    """One ``<document>`` element at a time (lxml `iterparse`), each decoded by
    `bioc.biocxml` exactly as `load_bioc_xml` decodes it in the whole collection, then
    dropped from the tree, so memory holds one document."""
    import bioc.biocxml
    from lxml import etree

    seen = SeenIds(report)
    number = 0
    with open(path, "rb") as fp:
        events = etree.iterparse(fp, events=("end",), tag="document")
        while True:
            try:
                _, element = next(events)
            except StopIteration:
                return
            except etree.XMLSyntaxError as err:
                message = CorpusFormatError(path, f"invalid XML: {err.msg}", err.lineno)
                yield SourceItem(f"document {number + 1}", error=str(message))
                return
            parent = element.getparent()
            if parent is None or parent.getparent() is not None:
                continue  # the collection's documents only, as `load_bioc_xml`
            number += 1
            where = f"document {number}"
            element_id = element.findtext("id")
            try:
                xml = etree.tostring(element, encoding="unicode", with_tail=False)
                # the decoder is called as for a whole file (its document parser is private)
                (document,) = bioc.biocxml.loads(f"<collection>{xml}</collection>").documents
                doc_id = str(document.id)
                seen.check(doc_id)
                doc = bioc_document_to_doc(document, make_doc, report, path)
            except _CONVERSION_ERRORS as err:
                error = _conversion_error(err, path, element.sourceline)
                yield SourceItem(where, doc_id=element_id, error=error)
                continue
            finally:
                element.clear()
                while element.getprevious() is not None:
                    del parent[0]
            yield SourceItem(where, doc, doc_id)


def _iter_bioc_json(
    path: Path, make_doc: MakeDoc, report: ConversionReport
) -> Iterator[SourceItem]:
    """The whole file is loaded (JSON has no streaming parser here); the documents are
    converted one at a time."""
    try:
        collection = load_bioc_json(path)
    except CorpusFormatError as err:
        yield SourceItem(FILE_WHERE, error=str(err))
        return
    seen = SeenIds(report)
    documents = collection.documents
    for number in range(1, len(documents) + 1):
        document = documents[number - 1]
        documents[number - 1] = None  # converted documents are let go
        where, doc_id = f"document {number}", str(document.id)
        try:
            seen.check(doc_id)
            doc = bioc_document_to_doc(document, make_doc, report, path)
        except _CONVERSION_ERRORS as err:
            yield SourceItem(where, doc_id=doc_id, error=_conversion_error(err, path))
            continue
        yield SourceItem(where, doc, doc_id)


# -- counting ------------------------------------------------------------------------------
def count_documents(path: Path, fmt: str) -> int:
    """A fast estimate of the number of documents (for a progress bar's total), without
    building Docs: non-blank lines (jsonl, text), title lines (pubtator), `<document`
    tags (bioc-xml), documents of the loaded JSON (bioc-json).

    Never raises for bad input: a file that cannot be read, or a BioC JSON file that
    does not parse, counts 0 (`iter_source` says why). Unknown fmt raises ValueError."""
    if fmt not in INPUT_FORMATS:
        raise ValueError(f"Unknown input format {fmt!r}; known formats: {', '.join(INPUT_FORMATS)}")
    path = Path(path)
    try:
        if fmt in ("jsonl", "text"):
            return sum(1 for _, raw in stream_lines(path) if raw.strip())
        if fmt == "pubtator":
            return sum(1 for _, raw in stream_lines(path) if _PUBTATOR_TITLE_BYTES.match(raw))
        if fmt == "bioc-xml":
            return _count_tags(path)
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return 0
    documents = data.get("documents") if isinstance(data, dict) else None
    return len(documents) if isinstance(documents, list) else 0


def _count_tags(path: Path) -> int:
    """``<document`` start tags, read in chunks (BioC XML is often a single line)."""
    width = len(b"<document ")
    count, tail = 0, b""
    with open(path, "rb") as fp:
        while chunk := fp.read(_CHUNK_BYTES):
            buf = tail + chunk
            cut = max(len(buf) - width, 0)  # a tag starting at cut or later: next round
            count += sum(1 for m in _BIOC_DOCUMENT_TAG.finditer(buf) if m.start() < cut)
            tail = buf[cut:]
    return count + len(_BIOC_DOCUMENT_TAG.findall(tail))
