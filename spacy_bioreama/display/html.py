"""Page assembly of the relation view: `render(docs) -> str`, a self-contained HTML page.

Each document's text goes through displaCy's `span` renderer (`manual=True`), so nested
and overlapping mentions (`doc.ents` plus `doc.spans["bio_entities"]`) stack as displaCy
stacks spans. The text handed to displaCy is cut at mention boundaries (one "token" per
piece, so the original spacing is kept) and each mention gets a unique pseudo label, which
the templates leave as markers; the markers are then replaced by the mention's chip
(`mark.bio-ent`, with `data-concept`, its type's colour and the concept ids as tooltip).
Relations are `g.bio-rel` elements of an SVG overlay that the page's script positions
(`assets.py`), and a side table (`tr.bio-rel-row`) lists them for dense documents.
With `gold=`, gold and predicted views stand side by side, mentions and relations marked
`match`, `miss` (gold only) or `false-positive` (predicted only) (`compare.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from html import escape
from itertools import islice

from spacy import displacy
from spacy.tokens import Doc, Span

from ..annotations import relations as _relations  # noqa: F401  (registers doc._.relations)
from ..annotations.doc_ids import doc_id
from ..annotations.relations import Relation
from ..annotations.spans import all_mentions, concept_ids, normalise_concept
from .assets import CSS, JS
from .colours import entity_colour, entity_short, relation_colour, relation_short
from .compare import MISS, align, compare

_NOSPACE = "\ue000"  # marks a piece after which displaCy must not add a space
_TEMPLATES = {
    "span": '<span class="bio-tok" style="height: {total_height}px">'
    "{text}{span_slices}{span_starts}</span>",
    "slice": '<span class="bio-bar" style="background: {bg}; top: {top_offset}px"></span>',
    "start": '<span class="bio-bar bio-bar-start" style="background: {bg}; '
    'top: {top_offset}px">@@{label}@@</span>',
}
_OPTIONS = {"top_offset": 18, "span_label_offset": 13, "top_offset_step": 5}
_MARKER = re.compile(r"@@m(\d+)@@")
_TOKEN = '<span class="bio-tok"'


def _concept(span: Span) -> str:
    """A mention's concept key for hovering: its kb id, else its normalised text."""
    return span.kb_id_ or normalise_concept(span.text)


def _pieces(text: str, mentions: Sequence[Span]) -> tuple[list[str], list[list[int]]]:
    """`text` cut at every mention boundary, and the mentions covering each piece."""
    bounds = sorted({0, len(text)} | {o for s in mentions for o in (s.start_char, s.end_char)})
    cuts = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    first = {a: i for i, (a, _) in enumerate(cuts)}
    covering: list[list[int]] = [[] for _ in cuts]
    for m, span in enumerate(mentions):
        i = first[span.start_char]
        while i < len(cuts) and cuts[i][1] <= span.end_char:
            covering[i].append(m)
            i += 1
    return [text[a:b] for a, b in cuts], covering


def _chip(span: Span, ref: str, status: str | None) -> str:
    ids = concept_ids(span)
    title = f"{span.label_} · {span.text} · {' '.join(ids)}"
    classes = "bio-ent" + (f" {status}" if status else "")
    return (
        f'<mark class="{classes}" data-mention="{escape(ref)}" '
        f'data-concept="{escape(_concept(span))}" data-ids="{escape(" ".join(ids))}" '
        f'data-label="{escape(span.label_)}" style="background: {entity_colour(span.label_)}" '
        f'title="{escape(title)}">{escape(entity_short(span.label_))}</mark>'
    )


def _text_markup(doc: Doc, prefix: str, statuses: Sequence[str] | None) -> str:
    """The document text with its mentions, through displaCy's span renderer."""
    mentions = all_mentions(doc)
    pieces, covering = _pieces(doc.text, mentions)
    # displaCy adds a space after each piece outside mentions, and after a blank piece
    # inside one (the gap between two inner mentions of an outer one): the marker takes
    # it back, also after a piece that ends in its own whitespace (else "binds  PALB2")
    tokens = [
        p + _NOSPACE if p and not (covering[i] and p.strip()) else p for i, p in enumerate(pieces)
    ]
    spans = []
    for m in range(len(mentions)):
        start = next(i for i, c in enumerate(covering) if m in c)
        end = max(i for i, c in enumerate(covering) if m in c) + 1
        spans.append({"start_token": start, "end_token": end, "label": f"m{m}", "kb_id": ""})
    colours = {f"m{m}": entity_colour(s.label_) for m, s in enumerate(mentions)}
    options = {**_OPTIONS, "template": _TEMPLATES, "colors": colours}
    data = {"text": doc.text, "spans": spans, "tokens": tokens}
    markup = displacy.render([data], style="span", manual=True, options=options, jupyter=False)
    # the marker and displaCy's space after it; inside a mention no space follows it
    markup = markup.replace(_NOSPACE + " ", "").replace(_NOSPACE, "")
    markup = _MARKER.sub(
        lambda g: _chip(mentions[int(g[1])], f"{prefix}m{g[1]}", statuses and statuses[int(g[1])]),
        markup,
    )
    # displaCy writes one `bio-tok` per non-blank token that a mention covers, in order
    # (a blank piece inside a mention is one: its marker is not blank)
    marked = [c for t, c in zip(tokens, covering, strict=True) if c and t.strip()]
    parts = markup.split(_TOKEN)
    if len(parts) - 1 != len(marked):
        raise RuntimeError("displaCy's span markup does not match the mention pieces")
    out = [parts[0]]
    for cover, part in zip(marked, parts[1:], strict=True):
        ments = [mentions[m] for m in cover]
        refs = " ".join(f"{prefix}m{m}" for m in cover)
        concepts = " ".join(sorted({c for s in ments for c in concept_ids(s)}))
        title = "\n".join(f"{s.label_}: {s.text} [{' '.join(concept_ids(s))}]" for s in ments)
        bad = sorted({statuses[m] for m in cover} - {"match"}) if statuses else []
        classes = " ".join(["bio-tok", *bad])
        colour = entity_colour(ments[-1].label_)
        out.append(
            f'<span class="{classes}" data-mentions="{refs}" data-concepts="{escape(concepts)}" '
            f'title="{escape(title)}" data-bg="{colour}"'
            + part.replace('style="height:', f'style="background: {colour}55; height:', 1)
        )
    return "".join(out)


def _anchor(mentions: Sequence[Span], offsets: tuple[int, int], cid: str) -> int | None:
    """The mention a relation end is drawn to: same token offsets (preferring one of the
    concept), else any mention of the concept."""
    same = [i for i, s in enumerate(mentions) if (s.start, s.end) == tuple(offsets)]
    of_concept = [i for i, s in enumerate(mentions) if cid in concept_ids(s, expand_composite=True)]
    preferred = [i for i in same if i in of_concept]
    return (preferred or same or of_concept or [None])[0]


def _arcs(doc: Doc, prefix: str, statuses: Sequence[str] | None) -> str:
    """One `g.bio-rel` per relation (positioned by the page script)."""
    mentions = all_mentions(doc)
    groups = []
    for i, rel in enumerate(doc._.relations):
        head = _anchor(mentions, rel.head, rel.head_id)
        tail = _anchor(mentions, rel.tail, rel.tail_id)
        status = statuses[i] if statuses else ""
        classes = " ".join(
            c for c in ("bio-rel", status, "" if None not in (head, tail) else "unanchored") if c
        )
        title = (
            f"{rel.head_span(doc).text} → {rel.label} → {rel.tail_span(doc).text} "
            f"(score {rel.score:.2f}; {rel.head_id} → {rel.tail_id})"
        )
        groups.append(
            f'<g class="{classes}" data-rel="{prefix}r{i}" '
            f'data-head="{prefix}m{head}" data-tail="{prefix}m{tail}" '
            f'data-head-concept="{escape(rel.head_id)}" data-tail-concept="{escape(rel.tail_id)}" '
            f'data-label="{escape(rel.label)}" style="--c: {relation_colour(rel.label)}">'
            f"<title>{escape(title)}</title>"
            '<path class="bio-arc"/><path class="bio-arrow"/><rect/>'
            f"<text>{escape(relation_short(rel.label))} {rel.score:.2f}</text></g>"
        )
    return f'<svg class="bio-arcs" xmlns="http://www.w3.org/2000/svg">{"".join(groups)}</svg>'


def _pane(doc: Doc, prefix: str, heading: str, ments=None, rels=None) -> str:
    return (
        f'<div class="bio-pane">{f"<h3>{escape(heading)}</h3>" if heading else ""}'
        f'<div class="bio-text">{_text_markup(doc, prefix, ments)}{_arcs(doc, prefix, rels)}'
        "</div></div>"
    )


def _row(doc: Doc, rel: Relation, ref: str, n: int, status: str | None) -> str:
    cls = "bio-rel-row" + (f" {status}" if status else "")
    st = f'<td class="st">{escape(status)}</td>' if status is not None else ""
    colour = relation_colour(rel.label)
    return (
        f'<tr class="{cls}" data-rel="{ref}"><td>{n}</td>'
        f"<td>{escape(rel.head_span(doc).text)}</td>"
        f'<td class="lab" style="color: {colour}">{escape(rel.label)}</td>'
        f"<td>{escape(rel.tail_span(doc).text)}</td><td>{rel.score:.2f}</td>"
        f'<td class="ids">{escape(rel.head_id)} → {escape(rel.tail_id)}</td>{st}</tr>'
    )


def _table(rows: list[str], status: bool) -> str:
    head = "<th>#</th><th>head</th><th>label</th><th>tail</th><th>score</th><th>concepts</th>"
    head += "<th>status</th>" if status else ""
    return (
        '<div class="bio-table-wrap"><table class="bio-rels">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _counts(doc: Doc) -> str:
    mentions = all_mentions(doc)
    concepts = {_concept(s) for s in mentions}
    return f"{len(mentions)} mentions, {len(concepts)} concepts, {len(doc._.relations)} relations"


def _doc_section(doc: Doc, n: int, gold: Doc | None) -> str:
    name = doc_id(doc, f"#{n + 1}")
    if gold is None:
        rows = [_row(doc, r, f"d{n}r{i}", i + 1, None) for i, r in enumerate(doc._.relations)]
        body = f'<div class="bio-view">{_pane(doc, f"d{n}", "")}{_table(rows, False)}</div>'
        summary = _counts(doc)
    else:
        cmp = compare(doc, gold)
        rows = [
            _row(doc, r, f"d{n}pr{i}", i + 1, cmp.pred_relations[i])
            for i, r in enumerate(doc._.relations)
        ]
        missed = [(i, r) for i, r in enumerate(gold._.relations) if cmp.gold_relations[i] == MISS]
        rows += [
            _row(gold, r, f"d{n}gr{i}", len(rows) + k + 1, MISS) for k, (i, r) in enumerate(missed)
        ]
        panes = _pane(gold, f"d{n}g", "gold", cmp.gold_mentions, cmp.gold_relations)
        panes += _pane(doc, f"d{n}p", "predicted", cmp.pred_mentions, cmp.pred_relations)
        body = f'<div class="bio-view bio-compare">{panes}{_table(rows, True)}</div>'
        summary = f"gold: {_counts(gold)}; predicted: {_counts(doc)}"
    return (
        f'<section class="bio-doc" data-doc-id="{escape(name)}">'
        f"<h2>{escape(name)} <small>{escape(summary)}</small></h2>{body}</section>"
    )


def _legend(docs: Sequence[Doc], compared: bool) -> str:
    labels = sorted({s.label_ for d in docs for s in all_mentions(d)})
    rels = sorted({r.label for d in docs for r in d._.relations})
    items = [
        f'<span><span class="sw" style="background: {entity_colour(lab)}"></span>'
        f"{escape(entity_short(lab))}</span>"
        for lab in labels
    ]
    items += [
        f'<span style="color: {relation_colour(lab)}">→ {escape(relation_short(lab))} = '
        f"{escape(lab)}</span>"
        for lab in rels
    ]
    if compared:
        items.append("<span>dashed: miss (red, gold only) / false positive (orange)</span>")
    items.append("<span>hover a mention: its concept; hover a row: its relation</span>")
    return f'<div class="bio-legend">{"".join(items)}</div>'


def render(
    docs: Doc | Iterable[Doc],
    *,
    gold: Doc | Iterable[Doc] | None = None,
    limit: int | None = None,
    page: bool = True,
    title: str = "spacy-bioreama relation view",
) -> str:
    """The relation view of `docs` as HTML: a whole self-contained page (inline CSS and
    JS, nothing fetched) with `page=True`, else a fragment to embed (its CSS and JS
    included). `gold`: documents aligned to `docs` by doc id (else by position), shown
    side by side with matches, misses and false positives marked. `limit`: only the
    first N documents."""
    docs = [docs] if isinstance(docs, Doc) else list(islice(docs, limit) if limit else docs)
    golds: list[Doc | None] = [None] * len(docs)
    if gold is not None:
        gold = [gold] if isinstance(gold, Doc) else list(gold)
        golds = list(align(docs, gold))
    sections = "".join(
        _doc_section(d, n, g) for n, (d, g) in enumerate(zip(docs, golds, strict=True))
    )
    shown = docs + [g for g in golds if g is not None]
    body = (
        f'<div class="bio-header"><h1>{escape(title)}</h1>{_legend(shown, gold is not None)}'
        f"</div>{sections}<script>{JS}</script>"
    )
    if not page:
        return f'<div class="bio-page"><style>{CSS}</style>{body}</div>'
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f'<body class="bio-page">{body}</body></html>'
    )
