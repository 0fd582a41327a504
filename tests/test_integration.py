"""End to end on the real embedded SmolLM2-135M-Instruct and a real BioRED dev abstract."""

import os
from pathlib import Path

import pytest
import spacy

from spacy_bioreama.annotations.spans import all_mentions, copy_for_prediction
from spacy_bioreama.cli._util import default_data_dir
from spacy_bioreama.corpora import read
from spacy_bioreama.tasks import relation as re_task

pytestmark = pytest.mark.integration

DEV = default_data_dir() / "biored" / "Dev.PubTator"


@pytest.fixture(scope="module")
def biored_abstract():
    if not DEV.exists():
        pytest.skip(f"{DEV} not found (set BIOREAMA_DATA_DIR)")
    return next(iter(read("pubtator", DEV)))


def _without_relations(nlp, gold):
    """The gold text and entities, no relations (the relations-only input)."""
    return copy_for_prediction(nlp.make_doc, gold, keep_entities=True)


def test_default_config_annotates_biored_abstract(embedded_model_dir, biored_abstract):
    nlp = spacy.blank("en")
    component = nlp.add_pipe("bio_relation_llm", config={"max_new_tokens": 64})
    doc = nlp(biored_abstract.text)
    assert doc.text == biored_abstract.text
    assert component.stats["ner_answers"] == component.stats["windows"] >= 1
    assert component.stats["generated_tokens"] > 0
    # the untuned model rarely keeps the answer format: whatever it answered was either
    # placed as mentions of the asked types or counted, never lost without a trace
    stats = component.stats
    assert stats["entity_mentions"] > 0 or stats["ner_answers_unparseable"] > 0
    assert {span.label_ for span in all_mentions(doc)} <= set(component.entity_labels)
    assert len(doc._.relations) <= stats["re_pairs"]


def test_relations_on_gold_entities_and_round_trip(embedded_model_dir, biored_abstract, tmp_path):
    nlp = spacy.blank("en")
    component = nlp.add_pipe(
        "bio_relation_llm", config={"tasks": ["relations"], "max_pairs_per_window": 12}
    )
    doc = nlp(_without_relations(nlp, biored_abstract))
    allowed = re_task.parse_type_pairs(component.relation_type_pairs)
    n_candidates = len(re_task.candidate_pairs(re_task.collect_concepts(doc), allowed))
    assert component.stats["re_pairs"] == min(12, n_candidates)
    assert component.stats["re_pairs_skipped"] == max(0, n_candidates - 12)
    assert component.stats.get("re_answers_unparseable", 0) == 0
    labels = set(component.relation_labels)
    for rel in doc._.relations:
        assert rel.label in labels and 0.0 <= rel.score <= 1.0
    before = [(r.head, r.tail, r.label, round(r.score, 5)) for r in doc._.relations]

    nlp.to_disk(tmp_path / "pipe")
    loaded = spacy.load(tmp_path / "pipe")
    again = loaded(_without_relations(loaded, biored_abstract))
    assert [(r.head, r.tail, r.label, round(r.score, 5)) for r in again._.relations] == before


def test_embedded_cache_is_reused(embedded_model_dir):
    cache = Path(os.environ.get("SPACY_BIOREAMA_CACHE", Path.home() / ".cache" / "spacy_bioreama"))
    assert embedded_model_dir.is_relative_to(cache)
    assert (embedded_model_dir / "config.json").exists()
    assert any(embedded_model_dir.glob("*.safetensors"))
