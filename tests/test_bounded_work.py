"""Bounded work in the component: a document's pair prompts are capped as a whole, long
documents cost linear time, memory stays flat over long streams, and
`nlp.pipe(n_process=2)` fails with a message instead of hanging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_bioreama.annotations.spans import set_entities, text_length, text_slice
from spacy_bioreama.pipeline.component import FORKED_PROCESS_MESSAGE

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("BIOREAMA_DATA_DIR", REPO.parent / "shared" / "data"))
NLP = spacy.blank("en")


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    text=st.text(st.sampled_from("ab c.\n\t-é😀"), max_size=60),
    start=st.integers(0, 70),
    length=st.integers(0, 70),
)
def test_text_slice_equals_doc_text_slice(text, start, length):
    doc = NLP.make_doc(text)
    assert text_length(doc) == len(doc.text) == len(text)
    assert text_slice(doc, start, start + length) == text[start : start + length]


def _many_concepts_doc(nlp, n: int):
    """`n` distinct gene mentions, several sentences (so several windows)."""
    words = " ".join(f"G{i} binds G{i + 1}." for i in range(0, n, 2))
    doc = nlp.make_doc(words)
    spans = [t for t in doc if t.text.startswith("G")]
    set_entities(
        doc, [doc[t.i : t.i + 1].char_span(0, len(t.text), "Gene", kb_id=t.text) for t in spans]
    )
    return doc


def test_pair_prompts_are_capped_per_document(tiny_model_dir):
    nlp = spacy.blank("en")
    component = nlp.add_pipe(
        "bio_relation_llm",
        config={
            "model": str(tiny_model_dir),
            "tasks": ["relations"],
            "relation_labels": ["Bind"],
            "relation_type_pairs": [],
            "max_prompt_tokens": 256,
            "max_pairs_per_window": 10,
            "max_pairs_per_doc": 50,
        },
    )
    doc = _many_concepts_doc(nlp, 200)
    nlp(doc)
    stats = component.stats
    assert stats["windows"] >= 3  # the cap applies across windows
    assert stats["re_pairs"] == 50
    assert stats["re_pairs_skipped_doc_cap"] > 0 and stats["re_pairs_skipped"] > 0
    with pytest.raises(ValueError, match="max_pairs_per_doc"):
        component.configure(max_pairs_per_doc=0)


def test_sentence_prompts_are_capped_per_document_not_per_window(tiny_model_dir):
    """A sentence prompt asks the document as one window: `max_pairs_per_window` would
    cap the whole document there, so only `max_pairs_per_doc` bounds it."""
    nlp = spacy.blank("en")
    config = {
        "model": str(tiny_model_dir),
        "tasks": ["relations"],
        "relation_labels": ["Bind"],
        "relation_type_pairs": [],
        "relation_prompt": "sentence",
        "max_prompt_tokens": 256,
        "max_pairs_per_window": 10,
    }
    component = nlp.add_pipe("bio_relation_llm", config=config)
    # 5 sentences of 6 genes: 5 * 15 co-mentioned pairs, the other 360 pairs are not
    words = " ".join(" ".join(f"G{s}x{g}" for g in range(6)) + " bind." for s in range(5))
    doc = nlp.make_doc(words)
    genes = [t for t in doc if t.text.startswith("G")]
    set_entities(
        doc, [doc[t.i : t.i + 1].char_span(0, len(t.text), "Gene", kb_id=t.text) for t in genes]
    )
    nlp(doc)
    assert component.stats["re_pairs"] == 75
    assert component.stats["re_pairs_not_co_mentioned"] == 360
    assert component.stats.get("re_pairs_skipped", 0) == 0
    component.configure(max_pairs_per_doc=50)
    component.stats.clear()
    nlp(doc)
    assert component.stats["re_pairs"] == 50
    assert component.stats["re_pairs_skipped_doc_cap"] == 25


def test_n_process_fails_with_a_clear_message(tiny_model_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe("bio_relation_llm", config={"model": str(tiny_model_dir)})
    with pytest.raises(ValueError, match="does not run in a forked process") as err:
        list(nlp.pipe(["BRCA1 binds PALB2."] * 4, n_process=2, batch_size=2))
    assert "annotate-corpus --engine ray" in str(err.value)
    assert "batch_size" in FORKED_PROCESS_MESSAGE


# Bounds with margin over the last measured figures (docs/reliability.md): growth after
# warm-up 6.6 MiB (1,000 BioRED-sized documents) and 0 MiB (10,000 tiny ones); 254 MiB
# while one 1 MB document is annotated.
STREAM_GROWTH_MIB = 48
LONG_DOCUMENT_GROWTH_MIB = 512
LONG_DOCUMENT_SECONDS = 240


@pytest.mark.slow
@pytest.mark.skipif(
    not (DATA_DIR / "biored" / "Train.PubTator").exists(),
    reason=f"BioRED not found under {DATA_DIR} (set BIOREAMA_DATA_DIR)",
)
def test_peak_rss_stays_flat(tiny_trained_dir):
    """tests/tools/rss_probe.py in its own process (~3 min on 2 cores)."""
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "tools" / "rss_probe.py"),
            str(tiny_trained_dir),
            "--biored",
            str(DATA_DIR / "biored" / "Train.PubTator"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout)
    print(json.dumps(figures, indent=2))
    biored, tiny, long_doc = figures["biored_sized"], figures["tiny"], figures["long_document"]
    assert biored["docs"] == 1000 and tiny["docs"] == 10_000
    assert biored["stats"]["re_pairs"] > 0 and biored["stats"]["entity_mentions"] > 0
    assert biored["growth_mib"] < STREAM_GROWTH_MIB, biored
    assert tiny["growth_mib"] < STREAM_GROWTH_MIB, tiny
    assert long_doc["chars"] >= 1_000_000 and long_doc["windows"] > 1000
    assert long_doc["growth_mib"] < LONG_DOCUMENT_GROWTH_MIB, long_doc
    # linear time: 48 s measured; the quadratic Doc.text reads took more than 10 minutes
    assert long_doc["seconds"] < LONG_DOCUMENT_SECONDS, long_doc


def test_per_type_ner_asks_each_window_once_per_type(tiny_model_dir):
    """``ner_prompt = "per_type"``: one answer per window and type, each parsed against
    its type (an all-types answer per window otherwise)."""
    nlp = spacy.blank("en")
    labels = ["Gene", "Disease", "Chemical"]
    config = {"model": str(tiny_model_dir), "tasks": ["entities"], "entity_labels": labels}
    component = nlp.add_pipe("bio_relation_llm", config={**config, "ner_prompt": "per_type"})
    nlp("BRCA1 mutations cause breast cancer. Tamoxifen lowers the risk.")
    assert component.stats["ner_windows"] == 1
    assert component.stats["ner_answers"] == len(labels)
    component.configure(ner_prompt="all_types")
    component.stats.clear()
    nlp("BRCA1 mutations cause breast cancer. Tamoxifen lowers the risk.")
    assert component.stats["ner_answers"] == 1
