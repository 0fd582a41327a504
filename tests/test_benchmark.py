"""The `benchmark` command and function on the tiny trained model (structure, no timings)."""

import json

from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_bioreama.cli._util import app
from spacy_bioreama.evaluation.benchmark import run_benchmark
from tests.conftest import make_trained_gold_doc, trained_labels_nlp

TOP_LEVEL = {
    "docs_per_s": float,
    "naive_docs_per_s": float,
    "speedup": float,
    "best_batch_size": int,
    "batch_sizes": list,
    "docs": int,
    "model": str,
    "device": str,
    "prompt_tokens_per_s": float,
    "generated_tokens_per_s": float,
    "naive_prompts": int,
    "peak_rss_bytes": int,
    "runs": dict,
}


def _nlp(model_dir):
    return trained_labels_nlp(model_dir, device="cpu")


def test_benchmark_record_and_naive_replays_the_same_prompts(tiny_trained_dir):
    nlp = _nlp(tiny_trained_dir)
    gold = [make_trained_gold_doc(nlp), make_trained_gold_doc(nlp)]
    record = run_benchmark(nlp, gold, [1, 2], command="test")
    record = json.loads(json.dumps(record))  # JSON-serialisable as written
    for key, kind in TOP_LEVEL.items():
        assert isinstance(record[key], kind), (key, record[key])
    assert record["docs"] == 2 and record["batch_sizes"] == [1, 2]
    assert set(record["runs"]) == {"1", "2"}
    best = record["runs"][str(record["best_batch_size"])]
    assert record["docs_per_s"] == best["docs_per_s"]
    # the trained model finds the 4 entities in each document: 1 entity prompt and
    # 6 relation prompts per document
    for run in record["runs"].values():
        assert run["prompts"] == 2 * (1 + 6)
        assert run["prompt_tokens"] > 0 and run["generated_tokens"] > 0
    # the baseline made one generate() call per prompt our fastest run sent
    assert record["naive_prompts"] == best["prompts"]
    assert record["naive_free_prompts"] == 2
    assert record["naive_relation_prompts"] == 12
    # same model, both greedy: the entity answers are the same text
    assert record["naive_free_identical"] == record["naive_free_prompts"]
    assert record["speedup"] > 0 and record["naive_docs_per_s"] > 0
    assert record["peak_rss_bytes"] >= best["peak_rss_bytes_after"] > 0
    # the component is left as it was found
    component = nlp.get_pipe("bio_relation_llm")
    assert type(component.backend).__name__ == "HFBackend"
    assert component.batch_size == 8


def test_benchmark_command_prints_table_and_json_line(tiny_trained_dir, tmp_path):
    nlp = _nlp(tiny_trained_dir)
    pipeline = tmp_path / "pipeline"
    nlp.to_disk(pipeline)
    corpus = tmp_path / "gold.spacy"
    DocBin(docs=[make_trained_gold_doc(nlp)] * 3, store_user_data=True).to_disk(corpus)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "benchmark",
            str(corpus),
            "--pipeline",
            str(pipeline),
            "--docs",
            "2",
            "--batch-sizes",
            "1,2",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    record = json.loads(last)
    assert record == json.loads(out.read_text())
    assert record["docs"] == 2 and record["batch_sizes"] == [1, 2]
    assert record["naive_prompts"] == record["runs"][str(record["best_batch_size"])]["prompts"]
    assert record["command"].startswith("python -m spacy_bioreama")
    assert "naive generate() batch 1" in result.stdout
    bad = CliRunner().invoke(app, ["benchmark", str(corpus), "--batch-sizes", "0,x"])
    assert bad.exit_code != 0
