"""Relation extraction as pair classification (REaMA style).

Why pair classification rather than one listing of all relations per document:

* the answer is one label from a closed set, so decoding can be constrained to the
  labels and every answer parses; the renormalised probability of the chosen label is
  a calibrated-enough confidence in [0, 1] at no extra cost;
* a small model does far better choosing a label than writing a structured list of
  concept pairs that must then be matched back to mentions;
* it is what the seed papers train on (REInstruct: positive pairs plus sampled "none"
  pairs), so the instruction builder can balance positives and negatives.

The cost is one prompt per candidate concept pair; candidates are restricted to the
entity type pairs the relation schema allows (`type_pairs`).

Four prompt variants (`RELATION_PROMPTS`, the ``relation_prompt`` setting of the
instruction builder and the component; training records carry theirs as
``prompt_format`` so inference can build the same):

* ``named`` (the first default): the window's text unmarked, then the two concepts
  named. All pair prompts of a window share the text prefix.
* ``marked`` (REaMA): the same text with every mention of the two concepts marked
  ``[E1] ... [/E1]`` and ``[E2] ... [/E2]``, then the concepts named. Marking breaks the
  shared prefix: each pair pays for the whole window.
* ``sentence``: only the sentence(s) that mention both concepts (at most two), marked as
  above; a pair that no sentence co-mentions is not asked (82 % of BioRED's related pairs
  are co-mentioned in a sentence, against 44 % of all candidate pairs). Prompts are
  short, so training steps and inference are cheap, and the model sees where the pair is.
* ``typed``: the ``sentence`` prompt with typed marks (PURE's typed entity markers,
  Zhong & Chen 2021): ``[E1 ChemicalEntity] ... [/E1]``, so each mention says its type
  where it stands, not only in the ``Entity 1:`` line after the text.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from ..annotations.labels import BIORED_RELATION_LABELS, NEGATIVE_RELATION_LABELS
from ..annotations.spans import (
    all_mentions,
    concept_ids,
    split_concept_ids,
    text_length,
    text_slice,
)
from .answers import ANSWER_PREFIX, parse_choice
from .base import TaskExample, pick_instruction
from .names import RE
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
from .windows import sentence_ranges

TASK_NAME = RE
NO_RELATION = "None"
RELATION_PROMPTS = ("named", "marked", "sentence", "typed")
# the variants that quote only the sentence(s) co-mentioning the pair
SENTENCE_PROMPTS = frozenset({"sentence", "typed"})
DEFAULT_RELATION_PROMPT = "named"
# sentences quoted by the "sentence" prompt (the first ones co-mentioning the pair)
PROMPT_SENTENCES = 2
HEAD_MARKS = ("[E1]", "[/E1]")
TAIL_MARKS = ("[E2]", "[/E2]")

INSTRUCTIONS = (
    "Read the text and decide which relation it states between Entity 1 and Entity 2. "
    "Answer with exactly one of: {labels}.",
    "Given the biomedical text below, classify the relation between Entity 1 and Entity 2. "
    "Possible answers: {labels}.",
    "What is the relationship between Entity 1 and Entity 2 according to this text? "
    "Reply with one label from: {labels}.",
    "Relation extraction. Choose the label that describes how Entity 1 and Entity 2 are "
    "related in the passage, from: {labels}. Answer 'None' if the text states no relation.",
    "You are a biomedical curator. Based only on the text, which of these relations holds "
    "between Entity 1 and Entity 2: {labels}?",
)


@dataclass(frozen=True)
class Concept:
    """A concept in a window: its id, type, display name and representative mention."""

    concept_id: str
    label: str
    name: str
    mention: tuple[int, int]


def collect_concepts(doc: Doc, window: tuple[int, int] | None = None) -> list[Concept]:
    """Concepts with a mention inside `window`, in order of first mention there. The
    representative mention is the concept's first mention in `doc.ents` (so that the
    `doc._.rel` view can index it), else its first overflow mention."""
    start, end = window if window is not None else (0, text_length(doc))
    in_ents = {(e.start, e.end, e.label_) for e in doc.ents}
    first: dict[str, Span] = {}
    representative: dict[str, Span] = {}
    for span in all_mentions(doc):
        if span.start_char < start or span.end_char > end:
            continue
        for cid in concept_ids(span):
            first.setdefault(cid, span)
            if (span.start, span.end, span.label_) in in_ents:
                representative.setdefault(cid, span)
    concepts = []
    for cid, span in first.items():
        rep = representative.get(cid, span)
        concepts.append(Concept(cid, rep.label_, rep.text, (rep.start, rep.end)))
    return concepts


def parse_type_pairs(type_pairs: Iterable[str]) -> set[frozenset[str]]:
    """`"A|B"` strings to unordered type pairs; an empty input allows every pair."""
    pairs = set()
    for item in type_pairs:
        parts = [p.strip() for p in item.split("|")]
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"relation type pair {item!r} must look like 'TypeA|TypeB'")
        pairs.add(frozenset(parts))
    return pairs


def candidate_pairs(
    concepts: Sequence[Concept], allowed: set[frozenset[str]]
) -> list[tuple[Concept, Concept]]:
    """Unordered concept pairs (in order of appearance) whose types are allowed."""
    pairs = []
    for i, head in enumerate(concepts):
        for tail in concepts[i + 1 :]:
            if head.mention == tail.mention:
                continue  # one mention with several ids: not a pair of entities
            if not allowed or frozenset((head.label, tail.label)) in allowed:
                pairs.append((head, tail))
    return pairs


def answer_choices(labels: Sequence[str]) -> tuple[str, ...]:
    """The closed answer set: the relation labels plus the no-relation answer."""
    return (*labels, NO_RELATION)


def check_relation_prompt(prompt: str) -> str:
    """`prompt` when it names a variant of `RELATION_PROMPTS`, else a ValueError."""
    if prompt not in RELATION_PROMPTS:
        raise ValueError(f"relation prompt must be one of {list(RELATION_PROMPTS)}, got {prompt!r}")
    return prompt


def co_mention_sentences(
    doc: Doc, head: Concept, tail: Concept, window: tuple[int, int] | None = None
) -> list[tuple[int, int]]:
    """The first `PROMPT_SENTENCES` sentences (character ranges clipped to `window`, text
    order) that mention both concepts; empty when no sentence does."""
    start, end = window if window is not None else (0, text_length(doc))
    heads = concept_mentions(doc, head, (start, end))
    tails = concept_mentions(doc, tail, (start, end))
    if not heads or not tails:
        return []
    found = []
    for a, b in sentence_ranges(doc):
        a, b = max(a, start), min(b, end)
        if a >= b:
            continue
        if any(s < b and a < e for s, e in heads) and any(s < b and a < e for s, e in tails):
            found.append((a, b))
            if len(found) == PROMPT_SENTENCES:
                break
    return found


def asks_pair(
    doc: Doc, head: Concept, tail: Concept, window: tuple[int, int] | None, prompt: str
) -> bool:
    """Whether the `prompt` variant asks about the pair at all (``sentence``, ``typed``: only pairs
    a sentence co-mentions; the others are left unrelated without a prompt)."""
    return prompt not in SENTENCE_PROMPTS or bool(co_mention_sentences(doc, head, tail, window))


def marked_text(
    doc: Doc,
    ranges: Sequence[tuple[int, int]],
    heads: Sequence[tuple[int, int]],
    tails: Sequence[tuple[int, int]],
    head_marks: tuple[str, str] = HEAD_MARKS,
    tail_marks: tuple[str, str] = TAIL_MARKS,
) -> str:
    """The text of `ranges` (joined by `` ... `` where they are not adjacent) with each
    head mention wrapped in `head_marks` and each tail mention in `tail_marks`; a
    mention crossing a range border is marked only where it lies inside."""
    text = doc.text
    pieces = []
    for a, b in ranges:
        events: list[tuple[int, int, str]] = []
        for mentions, (open_mark, close_mark) in ((heads, head_marks), (tails, tail_marks)):
            for s, e in mentions:
                if s < b and a < e:
                    events.append((max(s, a), 1, open_mark))
                    events.append((min(e, b), 0, close_mark))
        events.sort()  # at one position: closing marks first
        out, at = [], a
        for position, _, mark in events:
            out.append(text[at:position])
            out.append(mark)
            at = position
        out.append(text[at:b])
        pieces.append("".join(out).strip())
    return " ... ".join(pieces)


def _pair_text(
    doc: Doc,
    head: Concept,
    tail: Concept,
    window: tuple[int, int],
    prompt: str,
) -> str:
    """The text a `prompt` variant quotes for the pair (see the module docstring)."""
    if prompt == "named":
        return text_slice(doc, *window)
    ranges = [window]
    if prompt in SENTENCE_PROMPTS:
        ranges = co_mention_sentences(doc, head, tail, window) or [window]
    heads = concept_mentions(doc, head, window)
    tails = concept_mentions(doc, tail, window)
    if prompt == "typed":
        return marked_text(doc, ranges, heads, tails, *typed_marks(head, tail))
    return marked_text(doc, ranges, heads, tails)


def typed_marks(head: Concept, tail: Concept) -> tuple[tuple[str, str], tuple[str, str]]:
    """The ``typed`` prompt's marks: `HEAD_MARKS` and `TAIL_MARKS` with the concept's
    type in the opening mark, e.g. ``[E1 ChemicalEntity]`` ... ``[/E1]``."""
    return (
        (f"{HEAD_MARKS[0][:-1]} {head.label}]", HEAD_MARKS[1]),
        (f"{TAIL_MARKS[0][:-1]} {tail.label}]", TAIL_MARKS[1]),
    )


def build_example(
    doc: Doc,
    head: Concept,
    tail: Concept,
    labels: Sequence[str],
    window: tuple[int, int] | None = None,
    *,
    target: str | None = None,
    rng: random.Random | None = None,
    prompt: str = DEFAULT_RELATION_PROMPT,
    rationale: Rationale | None = None,
) -> TaskExample:
    """The pair-classification example for (head, tail) in `doc` (or a window of it),
    in the `prompt` variant of `RELATION_PROMPTS`. With `rationale`, the answer is the
    evidence-first one (`render_rationale`): the example says so (`answer_format`), and
    its `decode_choices` are every label's rationale, so that inference scores exactly
    the answers training taught."""
    start, end = window if window is not None else (0, text_length(doc))
    choices = answer_choices(labels)
    decode_choices = None
    if rationale is not None:
        decode_choices = tuple(
            render_rationale(
                doc,
                head,
                tail,
                choice,
                (start, end),
                max_sentences=rationale.max_sentences,
                quote_negatives=rationale.quote_negatives,
            )
            for choice in choices
        )
    instruction = pick_instruction(INSTRUCTIONS, rng).format(labels=", ".join(choices))
    text = (
        f"Text: {_pair_text(doc, head, tail, (start, end), check_relation_prompt(prompt))}\n\n"
        f"Entity 1: {head.name} ({head.label})\n"
        f"Entity 2: {tail.name} ({tail.label})"
    )
    return TaskExample(
        task=TASK_NAME,
        instruction=instruction,
        input=text,
        output=target,
        choices=choices,
        meta={"head": head, "tail": tail, "window": (start, end)},
        prompt_format=prompt,
        answer_format=rationale.answer_format if rationale is not None else None,
        decode_choices=decode_choices,
    )


def _id_readings(concept_id: str) -> set[str]:
    """The id itself and, for a composite id ``A|B``, its parts (see split_concept_ids)."""
    primary, secondary = split_concept_ids(concept_id)
    return {concept_id, *primary, *secondary}


def gold_label(doc: Doc, head: Concept, tail: Concept) -> str:
    """The gold answer for a pair: its relation label in `doc._.relations` (ids matched
    whole first, then by the parts of composite ids, as the scorer does), or
    NO_RELATION when there is none or the corpus labels the pair negative."""
    whole = frozenset((head.concept_id, tail.concept_id))
    heads, tails = _id_readings(head.concept_id), _id_readings(tail.concept_id)
    label = None
    for rel in doc._.relations:
        if frozenset((rel.head_id, rel.tail_id)) == whole:
            label = rel.label
            break
        if label is None and (
            (rel.head_id in heads and rel.tail_id in tails)
            or (rel.head_id in tails and rel.tail_id in heads)
        ):
            label = rel.label
    if label is None or label in NEGATIVE_RELATION_LABELS:
        return NO_RELATION
    return label


def parse_answer(answer: str, labels: Sequence[str]) -> str | None:
    """The label in an answer (last non-empty line, optional 'Answer:' prefix, any case;
    `answers.parse_choice`). Returns NO_RELATION for a negative answer and None when
    nothing matches."""
    return parse_choice(answer, answer_choices(labels))


def decide(
    answer: str | None,
    probability: float,
    probabilities: Mapping[str, float] | None,
    none_threshold: float | None,
    type_label: Callable[[Mapping[str, float]], str] | None = None,
) -> tuple[str | None, float]:
    """The decision for one constrained pair answer: detection, then typing.

    The pair is related when P(None) < `none_threshold`, and then takes its most probable
    relation label, even when "None" alone outscores each label (with several labels
    sharing the positive mass, plain argmax says "None" far too often); `type_label`
    (a calibration's label bias) picks the label instead where given. Without a
    threshold or an option distribution: the argmax `answer` and its `probability`.
    """
    if none_threshold is None or not probabilities or NO_RELATION not in probabilities:
        return answer, probability
    p_none = probabilities[NO_RELATION]
    positives = {k: v for k, v in probabilities.items() if k != NO_RELATION}
    if p_none >= none_threshold or not positives:
        return NO_RELATION, p_none
    best = type_label(positives) if type_label else max(positives, key=positives.get)
    return best, positives[best]


# -- training-data helpers: rationales (REaMA chain of thought) and negative sampling --

EVIDENCE_PREFIX = "Evidence:"
NO_EVIDENCE = "none"
# the relation answer settings besides a rationale's format: the label alone, and the
# default rationale
DIRECT_ANSWER = "direct"
RATIONALE_ANSWER = "rationale"
_RATIONALE_FORMAT = re.compile(r"^rationale\(sentences=(\d+), negatives=(quote|none)\)$")


@dataclass(frozen=True)
class Rationale:
    """The evidence-first answer (REaMA's chain of thought, `render_rationale`): how
    many sentences it quotes and whether unrelated pairs quote theirs too. Training
    records name it in ``answer_format``; the component reads it back from the adapter's
    training_meta.json and scores every label's rationale, evidence included, so the
    evidence is never generated freely (it is taken from the text, as in training)."""

    max_sentences: int = 2
    quote_negatives: bool = True

    @property
    def answer_format(self) -> str:
        """The name records carry, e.g. ``rationale(sentences=2, negatives=quote)``."""
        negatives = "quote" if self.quote_negatives else "none"
        return f"rationale(sentences={self.max_sentences}, negatives={negatives})"

    @classmethod
    def from_answer_format(cls, name: str) -> Rationale:
        """The rationale an ``answer_format`` name describes; ValueError for another."""
        match = _RATIONALE_FORMAT.match(name)
        if match is None:
            raise ValueError(
                f"unknown relation answer format {name!r} (expected e.g. {cls().answer_format!r})"
            )
        return cls(int(match.group(1)), match.group(2) == "quote")

    @classmethod
    def from_setting(cls, setting: object) -> Rationale:
        """The rationale a component setting names: ``"rationale"`` (the defaults) or an
        ``answer_format``; ValueError (TypeError for a non-string) otherwise."""
        if not isinstance(setting, str):
            raise TypeError(f"expected a string, got {setting!r}")
        return cls() if setting == RATIONALE_ANSWER else cls.from_answer_format(setting)


def concept_mentions(
    doc: Doc, concept: Concept, window: tuple[int, int] | None = None
) -> list[tuple[int, int]]:
    """Character ranges of every mention of `concept` (by concept id, as
    `collect_concepts` groups them) inside `window`, in text order."""
    start, end = window if window is not None else (0, text_length(doc))
    found = []
    for span in all_mentions(doc):
        if span.start_char < start or span.end_char > end:
            continue
        if concept.concept_id in concept_ids(span):
            found.append((span.start_char, span.end_char))
    if not found and concept.mention != (0, 0) and concept.mention[1] <= len(doc):
        # a concept built by hand (pair corpora): fall back to its representative mention
        span = doc[concept.mention[0] : concept.mention[1]]
        if start <= span.start_char and span.end_char <= end:
            found.append((span.start_char, span.end_char))
    return sorted(set(found))


def evidence_sentences(
    doc: Doc,
    head: Concept,
    tail: Concept,
    window: tuple[int, int] | None = None,
    *,
    max_sentences: int = 2,
) -> list[tuple[int, int]]:
    """The sentences (character ranges, text order) that show where the text mentions
    the pair: the first `max_sentences` sentences holding a mention of both concepts;
    if no sentence holds both, the first sentence mentioning the head and the first
    mentioning the tail (one range when they coincide). Empty when a concept has no
    mention in the window. Sentences come from `doc.sents` when the Doc has sentence
    boundaries, else from the punctuation rule `split_windows` uses, clipped to `window`."""
    start, end = window if window is not None else (0, text_length(doc))
    sentences = [(max(a, start), min(b, end)) for a, b in sentence_ranges(doc)]
    sentences = [(a, b) for a, b in sentences if a < b]
    heads = concept_mentions(doc, head, (start, end))
    tails = concept_mentions(doc, tail, (start, end))
    if not heads or not tails:
        return []

    def touches(sentence: tuple[int, int], mentions: list[tuple[int, int]]) -> bool:
        return any(s < sentence[1] and sentence[0] < e for s, e in mentions)

    both = [s for s in sentences if touches(s, heads) and touches(s, tails)]
    if both:
        return both[:max_sentences]
    first_head = next((s for s in sentences if touches(s, heads)), None)
    first_tail = next((s for s in sentences if touches(s, tails)), None)
    return sorted({s for s in (first_head, first_tail) if s is not None})


def render_rationale(
    doc: Doc,
    head: Concept,
    tail: Concept,
    label: str,
    window: tuple[int, int] | None = None,
    *,
    max_sentences: int = 2,
    quote_negatives: bool = True,
) -> str:
    """REaMA-style chain-of-thought target: the evidence sentence(s), then the label::

        Evidence: <sentence(s) quoted from the text>
        Answer: <label>

    The evidence is taken from the annotations (`evidence_sentences`), never invented;
    line breaks inside it become spaces so the answer stays on the last line, which is
    what `parse_answer` reads. For a NO_RELATION pair the same sentences are quoted
    (where the text mentions the pair; the decision that they state no relation follows)
    unless `quote_negatives` is False, which gives ``Evidence: none``. A pair with no
    mention in the window also gives ``Evidence: none``."""
    ranges = []
    if label != NO_RELATION or quote_negatives:
        ranges = evidence_sentences(doc, head, tail, window, max_sentences=max_sentences)
    evidence = " ".join(" ".join(doc.text[a:b].split()) for a, b in ranges) or NO_EVIDENCE
    return f"{EVIDENCE_PREFIX} {evidence}\n{ANSWER_PREFIX} {label}"


def distribution_by_label(
    distribution: Iterable[tuple[str, float]], choices: Sequence[str]
) -> tuple[tuple[str, float], ...]:
    """A rationale answer's option distribution keyed by the choice each option names
    on its answer line (an option naming none keeps its text), as a direct answer's is,
    so the detection rule and the calibration read both alike."""
    return tuple((parse_choice(option, choices) or option, p) for option, p in distribution)


def sample_negatives(
    negatives: Sequence[object],
    n_positive: int,
    ratio: float | None,
    rng: random.Random,
) -> list[int]:
    """Indices (sorted) of the negatives to keep: ``round(ratio * n_positive)`` drawn
    without replacement from `rng` (all of them when there are fewer, or when `ratio`
    is None)."""
    if ratio is None:
        return list(range(len(negatives)))
    if ratio < 0:
        raise ValueError(f"negative ratio must be >= 0 or None, got {ratio}")
    want = min(len(negatives), round(ratio * n_positive))
    return sorted(rng.sample(range(len(negatives)), want))


# -- instruction-dataset units: one per candidate concept pair of each window ---------


def train_type_pairs(docs: Iterable[Doc]) -> tuple[Counter, int]:
    """Entity type pairs of the positive relations (unordered, "A|B"), counted over the
    concept pairs `gold_label` labels positive; and how many positive relations no
    concept pair covers."""
    pairs: Counter = Counter()
    uncovered = 0
    for doc in docs:
        positives = [r for r in doc._.relations if r.label not in NEGATIVE_RELATION_LABELS]
        if not positives:
            continue
        covered = set()
        for head, tail in candidate_pairs(collect_concepts(doc), set()):
            if gold_label(doc, head, tail) != NO_RELATION:
                pairs["|".join(sorted((head.label, tail.label)))] += 1
                covered.add(frozenset((head.concept_id, tail.concept_id)))
        uncovered += sum(1 for r in positives if frozenset((r.head_id, r.tail_id)) not in covered)
    return pairs, uncovered


def plan_source(train: Sequence[Doc], source: SourceLike, where: str) -> SourcePlan:
    """Candidate type pairs (the configured ``type_pairs``, else those of the train
    split's positive relations, most frequent first) and the relation labels (the
    configured ``labels``, else the train split's, through ``label_map``)."""
    found, uncovered = train_type_pairs(train)
    counts = dict(sorted(found.items(), key=lambda kv: (-kv[1], kv[0])))
    if source.type_pairs is not None:
        type_pairs = list(source.type_pairs)
    else:
        type_pairs = list(counts)
        if not type_pairs:
            raise ValueError(
                f"{where}: the train split has no positive relation between two "
                "annotated concepts, so no type pairs can be derived; set type_pairs"
            )
    label_map = source.label_map or {}
    seen_labels = {
        label_map.get(r.label, r.label)
        for d in train
        for r in d._.relations
        if r.label not in NEGATIVE_RELATION_LABELS
    } - {NO_RELATION}
    labels = source.labels or ordered_labels(seen_labels, BIORED_RELATION_LABELS)
    info = {
        "labels": list(labels),
        "label_map": source.label_map,
        "type_pairs": type_pairs,
        "type_pair_counts": counts,
        "train_positive_relations_without_concept_pair": uncovered,
    }
    return SourcePlan(tuple(labels), info, parse_type_pairs(type_pairs))


def unit_maker(
    doc: Doc,
    head: Concept,
    tail: Concept,
    window: tuple[int, int] | None,
    label: str,
    context: UnitContext,
    task: str = TASK_NAME,
    prompt: str = DEFAULT_RELATION_PROMPT,
) -> Callable[[random.Random | None], TaskExample]:
    """The `Unit.make` of a pair example answered `label` (a rationale target when the
    context asks for one); `task` names the family in the record (``pair`` corpora use
    the same prompts)."""
    rationale = None
    answer = label
    if context.rationale:
        rationale = Rationale(context.rationale_max_sentences, context.quote_negatives)
        answer = render_rationale(
            doc,
            head,
            tail,
            label,
            window,
            max_sentences=rationale.max_sentences,
            quote_negatives=rationale.quote_negatives,
        )

    def make(rng: random.Random | None) -> TaskExample:
        ex = build_example(
            doc,
            head,
            tail,
            context.labels,
            window,
            target=answer,
            rng=rng,
            prompt=prompt,
            rationale=rationale,
        )
        return ex if task == ex.task else replace(ex, task=task)

    return make


def _worst_length(
    doc: Doc, window: tuple[int, int], index: int, context: UnitContext, prompt: str
) -> int:
    """The longest prompt plus answer of any pair example of `window` (0: no pair). With
    marks, every pair's prompt is measured (their marks differ); else the pair with the
    longest names stands for all."""
    pairs = [
        (h, t)
        for h, t in candidate_pairs(collect_concepts(doc, window), context.plan.allowed)
        if asks_pair(doc, h, t, window, prompt)
    ]
    if not pairs:
        return 0
    if prompt == "named":
        pairs = [max(pairs, key=lambda p: len(p[0].name) + len(p[1].name))]
    ex = max(
        (
            build_example(doc, h, t, context.labels, window, rng=FixedPick(index), prompt=prompt)
            for h, t in pairs
        ),
        key=context.measure.prompt,
    )
    answer = context.measure.answer(max(answer_choices(context.labels), key=len))
    if context.rationale:
        sentences = sorted(
            (
                context.measure.text(doc.text[a:b])
                for a, b in sentence_ranges(doc)
                if a < window[1] and window[0] < b
            ),
            reverse=True,
        )
        answer += sum(sentences[: context.rationale_max_sentences]) + 8
    return context.measure.prompt(ex) + answer


def make_units(doc: Doc, doc_id: str, source: SourceLike, context: UnitContext) -> list[Unit]:
    """One unit per candidate concept pair of each window of `doc` (windows sized so
    that the longest pair prompt fits), answered by `gold_label` through
    ``label_map``; a gold label outside the source's labels is dropped and counted."""
    labels = context.labels
    nobody = Concept("", "", "", (0, 0))
    index = context.longest_template(
        "re/" + ",".join(labels),
        INSTRUCTIONS,
        lambda r: build_example(Doc(Vocab()), nobody, nobody, labels, rng=r),
    )
    prompt = source.relation_prompt
    windows = context.fit_windows(
        doc, lambda window: _worst_length(doc, window, index, context, prompt)
    )
    context.stats["windows"] += len(windows)
    units = []
    for k, window in enumerate(windows):
        for head, tail in candidate_pairs(collect_concepts(doc, window), context.plan.allowed):
            label = gold_label(doc, head, tail)
            if not asks_pair(doc, head, tail, window, prompt):
                outcome = "none" if label == NO_RELATION else "related"
                context.stats[f"pairs_not_co_mentioned_{outcome}"] += 1
                continue
            if source.label_map is not None:
                label = source.label_map.get(label, label)
            if label != NO_RELATION and label not in labels:
                context.stats["pairs_with_label_outside_labels_dropped"] += 1
                continue
            uid = f"{source.name}/{doc_id}/{head.concept_id}/{tail.concept_id}"
            units.append(
                Unit(
                    uid + window_suffix(k, windows),
                    label,
                    unit_maker(doc, head, tail, window, label, context, prompt=prompt),
                    negative=label == NO_RELATION,
                )
            )
    # positives this split's docs hold, whether or not a candidate pair covers them
    context.stats["gold_relations"] += sum(
        1 for r in doc._.relations if r.label not in NEGATIVE_RELATION_LABELS
    )
    return units


UNITS = UnitTask(
    RE,
    plan_source,
    make_units,
    options=frozenset(
        {"labels", "label_map", "negative_ratio", "type_pairs", "rationale", "relation_prompt"}
    ),
    negatives="global",
    windowed=True,
)
