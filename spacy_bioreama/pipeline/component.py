"""The `bio_relation_llm` pipeline component.

Doc → prompts (tasks/) → one batched call to the generation backend per task →
parsed answers → grounded spans in `doc.ents` / `doc.spans["bio_entities"]` and
relations in `doc._.relations`. Anything the model says that cannot be parsed or found
in the text is dropped and counted in `component.stats`, never raised and never invented.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import srsly
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import minibatch, registry

from ..annotations import relations as _relations  # noqa: F401  (registers the Doc extensions)
from ..annotations.labels import BIORED_ENTITY_LABELS, BIORED_RELATION_LABELS, BIORED_TYPE_PAIRS
from ..annotations.relations import Relation
from ..annotations.spans import set_entities, text_slice
from ..models.backend import CopySpans, Generation, GenerationBackend, LineGuard
from ..tasks import ner
from ..tasks import relation as re_task
from ..tasks.names import NER, RE, TASK_ENTITIES, TASK_RELATIONS
from ..tasks.relation import DIRECT_ANSWER
from ..tasks.windows import split_windows
from .adapter_integrity import HASHES_KEY, adapter_hashes, bytes_hashes, check_hashes
from .adapter_prompts import (
    ner_prompt_for,
    relation_prompt_for,
    relation_rationale_for,
    untrained_labels_message,
)
from .relation_calibration import (
    AUTO,
    RelationCalibration,
    read_calibration,
)
from .settings import (
    BACKENDS,
    BIO_SCORER,
    CONFIGURABLE,
    DEFAULT_CONFIG,
    LIST_SETTINGS,
    MARK_MARGIN_TOKENS,
    PROMPT_MARGIN_TOKENS,
    VALIDATED,
    validate_settings,
)

ADAPTER_DIR = "adapter"
SETTINGS_FILE = "settings.json"
# doc.user_data key for every scored candidate pair (with `keep_pair_scores`): what
# calibration and threshold sweeps need, since doc._.relations holds only the kept pairs.
PAIR_SCORES_KEY = "bioreama_pair_scores"


@Language.factory(
    "bio_relation_llm",
    assigns=["doc.ents", "doc.spans", "doc._.relations"],
    default_config=DEFAULT_CONFIG,
    default_score_weights={
        "ents_f": 0.5,
        "rel_micro_f": 0.5,
        "ents_p": 0.0,
        "ents_r": 0.0,
        "rel_micro_p": 0.0,
        "rel_micro_r": 0.0,
    },
)
def make_bio_relation_llm(
    nlp: Language,
    name: str,
    model: str,
    adapter: str | None,
    entity_labels: list[str],
    relation_labels: list[str],
    relation_type_pairs: list[str],
    tasks: list[str],
    batch_size: int,
    max_new_tokens: int,
    ner_copy_constraint: bool,
    max_prompt_tokens: int,
    ner_window_tokens: int | None,
    max_pairs_per_window: int,
    max_pairs_per_doc: int,
    relation_prompt: str,
    ner_prompt: str,
    relation_answer: str,
    relation_threshold: float,
    none_threshold: float | str | None,
    device: str,
    backend: str,
    trust_remote_code: bool,
    keep_pair_scores: bool,
    scorer: Callable[..., dict[str, Any]] | None,
) -> BioRelationLLM:
    """Factory registered as `bio_relation_llm` (also via the spacy_factories entry point)."""
    return BioRelationLLM(
        nlp,
        name,
        model=model,
        adapter=adapter,
        entity_labels=entity_labels,
        relation_labels=relation_labels,
        relation_type_pairs=relation_type_pairs,
        tasks=tasks,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        ner_copy_constraint=ner_copy_constraint,
        max_prompt_tokens=max_prompt_tokens,
        ner_window_tokens=ner_window_tokens,
        max_pairs_per_window=max_pairs_per_window,
        max_pairs_per_doc=max_pairs_per_doc,
        relation_prompt=relation_prompt,
        ner_prompt=ner_prompt,
        relation_answer=relation_answer,
        relation_threshold=relation_threshold,
        none_threshold=none_threshold,
        device=device,
        backend=backend,
        trust_remote_code=trust_remote_code,
        keep_pair_scores=keep_pair_scores,
        scorer=scorer,
    )


class BioRelationLLM:
    """Entities and relations from an (instruction-tuned) causal LM.

    The backend is loaded on first use, so building or loading a pipeline is cheap and
    `from_disk` can point the component at its saved adapter before any weights load.
    """

    def __init__(
        self,
        nlp: Language,
        name: str = "bio_relation_llm",
        *,
        model: str = "default",
        adapter: str | None = None,
        entity_labels: Sequence[str] = BIORED_ENTITY_LABELS,
        relation_labels: Sequence[str] = BIORED_RELATION_LABELS,
        relation_type_pairs: Sequence[str] = BIORED_TYPE_PAIRS,
        tasks: Sequence[str] = (TASK_ENTITIES, TASK_RELATIONS),
        batch_size: int = 8,
        max_new_tokens: int = 256,
        ner_copy_constraint: bool = False,
        max_prompt_tokens: int = 1024,
        ner_window_tokens: int | None = None,
        max_pairs_per_window: int = 100,
        max_pairs_per_doc: int = 1000,
        relation_prompt: str = AUTO,
        ner_prompt: str = AUTO,
        relation_answer: str = AUTO,
        relation_threshold: float = 0.0,
        none_threshold: float | str | None = AUTO,
        device: str = "auto",
        trust_remote_code: bool = False,
        keep_pair_scores: bool = False,
        scorer: Callable[..., dict[str, Any]] | None = None,
        backend: str | GenerationBackend = "hf",
    ) -> None:
        validate_settings(
            tasks=tasks,
            entity_labels=entity_labels,
            relation_labels=relation_labels,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            max_prompt_tokens=max_prompt_tokens,
            none_threshold=none_threshold,
            max_pairs_per_window=max_pairs_per_window,
            max_pairs_per_doc=max_pairs_per_doc,
            relation_prompt=relation_prompt,
            ner_prompt=ner_prompt,
            relation_answer=relation_answer,
            ner_copy_constraint=ner_copy_constraint,
            ner_window_tokens=ner_window_tokens,
            relation_threshold=relation_threshold,
        )
        self.nlp = nlp
        self.name = name
        self.model = model
        self.adapter = adapter
        self.entity_labels = list(entity_labels)
        self.relation_labels = list(relation_labels)
        self.relation_type_pairs = list(relation_type_pairs)
        self._allowed_pairs = re_task.parse_type_pairs(self.relation_type_pairs)
        self.tasks = list(tasks)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.ner_copy_constraint = bool(ner_copy_constraint)
        self.max_prompt_tokens = max_prompt_tokens
        self.ner_window_tokens = ner_window_tokens
        self.max_pairs_per_window = max_pairs_per_window
        self.max_pairs_per_doc = max_pairs_per_doc
        self.relation_prompt = relation_prompt
        self.ner_prompt = ner_prompt
        self.relation_answer = relation_answer
        self.relation_threshold = relation_threshold
        self.none_threshold = none_threshold
        self.device = device
        # Off unless the user sets it: a model folder's own Python code never runs.
        self.trust_remote_code = bool(trust_remote_code)
        self.keep_pair_scores = bool(keep_pair_scores)
        # By registry name, not by import: the scorers live in evaluation/, above the
        # pipeline. They are registered when `spacy_bioreama` is imported (its
        # __init__) and, for spaCy, through the spacy_scorers entry point.
        self.scorer = scorer if scorer is not None else registry.scorers.get(BIO_SCORER)()
        # `backend`: the engine's name (loaded on first use), or a ready backend object.
        if isinstance(backend, str):
            if backend not in BACKENDS:
                raise ValueError(
                    f"bio_relation_llm: backend must be one of {list(BACKENDS)}, got {backend!r}"
                )
            self.backend_name, self._backend = backend, None
        else:  # a ready backend; a reloaded or unpickled copy loads the default engine
            self.backend_name, self._backend = "hf", backend
        self._window_budget: int | None = None
        self._calibration: tuple[str | None, RelationCalibration] | None = None
        self._relation_prompt: tuple[tuple[str | None, str], str] | None = None
        self._ner_prompt: tuple[tuple[str | None, str], str] | None = None
        self._relation_rationale: tuple[tuple, re_task.Rationale | None] | None = None
        self._warned_type_pairs = False
        self._labels_checked: tuple | None = None
        self.stats: Counter[str] = Counter()

    def configure(self, **settings: Any) -> BioRelationLLM:
        """Change settings of a built or loaded component (e.g. a saved pipeline run
        with `--none-threshold`), validated by the same `validate_settings` as the
        factory; only names in `CONFIGURABLE`. Returns the component."""
        unknown = sorted(set(settings) - set(CONFIGURABLE))
        if unknown:
            raise ValueError(
                f"bio_relation_llm: cannot configure {unknown}; settings: {list(CONFIGURABLE)}"
            )
        merged = {key: getattr(self, key) for key in CONFIGURABLE} | settings
        validate_settings(**{k: v for k, v in merged.items() if k in VALIDATED})
        allowed_pairs = re_task.parse_type_pairs(merged["relation_type_pairs"])  # may raise
        for key, value in settings.items():
            setattr(self, key, list(value) if key in LIST_SETTINGS else value)
        self._allowed_pairs = allowed_pairs
        self._window_budget = None  # the prompt overhead depends on tasks and limits
        return self

    # -- backend ---------------------------------------------------------------------
    def prepare(self, load_model: bool = True) -> BioRelationLLM:
        """Read the adapter's records (prompt variants, answer format, calibration) and,
        with `load_model`, load the model now rather than on the first batch: a missing
        or damaged adapter, an unknown model or a bad calibration file then fails before
        any work (commands turn these ValueError/OSError/ImportError into clear errors)."""
        if self.adapter and not Path(self.adapter).is_dir():
            raise FileNotFoundError(f"bio_relation_llm: adapter directory {self.adapter} not found")
        # only the records of the tasks asked: a relations-only run must not fail on the
        # adapter's NER variants (nor the reverse)
        if TASK_ENTITIES in self.tasks:
            _ = self.effective_ner_prompt
        if TASK_RELATIONS in self.tasks:
            _ = (
                self.effective_relation_prompt,
                self.effective_relation_rationale,
                self.effective_none_threshold,
            )
        self._warn_untrained_labels()
        if load_model:
            _ = self.backend
        return self

    @property
    def backend(self) -> GenerationBackend:
        """The generation backend, loaded on first use."""
        if self._backend is None:
            from ..models import load_backend

            self._backend = load_backend(
                self.model,
                adapter=self.adapter,
                device=self.device,
                max_prompt_tokens=self.max_prompt_tokens,
                batch_size=self.batch_size,
                backend=self.backend_name,
                max_new_tokens=self.max_new_tokens,
                trust_remote_code=self.trust_remote_code,
            )
        return self._backend

    @property
    def calibration(self) -> RelationCalibration:
        """The adapter's relation calibration (`relation_calibration`), read once per
        adapter folder; the identity with threshold 0.5 when it carries none."""
        if self._calibration is None or self._calibration[0] != self.adapter:
            self._calibration = (self.adapter, read_calibration(self.adapter))
        return self._calibration[1]

    @property
    def effective_relation_prompt(self) -> str:
        """The relation prompt variant built: `relation_prompt`, or for ``"auto"`` the one
        the adapter was trained on (`adapter_prompts.relation_prompt_for`)."""
        key = (self.adapter, self.relation_prompt)
        if self._relation_prompt is None or self._relation_prompt[0] != key:
            # read once per adapter and setting, not once per batch
            self._relation_prompt = (key, relation_prompt_for(*key))
        return self._relation_prompt[1]

    @property
    def effective_ner_prompt(self) -> str:
        """The NER prompt variant built: `ner_prompt`, or for ``"auto"`` the one the
        adapter was trained on (`adapter_prompts.ner_prompt_for`)."""
        key = (self.adapter, self.ner_prompt)
        if self._ner_prompt is None or self._ner_prompt[0] != key:
            self._ner_prompt = (key, ner_prompt_for(*key))
        return self._ner_prompt[1]

    @property
    def effective_relation_rationale(self) -> re_task.Rationale | None:
        """The rationale relation answers are scored with (each label's, evidence first):
        `relation_answer`, or for ``"auto"`` the one the adapter was trained with
        (`adapter_prompts.relation_rationale_for`); None for direct answers."""
        key = (self.adapter, self.relation_answer)
        if self._relation_rationale is None or self._relation_rationale[0] != key:
            if self.relation_answer == AUTO:
                rationale = relation_rationale_for(self.adapter)
            elif self.relation_answer == DIRECT_ANSWER:
                rationale = None
            else:
                rationale = re_task.Rationale.from_setting(self.relation_answer)
            self._relation_rationale = (key, rationale)
        return self._relation_rationale[1]

    @property
    def effective_none_threshold(self) -> float | None:
        """The threshold the detection rule uses: `none_threshold`, or for ``"auto"`` the
        adapter's calibrated one (`FALLBACK_NONE_THRESHOLD` without calibration)."""
        if self.none_threshold == AUTO:
            return self.calibration.none_threshold
        return self.none_threshold

    def _budget(self) -> int:
        """Tokens of document text that fit one prompt next to the longest instruction
        (chat template included), keeping `PROMPT_MARGIN_TOKENS` for entity names."""
        if self._window_budget is None:
            empty = self.nlp.make_doc("")
            # without the entities task the NER prompt still sizes the windows (as it
            # always has), but the adapter's NER variant is not looked up
            prompt = ner.DEFAULT_NER_PROMPT
            if TASK_ENTITIES in self.tasks:
                prompt = self.effective_ner_prompt
            examples = ner.window_examples(empty, self.entity_labels, None, prompt)
            margin = PROMPT_MARGIN_TOKENS
            if TASK_RELATIONS in self.tasks:
                nobody = re_task.Concept("", "", "", (0, 0))
                prompt = self.effective_relation_prompt
                examples.append(
                    re_task.build_example(
                        empty, nobody, nobody, self.relation_labels, prompt=prompt
                    )
                )
                margin += MARK_MARGIN_TOKENS[prompt]
            overhead = max(self._prompt_tokens(ex) for ex in examples)
            limit = min(self.max_prompt_tokens, self.backend.max_prompt_tokens)
            self._window_budget = max(32, limit - overhead - margin)
        return self._window_budget

    def _prompt_tokens(self, example) -> int:
        """Length of an example's whole prompt; backends without a chat-aware counter
        are asked for the user message only."""
        counter = getattr(self.backend, "count_prompt_tokens", None)
        if counter is not None:
            return counter(example.chat_prompt())
        return self.backend.count_tokens(example.chat_prompt().user)

    # -- processing ------------------------------------------------------------------
    def __call__(self, doc: Doc) -> Doc:
        """Annotate one document (see `pipe`)."""
        return next(iter(self.pipe([doc], batch_size=1)))

    def pipe(self, stream: Iterable[Doc], *, batch_size: int | None = None) -> Iterator[Doc]:
        """Annotate documents, sending all prompts of a batch to the backend at once."""
        for docs in minibatch(stream, size=batch_size or self.batch_size):
            yield from self._process(list(docs))

    def _process(self, docs: list[Doc]) -> list[Doc]:
        _refuse_forked_process()
        self._warn_untrained_labels()
        self.stats["docs"] += len(docs)
        budget = self._budget()
        windows = [split_windows(doc, self.backend.count_tokens, budget) for doc in docs]
        self.stats["windows"] += sum(len(w) for w in windows)
        if TASK_ENTITIES in self.tasks:
            ner_windows = windows
            if self.ner_window_tokens is not None and self.ner_window_tokens < budget:
                ner_windows = [
                    split_windows(doc, self.backend.count_tokens, self.ner_window_tokens)
                    for doc in docs
                ]
            self.stats["ner_windows"] += sum(len(w) for w in ner_windows)
            self._predict_entities(docs, ner_windows)
        if TASK_RELATIONS in self.tasks:
            self._predict_relations(docs, windows)
        return docs

    def _predict_entities(self, docs: list[Doc], windows: list[list[tuple[int, int]]]) -> None:
        prompt = self.effective_ner_prompt
        examples = [
            (i, example)
            for i, doc in enumerate(docs)
            for window in windows[i]
            for example in ner.window_examples(doc, self.entity_labels, window, prompt)
        ]
        copy = None
        if self.ner_copy_constraint:
            copy = ner.copy_spans([text_slice(docs[i], *ex.meta["window"]) for i, ex in examples])
        generations = self._generate(
            [ex for _, ex in examples],
            self.max_new_tokens,
            line_guard=ner.line_repeats_a_form,
            copy=copy,
        )
        mentions_per_doc: list[list[tuple[int, int, str]]] = [[] for _ in docs]
        texts = [doc.text for doc in docs]  # once per document: Doc.text joins every token
        for (i, example), generation in zip(examples, generations, strict=True):
            if generation is None:
                continue
            parsed = ner.parse_answer(generation.text, example.meta["labels"])
            self.stats["ner_answers"] += 1
            self.stats["ner_lines_ended_repeating"] += generation.lines_ended
            self.stats["ner_copy_redirected_steps"] += generation.copy_redirected
            self.stats["ner_lines_unparseable"] += parsed.unparseable_lines
            self.stats["ner_lines_unknown_type"] += parsed.unknown_labels
            self.stats["ner_forms_rejected"] += parsed.rejected_forms
            if generation.truncated:
                self.stats["ner_answers_truncated"] += 1
                parsed = ner.drop_cut_mention(parsed, generation.text)
            well_formed = generation.text.strip() and not (
                parsed.unparseable_lines or parsed.unknown_labels
            )
            if not well_formed:
                self.stats["ner_answers_unparseable"] += 1
            mentions_per_doc[i].extend(
                ner.ground(texts[i], parsed.mentions, example.meta["window"], self.stats)
            )
        for doc, mentions in zip(docs, mentions_per_doc, strict=True):
            _, spans = ner.place_mentions(doc, mentions)
            self.stats["entity_mentions"] += len(spans)
            self.stats["entity_mentions_overflow"] += set_entities(doc, spans)

    def _predict_relations(self, docs: list[Doc], windows: list[list[tuple[int, int]]]) -> None:
        examples = []
        texts = [doc.text for doc in docs]
        prompt = self.effective_relation_prompt
        rationale = self.effective_relation_rationale
        for i, doc in enumerate(docs):
            left = self.max_pairs_per_doc  # the document's pair prompts, all windows together
            # A sentence prompt quotes at most two sentences, whatever the window: the whole
            # document is its one window, as in training (where it always fits), so a pair
            # is asked once, with the same sentences. The window cap would then cap the
            # document (it cost 519 of BioRED dev's 2989 co-mentioned pairs), so only
            # max_pairs_per_doc bounds it.
            sentence = prompt in re_task.SENTENCE_PROMPTS
            relation_windows = [(0, len(texts[i]))] if sentence else windows[i]
            for window in relation_windows:
                concepts = re_task.collect_concepts(doc, window)
                pairs = re_task.candidate_pairs(concepts, self._allowed_pairs)
                if len(concepts) > 1 and not pairs:
                    self._warn_no_allowed_pairs(concepts)
                if sentence:
                    asked = [p for p in pairs if re_task.asks_pair(doc, *p, window, prompt)]
                    self.stats["re_pairs_not_co_mentioned"] += len(pairs) - len(asked)
                    pairs = asked
                if not sentence and len(pairs) > self.max_pairs_per_window:
                    self.stats["re_pairs_skipped"] += len(pairs) - self.max_pairs_per_window
                    pairs = pairs[: self.max_pairs_per_window]
                if len(pairs) > left:
                    self.stats["re_pairs_skipped_doc_cap"] += len(pairs) - left
                    pairs = pairs[:left]
                left -= len(pairs)
                for head, tail in pairs:
                    examples.append(
                        (
                            i,
                            re_task.build_example(
                                doc,
                                head,
                                tail,
                                self.relation_labels,
                                window,
                                prompt=prompt,
                                rationale=rationale,
                            ),
                        )
                    )
        self.stats["re_pairs"] += len(examples)
        self.stats["re_prompt_tokens"] += sum(self._prompt_tokens(ex) for _, ex in examples)
        # characters bound tokens: the longest answer any pair may take
        max_choice = max(
            (len(c) for _, ex in examples for c in ex.decode_choices or ex.choices),
            default=8,
        )
        generations = self._generate(
            [ex for _, ex in examples], max_new_tokens=max_choice + 4, constrained=True
        )
        if rationale is not None:  # each option names its label on its last line
            generations = [_named_labels(g, self.relation_labels) for g in generations]
        # per document: concept pair -> (raw score of the kept window, its relation)
        best: list[dict[frozenset[str], tuple[float, Relation]]] = [{} for _ in docs]
        pair_scores: list[list[dict[str, Any]]] = [[] for _ in docs]
        for (i, example), generation in zip(examples, generations, strict=True):
            if generation is None:
                continue
            label = re_task.parse_answer(generation.text, self.relation_labels)
            if label is None:
                self.stats["re_answers_unparseable"] += 1
                continue
            head, tail = example.meta["head"], example.meta["tail"]
            if self.keep_pair_scores:
                pair_scores[i].append(_pair_score(head, tail, label, generation, self.calibration))
            label, raw, score = self._decide(label, generation)
            if label == re_task.NO_RELATION:
                continue
            if score < self.relation_threshold:
                self.stats["re_below_threshold"] += 1
                continue
            key = frozenset((head.concept_id, tail.concept_id))
            # A document-level relation holds whichever window states it: keep the
            # most probable positive answer for the concept pair (by the model's own
            # probability, so that the calibration changes what a score says, not which
            # window is kept).
            if key not in best[i] or best[i][key][0] < raw:
                best[i][key] = (
                    raw,
                    Relation(
                        head.mention, tail.mention, head.concept_id, tail.concept_id, label, score
                    ),
                )
        for doc, found, scored in zip(docs, best, pair_scores, strict=True):
            rels = sorted((r for _, r in found.values()), key=lambda r: (r.head, r.tail, r.label))
            self.stats["relations"] += len(rels)
            doc._.relations = rels
            if self.keep_pair_scores:
                doc.user_data[PAIR_SCORES_KEY] = scored

    def _decide(self, label: str, generation: Generation) -> tuple[str, float, float]:
        """Label, model probability and calibrated confidence of one pair answer
        (`re_task.decide`), counting the pairs the detection rule relates although
        "None" was the single best answer."""
        probability = min(1.0, max(0.0, math.exp(generation.logprob)))
        probabilities = getattr(generation, "probabilities", None)  # constrained answers
        decided, score = re_task.decide(
            label,
            probability,
            probabilities,
            self.effective_none_threshold,
            self.calibration.type_label,
        )
        if label == re_task.NO_RELATION and decided != re_task.NO_RELATION:
            self.stats["re_none_overruled"] += 1
        raw = score
        if decided != re_task.NO_RELATION:
            p_none = probabilities.get(re_task.NO_RELATION) if probabilities else None
            score = self.calibration.scale(score, p_none)
        return decided, raw, score

    def _warn_untrained_labels(self) -> None:
        """Warn once per adapter and label lists when the labels asked for are none of
        the sets the adapter was trained with (`untrained_labels_message`)."""
        key = (
            self.adapter,
            tuple(self.tasks),
            tuple(self.entity_labels),
            tuple(self.relation_labels),
            self.ner_prompt,
        )
        if key == self._labels_checked:
            return
        self._labels_checked = key
        messages = []
        if TASK_ENTITIES in self.tasks:
            # per-type prompts name one type each: any trained types, in any order, match
            per_type = self.effective_ner_prompt == "per_type"
            messages.append(
                untrained_labels_message(
                    self.adapter, NER, "entity_labels", list(self.entity_labels), per_type
                )
            )
        if TASK_RELATIONS in self.tasks:
            messages.append(
                untrained_labels_message(
                    self.adapter, RE, "relation_labels", list(self.relation_labels)
                )
            )
        for message in filter(None, messages):
            warnings.warn(message, stacklevel=3)

    def _warn_no_allowed_pairs(self, concepts: list[re_task.Concept]) -> None:
        """Count windows whose concepts form no allowed type pair; warn once when their
        labels are neither in a type pair nor among `entity_labels` (e.g. scispaCy labels
        with BioRED pairs). A declared label left out of every pair is the schema's choice
        (BioRED relates no OrganismTaxon or CellLine), not a mistake to warn about."""
        self.stats["re_windows_without_allowed_pairs"] += 1
        allowed_labels = {label for pair in self._allowed_pairs for label in pair}
        unknown = sorted({c.label for c in concepts} - allowed_labels - set(self.entity_labels))
        if unknown and not self._warned_type_pairs:
            self._warned_type_pairs = True
            warnings.warn(
                f"bio_relation_llm: entity labels {unknown} appear in no relation_type_pairs "
                f"entry, so their concepts are never paired; set relation_type_pairs "
                f"(e.g. ['{unknown[0]}|OtherLabel']) or [] to allow every pair.",
                stacklevel=2,
            )

    def _generate(
        self,
        examples: list,
        max_new_tokens: int,
        constrained: bool = False,
        line_guard: LineGuard | None = None,
        copy: CopySpans | None = None,
    ) -> list[Generation | None]:
        """Answers for `examples`, in order; None for a prompt that does not fit the
        model (e.g. very long entity names), counted as `prompts_too_long`. The task's
        `line_guard` (free-form answers) ends lines that loop."""
        fits = [self._prompt_tokens(ex) <= self.backend.max_prompt_tokens for ex in examples]
        self.stats["prompts_too_long"] += fits.count(False)
        todo = [ex for ex, ok in zip(examples, fits, strict=True) if ok]
        if not todo:
            return [None] * len(examples)
        extra = {}
        if copy is not None:  # only then: backends from before the constraint still work
            texts = [t for t, ok in zip(copy.texts, fits, strict=True) if ok]
            extra["copy"] = replace(copy, texts=texts)
        generations = iter(
            self.backend.generate(
                [ex.chat_prompt() for ex in todo],
                max_new_tokens=max_new_tokens,
                choices=[ex.decode_choices or ex.choices for ex in todo] if constrained else None,
                line_guard=line_guard,
                **extra,
            )
        )
        out = [next(generations) if ok else None for ok in fits]
        self.stats["prompt_tokens"] += sum(g.prompt_tokens for g in out if g is not None)
        self.stats["generated_tokens"] += sum(g.new_tokens for g in out if g is not None)
        return out

    # -- scoring ---------------------------------------------------------------------
    def score(self, examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
        """spaCy-standard metrics (`ents_*`, `rel_*`) via the configured scorer."""
        return self.scorer(examples, **kwargs)

    # -- serialisation ---------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "adapter": ADAPTER_DIR if self.adapter else None,
        }

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Save settings and copy the adapter (the base model is referenced, not copied)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.adapter:
            source = Path(self.adapter)
            if not source.is_dir():
                raise FileNotFoundError(f"bio_relation_llm: adapter directory {source} not found")
            target = path / ADAPTER_DIR
            if source.resolve() != target.resolve():
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(source, target)
        settings = self._settings()
        if self.adapter:
            settings[HASHES_KEY] = adapter_hashes(path / ADAPTER_DIR)
        (path / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        """Settings plus the adapter's files (adapters are small: a few MB)."""
        files = {}
        if self.adapter:
            source = Path(self.adapter)
            if not source.is_dir():
                raise FileNotFoundError(f"bio_relation_llm: adapter directory {source} not found")
            files = {
                str(f.relative_to(source)): f.read_bytes() for f in source.rglob("*") if f.is_file()
            }
        settings = self._settings()
        if files:
            settings[HASHES_KEY] = bytes_hashes(files)
        return srsly.msgpack_dumps({"settings": settings, "adapter_files": files})

    def from_bytes(self, data: bytes, *, exclude: Iterable[str] = ()) -> BioRelationLLM:
        """Inverse of `to_bytes`: the adapter is written once to the model cache,
        under a folder named by its content hash."""
        from ..models import cache_dir

        msg = srsly.msgpack_loads(data)
        self.model = msg["settings"].get("model", self.model)
        files = msg.get("adapter_files") or {}
        found = bytes_hashes(files)
        recorded = msg["settings"].get(HASHES_KEY)
        if recorded is not None:
            check_hashes(found, recorded, "the serialised pipeline bytes")
        if files:
            digest = hashlib.sha256()
            for name in sorted(files):
                digest.update(name.encode() + b"\0" + files[name])
            target = cache_dir() / "adapters" / digest.hexdigest()[:16]
            if target.exists() and adapter_hashes(target) != found:
                shutil.rmtree(target)  # a damaged cached copy: write it again
            if not target.exists():
                tmp = target.with_name(target.name + f".tmp{os.getpid()}")
                for name, content in files.items():
                    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / name).write_bytes(content)
                try:
                    os.replace(tmp, target)
                except OSError:  # another process wrote it first
                    if not target.exists():
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)
            self.adapter = str(target)
        self._backend = None
        self._window_budget = None
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the loaded model (e.g. for `nlp.pipe(n_process=...)`): each
        process loads its own backend on first use."""
        state = self.__dict__.copy()
        state["_backend"] = None
        return state

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> BioRelationLLM:
        """Load settings; a saved adapter replaces the configured one, after its files are
        checked against the hashes `to_disk` recorded (`AdapterIntegrityError`)."""
        path = Path(path)
        settings_file = path / SETTINGS_FILE
        if settings_file.exists():
            try:
                settings = json.loads(settings_file.read_text(encoding="utf8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"{settings_file}: not a readable settings file ({err})") from err
            if not isinstance(settings, dict):
                raise ValueError(f"{settings_file}: must hold a JSON object")
            self.model = settings.get("model", self.model)
            if settings.get("adapter"):
                adapter = path / settings["adapter"]
                recorded = settings.get(HASHES_KEY)
                if recorded is not None:  # pipelines saved before hashes were recorded: none
                    check_hashes(adapter_hashes(adapter), recorded, str(adapter))
                self.adapter = str(adapter)
        self._backend = None
        self._window_budget = None
        return self


# Why `nlp.pipe(n_process=2)` is refused, and what to do instead.
FORKED_PROCESS_MESSAGE = (
    "bio_relation_llm does not run in a forked process or a multiprocessing worker "
    "(nlp.pipe(n_process > 1) starts them): torch's thread pools do not survive a fork "
    "and the process can hang, and every process would load its own copy of the model "
    "onto the same cores. "
    "Use one process with a larger batch_size (nlp.pipe(texts, batch_size=16)), or, for a "
    "collection, `python -m spacy_bioreama annotate-corpus --engine ray --num-workers N`, "
    "which starts each worker cleanly."
)


_forked = False


def _mark_forked() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_mark_forked)


def _refuse_forked_process() -> None:
    """Raise `RuntimeError(FORKED_PROCESS_MESSAGE)` in a forked child (of any fork: spaCy's
    `n_process` workers, a pre-forking server) or a multiprocessing worker started another
    way (spawn, forkserver), before any torch call can hang there. Ray workers are
    fresh interpreters, neither."""
    import multiprocessing

    if _forked or multiprocessing.parent_process() is not None:
        raise RuntimeError(FORKED_PROCESS_MESSAGE)


def _named_labels(generation: Generation | None, labels: Sequence[str]) -> Generation | None:
    """A rationale answer's distribution keyed by the label each option names."""
    distribution = getattr(generation, "distribution", None)
    if not distribution:
        return generation
    choices = re_task.answer_choices(labels)
    return replace(generation, distribution=re_task.distribution_by_label(distribution, choices))


def _pair_score(
    head: Any,
    tail: Any,
    answer: str,
    generation: Generation,
    calibration: RelationCalibration | None = None,
) -> dict[str, Any]:
    """One scored candidate pair as plain values (DocBin-safe): the mentions (token
    offsets) and concept ids, P(None), the relation labels' probabilities, and the label
    a related pair takes (the calibration's `type_label`) with its probability
    (`raw_score`) and its calibrated confidence (`score`, what the relation would carry),
    so a threshold or a new label bias can be applied again after the run."""
    calibration = calibration if calibration is not None else RelationCalibration()
    probabilities = dict(getattr(generation, "probabilities", None) or {})
    positives = {k: v for k, v in probabilities.items() if k != re_task.NO_RELATION}
    label = calibration.type_label(positives) if positives else answer
    raw = positives.get(label, math.exp(generation.logprob))
    p_none = probabilities.get(re_task.NO_RELATION)
    return {
        "head": list(head.mention),
        "tail": list(tail.mention),
        "head_id": head.concept_id,
        "tail_id": tail.concept_id,
        "p_none": p_none,
        "probabilities": positives,
        "label": label,
        "raw_score": raw,
        "score": calibration.scale(raw, p_none),
    }
