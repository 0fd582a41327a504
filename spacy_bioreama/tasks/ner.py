"""Named entity recognition as typed span lists (BioMistral-NLU style).

The answer has one line per requested type, in the order the instruction lists them::

    GeneOrGeneProduct: NIS ... sodium/iodide symporter
    DiseaseOrPhenotypicFeature: None

Listing each surface form once (not every mention) keeps answers short; grounding then
marks every occurrence of a listed form in the text, as PubTator corpora annotate every
mention. The same module renders gold targets for training and parses model answers.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from ..annotations.labels import BIORED_ENTITY_LABELS
from ..annotations.spans import (
    all_mentions,
    normalise_concept,
    split_tokens_at,
    text_length,
    text_slice,
)
from ..models.backend import CopySpans
from .base import TaskExample, pick_instruction
from .names import NER
from .units import (
    FixedPick,
    SourceLike,
    SourcePlan,
    Unit,
    UnitContext,
    UnitTask,
    ordered_labels,
    window_suffix,
)

TASK_NAME = NER
SEPARATOR = " ... "
EMPTY = "None"

INSTRUCTIONS = (
    "Extract every mention of these biomedical entity types from the text: {types}. "
    "Answer with one line per type, in this order, as 'Type: mention ... mention', "
    "copying each mention exactly as written; write 'Type: None' for a type with no mention.",
    "Find all entities of the types {types} in the passage below. For each type, in the "
    "order given, write a line 'Type: mention ... mention' with the mentions copied verbatim, "
    "or 'Type: None' if there are none.",
    "You are a biomedical annotator. List the {types} mentioned in the text. Give one line "
    "per type in the given order, formatted 'Type: mention ... mention'; use 'Type: None' "
    "when the type does not occur. Copy mentions exactly.",
    "Named entity recognition. Entity types: {types}. Output one line per type in the given "
    "order: the type, a colon, then its mentions from the text separated by ' ... ', or None.",
    "Read the biomedical text and identify all entity mentions of the types {types}. Reply "
    "with lines of the form 'Type: mention ... mention' (one per type, in order; 'Type: None' "
    "if absent), using the exact words of the text.",
)

# "Type: a ... b", tolerating a bullet or a number before the type ("- ", "2. ").
_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])?\s*([A-Za-z][\w /-]*?)\s*:\s*(.*?)\s*$")


@dataclass
class ParsedEntities:
    """Mentions parsed from one answer, with what could not be parsed."""

    mentions: list[tuple[str, str]]
    unparseable_lines: int
    unknown_labels: int


def build_example(
    doc: Doc,
    labels: Sequence[str],
    window: tuple[int, int] | None = None,
    *,
    with_target: bool = False,
    rng: random.Random | None = None,
    label_map: Mapping[str, str] | None = None,
) -> TaskExample:
    """The NER example for `doc` (or the character window of it); `label_map` renames
    the gold mentions' types in the target (`render_target`)."""
    start, end = window if window is not None else (0, text_length(doc))
    instruction = pick_instruction(INSTRUCTIONS, rng).format(types=", ".join(labels))
    target = render_target(doc, labels, (start, end), label_map) if with_target else None
    return TaskExample(
        task=TASK_NAME,
        instruction=instruction,
        input=f"Text: {text_slice(doc, start, end)}",
        output=target,
        meta={"window": (start, end)},
    )


def render_target(
    doc: Doc,
    labels: Sequence[str],
    window: tuple[int, int],
    label_map: Mapping[str, str] | None = None,
) -> str:
    """Gold answer: per type, the distinct surface forms in order of first appearance.
    `label_map` renames corpus types to answer types first (BC5CDR's ``Chemical`` as
    BioRED's ``ChemicalEntity``), so another corpus's mentions teach the same answers."""
    start, end = window
    label_map = label_map or {}
    forms: dict[str, list[str]] = {label: [] for label in labels}
    for span in all_mentions(doc):
        label = label_map.get(span.label_, span.label_)
        if label in forms and start <= span.start_char and span.end_char <= end:
            if span.text not in forms[label]:
                forms[label].append(span.text)
    return "\n".join(
        f"{label}: {SEPARATOR.join(forms[label]) if forms[label] else EMPTY}" for label in labels
    )


def parse_answer(answer: str, labels: Sequence[str]) -> ParsedEntities:
    """Parse `Type: a ... b` lines. Types are matched case-insensitively; lines that do
    not have that shape, or name a type that was not asked for, are counted."""
    by_lower = {label.lower(): label for label in labels}
    mentions: list[tuple[str, str]] = []
    bad = unknown = 0
    for line in answer.splitlines():
        if not line.strip():
            continue
        match = _LINE.match(line)
        if not match:
            bad += 1
            continue
        label = by_lower.get(match.group(1).strip().lower())
        if label is None:
            unknown += 1
            continue
        value = match.group(2).strip()
        if not value or value.lower() in {EMPTY.lower(), "none.", "n/a", "-"}:
            continue
        for form in value.split(SEPARATOR.strip()):
            form = form.strip()
            if form and (label, form) not in mentions:
                mentions.append((label, form))
    return ParsedEntities(mentions, bad, unknown)


def copy_spans(texts: Sequence[str | None]) -> CopySpans:
    """The copy constraint of this answer format (`models.copy_spans`): the forms listed
    after a line's ``Type:`` and between separators are copied from `texts[i]`."""
    return CopySpans(texts=list(texts), opener=":", separator=SEPARATOR.rstrip(), empty=" " + EMPTY)


def line_repeats_a_form(line: str) -> bool:
    """True when an unfinished answer line has just listed a form it already listed
    ("Gene: NBS1 ... NBS1 ..."). Targets list each form once, so this is a decoding loop
    (a small model can repeat one form until the token limit and never reach the other
    types): the backend then ends the line, and the model goes on with the next type."""
    if not line.rstrip().endswith(SEPARATOR.strip()):
        return False
    _, _, value = line.partition(":")
    forms = [form.strip() for form in value.split(SEPARATOR.strip())][:-1]
    return len(forms) != len(set(forms))


def drop_cut_mention(parsed: ParsedEntities) -> ParsedEntities:
    """For an answer cut off by the token limit: its last mention may be a prefix of
    what the model meant ("sodium/iodide" of "sodium/iodide symporter"), so drop it."""
    return ParsedEntities(parsed.mentions[:-1], parsed.unparseable_lines, parsed.unknown_labels)


def _is_word_edge(text: str, index: int, inside: str) -> bool:
    """True when `index` does not cut through an alphanumeric run (`inside` is the
    character of the mention at that edge)."""
    if index <= 0 or index >= len(text) or not inside.isalnum():
        return True
    return not (text[index - 1].isalnum() and text[index].isalnum())


def find_occurrences(text: str, form: str, start: int, end: int) -> list[tuple[int, int]]:
    """Every occurrence of `form` in `text[start:end]` that starts and ends on word edges;
    exact case first, case-insensitive only when the exact form does not occur."""
    if not form:
        return []
    hits: list[tuple[int, int]] = []
    for haystack, needle in ((text, form), (text.lower(), form.lower())):
        if len(haystack) != len(text):  # lower() changed lengths: offsets unusable
            continue
        pos = haystack.find(needle, start, end)
        while pos != -1:
            stop = pos + len(needle)
            if _is_word_edge(text, pos, needle[0]) and _is_word_edge(text, stop, needle[-1]):
                hits.append((pos, stop))
            pos = haystack.find(needle, pos + 1, end)
        if hits:
            break
    return hits


def _form_variants(form: str) -> list[str]:
    """The form as written, then without surrounding quotes (models like to quote);
    quotes that belong to the mention (``cytidine 5'``) are kept when they occur."""
    stripped = form.strip("'\"`")
    return [form] if stripped == form or not stripped else [form, stripped]


def ground(
    text: str, parsed: Iterable[tuple[str, str]], window: tuple[int, int], stats: Counter
) -> list[tuple[int, int, str]]:
    """Turn parsed (label, form) pairs into `(start_char, end_char, label)` mentions:
    every occurrence of each form inside the window. Forms not found are counted as
    ungroundable, never invented."""
    mentions: list[tuple[int, int, str]] = []
    for label, form in parsed:
        stats["entities_predicted"] += 1
        hits: list[tuple[int, int]] = []
        for variant in _form_variants(form):
            hits = find_occurrences(text, variant, *window)
            if hits:
                break
        if not hits:
            stats["entities_ungroundable"] += 1
            continue
        mentions.extend((s, e, label) for s, e in hits)
    return mentions


def place_mentions(doc: Doc, mentions: Iterable[tuple[int, int, str]]) -> tuple[Doc, list[Span]]:
    """Spans for grounded mentions, splitting tokens in place where a mention does not
    start or end on a token edge ("AR" in "AR)-dependent"), so offsets stay exact.
    Returns the (possibly retokenised) doc and the spans, kb id = normalised text."""
    mentions = list(mentions)
    split_tokens_at(doc, [o for s, e, _ in mentions for o in (s, e)])
    spans = []
    for s, e, label in mentions:
        span = doc.char_span(s, e, label=label)
        if span is not None:
            spans.append(
                Span(doc, span.start, span.end, label=label, kb_id=normalise_concept(span.text))
            )
    return doc, spans


# -- instruction-dataset units: one per document, or per window of a long one ----------


def plan_source(train: Sequence[Doc], source: SourceLike, where: str) -> SourcePlan:
    """The entity types to ask for: the configured ``labels``, else the types the train
    split annotates (BioRED's order first), each renamed through ``label_map``."""
    label_map = source.label_map or {}
    labels = source.labels or ordered_labels(
        (label_map.get(s.label_, s.label_) for doc in train for s in all_mentions(doc)),
        BIORED_ENTITY_LABELS,
    )
    if not labels:
        raise ValueError(f"{where} labels: the train split has no entity mentions")
    info: dict = {"labels": list(labels)}
    if label_map:
        info["label_map"] = dict(label_map)
    return SourcePlan(tuple(labels), info)


def make_units(doc: Doc, doc_id: str, source: SourceLike, context: UnitContext) -> list[Unit]:
    """The NER units of `doc`: the whole document, or the windows that make its longest
    prompt plus answer fit `max_length`."""
    labels = context.labels
    index = context.longest_template(
        "ner/" + ",".join(labels),
        INSTRUCTIONS,
        lambda r: build_example(Doc(Vocab()), labels, rng=r),
    )

    def worst(window: tuple[int, int]) -> int:
        ex = build_example(
            doc, labels, window, with_target=True, rng=FixedPick(index), label_map=source.label_map
        )
        return context.measure.prompt(ex) + context.measure.answer(ex.output)

    windows = context.fit_windows(doc, worst)
    units = [
        Unit(
            f"{source.name}/{doc_id}" + window_suffix(k, windows),
            None,
            lambda rng, window=window: build_example(
                doc, labels, window, with_target=True, rng=rng, label_map=source.label_map
            ),
        )
        for k, window in enumerate(windows)
    ]
    context.stats["windows"] += len(windows)
    return units


def _answer_types(answer: str, labels: Sequence[str]) -> list[str]:
    return [label for label, _form in parse_answer(answer, labels).mentions]


UNITS = UnitTask(
    NER,
    plan_source,
    make_units,
    options=frozenset({"labels", "label_map"}),
    windowed=True,
    tally=_answer_types,
    tally_name="ner (entity forms)",
)
