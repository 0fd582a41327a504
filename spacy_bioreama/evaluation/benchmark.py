"""Throughput of `bio_relation_llm` against a naive one-prompt-at-a-time baseline.

Why: the component's speed comes from three things a plain Hugging Face loop lacks —
batched generation, shared-prefix KV reuse for the relation prompts of a window, and
constrained choice scoring (one forward pass instead of free decoding). This module
measures what they buy on real documents, in one process, on one model object.

Our path: `nlp.pipe` with the component at each batch size (documents per `pipe` batch
and prompts per generation batch), after an untimed warm-up, with fresh statistics per
run. Docs/s is wall time over the whole `pipe` call (windowing, prompt rendering, token
counting, parsing and annotation included); prompt and generated tokens/s come from the
component's `stats` (`prompt_tokens`, `generated_tokens`). Prompt tokens include those
whose KV cache was reused from a shared prefix (`prompt_tokens_computed` in `runs` says
how many went through the model); "generated" tokens of a constrained answer are the
chosen option's tokens plus end-of-sequence, scored rather than decoded.

Naive baseline, as spacy-llm's Hugging Face models work: every prompt our fastest run
sent to the backend (recorded by a thin proxy around the backend, so they are exactly the
component's prompts, built by its own task and windowing code from its own entity
predictions) is sent alone through `model.generate` on the same model object and device:
chat template applied as `HFBackend` does, greedy, batch 1, no prefix sharing. Entity
prompts get the same `max_new_tokens`; relation prompts get a free-form answer with the
small limit the component passes for them (longest answer's length in characters + 4)
instead of constrained scoring. What differs, and in whose favour:

- the naive time covers only the generation loop (template, tokenisation, `generate`,
  decoding); the component's Python work (windowing, prompt building, parsing,
  annotation) is in our time only, which flatters the baseline;
- `model.generate` runs with an explicit greedy `GenerationConfig` (no sampling, no
  repetition penalty), so both paths decode the same way; `naive_free_identical` counts
  the entity answers that came out identical, a check that both did the same work;
- relation answers: ours are constrained (always a valid label, with a confidence),
  the naive ones free text (`naive_relation_parseable` counts those that name a label).

Peak RSS is `training.peak_rss_bytes()`: process-wide and monotone (model loading,
warm-ups, all runs and the baseline), recorded after each run as a running maximum. For
a per-batch-size figure, run the command once per batch size (`--batch-sizes 8`), each in
its own process.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc

from ..annotations.spans import copy_for_prediction
from ..models.backend import ChatPrompt, Generation, LineGuard
from ..models.greedy import LineEnder
from ..pipeline.component import TASK_ENTITIES, BioRelationLLM
from ..tasks import relation as re_task
from ..util.resources import RssSampler, peak_rss_bytes
from .benchmark_llama_cpp import ReplayResult, llama_cpp_version, load_llama_cpp, replay

WARMUP_NEW_TOKENS = 8


@dataclass
class RecordedCall:
    """One `generate` call of the component: its prompts, settings and our answers."""

    prompts: list[ChatPrompt]
    max_new_tokens: int
    constrained: bool
    answers: list[Generation]
    line_guard: LineGuard | None = None
    choices: list[Sequence[str] | None] | None = None
    copy: Any = None  # the NER copy constraint (`models.copy_spans.CopySpans`), if any


class RecordingBackend:
    """Forwards everything to the real backend and records each `generate` call, so the
    baseline replays exactly the prompts the component sent (no copied prompt logic)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[RecordedCall] = []

    def generate(
        self,
        prompts: Sequence[ChatPrompt],
        *,
        max_new_tokens: int,
        choices: Sequence[Sequence[str] | None] | None = None,
        line_guard: LineGuard | None = None,
        copy: Any = None,
    ) -> list[Generation]:
        """The inner backend's answers; the call (prompts, limits, answers) is recorded."""
        extra = {"copy": copy} if copy is not None else {}
        answers = self.inner.generate(
            prompts, max_new_tokens=max_new_tokens, choices=choices, line_guard=line_guard, **extra
        )
        self.calls.append(
            RecordedCall(
                list(prompts),
                max_new_tokens,
                choices is not None,
                answers,
                line_guard,
                list(choices) if choices is not None else None,
                copy,
            )
        )
        return answers

    @property
    def max_prompt_tokens(self) -> int:
        """The inner backend's prompt limit."""
        return self.inner.max_prompt_tokens

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class RunResult:
    """One timed `nlp.pipe` run at one batch size."""

    batch_size: int
    docs: int
    seconds: float
    prompts: int
    prompt_tokens: int
    generated_tokens: int
    backend: dict[str, float]
    peak_rss_bytes_after: int
    calls: list[RecordedCall] = field(default_factory=list, repr=False)

    @property
    def docs_per_s(self) -> float:
        """Documents per second of wall time (0 for an untimed run)."""
        return self.docs / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (the recorded prompts are left out)."""
        per_s = 1 / self.seconds if self.seconds > 0 else 0.0
        return {
            "docs_per_s": round(self.docs_per_s, 4),
            "seconds": round(self.seconds, 3),
            "prompts": self.prompts,
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_per_s": round(self.prompt_tokens * per_s, 1),
            "generated_tokens": self.generated_tokens,
            "generated_tokens_per_s": round(self.generated_tokens * per_s, 1),
            "prompt_tokens_computed": int(self.backend.get("prompt_tokens_computed", 0)),
            "shared_prefixes": int(self.backend.get("shared_prefixes", 0)),
            "generation_batches": int(self.backend.get("batches", 0)),
            "generate_seconds": round(float(self.backend.get("seconds", 0.0)), 3),
            "peak_rss_bytes_after": self.peak_rss_bytes_after,
        }


@dataclass
class NaiveResult(ReplayResult):
    """The baseline: every recorded prompt through `model.generate`, one at a time;
    relation answers are free text, so it counts those that name a label."""

    relation_parseable: int = 0


def _check_hf_backend(backend: Any) -> None:
    """The baseline needs the raw model and tokenizer: only `HFBackend`-like backends."""
    needed = ("model", "tokenizer", "encode_prompt", "eos_token_ids", "pad_token_id", "stats")
    missing = [name for name in needed if not hasattr(backend, name)]
    if missing:
        raise TypeError(
            f"benchmark needs a Hugging Face backend (HFBackend); {type(backend).__name__} "
            f"lacks {missing}"
        )


def _sync(backend: Any) -> None:
    """Wait for queued GPU work, so wall times are complete."""
    import torch

    device = getattr(backend, "device", None)
    if device is not None and getattr(device, "type", "") == "cuda":
        torch.cuda.synchronize(device)


def _fresh_inputs(nlp: Language, gold: Sequence[Doc], keep_entities: bool) -> list[Doc]:
    return [copy_for_prediction(nlp.make_doc, doc, keep_entities) for doc in gold]


def time_pipeline(
    nlp: Language,
    component: BioRelationLLM,
    recorder: RecordingBackend,
    gold: Sequence[Doc],
    batch_size: int,
) -> RunResult:
    """One timed `nlp.pipe` over fresh copies of `gold`, statistics reset before."""
    hf = recorder.inner
    keep = TASK_ENTITIES not in component.tasks
    inputs = _fresh_inputs(nlp, gold, keep)
    component.batch_size = batch_size
    hf.batch_size = batch_size
    component.stats.clear()
    hf.stats.reset()
    recorder.calls = []
    _sync(hf)
    start = time.perf_counter()
    done = list(nlp.pipe(inputs, batch_size=batch_size))
    _sync(hf)
    seconds = time.perf_counter() - start
    return RunResult(
        batch_size=batch_size,
        docs=len(done),
        seconds=seconds,
        prompts=int(hf.stats.prompts),
        prompt_tokens=int(component.stats["prompt_tokens"]),
        generated_tokens=int(component.stats["generated_tokens"]),
        backend=hf.stats.as_dict(),
        peak_rss_bytes_after=peak_rss_bytes(),
        calls=recorder.calls,
    )


def naive_generate(
    hf: Any, prompt: ChatPrompt, max_new_tokens: int, line_guard: LineGuard | None = None
) -> Generation:
    """One prompt alone through `model.generate` (greedy, batch 1, no cache sharing).
    A `line_guard` is applied as a logits processor, as `HFBackend` applies it."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    ids = hf.encode_prompt(prompt)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        eos_token_id=list(hf.eos_token_ids),
        pad_token_id=hf.pad_token_id,
    )
    input_ids = torch.tensor([ids], dtype=torch.long, device=hf.device)
    with torch.inference_mode():
        out = hf.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=config,
            logits_processor=LogitsProcessorList(
                [LineEnder(hf, line_guard).logits_processor(len(ids))] if line_guard else []
            ),
        )
    new = out[0, len(ids) :].tolist()
    stopped = bool(new) and new[-1] in hf.eos_token_ids
    text = hf.tokenizer.decode(
        new[:-1] if stopped else new,
        skip_special_tokens=True,
        clean_up_tokenization_spaces=False,
    ).strip()
    return Generation(
        text=text,
        logprob=0.0,
        prompt_tokens=len(ids),
        new_tokens=len(new),
        truncated=not stopped,
    )


def time_naive(
    hf: Any, calls: Iterable[RecordedCall], docs: int, relation_labels: Sequence[str]
) -> NaiveResult:
    """Replay every recorded prompt through `naive_generate`, one at a time."""
    calls = list(calls)
    result = NaiveResult(docs=docs, seconds=0.0)
    answers: list[tuple[RecordedCall, Generation, Generation]] = []
    _sync(hf)
    start = time.perf_counter()
    for call in calls:
        for prompt, ours in zip(call.prompts, call.answers, strict=True):
            naive = naive_generate(hf, prompt, call.max_new_tokens, call.line_guard)
            answers.append((call, ours, naive))
    _sync(hf)
    result.seconds = time.perf_counter() - start
    for call, ours, naive in answers:
        result.prompts += 1
        result.prompt_tokens += naive.prompt_tokens
        result.generated_tokens += naive.new_tokens
        if call.constrained:
            result.relation_prompts += 1
            parsed = re_task.parse_answer(naive.text, relation_labels)
            result.relation_parseable += parsed is not None
        else:
            result.free_prompts += 1
            result.free_identical += naive.text == ours.text
    return result


def _warm_up(
    nlp: Language, component: BioRelationLLM, hf: Any, gold: Sequence[Doc], batch_size: int
) -> None:
    """Untimed: first-use costs (window budget, option tokenisation, kernel set-up) and
    one naive `generate` call, both with few new tokens."""
    keep = TASK_ENTITIES not in component.tasks
    limit = component.max_new_tokens
    component.max_new_tokens = min(limit, WARMUP_NEW_TOKENS)
    hf.batch_size = component.batch_size = batch_size
    try:
        list(nlp.pipe(_fresh_inputs(nlp, gold[:1], keep), batch_size=batch_size))
    finally:
        component.max_new_tokens = limit
    naive_generate(hf, ChatPrompt(user=gold[0].text[:200] or "x"), max_new_tokens=2)


def find_component(nlp: Language) -> BioRelationLLM:
    """The pipeline's `bio_relation_llm` component."""
    for _, pipe in nlp.pipeline:
        if isinstance(pipe, BioRelationLLM):
            return pipe
    raise ValueError("the pipeline has no bio_relation_llm component")


def measure_llama_cpp(
    nlp: Language,
    component: BioRelationLLM,
    hf: Any,
    gold: Sequence[Doc],
    calls: Sequence[RecordedCall],
    batch_sizes: Sequence[int],
    required: bool = False,
) -> dict[str, Any]:
    """The llama.cpp part of the record (`benchmark_llama_cpp`): the recorded prompts
    replayed at each batch size, then `nlp.pipe` on the llama.cpp backend; llama.cpp's
    added RSS; or, without llama-cpp-python, how to install it. A model llama.cpp cannot
    run (no GGUF file, an adapter it cannot apply) is skipped with the reason, or raises
    when `required`."""
    from ..models.gguf_lora import LoraConversionError
    from ..models.llama_cpp import INSTALL_HINT

    version = llama_cpp_version()
    if version is None:
        return {"installed": False, "install": INSTALL_HINT}
    sampler = RssSampler()
    before = sampler.reset()
    start = time.perf_counter()
    try:
        backend = load_llama_cpp(component, hf.max_prompt_tokens, max(batch_sizes))
    except Exception as err:  # noqa: BLE001 - an optional engine must not sink the run
        sampler.stop()
        if required:
            raise
        why = "" if isinstance(err, FileNotFoundError | LoraConversionError) else "failed: "
        return {"installed": True, "version": version, "skipped": f"{why}{err}"}
    load_seconds = time.perf_counter() - start
    try:
        if calls:  # untimed warm-up: first-use costs of the kernels
            backend.generate(calls[0].prompts[:1], max_new_tokens=2)
        replays = {str(b): replay(backend, calls, len(gold), b).summary() for b in batch_sizes}
        recorder = RecordingBackend(backend)
        component._backend = recorder
        try:
            pipes = {
                str(b): time_pipeline(nlp, component, recorder, gold, b).summary()
                for b in batch_sizes
            }
        finally:
            component._backend = hf
    finally:
        peak = sampler.stop()
        threads, gguf = backend.n_threads, str(backend.gguf)
        backend.close()
    return {
        "installed": True,
        "version": version,
        "gguf": gguf,
        "threads": threads,
        "load_seconds": round(load_seconds, 2),
        "rss_added_bytes": max(0, peak - before),
        "replay": replays,
        "pipe": pipes,
    }


def run_benchmark(
    nlp: Language,
    gold: Sequence[Doc],
    batch_sizes: Sequence[int] = (1, 4, 8),
    *,
    command: str | None = None,
    warm_up: bool = True,
    llama_cpp: bool | None = None,
) -> dict[str, Any]:
    """Time `nlp.pipe` at each batch size, then the naive baseline on the prompts of the
    fastest run, then llama.cpp on those prompts (`llama_cpp`: None runs it when
    llama-cpp-python is installed, True requires it, False skips it); return the JSON
    record (see the module docstring for what differs)."""
    import torch

    if not gold:
        raise ValueError("benchmark: no documents")
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"benchmark: batch sizes must be >= 1, got {list(batch_sizes)}")
    if llama_cpp and llama_cpp_version() is None:
        from ..models.llama_cpp import import_llama_cpp

        import_llama_cpp()  # raises LlamaCppNotInstalled with the install command, at once
    component = find_component(nlp)
    hf = component.backend  # loads the model once, outside any timing
    _check_hf_backend(hf)
    saved = (component.batch_size, hf.batch_size)
    recorder = RecordingBackend(hf)
    component._backend = recorder
    try:
        if warm_up:
            _warm_up(nlp, component, hf, gold, batch_sizes[0])
        runs = [time_pipeline(nlp, component, recorder, gold, b) for b in batch_sizes]
        best = max(runs, key=lambda r: r.docs_per_s)
        naive = time_naive(hf, best.calls, len(gold), component.relation_labels)
        naive_peak = peak_rss_bytes()  # before llama.cpp adds its memory
        if llama_cpp is False:
            llama: dict[str, Any] = {
                "installed": llama_cpp_version() is not None,
                "skipped": "--no-llama-cpp",
            }
        else:
            llama = measure_llama_cpp(
                nlp, component, hf, gold, best.calls, batch_sizes, required=bool(llama_cpp)
            )
    finally:
        component._backend = hf
        component.batch_size, hf.batch_size = saved
    naive_per_s = 1 / naive.seconds if naive.seconds > 0 else 0.0
    best_summary = best.summary()
    record: dict[str, Any] = {
        "docs_per_s": best_summary["docs_per_s"],
        "naive_docs_per_s": round(naive.docs_per_s, 4),
        "speedup": round(best.docs_per_s / naive.docs_per_s, 2) if naive.docs_per_s else None,
        "best_batch_size": best.batch_size,
        "batch_sizes": list(batch_sizes),
        "docs": len(gold),
        "model": component.model,
        "adapter": component.adapter,
        "device": str(hf.device),
        "dtype": str(hf.dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
        "tasks": ",".join(component.tasks),
        "max_new_tokens": component.max_new_tokens,
        "max_prompt_tokens": component.max_prompt_tokens,
        "prompts": best.prompts,
        "prompt_tokens_per_s": best_summary["prompt_tokens_per_s"],
        "generated_tokens_per_s": best_summary["generated_tokens_per_s"],
        "naive_prompts": naive.prompts,
        "naive_seconds": round(naive.seconds, 3),
        "naive_prompt_tokens_per_s": round(naive.prompt_tokens * naive_per_s, 1),
        "naive_generated_tokens_per_s": round(naive.generated_tokens * naive_per_s, 1),
        "naive_free_prompts": naive.free_prompts,
        "naive_free_identical": naive.free_identical,
        "naive_relation_prompts": naive.relation_prompts,
        "naive_relation_parseable": naive.relation_parseable,
        "peak_rss_bytes": peak_rss_bytes(),
        "naive_peak_rss_bytes": naive_peak,
        "command": command,
        "runs": {str(r.batch_size): r.summary() for r in runs},
        "llama_cpp": llama,
        "notes": {
            "naive": "same prompts as the fastest run (recorded from its backend calls), "
            "each alone through model.generate: greedy, batch 1, no prefix sharing; "
            "relation prompts answered free-form (the component's relation max_new_tokens) "
            "instead of constrained scoring; naive time covers generation only "
            "(template, tokenisation, generate, decode), ours the whole nlp.pipe",
            "peak_rss": "process-wide running maximum (model load, warm-up, every run and "
            "the baseline); run one batch size per process for per-configuration peaks",
            "tokens": "prompt tokens include prefix tokens whose KV cache was reused "
            "(runs.*.prompt_tokens_computed went through the model); generated tokens of "
            "constrained answers are the chosen option's tokens + end-of-sequence",
            "llama_cpp": "replay: the same recorded prompts through LlamaCppBackend "
            "(llama.cpp's batching; generation time only, like naive); pipe: nlp.pipe "
            "with backend llama_cpp (its own entity answers drive its relation prompts); "
            "identical: answer text equal to ours; rss_added: peak current RSS while "
            "llama.cpp loaded and ran minus the RSS before",
        },
    }
    return record


@dataclass(frozen=True)
class EngineRow:
    """One row of the three-way table: an engine at one batch size."""

    engine: str
    docs_per_s: float
    prompt_tokens_per_s: float
    generated_tokens_per_s: float
    prompts: int
    seconds: float
    rss: str  # MiB: process peak after the run, or "+N" added by llama.cpp


def engine_rows(record: dict[str, Any]) -> list[EngineRow]:
    """Ours at each batch size, the naive loop, then llama.cpp (replay and nlp.pipe) when
    it was measured: the rows of `format_table` and of the results page."""

    def row(engine: str, run: dict[str, Any], rss: str) -> EngineRow:
        return EngineRow(
            engine,
            run["docs_per_s"],
            run["prompt_tokens_per_s"],
            run["generated_tokens_per_s"],
            run["prompts"],
            run["seconds"],
            rss,
        )

    rows = [
        row(f"ours: nlp.pipe batch {size}", run, f"{run['peak_rss_bytes_after'] / 2**20:.0f}")
        for size, run in record["runs"].items()
    ]
    naive = {
        "docs_per_s": record["naive_docs_per_s"],
        "prompt_tokens_per_s": record["naive_prompt_tokens_per_s"],
        "generated_tokens_per_s": record["naive_generated_tokens_per_s"],
        "prompts": record["naive_prompts"],
        "seconds": record["naive_seconds"],
    }
    naive_rss = record.get("naive_peak_rss_bytes", record["peak_rss_bytes"])
    rows.append(row("naive generate() batch 1", naive, f"{naive_rss / 2**20:.0f}"))
    llama = record.get("llama_cpp") or {}
    if llama.get("replay"):
        added = f"+{llama['rss_added_bytes'] / 2**20:.0f}"
        for kind, label in (("replay", "llama.cpp replay"), ("pipe", "nlp.pipe llama_cpp")):
            rows += [row(f"{label} batch {size}", run, added) for size, run in llama[kind].items()]
    return rows


def llama_cpp_summary(record: dict[str, Any]) -> str:
    """One sentence on llama.cpp: its speed against ours and answer agreement, or why it
    was not measured."""
    llama = record.get("llama_cpp")
    if llama is None:
        return "llama.cpp: not part of this record (made before the benchmark measured it)"
    if not llama.get("installed"):
        return f"llama.cpp: not installed, not measured. Install: {llama.get('install')}"
    if llama.get("skipped"):
        return f"llama.cpp: skipped ({llama['skipped']})"
    best = max(llama["replay"].values(), key=lambda run: run["docs_per_s"])
    ours = record["docs_per_s"]
    ratio = best["docs_per_s"] / ours if ours else float("nan")
    return (
        f"llama.cpp {llama['version']} ({llama['threads']} threads, "
        f"{Path(llama['gguf']).name}): best "
        f"replay {ratio:.2f}x our best nlp.pipe; its answers identical to ours: entity "
        f"answers {best['free_identical']}/{best['free_prompts']}, relation labels "
        f"{best['relation_identical']}/{best['relation_prompts']}; llama.cpp rows show the "
        "MiB it added to the process"
    )


def format_table(record: dict[str, Any]) -> str:
    """A plain-text table of the runs, the baseline and llama.cpp."""
    header = (
        f"{'engine':<28} {'docs/s':>9} {'prompt tok/s':>13} {'gen tok/s':>10} "
        f"{'prompts':>8} {'seconds':>9} {'RSS MiB':>8}"
    )
    lines = [
        f"{record['docs']} documents, model {record['model']}, device {record['device']} "
        f"({record['dtype']}, {record['torch_threads']} threads), tasks {record['tasks']}",
        header,
        "-" * len(header),
    ]
    lines += [
        f"{r.engine:<28} {r.docs_per_s:>9.3f} {r.prompt_tokens_per_s:>13.1f} "
        f"{r.generated_tokens_per_s:>10.1f} {r.prompts:>8} {r.seconds:>9.2f} {r.rss:>8}"
        for r in engine_rows(record)
    ]
    lines.append(
        f"speedup (batch {record['best_batch_size']} vs naive): {record['speedup']}x; naive "
        f"entity answers identical to ours: {record['naive_free_identical']}/"
        f"{record['naive_free_prompts']}; naive relation answers naming a label: "
        f"{record['naive_relation_parseable']}/{record['naive_relation_prompts']}"
    )
    lines.append(llama_cpp_summary(record))
    lines.append("RSS: process-wide running maximum after each run (not per configuration).")
    return "\n".join(lines)


__all__ = [
    "EngineRow",
    "NaiveResult",
    "RecordedCall",
    "RecordingBackend",
    "RunResult",
    "engine_rows",
    "find_component",
    "format_table",
    "llama_cpp_summary",
    "naive_generate",
    "run_benchmark",
    "time_naive",
    "time_pipeline",
]
