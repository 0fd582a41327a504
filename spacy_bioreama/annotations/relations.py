"""The relation data model: one stored truth (`doc._.relations`), two views.

Relations are stored as plain values (ints, strings, floats) so that DocBin
serialisation and pickling round-trip exactly; they never hold `Span` objects.
`doc._.rel` derives spacy-llm's `RelationItem` view from the same records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from spacy.tokens import Doc, Span

USER_DATA_KEY = "spacy_bioreama.relations"


class Relation(NamedTuple):
    """A (document-level) relation between two concepts.

    `head` and `tail` are token offsets `(start, end)` of a representative
    mention of each concept; `head_id` / `tail_id` are concept identifiers
    (corpus IDs such as ``MESH:D003920``, or a normalised surface form for
    predictions). `score` is a confidence in [0, 1]; `novel` holds the corpus'
    novelty flag (BioRED: ``"Novel"`` / ``"No"``) where it exists.
    """

    head: tuple[int, int]
    tail: tuple[int, int]
    head_id: str
    tail_id: str
    label: str
    score: float = 1.0
    novel: str | None = None

    def head_span(self, doc: Doc) -> Span:
        """The head mention as a `Span` of `doc`."""
        return doc[self.head[0] : self.head[1]]

    def tail_span(self, doc: Doc) -> Span:
        """The tail mention as a `Span` of `doc`."""
        return doc[self.tail[0] : self.tail[1]]

    def to_plain(self) -> list[Any]:
        """A msgpack/JSON friendly form (lists of plain values)."""
        return [
            list(self.head),
            list(self.tail),
            self.head_id,
            self.tail_id,
            self.label,
            float(self.score),
            self.novel,
        ]

    @classmethod
    def from_plain(cls, value: Sequence[Any]) -> Relation:
        """Inverse of `to_plain`; also accepts a `Relation`."""
        head, tail, head_id, tail_id, label, score, novel = value
        return cls(
            (int(head[0]), int(head[1])),
            (int(tail[0]), int(tail[1])),
            str(head_id),
            str(tail_id),
            str(label),
            float(score),
            None if novel is None else str(novel),
        )


def _get_relations(doc: Doc) -> tuple[Relation, ...]:
    return tuple(Relation.from_plain(r) for r in doc.user_data.get(USER_DATA_KEY, ()))


def _set_relations(doc: Doc, value: Iterable[Relation | Sequence[Any]]) -> None:
    relations = [Relation.from_plain(r) for r in value]
    n = len(doc)
    for rel in relations:
        for start, end in (rel.head, rel.tail):
            if not 0 <= start < end <= n:
                raise ValueError(
                    f"Relation {rel.label!r} ({rel.head_id} -> {rel.tail_id}) has token "
                    f"offsets ({start}, {end}) outside the document ({n} tokens)."
                )
        if not 0.0 <= rel.score <= 1.0:
            raise ValueError(f"Relation score must be in [0, 1], got {rel.score}.")
    doc.user_data[USER_DATA_KEY] = [r.to_plain() for r in relations]


def _get_rel_view(doc: Doc) -> list[Any]:
    """spacy-llm's `RelationItem(dep, dest, relation)` with indices into doc.ents."""
    from spacy_llm.tasks.rel import RelationItem

    index = {(ent.start, ent.end): i for i, ent in enumerate(doc.ents)}
    items = []
    for rel in _get_relations(doc):
        dep, dest = index.get(tuple(rel.head)), index.get(tuple(rel.tail))
        if dep is not None and dest is not None:
            items.append(RelationItem(dep=dep, dest=dest, relation=rel.label))
    return items


def register_extensions() -> None:
    """Register `doc._.relations` (read/write) and `doc._.rel` (read-only view).

    `doc._.relations` returns an immutable tuple: assign a new sequence to change it
    (an in-place append on a temporary list would silently lose data).
    """
    if not Doc.has_extension("relations"):
        Doc.set_extension("relations", getter=_get_relations, setter=_set_relations)
    if not Doc.has_extension("rel"):
        Doc.set_extension("rel", getter=_get_rel_view)


register_extensions()
