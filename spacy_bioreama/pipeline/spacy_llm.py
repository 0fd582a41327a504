"""Our tasks and models inside spacy-llm's `llm` component.

* `spacy_bioreama.HF.v1` (llm_models): any local causal LM (+ LoRA adapter) through our
  batched Hugging Face backend. It accepts plain string prompts, so spacy-llm's own
  tasks (e.g. `spacy.NER.v3`) can run on it, and our pair prompts, whose answers are
  constrained to the label set and carry their confidence.
* `spacy_bioreama.NER.v1` / `spacy_bioreama.REL.v1` (llm_tasks): the same prompt
  rendering and answer parsing as `bio_relation_llm` (tasks/), one prompt per document
  (NER) or one prompt per candidate concept pair (RE).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

# spacy-llm validates signatures by `typing.Iterable`'s name, not collections.abc's.
from typing import Any, Iterable  # noqa: UP035

from spacy.tokens import Doc
from spacy_llm.registry import registry

from ..annotations.labels import BIORED_ENTITY_LABELS, BIORED_RELATION_LABELS, BIORED_TYPE_PAIRS
from ..annotations.relations import Relation
from ..annotations.spans import set_entities
from ..models.backend import ChatPrompt, GenerationBackend
from ..tasks import ner
from ..tasks import relation as re_task
from ..tasks.base import TaskExample


class ScoredText(str):
    """A model response that also carries the log-probability of its tokens."""

    logprob: float = 0.0

    def __new__(cls, text: str, logprob: float = 0.0) -> ScoredText:
        obj = super().__new__(cls, text)
        obj.logprob = logprob
        return obj


class SpacyLLMModel:
    """spacy-llm model callable over a `GenerationBackend` (loaded on first call)."""

    def __init__(self, backend_factory, max_new_tokens: int) -> None:
        self._backend_factory = backend_factory
        self._backend: GenerationBackend | None = None
        self.max_new_tokens = max_new_tokens
        self.stats: Counter[str] = Counter()

    @property
    def backend(self) -> GenerationBackend:
        """The generation backend, loaded on first use."""
        if self._backend is None:
            self._backend = self._backend_factory()
        return self._backend

    def __call__(self, prompts: Iterable[Iterable[Any]]) -> Iterable[Iterable[Any]]:
        """Responses per document; a document's prompt may be a string, a TaskExample
        or a list of TaskExamples (one response list per prompt then)."""
        per_doc = [list(doc_prompts) for doc_prompts in prompts]
        flat: list[TaskExample | str] = []
        for doc_prompts in per_doc:
            for prompt in doc_prompts:
                flat.extend(prompt if isinstance(prompt, list) else [prompt])
        free = [i for i, p in enumerate(flat) if not _constrained(p)]
        fixed = [i for i, p in enumerate(flat) if _constrained(p)]
        texts: dict[int, ScoredText] = {}
        limit = self.backend.max_prompt_tokens
        counter = getattr(self.backend, "count_prompt_tokens", None)
        for i, prompt in enumerate(flat):
            chat = _chat(prompt)
            n = counter(chat) if counter else self.backend.count_tokens(chat.user)
            if n > limit:
                # spacy-llm's non-sharding tasks send a whole document: answer nothing
                # for one that does not fit, and count it, rather than fail the batch.
                self.stats["prompts_too_long"] += 1
                texts[i] = ScoredText("", 0.0)
        free = [i for i in free if i not in texts]
        fixed = [i for i in fixed if i not in texts]
        for indices, constrained in ((free, False), (fixed, True)):
            if not indices:
                continue
            generations = self.backend.generate(
                [_chat(flat[i]) for i in indices],
                max_new_tokens=self.max_new_tokens,
                choices=[flat[i].choices for i in indices] if constrained else None,
            )
            for i, gen in zip(indices, generations, strict=True):
                texts[i] = ScoredText(gen.text, gen.logprob)
        out, k = [], 0
        for doc_prompts in per_doc:
            responses = []
            for prompt in doc_prompts:
                n = len(prompt) if isinstance(prompt, list) else 1
                chunk = [texts[j] for j in range(k, k + n)]
                responses.append(chunk if isinstance(prompt, list) else chunk[0])
                k += n
            out.append(responses)
        return out


def _constrained(prompt: TaskExample | str) -> bool:
    return isinstance(prompt, TaskExample) and prompt.choices is not None


def _chat(prompt: TaskExample | str) -> ChatPrompt:
    return prompt.chat_prompt() if isinstance(prompt, TaskExample) else ChatPrompt(user=prompt)


def _first(response: Any) -> Any:
    """spacy-llm wraps each non-sharded response in a list: unwrap it."""
    if (
        isinstance(response, list | tuple)
        and len(response) == 1
        and isinstance(response[0], list | tuple | str)
    ):
        return response[0]
    return response


class NERTask:
    """spacy-llm task: typed span lists, grounded in the text (see tasks/ner.py)."""

    def __init__(self, labels: Sequence[str]) -> None:
        self._labels = tuple(labels)
        self.stats: Counter[str] = Counter()

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels the task asks for (what the `llm` pipe reports as its labels)."""
        return self._labels

    def generate_prompts(self, docs: Iterable[Doc]) -> Iterable[TaskExample]:
        """One NER prompt per document (the whole text)."""
        for doc in docs:
            yield ner.build_example(doc, self._labels)

    def parse_responses(self, docs: Iterable[Doc], responses: Iterable[str]) -> Iterable[Doc]:
        """Parse each answer's typed spans, ground them in the text and set the entities."""
        for doc, response in zip(docs, responses, strict=True):
            parsed = ner.parse_answer(str(_first(response)), self._labels)
            mentions = ner.ground(doc.text, parsed.mentions, (0, len(doc.text)), self.stats)
            _, spans = ner.place_mentions(doc, mentions)
            set_entities(doc, spans)
            yield doc


class RELTask:
    """spacy-llm task: pair classification over the entities already in `doc.ents`."""

    def __init__(
        self, labels: Sequence[str], type_pairs: Sequence[str], max_pairs: int = 100
    ) -> None:
        self._labels = tuple(labels)
        self._allowed = re_task.parse_type_pairs(type_pairs)
        self.max_pairs = max_pairs
        self.stats: Counter[str] = Counter()

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels the task asks for (what the `llm` pipe reports as its labels)."""
        return self._labels

    def _examples(self, doc: Doc) -> list[TaskExample]:
        pairs = re_task.candidate_pairs(re_task.collect_concepts(doc), self._allowed)
        return [re_task.build_example(doc, h, t, self._labels) for h, t in pairs[: self.max_pairs]]

    def generate_prompts(self, docs: Iterable[Doc]) -> Iterable[list[TaskExample]]:
        """One prompt per allowed candidate concept pair of each document (at most
        `max_pairs`)."""
        for doc in docs:
            yield self._examples(doc)

    def parse_responses(self, docs: Iterable[Doc], responses: Iterable[str]) -> Iterable[Doc]:
        """Set `doc._.relations` from the pair answers (None and unparseable answers
        dropped, the latter counted in `stats`)."""
        for doc, response in zip(docs, responses, strict=True):
            answers = _first(response) if isinstance(response, list | tuple) else []
            rels = []
            for example, answer in zip(self._examples(doc), answers, strict=False):
                self.stats["re_pairs"] += 1
                if not str(answer):  # prompt did not fit the model (counted by the model)
                    continue
                label = re_task.parse_answer(str(answer), self._labels)
                if label is None:
                    self.stats["re_answers_unparseable"] += 1
                if label in (None, re_task.NO_RELATION):
                    continue
                head, tail = example.meta["head"], example.meta["tail"]
                score = min(1.0, math.exp(getattr(answer, "logprob", 0.0)))
                rels.append(
                    Relation(
                        head.mention, tail.mention, head.concept_id, tail.concept_id, label, score
                    )
                )
            doc._.relations = rels
            yield doc


@registry.llm_tasks("spacy_bioreama.NER.v1")
def make_ner_task(labels: list[str] = list(BIORED_ENTITY_LABELS)) -> NERTask:  # noqa: B006
    """spacy-llm task `spacy_bioreama.NER.v1`: our NER prompt and parser for `labels`."""
    return NERTask(labels)


@registry.llm_tasks("spacy_bioreama.REL.v1")
def make_rel_task(
    labels: list[str] = list(BIORED_RELATION_LABELS),  # noqa: B006
    type_pairs: list[str] = list(BIORED_TYPE_PAIRS),  # noqa: B006
    max_pairs: int = 100,
) -> RELTask:
    """spacy-llm task `spacy_bioreama.REL.v1`: our pair prompt over the entities in
    `doc.ents`, `labels` as the answer choices, candidate pairs limited to `type_pairs`
    (``"LabelA|LabelB"``; empty = every pair) and at most `max_pairs` per document."""
    return RELTask(labels, type_pairs, max_pairs)


@registry.llm_models("spacy_bioreama.HF.v1")
def make_hf_model(
    name: str = "default",
    adapter: str | None = None,
    device: str = "auto",
    batch_size: int = 8,
    max_new_tokens: int = 256,
    max_prompt_tokens: int = 2048,
) -> SpacyLLMModel:
    """Our Hugging Face backend as a spacy-llm model (local paths and LoRA adapters)."""

    def factory() -> GenerationBackend:
        from ..models import load_backend

        return load_backend(
            name,
            adapter=adapter,
            device=device,
            max_prompt_tokens=max_prompt_tokens,
            batch_size=batch_size,
        )

    return SpacyLLMModel(factory, max_new_tokens)
