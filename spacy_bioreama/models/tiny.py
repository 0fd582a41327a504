"""Tiny, deterministic models for fast tests.

`make_tiny_llama(path)` builds in about a second a randomly initialised `LlamaForCausalLM`
(hidden size 32, 2 layers) with a real byte-level BPE tokenizer trained locally on a few
hundred words of biomedical-looking text, ChatML special tokens and a ChatML chat template,
and saves it (safetensors) to `path`. `make_tiny_lora(model_dir, path)` saves a random,
non-zero PEFT LoRA adapter for it. Nothing here touches the network; both functions are
seeded, so the same arguments give the same weights.

The tiny model produces gibberish, but it exercises every code path of the Hugging Face
backend (batching, padding, caches, constrained choices, adapters) in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CORPUS = """\
Aspirin reduced the risk of myocardial infarction in patients with type 2 diabetes mellitus.
Cisplatin induced nephrotoxicity and ototoxicity in children treated for neuroblastoma.
The BRCA1 gene is associated with hereditary breast and ovarian cancer.
Mutations in the CFTR gene cause cystic fibrosis, a recessive disease of the lung.
Metformin decreased hepatic glucose production and improved insulin sensitivity.
Tamoxifen binds to the estrogen receptor ESR1 and inhibits tumour growth.
Warfarin interacts with amiodarone, increasing the risk of bleeding.
The variant rs7412 of APOE was linked to Alzheimer disease in a cohort of 1,024 subjects.
Haloperidol-induced catalepsy was reversed by scopolamine in rats.
Lithium carbonate caused hypothyroidism and polyuria in bipolar patients.
TP53 and KRAS mutations were detected in 45% of colorectal carcinoma samples.
Interleukin-6 (IL-6) levels correlated with the severity of COVID-19 pneumonia.
Doxorubicin cardiotoxicity depends on the cumulative dose and on TOP2B expression.
Chemical, Disease, Gene, Variant, Species, CellLine, Protein, Drug.
Association, Positive_Correlation, Negative_Correlation, Bind, Cotreatment,
Comparison, Conversion, Drug_Interaction, None, Yes, No, Maybe, true, false.
system user assistant answer question context relation entity type label.
Which relation holds between the two marked entities? Answer with one label.
List every chemical and disease mentioned in the text, one per line.
Patients received 5 mg/kg of the drug intravenously every 12 h for 7 days.
The odds ratio was 2.3 (95% CI 1.4-3.9; p < 0.001) after adjustment for age.
Expression of EGFR was upregulated, whereas PTEN was downregulated in glioma cells.
Mice lacking Lepr developed obesity, hyperglycemia and insulin resistance.
Acetaminophen overdose leads to acute liver failure through NAPQI accumulation.
Statins lower LDL cholesterol by inhibiting HMG-CoA reductase (HMGCR).
Human, mouse, rat, zebrafish, yeast, Escherichia coli, HeLa, HEK293.
"""


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = _CORPUS.splitlines()
    # Repeat so that frequent biomedical words get merged into single tokens.
    tok.train_from_iterator(lines * 3, trainer=trainer)
    return tok


def make_tiny_tokenizer(vocab_size: int = 640):
    """A byte-level BPE `PreTrainedTokenizerFast` with ChatML tokens and template.

    Byte-level, so any Unicode text can be encoded; `<|im_end|>` is eos and pad,
    `<|im_start|>` is bos, `<|endoftext|>` is unk (never produced by byte-level BPE).
    """
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(vocab_size),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        padding_side="left",
        model_max_length=512,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def make_tiny_llama(
    path: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position_embeddings: int = 512,
    initializer_range: float = 0.2,
) -> Path:
    """Build and save a tiny random `LlamaForCausalLM` + tokenizer to `path`; return it.

    `initializer_range` is larger than usual so that the random model's next-token
    distributions are peaked: greedy decoding then has no near-ties, which keeps
    "batched equals one-by-one" comparisons meaningful.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_tiny_lora(
    model_dir: str | Path,
    path: str | Path,
    *,
    seed: int = 0,
    r: int = 4,
    target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
) -> Path:
    """Save a random LoRA adapter (safetensors) for the model in `model_dir` to `path`.

    Both LoRA matrices are randomly initialised (`init_lora_weights=False`), so, unlike a
    freshly initialised adapter, this one changes the model's outputs.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = Path(path)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=list(target_modules),
        lora_dropout=0.0,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(path, safe_serialization=True)
    return path


def train_tiny_answers(
    model_dir: str | Path,
    path: str | Path,
    pairs: list[tuple[object, str]],
    *,
    steps: int = 80,
    lr: float = 3e-3,
    seed: int = 0,
) -> Path:
    """Fine-tune (all weights) a tiny model to give `answer` for each `(ChatPrompt,
    answer)` pair, with the loss on the answer tokens only, and save it to `path`.

    Gives tests a real model whose answers are known, so the component's grounding,
    relation building and serialisation can be checked on non-empty predictions.
    The prompt is rendered exactly as at inference (`HFBackend.encode_prompt`).
    """
    import torch

    from .hf import HFBackend

    torch.manual_seed(seed)
    backend = HFBackend.from_pretrained(model_dir, device="cpu")
    model, tokenizer = backend.model, backend.tokenizer
    eos = backend.eos_token_ids[0]
    rows = []
    for prompt, answer in pairs:
        prompt_ids = backend.encode_prompt(prompt)
        answer_ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"]) + [eos]
        rows.append((prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [eos] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
