"""utils.qa.data: SQuAD loading, bad-input errors, Phi-2 prompts, answer-only labels, context truncation."""

from __future__ import annotations

import copy
import importlib.util
import warnings

import pytest

from utils.evaluation.squad import normalize_answer
from utils.models import tiny_phi
from utils.paths import REPO_ROOT
from utils.qa import data as qa_data

TRAIN = REPO_ROOT / "data/qa/train.json"
VALID = REPO_ROOT / "data/qa/validation.json"
MAKE_DATASET = REPO_ROOT / "data/qa/make_dataset.py"


@pytest.fixture(scope="module")
def make_dataset():
    """data/qa/make_dataset.py, imported by path (it is a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("qa_make_dataset", MAKE_DATASET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_phi.train_tokenizer(qa_data.qa_texts(TRAIN, VALID), vocab_size=512)


def test_course_qa_set_loads_with_answers_as_spans_of_their_context():
    train, valid = qa_data.load_qa_split(TRAIN), qa_data.load_qa_split(VALID)
    assert (len(train), len(valid)) == (224, 68)
    assert (len({r["context"] for r in train}), len({r["context"] for r in valid})) == (32, 8)
    assert not {r["context"] for r in train} & {r["context"] for r in valid}, "validation contexts are held out"
    for row in train + valid:
        text, start = row["answers"]["text"][0], row["answers"]["answer_start"][0]
        assert row["context"][start:start + len(text)] == text


def test_no_validation_answer_is_a_training_answer():
    """The course's validation split scores finding an answer, never repeating one training taught."""
    train, valid = qa_data.load_qa_split(TRAIN), qa_data.load_qa_split(VALID)
    qa_data.check_no_overlap(train, valid, "train.json", "validation.json", same_answer=True)
    taught = {normalize_answer(t) for r in train for t in r["answers"]["text"]}
    asked = {normalize_answer(t) for r in valid for t in r["answers"]["text"]}
    shared = taught & asked
    assert not shared, f"{len(shared)} validation answers are training answers too: {sorted(shared)}"


def test_validation_asks_question_types_training_never_asks(make_dataset):
    train, valid = qa_data.load_qa_split(TRAIN), qa_data.load_qa_split(VALID)
    taught = {make_dataset.template_of(r["id"]) for r in train}
    asked = {make_dataset.template_of(r["id"]) for r in valid}
    only = asked - taught
    assert only, f"every validation template is a training template too: {sorted(asked)}"
    assert only == {"town_population", "town_flag", "inventor_student"}, sorted(only)
    assert taught <= asked, f"training templates never asked in validation: {sorted(taught - asked)}"
    assert make_dataset.template_of("inventor_edda_varn_partner") == "inventor_partner"
    assert make_dataset.template_of("town_juniper_cross_founder") == "town_founder"


def test_committed_files_are_what_make_dataset_builds(make_dataset):
    """Re-running the script rewrites both files byte for byte (and build() asserts the held-out properties)."""
    for path, split in zip((TRAIN, VALID), make_dataset.build(), strict=True):
        assert path.read_text(encoding="utf-8") == make_dataset.dumps(split), \
            f"{path.name} is not what data/qa/make_dataset.py writes: run it again"


def test_make_dataset_refuses_a_split_that_would_leak(make_dataset, monkeypatch):
    """build() stops on word lists that would put one word in both splits, and its check of the result
    refuses a validation answer that training teaches and validation without a question type of its own."""
    rivers = make_dataset.RIVERS
    monkeypatch.setattr(make_dataset, "RIVERS", rivers[:-1] + [rivers[0]])  # a training river in validation's part
    with pytest.raises(AssertionError, match=r"a word is in two lists.*'oss'"):
        make_dataset.build()
    monkeypatch.undo()
    train, valid = make_dataset.build()
    leaking = copy.deepcopy(valid)
    leaking["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["text"] = \
        train["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["text"]
    with pytest.raises(AssertionError, match="1 validation answers are training answers too"):
        make_dataset.check_held_out(train, leaking)
    no_new_type = copy.deepcopy(valid)
    for article in no_new_type["data"]:
        qas = article["paragraphs"][0]["qas"]
        qas[:] = [q for q in qas if make_dataset.template_of(q["id"]) not in make_dataset.VALIDATION_ONLY]
    with pytest.raises(AssertionError, match=r"validation-only templates are \[\]"):
        make_dataset.check_held_out(train, no_new_type)


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
