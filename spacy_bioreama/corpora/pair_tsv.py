"""Masked pair-classification TSV reader: GAD, EU-ADR (BLURB) and ChemProt (BLUE).

Each line is ``sentence<TAB>label`` (optionally ``index<TAB>sentence<TAB>label``, whose
index becomes the doc id); a header row ``sentence<TAB>label`` (ChemProt) or
``index<TAB>sentence<TAB>label`` is skipped. CRLF line ends are accepted.

One Doc per line. The two placeholders of the pair become two entities whose
``kb_id_`` is the placeholder itself, and the line's label becomes the relation between
them (negative labels -- ``0`` for GAD/EU-ADR, ``False`` for ChemProt -- included):

=========  ==================  ===================  ==========
scheme     head (label)        tail (label)         negative
=========  ==================  ===================  ==========
gad/euadr  ``@GENE$`` GENE     ``@DISEASE$`` DISEASE ``0``
chemprot   ``BC6ENTC`` CHEMICAL ``BC6ENTG`` GENE     ``False``
=========  ==================  ===================  ==========

ChemProt's other masked entities (``BC6OTHER``) stay plain text. A line whose pair
placeholder is missing (ChemProt has some where the chemical and gene mention coincide
and only ``BC6ENTG`` remains) keeps its Doc, with the entity that exists, and its
relation is reported as unplaced. ``doc.user_data["doc_id"]`` is
``"<scheme>:<file stem>:<line number>"`` (or the index column).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
    split_lines,
)
from .report import ConversionReport


@dataclass(frozen=True)
class PairScheme:
    """How one masked pair corpus writes its two entities (placeholders and the labels
    they stand for) and which label means "no relation"."""

    name: str
    head_placeholder: str
    head_label: str
    tail_placeholder: str
    tail_label: str
    negative_label: str


PAIR_SCHEMES = {
    "gad": PairScheme("gad", "@GENE$", "GENE", "@DISEASE$", "DISEASE", "0"),
    "euadr": PairScheme("euadr", "@GENE$", "GENE", "@DISEASE$", "DISEASE", "0"),
    "chemprot": PairScheme("chemprot", "BC6ENTC", "CHEMICAL", "BC6ENTG", "GENE", "False"),
}

_HEADERS = (["sentence", "label"], ["index", "sentence", "label"])


def _placeholder_re(placeholder: str) -> re.Pattern[str]:
    # word-like placeholders must not match inside a longer token (BC6ENTC vs BC6ENTCX)
    before = r"(?<![A-Za-z0-9])" if placeholder[0].isalnum() else ""
    after = r"(?![A-Za-z0-9])" if placeholder[-1].isalnum() else ""
    return re.compile(before + re.escape(placeholder) + after)


def read_pair_tsv(
    path: PathArg,
    make_doc: MakeDoc | None = None,
    report: ConversionReport | None = None,
    *,
    scheme: str | PairScheme = "gad",
) -> Iterator[Doc]:
    """Read a masked pair TSV file (`scheme`: "gad", "euadr", "chemprot" or a
    `PairScheme`): one Doc per line, two entities, one relation."""
    if isinstance(scheme, str):
        if scheme not in PAIR_SCHEMES:
            raise ValueError(f"Unknown pair scheme {scheme!r}; known: {sorted(PAIR_SCHEMES)}")
        scheme = PAIR_SCHEMES[scheme]
    make_doc = resolve_make_doc(make_doc)
    report = ConversionReport(scheme.name, str(path)) if report is None else report
    stem = Path(path).stem
    patterns = [
        (_placeholder_re(scheme.head_placeholder), scheme.head_placeholder, scheme.head_label),
        (_placeholder_re(scheme.tail_placeholder), scheme.tail_placeholder, scheme.tail_label),
    ]
    n_cols = 2
    seen = SeenIds(report)  # an index column may repeat an id: kept, reported
    for lineno, line in enumerate(split_lines(read_text(path)), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if lineno == 1 and [c.strip().lower() for c in cols] in _HEADERS:
            n_cols = len(cols)
            continue
        if len(cols) != n_cols:
            raise CorpusFormatError(
                path,
                f"expected {n_cols} tab-separated columns "
                f"({'index, ' if n_cols == 3 else ''}sentence, label), got {len(cols)}",
                lineno,
            )
        sentence, label = cols[-2], cols[-1].strip()
        doc_id = cols[0].strip() if n_cols == 3 else f"{scheme.name}:{stem}:{lineno}"
        seen.check(doc_id, f" (again at line {lineno})")
        if not label:
            raise CorpusFormatError(path, "empty label", lineno)
        if not sentence.strip():
            raise CorpusFormatError(path, "empty sentence", lineno)
        mentions = []
        for pattern, placeholder, ent_label in patterns:
            found = list(pattern.finditer(sentence))
            if not found:
                continue
            if len(found) > 1:
                report.adjust(
                    doc_id,
                    f"placeholder {placeholder} occurs {len(found)} times; the first is used",
                    found[0].start(),
                    found[0].end(),
                )
            m = found[0]
            mentions.append(
                MentionSpec(m.start(), m.end(), ent_label, placeholder, placeholder, placeholder)
            )
        relation = RelationSpec(
            scheme.head_placeholder,
            scheme.tail_placeholder,
            label,
            head_key=scheme.head_placeholder,
            tail_key=scheme.tail_placeholder,
            where=f" (line {lineno})",
        )
        yield build_doc(make_doc, sentence, doc_id, mentions, [relation], report)
