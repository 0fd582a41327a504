"""The llama.cpp backend: the component's prompts answered by llama.cpp on the GGUF file.

Why: on a CPU, llama.cpp's quantised kernels are what a user would otherwise reach for;
this backend gives them inside spaCy (`backend = "llama_cpp"`), with the same prompts and
the same answer rules as `HFBackend`. The Hugging Face backend stays the one for training
and GPUs.

Same prompts: rendering and tokenisation are `PromptEncoding`'s, with the Hugging Face
tokenizer of the model (or adapter) folder, and llama.cpp is fed the token ids, so both
backends see identical ids (the GGUF vocabulary is the tokenizer's). Same answers rules:
greedy argmax on the model's logits; the line guard through `LineEnder`; constrained
choices scored exactly over the options' token trie (`choices.trie_log_probs`,
`choices.best_option`). A LoRA adapter is applied by llama.cpp at run time on top of the
quantised base (`gguf_lora`); the Hugging Face path runs the same GGUF dequantised with
the adapter merged, so small logit differences (llama.cpp's quantised dot products) can
change an answer — the benchmark counts how often.

llama.cpp's own batching: each prompt of a batch is a sequence of one unified KV cache;
a prompt that shares a prefix with the previous one (prompts are sorted) copies that
prefix's cells (`llama_memory_seq_cp`, no recomputation), every decoding step is one
`llama_decode` over all unfinished sequences, and the options of constrained prompts
are scored in one batch, each option a sequence on its prompt's cells.

Needs the optional extra: `pip install 'spacy-bioreama[llamacpp]'` (builds
llama-cpp-python from source: a C++ compiler and cmake, a few minutes).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ..util.resources import available_cores
from .backend import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PROMPT_TOKENS,
    ChatPrompt,
    CopySpans,
    Generation,
    LineGuard,
)
from .choices import best_option, trie_log_probs
from .greedy import GreedyAnswers, LineEnder, batch_copy, make_copier
from .hf_loading import GenerationStats, PromptEncoding, check_adapter_dir, eos_token_ids

INSTALL_HINT = (
    "pip install 'spacy-bioreama[llamacpp]'  (builds llama-cpp-python from source; needs a "
    "C++ compiler and cmake, a few minutes)"
)
# Cells kept free in the KV cache for option tokens of constrained prompts.
OPTION_CELLS = 1024
# A prefix shorter than this is recomputed rather than copied.
MIN_SHARED_PREFIX = 16
# Tokens per llama_decode call.
N_BATCH = 512


class LlamaCppNotInstalled(ImportError):
    """llama-cpp-python (the optional `[llamacpp]` extra) is not installed."""


def import_llama_cpp() -> Any:
    """The `llama_cpp` module, or `LlamaCppNotInstalled` with the install command."""
    try:
        import llama_cpp
    except ImportError as err:
        raise LlamaCppNotInstalled(
            f"backend 'llama_cpp' needs llama-cpp-python, which is not installed: {INSTALL_HINT}"
        ) from err
    return llama_cpp


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class LlamaCppBackend(PromptEncoding):
    """Greedy (optionally constrained) generation with llama.cpp on a GGUF model.

    Implements `GenerationBackend`. `gguf`: the model file; `tokenizer`: the Hugging Face
    tokenizer of the same model (prompt rendering and token ids); `lora`: a GGUF LoRA
    file (see `gguf_lora`); `n_threads`: llama.cpp threads (default: the cores this
    process may use); `max_new_tokens`: the longest free answer the KV cache is sized for;
    `eos_ids`: end-of-sequence ids (default: the tokenizer's).
    """

    def __init__(
        self,
        gguf: str | os.PathLike,
        tokenizer: Any,
        *,
        lora: str | os.PathLike | None = None,
        max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_new_tokens: int = 256,
        n_threads: int | None = None,
        name: str | None = None,
        adapter: str | None = None,
        eos_ids: Sequence[int] | None = None,
        verbose: bool = False,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        lib = import_llama_cpp()
        if not verbose:
            logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        self._lib = lib
        self.gguf = Path(gguf)
        if not self.gguf.is_file():
            raise FileNotFoundError(f"GGUF model file {os.fspath(gguf)!r} does not exist")
        self.tokenizer = tokenizer
        self._batch_size = self._capacity = int(batch_size)
        self.name = name or self.gguf.name
        self.adapter = adapter
        self.n_threads = int(n_threads or available_cores())
        self.stats = GenerationStats()
        lib.llama_backend_init()
        self._model = lib.llama_model_load_from_file(
            os.fsencode(self.gguf), lib.llama_model_default_params()
        )
        if not self._model:
            raise ValueError(f"llama.cpp cannot load {self.gguf}")
        self._ctx = self._lora = self._batch = None
        self.n_vocab = int(lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(self._model)))
        self.context_length = int(lib.llama_model_n_ctx_train(self._model))
        self._max_prompt_tokens = min(int(max_prompt_tokens), self.context_length)
        # Cells for a batch's prompts and answers (options and the carried prompt get
        # their own room on top).
        self.kv_cells = self._capacity * (self._max_prompt_tokens + max_new_tokens)
        self.n_seq_max = min(int(lib.llama_max_parallel_sequences()), 16 * self._capacity)
        # The last prompt of a batch stays in this sequence, so that the next batch (or
        # call) reuses its prefix: prompts are sorted, and at batch size 1 every prompt
        # is a batch of its own.
        self.carry_seq = self.n_seq_max - 1
        if self._capacity + 1 >= self.carry_seq:
            raise ValueError(
                f"batch_size {batch_size} needs more than the {self.n_seq_max} sequences "
                "llama.cpp allows; lower it"
            )
        self._carried: list[int] = []
        params = lib.llama_context_default_params()
        params.n_ctx = self.kv_cells + OPTION_CELLS + self._max_prompt_tokens
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_seq_max = self.n_seq_max
        params.kv_unified = True  # prompts share prefix cells across sequences
        params.n_threads = params.n_threads_batch = self.n_threads
        params.no_perf = True
        self._ctx = lib.llama_init_from_model(self._model, params)
        if not self._ctx:
            self.close()
            raise ValueError(f"llama.cpp cannot create a context for {self.gguf}")
        self._memory = lib.llama_get_memory(self._ctx)
        if lora is not None:
            self._lora = lib.llama_adapter_lora_init(self._model, os.fsencode(lora))
            if not self._lora:
                self.close()
                raise ValueError(f"llama.cpp cannot load the LoRA adapter {lora}")
            adapters = (lib.llama_adapter_lora_p_ctypes * 1)(self._lora)
            scales = (lib.ctypes.c_float * 1)(1.0)
            if lib.llama_set_adapters_lora(self._ctx, adapters, 1, scales) != 0:
                self.close()
                raise ValueError(f"llama.cpp cannot apply the LoRA adapter {lora}")
        self._batch = lib.llama_batch_init(N_BATCH, 0, 1)
        self.eos_token_ids = list(eos_ids) if eos_ids else eos_token_ids(tokenizer, None)
        self._init_encoding()

    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike,
        adapter: str | os.PathLike | None = None,
        *,
        gguf: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> LlamaCppBackend:
        """The backend for a model folder (tokenizer, config) and its GGUF file: `gguf`, else
        the embedded model's GGUF for the embedded model, else the one `*.gguf` in the
        folder. A PEFT `adapter` is converted once to a GGUF LoRA (cached)."""
        from transformers import AutoTokenizer, GenerationConfig

        from . import embedded, resolve_model
        from .gguf_lora import gguf_lora_path

        model_dir = Path(resolve_model(model_name_or_path))
        if gguf is None:
            if embedded.is_embedded_name(model_name_or_path):
                gguf = embedded.find_gguf()
            else:
                found = sorted(model_dir.glob("*.gguf")) if model_dir.is_dir() else []
                if len(found) != 1:
                    raise FileNotFoundError(
                        f"backend 'llama_cpp': {model_dir} holds {len(found)} .gguf files; "
                        "it needs exactly one (or pass gguf=...)"
                    )
                gguf = found[0]
        tok_source: Path = model_dir
        lora = None
        if adapter is not None:
            adapter = Path(adapter)
            check_adapter_dir(adapter)
            if (adapter / "tokenizer_config.json").exists():
                tok_source = adapter
            lora = gguf_lora_path(adapter, model_dir)
        tokenizer = AutoTokenizer.from_pretrained(tok_source)
        try:  # a chat model may end its turn with an id the tokenizer does not name
            gen_config = GenerationConfig.from_pretrained(model_dir)
        except OSError:
            gen_config = None
        holder = SimpleNamespace(generation_config=gen_config)
        return cls(
            gguf,
            tokenizer,
            lora=lora,
            eos_ids=eos_token_ids(tokenizer, holder),
            name=str(model_name_or_path),
            adapter=str(adapter) if adapter is not None else None,
            **kwargs,
        )

    # -- the protocol -------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Prompts per batch; at most the size the context was built for."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if not 1 <= int(value) <= self._capacity:
            raise ValueError(
                f"batch_size must be in [1, {self._capacity}] (the size this llama.cpp "
                f"context was built for), got {value}"
            )
        self._batch_size = int(value)

    @property
    def max_prompt_tokens(self) -> int:
        """Longest accepted prompt (chat template included), capped by the context length."""
        return self._max_prompt_tokens

    def generate(
        self,
        prompts: Sequence[ChatPrompt],
        *,
        max_new_tokens: int,
        choices: Sequence[Sequence[str] | None] | None = None,
        line_guard: LineGuard | None = None,
        copy: CopySpans | None = None,
    ) -> list[Generation]:
        """Greedy answers for `prompts`, in order (see `GenerationBackend.generate`)."""
        if self._ctx is None:
            raise RuntimeError("this LlamaCppBackend is closed")

        def answer(free, constrained, encoded, option_lists, results, tally) -> None:
            for batch in self._batches(free, encoded, max_new_tokens):
                ids = [encoded[i] for i in batch]
                for i, out in zip(
                    batch,
                    self._greedy(ids, max_new_tokens, line_guard, tally, batch_copy(copy, batch)),
                    strict=True,
                ):
                    results[i] = out
            for batch in self._batches(constrained, encoded, 0):
                ids, opts = [encoded[i] for i in batch], [option_lists[i] for i in batch]
                for i, out in zip(batch, self._choose(ids, opts, tally), strict=True):
                    results[i] = out

        return self._answer_request(prompts, choices, max_new_tokens, answer)

    # -- batching and llama_decode ------------------------------------------------------
    def _batches(
        self, indices: list[int], encoded: list[list[int]], reserve: int
    ) -> list[list[int]]:
        """Prompts sorted by their ids (neighbours share prefixes), in batches of at most
        `batch_size` whose prompts plus `reserve` new tokens each fit the KV cache."""
        batches: list[list[int]] = []
        current: list[int] = []
        cells = 0
        for i in sorted(indices, key=lambda i: encoded[i]):
            need = len(encoded[i]) + reserve
            if current and (len(current) >= self.batch_size or cells + need > self.kv_cells):
                batches.append(current)
                current, cells = [], 0
            current.append(i)
            cells += need
        if current:
            batches.append(current)
        return batches

    def _run(self, entries: list[tuple[int, int, int, Any]]) -> dict[Any, np.ndarray]:
        """`llama_decode` (token, position, sequence, key) entries in chunks of `N_BATCH`;
        the logits of every entry whose key is not None, by key."""
        lib, batch = self._lib, self._batch
        logits: dict[Any, np.ndarray] = {}
        for start in range(0, len(entries), N_BATCH):
            chunk = entries[start : start + N_BATCH]
            batch.n_tokens = len(chunk)
            wanted = []
            for j, (token, pos, seq, key) in enumerate(chunk):
                batch.token[j] = token
                batch.pos[j] = pos
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = seq
                batch.logits[j] = key is not None
                if key is not None:
                    wanted.append((j, key))
            code = lib.llama_decode(self._ctx, batch)
            if code != 0:
                raise RuntimeError(
                    f"llama_decode returned {code} ({len(chunk)} tokens; KV cache of "
                    f"{self.kv_cells} cells for a batch): lower batch_size or "
                    "max_prompt_tokens"
                )
            for j, key in wanted:
                row = lib.llama_get_logits_ith(self._ctx, j)
                logits[key] = np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy()
        return logits

    def _prefill(self, batch_ids: list[list[int]], tally: GenerationStats) -> list[np.ndarray]:
        """Each prompt into sequence `row` (every other sequence but the carried prompt is
        freed first); the last position's logits. A prompt sharing at least
        `MIN_SHARED_PREFIX` tokens with the previous one (the first: with the previous
        batch's last prompt, carried in sequence `carry_seq`) copies those cells instead
        of computing them; this batch's last prompt is carried to the next."""
        lib, memory, carry = self._lib, self._memory, self.carry_seq
        lib.llama_memory_seq_keep(memory, carry)
        entries: list[tuple[int, int, int, Any]] = []
        logits: dict[Any, np.ndarray] = {}
        for row, ids in enumerate(batch_ids):
            source, before = (row - 1, batch_ids[row - 1]) if row else (carry, self._carried)
            shared = min(_common_prefix(before, ids), len(ids) - 1)
            if shared >= MIN_SHARED_PREFIX:
                logits.update(self._run(entries))  # the previous prompt's cells must exist
                entries = []
                lib.llama_memory_seq_cp(memory, source, row, 0, shared)
                tally.shared_prefixes += 1
                tally.prefix_tokens_reused += shared
            else:
                shared = 0
            last = len(ids) - 1
            entries.extend(
                (ids[p], p, row, row if p == last else None) for p in range(shared, len(ids))
            )
        logits.update(self._run(entries))
        self._carried = []  # until the carry holds the new prompt, it holds nothing usable
        lib.llama_memory_seq_rm(memory, carry, -1, -1)
        lib.llama_memory_seq_cp(memory, len(batch_ids) - 1, carry, 0, len(batch_ids[-1]))
        self._carried = list(batch_ids[-1])
        tally.batches += 1
        return [logits[row] for row in range(len(batch_ids))]

    # -- answers ------------------------------------------------------------------------
    def _greedy(
        self,
        batch_ids: list[list[int]],
        max_new_tokens: int,
        line_guard: LineGuard | None,
        tally: GenerationStats,
        copy: CopySpans | None = None,
    ) -> list[Generation]:
        """Greedy answers for one batch: one `llama_decode` per step over the unfinished
        sequences (a finished one's cells are freed)."""
        first = self._prefill(batch_ids, tally)
        logits = dict(enumerate(first))
        eos = torch.tensor(self.eos_token_ids)
        ender = LineEnder(self, line_guard) if line_guard is not None else None
        answers = GreedyAnswers(len(batch_ids), ender, make_copier(self, copy))
        active = list(range(len(batch_ids)))
        positions = [len(ids) for ids in batch_ids]
        for step in range(max_new_tokens):
            scores = torch.from_numpy(np.stack([logits[r] for r in active]))
            next_tok = answers.choose(active, scores)
            tok_lp = torch.log_softmax(scores, dim=-1).gather(-1, next_tok[:, None])[:, 0]
            finished = torch.isin(next_tok, eos)
            answers.add(active, next_tok, tok_lp, finished)
            if step == max_new_tokens - 1:
                break
            going = []
            for row, token, done in zip(active, next_tok.tolist(), finished.tolist(), strict=True):
                if done:
                    self._lib.llama_memory_seq_rm(self._memory, row, -1, -1)
                else:
                    going.append((token, positions[row], row, row))
                    positions[row] += 1
            if not going:
                break
            logits = self._run(going)
            active = [row for *_, row in going]
        return answers.generations(batch_ids, self._decode)

    def _choose(
        self,
        batch_ids: list[list[int]],
        batch_options: list[list[str] | None],
        tally: GenerationStats,
    ) -> list[Generation]:
        """The best option of each prompt of one batch: every option a sequence on its
        prompt's cells, all scored in as few `llama_decode` calls as sequences allow."""
        roots = self._prefill(batch_ids, tally)
        node_logp = [{(): torch.log_softmax(torch.from_numpy(r), dim=-1)} for r in roots]
        seqs_per_prompt = [
            list(dict.fromkeys(self.option_token_ids(o) for o in opts or ()))
            for opts in batch_options
        ]
        entries: list[tuple[int, int, int, Any]] = []
        seq = first_free = len(batch_ids)
        # Cells left for option tokens next to this batch's prompts (the carry has its own).
        room = self.kv_cells + OPTION_CELLS - sum(len(ids) for ids in batch_ids)

        def flush() -> None:
            for (b, prefix), row in self._run(entries).items():
                node_logp[b].setdefault(prefix, torch.log_softmax(torch.from_numpy(row), dim=-1))
            for s in range(first_free, seq):
                self._lib.llama_memory_seq_rm(self._memory, s, -1, -1)
            entries.clear()

        for b, options in enumerate(seqs_per_prompt):
            start = len(batch_ids[b])
            for option in options:
                if not option:
                    continue
                if seq >= self.carry_seq or len(entries) + len(option) > room:
                    flush()
                    seq = first_free
                self._lib.llama_memory_seq_cp(self._memory, b, seq, 0, start)
                entries.extend(
                    (token, start + j, seq, (b, option[: j + 1])) for j, token in enumerate(option)
                )
                seq += 1
        flush()
        eos = torch.tensor(self.eos_token_ids)
        results = []
        for b, opts in enumerate(batch_options):
            assert opts is not None
            seq_score = trie_log_probs(seqs_per_prompt[b], node_logp[b], eos)
            scores = [seq_score[self.option_token_ids(o)] for o in opts]
            results.append(best_option(opts, scores, len(batch_ids[b]), self.option_token_ids))
        return results

    # -- lifetime -----------------------------------------------------------------------
    def close(self) -> None:
        """Free llama.cpp's context, adapter, batch and model (also on garbage collection)."""
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        if getattr(self, "_batch", None) is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            lib.llama_free(self._ctx)
            self._ctx = self._memory = None
        if getattr(self, "_lora", None):
            lib.llama_adapter_lora_free(self._lora)
            self._lora = None
        if getattr(self, "_model", None):
            lib.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        adapter = f", adapter={self.adapter!r}" if self.adapter else ""
        return (
            f"LlamaCppBackend({self.name!r}{adapter}, gguf={str(self.gguf)!r}, "
            f"threads={self.n_threads}, max_prompt_tokens={self.max_prompt_tokens}, "
            f"batch_size={self.batch_size})"
        )


__all__ = ["INSTALL_HINT", "LlamaCppBackend", "LlamaCppNotInstalled", "import_llama_cpp"]
