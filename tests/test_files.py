"""utils.files: reading a user's data file (text, JSON, JSON Lines) refuses every bad file with one InputError that
names the file, the line and the fix; the words its messages use for values. The loaders built on it (QA,
classification) are tested in test_bad_input_data.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from utils import files
from utils.errors import InputError


def refused(func, *args, match: str) -> InputError:
    """``func(*args)`` raises an InputError in the ``where: problem. Fix: ...`` form matching ``match``, with no
    library exception chained to it."""
    with pytest.raises(InputError, match=match) as info:
        func(*args)
    err = info.value
    assert ". Fix: " in str(err) and (err.__context__ is None or err.__suppress_context__), repr(err)
    return err


def test_a_text_file_is_read_without_its_byte_order_mark(tmp_path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfhello\n")
    assert files.read_text_file(tmp_path / "bom.txt") == "hello\n"


def test_a_missing_path_names_the_closest_files_or_the_missing_folder(tmp_path):
    (tmp_path / "train.json").write_text("{}")
    refused(files.read_text_file, tmp_path / "trian.json", "SQuAD JSON file",
            match=r"trian\.json: no such SQuAD JSON file \(did you mean '.*train\.json'\?\)\. Fix: check the path")
    refused(files.read_text_file, tmp_path / "nowhere" / "train.json",
            match=r"no such data file: the folder .*nowhere does not exist either")
    err = files.no_such_path(tmp_path / "zzz.csv", "CSV file")
    assert isinstance(err, InputError) and "did you mean" not in str(err)


@pytest.mark.parametrize("content,match", [
    (b"", r"the file is empty \(0 bytes\)\. Fix: write the data file into it"),
    (b"  \n\n", r"the file is empty \(only whitespace\)"),
    (b"PK\x03\x04rest-of-a-zip", r"is a zip archive or an Excel workbook, not a text data file"),
    ("hello".encode("utf-16"), r"is UTF-16 text or a binary file.*Fix: re-save it as UTF-8"),
    (b"ok\nAnn\xe9\n", r"line 2 is not UTF-8 text: byte 0xe9 \(byte 6 of the file\).*Latin-1.*Fix: re-save it as UTF-8"),
])
def test_empty_binary_and_not_utf8_files(tmp_path, content, match):
    (tmp_path / "data.txt").write_bytes(content)
    refused(files.read_text_file, tmp_path / "data.txt", match=r"data\.txt: " + match)


def test_a_folder_and_an_unreadable_file(tmp_path, monkeypatch):
    (tmp_path / "dir.json").mkdir()
    refused(files.read_text_file, tmp_path / "dir.json", "SQuAD JSON file",
            match=r"dir\.json: is a folder, not a SQuAD JSON file")
    file = tmp_path / "train.json"
    file.write_text("{}")
    real_read_bytes = Path.read_bytes

    def no_permission(self: Path) -> bytes:  # what chmod 000 does, also when the tests run as root (who reads anything)
        if self == file:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", no_permission)
    refused(files.read_text_file, file, match=r"train\.json: cannot be read \(Permission denied\)")


def test_a_json_syntax_error_names_line_and_column_and_spots_json_lines():
    path = Path("broken.json")
    assert files.parse_json(path, '{"a": [1]}', "an object") == {"a": [1]}
    refused(files.parse_json, path, '{"data": [\n  {"title": "t",}\n]}', "an object",
            match=r"broken\.json: line 2, column \d+ is not valid JSON \(Expecting property name enclosed in double "
                  r"quotes\); expected an object\. Fix: correct the JSON there")
    refused(files.parse_json, path, '{"q": 1}\n{"q": 2}\n', "an object",
            match=r"line 2, column 1 is not valid JSON \(Extra data\).*Fix: if it holds one JSON object per line, it "
                  r"is JSON Lines: name it \.jsonl")


def test_json_lines_record_their_lines(tmp_path):
    good = json.dumps({"text": "hi", "label": "a"})
    (tmp_path / "ok.jsonl").write_text(f"{good}\n\n{good}\n")
    assert files.read_json_lines(tmp_path / "ok.jsonl") == ([json.loads(good)] * 2, [1, 3])  # blank lines count
    assert files.load_json_lines(tmp_path / "ok.jsonl") == [json.loads(good)] * 2


@pytest.mark.parametrize("reader", ["read_json_lines", "load_json_lines", "load_qa_split"])
def test_a_broken_line_a_non_object_and_an_empty_file_are_refused(tmp_path, reader):
    """The same messages from the reader and through the QA loader that uses it (the public entry point)."""
    from utils.qa import data as qa

    read = getattr(files, reader, None) or getattr(qa, reader)
    good = json.dumps({"question": "Who?", "context": "Ann came.", "answers": "Ann"})
    (tmp_path / "a.jsonl").write_text(f"{good}\n\n{good[:-1]}\n")
    refused(read, tmp_path / "a.jsonl", match=r"a\.jsonl: line 3 is not valid JSON \(Expecting ',' delimiter, "
                                              r"column \d+\).*Fix: correct or delete that line")
    (tmp_path / "b.jsonl").write_text(f"{good}\n[1, 2]\n")
    refused(read, tmp_path / "b.jsonl", match=r"b\.jsonl: line 2 is a list, not a JSON object")
    (tmp_path / "c.jsonl").write_text("")
    refused(read, tmp_path / "c.jsonl", match=r"c\.jsonl: the file is empty \(0 bytes\)\. Fix: write the JSON Lines "
                                              r"file into it")


def test_values_are_described_in_json_words():
    assert [files.json_type(v) for v in ({}, [], "x", True, None, 3, 2.5)] == [
        "an object", "a list", "a string", "true/false", "null", "a number", "a number"]
    assert files.short_repr("ab") == "'ab'" and files.short_repr("x" * 100, 20) == repr("x" * 100)[:16] + "...'"
    assert len(files.short_repr("x" * 100)) == 60
    assert [files.is_int(v) for v in (3, -1, True, 2.0, "3", None)] == [True, True, False, False, False, False]
