"""Reading the data files a user gives (text, JSON, JSON Lines), and the words that describe what is in them.

Every refusal is an :class:`utils.errors.InputError` that names the file (and the line) and says how to fix it: a
path that does not exist (with the closest names in its folder), a folder, an unreadable, empty, binary or
not-UTF-8 file, a JSON syntax error, a JSON Lines line that is not one object. The QA loader
(:mod:`utils.qa.data`) and the classification loader (:mod:`utils.classification.data`) read through here;
what a record must hold is theirs to check (with :func:`json_type`, :func:`short_repr` and :func:`is_int` for
their messages).
"""

from __future__ import annotations

import codecs
import difflib
import json
import numbers
from pathlib import Path
from typing import Any

from utils.errors import InputError, input_error

UTF8_FIX = ("re-save it as UTF-8 (a text editor's 'Save with encoding: UTF-8', or Excel's 'CSV UTF-8'), "
            "or convert it, e.g. iconv -f latin1 -t utf-8 old-file > new-file")


# --------------------------------------------------------------------------------- describing values
def short_repr(value: Any, n: int = 60) -> str:
    """``repr(value)``, cut to ``n`` characters."""
    text = repr(value)
    return text if len(text) <= n else text[:n - 4] + "...'"


def json_type(value: Any) -> str:
    """``"a string"``, ``"a list"``, ... in JSON's words."""
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, numbers.Number) else f"a {type(value).__name__}")


def is_int(value: Any) -> bool:
    """A whole number, and not ``True``/``False`` (which Python counts as integers)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------------- reading
def no_such_path(path: str | Path, what: str) -> InputError:
    """The error for a path that does not exist, naming the closest names in its folder (a typo is usual)."""
    path = Path(path)
    fix = f"check the path; a relative path starts at the folder you run from ({Path.cwd()})"
    if not path.parent.is_dir():
        return input_error(str(path), f"no such {what}: the folder {path.parent} does not exist either", fix)
    near = difflib.get_close_matches(path.name, [p.name for p in path.parent.iterdir()], n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(str(path.parent / n)) for n in near)}?)" if near else ""
    return input_error(str(path), f"no such {what}{hint}", fix)


def read_text_file(path: str | Path, what: str = "data file") -> str:
    """The text of a local UTF-8 file (a leading byte-order mark is dropped).

    Args:
        path: the file.
        what: what the file should be, for the messages (``"SQuAD JSON file"``).
    Raises:
        InputError: the path does not exist (the closest names in its folder are suggested), is a folder or
            cannot be read; the file is a spreadsheet or other binary file, empty or only whitespace, or not
            UTF-8 (the message names the line of the first byte that is not, and how to re-save the file).
    """
    path = Path(path)
    if not path.exists():
        raise no_such_path(path, what)
    if path.is_dir():
        raise input_error(str(path), f"is a folder, not a {what}", "give the path of the file inside it")
    try:
        raw = path.read_bytes()
    except OSError as err:  # no read permission, a broken mount, ...
        raise input_error(str(path), f"cannot be read ({err.strerror or err})",
                          "check that it is readable (ls -l; chmod u+r) or copy it somewhere that is") from None
    if raw.startswith(b"PK\x03\x04"):
        raise input_error(str(path), f"is a zip archive or an Excel workbook, not a text {what}",
                          "export it as text: in Excel or LibreOffice, Save As 'CSV UTF-8' (or JSON) and load that")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw[:4096]:
        raise input_error(str(path), f"is UTF-16 text or a binary file (it holds zero bytes), not a UTF-8 {what}",
                          UTF8_FIX)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise input_error(str(path), f"line {line} is not UTF-8 text: byte 0x{raw[err.start]:02x} (byte {err.start} "
                                     "of the file) is not valid UTF-8; the file was probably saved as Latin-1 / "
                                     "Windows-1252", UTF8_FIX) from None
    if not text.strip():
        raise input_error(str(path), f"the file is empty ({'0 bytes' if not raw else 'only whitespace'})",
                          f"write the {what} into it, or point to the right file")
    return text


def parse_json(path: Path, text: str, expected: str) -> Any:
    """``json.loads(text)`` of the file ``path``; a syntax error names the file, line and column, and ``expected``
    (what the file should hold, e.g. ``"SQuAD v1.1 JSON ({'data': [...]})"``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        fix = "correct the JSON there (a missing comma, quote or bracket is usual; a JSON validator shows it)"
        if err.msg == "Extra data" and text.lstrip().startswith("{"):
            fix = "if it holds one JSON object per line, it is JSON Lines: name it .jsonl; otherwise c" + fix[1:]
        raise input_error(str(path), f"line {err.lineno}, column {err.colno} is not valid JSON ({err.msg}); "
                                     f"expected {expected}", fix) from None


def read_json_lines(path: str | Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The records of a JSON Lines file (blank lines skipped) and the line each one is on.

    Raises:
        InputError: as :func:`load_json_lines`.
    """
    path = Path(path)
    records, lines = [], []
    for number, line in enumerate(read_text_file(path, "JSON Lines file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise input_error(str(path), f"line {number} is not valid JSON ({err.msg}, column {err.colno}); each "
                                         "line must be one JSON object", "correct or delete that line") from None
        if not isinstance(record, dict):
            raise input_error(str(path), f"line {number} is {json_type(record)}, not a JSON object",
                              'write one object per line, e.g. {"question": "...", "context": "...", "answers": "..."} '
                              'or {"text": "...", "label": "..."}')
        records.append(record)
        lines.append(number)
    return records, lines


def load_json_lines(path: str | Path) -> list[dict[str, Any]]:
    """One JSON object per line (blank lines skipped).

    Raises:
        InputError: the file is missing, a folder, empty, not UTF-8, or a line is not one JSON object
            (the message names the file and the line).
    """
    return read_json_lines(path)[0]
