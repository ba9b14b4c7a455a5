"""Bad data files and settings (issue 16): every loader refuses them up front with one InputError that names
the file, the row/line or field, and the fix, never a traceback from inside ``datasets``, pandas or ``json``.

Every case writes a small hand-made file under ``tmp_path``; nothing loads a model.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import datasets
import pytest

from utils import classification as clf
from utils.errors import InputError
from utils.paths import REPO_ROOT
from utils.qa import data as qa

OURS = (REPO_ROOT / "utils").resolve()


def refused(func, *args, match: str, **kwargs) -> InputError:
    """Call ``func``; it must raise InputError matching ``match``, in the input_error form, from our code,
    with no library exception chained to it."""
    with pytest.raises(InputError, match=match) as info:
        func(*args, **kwargs)
    err = info.value
    assert type(err) is InputError and ". Fix: " in str(err), str(err)
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__), repr(err.__context__)
    raised_in = Path(str(info.traceback[-1].path)).resolve()
    assert raised_in.is_relative_to(OURS), f"raised inside {raised_in}"
    return err


# -------------------------------------------------------------------------------------------- QA
def squad(*qas: dict, context: str = "Ann came home at noon.") -> dict:
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": list(qas)}]}]}


def qa_item(qid: str = "q0", question: str = "Who came home?", text: str = "Ann", start: int = 0) -> dict:
    return {"id": qid, "question": question, "answers": [{"text": text, "answer_start": start}]}


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_a_good_squad_file_still_loads(tmp_path):
    rows = qa.load_squad_json(write_json(tmp_path / "ok.json", squad(qa_item(), qa_item("q1", "When?", "noon", 17))))
    assert [r["answers"]["answer_start"] for r in rows] == [[0], [17]]


def drop(obj: dict, path: tuple, key: str) -> dict:
    obj = copy.deepcopy(obj)
    node = obj
    for step in path:
        node = node[step]
    del node[key]
    return obj


QA = r"data\[0\], paragraphs\[0\], qas\[0\]"


@pytest.mark.parametrize("path,key,match", [
    ((), "data", r"is not SQuAD v1.1 JSON: the top level has the keys \['version'\], not a 'data' key"),
    (("data", 0), "paragraphs", r"data\[0\] has no 'paragraphs' field \(its fields are \['title'\]\)"),
    (("data", 0, "paragraphs", 0), "context", r"data\[0\], paragraphs\[0\] has no 'context' field"),
    (("data", 0, "paragraphs", 0), "qas", r"data\[0\], paragraphs\[0\] has no 'qas' field"),
    (("data", 0, "paragraphs", 0, "qas", 0), "id", QA + r" has no 'id' field"),
    (("data", 0, "paragraphs", 0, "qas", 0), "question", QA + r" \(id 'q0'\) has no 'question' field"),
    (("data", 0, "paragraphs", 0, "qas", 0), "answers", QA + r" \(id 'q0'\) has no 'answers' field"),
    (("data", 0, "paragraphs", 0, "qas", 0, "answers", 0), "text", QA + r" \(id 'q0'\), answers\[0\] has no 'text'"),
    (("data", 0, "paragraphs", 0, "qas", 0, "answers", 0), "answer_start",
     QA + r" \(id 'q0'\), answers\[0\] has no 'answer_start' field"),
])
def test_squad_field_missing_at_each_level_is_named_with_its_position(tmp_path, path, key, match):
    file = write_json(tmp_path / "train.json", drop(squad(qa_item()), path, key))
    refused(qa.load_squad_json, file, match=r"train\.json: " + match)


def test_answer_not_at_its_answer_start_is_refused_not_silently_accepted(tmp_path):
    file = write_json(tmp_path / "train.json", squad(qa_item("q7", text="home", start=4)))
    refused(qa.load_squad_json, file, match=r"train\.json: .*\(id 'q7'\): the answer 'home' is not at answer_start=4 of "
                                             r"its context, which holds 'came' there\. Fix: recompute it as "
                                             r"context\.find\(answer_text\) \(= 9 here\)")
    missing = write_json(tmp_path / "other.json", squad(qa_item("q8", text="Bob", start=0)))
    refused(qa.load_squad_json, missing, match=r"'Bob' does not occur in the context at all")
    # the same check for rows from a JSON Lines file or a Hub dataset
    rows = [{"id": "a", "question": "Who?", "context": "Ann came.", "answers": {"text": ["Ann"], "answer_start": [3]}}]
    refused(qa.check_rows, rows, match=r"row 0 \(id 'a'\): the answer 'Ann' is not at answer_start=3")


@pytest.mark.parametrize("start,match", [
    (99, r"answer_start=99 is outside its context \(the answer 'Ann' has 3 characters, the context 22\)"),
    (-1, r"answer_start=-1 is outside its context"),
    ("0", r"'answer_start' is a string \('0'\); expected the answer's character offset"),
    (0.0, r"'answer_start' is a number \(0\.0\); expected the answer's character offset"),
    (True, r"'answer_start' is true/false \(True\)"),
])
def test_answer_start_out_of_range_negative_or_not_an_int(tmp_path, start, match):
    refused(qa.load_squad_json, write_json(tmp_path / "train.json", squad(qa_item(start=start))), match=match)


def test_check_rows_answer_start_that_is_not_a_whole_number(tmp_path):
    rows = [{"question": "Who?", "context": "Ann came.", "answers": {"text": ["Ann"], "answer_start": ["0"]}}]
    refused(qa.check_rows, rows, match=r"row 0: answer_start is '0', not a whole number.*Fix: recompute it as "
                                       r"context\.find\(answer_text\) \(= 0 here\)")


def test_empty_non_json_and_latin1_files(tmp_path):
    (tmp_path / "empty.json").write_bytes(b"")
    refused(qa.load_squad_json, tmp_path / "empty.json", match=r"empty\.json: the file is empty \(0 bytes\)")
    (tmp_path / "blank.json").write_text("  \n\n")
    refused(qa.load_squad_json, tmp_path / "blank.json", match=r"the file is empty \(only whitespace\)")
    (tmp_path / "broken.json").write_text('{"data": [\n  {"title": "t",}\n]}')
    refused(qa.load_squad_json, tmp_path / "broken.json",
            match=r"broken\.json: line 2, column \d+ is not valid JSON \(Expecting property name enclosed in double "
                  r"quotes\).*Fix: correct the JSON there")
    (tmp_path / "latin1.json").write_bytes(json.dumps(squad(qa_item()), ensure_ascii=False).replace("Ann", "Anné").encode("latin-1"))
    refused(qa.load_squad_json, tmp_path / "latin1.json",
            match=r"latin1\.json: line 1 is not UTF-8 text: byte 0xe9 .*Latin-1.*Fix: re-save it as UTF-8")
    (tmp_path / "utf16.json").write_bytes(json.dumps(squad(qa_item())).encode("utf-16"))
    refused(qa.load_squad_json, tmp_path / "utf16.json", match=r"is UTF-16 text or a binary file.*Fix: re-save it as UTF-8")
    (tmp_path / "lines.json").write_text('{"question": "q"}\n{"question": "r"}\n')
    refused(qa.load_squad_json, tmp_path / "lines.json", match=r"line 2, column 1 is not valid JSON \(Extra data\).*"
                                                                r"Fix: if it holds one JSON object per line, it is JSON Lines: name it \.jsonl")


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(squad(qa_item())).encode())
    assert len(qa.load_squad_json(tmp_path / "bom.json")) == 1


def test_squad_v2_unanswerable_and_empty_strings(tmp_path):
    impossible = {"id": "q0", "question": "Who?", "answers": [], "is_impossible": True}
    refused(qa.load_squad_json, write_json(tmp_path / "v2.json", squad(impossible)),
            match=r"qas\[0\] \(id 'q0'\) is a SQuAD v2 unanswerable question.*Fix: drop the questions with is_impossible")
    refused(qa.load_squad_json, write_json(tmp_path / "q.json", squad(qa_item(question="  "))),
            match=r"\(id 'q0'\): the question is empty")
    refused(qa.load_squad_json, write_json(tmp_path / "a.json", squad(qa_item(text=""))),
            match=r"\(id 'q0'\): 'answers' holds no non-empty answer text")
    refused(qa.load_squad_json, write_json(tmp_path / "c.json", squad(qa_item(), context=" ")),
            match=r"data\[0\], paragraphs\[0\]: the context is empty")
    no_answers = {"id": "q0", "question": "Who?", "answers": []}
    refused(qa.load_squad_json, write_json(tmp_path / "n.json", squad(no_answers)),
            match=r"'answers' holds no non-empty answer text \(the list is empty\)")
    refused(qa.load_squad_json, write_json(tmp_path / "none.json", {"version": "1.1", "data": []}),
            match=r"none\.json: is empty: its 'data' list holds no questions")
    refused(qa.check_rows, [{"question": "", "context": "c", "answers": "c"}], match=r"row 0: the question \('question'\) is empty")
    refused(qa.check_rows, [{"question": 7, "context": "c", "answers": "c"}],
            match=r"row 0: the question \('question'\) is a number \(7\), not text")


def test_duplicate_question_ids_are_an_error(tmp_path):
    file = write_json(tmp_path / "train.json", squad(qa_item("q0"), qa_item("q0", "When?", "noon", 17)))
    refused(qa.load_squad_json, file, match=r"qas\[1\] \(id 'q0'\): the question id 'q0' is used twice \(first at "
                                            r"data\[0\], paragraphs\[0\], qas\[0\]\)")
    rows = [{"id": 1, "question": "q", "context": "", "answers": "a"}, {"id": 1, "question": "r", "context": "", "answers": "b"}]
    refused(qa.check_rows, rows, match=r"row 1 \(id '1'\): the id '1' is used twice")


def test_json_lines_rows_are_named_by_their_line(tmp_path):
    """(A broken line, a non-object and an empty file through load_qa_split: tests/test_files.py.) A row's problem
    names its line, blank lines counted."""
    good = json.dumps({"question": "Who?", "context": "Ann came.", "answers": "Ann"})
    (tmp_path / "d.jsonl").write_text(f"{good}\n\n" + json.dumps({"question": "Who?", "context": "Ann came."}) + "\n")
    refused(qa.load_qa_split, tmp_path / "d.jsonl", match=r"d\.jsonl: line 3 has no field 'answers'")


def test_missing_path_and_folder_instead_of_a_file(tmp_path):
    write_json(tmp_path / "train.json", squad(qa_item()))
    refused(qa.load_qa_split, tmp_path / "trian.json",
            match=r"trian\.json: no such SQuAD JSON file \(did you mean '.*train\.json'\?\)\. Fix: check the path")
    refused(qa.load_qa_split, tmp_path / "nowhere" / "train.json", match=r"the folder .*nowhere does not exist either")
    (tmp_path / "dir.json").mkdir()
    refused(qa.load_squad_json, tmp_path / "dir.json", match=r"dir\.json: is a folder, not a SQuAD JSON file")
    (tmp_path / "notes.txt").write_text("hello")
    refused(qa.load_qa_split, tmp_path / "notes.txt", match=r"notes\.txt: is a \.txt file; expected a SQuAD \.json or a "
                                                           r"\.jsonl file")
    (tmp_path / "book.json").write_bytes(b"PK\x03\x04rest-of-a-zip")
    refused(qa.load_squad_json, tmp_path / "book.json", match=r"is a zip archive or an Excel workbook")


@pytest.mark.parametrize("kwargs,match", [
    ({"limit": 0}, r"limit=0: expected a positive whole number of rows"),
    ({"limit": -5}, r"limit=-5: expected a positive whole number"),
    ({"limit": 2.5}, r"limit=2\.5: expected a positive whole number"),
    ({"limit": "10"}, r"limit='10': expected a positive whole number"),
    ({"seed": -1}, r"seed=-1: expected a whole number >= 0"),
    ({"text_format": "alpaca"}, r"text_format='alpaca': expected one of"),
])
def test_bad_limit_seed_and_format_are_refused_before_loading(kwargs, match):
    refused(qa.load_qa_split, "does/not/matter.json", match=match, **kwargs)


def test_a_split_that_does_not_exist(tmp_path):
    folder = tmp_path / "myqa"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"question": "Who?", "context": "Ann came.", "answers": "Ann"}) + "\n")
    assert len(qa.load_qa_split(str(folder), "train")) == 1
    refused(qa.load_qa_split, str(folder), "validaton", match=r"myqa: has no split 'validaton'; its splits are "
                                                                r"\['train'\]\. Fix: pick one of those")


def test_a_qa_hub_dataset_that_does_not_exist(monkeypatch):
    import datasets

    def not_found(*args, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError("Dataset 'nobody/nothing' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", not_found)
    refused(qa.load_qa_split, "nobody/nothing", match=r"nobody/nothing: is neither a local .* nor a Hub dataset id "
                                                       r"that exists")


def test_guanaco_rows_without_text_or_turns():
    refused(qa.guanaco_to_rows, [{"prompt": "x"}], match=r"guanaco: row 0 has no field 'text'; its fields are \['prompt'\]")
    refused(qa.guanaco_to_rows, [{"text": "just words"}], match=r"row 0: no '### Human: ... ### Assistant: ...' turn")
    refused(qa.guanaco_to_rows, [{"text": "### Human: hi### Assistant:  "}], match=r"row 0: its first turn has an "
                                                                               r"empty reply")
    refused(qa.guanaco_to_rows, [], match=r"guanaco: is empty")


def test_check_no_overlap_refuses_a_leaking_split():
    train = [{"id": "t1", "question": "Who came?", "context": "Ann came.", "answers": {"text": ["Ann"]}},
             {"id": "t2", "question": "When?", "context": "Bob left at 9.", "answers": {"text": ["9"]}}]
    held_out = [{"id": "v1", "question": "Who came?  ", "context": "Ann  came.", "answers": {"text": ["Ann"]}},
                {"id": "v2", "question": "Where?", "context": "Cy sat in Rome.", "answers": {"text": ["Rome"]}}]
    refused(qa.check_no_overlap, train, held_out, "train.json", "validation.json",
            match=r"validation\.json: 1 of its 2 rows share their question and context with train\.json \(a leaking "
                  r"split.*id 'v1': 'Who came\?  '")
    qa.check_no_overlap(train, held_out[1:])  # no overlap: nothing raised
    same_passage = [{"id": "v3", "question": "Who?", "context": "Bob left at 9.", "answers": {"text": ["Bob"]}}]
    qa.check_no_overlap(train, same_passage)
    refused(qa.check_no_overlap, train, same_passage, same_context=True, match=r"share their context \(passage\)")
    # an answer training teaches, up to SQuAD's normalisation ("The Ann!" is "ann"), in another passage
    same_answer = [{"id": "v4", "question": "Who sang?", "context": "The Ann! sang.", "answers": {"text": ["The Ann!"]}},
                   {"id": "v5", "question": "Where?", "context": "Cy sat in Rome.", "answers": {"text": ["Rome"]}}]
    qa.check_no_overlap(train, same_answer, same_context=True)  # another question and passage: not refused
    refused(qa.check_no_overlap, train, same_answer, "train.json", "validation.json", same_answer=True,
            match=r"validation\.json: 1 of its 2 rows share their answer \(a reference answer, normalised as SQuAD "
                  r"scores it, is a training answer\) with train\.json.*id 'v4': 'Who sang\?'")
    qa.check_no_overlap(train, same_answer[1:], same_answer=True)


def test_without_seen_answers_keeps_the_rows_training_never_answered():
    train = [{"question": "Who came?", "context": "Ann came.", "answers": {"text": ["Ann"]}},
             {"question": "When?", "context": "Bob left at 9.", "answers": {"text": ["9", "nine"]}}]
    held_out = [{"id": "v1", "question": "Who sang?", "context": "The Ann! sang.", "answers": {"text": ["The Ann!"]}},
                {"id": "v2", "question": "Where?", "context": "Cy sat in Rome.", "answers": {"text": ["Rome"]}},
                {"id": "v3", "question": "When?", "context": "Cy sat at nine.", "answers": {"text": ["at nine", "Nine"]}}]
    kept, dropped = qa.without_seen_answers(train, held_out)
    assert ([r["id"] for r in kept], dropped) == (["v2"], 2)  # v3: one of its answers, "Nine", is taught
    assert kept == [held_out[1]]
    assert qa.without_seen_answers(train, held_out[1:2]) == ([held_out[1]], 0)
    assert qa.without_seen_answers([], held_out) == ([dict(r) for r in held_out], 0)


def test_course_splits_do_not_overlap():
    """The course's own splits share no question, no passage and no answer (data/qa/README.md)."""
    train, valid = (qa.load_qa_split(REPO_ROOT / f"data/qa/{s}.json") for s in ("train", "validation"))
    qa.check_no_overlap(train, valid, same_context=True)
    qa.check_no_overlap(train, valid, "train.json", "validation.json", same_answer=True)
    assert qa.without_seen_answers(train, valid)[1] == 0


# -------------------------------------------------------------------------------- classification
def csv_file(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def rows_csv(n_per_class: int = 4, classes: str = "ab") -> str:
    return "text,label\n" + "".join(f"text {c} {i},{c}\n" for i in range(n_per_class) for c in classes)


def test_a_good_csv_still_loads(tmp_path):
    ds = clf.load_labelled(csv_file(tmp_path / "ok.csv", rows_csv()), test_size=0.5)
    assert (len(ds["train"]), len(ds["test"])) == (4, 4) and clf.label_names(ds) == ["a", "b"]


def test_empty_and_header_only_csv(tmp_path):
    refused(clf.load_labelled, csv_file(tmp_path / "empty.csv", ""), match=r"empty\.csv: the file is empty \(0 bytes\)")
    refused(clf.load_labelled, csv_file(tmp_path / "header.csv", "text,label\n"),
            match=r"header\.csv: has a header \(text, label\) but no data rows\. Fix: add one row per example")
    refused(clf.load_labelled, csv_file(tmp_path / "blank.tsv", "\n\n"), match=r"blank\.tsv: the file is empty \(only "
                                                                               r"whitespace\)")


def test_missing_columns_and_a_wrong_delimiter(tmp_path):
    refused(clf.load_labelled, csv_file(tmp_path / "d.csv", "sentence,label\nhi,a\nyo,b\n"),
            match=r"d\.csv: text_column='text' is not a column; columns: \['sentence', 'label'\]\. Fix: pass text_column=")
    refused(clf.load_labelled, csv_file(tmp_path / "semi.csv", "text;label\nhello, world;a\nbye;b\n"),
            match=r"semi\.csv: the header is one column \('text;label'\): the file seems separated by ';', not by ','")
    refused(clf.load_labelled, csv_file(tmp_path / "commas.tsv", "text,label\nhello,a\nbye,b\n"),
            match=r"commas\.tsv: the header is one column \('text,label'\): the file seems separated by ',', not by tab."
                  r"*Fix: name a tab-separated file \.tsv")
    refused(clf.load_labelled, csv_file(tmp_path / "same.csv", rows_csv()), text_column="label",
            match=r"text_column=label_column='label': the text and the label must be two columns")


def test_unquoted_comma_and_repeated_header(tmp_path):
    refused(clf.load_labelled, csv_file(tmp_path / "d.csv", "text,label\nfine,a\nhello, world,b\n"),
            match=r"d\.csv: line 3 has 3 fields but the header has 2 \(text, label\); a text with an unquoted ','.*"
                  r"Fix: put quotes around a text")
    refused(clf.load_labelled, csv_file(tmp_path / "r.csv", "text,label,label\nx,a,b\n"),
            match=r"r\.csv: the header names the column\(s\) \['label'\] more than once")


def test_empty_text_or_label_names_the_line_in_the_file(tmp_path):
    # line numbers are the file's (the header is line 1), not an index after blank lines are skipped
    body = 'text,label\nfine,a\n\n"two\nlines",b\n,b\nok,a\n'
    refused(clf.load_labelled, csv_file(tmp_path / "t.csv", body),
            match=r"t\.csv: line 6 has an empty text\. Fix: fill it in or drop the row")
    body = "text,label\nfine,a\nalso fine,\nok,b\n"
    refused(clf.load_labelled, csv_file(tmp_path / "l.csv", body), match=r"l\.csv: line 3 has an empty label")
    jsonl = csv_file(tmp_path / "n.jsonl", '{"text": "fine", "label": "a"}\n\n{"text": 42, "label": "b"}\n')
    refused(clf.load_labelled, jsonl, match=r"n\.jsonl: line 3 holds a number \(42\), not a string")
    records = csv_file(tmp_path / "r.json", json.dumps([{"text": "x", "label": "a"}, {"text": None, "label": "b"}]))
    refused(clf.load_labelled, records, match=r"r\.json: record 1 has an empty text")


def test_files_that_are_not_utf8_or_not_text(tmp_path):
    (tmp_path / "latin.csv").write_bytes("text,label\nfine,a\ncafé crème,b\n".encode("latin-1"))
    refused(clf.load_labelled, tmp_path / "latin.csv", match=r"latin\.csv: line 3 is not UTF-8 text: byte 0xe9.*"
                                                            r"Fix: re-save it as UTF-8")
    (tmp_path / "sheet.csv").write_bytes(b"PK\x03\x04....")
    refused(clf.load_labelled, tmp_path / "sheet.csv", match=r"sheet\.csv: is a zip archive or an Excel workbook.*"
                                                            r"Save As 'CSV UTF-8'")


def test_a_bom_and_crlf_csv_from_excel_loads(tmp_path):
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + rows_csv().replace("\n", "\r\n").encode())
    assert clf.label_names(clf.load_labelled(tmp_path / "excel.csv", test_size=0.5)) == ["a", "b"]


def test_broken_json_lines_and_json(tmp_path):
    good = '{"text": "fine", "label": "a"}'
    refused(clf.load_labelled, csv_file(tmp_path / "b.jsonl", f"{good}\n{good}\n{{\"text\": \"x\", \"label\": }}\n"),
            match=r"b\.jsonl: line 3 is not valid JSON \(Expecting value, column 24\)")
    refused(clf.load_labelled, csv_file(tmp_path / "s.json", json.dumps({"data": [{"text": "x"}]})),
            match=r"s\.json: the top level is an object with the keys \['data'\]; expected a list of records")
    refused(clf.load_labelled, csv_file(tmp_path / "x.json", '[{"text": "x", "label": "a"},\n {"text": "y" "label": "b"}]'),
            match=r"x\.json: line 2, column \d+ is not valid JSON \(Expecting ',' delimiter\)")
    refused(clf.load_labelled, csv_file(tmp_path / "l.jsonl", f'{good}\n["fine", "a"]\n'),
            match=r"l\.jsonl: line 2 is a list, not a JSON object")
    # a field with strings and numbers: datasets would read the label "1" back as the number 1
    mixed = "".join(json.dumps({"text": f"t{i}", "label": v}) + "\n" for i, v in enumerate(["1", "2", 1, 2]))
    refused(clf.load_labelled, csv_file(tmp_path / "m.jsonl", mixed + "\n\n"),
            match=r"m\.jsonl: line 3 holds a number \(1\), not a string like line 1 \(field 'label'\)\. Fix: give each "
                  r"field one kind of value")


def test_json_lines_with_blank_lines_loads_and_names_lines(tmp_path):
    body = "".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) + "\n\n" for i in range(8))
    assert len(clf.load_labelled(csv_file(tmp_path / "ok.jsonl", body), test_size=0.5)["test"]) == 4
    refused(clf.load_labelled, csv_file(tmp_path / "e.jsonl", body + '{"text": " ", "label": "a"}\n'),
            match=r"e\.jsonl: line 17 has an empty text")


def test_a_class_with_a_single_example_before_a_stratified_split(tmp_path):
    body = rows_csv(4) + "please refund me,refunds\n"
    refused(clf.load_labelled, csv_file(tmp_path / "d.csv", body),
            match=r"d\.csv: 1 class\(es\) have a single example: 'refunds' \(1 example\); a stratified split needs at "
                  r"least 2.*Fix: add examples of that class, merge it .*or give your own test split")
    swapped = "label,text\n" + "".join(f"{c},text number {i}\n" for i, c in enumerate("abcdef"))
    refused(clf.load_labelled, csv_file(tmp_path / "swap.csv", swapped),
            match=r"with 6 classes in 6 rows, text_column and label_column may be swapped\. Fix: ")


def test_labels_spelled_two_ways_are_an_error(tmp_path):
    body = rows_csv(3, "ab") + "my card was charged twice,Billing\nwrong amount,billing \nrefund,billing\n"
    refused(clf.load_labelled, csv_file(tmp_path / "d.csv", body),
            match=r"label_column='label': 1 class\(es\) are spelled in more than one way .*'Billing' \(.*d\.csv, line 8\) "
                  r"vs 'billing ' \(.*line 9\) vs 'billing' \(.*line 10\).*Fix: spell each class one way")


def test_same_text_with_two_labels_and_duplicates_that_would_leak(tmp_path):
    body = rows_csv(3) + "where is my parcel,a\nwhere is  my parcel,b\n"
    refused(clf.load_labelled, csv_file(tmp_path / "c.csv", body),
            match=r"c\.csv: 1 row\(s\) repeat a text with another label \(inconsistent labels\), e\.g\. line 9 has "
                  r"'where is  my parcel' as 'b' but line 8 as 'a'")
    body = rows_csv(3) + "text a 0,a\n"
    refused(clf.load_labelled, csv_file(tmp_path / "d.csv", body),
            match=r"d\.csv: 1 text\(s\) appear more than once, so a random train/test split would put copies on both "
                  r"sides \(a leaking split\), e\.g\. 'text a 0' \(line 2 and line 8\).*Fix: drop the repeated rows")


def test_given_train_and_test_that_share_texts(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    csv_file(folder / "train.csv", rows_csv(3))
    csv_file(folder / "test.csv", "text,label\nnew one,a\ntext b 2,b\n")
    refused(clf.load_labelled, str(folder),
            match=r"ds: 1 text\(s\) of the test split are also in the train split \(a leaking split\), e\.g\. 'text b 2' "
                  r"\(.*train\.csv, line 7 and .*test\.csv, line 3\)")
    other = tmp_path / "ds2"
    other.mkdir()
    csv_file(other / "train.csv", rows_csv(3))
    csv_file(other / "test.csv", "text,label\nnew one,a\nnew two,c\n")
    refused(clf.load_labelled, str(other), match=r"test\.csv: the class\(es\) \['c'\] are in the test split but never "
                                                  r"in train")


def fake_hub(monkeypatch, splits: dict[str, dict]) -> None:
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    loaded = datasets.DatasetDict({k: datasets.Dataset.from_dict(v, features=features) for k, v in splits.items()})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: loaded)


def test_a_hub_dataset_leak_is_dropped_with_a_warning(monkeypatch):
    train = {"text": [f"t{i}" for i in range(8)], "label": [0, 1] * 4}
    fake_hub(monkeypatch, {"train": train, "test": {"text": ["t1", "new", "newer"], "label": [1, 0, 1]}})
    with pytest.warns(UserWarning, match=r"owner/reviews: 1 text\(s\) of the test split are also in the train split"):
        ds = clf.load_labelled("owner/reviews")
    assert ds["test"]["text"] == ["new", "newer"] and len(ds["train"]) == 8


def test_an_unlabelled_hub_split(monkeypatch):
    fake_hub(monkeypatch, {"train": {"text": ["a", "b"], "label": [0, 1]}, "test": {"text": ["c"], "label": [-1]}})
    refused(clf.load_labelled, "glue/sst2", match=r"glue/sst2 \(split 'test'\): row 0 has the label -1, not one of the "
                                                  r"class ids 0\.\.1")


def test_a_labelled_hub_dataset_that_does_not_exist(monkeypatch):
    def not_found(*args, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError("Dataset 'nobody/nothing' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", not_found)
    refused(clf.load_labelled, "nobody/nothing", match=r"nobody/nothing: is neither a local file or folder nor a Hub "
                                                       r"dataset id that exists")


@pytest.mark.parametrize("test_size,match", [
    (0, r"test_size=0: expected a share of the rows between 0 and 1, exclusive"),
    (1, r"test_size=1: expected a share .*\(a share of the rows, not a count\)"),
    (150, r"test_size=150: .*not a count"),
    (-0.2, r"test_size=-0\.2: expected a share"),
    (float("nan"), r"test_size=nan: expected a share"),
    ("0.2", r"test_size='0\.2': expected a share"),
    (True, r"test_size=True: expected a share"),
])
def test_test_size_outside_zero_one(tmp_path, test_size, match):
    refused(clf.load_labelled, csv_file(tmp_path / "d.csv", rows_csv()), test_size=test_size, match=match)


def test_test_size_that_leaves_fewer_rows_than_classes(tmp_path):
    path = csv_file(tmp_path / "d.csv", rows_csv(4, "abcde"))  # 20 rows, 5 classes
    refused(clf.load_labelled, path, test_size=0.1, match=r"d\.csv: test_size=0\.1 leaves 2 of the 20 rows for test, "
                                                          r"fewer than the 5 classes.*Fix: raise test_size \(to about 0\.25\)")
    refused(clf.load_labelled, path, test_size=0.9, match=r"test_size=0\.9 leaves 2 of the 20 rows for train.*Fix: lower "
                                                          r"test_size \(to about 0\.75\)")
    refused(clf.load_labelled, path, seed=-1, match=r"seed=-1: expected a whole number >= 0")


def test_missing_path_folder_instead_of_file_and_other_file_types(tmp_path):
    csv_file(tmp_path / "tickets.csv", rows_csv())
    refused(clf.load_labelled, tmp_path / "tickts.csv",
            match=r"tickts\.csv: no such CSV file \(did you mean '.*tickets\.csv'\?\)\. Fix: check the path")
    refused(clf.load_labelled, str(tmp_path / "data" / "tickets"), match=r"no such data file or folder: the folder "
                                                                         r".*data does not exist either")
    (tmp_path / "folder.csv").mkdir()
    refused(clf.load_labelled, tmp_path / "folder.csv", match=r"folder\.csv: is a folder without \.csv, \.tsv, \.json or "
                                                             r"\.jsonl files")
    (tmp_path / "empty_dir").mkdir()
    refused(clf.load_labelled, tmp_path / "empty_dir", match=r"empty_dir: is a folder without \.csv")
    (tmp_path / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    refused(clf.load_labelled, tmp_path / "sheet.xlsx", match=r"sheet\.xlsx: is a \.xlsx file; expected \.csv, \.tsv, "
                                                             r"\.json or \.jsonl.*Save As 'CSV UTF-8'")
    folder = tmp_path / "splits"
    folder.mkdir()
    csv_file(folder / "train.csv", rows_csv())
    csv_file(folder / "test.csv", "text,label\n")
    refused(clf.load_labelled, folder, match=r"test\.csv: has a header \(text, label\) but no data rows")


# ------------------------------------------------------------------------------------- subsample
@pytest.fixture(scope="module")
def small() -> datasets.DatasetDict:
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b", "c"])})

    def make(n: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(n)], "label": [i % 3 for i in range(n)]},
                                          features=features)

    return datasets.DatasetDict({"train": make(30), "test": make(9)})


@pytest.mark.parametrize("sizes,match", [
    ((0, 9), r"train_size=0: expected a positive whole number of rows"),
    ((-3, 9), r"train_size=-3: expected a positive whole number"),
    ((10.0, 9), r"train_size=10\.0: expected a positive whole number"),
    ((10, "5"), r"test_size='5': expected a positive whole number"),
    ((31, 9), r"train_size=31: asks for more rows than the train split has \(30\)\. Fix: ask for at most 30"),
    ((10, 2), r"test_size=2: is fewer rows than the 3 classes of the test split.*Fix: ask for at least 3 rows"),
])
def test_subsample_sizes(small, sizes, match):
    refused(clf.subsample, small, *sizes, match=match)


def test_subsample_where_train_test_split_cannot_stratify_still_keeps_the_shares(small):
    out = clf.subsample(small, 29, 8, seed=0)  # 1 row left out of train, fewer than the 3 classes
    assert sorted(clf.class_balance(out)["train"].values()) == [9, 10, 10]
    assert sorted(clf.class_balance(out)["test"].values()) == [2, 3, 3]
    assert out["train"]["text"] == clf.subsample(small, 29, 8, seed=0)["train"]["text"]  # seeded
    refused(clf.subsample, small["train"], 5, 5, match=r"expected a DatasetDict with 'train' and 'test' splits")


def test_encode_labels_points_at_a_near_spelling():
    refused(clf.encode_labels, ["billing", "Billing "], ["billing", "delivery"],
            match=r"label\(s\) \['Billing '\] were never seen in training; this model knows \['billing', 'delivery'\] "
                  r"\('Billing ' looks like 'billing'")
    refused(clf.encode_labels, "billing", ["billing"], match=r"got one string \('billing'\), not a list")
