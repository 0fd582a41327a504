"""Named entity recognition as typed span lists (BioMistral-NLU style).

The answer has one line per requested type, in the order the instruction lists them::

    GeneOrGeneProduct: NIS ... sodium/iodide symporter
    DiseaseOrPhenotypicFeature: None

Listing each surface form once (not every mention) keeps answers short; grounding then
marks every occurrence of a listed form in the text, as PubTator corpora annotate every
mention. The same module renders gold targets for training and parses model answers.

Two prompt variants (`NER_PROMPTS`, the ``ner_prompt`` setting of the instruction
builder and the component; records carry it as ``prompt_format``, so that an adapter
tells the component which one it learned, and a mix of both is noticed):

* ``all_types`` (default): one prompt per window asks for every type, as above;
* ``per_type``: one prompt per window and type, the text first and the type last
  (``Entity type: ChemicalEntity``), answered by that type's one line. A window's prompts
  share everything up to the type, so the backend prefills the text once for all of
  them (`models.prefix_cache`). Each target is one short line; measured at 200 steps
  (README), the adapter still went on with other types' lines, which are dropped and
  counted (`ner_lines_unknown_type`), and lost to ``all_types`` on F1 and speed.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

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
# answers meaning "no mention": a whole line's value, or a form inside a list
_EMPTY_WORDS = frozenset({EMPTY.lower(), "none.", "n/a", "-"})

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

PER_TYPE_INSTRUCTIONS = (
    "Extract every mention of the biomedical entity type named after the text. Answer "
    "with one line 'Type: mention ... mention', copying each mention exactly as written; "
    "write 'Type: None' if the text has no mention of it.",
    "Find all entities of the type given below the passage. Write one line 'Type: mention "
    "... mention' with the mentions copied verbatim, or 'Type: None' if there are none.",
    "You are a biomedical annotator. List the mentions of the entity type named after the "
    "text, as one line 'Type: mention ... mention'; use 'Type: None' when it does not "
    "occur. Copy mentions exactly.",
    "Named entity recognition for one entity type (given after the text). Output one line: "
    "the type, a colon, then its mentions from the text separated by ' ... ', or None.",
    "Read the biomedical text and identify every mention of the entity type named at the "
    "end. Reply with one line 'Type: mention ... mention' ('Type: None' if absent), using "
    "the exact words of the text.",
)
NER_PROMPTS = ("all_types", "per_type")
DEFAULT_NER_PROMPT = "all_types"

# "Type: a ... b", tolerating a bullet or a number before the type ("- ", "2. ").
_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])?\s*([A-Za-z][\w /-]*?)\s*:\s*(.*?)\s*$")
_TYPE_NAME = re.compile(r"[A-Za-z](?:[\w /-]*[\w/-])?")  # the type names _LINE reads back


def check_type_names(labels: Sequence[str], field: str) -> None:
    """A ValueError naming `field` when a type name cannot head an answer line
    (`_LINE`: a letter, then letters, digits, ``_``, ``-``, ``/`` or spaces): the model
    could be trained on it, but every answer line naming it would be unparseable."""
    bad = [label for label in labels if not _TYPE_NAME.fullmatch(label)]
    if bad:
        raise ValueError(
            f"{field}: entity type names must start with a letter and hold only letters, "
            f"digits, '_', '-', '/' or spaces (the 'Type: ...' answer lines), got {bad}; "
            f"rename them (an instruction source's label_map can)"
        )


@dataclass
class ParsedEntities:
    """Mentions parsed from one answer, with what could not be parsed."""

    mentions: list[tuple[str, str]]
    unparseable_lines: int
    unknown_labels: int
    # listed forms that cannot be a mention: no letter or digit ("." of "TP53 ...."),
    # or an empty-answer word inside a list ("BRCA1 ... None")
    rejected_forms: int = 0
    # whether the answer's last listed form added the last mention (not a repeat or a
    # rejected form): only then can a cut-off answer have cut that mention
    last_form_added: bool = False


def check_ner_prompt(prompt: str) -> str:
    """`prompt` when it names a variant of `NER_PROMPTS`, else a ValueError."""
    if prompt not in NER_PROMPTS:
        raise ValueError(f"NER prompt must be one of {list(NER_PROMPTS)}, got {prompt!r}")
    return prompt


def build_example(
    doc: Doc,
    labels: Sequence[str],
    window: tuple[int, int] | None = None,
    *,
    with_target: bool = False,
    rng: random.Random | None = None,
    label_map: Mapping[str, str] | None = None,
    prompt: str = DEFAULT_NER_PROMPT,
) -> TaskExample:
    """The NER example for `doc` (or the character window of it), in the `prompt`
    variant of `NER_PROMPTS` (``per_type``: `labels` holds the one type asked);
    `label_map` renames the gold mentions' types in the target (`render_target`)."""
    start, end = window if window is not None else (0, text_length(doc))
    text = f"Text: {text_slice(doc, start, end)}"
    if check_ner_prompt(prompt) == "per_type":
        if len(labels) != 1:
            raise ValueError(f"a per_type NER prompt asks for one type, got {list(labels)}")
        instruction = pick_instruction(PER_TYPE_INSTRUCTIONS, rng)
        text = f"{text}\n\nEntity type: {labels[0]}"
    else:
        instruction = pick_instruction(INSTRUCTIONS, rng).format(types=", ".join(labels))
    target = render_target(doc, labels, (start, end), label_map) if with_target else None
    return TaskExample(
        task=TASK_NAME,
        instruction=instruction,
        input=text,
        output=target,
        # the types asked: an answer is parsed against these only
        meta={"window": (start, end), "labels": list(labels)},
        prompt_format=prompt,
    )


def asked_types(labels: Sequence[str], prompt: str) -> list[list[str]]:
    """The types each prompt of a window asks for: all `labels` in one prompt, or with
    ``per_type`` one label per prompt (in `labels`' order). Training and inference both
    split a window this way."""
    if check_ner_prompt(prompt) == "per_type":
        return [[label] for label in labels]
    return [list(labels)]


def window_examples(
    doc: Doc, labels: Sequence[str], window: tuple[int, int] | None, prompt: str
) -> list[TaskExample]:
    """What the component asks about one window (`asked_types`); a window's per-type
    prompts share the text prefix."""
    return [
        build_example(doc, types, window, prompt=prompt) for types in asked_types(labels, prompt)
    ]


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
    bad = unknown = rejected = 0
    last_added = False
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
        if not value or value.lower() in _EMPTY_WORDS:
            continue
        for form in value.split(SEPARATOR.strip()):
            form = form.strip()
            if not form:
                continue
            last_added = False
            if form.lower() in _EMPTY_WORDS or not any(ch.isalnum() for ch in form):
                rejected += 1  # grounded, it would mark every "." or "none" of the text
            elif (label, form) not in mentions:
                mentions.append((label, form))
                last_added = True
    return ParsedEntities(mentions, bad, unknown, rejected, last_added)


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


def drop_cut_mention(parsed: ParsedEntities, answer: str) -> ParsedEntities:
    """For an answer cut off by the token limit: its last mention may be a prefix of
    what the model meant ("sodium/iodide" of "sodium/iodide symporter"), so drop it,
    but only when the answer ends on it (not when the cut fell in a later type line)."""
    if not parsed.last_form_added or not answer.rstrip().endswith(parsed.mentions[-1][1]):
        return parsed
    return replace(parsed, mentions=parsed.mentions[:-1])


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
    corpus_types = Counter(t for doc in train for t in _mention_types(doc))
    labels = source.labels or ordered_labels(
        (label_map.get(t, t) for t in corpus_types), BIORED_ENTITY_LABELS
    )
    if not labels:
        raise ValueError(f"{where} labels: the train split has no entity mentions")
    info: dict = {"labels": list(labels)}
    if label_map:
        info["label_map"] = dict(label_map)
    # mentions of types not asked stay in the text and are answered as no entity
    not_asked = {t: n for t, n in sorted(corpus_types.items()) if label_map.get(t, t) not in labels}
    if not_asked:
        info["train_mentions_of_types_not_asked"] = not_asked
    return SourcePlan(tuple(labels), info)


def _mention_types(doc: Doc) -> Iterable[str]:
    """The corpus type of each mention: what an NER source's ``label_map`` renames."""
    return (span.label_ for span in all_mentions(doc))


def make_units(doc: Doc, doc_id: str, source: SourceLike, context: UnitContext) -> list[Unit]:
    """The NER units of `doc`: the whole document, or the windows that make its longest
    prompt plus answer fit `max_length`; with ``ner_prompt = "per_type"``, one unit per
    window and type."""
    labels = context.labels
    prompt = source.ner_prompt
    asked = asked_types(labels, prompt)
    index = context.longest_template(
        f"ner/{prompt}/" + ",".join(labels),
        PER_TYPE_INSTRUCTIONS if prompt == "per_type" else INSTRUCTIONS,
        lambda r: max(
            (build_example(Doc(Vocab()), types, rng=r, prompt=prompt) for types in asked),
            key=context.measure.prompt,
        ),
    )

    def example(window: tuple[int, int], types: list[str], rng) -> TaskExample:
        ex = build_example(
            doc, types, window, with_target=True, rng=rng, label_map=source.label_map, prompt=prompt
        )
        return replace(ex, label_set=tuple(labels))

    def worst(window: tuple[int, int]) -> int:
        return max(
            context.measure.prompt(ex) + context.measure.answer(ex.output)
            for ex in (example(window, types, FixedPick(index)) for types in asked)
        )

    windows = context.fit_windows(doc, worst)
    units = [
        Unit(
            f"{source.name}/{doc_id}"
            + window_suffix(k, windows)
            + (f"/{types[0]}" if prompt == "per_type" else ""),
            None,
            lambda rng, window=window, types=types: example(window, types, rng),
        )
        for k, window in enumerate(windows)
        for types in asked
    ]
    context.stats["windows"] += len(windows)
    return units


def _answer_types(answer: str, labels: Sequence[str]) -> list[str]:
    return [label for label, _form in parse_answer(answer, labels).mentions]


UNITS = UnitTask(
    NER,
    plan_source,
    make_units,
    options=frozenset({"labels", "label_map", "ner_prompt"}),
    windowed=True,
    tally=_answer_types,
    tally_name="ner (entity forms)",
    label_keys=_mention_types,
)
