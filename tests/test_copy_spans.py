"""Copy-constrained NER decoding (models/copy_spans.py): listed forms are spans of the text."""

import pytest

from spacy_bioreama.models.copy_spans import INSIDE, START, SpanCopier, word_starts
from spacy_bioreama.tasks import ner

TEXT = "NIS mutations cause congenital hypothyroidism (CH); iodide uptake was low."
LABELS = ["GeneOrGeneProduct", "DiseaseOrPhenotypicFeature", "ChemicalEntity"]


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


def _ids(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)


def test_word_starts_include_spans_after_punctuation():
    starts = word_starts("a (NIS) b-c")
    assert [("a (NIS) b-c")[i] for i in starts] == ["a", "(", "N", "b", "c"]


def test_the_copier_allows_only_continuations_of_the_text(tokenizer):
    copier = SpanCopier(tokenizer, ner.copy_spans([TEXT]), [TEXT], [tokenizer.eos_token_id])
    assert copier.allowed(0) is None  # the type name is free
    for token in _ids(tokenizer, "GeneOrGeneProduct:"):
        copier.advance(0, token)
    assert copier.state[0] == START
    first = copier.allowed(0)
    assert _ids(tokenizer, " None")[0] in first
    assert _ids(tokenizer, " NIS")[0] in first and _ids(tokenizer, " congenital")[0] in first
    assert _ids(tokenizer, " BRCA")[0] not in first  # not a word of the text
    for token in _ids(tokenizer, " NIS"):
        copier.advance(0, token)
    assert copier.state[0] == INSIDE
    inside = copier.allowed(0)
    assert _ids(tokenizer, " mutations")[0] in inside  # the text goes on
    assert _ids(tokenizer, " ...")[0] in inside and _ids(tokenizer, "\n")[0] in inside
    assert _ids(tokenizer, " gene")[0] not in inside
    copier.advance(0, _ids(tokenizer, " ...")[0])
    assert copier.state[0] == START  # the next form starts
    copier.advance(0, _ids(tokenizer, "\n")[0])
    assert copier.allowed(0) is None  # a new line: the next type name is free again


def test_choose_takes_the_best_allowed_token_and_counts_the_overrule(tokenizer):
    import torch

    from spacy_bioreama.models.greedy import GreedyAnswers

    copier = SpanCopier(tokenizer, ner.copy_spans([TEXT]), [TEXT], [tokenizer.eos_token_id])
    answers = GreedyAnswers(1, None, copier)
    vocab = len(tokenizer)
    colon, brca, nis = (_ids(tokenizer, t)[0] for t in (":", " BRCA", " N"))
    free = torch.zeros(1, vocab)
    free[0, colon] = 5.0
    token = answers.choose([0], free)
    assert int(token[0]) == colon  # outside a span the model's choice stands
    answers.add([0], token, torch.zeros(1), torch.zeros(1, dtype=torch.bool))
    scores = torch.zeros(1, vocab)
    scores[0, brca], scores[0, nis] = 9.0, 3.0  # the model prefers a form not in the text
    token = answers.choose([0], scores)
    assert int(token[0]) == nis
    answers.add([0], token, torch.zeros(1), torch.zeros(1, dtype=torch.bool))
    (generation,) = answers.generations([[1]], tokenizer.decode)
    assert generation.copy_redirected == 1 and generation.text.endswith(": N")


def test_a_tokenizer_without_a_one_token_separator_is_a_clear_error(tiny_model_dir):
    from transformers import AutoTokenizer

    tiny = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="ner_copy_constraint = false"):
        SpanCopier(tiny, ner.copy_spans([TEXT]), [TEXT], [tiny.eos_token_id])
