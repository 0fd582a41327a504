"""Baselines scored with the same scorer (`score_bio`) and split as `evaluate`.

They exist so that the tuned adapter's numbers can be read against something:

* a co-occurrence floor for relations on gold entities: every candidate concept pair of
  an allowed type pair (the component's own candidate generation) gets the most frequent
  relation label of the training set. A relation extractor that does not beat it has
  learnt nothing beyond "these two concepts appear together";
* a spaCy-native NER model (`spacy train`, tok2vec + ner) trained on the same corpus;
* spacy-llm's own `spacy.NER.v3` task on the same base model, through our registered
  spacy-llm model `spacy_bioreama.HF.v1` (what a spacy-llm user gets without us).

Every baseline writes a metrics dict with `evaluate`'s key names: `ents_*` and end-to-end
`rel_*` at the top level, relations on gold entities under `"gold_entities"`, and a
`"meta"` block. A setting a baseline does not cover holds None, never a 0 that could be
mistaken for a measurement.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example

from ..annotations.labels import BIORED_ENTITY_LABELS, BIORED_TYPE_PAIRS, NEGATIVE_RELATION_LABELS
from ..annotations.relations import Relation
from ..annotations.spans import copy_for_prediction
from ..tasks import relation as re_task
from .bootstrap import ENTITY_KEYS, RELATION_KEYS, intervals
from .scorers import score_bio

NER_KEYS = ("ents_p", "ents_r", "ents_f", "ents_per_type")
REL_KEYS = (
    *(f"{p}_{m}" for p in ("rel_pair", "rel_micro", "rel_novelty") for m in "prf"),
    "rel_per_type",
    "rel_confusion",
)


def most_frequent_label(docs: Iterable[Doc]) -> tuple[str, Counter[str]]:
    """The most frequent positive relation label in `docs` (ties: alphabetical first),
    with all label counts; negative labels ("0", "false", ...) are not relations."""
    counts: Counter[str] = Counter(
        r.label for doc in docs for r in doc._.relations if r.label not in NEGATIVE_RELATION_LABELS
    )
    if not counts:
        raise ValueError("no relations in the training documents: cannot pick a label")
    best = min(counts.items(), key=lambda item: (-item[1], item[0]))[0]
    return best, counts


def cooccurrence_relations(
    doc: Doc,
    label: str,
    type_pairs: Sequence[str] = BIORED_TYPE_PAIRS,
    same_sentence: bool = False,
) -> list[Relation]:
    """One relation labelled `label` for every candidate concept pair of `doc` (the
    component's `collect_concepts` + `candidate_pairs`, so the floor sees exactly the
    pairs the LLM is asked about, without its per-window cap). `same_sentence`: only the
    pairs a sentence co-mentions (the pairs the "sentence" relation prompt asks about):
    the floor of that prompt."""
    allowed = re_task.parse_type_pairs(type_pairs)
    pairs = re_task.candidate_pairs(re_task.collect_concepts(doc), allowed)
    if same_sentence:
        pairs = [(h, t) for h, t in pairs if re_task.asks_pair(doc, h, t, None, "sentence")]
    return [
        Relation(head.mention, tail.mention, head.concept_id, tail.concept_id, label, 1.0)
        for head, tail in pairs
    ]


def ner_metrics(examples: Sequence[Example]) -> dict[str, Any]:
    """Metrics of an NER-only system: `ents_*` measured, every relation key None."""
    scores = score_bio(examples)
    return {
        **{k: scores[k] for k in NER_KEYS},
        **dict.fromkeys(REL_KEYS),
        "intervals": intervals(examples, ENTITY_KEYS),
    }


def gold_entity_relation_metrics(examples: Sequence[Example]) -> dict[str, Any]:
    """Metrics of a relation system run on gold entities: measured `rel_*` under
    `"gold_entities"` (as `evaluate` writes them); NER and end to end are None, since
    copying the gold entities is not an NER result."""
    scores = score_bio(examples)
    return {
        **dict.fromkeys(NER_KEYS),
        **dict.fromkeys(REL_KEYS),
        "gold_entities": {
            **{k: scores[k] for k in REL_KEYS},
            "intervals": intervals(examples, RELATION_KEYS),
        },
    }


def run_cooccurrence(
    train: Sequence[Doc],
    gold: Sequence[Doc],
    make_doc: Callable[[str], Doc],
    type_pairs: Sequence[str] = BIORED_TYPE_PAIRS,
    same_sentence: bool = False,
) -> dict[str, Any]:
    """The co-occurrence floor on `gold` with the label learnt from `train` (pairs of
    one sentence only with `same_sentence`)."""
    label, counts = most_frequent_label(train)
    examples = []
    n_relations = 0
    for ref in gold:
        pred = copy_for_prediction(make_doc, ref, keep_entities=True)
        rels = cooccurrence_relations(pred, label, type_pairs, same_sentence)
        pred._.relations = rels
        n_relations += len(rels)
        examples.append(Example(pred, ref))
    metrics = gold_entity_relation_metrics(examples)
    metrics["gold_entities"]["run"] = {
        "docs": len(gold),
        "label": label,
        "train_label_counts": dict(counts.most_common()),
        "predicted_relations": n_relations,
        "type_pairs": list(type_pairs),
        "same_sentence": same_sentence,
    }
    return metrics


def _timed_pipe(nlp: Language, texts: Sequence[str], batch_size: int) -> tuple[list[Doc], float]:
    start = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=batch_size))
    return docs, time.perf_counter() - start


def _run_summary(n_docs: int, seconds: float, batch_size: int) -> dict[str, Any]:
    return {
        "docs": n_docs,
        "seconds": round(seconds, 2),
        "docs_per_s": round(n_docs / seconds, 3) if seconds else None,
        "batch_size": batch_size,
    }


def run_spacy_ner(nlp: Language, gold: Sequence[Doc], batch_size: int = 32) -> dict[str, Any]:
    """Score a trained spaCy pipeline's `doc.ents` on `gold` (raw text in, the
    pipeline's own tokenizer; strict character offsets make tokenisation matter)."""
    predicted, seconds = _timed_pipe(nlp, [d.text for d in gold], batch_size)
    metrics = ner_metrics([Example(p, g) for p, g in zip(predicted, gold, strict=True)])
    metrics["run"] = _run_summary(len(gold), seconds, batch_size)
    return metrics


def spacy_llm_ner_pipeline(
    model: str = "default",
    adapter: str | None = None,
    labels: Sequence[str] = BIORED_ENTITY_LABELS,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    device: str = "auto",
    max_prompt_tokens: int = 2048,
) -> Language:
    """A blank English pipeline whose only pipe is spacy-llm's `llm` running
    `spacy.NER.v3` (zero-shot: labels only, no definitions, no examples) on our
    `spacy_bioreama.HF.v1` model."""
    import spacy

    from ..pipeline import spacy_llm  # noqa: F401  (registers spacy_bioreama.HF.v1)

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "llm",
        config={
            "task": {"@llm_tasks": "spacy.NER.v3", "labels": list(labels)},
            "save_io": True,  # keep prompt/response: the metrics show a sample answer
            "model": {
                "@llm_models": "spacy_bioreama.HF.v1",
                "name": model,
                "adapter": adapter,
                "device": device,
                "batch_size": batch_size,
                "max_new_tokens": max_new_tokens,
                "max_prompt_tokens": max_prompt_tokens,
            },
        },
    )
    return nlp


def run_spacy_llm_ner(nlp: Language, gold: Sequence[Doc], batch_size: int = 8) -> dict[str, Any]:
    """Score the `llm` pipe's `doc.ents` on `gold`; the model is loaded before timing."""
    llm = nlp.get_pipe("llm")
    model = llm._model  # spacy-llm keeps the model private; ours loads lazily
    _ = getattr(model, "backend", None)
    predicted, seconds = _timed_pipe(nlp, [d.text for d in gold], batch_size)
    metrics = ner_metrics([Example(p, g) for p, g in zip(predicted, gold, strict=True)])
    metrics["run"] = {
        **_run_summary(len(gold), seconds, batch_size),
        "stats": dict(getattr(model, "stats", {})),
        "first_response": _first_response(predicted),
    }
    return metrics


def _first_response(docs: Sequence[Doc], max_chars: int = 600) -> str | None:
    """The model's answer for the first document (cut), so a reader of the metrics can
    see why a score is what it is (e.g. a small model copying the prompt's example)."""
    if not docs:
        return None
    response = docs[0].user_data.get("llm_io", {}).get("llm", {}).get("response")
    if isinstance(response, list):
        response = "\n".join(str(r) for r in response)
    return None if response is None else str(response)[:max_chars]
