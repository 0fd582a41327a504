"""Baselines (co-occurrence floor, spaCy NER scoring, spacy-llm NER.v3) and the
generated results page."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from typer.testing import CliRunner

from spacy_bioreama.annotations.relations import Relation
from spacy_bioreama.annotations.spans import set_entities
from spacy_bioreama.cli._util import app
from spacy_bioreama.evaluation.baselines import (
    REL_KEYS,
    cooccurrence_relations,
    most_frequent_label,
    run_cooccurrence,
    run_spacy_llm_ner,
    run_spacy_ner,
    spacy_llm_ner_pipeline,
)
from spacy_bioreama.evaluation.results import PUBLISHED
from spacy_bioreama.evaluation.scorers import SCORER_CHANGES, SCORER_VERSION

TEXT = "BRCA1 binds PALB2 in breast cancer; aspirin lowers breast cancer risk in mice."
MENTIONS = [  # (surface, occurrence, label, concept id)
    ("BRCA1", 0, "GeneOrGeneProduct", "672"),
    ("PALB2", 0, "GeneOrGeneProduct", "79728"),
    ("breast cancer", 0, "DiseaseOrPhenotypicFeature", "D001943"),
    ("aspirin", 0, "ChemicalEntity", "D001241"),
    ("breast cancer", 1, "DiseaseOrPhenotypicFeature", "D001943"),
    ("mice", 0, "OrganismTaxon", "10090"),
]


def _offsets(surface: str, occurrence: int) -> tuple[int, int]:
    start = -1
    for _ in range(occurrence + 1):
        start = TEXT.index(surface, start + 1)
    return start, start + len(surface)


def gold_doc(nlp) -> Doc:
    """Six mentions of five concepts, three gold relations (one per label kind)."""
    doc = nlp.make_doc(TEXT)
    spans = []
    for surface, occ, label, cid in MENTIONS:
        start, end = _offsets(surface, occ)
        spans.append(doc.char_span(start, end, label=label, kb_id=cid))
    set_entities(doc, spans)
    tok = {s.kb_id_: (s.start, s.end) for s in reversed(doc.ents)}  # first mentions
    doc._.relations = [
        Relation(tok["672"], tok["79728"], "672", "79728", "Bind"),
        Relation(tok["672"], tok["D001943"], "672", "D001943", "Association"),
        Relation(tok["D001241"], tok["D001943"], "D001241", "D001943", "Negative_Correlation"),
    ]
    return doc


def train_docs(nlp) -> list[Doc]:
    """Association twice, Bind once, and three negative-labelled pairs (not relations)."""
    doc = gold_doc(nlp)
    other = gold_doc(nlp)
    r = doc._.relations[0]
    other._.relations = [r._replace(label="Association"), *[r._replace(label="0")] * 3]
    return [doc, other]


@pytest.fixture
def nlp():
    return spacy.blank("en")


def test_most_frequent_label_ignores_negatives_and_breaks_ties_alphabetically(nlp):
    label, counts = most_frequent_label(train_docs(nlp))
    assert label == "Association"
    assert counts == {"Association": 2, "Bind": 1, "Negative_Correlation": 1}
    tie = gold_doc(nlp)  # Bind, Association, Negative_Correlation once each
    assert most_frequent_label([tie])[0] == "Association"
    with pytest.raises(ValueError, match="no relations"):
        most_frequent_label([nlp.make_doc("nothing here")])


def test_cooccurrence_relations_are_the_allowed_candidate_pairs(nlp):
    doc = gold_doc(nlp)
    rels = cooccurrence_relations(doc, "Association")
    # OrganismTaxon pairs are not among BioRED's type pairs; the second "breast cancer"
    # mention is the same concept, so it adds no pair.
    assert [(r.head_id, r.tail_id, r.label) for r in rels] == [
        ("672", "79728", "Association"),
        ("672", "D001943", "Association"),
        ("672", "D001241", "Association"),
        ("79728", "D001943", "Association"),
        ("79728", "D001241", "Association"),
        ("D001943", "D001241", "Association"),
    ]
    # each end is a mention of its concept, the first one in the text
    mentions = {(e.start, e.end): e for e in doc.ents}
    for r in rels:
        for (start, end), concept in ((r.head, r.head_id), (r.tail, r.tail_id)):
            first = min((e for e in doc.ents if e.kb_id_ == concept), key=lambda e: e.start)
            assert mentions[(start, end)] == first
    assert len(cooccurrence_relations(doc, "Bind", type_pairs=[])) == 10  # all 5 choose 2


def test_cooccurrence_floor_scores_exactly(nlp):
    metrics = run_cooccurrence(train_docs(nlp), [gold_doc(nlp)], nlp.make_doc)
    gold = metrics["gold_entities"]
    # 6 predicted pairs, 3 gold pairs, all found: P 3/6, R 1, F 2/3.
    assert gold["rel_pair_p"] == pytest.approx(0.5)
    assert gold["rel_pair_r"] == pytest.approx(1.0)
    assert gold["rel_pair_f"] == pytest.approx(2 / 3)
    # typed: only 672-D001943 Association is right: P 1/6, R 1/3, F 2/9.
    assert gold["rel_micro_p"] == pytest.approx(1 / 6)
    assert gold["rel_micro_r"] == pytest.approx(1 / 3)
    assert gold["rel_micro_f"] == pytest.approx(2 / 9)
    assert gold["rel_novelty_f"] is None  # novelty is not predicted
    assert gold["run"]["label"] == "Association"
    assert gold["run"]["predicted_relations"] == 6
    # gold entities copied over are not an NER result, and there is no end-to-end run
    assert metrics["ents_f"] is None and metrics["rel_micro_f"] is None


def test_baseline_cooccurrence_command_writes_metrics_with_meta(nlp, tmp_path, monkeypatch):
    DocBin(docs=train_docs(nlp), store_user_data=True).to_disk(tmp_path / "train.spacy")
    DocBin(docs=[gold_doc(nlp)] * 3, store_user_data=True).to_disk(tmp_path / "dev.spacy")
    out = tmp_path / "m" / "cooc.json"
    args = [
        "baseline-cooccurrence",
        str(tmp_path / "dev.spacy"),
        "--train",
        str(tmp_path / "train.spacy"),
        "--limit",
        "2",
        "--output",
        str(out),
    ]
    monkeypatch.setattr("sys.argv", ["spacy_bioreama", *args])  # as from the shell
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["meta"]["documents"] == 2
    assert metrics["meta"]["scorer_version"] == SCORER_VERSION
    assert metrics["meta"]["data"] == str(tmp_path / "dev.spacy")
    assert metrics["meta"]["command"].startswith("python -m spacy_bioreama baseline-cooccurrence ")
    assert metrics["gold_entities"]["rel_pair_f"] == pytest.approx(2 / 3)
    assert "pair 66.7, pair+type 22.2" in result.output


def test_baseline_cooccurrence_missing_train_file_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(
        app, ["baseline-cooccurrence", "dev.spacy", "--train", str(tmp_path / "nope.spacy")]
    )
    assert result.exit_code == 1
    assert "nope.spacy not found" in result.output


def test_spacy_ner_scoring_uses_strict_mentions(nlp):
    ner = spacy.blank("en")
    ruler = ner.add_pipe("entity_ruler")
    ruler.add_patterns(
        [
            {"label": "GeneOrGeneProduct", "pattern": "BRCA1"},  # right
            {"label": "DiseaseOrPhenotypicFeature", "pattern": "aspirin"},  # wrong type
        ]
    )
    metrics = run_spacy_ner(ner, [gold_doc(nlp)])
    assert metrics["ents_p"] == pytest.approx(0.5)
    assert metrics["ents_r"] == pytest.approx(1 / 6)
    assert metrics["ents_f"] == pytest.approx(0.25)
    assert all(metrics[k] is None for k in REL_KEYS)  # an NER model does no RE
    assert metrics["run"]["docs"] == 1


def test_baseline_spacy_ner_command_trains_scores_and_records_where(nlp, tmp_path, monkeypatch):
    """The whole command: spacy train (the project's config, a few steps), model-last
    scored on the gold documents, and the record of what the run depended on."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the project's configs/
    DocBin(docs=[gold_doc(nlp)] * 4, store_user_data=True).to_disk(tmp_path / "gold.spacy")
    out = tmp_path / "spacy_ner.json"
    args = [
        "baseline-spacy-ner",
        str(tmp_path / "gold.spacy"),
        "--train",
        str(tmp_path / "gold.spacy"),
        "--model-dir",
        str(tmp_path / "model"),
        "--output",
        str(out),
        "--training.max_steps",
        "4",
        "--training.eval_frequency",
        "2",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    meta = metrics["meta"]
    assert meta["documents"] == 4 and meta["model"] == str(tmp_path / "model" / "model-last")
    assert 0.0 <= metrics["ents_f"] <= 1.0 and metrics["rel_micro_f"] is None
    assert meta["train_seconds"] > 0
    assert "--training.max_steps 4" in meta["train_command"]
    assert set(meta["versions"]) == {"spacy", "thinc", "numpy", "blis"}
    assert meta["versions"]["spacy"] == spacy.__version__
    if Path("/proc/cpuinfo").exists():
        assert meta["cpu"] and " family " in meta["cpu"]


# spacy.NER.v3's answer format: "n. span | is entity | label | reason"
NER_V3_ANSWER = (
    "1. BRCA1 | True | GeneOrGeneProduct | a gene\n"
    "2. breast cancer | True | DiseaseOrPhenotypicFeature | a disease\n"
    "3. aspirin | True | GeneOrGeneProduct | wrongly a gene\n"
    "4. risk | False | ==NONE== | not an entity\n"
)


def test_spacy_llm_ner_v3_runs_on_our_model(tmp_path, nlp):
    from spacy_bioreama.models.tiny import make_tiny_llama

    # NER.v3's prompt (~900 tokens) needs a longer context than the shared tiny model's
    model_dir = make_tiny_llama(tmp_path / "tiny", max_position_embeddings=2048)
    llm_nlp = spacy_llm_ner_pipeline(str(model_dir), max_new_tokens=8, device="cpu")
    task = llm_nlp.get_pipe("llm").task
    (prompts, _shards), *_ = task.generate_prompts([llm_nlp.make_doc(TEXT)])
    assert prompts[0].startswith("You are an expert Named Entity Recognition")  # NER.v3's
    assert "GeneOrGeneProduct, OrganismTaxon" in prompts[0]
    # the tiny model's answers replaced by a known NER.v3 answer (its generation still
    # runs): two right types, one wrong, scored by spacy-llm's parser and our scorer
    model = llm_nlp.get_pipe("llm")._model
    real_generate = model.backend.generate

    def answer(prompts, **kwargs):
        return [replace(g, text=NER_V3_ANSWER) for g in real_generate(prompts, **kwargs)]

    model.backend.generate = answer
    metrics = run_spacy_llm_ner(llm_nlp, [gold_doc(nlp)])
    # NER.v3 marks each listed form once (its first occurrence): BRCA1 and the first
    # "breast cancer" right, aspirin as a gene wrong, of 6 gold mentions
    assert metrics["ents_p"] == pytest.approx(2 / 3) and metrics["ents_r"] == pytest.approx(1 / 3)
    assert metrics["ents_per_type"]["DiseaseOrPhenotypicFeature"]["r"] == 0.5
    assert metrics["run"]["stats"].get("prompts_too_long", 0) == 0  # the model did run
    assert metrics["rel_micro_f"] is None
    assert metrics["run"]["docs"] == 1
    assert metrics["run"]["first_response"] == NER_V3_ANSWER  # saved for inspection


# --- the results page -----------------------------------------------------------------


def _metrics(ents: float | None, e2e: float | None, pair: float | None, typed: float | None):
    return {
        "ents_p": ents,
        "ents_r": ents,
        "ents_f": ents,
        "rel_pair_f": e2e,
        "rel_micro_f": e2e,
        "gold_entities": {"rel_pair_f": pair, "rel_micro_f": typed},
    }


FIXTURES = {
    "base": _metrics(0.0101, 0.0202, 0.0303, 0.0404),
    "tuned": _metrics(0.1111, 0.2222, 0.3333, 0.4444),
    "spacy_ner": {**_metrics(0.5555, None, None, None), "gold_entities": None},
    "cooccurrence": _metrics(None, None, 0.6666, 0.7777),
    "spacy_llm": _metrics(0.0888, None, None, None),
}


def _write_fixtures(tmp_path: Path, documents: int = 10, skip: str | None = None) -> list[str]:
    args = []
    for key, metrics in FIXTURES.items():
        path = tmp_path / f"{key}.json"
        meta = {
            "model": f"model-{key}",
            "adapter": None,
            "data": "corpus/biored_dev.spacy",
            "documents": documents if key != "spacy_llm" else documents,
            "scorer_version": SCORER_VERSION,
            "command": f"python -m spacy_bioreama make-{key}",
        }
        if key != skip:
            path.write_text(json.dumps({**metrics, "meta": meta}))
        args += [f"--{key.replace('_', '-')}", str(path)]
    return args


def _invoke(tmp_path: Path, args: list[str]):
    out = tmp_path / "docs" / "results.md"
    result = CliRunner().invoke(
        app,
        [
            "results",
            "--output",
            str(out),
            "--benchmark",
            str(tmp_path / "bench.json"),
            # the optional rows and ablations: nothing unless a test writes them
            "--best",
            str(tmp_path / "no_best.json"),
            "--hybrid",
            str(tmp_path / "no_hybrid.json"),
            "--ablations",
            str(tmp_path / "no_ablations"),
            *args,
        ],
    )
    return result, out


def _row(page: str, start: str) -> list[str]:
    line = next(line for line in page.splitlines() if line.startswith(f"| {start}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_results_page_holds_every_figure_and_the_published_block(tmp_path):
    (tmp_path / "bench.json").write_text(
        '{"docs_per_s": 4.25, "naive_docs_per_s": 1.5, "speedup": 2.83, "docs": 8}\n'
    )
    result, out = _invoke(tmp_path, _write_fixtures(tmp_path))
    assert result.exit_code == 0, result.output
    page = out.read_text()
    head = page[: page.index("| system |")]
    assert "Generated by the command below" in head
    assert "```bash\npython -m spacy_bioreama" in head
    # (b): NER P/R/F1, RE e2e pair+type, gold pair, gold pair+type, ECE, documents
    assert _row(page, "(b)")[1:] == ["11.1", "11.1", "11.1", "22.2", "33.3", "44.4", "", "10"]
    # (c) does no RE, (d) no NER: blank cells, not zeros
    assert _row(page, "(c)")[1:] == ["55.5", "55.5", "55.5", "", "", "", "", "10"]
    assert _row(page, "(d)")[1:] == ["", "", "", "", "66.7", "77.8", "", "10"]
    assert "(b+)" not in page and "(f)" not in page  # optional rows without files
    assert _row(page, "(a)")[3] == "1.0"
    assert "†" not in page  # every row scored by the current scorer
    assert "`python -m spacy_bioreama make-spacy_llm`" in page  # how each row was made
    assert "| docs_per_s | 4.25 |" in page and "| speedup | 2.83 |" in page
    assert "| engine |" not in page  # a record without per-run figures: measures only
    published = page.index("## Published figures (not measured here)")
    for _, value in PUBLISHED:
        assert page.index(value) > published  # literature numbers only in their block
    assert "65.17" in page and "12.21" in page


def test_results_page_without_benchmark_says_so(tmp_path):
    result, out = _invoke(tmp_path, _write_fixtures(tmp_path))
    assert result.exit_code == 0, result.output
    assert "No benchmark record" in out.read_text()


def test_results_missing_metrics_file_names_it_and_its_command(tmp_path):
    result, out = _invoke(tmp_path, _write_fixtures(tmp_path, skip="cooccurrence"))
    assert result.exit_code == 1
    assert "cooccurrence.json" in result.output
    assert "spacy project run baseline-cooccurrence" in result.output
    assert not out.exists()


def test_results_refuses_rows_on_different_documents(tmp_path):
    args = _write_fixtures(tmp_path)
    tuned = tmp_path / "tuned.json"
    data = json.loads(tuned.read_text())
    data["meta"]["documents"] = 2
    tuned.write_text(json.dumps(data))
    result, out = _invoke(tmp_path, args)
    assert result.exit_code == 1
    assert "different data or document counts" in result.output
    assert not out.exists()


def test_results_page_shows_intervals_ece_optional_rows_and_ablations(tmp_path):
    args = _write_fixtures(tmp_path)
    tuned = tmp_path / "tuned.json"
    data = json.loads(tuned.read_text())
    data["gold_entities"]["intervals"] = {"rel_micro_f": [0.40, 0.49]}
    data["gold_entities"]["calibration"] = {"ece": 0.0812}
    data["meta"]["relation_prompt"] = "named"
    tuned.write_text(json.dumps(data))
    hybrid = tmp_path / "hybrid.json"
    hybrid.write_text(json.dumps({**data, "meta": {**data["meta"], "command": "hybrid-cmd"}}))
    ablations = tmp_path / "ablations"
    ablations.mkdir()
    gold = {
        "rel_micro_f": 0.3012,
        "rel_pair_f": 0.5,
        "intervals": {"rel_micro_f": [0.25, 0.35]},
        "calibration": {"ece": 0.05},
        "rel_confusion": {
            "Association": {"Association": 5, "None": 2},
            "None": {"Association": 3, "Bind": 1},
            "Bind": {"Association": 1},
        },
        "run": {
            "docs": 4,
            "seconds": 10.0,
            "stats": {
                "re_pairs": 30,
                "re_pairs_not_co_mentioned": 10,
                "relations": 12,
                "re_prompt_tokens": 4500,
            },
        },
    }
    meta = {"name": "sentence prompt", "documents": 4, "none_threshold": 0.62, "command": "abl-cmd"}
    (ablations / "b.json").write_text(json.dumps({"gold_entities": gold, "meta": meta}))
    # an `evaluate --tasks entities` file: the NER table, with its weakest type
    ner = {
        "ents_p": 0.6,
        "ents_r": 0.5,
        "ents_f": 0.5455,
        "intervals": {"ents_f": [0.5, 0.6]},
        "ents_per_type": {"ChemicalEntity": {"f": 0.7}, "CellLine": {"f": 0.125}},
        "run": {"docs": 4, "seconds": 6.0, "stats": {"ner_copy_redirected_steps": 17,
                                                     "generated_tokens": 900, "ner_windows": 9}},
        "meta": {"name": "NER copy", "documents": 4, "command": "ner-cmd"},
    }  # fmt: skip
    (ablations / "n.json").write_text(json.dumps(ner))
    args += ["--hybrid", str(hybrid), "--ablations", str(ablations), "--no-plots"]
    result, out = _invoke(tmp_path, args)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert _row(page, "(b)")[6:8] == ["44.4 [40.0–49.0]", "0.081"]
    assert _row(page, "(f)")[6] == "44.4 [40.0–49.0]"
    # the ablation file records no scorer version: marked, with what changed since
    row = _row(page, "sentence prompt")
    assert row == ["sentence prompt †", "30.1 [25.0–35.0]", "50.0", "0.62", "12 / 40", "0.050",
                   "30", "4500", "2.50", "–"]  # fmt: skip
    ablation_table = page[page.index("### Relations") : page.index("Label confusion")]
    assert "† scored by an earlier version of `score_bio`" in ablation_table
    assert SCORER_CHANGES[2][0] in ablation_table and "†" not in page[: page.index("## Ablat")]
    assert "`abl-cmd`" in page and page.index("## Ablations") < page.index("## How each row")
    # the adapter rows are recipes too: the relation ablations read against them
    reference = _row(page, "(b) LoRA-tuned adapter (`bio_relation_llm`): `named` prompt")
    assert reference[1:3] == ["44.4 [40.0–49.0]", "33.3"] and reference[5] == "0.081"
    assert _row(page, "NER copy") == ["NER copy", "60.0", "50.0", "54.5 [50.0–60.0]",
                                      "CellLine (12.5)", "9", "17", "900", "1.50"]  # fmt: skip
    assert page.index("### Relations") < page.index("### Entities") and "`ner-cmd`" in page
    # the adapter rows' end-to-end NER is the entity table's reference, listed once below
    entity_table = page[page.index("### Entities") :]
    assert "| (b) LoRA-tuned adapter (`bio_relation_llm`): `named` prompt |" in entity_table
    assert page.count("- `(b) LoRA-tuned adapter") == 1
    # the label confusion of the file that records one, None last on both sides
    assert "Label confusion of `sentence prompt`:" in page
    assert _row(page, "gold ↓ / predicted →") == ["gold ↓ / predicted →", "Association", "Bind",
                                                  "None"]  # fmt: skip
    assert _row(page, "Bind") == ["Bind", "1", "0", "0"]
    assert _row(page, "None") == ["None", "3", "1", "–"]
    # another JSON file in the folder (a training record) is named, not rendered as a row
    (ablations / "t.json").write_text(json.dumps({"global_step": 3, "config": {}}))
    result, _ = _invoke(tmp_path, args)
    assert result.exit_code != 0
    assert f"{ablations / 't.json'} is not an `evaluate` metrics file" in result.output
    (ablations / "t.json").unlink()

    # main rows without a scorer version: marked where they hold relation figures only
    for name in ("tuned", "spacy_ner"):
        path = tmp_path / f"{name}.json"
        data = json.loads(path.read_text())
        del data["meta"]["scorer_version"]
        path.write_text(json.dumps(data))
    result, out = _invoke(tmp_path, args)
    assert result.exit_code == 0, result.output
    main_table = out.read_text().split("## Ablations")[0]
    assert _row(main_table, "(b)")[0].endswith(" †")
    assert not _row(main_table, "(c)")[0].endswith("†")  # NER only: version 2 moved no figure
    assert "† scored by an earlier version of `score_bio`" in main_table


def test_same_sentence_floor_keeps_only_pairs_a_sentence_co_mentions(nlp):
    from spacy_bioreama.annotations.spans import set_entities

    text = "BRCA1 binds PALB2. Aspirin treats breast cancer."
    doc = nlp(text)
    spans = [
        doc.char_span(text.index(form), text.index(form) + len(form), label=label, kb_id=kb)
        for form, label, kb in [
            ("BRCA1", "GeneOrGeneProduct", "672"),
            ("PALB2", "GeneOrGeneProduct", "79728"),
            ("Aspirin", "ChemicalEntity", "D001241"),
            ("breast cancer", "DiseaseOrPhenotypicFeature", "D001943"),
        ]
    ]
    set_entities(doc, spans)
    every = cooccurrence_relations(doc, "Association")
    same = cooccurrence_relations(doc, "Association", same_sentence=True)
    assert len(every) == 6
    assert {frozenset((r.head_id, r.tail_id)) for r in same} == {
        frozenset(("672", "79728")),
        frozenset(("D001241", "D001943")),
    }
