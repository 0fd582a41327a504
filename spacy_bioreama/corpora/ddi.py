"""DDI Extraction 2013 reader (original DDI XML).

One Doc per ``<document>`` (``doc.user_data["doc_id"]`` = its id, e.g.
``DDI-DrugBank.d532``).

- Document text: the sentences' ``text`` attributes joined with a single space, in file
  order (verbatim, so trailing spaces or CR/LF inside a sentence stay; an empty
  sentence adds nothing). Sentence boundaries are kept: ``token.is_sent_start`` marks them (so
  ``doc.sents`` gives the corpus sentences) and ``doc.spans["sentences"]`` holds one
  span per sentence with ``kb_id_`` = the DDI sentence id.
- Entities: ``charOffset`` is relative to the sentence, end inclusive. ``label_`` = the
  DDI type (drug, brand, group, drug_n), ``kb_id_`` = the DDI entity id (relations name
  entities, not concepts). A discontinuous entity (``"98-107;124-144"``, 38 in Train) is
  kept as ONE span covering its first to last fragment, e.g. "loop diuretics" ->
  "loop, potassium-sparing and thiazide diuretics" (like composite mentions in
  NCBI-disease / BC5CDR): every DDI entity stays exactly one mention, so every pair maps
  to one mention pair. The exact fragments are stored in
  ``doc.user_data["discontinuous"][entity_id]`` (document character offsets) and each
  such entity is listed in the report's adjustments. Covering spans often overlap
  another entity; they then sit in the overflow group.
- Pairs: ``ddi="true"`` with ``type`` -> a relation labelled by the type (mechanism,
  effect, advise, int); ``ddi="false"`` -> label ``"false"`` (negatives kept, as for the
  TSV pair sets); head/tail ids = DDI entity ids ``e1`` / ``e2``. A pair marked
  ``ddi="true"`` without a type (``DDI-DrugBank.d236.s29.p0`` in Train) gets
  ``untyped_label`` (default ``"int"``, the DDI guideline's type for an interaction
  stated without further information) and is reported as an adjustment.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from lxml import etree
from spacy.tokens import Doc

from ..annotations.doc_ids import DOC_ID_KEY
from .base import (
    CorpusFormatError,
    MakeDoc,
    MentionSpec,
    PathArg,
    RelationSpec,
    SeenIds,
    build_doc,
    resolve_make_doc,
)
from .report import ConversionReport

SENTENCES_KEY = "sentences"
NEGATIVE_LABEL = "false"
SENTENCE_SEPARATOR = " "
# no entity expansion, no network: corpus files are data, not trusted documents
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def ddi_files(path: PathArg) -> list[Path]:
    """The XML files of `path`: the file itself, or every ``*.xml`` below a directory
    (sorted by relative path, so the order is stable)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.xml"), key=lambda p: p.relative_to(path).as_posix())
        if not files:
            raise CorpusFormatError(path, "no *.xml files in this directory")
        return files
    if not path.exists():
        raise FileNotFoundError(f"No such file or directory: '{path}'")
    return [path]


def _parse_offsets(value: str | None, path: Path, line: int | None) -> list[tuple[int, int]]:
    if not value:
        raise CorpusFormatError(path, "entity without charOffset", line)
    fragments = []
    for part in value.split(";"):
        try:
            a, b = part.split("-")
            fragments.append((int(a), int(b) + 1))  # end inclusive in DDI
        except ValueError:
            raise CorpusFormatError(path, f"bad charOffset {value!r}", line) from None
    return fragments


def _document_to_doc(
    root: etree._Element,
    path: Path,
    make_doc: MakeDoc,
    report: ConversionReport,
    untyped_label: str,
) -> Doc:
    doc_id = root.get("id")
    if not doc_id:
        raise CorpusFormatError(path, "<document> without an id", root.sourceline)
    pieces: list[str] = []
    sentences: list[tuple[int, int, str]] = []
    mentions: list[MentionSpec] = []
    relations: list[RelationSpec] = []
    offset = 0
    for sentence in root.iter("sentence"):
        sent_text = sentence.get("text")
        sent_id = sentence.get("id") or ""
        if sent_text is None:
            raise CorpusFormatError(path, f"sentence {sent_id!r} without text", sentence.sourceline)
        if pieces and sent_text:  # empty sentences (71 in Train) add no separator
            pieces.append(SENTENCE_SEPARATOR)
            offset += len(SENTENCE_SEPARATOR)
        pieces.append(sent_text)
        sentences.append((offset, offset + len(sent_text), sent_id))
        for ent in sentence.iter("entity"):
            mention = _entity_mention(ent, sent_text, offset, doc_id, path, report)
            if mention is not None:
                mentions.append(mention)
        for pair in sentence.iter("pair"):
            relations.append(_pair_relation(pair, doc_id, path, report, untyped_label))
        offset += len(sent_text)
    text = "".join(pieces)
    boundaries = [b for s, e, _ in sentences for b in (s, e)]
    doc = build_doc(
        make_doc, text, doc_id, mentions, relations, report, extra_boundaries=boundaries
    )
    _mark_sentences(doc, sentences)
    return doc


def _entity_mention(
    ent: etree._Element,
    sent_text: str,
    offset: int,
    doc_id: str,
    path: Path,
    report: ConversionReport,
) -> MentionSpec | None:
    """The mention of one ``<entity>`` (document offsets); None, reported, when its
    offsets lie outside its sentence. A discontinuous entity is kept as one covering
    span with its fragments."""
    ent_id = ent.get("id")
    if not ent_id:
        raise CorpusFormatError(path, "entity without an id", ent.sourceline)
    local = _parse_offsets(ent.get("charOffset"), path, ent.sourceline)
    frags = [(offset + a, offset + b) for a, b in local]
    ent_text = ent.get("text")
    label = ent.get("type") or ""
    start, end = frags[0][0], frags[-1][1]
    if len(frags) == 1:
        if not 0 <= local[0][0] < local[0][1] <= len(sent_text):
            report.unplaceable(
                doc_id,
                f"entity {ent_id} offsets {ent.get('charOffset')} outside its sentence",
                start,
                end,
                repr(ent_text),
            )
            return None
        return MentionSpec(start, end, label, ent_id, ent_text, ent_id)
    bad = [(a, b) for a, b in local if not 0 <= a < b <= len(sent_text)]
    if bad or start >= end:
        report.unplaceable(
            doc_id,
            f"discontinuous entity {ent_id} has fragments outside its sentence",
            start,
            end,
            repr(ent_text),
        )
        return None
    joined = " ".join(sent_text[a:b] for a, b in local)
    note = "" if joined == ent_text else f" (fragments read {joined!r})"
    report.adjust(
        doc_id,
        f"discontinuous entity {ent_id} {ent.get('charOffset')} kept as one covering span{note}",
        start,
        end,
        f"{ent_text!r} ({label})",
    )
    return MentionSpec(start, end, label, ent_id, None, ent_id, frags)


def _pair_relation(
    pair: etree._Element, doc_id: str, path: Path, report: ConversionReport, untyped_label: str
) -> RelationSpec:
    """The relation of one ``<pair>``: its type, `NEGATIVE_LABEL` for ddi=false, and
    `untyped_label` (reported) for an interaction without a type."""
    pair_id = pair.get("id") or ""
    e1, e2, ddi = pair.get("e1"), pair.get("e2"), pair.get("ddi")
    if not e1 or not e2 or ddi not in ("true", "false"):
        raise CorpusFormatError(
            path, f"pair {pair_id!r} needs e1, e2 and ddi=true|false", pair.sourceline
        )
    if ddi == "false":
        label = NEGATIVE_LABEL
    else:
        label = pair.get("type") or ""
        if not label:
            label = untyped_label
            report.adjust(
                doc_id,
                f"pair {pair_id} is an interaction (ddi=true) without a type; "
                f"labelled {untyped_label!r}",
                annotation=f"{e1} -> {e2}",
            )
    return RelationSpec(e1, e2, label, head_key=e1, tail_key=e2, where=f" (pair {pair_id})")


def _mark_sentences(doc: Doc, sentences: list[tuple[int, int, str]]) -> None:
    """The corpus's sentences as `doc.spans[SENTENCES_KEY]` and sentence starts."""
    sent_spans = []
    starts = set()
    for s, e, sent_id in sentences:
        span = doc.char_span(s, e, label="sentence", kb_id=sent_id, alignment_mode="contract")
        if span is not None and len(span):
            sent_spans.append(span)
            starts.add(span.start)
    if sent_spans:
        for token in doc:
            token.is_sent_start = token.i in starts or token.i == 0
        doc.spans[SENTENCES_KEY] = sent_spans


def read_ddi(
    path: PathArg,
    make_doc: MakeDoc | None = None,
    report: ConversionReport | None = None,
    *,
    untyped_label: str = "int",
) -> Iterator[Doc]:
    """Read DDI-2013 XML: `path` is one XML file or a directory searched recursively
    (e.g. ``ddi2013/Train``). One Doc per ``<document>``."""
    make_doc = resolve_make_doc(make_doc)
    report = ConversionReport("ddi", str(path)) if report is None else report
    seen = SeenIds(report)
    for file in ddi_files(path):
        try:
            # parsed from bytes: from a file name, lxml reports some errors (bytes not in
            # the declared encoding) as an OSError without a line (tests/test_reader_fuzz.py)
            tree = etree.parse(io.BytesIO(file.read_bytes()), _PARSER)
        except etree.XMLSyntaxError as err:
            raise CorpusFormatError(file, f"invalid XML: {err.msg}", err.lineno) from None
        root = tree.getroot()
        documents = [root] if root.tag == "document" else list(root.iter("document"))
        if not documents:
            raise CorpusFormatError(file, f"no <document> element (root is <{root.tag}>)", 1)
        for document in documents:
            doc = _document_to_doc(document, file, make_doc, report, untyped_label)
            seen.check(doc.user_data[DOC_ID_KEY], f" (again in {file})")
            yield doc
