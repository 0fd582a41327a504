"""NCBI-disease reader.

The corpus is distributed in two layouts; both are read:

- ``NCBItrainset_corpus.txt`` / ``NCBIdevelopset_corpus.txt`` (the files in
  ``../shared/data/ncbi_disease``): PubTator-like, ``PMID|t|`` / ``PMID|a|`` lines and
  tab-separated mention lines ``PMID start end text type id``. Labels are
  SpecificDisease, DiseaseClass, Modifier, CompositeMention; ids are MeSH (``D008661``)
  or OMIM (``OMIM:106210``), several joined by ``|`` (composite mentions) or ``+``
  (one mention, combined concept), kept verbatim in ``kb_id_``.
- ``NCBI_corpus_*.txt``: one line per document, ``PMID<TAB>title<TAB>abstract`` with the
  mentions inline as ``<category="SpecificDisease">text</category>``.

Quirks handled (and reported as adjustments, never silently): one mention's text column
carries two trailing spaces beyond its offsets (PMID 10923035,
``generalized epilepsy and febrile seizures " plus "  ``; the offsets are right and are
kept, whereas a line-stripping reader would misalign it); a few id columns carry
surrounding spaces (`` D008661``); the training file holds PMID 8528200 twice (both
copies are kept, as in the file).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from spacy.tokens import Doc

from .base import (
    CorpusFormatError,
    MakeDoc,
    MentionSpec,
    PathArg,
    SeenIds,
    build_doc,
    read_text,
    resolve_make_doc,
    split_lines,
)
from .pubtator import pubtator_docs
from .report import ConversionReport

_INLINE_LINE = re.compile(r"^\d+\t.*<category=", re.DOTALL)
_TAG = re.compile(r'<category="([^"]*)">(.*?)</category>', re.DOTALL)


def read_ncbi_disease(
    path: PathArg,
    make_doc: MakeDoc | None = None,
    report: ConversionReport | None = None,
) -> Iterator[Doc]:
    """Read an NCBI-disease file (either layout): one Doc per abstract, text =
    ``title + " " + abstract``, ``doc.user_data["doc_id"]`` = PMID."""
    make_doc = resolve_make_doc(make_doc)
    report = ConversionReport("ncbi-disease", str(path)) if report is None else report
    text = read_text(path)
    first = next((line for line in split_lines(text) if line.strip()), "")
    if _INLINE_LINE.match(first):
        yield from _read_inline(path, text, make_doc, report)
        return
    yield from pubtator_docs(path, make_doc, report)


def _read_inline(
    path: PathArg, text: str, make_doc: MakeDoc, report: ConversionReport
) -> Iterator[Doc]:
    seen = SeenIds(report)  # a repeated PMID is kept and reported, as in the other layout
    for lineno, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 3 or not cols[0].strip().isdigit():
            raise CorpusFormatError(
                path, f"expected 'PMID<TAB>title<TAB>abstract', got {len(cols)} columns", lineno
            )
        pmid = cols[0].strip()
        seen.check(pmid, f" (again at line {lineno})")
        plain_parts: list[str] = []
        mentions: list[MentionSpec] = []
        offset = 0
        for part_no, tagged in enumerate(cols[1:]):
            if part_no:
                plain_parts.append(" ")
                offset += 1
            pos = 0
            for match in _TAG.finditer(tagged):
                before = tagged[pos : match.start()]
                plain_parts.append(before)
                offset += len(before)
                label, mention = match.group(1), match.group(2)
                mentions.append(MentionSpec(offset, offset + len(mention), label, "", mention))
                plain_parts.append(mention)
                offset += len(mention)
                pos = match.end()
            rest = tagged[pos:]
            if "<category" in rest or "</category>" in rest:
                raise CorpusFormatError(path, "unbalanced <category> tag", lineno)
            plain_parts.append(rest)
            offset += len(rest)
        yield build_doc(make_doc, "".join(plain_parts), pmid, mentions, [], report)
