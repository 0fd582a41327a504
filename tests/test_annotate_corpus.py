"""`annotate-corpus`: outputs per shard, nothing lost or written twice across crashes and
reruns, and the same annotations from the local and the Ray engine.

Most tests use the tiny model trained on `TRAINED_TEXT` (conftest), which finds that
text's entities and relations wherever the text occurs, so outputs carry real
annotations in seconds; the engine comparison is repeated with the embedded model on
real BioRED dev abstracts (integration)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spacy_bioreama.corpus_annotation import (
    ERRORS_FILE,
    MANIFEST_FILE,
    CorpusRunError,
    EngineSettings,
    ManifestMismatch,
    annotate_corpus,
)
from spacy_bioreama.pipeline.loading import PipelineSpec

from .conftest import TRAINED_ENTITY_LABELS, TRAINED_RELATION_LABELS, TRAINED_TEXT

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("BIOREAMA_DATA_DIR", REPO.parent / "shared" / "data"))
BIORED_DEV = DATA_DIR / "biored" / "Dev.PubTator"
needs_biored = pytest.mark.skipif(
    not BIORED_DEV.exists(), reason=f"BioRED dev not found at {BIORED_DEV} (set BIOREAMA_DATA_DIR)"
)
try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:  # the dev extra installs it; CI must not skip (see _needs_ray)
    HAVE_RAY = False


def _needs_ray() -> None:
    if not HAVE_RAY:
        if os.environ.get("CI"):
            raise AssertionError("CI installs ray[data] (the dev extra); it is missing")
        pytest.skip("ray[data] is not installed (pip install 'spacy-bioreama[ray]')")


def _settings() -> dict:
    return {
        "entity_labels": TRAINED_ENTITY_LABELS,
        "relation_labels": TRAINED_RELATION_LABELS,
        "relation_type_pairs": [],
        "max_new_tokens": 40,
        "max_prompt_tokens": 256,
    }


def _spec(model_dir: Path, **settings) -> PipelineSpec:
    return PipelineSpec(
        model=str(model_dir), batch_size=4, device="cpu", settings=_settings() | settings
    )


def _cli_options(model_dir: Path) -> list[str]:
    """The CLI's equivalent of `_spec` (labels through a saved pipeline would be more
    realistic, but the options keep the subprocess tests short)."""
    return [
        "--model",
        str(model_dir),
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--max-prompt-tokens",
        "256",
    ]


def _write_shards(folder: Path, shards: int, per_shard: int) -> list[Path]:
    """JSON Lines shards of documents that are the trained text (ids s<shard>-<n>)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        path = folder / f"part{s:03d}.jsonl"
        lines = [json.dumps({"id": f"s{s}-{n}", "text": TRAINED_TEXT}) for n in range(per_shard)]
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def _records(output: Path) -> list[dict]:
    """Every document record of every shard's JSON Lines output."""
    out = []
    for path in sorted(output.glob("*.jsonl")):
        if path.name == ERRORS_FILE or path.name.endswith(".errors.jsonl"):
            continue
        out.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return out


def _annotations(record: dict) -> tuple:
    ents = tuple((e["start"], e["end"], e["label"]) for e in record["entities"])
    rels = tuple(
        (r["head_id"], r["tail_id"], r["label"], tuple(r["head"]), tuple(r["tail"]))
        for r in record["relations"]
    )
    return record["id"], record["text"], ents, rels


def _assert_same_annotations(a: Path, b: Path) -> None:
    """The same documents, entities and relations; scores equal to float precision
    (torch's thread count, which may differ between this process and a Ray worker,
    changes the order of float sums)."""
    ours, theirs = _records(a), _records(b)
    assert [_annotations(r) for r in theirs] == [_annotations(r) for r in ours]
    for mine, other in zip(ours, theirs, strict=True):
        assert [r["score"] for r in other["relations"]] == pytest.approx(
            [r["score"] for r in mine["relations"]], abs=1e-4
        )


def test_local_run_writes_every_format_that_reads_back(tmp_path, tiny_trained_dir):
    from spacy_bioreama.corpora import read

    inputs = _write_shards(tmp_path / "in", shards=2, per_shard=3)
    text = tmp_path / "in" / "plain.txt"
    text.write_text(f"{TRAINED_TEXT}\n\nNothing to see here.\n")
    out = tmp_path / "out"
    summary = annotate_corpus(
        [*inputs, text],
        out,
        _spec(tiny_trained_dir),
        formats=["pubtator", "bioc-xml", "bioc-json", "docbin"],
        progress=False,
    )
    assert (summary.shards, summary.documents, summary.errors) == (3, 8, 0)
    records = _records(out)
    assert sorted(r["id"] for r in records) == sorted(
        [f"s{s}-{n}" for s in range(2) for n in range(3)] + ["plain-1", "plain-3"]
    )
    trained = [r for r in records if TRAINED_TEXT in r["text"]]
    assert all(len(r["entities"]) == 4 and len(r["relations"]) == 2 for r in trained)
    assert summary.entities == 4 * 7 and summary.relations == 2 * 7
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert set(manifest["shards"]) == {"part000", "part001", "plain"}
    assert manifest["shards"]["plain"]["documents"] == 2
    for name, entry in manifest["shards"].items():
        assert set(entry["files"]) == {
            f"{name}{s}" for s in (".jsonl", ".pubtator", ".bioc.xml", ".bioc.json", ".spacy")
        }
    # every exported format reads back through our readers with the JSON Lines' annotations
    expected = {r["id"]: _annotations(r) for r in _records(out)}
    for fmt, suffix in (
        ("pubtator", ".pubtator"),
        ("bioc-xml", ".bioc.xml"),
        ("bioc-json", ".bioc.json"),
    ):
        for path in out.glob(f"*{suffix}"):
            for doc in read(fmt, path):
                record = {
                    "id": doc.user_data["doc_id"],
                    "text": doc.text,
                    "entities": [
                        {"start": e.start_char, "end": e.end_char, "label": e.label_}
                        for e in doc.ents
                    ],
                    "relations": [
                        {
                            "head_id": r.head_id,
                            "tail_id": r.tail_id,
                            "label": r.label,
                            "head": [r.head_span(doc).start_char, r.head_span(doc).end_char],
                            "tail": [r.tail_span(doc).start_char, r.tail_span(doc).end_char],
                        }
                        for r in doc._.relations
                    ],
                }
                assert _annotations(record) == expected[record["id"]], (fmt, path)


def test_rerun_skips_finished_shards_and_refuses_to_mix(tmp_path, tiny_trained_dir):
    inputs = _write_shards(tmp_path / "in", shards=2, per_shard=2)
    out = tmp_path / "out"
    first = annotate_corpus(inputs, out, _spec(tiny_trained_dir), progress=False)
    before = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
    again = annotate_corpus(inputs, out, _spec(tiny_trained_dir), progress=False)
    assert (first.documents, again.documents, again.shards_skipped) == (4, 0, 2)
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == before
    # another pipeline setting: refused, and nothing is touched
    with pytest.raises(ManifestMismatch, match=r"another pipeline \(changed: settings\)"):
        annotate_corpus(inputs, out, _spec(tiny_trained_dir, none_threshold=0.9), progress=False)
    # another output format: refused
    with pytest.raises(ManifestMismatch, match="formats"):
        annotate_corpus(inputs, out, _spec(tiny_trained_dir), formats=["pubtator"], progress=False)
    # a changed input of a finished shard: refused
    inputs[0].write_text(inputs[0].read_text().replace("risk.", "risk!"))
    with pytest.raises(ManifestMismatch, match="changed since"):
        annotate_corpus(inputs, out, _spec(tiny_trained_dir), progress=False)
    # --force starts over
    forced = annotate_corpus(inputs, out, _spec(tiny_trained_dir), force=True, progress=False)
    assert (forced.documents, forced.shards_skipped) == (4, 0)
    assert any(r["text"].endswith("risk!") for r in _records(out))
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert len(manifest["runs"]) == 1  # the forced run started a new manifest


def test_unreadable_documents_go_to_errors_and_the_run_goes_on(tmp_path, tiny_trained_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    bad = folder / "bad.jsonl"
    bad.write_text(
        json.dumps({"id": "a", "text": TRAINED_TEXT})
        + "\n"
        + "{not json\n"
        + json.dumps({"id": "c", "text": 7})
        + "\n"
        + json.dumps({"id": "d", "text": TRAINED_TEXT})
        + "\n"
    )
    out = tmp_path / "out"
    summary = annotate_corpus([folder], out, _spec(tiny_trained_dir), progress=False)
    assert (summary.documents, summary.errors) == (2, 2)
    assert [r["id"] for r in _records(out)] == ["a", "d"]
    errors = [json.loads(line) for line in (out / ERRORS_FILE).read_text().splitlines()]
    assert [(e["shard"], e["where"], e["stage"]) for e in errors] == [
        ("bad", "line 2", "read"),
        ("bad", "line 3", "read"),
    ]
    assert "JSON" in errors[0]["error"] and "text" in errors[1]["error"]


def test_bad_invocations_are_clear_errors(tmp_path, tiny_trained_dir):
    with pytest.raises(CorpusRunError, match="nothing-here"):
        annotate_corpus([tmp_path / "nothing-here*.jsonl"], tmp_path / "o", _spec(tiny_trained_dir))
    inputs = _write_shards(tmp_path / "in", 1, 1)
    with pytest.raises(CorpusRunError, match="unknown output format"):
        annotate_corpus(inputs, tmp_path / "o", _spec(tiny_trained_dir), formats=["xlsx"])


def test_odd_shards_names_locks_and_partial_reruns(tmp_path, tiny_trained_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.jsonl").write_text("")
    # would be called "errors" and write errors.jsonl, the folder's own errors file
    (folder / "errors.txt").write_text(TRAINED_TEXT + "\n")
    bad = folder / "bad.jsonl"
    bad.write_text(json.dumps({"id": "b1", "text": TRAINED_TEXT}) + "\n{oops\n")
    out = tmp_path / "out"
    summary = annotate_corpus([folder], out, _spec(tiny_trained_dir), progress=False)
    assert (summary.shards, summary.documents, summary.errors) == (3, 2, 1)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert set(manifest["shards"]) == {"bad", "empty", "errors-2"}
    assert manifest["shards"]["empty"]["documents"] == 0
    assert (out / "empty.jsonl").read_text() == ""
    assert [r["id"] for r in _records(out)] == ["b1", "errors-1"]
    # a rerun over one new input keeps the other shards' errors in errors.jsonl
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "x", "text": TRAINED_TEXT}) + "\n")
    annotate_corpus([extra], out, _spec(tiny_trained_dir), progress=False)
    assert [json.loads(line)["shard"] for line in (out / ERRORS_FILE).read_text().splitlines()] == [
        "bad"
    ]
    # one run at a time per folder
    import fcntl

    with (out / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(CorpusRunError, match="in use"):
            annotate_corpus([extra], out, _spec(tiny_trained_dir), progress=False)
    # an input inside the output folder is refused (it would annotate our own outputs)
    with pytest.raises(CorpusRunError, match="inside the output folder"):
        annotate_corpus([out / "bad.jsonl"], out, _spec(tiny_trained_dir), progress=False)


def test_unreadable_shard_is_not_finished_and_a_rerun_retries_it(tmp_path, tiny_trained_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    good = folder / "good.jsonl"
    good.write_text(json.dumps({"id": "g", "text": TRAINED_TEXT}) + "\n")
    broken = folder / "broken.json"  # BioC JSON that does not load: one file-level error
    broken.write_text("{ this is not json")
    out = tmp_path / "out"
    summary = annotate_corpus([folder], out, _spec(tiny_trained_dir), progress=False)
    assert [f["shard"] for f in summary.failed_shards] == ["broken"]
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert set(manifest["shards"]) == {"good"}  # the failed shard is not recorded as done
    assert not (out / "broken.jsonl").exists()
    broken.unlink()
    (folder / "broken.jsonl").write_text(json.dumps({"id": "r", "text": TRAINED_TEXT}) + "\n")
    again = annotate_corpus([folder], out, _spec(tiny_trained_dir), progress=False)
    assert (again.shards_skipped, again.documents, again.failed_shards) == (1, 1, [])


def test_saved_relations_only_pipeline_keeps_the_input_entities(tmp_path, tiny_trained_dir):
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "bio_relation_llm",
        config={"model": str(tiny_trained_dir), "tasks": ["relations"], **_settings()},
    )
    nlp.to_disk(tmp_path / "pipeline")
    source = tmp_path / "gold.jsonl"
    entities = [
        {"start": 0, "end": 5, "label": "Gene", "concept_id": "672"},
        {"start": 12, "end": 17, "label": "Gene", "concept_id": "79728"},
    ]
    source.write_text(json.dumps({"id": "g", "text": TRAINED_TEXT, "entities": entities}) + "\n")
    # the CLI's default --tasks is "entities,relations"; the saved pipeline's own tasks win
    spec = PipelineSpec(path=str(tmp_path / "pipeline"), tasks=("entities", "relations"))
    summary = annotate_corpus([source], tmp_path / "out", spec, progress=False)
    (record,) = _records(tmp_path / "out")
    assert [(e["start"], e["end"], e["concept_id"]) for e in record["entities"]] == [
        (0, 5, "672"),
        (12, 17, "79728"),
    ]
    assert summary.stats.get("re_pairs") == 1  # the one pair of input entities was asked


def _run_cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "spacy_bioreama", "annotate-corpus", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
        **kwargs,
    )


def _wait_for_finished_shards(out: Path, proc: subprocess.Popen, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before it could be killed: {proc.stderr.read()}")
        try:
            if len(json.loads((out / MANIFEST_FILE).read_text())["shards"]) >= n:
                return
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no {n} finished shard(s) within {timeout} s")


def _check_exactly_once(out: Path, shards: int, per_shard: int) -> None:
    ids = [r["id"] for r in _records(out)]
    expected = [f"s{s}-{n}" for s in range(shards) for n in range(per_shard)]
    assert sorted(ids) == sorted(expected)  # every document, none twice
    assert not list(out.glob(".*.tmp"))


def test_killed_driver_resumes_with_every_document_exactly_once(tmp_path, tiny_model_dir):
    shards, per_shard = 16, 3
    inputs = _write_shards(tmp_path / "in", shards, per_shard)
    out = tmp_path / "out"
    args = [
        str(tmp_path / "in"),
        "--output",
        str(out),
        *_cli_options(tiny_model_dir),
        "--format",
        "pubtator",
        "--chunk-size",
        "2",
    ]
    proc = _run_cli(args)
    _wait_for_finished_shards(out, proc, 2, timeout=240)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(json.loads((out / MANIFEST_FILE).read_text())["shards"])
    assert 2 <= done < shards, "killed mid-run"
    rerun = _run_cli(args)
    stdout, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr
    summary = json.loads(stdout[stdout.index("{") :])
    assert summary["shards_skipped"] == done
    assert summary["shards"] == shards - done
    _check_exactly_once(out, shards, per_shard)
    assert len(list(out.glob("*.pubtator"))) == len(inputs)


def test_ray_engine_gives_the_local_annotations(tmp_path, tiny_trained_dir):
    _needs_ray()
    inputs = _write_shards(tmp_path / "in", shards=3, per_shard=3)
    local = annotate_corpus(
        inputs,
        tmp_path / "local",
        _spec(tiny_trained_dir),
        engine=EngineSettings(chunk_size=2),
        progress=False,
    )
    on_ray = annotate_corpus(
        inputs,
        tmp_path / "ray",
        _spec(tiny_trained_dir),
        engine=EngineSettings("ray", workers=2, chunk_size=2),
        progress=False,
    )
    assert local.documents == on_ray.documents == 9
    _assert_same_annotations(tmp_path / "local", tmp_path / "ray")
    assert 1 <= len(on_ray.worker_peak_rss_mb) <= 2  # no more workers than asked for
    assert on_ray.worker_restarts == 0


def _map_workers() -> list:
    import psutil

    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "MapWorker" in cmdline and "ChunkAnnotator" in cmdline:
            found.append(proc)
    return found


def test_killed_ray_worker_is_restarted_and_the_run_completes(tmp_path, tiny_model_dir):
    _needs_ray()
    shards, per_shard = 16, 3
    _write_shards(tmp_path / "in", shards, per_shard)
    out = tmp_path / "out"
    proc = _run_cli(
        [
            str(tmp_path / "in"),
            "--output",
            str(out),
            *_cli_options(tiny_model_dir),
            "--engine",
            "ray",
            "--num-workers",
            "2",
            "--chunk-size",
            "1",
        ]
    )
    _wait_for_finished_shards(out, proc, 1, timeout=300)
    workers = _map_workers()
    assert workers, "no Ray worker process found"
    workers[0].send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout[stdout.index("{") :])
    assert summary["worker_restarts"] >= 1
    assert summary["documents"] == shards * per_shard
    _check_exactly_once(out, shards, per_shard)


@pytest.mark.integration
@needs_biored
def test_engines_agree_with_the_embedded_model_on_biored(tmp_path, embedded_model_dir):
    # relations on the corpus' own entities: the base model finds no entities of its own
    # (NER F1 0 before tuning) but does relate gold ones
    _needs_ray()
    blocks = BIORED_DEV.read_text().split("\n\n")[:2]
    source = tmp_path / "dev2.pubtator"
    source.write_text("\n\n".join(blocks) + "\n\n")
    spec = PipelineSpec(
        tasks=("relations",), batch_size=8, device="cpu", settings={"max_prompt_tokens": 512}
    )
    local = annotate_corpus([source], tmp_path / "local", spec, progress=False)
    on_ray = annotate_corpus(
        [source], tmp_path / "ray", spec, engine=EngineSettings("ray", workers=1), progress=False
    )
    assert local.documents == on_ray.documents == 2
    assert local.entities > 0 and local.relations > 0
    _assert_same_annotations(tmp_path / "local", tmp_path / "ray")
