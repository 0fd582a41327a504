"""Task modules: gold targets parse back to the gold annotations; answers are parsed
defensively; windows cover the text within budget."""

from collections import Counter

import pytest
import spacy

from spacy_bioreama.annotations.relations import Relation
from spacy_bioreama.annotations.spans import all_mentions, set_entities
from spacy_bioreama.tasks import ner
from spacy_bioreama.tasks import relation as re_task
from spacy_bioreama.tasks.windows import split_windows

LABELS = ["Gene", "Disease", "Chemical"]
TEXT = (
    "NIS mutations cause congenital hypothyroidism. Iodide partially corrected the "
    "hypothyroidism; NIS-mediated uptake was low."
)


@pytest.fixture
def nlp():
    return spacy.blank("en")


@pytest.fixture
def gold(nlp):
    doc = nlp(TEXT)
    spans = []
    for form, label, kb in [
        ("NIS", "Gene", "6528"),
        ("congenital hypothyroidism", "Disease", "D003409"),
        ("hypothyroidism", "Disease", "D007037"),
        ("Iodide", "Chemical", "D007454"),
    ]:
        start = 0
        while (i := TEXT.find(form, start)) != -1:
            span = doc.char_span(i, i + len(form), label=label, kb_id=kb)
            if span is not None:
                spans.append(span)
            start = i + 1
    set_entities(doc, spans)
    return doc


def test_ner_target_parses_and_grounds_to_gold(nlp, gold):
    target = ner.render_target(gold, LABELS, (0, len(TEXT)))
    assert target.splitlines()[0] == "Gene: NIS"
    assert target.splitlines()[1] == "Disease: congenital hypothyroidism ... hypothyroidism"
    parsed = ner.parse_answer(target, LABELS)
    assert parsed.unparseable_lines == 0 and parsed.unknown_labels == 0
    doc = nlp(TEXT)
    stats = Counter()
    _, spans = ner.place_mentions(doc, ner.ground(TEXT, parsed.mentions, (0, len(TEXT)), stats))
    set_entities(doc, spans)
    got = {(s.start_char, s.end_char, s.label_) for s in all_mentions(doc)}
    want = {(s.start_char, s.end_char, s.label_) for s in all_mentions(gold)}
    assert got == want
    assert stats["entities_ungroundable"] == 0


def test_ner_parser_counts_junk_and_unknown_types():
    answer = (
        "Gene: NIS ... TSH\nthis is chatter\nOrgan: thyroid\ndisease: None\n"
        "- Chemical: iodide\n2. Chemical: TSH"
    )
    parsed = ner.parse_answer(answer, LABELS)
    assert parsed.mentions == [
        ("Gene", "NIS"),
        ("Gene", "TSH"),
        ("Chemical", "iodide"),
        ("Chemical", "TSH"),
    ]
    assert parsed.unparseable_lines == 1
    assert parsed.unknown_labels == 1


def test_grounding_never_invents_and_respects_word_edges(nlp):
    text = "The NISX gene and NIS protein; nis again."
    stats = Counter()
    found = ner.ground(text, [("Gene", "NIS"), ("Gene", "zzqxv")], (0, len(text)), stats)
    assert found == [(18, 21, "Gene")]  # exact case first, never inside NISX
    assert stats["entities_ungroundable"] == 1
    found = ner.ground(text, [("Gene", "Nis")], (0, len(text)), stats)
    assert sorted(s for s, _, _ in found) == [18, 31]  # case-insensitive fallback


def test_grounding_splits_tokens_instead_of_widening(nlp):
    text = "AR)-dependent growth of c-kit(+) cells needs Na+/K+ pumps."
    doc = nlp(text)
    assert doc.char_span(0, 2) is None  # "AR" is inside a spaCy token
    parsed = [("Gene", "AR"), ("Gene", "c-kit"), ("Chemical", "Na+")]
    stats = Counter()
    doc, spans = ner.place_mentions(doc, ner.ground(text, parsed, (0, len(text)), stats))
    assert doc.text == text
    assert [(s.text, s.start_char) for s in spans] == [("AR", 0), ("c-kit", 24), ("Na+", 45)]


def test_quotes_are_kept_when_they_belong_to_the_mention():
    text = "Levels of cytidine 5' and of 'uridine' rose."
    stats = Counter()
    found = ner.ground(
        text, [("Chemical", "cytidine 5'"), ("Chemical", "'uridine'")], (0, 44), stats
    )
    assert [text[s:e] for s, e, _ in found] == ["cytidine 5'", "'uridine'"]
    found = ner.ground(text, [("Chemical", '"uridine"')], (0, 44), stats)
    assert [text[s:e] for s, e, _ in found] == ["uridine"]


def test_cut_off_answers_lose_their_last_mention():
    answer = "Gene: NIS ... sodium/iodide"
    parsed = ner.parse_answer(answer, LABELS)
    assert ner.drop_cut_mention(parsed, answer).mentions == [("Gene", "NIS")]
    # cut inside a later type line: the last mention was complete and stays
    answer = "Gene: NIS ... TSH\nDise"
    parsed = ner.parse_answer(answer, LABELS)
    assert ner.drop_cut_mention(parsed, answer).mentions == [("Gene", "NIS"), ("Gene", "TSH")]
    # cut inside a repeat of a form listed whole before: that mention stays
    answer = "Gene: NIS ... TSH ... TSH"
    parsed = ner.parse_answer(answer, LABELS)
    assert ner.drop_cut_mention(parsed, answer).mentions == [("Gene", "NIS"), ("Gene", "TSH")]


def test_forms_without_a_word_or_meaning_none_are_rejected_and_counted():
    # "TP53 ...." splits into "TP53" and "."; grounding "." would mark every full stop
    parsed = ner.parse_answer("Gene: BRCA1 ... TP53 ....\nDisease: cancer ... None", LABELS)
    assert parsed.mentions == [("Gene", "BRCA1"), ("Gene", "TP53"), ("Disease", "cancer")]
    assert parsed.rejected_forms == 2
    assert ner.parse_answer("Chemical: Na+ ... 5-FU", LABELS).rejected_forms == 0


def test_ner_prompt_contains_window_only(nlp, gold):
    example = ner.build_example(gold, LABELS, (47, 93))
    assert example.input == "Text: " + TEXT[47:93]
    assert example.output is None
    assert "Gene, Disease, Chemical" in example.instruction


def test_per_type_ner_prompts_share_the_text_and_ask_one_type_last(gold):
    examples = ner.window_examples(gold, LABELS, (47, 93), "per_type")
    assert len(examples) == len(LABELS)
    prefixes = set()
    for label, example in zip(LABELS, examples, strict=True):
        prompt = example.chat_prompt().user
        assert prompt.endswith(f"Text: {TEXT[47:93]}\n\nEntity type: {label}")
        prefixes.add(prompt[: -len(label)])
        assert example.to_record()["prompt_format"] == "per_type"
    assert len(prefixes) == 1  # identical up to the type: the backend prefills it once
    (whole,) = ner.window_examples(gold, LABELS, (47, 93), "all_types")
    assert whole.to_record()["prompt_format"] == "all_types"  # a mix would be noticed
    assert examples[0].meta["labels"] == [LABELS[0]] and whole.meta["labels"] == LABELS
    with pytest.raises(ValueError, match="asks for one type"):
        ner.build_example(gold, LABELS, prompt="per_type")
    with pytest.raises(ValueError, match="NER prompt must be one of"):
        ner.build_example(gold, LABELS, prompt="per_label")


def test_paraphrases_are_seeded(nlp, gold):
    import random

    def pick(seed: int) -> str:
        return ner.build_example(gold, LABELS, rng=random.Random(seed)).instruction

    # each seed repeats its paraphrase, and the seeds do not all pick the same one
    assert all(pick(seed) == pick(seed) for seed in range(30))
    assert len({pick(seed) for seed in range(30)}) > 1
    assert len(set(ner.INSTRUCTIONS)) >= 5 and len(set(re_task.INSTRUCTIONS)) >= 5


def test_relation_candidates_and_gold_labels(gold):
    gold._.relations = [Relation((0, 1), (3, 5), "6528", "D003409", "Association")]
    concepts = re_task.collect_concepts(gold)
    assert [c.concept_id for c in concepts] == ["6528", "D003409", "D007037", "D007454"]
    allowed = re_task.parse_type_pairs(["Gene|Disease"])
    pairs = re_task.candidate_pairs(concepts, allowed)
    assert [(h.concept_id, t.concept_id) for h, t in pairs] == [
        ("6528", "D003409"),
        ("6528", "D007037"),
    ]
    assert re_task.gold_label(gold, *pairs[0]) == "Association"
    assert re_task.gold_label(gold, *pairs[1]) == re_task.NO_RELATION
    example = re_task.build_example(gold, *pairs[0], ["Association", "Bind"])
    assert example.choices == ("Association", "Bind", "None")
    assert "Entity 1: NIS (Gene)" in example.input


def test_relation_answer_parsing():
    labels = ["Association", "Bind"]
    assert re_task.parse_answer("association", labels) == "Association"
    assert re_task.parse_answer("Evidence: x\nAnswer: Bind.", labels) == "Bind"
    assert re_task.parse_answer("None", labels) == re_task.NO_RELATION
    assert re_task.parse_answer("maybe", labels) is None
    assert re_task.parse_answer("", labels) is None
    with pytest.raises(ValueError, match="TypeA"):
        re_task.parse_type_pairs(["Gene"])


def test_windows_cover_text_within_budget(nlp):
    text = " ".join(f"Sentence number {i} mentions BRCA{i} and cancer." for i in range(200))
    doc = nlp(text)

    def count(t):
        return len(t.split())

    windows = split_windows(doc, count, 40)
    assert len(windows) > 1
    assert all(count(text[a:b]) <= 40 for a, b in windows)
    covered = "".join(text[a:b] for a, b in windows).replace(" ", "")
    assert covered == text.replace(" ", "")
    # a single over-long "sentence" is cut at token boundaries
    long_doc = nlp("word " * 300)
    windows = split_windows(long_doc, count, 50)
    assert all(count(long_doc.text[a:b]) <= 50 for a, b in windows)
    assert sum(count(long_doc.text[a:b]) for a, b in windows) == 300
    assert split_windows(nlp("   "), count, 50) == []


def test_gold_label_reads_composite_ids_and_negatives(nlp):
    from spacy_bioreama.annotations.spans import set_entities as place

    doc = nlp("Lithium caused renal failure and diabetes insipidus.")
    place(
        doc,
        [
            doc.char_span(0, 7, label="Chemical", kb_id="D008094"),
            doc.char_span(15, 28, label="Disease", kb_id="D051437|D003919"),
            doc.char_span(33, 51, label="Disease", kb_id="D003919"),
        ],
    )
    doc._.relations = [Relation((0, 1), (2, 4), "D008094", "D051437", "CID")]
    chem, composite, _ = re_task.collect_concepts(doc)
    assert re_task.gold_label(doc, chem, composite) == "CID"
    doc._.relations = [Relation((0, 1), (2, 4), "D008094", "D051437|D003919", "false")]
    assert re_task.gold_label(doc, chem, composite) == re_task.NO_RELATION


def test_representative_mention_prefers_doc_ents(nlp):
    doc = nlp("breast cancer cells express BRCA1")
    set_entities(
        doc,
        [
            doc.char_span(0, 13, label="Disease", kb_id="D1"),
            doc.char_span(7, 13, label="Disease", kb_id="D2"),  # nested: overflow
            doc.char_span(28, 33, label="Gene", kb_id="G1"),
        ],
    )
    concepts = {c.concept_id: c for c in re_task.collect_concepts(doc)}
    assert concepts["D1"].mention == (0, 2) and concepts["D2"].mention == (1, 2)
    # one mention carrying two ids is never paired with itself
    doc2 = nlp("BRCA1 and cancer")
    set_entities(doc2, [doc2.char_span(0, 5, label="Gene", kb_id="G1,G2")])
    assert re_task.candidate_pairs(re_task.collect_concepts(doc2), set()) == []


def test_ner_line_guard_fires_on_a_repeated_form_only():
    assert ner.line_repeats_a_form("GeneOrGeneProduct: NBS1 ... NBS1 ...")
    assert ner.line_repeats_a_form("Disease: thyroid ... goitre ... thyroid ...")
    # not yet at a separator, distinct forms, or the first mention
    assert not ner.line_repeats_a_form("GeneOrGeneProduct: NBS1 ... NBS1")
    assert not ner.line_repeats_a_form("Disease: thyroid ... thyroid gland ...")
    assert not ner.line_repeats_a_form("GeneOrGeneProduct: NBS1 ...")
    assert not ner.line_repeats_a_form("")
    # what the guard cuts is still parsed: each form once
    parsed = ner.parse_answer("Gene: NBS1 ... NBS1 ...\nDisease: None", ["Gene", "Disease"])
    assert parsed.mentions == [("Gene", "NBS1")] and parsed.unparseable_lines == 0
