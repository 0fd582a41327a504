"""LoRA training (`spacy_bioreama.training`) on the tiny model: runs, label masks, prompt
identity with inference, overrides and errors, kill-and-resume in a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
from safetensors.torch import load_file

from spacy_bioreama.tasks.base import TaskExample
from spacy_bioreama.training import (
    IGNORE_INDEX,
    OutputDirConflict,
    TrainConfigError,
    TrainingDataError,
    checkpoint_problem,
    encode_record,
    load_train_config,
    main,
    make_collator,
    parse_overrides,
    read_instruction_jsonl,
    train,
)

ROOT = Path(__file__).resolve().parent.parent
QUICK_CFG = ROOT / "configs" / "train_quick_cpu.cfg"
GPU_CFG = ROOT / "configs" / "train_full_gpu_7b.cfg"

WORDS = (
    "aspirin reduced the risk of myocardial infarction in patients with type 2 diabetes "
    "cisplatin induced nephrotoxicity BRCA1 gene is associated with breast cancer"
).split()


def make_records(n: int, seed: int) -> list[dict]:
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 24)))
        chem = [w for w in ("aspirin", "cisplatin") if w in text.split()]
        answer = "Chemical: " + (" ... ".join(chem) if chem else "None")
        out.append(
            {
                "task": "ner",
                "instruction": "List the chemicals in the text.",
                "input": f"Text: {text}",
                "output": answer,
            }
        )
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf8")
    return path


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: one thread is ~20x faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("instr")
    return {
        "train": write_jsonl(root / "train.jsonl", make_records(10, 0)),
        "dev": write_jsonl(root / "dev.jsonl", make_records(4, 1)),
    }


def base_overrides(model_dir: Path, data: dict[str, Path], **training) -> dict:
    ov = {
        "model.base": str(model_dir),
        "paths.train": str(data["train"]),
        "paths.dev": str(data["dev"]),
        "lora.target_modules": ["q_proj", "v_proj"],
        "lora.r": 4,
        "training.per_device_batch_size": 2,
        "training.max_length": 256,
        "training.progress_bar": False,
        "training.learning_rate": 0.003,
    }
    ov.update({f"training.{k}": v for k, v in training.items()})
    return ov


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf8").splitlines()]


# ------------------------------------------------------------------ tokenisation
def test_training_prompt_equals_inference_prompt(tiny_backend):
    record = make_records(1, 3)[0]
    ex = encode_record(tiny_backend, record)
    example = TaskExample(task="ner", instruction=record["instruction"], input=record["input"])
    prompt_ids = tiny_backend.encode_prompt(example.chat_prompt())
    n = len(prompt_ids)
    assert ex.prompt_length == n
    assert ex.input_ids[:n] == prompt_ids
    # Loss only on the answer and its eos.
    assert ex.labels[:n] == [IGNORE_INDEX] * n
    assert ex.labels[n:] == ex.input_ids[n:]
    assert ex.input_ids[-1] == tiny_backend.eos_token_ids[0]
    answer = tiny_backend.tokenizer.decode(ex.input_ids[n:-1])
    assert answer == record["output"]
    # The prompt + answer text is what the model would see when it writes the answer.
    rendered = tiny_backend.render(example.chat_prompt())
    assert tiny_backend.tokenizer.decode(ex.input_ids[:-1]) == rendered + record["output"]


@pytest.mark.integration
def test_embedded_prompt_equals_inference_prompt(embedded_backend):
    record = make_records(1, 4)[0]
    ex = encode_record(embedded_backend, record)
    example = TaskExample(task="ner", instruction=record["instruction"], input=record["input"])
    prompt_ids = embedded_backend.encode_prompt(example.chat_prompt())
    assert ex.input_ids[: len(prompt_ids)] == prompt_ids
    assert ex.labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert ex.input_ids[-1] in embedded_backend.eos_token_ids


def test_loss_is_on_answer_tokens_only_and_packing_matches_padding(tiny_backend):
    import torch

    examples = [encode_record(tiny_backend, r) for r in make_records(3, 5)]
    features = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    batch = make_collator(tiny_backend.pad_token_id, packing=False)(features)
    width = batch["input_ids"].shape[1]
    for row, ex in enumerate(examples):
        labels = batch["labels"][row].tolist()
        n, length = ex.prompt_length, len(ex)
        assert labels[:n] == [IGNORE_INDEX] * n  # prompt masked
        assert labels[n:length] == ex.input_ids[n:]  # answer + eos trained
        assert labels[length:] == [IGNORE_INDEX] * (width - length)  # padding masked
        assert batch["attention_mask"][row].tolist() == [1] * length + [0] * (width - length)
    model = tiny_backend.model
    with torch.no_grad():
        # use_cache=False as in training: a KV cache disables transformers' detection of
        # packed rows (the block-diagonal mask built from restarting position ids).
        out = model(**batch, use_cache=False)
        # The model's loss is the mean cross-entropy over exactly the answer tokens.
        logits = out.logits[:, :-1]
        target = batch["labels"][:, 1:]
        mask = target != IGNORE_INDEX
        manual = torch.nn.functional.cross_entropy(logits[mask], target[mask])
        assert torch.allclose(out.loss, manual, atol=1e-5)
        assert int(mask.sum()) == sum(len(e) - e.prompt_length for e in examples)
        packed = make_collator(tiny_backend.pad_token_id, packing=True)(features)
        assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
        packed_loss = model(**packed, use_cache=False).loss
    assert torch.allclose(packed_loss, out.loss, atol=1e-5)


def test_answer_only_logits_loss_equals_model_loss(tiny_model_dir, tiny_backend):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from spacy_bioreama.training import answer_logits_model, answer_only_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.use_cache = False
    lora = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(model, lora).eval()
    fast = answer_logits_model(model)
    assert fast is not None
    examples = [encode_record(tiny_backend, r) for r in make_records(3, 6)]
    features = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    for packing in (False, True):
        batch = make_collator(tiny_backend.pad_token_id, packing=packing)(features)
        with torch.no_grad():
            reference = model(**batch).loss
            assert torch.allclose(answer_only_loss(*fast, batch), reference, atol=1e-5)
            n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            summed = model(**batch, num_items_in_batch=torch.tensor(2 * n)).loss
            fast_summed = answer_only_loss(*fast, batch, torch.tensor(2 * n))
            assert torch.allclose(fast_summed, summed, atol=1e-5)
            assert torch.allclose(fast_summed, reference / 2, atol=1e-5)


def test_mean_logged_loss_weights_each_log_by_its_steps():
    from spacy_bioreama.training.trainer import mean_logged_loss

    history = [
        {"step": 5, "loss": 1.0},
        {"step": 5, "eval_loss": 9.0},  # evaluations are not training losses
        {"step": 10, "loss": 0.5},
        {"step": 12, "loss": 2.0},  # a last, shorter window: 2 steps
        {"train_runtime": 3.0, "step": 12},
    ]
    assert mean_logged_loss(history) == pytest.approx((5 * 1.0 + 5 * 0.5 + 2 * 2.0) / 12)
    assert mean_logged_loss([{"step": 3, "eval_loss": 1.0}]) is None


# ------------------------------------------------------------------------ training
def test_three_step_run_writes_loadable_adapter_and_log(tiny_model_dir, data, tmp_path):
    from spacy_bioreama.models import load_backend
    from spacy_bioreama.models.backend import ChatPrompt

    out = tmp_path / "run"
    ov = base_overrides(tiny_model_dir, data, max_steps=3, logging_steps=1, eval_steps=2)
    result = train(QUICK_CFG, out, ov)
    assert result.global_step == 3 and result.resumed_from_step is None
    adapter = out / "adapter"
    assert result.adapter_dir == adapter
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"):
        assert (adapter / name).is_file(), name
    assert not (adapter / "training_args.bin").exists()
    assert not list(out.glob(".adapter.tmp*"))
    # the optimizer stepped: PEFT starts every lora_B at zero, training moved some
    lora_b = [
        t for k, t in load_file(adapter / "adapter_model.safetensors").items() if "lora_B" in k
    ]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)
    meta = json.loads((adapter / "training_meta.json").read_text())
    assert meta == json.loads((out / "training_meta.json").read_text())
    assert meta["global_step"] == 3 and meta["dev_loss"] == pytest.approx(result.dev_loss)
    assert meta["data"]["train"]["used"] == 10 and len(meta["data"]["train"]["sha256"]) == 64
    assert meta["tokens_per_second"] > 0 and meta["peak_rss_bytes"] > 0
    assert meta["config"]["training"]["max_steps"] == 3
    assert meta["answer_only_logits"] is True  # the fast loss agreed with the model's
    assert set(meta["versions"]) >= {"torch", "transformers", "peft"}
    assert meta["cpu"] is None or " family " in meta["cpu"]  # where the run was measured

    log = read_log(out / "train_log.jsonl")
    assert log[0]["event"] == "start"
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    # train_loss is the last logged loss, train_loss_mean the run's (one step per log here)
    assert meta["train_loss"] == pytest.approx(steps[-1]["loss"])
    assert meta["train_loss_mean"] == pytest.approx(sum(r["loss"] for r in steps) / 3)
    for r in steps:
        assert r["loss"] > 0 and r["tokens_per_s"] > 0 and "learning_rate" in r
    assert [r["step"] for r in log if "eval_loss" in r] == [2, 3]
    assert log[-1]["event"] == "end"
    # throughput: training time proper, without the evaluations that ran inside train()
    # (both times are rounded to 3 decimals: on the tiny model's ~0.1 s of steps that
    # alone moves the quotient by about 1 %, so the bounds carry the rounding)
    step_seconds = meta["train_runtime_s"] - meta["eval_in_train_runtime_s"]
    tokens = meta["tokens_trained_this_run"]
    low, high = tokens / (step_seconds + 0.001), tokens / (step_seconds - 0.001)
    assert low - 0.01 <= meta["tokens_per_second"] <= high + 0.01
    assert 0 < meta["eval_in_train_runtime_s"] <= meta["eval_runtime_s"]

    # the base model's fingerprint, as loading computes it (no mismatch warning)
    from transformers import AutoModelForCausalLM

    from spacy_bioreama.models.base_fingerprint import BaseModelMismatchWarning, base_fingerprint

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert meta["base_model_fingerprint"] == base_fingerprint(base) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaseModelMismatchWarning)
        backend = load_backend(tiny_model_dir, adapter=adapter, device="cpu")
    assert backend.generate([ChatPrompt(user="x")], max_new_tokens=2)[0].new_tokens >= 1

    # Running the same command again does nothing.
    stamp = (adapter / "adapter_model.safetensors").stat().st_mtime_ns
    again = train(QUICK_CFG, out, ov)
    assert again.already_complete and again.global_step == 3
    assert (adapter / "adapter_model.safetensors").stat().st_mtime_ns == stamp

    # Killed after the final checkpoint, before the adapter was moved into place: the
    # rerun restores that checkpoint (no extra step) and writes the adapter.
    import shutil

    final_weights = (adapter / "adapter_model.safetensors").read_bytes()
    shutil.rmtree(adapter)
    (out / "training_meta.json").unlink()
    restored = train(QUICK_CFG, out, ov)
    assert restored.global_step == 3 and restored.resumed_from_step == 3
    assert restored.dev_loss == pytest.approx(result.dev_loss)
    assert (adapter / "adapter_model.safetensors").read_bytes() == final_weights

    # A different config is refused (naming what differs) unless forced.
    changed = {**ov, "training.learning_rate": 0.001}
    with pytest.raises(OutputDirConflict, match="training.learning_rate"):
        train(QUICK_CFG, out, changed)
    forced = train(QUICK_CFG, out, {**changed, "training.max_steps": 1}, force=True)
    assert forced.global_step == 1 and not forced.already_complete


KILL_SCRIPT = """
import sys, time
from transformers import TrainerCallback
from spacy_bioreama.training import train

class PauseAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        print("saved checkpoint", state.global_step, flush=True)
        time.sleep(300)  # the test SIGKILLs us here

overrides = {overrides!r}
train({config!r}, {output!r}, overrides, callbacks=[PauseAfterFirstSave()])
"""


def _cli_args(overrides: dict) -> list[str]:
    args = []
    for key, value in overrides.items():
        args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return args


def test_final_dev_loss_is_not_taken_off_the_training_time(tiny_model_dir, data, tmp_path):
    # eval_steps 0: the only dev loss runs after train(), outside train_runtime
    ov = base_overrides(tiny_model_dir, data, max_steps=2, eval_steps=0)
    train(QUICK_CFG, tmp_path / "run", ov)
    meta = json.loads((tmp_path / "run" / "training_meta.json").read_text())
    assert meta["eval_runtime_s"] > 0 and meta["eval_in_train_runtime_s"] == 0
    # train_runtime_s is kept to 3 decimals: a tiny run of ~40 ms is off by up to 0.5 ms
    # there, while taking the dev loss off the time would move the rate by its share
    tokens, seconds = meta["tokens_trained_this_run"], meta["train_runtime_s"]
    slowest, fastest = tokens / (seconds + 0.0005), tokens / max(seconds - 0.0005, 1e-9)
    assert slowest * 0.999 <= meta["tokens_per_second"] <= fastest * 1.001


def test_kill_and_resume(tiny_model_dir, data, tmp_path):
    import torch
    from safetensors.torch import load_file

    from spacy_bioreama.models import load_backend

    # 10 examples / batch 2 = 5 steps per epoch: the resumed run crosses an epoch.
    ov = base_overrides(tiny_model_dir, data, max_steps=8, save_steps=3, logging_steps=1)
    ov["training.eval_steps"] = 4
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    script = tmp_path / "run_and_pause.py"
    script.write_text(
        textwrap.dedent(KILL_SCRIPT).format(overrides=ov, config=str(QUICK_CFG), output=str(out))
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = out / "checkpoints" / "checkpoint-3"
    deadline = time.monotonic() + 90
    try:
        while checkpoint_problem(first) is not None:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no checkpoint within 90 s"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "adapter").exists()
    # Simulate damage from a kill at a worse moment: a half-written later checkpoint and a
    # log line torn mid-write, plus a line about a step whose progress was lost.
    partial = out / "checkpoints" / "checkpoint-6"
    partial.mkdir()
    (partial / "adapter_config.json").write_text("{}")
    with (out / "train_log.jsonl").open("a") as f:
        f.write(json.dumps({"step": 4, "loss": 123.0}) + "\n" + '{"step": 5, "lo')

    # The same command again, through the command-line entry point.
    rerun = subprocess.run(
        [sys.executable, "-m", "spacy_bioreama.training", str(QUICK_CFG), "--output", str(out)]
        + _cli_args(ov),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Removed incomplete checkpoint checkpoint-6" in rerun.stdout
    assert "Resuming from" in rerun.stdout

    meta = json.loads((out / "adapter" / "training_meta.json").read_text())
    assert meta["resumed_from_step"] == 3 and meta["global_step"] == 8
    assert meta["steps_this_run"] == 5
    log = read_log(out / "train_log.jsonl")
    events = [r["event"] for r in log if "event" in r]
    assert events == ["start", "resume", "end"]
    resume_at = next(i for i, r in enumerate(log) if r.get("event") == "resume")
    assert log[resume_at]["step"] == 3 and log[resume_at]["checkpoint"] == "checkpoint-3"
    before = [r["step"] for r in log[:resume_at] if "loss" in r]
    after = [r["step"] for r in log[resume_at:] if "loss" in r]
    assert before == [1, 2, 3] and after == [4, 5, 6, 7, 8]  # global_step continues
    # the mean covers the steps before the kill too (from the checkpoint's log history)
    losses = [r["loss"] for r in log if "loss" in r]
    assert meta["train_loss_mean"] == pytest.approx(sum(losses) / 8)
    assert all(r.get("loss") != 123.0 for r in log)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "checkpoint-6",
        "checkpoint-8",
    ]
    load_backend(tiny_model_dir, adapter=out / "adapter", device="cpu")

    # Resuming is exact: an uninterrupted run ends with the same adapter and losses.
    straight = train(QUICK_CFG, tmp_path / "straight", ov)
    assert straight.global_step == 8
    a = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(straight.adapter_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    straight_log = read_log(tmp_path / "straight" / "train_log.jsonl")
    losses = {r["step"]: r["loss"] for r in straight_log if "loss" in r}
    for r in log:
        if "loss" in r:
            assert r["loss"] == pytest.approx(losses[r["step"]], abs=1e-5)


# ---------------------------------------------------------------- config & errors
def test_overrides_parse_and_bad_keys_fail_clearly(tiny_model_dir, data, capsys):
    ov = parse_overrides(
        ["--training.max_steps", "3", "--lora.target_modules", '["q_proj"]', "--paths.dev", "x"]
    )
    assert ov == {"training.max_steps": 3, "lora.target_modules": ["q_proj"], "paths.dev": "x"}
    cfg = load_train_config(QUICK_CFG, ov)
    assert cfg.training.max_steps == 3 and cfg.paths.dev == "x"
    assert set(cfg.lora.target_modules) == {"q_proj"}
    assert cfg.model.base == "default" and cfg.lora.r == 16

    with pytest.raises(TrainConfigError, match=r"training\.max_stepz.*max_steps"):
        load_train_config(QUICK_CFG, {"training.max_stepz": 3})
    with pytest.raises(TrainConfigError, match=r"trainin\.max_steps"):
        load_train_config(QUICK_CFG, {"trainin.max_steps": 3})
    with pytest.raises(TrainConfigError, match=r"training\.max_steps must be int"):
        load_train_config(QUICK_CFG, {"training.max_steps": "many"})
    with pytest.raises(TrainConfigError, match="warmup_ratio"):
        load_train_config(QUICK_CFG, {"training.warmup_ratio": 1.5})
    with pytest.raises(TrainConfigError, match="could not parse|Could not parse"):
        parse_overrides(["training.max_steps", "3"])

    # The command-line entry point reports the key and exits with 1, loading no model.
    code = main([str(QUICK_CFG), "--output", "unused", "--training.max_stepz", "3"])
    assert code == 1
    assert "training.max_stepz" in capsys.readouterr().err


def test_gpu_7b_config_parses_and_resolves():
    from spacy_bioreama.models import resolve_model
    from spacy_bioreama.training import resolve_precision

    cfg = load_train_config(GPU_CFG)
    assert cfg.model.base == cfg.paths.base_model == "BioMistral/BioMistral-7B"
    assert resolve_model(cfg.model.base) == "BioMistral/BioMistral-7B"  # a hub id
    assert cfg.lora.r == 16 and cfg.lora.target_modules == "all-linear"
    t = cfg.training
    assert t.bf16 == "auto" and not t.qlora and t.gradient_checkpointing
    assert t.per_device_batch_size * t.gradient_accumulation_steps == 64
    local = load_train_config(GPU_CFG, {"paths.base_model": "/models/BioMistral-7B"})
    assert local.model.base == "/models/BioMistral-7B"
    qlora = load_train_config(GPU_CFG, {"training.qlora": True, "training.device": "cpu"})
    with pytest.raises(TrainConfigError, match="qlora.*CUDA"):
        resolve_precision(qlora.training)


def test_data_errors(tiny_model_dir, data, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_instruction_jsonl(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(TrainingDataError, match="empty dataset"):
        read_instruction_jsonl(empty)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "x", "input": "y"}])
    with pytest.raises(TrainingDataError, match=r"bad.jsonl:1.*'output'"):
        read_instruction_jsonl(bad)

    ov = base_overrides(tiny_model_dir, data, max_steps=1)
    with pytest.raises(FileNotFoundError, match="paths.train"):
        train(QUICK_CFG, tmp_path / "o1", {**ov, "paths.train": str(tmp_path / "nope.jsonl")})
    with pytest.raises(TrainingDataError, match="max_length=16"):
        train(QUICK_CFG, tmp_path / "o2", {**ov, "training.max_length": 16})
    with pytest.raises(TrainConfigError, match="paths.train"):
        train(QUICK_CFG, tmp_path / "o3", {**ov, "paths.train": None})
    # A non-empty directory that is not a training run is left alone.
    other = tmp_path / "o4"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirConflict, match="notes.txt"):
        train(QUICK_CFG, other, ov)


def test_adapter_init_continues_from_that_adapter_on_its_own_base(
    tiny_model_dir, tiny_adapter_dir, data, tmp_path
):
    """`model.adapter_init` trains on from an adapter (its own LoRA config, its weights),
    and warns when that adapter was trained on another base model of the same shape."""
    import shutil

    import torch

    from spacy_bioreama.models.base_fingerprint import FINGERPRINT_KEY, BaseModelMismatchWarning
    from spacy_bioreama.models.tiny import make_tiny_llama

    init = tmp_path / "init"
    shutil.copytree(tiny_adapter_dir, init)
    other_meta = train(
        QUICK_CFG,
        tmp_path / "other_run",
        base_overrides(make_tiny_llama(tmp_path / "other", seed=1), data, max_steps=1),
    ).meta
    (init / "training_meta.json").write_text(
        json.dumps({"base_model_path": "other", FINGERPRINT_KEY: other_meta[FINGERPRINT_KEY]})
    )
    ov = base_overrides(tiny_model_dir, data, max_steps=1, learning_rate=1e-9)
    ov["model.adapter_init"] = str(init)
    with pytest.warns(BaseModelMismatchWarning, match=r"trained on another base model \(other\)"):
        result = train(QUICK_CFG, tmp_path / "run", ov)
    # a step of 1e-9: the adapter written is the one it started from (random, non-zero
    # lora_B), not a fresh one (lora_B zero)
    start = load_file(init / "adapter_model.safetensors")
    end = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert start.keys() == end.keys()
    assert all(torch.allclose(start[k], end[k], atol=1e-6) for k in start)


def test_training_data_records_the_label_sets_of_each_task(tiny_backend):
    """NER records carry their types (``labels``), relation records their choices; the
    distinct sets per task go to training_meta.json, where the component reads them."""
    from spacy_bioreama.training.data import DataStats, encode_records

    def record(task, **fields):
        return {"task": task, "instruction": "i", "input": "x", "output": "y", **fields}

    records = [
        record("ner", labels=["Gene", "Disease"]),
        record("ner", labels=["Disease"]),
        record("ner", labels=["Gene", "Disease"]),
        record("re", choices=["Bind", "Association", "None"]),
        record("re", choices=["Bind", "Association", "None"]),
        record("qa"),  # neither: no set
    ]
    stats = DataStats(file="t.jsonl", sha256="0" * 64)
    encode_records(tiny_backend, records, 256, stats)
    assert stats.label_sets == {
        "ner": [["Gene", "Disease"], ["Disease"]],
        "re": [["Bind", "Association"]],
    }
