"""Relation prompt variants (named, marked, sentence, typed), how an adapter records the one it
was trained on, and the calibration an adapter carries."""

import json
import math

import pytest
import spacy

from spacy_bioreama.pipeline.adapter_prompts import (
    AdapterPromptError,
    ner_prompt_for,
    relation_prompt_for,
    relation_rationale_for,
)
from spacy_bioreama.pipeline.relation_calibration import (
    CalibrationFileError,
    read_calibration,
    write_calibration,
)
from spacy_bioreama.tasks import relation as re_task
from tests.test_tasks import TEXT, gold, nlp  # noqa: F401  (fixtures)

LABELS = ["Association", "Bind"]


def _pair(doc, head_id, tail_id):
    concepts = {c.concept_id: c for c in re_task.collect_concepts(doc)}
    return concepts[head_id], concepts[tail_id]


def _unmarked(text):
    for mark in (*re_task.HEAD_MARKS, *re_task.TAIL_MARKS):
        text = text.replace(mark, "")
    return text


def test_marked_prompt_marks_every_mention_of_both_concepts_and_nothing_else(gold):  # noqa: F811
    head, tail = _pair(gold, "6528", "D007454")  # NIS (twice), Iodide (once)
    example = re_task.build_example(gold, head, tail, LABELS, prompt="marked")
    text = example.input.split("\n\n")[0].removeprefix("Text: ")
    assert text.count("[E1]NIS[/E1]") == 2
    assert text.count("[E2]Iodide[/E2]") == 1
    assert text.count("[E1]") == 2 and text.count("[E2]") == 1
    assert _unmarked(text) == TEXT
    assert example.prompt_format == "marked"
    assert example.to_record()["prompt_format"] == "marked"
    named = re_task.build_example(gold, head, tail, LABELS)
    assert "[E1]" not in named.input and named.to_record()["prompt_format"] == "named"


def test_sentence_prompt_quotes_only_the_co_mentioning_sentence(gold):  # noqa: F811
    head, tail = _pair(gold, "6528", "D007454")
    assert re_task.asks_pair(gold, head, tail, None, "sentence")
    example = re_task.build_example(gold, head, tail, LABELS, prompt="sentence")
    text = example.input.split("\n\n")[0].removeprefix("Text: ")
    assert _unmarked(text) == TEXT[TEXT.index("Iodide") :]
    assert "congenital" not in text
    # congenital hypothyroidism (sentence 1) and Iodide (sentence 2) share no sentence
    far_head, far_tail = _pair(gold, "D003409", "D007454")
    assert not re_task.asks_pair(gold, far_head, far_tail, None, "sentence")
    assert re_task.asks_pair(gold, far_head, far_tail, None, "marked")


def test_typed_prompt_is_the_sentence_prompt_with_the_types_in_the_marks(gold):  # noqa: F811
    head, tail = _pair(gold, "6528", "D007454")
    typed = re_task.build_example(gold, head, tail, LABELS, prompt="typed")
    sentence = re_task.build_example(gold, head, tail, LABELS, prompt="sentence")
    text = typed.input.split("\n\n")[0]
    assert text.count(f"[E1 {head.label}]NIS[/E1]") == 1
    assert text.count(f"[E2 {tail.label}]Iodide[/E2]") == 1
    for (opening, _), plain in zip(re_task.typed_marks(head, tail), ("[E1]", "[E2]"), strict=True):
        text = text.replace(opening, plain)
    assert text == sentence.input.split("\n\n")[0]  # the same sentences, the same places
    assert typed.input.split("\n\n")[1:] == sentence.input.split("\n\n")[1:]
    assert typed.to_record()["prompt_format"] == "typed"
    far_head, far_tail = _pair(gold, "D003409", "D007454")  # no sentence co-mentions them
    assert not re_task.asks_pair(gold, far_head, far_tail, None, "typed")


def test_overlapping_mentions_of_the_two_concepts_nest_their_marks(gold):  # noqa: F811
    # "hypothyroidism" (D007037) lies inside "congenital hypothyroidism" (D003409)
    head, tail = _pair(gold, "D003409", "D007037")
    example = re_task.build_example(gold, head, tail, LABELS, prompt="marked")
    assert "[E1]congenital [E2]hypothyroidism[/E1][/E2]" in example.input
    assert _unmarked(example.input.split("\n\n")[0].removeprefix("Text: ")) == TEXT


def test_unknown_relation_prompt_is_refused(gold):  # noqa: F811
    head, tail = _pair(gold, "6528", "D007454")
    with pytest.raises(ValueError, match="relation prompt must be one of"):
        re_task.build_example(gold, head, tail, LABELS, prompt="boxed")
    nlp_ = spacy.blank("en")
    with pytest.raises(ValueError, match="relation_prompt must be"):
        nlp_.add_pipe("bio_relation_llm", config={"relation_prompt": "boxed"})


def _adapter_with_formats(tmp_path, formats):
    meta = {"data": {"train": {"prompt_formats": {"re": formats}}}}
    (tmp_path / "training_meta.json").write_text(json.dumps(meta))
    return tmp_path


def test_auto_relation_prompt_follows_the_adapter(tmp_path):
    assert relation_prompt_for(None, "auto") == "named"
    assert relation_prompt_for(tmp_path, "auto") == "named"  # no training_meta.json
    adapter = _adapter_with_formats(tmp_path, ["sentence"])
    assert relation_prompt_for(adapter, "auto") == "sentence"
    assert relation_prompt_for(adapter, "marked") == "marked"  # an explicit setting wins
    nlp_ = spacy.blank("en")
    component = nlp_.add_pipe("bio_relation_llm", config={"adapter": str(adapter)})
    assert component.effective_relation_prompt == "sentence"
    _adapter_with_formats(tmp_path, ["named", "sentence"])
    with pytest.raises(AdapterPromptError, match="set relation_prompt"):
        relation_prompt_for(adapter, "auto")


def test_damaged_training_record_is_an_error_naming_the_file(tmp_path):
    """A training_meta.json that cannot be read, or has the wrong shape, would otherwise
    make `auto` fall back to the default prompts the adapter may never have seen."""
    meta = tmp_path / "training_meta.json"
    meta.write_text('{"data": {"train": ')  # cut off
    with pytest.raises(AdapterPromptError, match="training_meta.json: cannot read"):
        relation_prompt_for(tmp_path, "auto")
    meta.write_text("[]")
    with pytest.raises(AdapterPromptError, match="the file must be a JSON object"):
        relation_prompt_for(tmp_path, "auto")
    meta.write_text(json.dumps({"data": {"train": {"prompt_formats": {"re": "marked"}}}}))
    with pytest.raises(AdapterPromptError, match="data > train > prompt_formats > re must be"):
        relation_prompt_for(tmp_path, "auto")
    assert relation_prompt_for(tmp_path, "named") == "named"  # an explicit setting: no read


def test_labels_the_adapter_never_learned_are_warned_once(
    tiny_model_dir, tiny_adapter_dir, tmp_path
):
    import shutil
    import warnings

    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_adapter_dir, adapter)
    trained = {"ner": [["Gene", "Disease"]], "re": [["Bind", "Association"]]}
    meta = {"data": {"train": {"label_sets": trained}}}
    (adapter / "training_meta.json").write_text(json.dumps(meta))

    def warned(**labels) -> list[str]:
        nlp_ = spacy.blank("en")
        config = {"model": str(tiny_model_dir), "adapter": str(adapter), "batch_size": 1}
        nlp_.add_pipe("bio_relation_llm", config={**config, "relation_type_pairs": [], **labels})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            list(nlp_.pipe(["BRCA1 binds PALB2.", "Aspirin."]))  # two batches of one
        return [str(w.message) for w in caught if "never learned" in str(w.message)]

    assert warned(entity_labels=["Gene", "Disease"], relation_labels=["Bind", "Association"]) == []
    (message,) = warned(entity_labels=["Disease", "Gene"], relation_labels=["Bind", "Association"])
    assert "entity_labels ['Disease', 'Gene'] is not a label set" in message
    (message,) = warned(entity_labels=["Gene", "Disease"], relation_labels=["Bind"])
    assert "relation_labels ['Bind']" in message and "[['Bind', 'Association']]" in message
    # per-type NER prompts name one type each: trained types in any order or subset match
    meta["data"]["train"]["prompt_formats"] = {"ner": ["per_type"]}
    (adapter / "training_meta.json").write_text(json.dumps(meta))
    relations = {"relation_labels": ["Bind", "Association"]}
    assert warned(entity_labels=["Disease"], **relations) == []
    (message,) = warned(entity_labels=["Disease", "Chemical"], **relations)
    assert "entity_labels ['Disease', 'Chemical']" in message


def test_prepare_reads_only_the_records_of_the_tasks_asked(tmp_path):
    """An adapter trained on two NER variants needs ner_prompt set only where entities
    are asked: a relations-only pipeline (calibrate, the hybrid) prepares as it is."""
    meta = {"data": {"train": {"prompt_formats": {"ner": ["all_types", "per_type"]}}}}
    (tmp_path / "training_meta.json").write_text(json.dumps(meta))
    config = {"adapter": str(tmp_path)}
    relations = spacy.blank("en").add_pipe(
        "bio_relation_llm", config={**config, "tasks": ["relations"]}
    )
    assert relations.prepare(load_model=False) is relations
    both = spacy.blank("en").add_pipe("bio_relation_llm", config=config)
    with pytest.raises(AdapterPromptError, match="set ner_prompt"):
        both.prepare(load_model=False)


def test_auto_ner_prompt_follows_the_adapter(tmp_path):
    assert ner_prompt_for(None, "auto") == ner_prompt_for(tmp_path, "auto") == "all_types"
    meta = {"data": {"train": {"prompt_formats": {"re": ["sentence"], "ner": ["per_type"]}}}}
    (tmp_path / "training_meta.json").write_text(json.dumps(meta))
    assert ner_prompt_for(tmp_path, "auto") == "per_type"
    assert ner_prompt_for(tmp_path, "all_types") == "all_types"
    nlp_ = spacy.blank("en")
    component = nlp_.add_pipe("bio_relation_llm", config={"adapter": str(tmp_path)})
    assert component.effective_ner_prompt == "per_type"
    with pytest.raises(ValueError, match="ner_prompt must be"):
        nlp_.add_pipe("bio_relation_llm", name="other", config={"ner_prompt": "per_label"})


def test_rationale_example_scores_each_labels_rationale(gold):  # noqa: F811
    head, tail = _pair(gold, "6528", "D007454")
    rationale = re_task.Rationale()
    example = re_task.build_example(
        gold, head, tail, LABELS, prompt="sentence", rationale=rationale
    )
    direct = re_task.build_example(gold, head, tail, LABELS, prompt="sentence")
    assert example.input == direct.input  # the prompt is the same; only the answer differs
    assert example.choices == direct.choices == ("Association", "Bind", "None")
    assert direct.decode_choices is None and direct.answer_format is None
    window = (0, len(gold.text))
    # each option is the training target of its label, evidence quoted from the text
    assert example.decode_choices == tuple(
        re_task.render_rationale(gold, head, tail, label, window) for label in example.choices
    )
    for option, label in zip(example.decode_choices, example.choices, strict=True):
        assert option.startswith("Evidence: Iodide") and option.endswith(f"Answer: {label}")
        assert re_task.parse_answer(option, LABELS) == label
    record = example.to_record()
    assert record["answer_format"] == "rationale(sentences=2, negatives=quote)"
    assert record["choices"] == list(example.choices) and "answer_format" not in direct.to_record()
    # the options are recorded, so that record scoring asks what the component asks
    assert record["options"] == list(example.decode_choices) and "options" not in direct.to_record()
    assert re_task.Rationale.from_answer_format(record["answer_format"]) == rationale
    unquoted = re_task.Rationale(quote_negatives=False)
    options = re_task.build_example(gold, head, tail, LABELS, rationale=unquoted).decode_choices
    assert options[-1] == "Evidence: none\nAnswer: None"
    with pytest.raises(ValueError, match="unknown relation answer format"):
        re_task.Rationale.from_answer_format("rationale(sentences=2)")


def test_auto_relation_answer_follows_the_adapter(tmp_path):
    assert relation_rationale_for(None) is None
    assert relation_rationale_for(tmp_path) is None  # no training_meta.json
    rationale = re_task.Rationale(max_sentences=1)
    meta = {"data": {"train": {"answer_formats": {"re": [rationale.answer_format]}}}}
    (tmp_path / "training_meta.json").write_text(json.dumps(meta))
    assert relation_rationale_for(tmp_path) == rationale
    nlp_ = spacy.blank("en")
    component = nlp_.add_pipe("bio_relation_llm", config={"adapter": str(tmp_path)})
    assert component.effective_relation_rationale == rationale
    component.configure(relation_answer="direct")  # an explicit setting wins
    assert component.effective_relation_rationale is None
    meta["data"]["train"]["answer_formats"]["re"].append("rationale(sentences=2, negatives=none)")
    (tmp_path / "training_meta.json").write_text(json.dumps(meta))
    with pytest.raises(AdapterPromptError, match="answer formats"):
        relation_rationale_for(tmp_path)
    meta["data"]["train"]["answer_formats"]["re"] = ["evidence-last"]
    (tmp_path / "training_meta.json").write_text(json.dumps(meta))
    with pytest.raises(AdapterPromptError, match="unknown relation answer format"):
        relation_rationale_for(tmp_path)


def test_calibration_file_round_trip_and_errors(tmp_path):
    assert read_calibration(tmp_path).none_threshold == 0.5  # none saved: the fallback
    write_calibration(tmp_path, {"none_threshold": 0.8, "score_scaling": {"a": 2.0, "b": -1.0}})
    calibration = read_calibration(tmp_path)
    assert calibration.none_threshold == 0.8
    assert calibration.scale(0.5) == pytest.approx(1 / (1 + 2.718281828459045))
    assert calibration.scale(0.9) > calibration.scale(0.6)
    # the typing alone as input: P(label) 0.3 with P(None) 0.4 is P(label | related) 0.5
    scaling = {"a": 2.0, "b": -1.0, "input": "type_probability"}
    write_calibration(tmp_path, {"none_threshold": 0.8, "score_scaling": scaling})
    typing = read_calibration(tmp_path)
    assert typing.score_input == "type_probability"
    assert typing.scale(0.3, p_none=0.4) == pytest.approx(1 / (1 + math.e))
    assert typing.scale(0.3, p_none=0.1) < typing.scale(0.3, p_none=0.4)
    write_calibration(tmp_path, {"none_threshold": 0.8, "score_scaling": {"a": 2.0, "b": -1.0}})
    nlp_ = spacy.blank("en")
    component = nlp_.add_pipe("bio_relation_llm", config={"adapter": str(tmp_path)})
    assert component.effective_none_threshold == 0.8
    component.configure(none_threshold=0.3)
    assert component.effective_none_threshold == 0.3
    (tmp_path / "calibration.json").write_text('{"none_threshold": 1.5}')
    with pytest.raises(CalibrationFileError, match="none_threshold must be in"):
        read_calibration(tmp_path)
    (tmp_path / "calibration.json").write_text(
        '{"none_threshold": 0.5, "score_scaling": {"a": "x"}}'
    )
    with pytest.raises(
        CalibrationFileError, match="calibration.json: score_scaling.a must be a finite number"
    ):
        read_calibration(tmp_path)
    (tmp_path / "calibration.json").write_text(
        '{"none_threshold": 0.5, "score_scaling": {"input": "logits"}}'
    )
    with pytest.raises(CalibrationFileError, match="score_scaling.input must be one of"):
        read_calibration(tmp_path)

    (tmp_path / "calibration.json").write_text(
        '{"none_threshold": 0.5, "label_bias": {"Bind": "high"}}'
    )
    with pytest.raises(CalibrationFileError, match="label_bias.Bind must be a finite number"):
        read_calibration(tmp_path)


def test_label_bias_changes_typing_not_detection(tmp_path):
    from spacy_bioreama.tasks.relation import decide

    write_calibration(tmp_path, {"none_threshold": 0.5, "label_bias": {"Bind": 1.0}})
    calibration = read_calibration(tmp_path)
    assert calibration.label_bias == (("Bind", 1.0),)
    probabilities = {"Association": 0.4, "Bind": 0.2, "None": 0.4}
    # log 0.2 + 1 > log 0.4: Bind, with its own probability as the score
    assert decide("None", 0.4, probabilities, 0.5, calibration.type_label) == ("Bind", 0.2)
    assert decide("None", 0.4, probabilities, 0.5) == ("Association", 0.4)
    assert decide("None", 0.4, probabilities, 0.3, calibration.type_label) == ("None", 0.4)


def test_a_hybrid_pipeline_is_not_given_the_gold_entities():
    from spacy_bioreama.cli._util import other_entity_components

    nlp_ = spacy.blank("en")
    nlp_.add_pipe("ner")
    component = nlp_.add_pipe("bio_relation_llm", config={"tasks": ["relations"]})
    assert other_entity_components(nlp_, component) == ["ner"]
    alone = spacy.blank("en")
    assert other_entity_components(alone, alone.add_pipe("bio_relation_llm")) == []


def test_hybrid_config_assembles_with_spacy_ner_and_relations_only(tmp_path):
    from pathlib import Path

    ner = spacy.blank("en")
    ner.add_pipe("tok2vec")
    ner.add_pipe("ner").add_label("Gene")
    ner.initialize()
    ner.to_disk(tmp_path / "ner")
    config = spacy.util.load_config(
        Path(__file__).parents[1] / "configs" / "pipeline_hybrid.cfg",
        overrides={"paths.ner_model": str(tmp_path / "ner")},
        interpolate=True,
    )
    nlp_ = spacy.util.load_model_from_config(config, auto_fill=True)
    assert nlp_.pipe_names == ["tok2vec", "ner", "bio_relation_llm"]
    component = nlp_.get_pipe("bio_relation_llm")
    assert component.tasks == ["relations"] and component.none_threshold == "auto"
