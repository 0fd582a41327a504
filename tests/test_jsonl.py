import pytest

from spacy_bioreama.evaluation.instruction_records import InstructionDataError, read_eval_records
from spacy_bioreama.training import TrainingDataError, read_instruction_jsonl
from spacy_bioreama.util.jsonl import iter_json_objects


class _Bad(ValueError):
    pass


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2}\n', encoding="utf8")
    assert list(iter_json_objects(path, _Bad)) == [(1, {"a": 1}), (4, {"a": 2})]


def test_undecodable_line_is_named_and_a_bom_is_dropped(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n{"a": "caf\xe9"}\n')  # BOM, CRLF, Latin-1
    with pytest.raises(_Bad, match=r"c\.jsonl:2: not valid UTF-8"):
        list(iter_json_objects(path, _Bad))
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n{"a": "caf\xc3\xa9"}\n')
    assert list(iter_json_objects(path, _Bad)) == [(1, {"a": 1}), (2, {"a": "caf\u00e9"})]


@pytest.mark.parametrize(
    ("line", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "a record must be a JSON object")],
)
def test_bad_lines_raise_the_callers_error_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "b.jsonl"
    good = '{"task": "re", "instruction": "Classify.", "input": "A and B.", "output": "None"}'
    path.write_text(good + "\n" + line + "\n", encoding="utf8")
    with pytest.raises(_Bad, match=rf"b\.jsonl:2: {message}"):
        list(iter_json_objects(path, _Bad))
    # the trainer and evaluate-instructions reject the same line with their own error
    with pytest.raises(TrainingDataError, match=rf"b\.jsonl:2: {message}"):
        read_instruction_jsonl(path)
    with pytest.raises(InstructionDataError, match=rf"b\.jsonl:2: {message}"):
        read_eval_records(path)
