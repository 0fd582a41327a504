"""What a task contributes to an instruction dataset: its *units*.

A unit is one instruction example before rendering: an id, its answer label and a
function that renders the example with a paraphrase drawn from a given random source.
The instruction builder (`instructions/build.py`) loads the documents, asks each
source's task for its units through the one interface below, then samples, weights,
renders and measures them; it never needs to know what a task does with a document.

Every task module (`ner`, `relation`, `pair`, `qa`) declares a `UnitTask`:

* ``plan(train_docs, source, where)`` -> `SourcePlan`: the answer labels and what
  ``stats.json`` records about the source (derived from the train split where the
  config leaves them open);
* ``make_units(doc, doc_id, source, context)`` -> the units of one document;

and says which source keys it reads and how its "None" answers are sampled.
`tasks.registry.UNIT_TASKS` maps task names to them.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from spacy.tokens import Doc

from .base import TaskExample
from .windows import split_windows

MIN_WINDOW_TOKENS = 32
WINDOW_SHRINK = 0.8


@dataclass
class Unit:
    """One example before rendering: `make(rng)` renders it (instruction drawn from
    `rng`; None gives the canonical template). `label` is the answer of a
    classification unit (None for NER); `negative` marks a "None" unit, which the
    builder may subsample."""

    id: str
    label: str | None
    make: Callable[[random.Random | None], TaskExample]
    negative: bool = False


class FixedPick:
    """Stands in for a Random in `pick_instruction`: always template `index` (used to
    measure a task's longest template)."""

    def __init__(self, index: int):
        self.index = index

    def randrange(self, n: int) -> int:
        """`index`, capped to the last template."""
        return min(self.index, n - 1)


class LengthMeasure(Protocol):
    """Measures lengths in the unit of `max_length` (`instructions.lengths`)."""

    def text(self, text: str) -> int:
        """The length of a piece of text (windowing budgets)."""
        ...

    def prompt(self, example: TaskExample) -> int:
        """The length of the prompt the model sees for `example`."""
        ...

    def answer(self, answer: str) -> int:
        """The length of `answer` plus its end-of-turn token."""
        ...


class SourceLike(Protocol):
    """The keys of one ``[instructions.sources.NAME]`` section a task reads."""

    name: str
    labels: tuple[str, ...] | None
    label_map: Mapping[str, str] | None
    type_pairs: tuple[str, ...] | None
    context: str
    relation_prompt: str
    ner_prompt: str


@dataclass
class SourcePlan:
    """What a task decided for one source from its train split: the answer `labels`
    (in answer order), the entries it adds to the source's ``stats.json`` record, and
    (relations) the entity type pairs whose concept pairs are candidates."""

    labels: tuple[str, ...]
    info: dict[str, Any]
    allowed: set[frozenset[str]] = field(default_factory=set)


@dataclass
class UnitContext:
    """What the builder gives a task for one source and split: the plan, the length
    budget, the rationale settings and the counter the task adds its notes to
    (windows, dropped pairs ...). `template_cache` is shared by every context of a
    build, so each task measures its templates once."""

    where: str
    split: str
    plan: SourcePlan
    measure: LengthMeasure
    max_length: int
    stats: Counter
    rationale: bool = False
    rationale_max_sentences: int = 2
    quote_negatives: bool = True
    template_cache: dict[tuple[str, tuple[str, ...]], int] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        """The source's answer labels."""
        return self.plan.labels

    def longest_template(
        self,
        key: str,
        templates: Sequence[str],
        make: Callable[[FixedPick], TaskExample],
    ) -> int:
        """Index of the template giving the longest prompt (`make` renders an example
        with a `FixedPick`), cached per `key` (task and labels) and templates."""
        cache_key = (key, tuple(templates))
        if cache_key not in self.template_cache:
            lengths = [self.measure.prompt(make(FixedPick(i))) for i in range(len(templates))]
            self.template_cache[cache_key] = max(range(len(lengths)), key=lambda i: lengths[i])
        return self.template_cache[cache_key]

    def fit_windows(
        self, doc: Doc, worst: Callable[[tuple[int, int]], int]
    ) -> list[tuple[int, int]]:
        """The whole document if its worst-case example (`worst(window)`, prompt plus
        answer) fits `max_length`, else the windows of `split_windows` at a budget shrunk
        until every window fits (counted in ``docs_windowed``/``windows_of_windowed``)."""
        limit = self.max_length
        full = (0, len(doc.text))
        if not doc.text.strip():
            return []
        full_len = worst(full)
        if full_len <= limit:
            return [full]
        budget = limit - (full_len - self.measure.text(doc.text))
        windows = [full]
        while budget >= MIN_WINDOW_TOKENS:
            windows = split_windows(doc, self.measure.text, budget)
            if all(worst(w) <= limit for w in windows):
                break
            budget = int(budget * WINDOW_SHRINK)
        if len(windows) > 1:
            self.stats["docs_windowed"] += 1
            self.stats["windows_of_windowed"] += len(windows)
        return windows


def window_suffix(k: int, windows: Sequence[Any]) -> str:
    """The unit-id suffix of window `k` (``/w1`` ...), empty for a single window."""
    return f"/w{k + 1}" if len(windows) > 1 else ""


def ordered_labels(seen: Iterable[str], schema: Sequence[str]) -> tuple[str, ...]:
    """The labels in `seen`: those of `schema` in its order, then the others sorted."""
    seen = set(seen)
    return tuple([label for label in schema if label in seen] + sorted(seen - set(schema)))


@dataclass(frozen=True)
class UnitTask:
    """How one task family contributes to an instruction dataset.

    `options`: the task-specific source keys it reads (the config rejects them for
    other tasks). `negatives`: how its "None" units are sampled when the source sets no
    ``negative_ratio`` ("global": at the ``[instructions]`` ratio; "all": kept; None:
    the task has no negatives). `windowed`: documents are cut into windows (their
    counts go to ``stats.json``). `tally`, `tally_name`: for tasks without a single
    answer label, the labels an answer lists (``by_label`` statistics under
    `tally_name`). `label_keys`: the corpus labels of a document that a source's
    ``label_map`` renames (its keys are checked against the whole train and dev files:
    a key naming none of them is a typo); None: not checked."""

    name: str
    plan: Callable[[Sequence[Doc], SourceLike, str], SourcePlan]
    make_units: Callable[[Doc, str, SourceLike, UnitContext], list[Unit]]
    options: frozenset[str] = frozenset()
    negatives: Literal["global", "all"] | None = None
    windowed: bool = False
    tally: Callable[[str, Sequence[str]], list[str]] | None = None
    tally_name: str = ""
    label_keys: Callable[[Doc], Iterable[str]] | None = None


__all__ = [
    "FixedPick",
    "LengthMeasure",
    "SourceLike",
    "SourcePlan",
    "Unit",
    "UnitContext",
    "UnitTask",
    "ordered_labels",
    "window_suffix",
]
