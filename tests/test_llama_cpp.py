"""The llama.cpp backend (optional `[llamacpp]` extra) and its GGUF LoRA conversion.

The conversion tests run everywhere (gguf-py is a dependency). The backend tests need
llama-cpp-python and the embedded model; CI does not install the extra, so they are
skipped there (`pip install -e '.[llamacpp]'` to run them). What must hold without the
extra (a clear error, the benchmark saying so) is tested with the module hidden.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from spacy_bioreama.models.gguf_lora import LoraConversionError, _permute_rows, write_gguf_lora

ALL_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def full_lora_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spacy_bioreama.models.tiny import make_tiny_lora

    return make_tiny_lora(
        tiny_model_dir, tmp_path_factory.mktemp("full_lora"), target_modules=ALL_TARGETS
    )


def _read_gguf(path: Path) -> tuple[dict, dict]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {}
    for name, field in reader.fields.items():
        if field.types and field.types[0] == gguf.GGUFValueType.STRING:
            fields[name] = bytes(field.parts[field.data[0]]).decode()
        elif field.data:
            fields[name] = field.parts[field.data[0]].tolist()
    tensors = {
        t.name: np.array(t.data).reshape(list(reversed(t.shape.tolist()))) for t in reader.tensors
    }
    return fields, tensors


def test_gguf_lora_has_every_target_with_llama_cpp_layout(
    tiny_model_dir: Path, full_lora_dir: Path, tmp_path: Path
) -> None:
    from safetensors.numpy import load_file

    config = json.loads((tiny_model_dir / "config.json").read_text())
    out = write_gguf_lora(full_lora_dir, config, tmp_path / "lora.gguf")
    fields, tensors = _read_gguf(out)
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    alpha = json.loads((full_lora_dir / "adapter_config.json").read_text())["lora_alpha"]
    assert fields["adapter.lora.alpha"] == [pytest.approx(alpha)]
    layers = config["num_hidden_layers"]
    gguf_names = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    expected = {
        f"blk.{i}.{n}.weight.lora_{ab}" for i in range(layers) for n in gguf_names for ab in "ab"
    }
    assert set(tensors) == expected

    peft = load_file(str(full_lora_dir / "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers.0."
    a_q = peft[prefix + "self_attn.q_proj.lora_A.weight"]
    b_q = peft[prefix + "self_attn.q_proj.lora_B.weight"]
    b_k = peft[prefix + "self_attn.k_proj.lora_B.weight"]
    b_v = peft[prefix + "self_attn.v_proj.lora_B.weight"]
    np.testing.assert_array_equal(tensors["blk.0.attn_q.weight.lora_a"], a_q)  # (rank, in)
    # Query and key rows follow llama.cpp's rotary permutation (with the kv heads for
    # keys); values are untouched. The permutation is not the identity here.
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    assert not np.array_equal(_permute_rows(b_q, heads), b_q)
    np.testing.assert_array_equal(tensors["blk.0.attn_q.weight.lora_b"], _permute_rows(b_q, heads))
    np.testing.assert_array_equal(
        tensors["blk.0.attn_k.weight.lora_b"], _permute_rows(b_k, kv_heads)
    )
    np.testing.assert_array_equal(tensors["blk.0.attn_v.weight.lora_b"], b_v)


def test_gguf_lora_refuses_what_llama_cpp_cannot_apply(
    tiny_model_dir: Path, full_lora_dir: Path, tmp_path: Path
) -> None:
    import shutil

    config = json.loads((tiny_model_dir / "config.json").read_text())
    with pytest.raises(LoraConversionError, match="model type 'gpt2'"):
        write_gguf_lora(full_lora_dir, config | {"model_type": "gpt2"}, tmp_path / "x.gguf")
    dora = tmp_path / "dora"
    shutil.copytree(full_lora_dir, dora)
    cfg = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps(cfg | {"use_dora": True}))
    with pytest.raises(LoraConversionError, match=r"adapter_config.json: use_dora"):
        write_gguf_lora(dora, config, tmp_path / "y.gguf")


def test_backend_llama_cpp_without_the_extra_says_how_to_install(monkeypatch) -> None:
    import spacy

    from spacy_bioreama.models.llama_cpp import LlamaCppNotInstalled

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now fails
    nlp = spacy.blank("en")
    component = nlp.add_pipe("bio_relation_llm", config={"backend": "llama_cpp"})
    with pytest.raises(LlamaCppNotInstalled, match=r"pip install 'spacy-bioreama\[llamacpp\]'"):
        component.backend  # noqa: B018 - loading is what is tested
    with pytest.raises(ValueError, match="backend must be one of"):
        nlp.add_pipe("bio_relation_llm", name="other", config={"backend": "vllm"})


def test_benchmark_table_says_when_llama_cpp_is_missing(monkeypatch) -> None:
    from spacy_bioreama.evaluation import benchmark

    monkeypatch.setattr(benchmark, "llama_cpp_version", lambda: None)
    part = benchmark.measure_llama_cpp(None, None, None, [], [], [1])  # type: ignore[arg-type]
    assert part["installed"] is False and "[llamacpp]" in part["install"]
    line = benchmark.llama_cpp_summary({"docs_per_s": 1.0, "llama_cpp": part})
    assert line == f"llama.cpp: not installed, not measured. Install: {part['install']}"


# -- with llama-cpp-python installed ------------------------------------------------------


@pytest.fixture(scope="module")
def llama_backend(embedded_model_dir: Path):
    pytest.importorskip("llama_cpp", reason="the [llamacpp] extra is not installed")
    from spacy_bioreama.models.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend.from_pretrained(
        "default", max_prompt_tokens=512, batch_size=4, max_new_tokens=32, n_threads=1
    )
    yield backend
    backend.close()


def test_llama_cpp_answers_like_the_hf_backend(llama_backend, embedded_backend) -> None:
    """Same prompts, same greedy rule, same option scoring. llama.cpp computes with the
    quantised weights (the Hugging Face path with them dequantised), so long free answers
    may part after a few words; the options and their probabilities agree, and llama.cpp's
    batching and prefix copies do not change its own answers."""
    from spacy_bioreama.models.backend import ChatPrompt

    text = "Aspirin reduces the risk of colorectal cancer in patients with Lynch syndrome."
    free = [
        ChatPrompt(user=f"{text}\nList the diseases."),
        ChatPrompt(user=f"{text}\nName the drug."),
    ]
    pair = [
        ChatPrompt(user=f"{text}\nDoes aspirin treat {d}? Answer yes or no.")
        for d in ("cancer", "Lynch syndrome")
    ]
    options = [["yes", "no"], ["yes", "no"]]
    ours = embedded_backend.generate(free, max_new_tokens=12) + embedded_backend.generate(
        pair, max_new_tokens=4, choices=options
    )
    answers, reused = {}, {}
    for size in (1, 4):
        llama_backend.batch_size = size
        llama_backend.stats.reset()
        answers[size] = llama_backend.generate(free, max_new_tokens=12) + llama_backend.generate(
            pair, max_new_tokens=4, choices=options
        )
        reused[size] = llama_backend.stats.prefix_tokens_reused
    # The pair prompts share their text: copied within a batch, and carried from one
    # batch to the next at batch size 1.
    assert reused[1] > 20 and reused[4] > 20
    with pytest.raises(ValueError, match="batch_size must be in"):
        llama_backend.batch_size = 5  # above what the context was built for
    assert [g.text for g in answers[1]] == [g.text for g in answers[4]]
    theirs = answers[4]
    for a, b in zip(ours[:2], theirs[:2], strict=True):
        assert a.text.split()[:4] == b.text.split()[:4]
        assert b.prompt_tokens == a.prompt_tokens  # the very same token ids
    for a, b in zip(ours[2:], theirs[2:], strict=True):
        assert b.text == a.text
        assert sum(b.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert abs(a.probabilities["yes"] - b.probabilities["yes"]) < 0.1


def test_llama_cpp_applies_the_lora_like_peft(embedded_model_dir: Path, tmp_path: Path) -> None:
    """A random LoRA on the embedded model moves llama.cpp's logits the way the merged
    Hugging Face model's move (the permutation and scale are right)."""
    pytest.importorskip("llama_cpp", reason="the [llamacpp] extra is not installed")
    import torch

    from spacy_bioreama.models.hf import HFBackend
    from spacy_bioreama.models.llama_cpp import LlamaCppBackend
    from spacy_bioreama.models.tiny import make_tiny_lora

    # Query and key only: the projections whose rows llama.cpp permutes.
    adapter = make_tiny_lora(
        embedded_model_dir, tmp_path / "lora", r=4, target_modules=("q_proj", "k_proj")
    )
    ids = [list(range(1000, 1040))]
    logits = {}
    for name, lora in (("base", None), ("lora", adapter)):
        hf = HFBackend.from_pretrained(embedded_model_dir, lora, device="cpu", max_prompt_tokens=64)
        with torch.inference_mode():
            logits["hf_" + name] = hf.model(torch.tensor(ids)).logits[0, -1].float().numpy()
        llama = LlamaCppBackend.from_pretrained(
            "default", lora, max_prompt_tokens=64, batch_size=1, max_new_tokens=4, n_threads=1
        )
        from spacy_bioreama.models.hf_loading import GenerationStats

        logits["cpp_" + name] = llama._prefill(ids, GenerationStats())[0]
        llama.close()
    shift_hf = logits["hf_lora"] - logits["hf_base"]
    shift_cpp = logits["cpp_lora"] - logits["cpp_base"]
    assert np.linalg.norm(shift_hf) > 1.0  # the adapter does move the model
    cosine = shift_hf @ shift_cpp / np.linalg.norm(shift_hf) / np.linalg.norm(shift_cpp)
    assert cosine > 0.95


def test_three_way_rows_and_summary() -> None:
    """The table (and the results page) shows ours, the naive loop and both llama.cpp
    measurements at every batch size, with the speed ratio and agreement counts."""
    from spacy_bioreama.evaluation.benchmark import engine_rows, llama_cpp_summary

    def run(docs_per_s: float, **extra) -> dict:
        return {
            "docs_per_s": docs_per_s,
            "prompt_tokens_per_s": 100.0,
            "generated_tokens_per_s": 10.0,
            "prompts": 9,
            "seconds": 8 / docs_per_s,
            **extra,
        }

    agreement = {
        "free_identical": 3,
        "free_prompts": 4,
        "relation_identical": 5,
        "relation_prompts": 5,
    }
    record = {
        "docs_per_s": 0.2,
        "runs": {
            "1": run(0.1, peak_rss_bytes_after=2**30),
            "8": run(0.2, peak_rss_bytes_after=2**30),
        },
        "naive_docs_per_s": 0.05,
        "naive_prompt_tokens_per_s": 50.0,
        "naive_generated_tokens_per_s": 5.0,
        "naive_prompts": 9,
        "naive_seconds": 160.0,
        "peak_rss_bytes": 2**31,
        "llama_cpp": {
            "installed": True,
            "version": "0.3.36",
            "threads": 2,
            "gguf": "m.gguf",
            "rss_added_bytes": 300 * 2**20,
            "replay": {"1": run(0.3, **agreement), "8": run(0.5, **agreement)},
            "pipe": {"1": run(0.25), "8": run(0.4)},
        },
    }
    rows = engine_rows(record)
    assert [r.engine for r in rows] == [
        "ours: nlp.pipe batch 1",
        "ours: nlp.pipe batch 8",
        "naive generate() batch 1",
        "llama.cpp replay batch 1",
        "llama.cpp replay batch 8",
        "nlp.pipe llama_cpp batch 1",
        "nlp.pipe llama_cpp batch 8",
    ]
    assert [r.rss for r in rows] == ["1024", "1024", "2048"] + ["+300"] * 4
    summary = llama_cpp_summary(record)
    assert "best replay 2.50x our best nlp.pipe" in summary
    assert "entity answers 3/4, relation labels 5/5" in summary
