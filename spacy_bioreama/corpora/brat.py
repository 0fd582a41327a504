"""brat standoff reader: a folder of ``.txt`` / ``.ann`` pairs (or one pair, given by
either file), one Doc per pair; ``doc_id`` = the file stem. Documents come in file-name
order (numbers compared as numbers).

``.ann`` lines (see `export.brat` for what we write):

- ``T1<TAB>Type start end[;start end...]<TAB>text``: a mention (``label_`` = Type); a
  fragmented one is kept as one span covering its pieces, the pieces stored in
  ``doc.user_data["discontinuous"]`` (as the BioC reader does) and reported;
- ``#1<TAB>AnnotatorNotes T1<TAB>note``: the mention's concept id (``kb_id_``);
  ``N1<TAB>Reference T1 DB:ID<TAB>text``: a normalisation, the concept id where the
  mention has no note (several are joined with ``,``);
- ``R1<TAB>Label Arg1:T3 Arg2:T7``: a relation anchored on those two mentions; its
  concept ids are the mentions' (first id) unless its AnnotatorNotes, a JSON object,
  says ``head_id`` / ``tail_id``; ``score`` from the note too (default 1);
- ``A1<TAB>Novelty R1 Novel`` (or ``M1``): the relation's novelty flag.

Events (``E``), equivalences (``*``) and other attributes or notes are not part of the
data model: reported as adjustments and left out. A mention whose offsets fall outside
the text is reported with its file and line; a malformed line is a `CorpusFormatError`
naming the ``.ann`` file and line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spacy.tokens import Doc

from ..annotations.spans import normalise_concept, split_concept_ids
from .base import (
    CorpusFormatError,
    MakeDoc,
    MentionSpec,
    PathArg,
    RelationSpec,
    ScoredSpec,
    SeenIds,
    build_doc,
    read_text,
    resolve_make_doc,
    restore_scores,
    split_lines,
)
from .report import ConversionReport

_SPAN = re.compile(r"^(\d+) (\d+)$")
_ARG = re.compile(r"^(\w+):(\S+)$")
_NATURAL = re.compile(r"(\d+)")


def _natural(path: Path) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in _NATURAL.split(path.stem)] + [path.name]


def brat_pairs(path: PathArg) -> list[tuple[Path, Path | None]]:
    """The ``(txt, ann)`` pairs under `path` (a folder, or one ``.txt`` / ``.ann`` file);
    ``ann`` is None for a text without annotations."""
    path = Path(path)
    if path.is_dir():
        texts = sorted(path.glob("*.txt"), key=_natural)
        for ann in sorted(path.glob("*.ann")):
            if not ann.with_suffix(".txt").exists():
                raise CorpusFormatError(ann, f"no text file {ann.with_suffix('.txt').name}")
        if not texts:
            raise CorpusFormatError(path, "no .txt/.ann pairs in this folder")
    elif path.suffix in (".txt", ".ann"):
        texts = [path.with_suffix(".txt")]
        if not texts[0].exists():
            raise FileNotFoundError(f"{texts[0]}: no such file (the text of {path.name})")
    elif not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    else:
        raise CorpusFormatError(path, "expected a folder of .txt/.ann pairs or a .txt/.ann file")
    return [(t, t.with_suffix(".ann") if t.with_suffix(".ann").exists() else None) for t in texts]


class _Ann:
    """The parsed lines of one ``.ann`` file."""

    def __init__(self) -> None:
        self.mentions: dict[str, tuple[int, MentionSpec]] = {}
        self.notes: dict[str, str] = {}
        self.references: dict[str, list[str]] = {}
        self.relations: list[tuple[int, str, str, str, str]] = []  # line, id, label, a1, a2
        self.novelty: dict[str, str] = {}
        self.ignored: list[str] = []


def _parse_mention(cols: list[str], ann: Path, lineno: int) -> MentionSpec:
    if len(cols) < 3 or " " not in cols[1]:
        raise CorpusFormatError(ann, "expected 'T1<TAB>Type start end<TAB>text'", lineno)
    label, where = cols[1].split(" ", 1)
    pieces = []
    for piece in where.split(";"):
        match = _SPAN.match(piece.strip())
        if not match:
            raise CorpusFormatError(ann, f"bad offsets {where!r} (expected 'start end')", lineno)
        pieces.append((int(match.group(1)), int(match.group(2))))
    pieces.sort()
    text = "\t".join(cols[2:])
    start, end = pieces[0][0], max(b for _, b in pieces)
    if len(pieces) == 1:
        return MentionSpec(start, end, label, text=text, key=cols[0])
    return MentionSpec(start, end, label, text=None, key=cols[0], fragments=pieces)


def parse_ann(ann: Path) -> _Ann:
    """Parse a ``.ann`` file (see the module docstring); malformed lines raise."""
    out = _Ann()
    for lineno, line in enumerate(split_lines(read_text(ann)), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        ident, kind = cols[0].strip(), cols[0][:1]
        body = cols[1].split() if len(cols) > 1 else []
        if kind == "T":
            if ident in out.mentions:
                raise CorpusFormatError(ann, f"mention id {ident} used twice", lineno)
            out.mentions[ident] = (lineno, _parse_mention(cols, ann, lineno))
        elif kind == "R":
            args = [_ARG.match(a) for a in body[1:]]
            if len(body) != 3 or not all(args):
                raise CorpusFormatError(ann, "expected 'R1<TAB>Label Arg1:T1 Arg2:T2'", lineno)
            out.relations.append((lineno, ident, body[0], args[0].group(2), args[1].group(2)))
        elif kind == "#":
            if len(body) < 2:
                raise CorpusFormatError(ann, "expected '#1<TAB>AnnotatorNotes T1<TAB>note'", lineno)
            note = "\t".join(cols[2:]).strip()
            if body[0] == "AnnotatorNotes":
                out.notes[body[1]] = note
            else:
                out.ignored.append(f"note type {body[0]} (line {lineno})")
        elif kind == "N":
            if len(body) < 3:
                raise CorpusFormatError(
                    ann, "expected 'N1<TAB>Reference T1 DB:ID<TAB>text'", lineno
                )
            out.references.setdefault(body[1], []).append(body[2])
        elif kind in "AM":
            if len(body) < 2:
                raise CorpusFormatError(ann, "expected 'A1<TAB>Name Target [Value]'", lineno)
            if body[0] == "Novelty" and len(body) > 2:
                out.novelty[body[1]] = body[2]
            else:
                out.ignored.append(f"attribute {body[0]} (line {lineno})")
        elif kind in "E*":
            out.ignored.append(
                f"{'event' if kind == 'E' else 'equivalence'} {ident} (line {lineno})"
            )
        else:
            raise CorpusFormatError(ann, f"unknown annotation line {ident!r}", lineno)
    return out


def _relation_fields(note: str | None) -> dict[str, Any]:
    if not note or not note.startswith("{"):
        return {}
    try:
        value = json.loads(note)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _concept(m: MentionSpec | None, fallback: str) -> str:
    if m is None:
        return fallback
    primary, _ = split_concept_ids(m.kb_id)
    if primary:
        return primary[0]
    return normalise_concept(m.text or "") or fallback


def brat_to_doc(
    txt: Path, ann_path: Path | None, make_doc: MakeDoc, report: ConversionReport
) -> Doc:
    """Build the Doc of one ``.txt`` / ``.ann`` pair."""
    text = read_text(txt)
    doc_id = txt.stem
    ann = parse_ann(ann_path) if ann_path is not None else _Ann()
    for what in ann.ignored:
        report.adjust(doc_id, f"{what} is not part of the data model; left out")
    mentions: list[MentionSpec] = []
    for ident, (lineno, m) in ann.mentions.items():
        m.kb_id = ann.notes.get(ident) or ",".join(ann.references.get(ident, []))
        if not 0 <= m.start < m.end <= len(text):
            report.unplaceable(
                doc_id,
                f"offsets outside the text (length {len(text)}) or empty ({ann_path}:{lineno})",
                m.start,
                m.end,
                f"{m.text!r} ({m.label})",
            )
            continue
        if m.fragments:
            report.adjust(
                doc_id, f"fragmented mention {ident} kept as one covering span", m.start, m.end
            )
        mentions.append(m)
    scored: list[ScoredSpec] = []
    for lineno, ident, label, a1, a2 in ann.relations:
        fields = _relation_fields(ann.notes.get(ident))
        head, tail = ann.mentions.get(a1, (0, None))[1], ann.mentions.get(a2, (0, None))[1]
        spec = RelationSpec(
            head_id=str(fields.get("head_id") or _concept(head, a1)),
            tail_id=str(fields.get("tail_id") or _concept(tail, a2)),
            label=label,
            novel=ann.novelty.get(ident),
            head_key=a1,
            tail_key=a2,
            where=f" ({ident}, line {lineno})",
        )
        try:
            score = float(fields.get("score", 1.0))
        except (TypeError, ValueError):
            raise CorpusFormatError(ann_path, f"score of {ident} is not a number", lineno) from None
        if not 0.0 <= score <= 1.0:
            raise CorpusFormatError(ann_path, f"score of {ident} must be in [0, 1]", lineno)
        chars = [None if m is None else (m.start, m.end) for m in (head, tail)]
        scored.append((spec, score, chars[0], chars[1]))
    doc = build_doc(make_doc, text, doc_id, mentions, [s for s, *_ in scored], report)
    restore_scores(doc, scored)
    return doc


def read_brat(
    path: PathArg,
    make_doc: MakeDoc | None = None,
    report: ConversionReport | None = None,
) -> Iterator[Doc]:
    """Read brat standoff files (a folder of ``.txt`` / ``.ann`` pairs, or one pair):
    one Doc per pair, ``doc.user_data["doc_id"]`` = the file stem."""
    make_doc = resolve_make_doc(make_doc)
    report = ConversionReport("brat", str(path)) if report is None else report
    seen = SeenIds(report)
    for txt, ann in brat_pairs(path):
        seen.check(txt.stem)
        yield brat_to_doc(txt, ann, make_doc, report)
