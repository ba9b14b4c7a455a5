"""utils.qa.data: SQuAD loading, bad-input errors, Phi-2 prompts, answer-only labels, context truncation."""

from __future__ import annotations

import warnings

import pytest

from utils.models import tiny_phi
from utils.qa import data as qa_data
from utils.report import REPO_ROOT

TRAIN = REPO_ROOT / "data/qa/train.json"
VALID = REPO_ROOT / "data/qa/validation.json"


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_phi.train_tokenizer(tiny_phi.qa_texts(TRAIN, VALID), vocab_size=512)


def test_course_qa_set_loads_with_answers_as_spans_of_their_context():
    train, valid = qa_data.load_qa_split(TRAIN), qa_data.load_qa_split(VALID)
    assert (len(train), len(valid)) == (224, 56)
    assert not {r["context"] for r in train} & {r["context"] for r in valid}, "validation contexts are held out"
    for row in train + valid:
        text, start = row["answers"]["text"][0], row["answers"]["answer_start"][0]
        assert row["context"][start:start + len(text)] == text


def test_missing_field_names_the_field_and_the_row():
    rows = [{"question": "q", "context": "c", "answers": ["a"]}, {"question": "q", "context": "c"}]
    with pytest.raises(ValueError, match=r"dataset: row 1 has no field 'answers'.*\['context', 'question'\]"):
        qa_data.check_rows(rows)


def test_column_mapping_and_answer_layouts():
    rows = qa_data.check_rows([{"query": "Who?", "passage": "Ann came.", "answer": "Ann"}],
                              columns={"question": "query", "context": "passage", "answers": "answer"})
    assert rows[0]["question"] == "Who?" and rows[0]["answers"]["text"] == ["Ann"]
    with pytest.raises(ValueError, match="unknown field"):
        qa_data.check_rows(rows, columns={"title": "x"})
    with pytest.raises(ValueError, match="no non-empty answer"):
        qa_data.check_rows([{"question": "q", "context": "c", "answers": {"text": []}}])


def test_empty_split_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text('{"version": "1.1", "data": []}')
    with pytest.raises(ValueError, match="is empty"):
        qa_data.load_qa_split(empty)


def test_guanaco_text_becomes_a_first_turn_qa_row():
    rows = qa_data.guanaco_to_rows([{"text": "### Human: Hi there?### Assistant: Hello!### Human: more"}])
    assert rows[0]["question"] == "Hi there?" and rows[0]["answers"]["text"] == ["Hello!"]
    assert qa_data.build_prompt(rows[0]["question"], "") == "Instruct: Hi there?\nOutput:"
    with pytest.raises(ValueError, match="no field 'text'"):
        qa_data.guanaco_to_rows([{"prompt": "x"}])


def test_prompt_is_phi2_instruct_output_format():
    prompt = qa_data.build_prompt("Who?", "Ann came.")
    assert prompt.startswith("Instruct: ") and prompt.endswith("\nOutput:")
    assert "Context: Ann came.\nQuestion: Who?" in prompt


def test_labels_cover_the_answer_and_eos_only(tokenizer):
    row = qa_data.load_qa_split(TRAIN)[0]
    enc = qa_data.encode_example(row, tokenizer, 256)
    assert not enc.context_truncated and len(enc.input_ids) == len(enc.labels)
    assert enc.labels[:enc.prompt_length] == [qa_data.IGNORE_INDEX] * enc.prompt_length
    answer = enc.labels[enc.prompt_length:]
    assert answer[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(answer[:-1]) == " " + row["answers"]["text"][0]
    assert tokenizer.decode(enc.input_ids[:enc.prompt_length]) == qa_data.build_prompt(row["question"], row["context"])


def test_long_prompts_lose_context_not_answer_and_are_counted(tokenizer):
    rows = qa_data.load_qa_split(TRAIN)[:10]
    full = [len(qa_data.encode_example(r, tokenizer, 10_000).input_ids) for r in rows]
    max_length = sorted(full)[5]  # about half of them are too long
    with pytest.warns(UserWarning, match=r"(\d+) of 10 prompts were longer than max_length"):
        features, counts = qa_data.encode_rows(rows, tokenizer, max_length)
    assert counts["context_truncated"] == sum(n > max_length for n in full) > 0
    assert counts["dropped_too_long"] == 0
    for row, feature in zip(rows, features, strict=True):
        assert len(feature["input_ids"]) <= max_length
        labelled = [t for t in feature["labels"] if t != qa_data.IGNORE_INDEX]
        assert tokenizer.decode(labelled[:-1]) == " " + row["answers"]["text"][0]  # answer intact
        # the kept context window still contains the answer
        assert row["answers"]["text"][0] in tokenizer.decode(feature["input_ids"][:-len(labelled)])


def test_prompt_that_cannot_fit_is_dropped_or_refused(tokenizer):
    rows = qa_data.load_qa_split(TRAIN)[:3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="every example was longer than max_length=8"):
            qa_data.encode_rows(rows, tokenizer, 8)
    with pytest.raises(ValueError, match="cannot fit in max_length=8 without cutting the answer"):
        qa_data.encode_example(rows[0], tokenizer, 8)
