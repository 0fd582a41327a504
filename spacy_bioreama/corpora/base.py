"""Shared machinery of the corpus readers.

Every reader parses its format into plain `MentionSpec` / `RelationSpec` records and
hands them to `build_doc`, which applies the same rules to every corpus:

- a mention is placed only if its offsets lie inside the text and the text at those
  offsets equals the annotated text (a difference in trailing/leading whitespace of the
  annotated text is accepted and reported as an adjustment); otherwise it is reported
  as unplaced;
- the text is tokenised with `make_aligned_doc`, so every mention boundary is a token
  edge, and the mentions go through `set_entities` (`doc.ents` + the overflow group);
- a concept-level relation is anchored on a representative mention of each concept:
  the first mention in `doc.ents` (document order) whose concept ids contain the id,
  or, if no mention in `doc.ents` has it, the first one in the overflow group. A
  mention-level relation (DDI pairs, masked TSV pairs, BioC relations with nodes) is
  anchored on its own mentions. A relation that cannot be anchored is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from os import PathLike
from pathlib import Path
from typing import Any

from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from ..annotations.doc_ids import DOC_ID_KEY
from ..annotations.relations import Relation
from ..annotations.spans import make_aligned_doc, set_entities, split_concept_ids
from ..util.text_lines import UTF8_BOM, decode_utf8_line
from .report import ConversionReport

MakeDoc = Callable[[str], Doc]
PathArg = str | PathLike

DISCONTINUOUS_KEY = "discontinuous"


class CorpusFormatError(ValueError):
    """Malformed corpus input. The message names the file and, where known, the line."""

    def __init__(self, path: PathArg | None, message: str, line: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


@lru_cache(maxsize=1)
def default_make_doc() -> MakeDoc:
    """`spacy.blank("en").make_doc`, created once."""
    import spacy

    return spacy.blank("en").make_doc


def resolve_make_doc(make_doc: MakeDoc | None) -> MakeDoc:
    """`make_doc`, or the shared blank-English tokenizer when None."""
    return default_make_doc() if make_doc is None else make_doc


class SeenIds:
    """The document ids one reader has met so far. A corpus that repeats an id keeps
    both documents (as in the file); the repeat is reported as an adjustment, never
    dropped. One loop for every reader (PubTator, NCBI-disease, BioC, DDI)."""

    def __init__(self, report: ConversionReport) -> None:
        self.report = report
        self.seen: set[str] = set()

    def check(self, doc_id: str, where: str = "") -> None:
        """Note `doc_id`; report it if seen before (`where`, e.g. " (again at line 9)",
        is added to the message)."""
        doc_id = str(doc_id)
        if doc_id in self.seen:
            self.report.adjust(doc_id, f"document id occurs more than once{where}")
        self.seen.add(doc_id)


def read_text(path: PathArg) -> str:
    """Read a UTF-8 text file (a leading BOM dropped); decoding errors become a
    `CorpusFormatError` with a line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8").removeprefix(UTF8_BOM)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise CorpusFormatError(path, f"not valid UTF-8 ({err.reason})", line) from None


def read_docbin(path: PathArg, vocab: Vocab, limit: int = 0) -> list[Doc]:
    """The documents of the DocBin at `path` (the first `limit`, 0 = all). A file that is
    not a DocBin (a corpus file given by mistake) is a `CorpusFormatError` naming it:
    msgpack's and zlib's own errors say nothing of the file."""
    from spacy.tokens import DocBin

    try:
        docs = DocBin().from_disk(path).get_docs(vocab)
        return list(islice(docs, limit) if limit else docs)
    except Exception as err:
        raise CorpusFormatError(path, f"not a spaCy DocBin (.spacy) file ({err})") from err


def split_lines(text: str) -> list[str]:
    """Split on '\\n' only (never on other Unicode line separators that may occur inside
    a sentence) and drop a trailing '\\r' (CRLF files)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def stream_lines(path: PathArg) -> Iterator[tuple[int, bytes]]:
    """`(line number, raw line)` for every line of `path`, read one at a time (split on
    b"\\n" only, as `split_lines`; the line keeps its line end; see `decode_line`)."""
    with open(path, "rb") as fp:
        yield from enumerate(fp, 1)


def decode_line(raw: bytes, path: PathArg, lineno: int) -> str:
    """One raw line of `stream_lines` as text: UTF-8, its "\\n" and a trailing "\\r"
    dropped (as `split_lines`). Not UTF-8: a `CorpusFormatError` naming the line, with
    the message `read_text` gives for the whole file. A BOM opening line 1 is dropped,
    as `read_text` does."""
    try:
        line = decode_utf8_line(raw, lineno)
    except UnicodeDecodeError as err:
        raise CorpusFormatError(path, f"not valid UTF-8 ({err.reason})", lineno) from None
    if line.endswith("\n"):
        line = line[:-1]
    return line[:-1] if line.endswith("\r") else line


@dataclass
class MentionSpec:
    """A mention as read from the corpus (character offsets, end exclusive)."""

    start: int
    end: int
    label: str
    kb_id: str = ""
    text: str | None = None  # the annotated text, checked against the document
    key: Hashable | None = None  # identity for mention-level relations
    fragments: Sequence[tuple[int, int]] | None = None  # discontinuous: exact pieces


@dataclass
class RelationSpec:
    """A relation as read from the corpus.

    Concept level (BioRED, BC5CDR): `head_id` / `tail_id` are concept ids, anchored on
    representative mentions. Mention level: `head_key` / `tail_key` name `MentionSpec.key`s.
    """

    head_id: str
    tail_id: str
    label: str
    novel: str | None = None
    head_key: Hashable | None = None
    tail_key: Hashable | None = None
    where: str = ""  # where in the input (for reports)
    extra: dict[str, Any] = field(default_factory=dict)


def _check_mention(
    m: MentionSpec, text: str, doc_id: str, report: ConversionReport
) -> MentionSpec | None:
    """Validate offsets and text; return the mention to place or None (reported)."""
    shown = m.text if m.text is not None else ""
    if not (0 <= m.start < m.end <= len(text)):
        report.unplaceable(
            doc_id,
            f"offsets outside the document text (length {len(text)}) or empty",
            m.start,
            m.end,
            f"{shown!r} ({m.label})",
        )
        return None
    if not m.label:
        # spaCy reads the label "" as "no entity": such a span would silently vanish
        # from doc.ents (found by tests/test_reader_fuzz.py), so it is reported instead
        report.unplaceable(doc_id, "mention without a type", m.start, m.end, repr(shown))
        return None
    actual = text[m.start : m.end]
    if m.text is not None and actual != m.text:
        if actual == m.text.strip():
            report.adjust(
                doc_id,
                "annotated text has extra whitespace at its ends; kept at the given offsets",
                m.start,
                m.end,
                f"{m.text!r} ({m.label})",
            )
        else:
            report.unplaceable(
                doc_id,
                f"text at the offsets is {actual!r}, not the annotated text",
                m.start,
                m.end,
                f"{m.text!r} ({m.label})",
            )
            return None
    if actual != actual.strip():
        report.unplaceable(
            doc_id,
            "mention starts or ends with whitespace and cannot be aligned to tokens",
            m.start,
            m.end,
            f"{actual!r} ({m.label})",
        )
        return None
    return m


def build_doc(
    make_doc: MakeDoc,
    text: str,
    doc_id: str,
    mentions: Iterable[MentionSpec],
    relations: Iterable[RelationSpec],
    report: ConversionReport,
    *,
    extra_boundaries: Iterable[int] = (),
    user_data: dict[str, Any] | None = None,
) -> Doc:
    """Place `mentions` and `relations` on a Doc of `text` (see the module docstring),
    count the Doc in `report` and return it."""
    placed = [m for m in mentions if _check_mention(m, text, doc_id, report) is not None]
    boundaries = [b for m in placed for b in (m.start, m.end)]
    boundaries.extend(extra_boundaries)
    doc = make_aligned_doc(make_doc, text, boundaries)
    doc.user_data[DOC_ID_KEY] = doc_id
    if user_data:
        doc.user_data.update(user_data)

    spans: list[Span] = []
    by_key: dict[Hashable, Span] = {}
    discontinuous: dict[str, tuple[tuple[int, int], ...]] = {}
    for m in placed:
        span = doc.char_span(m.start, m.end, label=m.label, kb_id=m.kb_id)
        if span is None:  # cannot happen after alignment; kept as a guard, reported
            report.unplaceable(doc_id, "cannot align to tokens", m.start, m.end, repr(m.text))
            continue
        spans.append(span)
        if m.key is not None:
            by_key[m.key] = span
        if m.fragments:
            # tuples: what msgpack (DocBin) gives back, so round trips compare equal
            discontinuous[str(m.key if m.key is not None else f"{m.start}-{m.end}")] = tuple(
                (int(a), int(b)) for a, b in m.fragments
            )
    seen: set[tuple[int, int, str, str]] = set()
    for span in spans:
        key4 = (span.start, span.end, span.label_, span.kb_id_)
        if key4 in seen:
            report.adjust(
                doc_id,
                "the same mention (offsets, type, id) is annotated twice; kept once",
                span.start_char,
                span.end_char,
                f"{span.text!r} ({span.label_})",
            )
        seen.add(key4)
    set_entities(doc, spans)
    if discontinuous:
        doc.user_data[DISCONTINUOUS_KEY] = discontinuous

    doc._.relations = _place_relations(doc, spans, by_key, list(relations), doc_id, report)
    report.add_doc(doc)
    return doc


def _place_relations(
    doc: Doc,
    spans: list[Span],
    by_key: dict[Hashable, Span],
    relations: list[RelationSpec],
    doc_id: str,
    report: ConversionReport,
) -> list[Relation]:
    if not relations:
        return []
    ent_keys = {(e.start, e.end, e.label_, e.kb_id_) for e in doc.ents}
    # doc.ents first (document order), then overflow mentions (document order)
    ordered = sorted(
        spans,
        key=lambda s: ((s.start, s.end, s.label_, s.kb_id_) not in ent_keys, s.start, s.end),
    )
    primary: dict[str, Span] = {}
    secondary: dict[str, Span] = {}
    for span in ordered:
        first, second = split_concept_ids(span.kb_id_)
        for cid in first:
            primary.setdefault(cid, span)
        for cid in second:
            secondary.setdefault(cid, span)

    out: list[Relation] = []
    for rel in relations:
        anchors: list[Span | None] = []
        for cid, key in ((rel.head_id, rel.head_key), (rel.tail_id, rel.tail_key)):
            if key is not None:
                anchors.append(by_key.get(key))
            else:
                anchors.append(primary.get(cid) or secondary.get(cid))
        head, tail = anchors
        if head is None or tail is None:
            missing = [
                str(k if k is not None else c)
                for a, c, k in (
                    (head, rel.head_id, rel.head_key),
                    (tail, rel.tail_id, rel.tail_key),
                )
                if a is None
            ]
            what = "entity" if rel.head_key is not None or rel.tail_key is not None else "concept"
            report.unplaceable(
                doc_id,
                f"no placed mention of the {what} {', '.join(missing)}",
                annotation=f"{rel.label}({rel.head_id}, {rel.tail_id}){rel.where}",
            )
            continue
        out.append(
            Relation(
                head=(head.start, head.end),
                tail=(tail.start, tail.end),
                head_id=rel.head_id,
                tail_id=rel.tail_id,
                label=rel.label,
                score=1.0,
                novel=rel.novel,
            )
        )
    return out


ScoredSpec = tuple[RelationSpec, float, tuple[int, int] | None, tuple[int, int] | None]


def restore_scores(doc: Doc, scored: Sequence[ScoredSpec]) -> None:
    """Put the corpus' relation scores back on `doc._.relations` (`build_doc` places
    every relation with score 1). `scored`: each relation spec handed to `build_doc`,
    in order, with its score and the character offsets of its head / tail mention
    (None where not known). Placed relations keep the specs' order, so they are
    matched in one pass; a spec left unplaced is passed over."""
    if all(score == 1.0 for _, score, _, _ in scored):
        return
    placed = list(doc._.relations)
    out, k = [], 0
    for rel in placed:
        head, tail = rel.head_span(doc), rel.tail_span(doc)
        while k < len(scored):
            spec, score, head_chars, tail_chars = scored[k]
            k += 1
            if (
                (spec.head_id, spec.tail_id, spec.label, spec.novel)
                == (rel.head_id, rel.tail_id, rel.label, rel.novel)
                and head_chars in (None, (head.start_char, head.end_char))
                and tail_chars in (None, (tail.start_char, tail.end_char))
            ):
                out.append(rel._replace(score=score))
                break
        else:
            out.append(rel)
    doc._.relations = out
