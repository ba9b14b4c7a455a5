"""Your labelled text as a checked, stratified ``train``/``test`` split (and a ``validation`` split to choose
settings on): CSV, TSV, JSON or JSON Lines files, a Hub dataset or one of :data:`COURSE_DATA`."""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from utils import progress
from utils.errors import input_error
from utils.files import no_such_path, read_json_lines, read_text_file
from utils.paths import REPO_ROOT

SMOKE_DATA = REPO_ROOT / "data" / "labelled" / "support_tickets.csv"
COURSE_DATA = {  # names load_labelled accepts besides paths and Hub ids (see data/*/README.md)
    "movie-reviews": "Rotten Tomatoes sentences rated by people, positive/negative (data/movie_reviews/README.md)",
    "support-tickets": "the course's own 600 synthetic support tickets, 5 classes (data/labelled/README.md)",
}


def course_data_path(name: str) -> Path:
    """The local file behind one of :data:`COURSE_DATA` (the movie reviews are fetched and cached on first use)."""
    if name == "support-tickets":
        return SMOKE_DATA
    if name == "movie-reviews":
        from utils import sentiment_data

        return sentiment_data.polarity_csv("movies")
    raise input_error(repr(name), f"is not one of the course's datasets ({', '.join(COURSE_DATA)})",
                      "pass one of those names, a CSV/JSONL path or a Hub dataset id")


# ----------------------------------------------------------------------------------------- data
_FILE_KINDS = {".csv": "CSV", ".tsv": "TSV", ".json": "JSON", ".jsonl": "JSON Lines"}
_TRUE = {"1", "ON", "YES", "TRUE"}  # how datasets and huggingface_hub read HF_HUB_OFFLINE / HF_DATASETS_OFFLINE


@dataclass
class _Source:
    """A loaded source and how messages name its rows: ``line n`` of a file, else ``row i`` of a split."""

    data: datasets.DatasetDict
    name: str
    local: bool  # a file or folder the user can edit (leaks are errors), not a Hub dataset (leaks are dropped)
    files: dict[str, str] = field(default_factory=dict)  # split -> the file it came from, where known
    lines: dict[str, list[str]] = field(default_factory=dict)  # split -> the name of each row ("line 7")

    def where(self, split: str) -> str:
        return self.files.get(split) or f"{self.name} (split {split!r})"

    def row(self, split: str, i: int) -> str:
        names = self.row_names(split)
        return names[i] if names else f"row {i}"

    def row_names(self, split: str) -> list[str] | None:
        """The name of each row of ``split``, where known (else None: rows are then ``row i``)."""
        names = self.lines.get(split)
        return names if names and len(names) == len(self.data[split]) else None


@dataclass
class _File:
    """A checked local data file: the name of each of its rows and, for CSV/TSV, its columns as written."""

    path: Path
    rows: list[str]  # "line 7" (or "record 3" of a .json list)
    columns: dict[str, list[str | None]] | None = None  # CSV/TSV only: column -> the text of each cell


def _read_csv(path: Path, text: str, delimiter: str) -> tuple[dict[str, list[str | None]], list[str]]:
    """Check a CSV/TSV file's shape and read it with Python's csv module.

    Returns its columns and the line on which each data row starts (the header is line 1). Every value is the
    text written in the cell: ``007`` stays ``"007"``, ``NaN``, ``None``, ``NA`` and ``True`` stay strings, an
    empty cell is ``""``; a row with fewer fields than the header gets None for the missing ones. (The ``datasets``
    CSV reader, pandas, guesses types instead: ``007`` became the number 7, ``NaN``, ``NA`` or ``None`` a missing
    value, so a text or label could change or be blamed for being empty.)
    """
    sep = "tab" if delimiter == "\t" else repr(delimiter)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines, start = [], 1
    try:
        for row in reader:
            first, start = start, reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):  # blank lines, which pandas skips too
                continue
            if header is None:
                header = row
                other = [s for s in (",", ";", "\t", "|") if s != delimiter and len(row) == 1 and s in row[0]]
                if other:
                    raise input_error(str(path), f"the header is one column ({row[0]!r}): the file seems separated by "
                                                 f"{other[0]!r}, not by {sep}",
                                      "name a tab-separated file .tsv and a comma-separated one .csv; re-save a file "
                                      "separated by anything else with commas (a spreadsheet's 'CSV UTF-8')")
                repeated = sorted({c for c in header if header.count(c) > 1})
                if repeated:
                    raise input_error(str(path), f"the header names the column(s) {repeated} more than once",
                                      "give every column its own name")
                continue
            if len(row) > len(header):
                raise input_error(str(path), f"line {first} has {len(row)} fields but the header has {len(header)} "
                                             f"({', '.join(header)}); a text with an unquoted {sep} is the usual cause",
                                  f'put quotes around a text that contains a {sep} ("like{delimiter} this"), or save '
                                  "the file from a spreadsheet as CSV, which quotes for you")
            rows.append(row)
            lines.append(f"line {first}")
    except csv.Error as err:
        raise input_error(str(path), f"line {reader.line_num} cannot be read as {sep}-separated text ({err})",
                          "check the quotes on that line (a quote inside a text is written twice: \"\")") from None
    if header is None or not lines:
        raise input_error(str(path), f"has a header ({', '.join(header or [])}) but no data rows",
                          "add one row per example below the header, or point to the right file")
    columns = {name: [row[j] if j < len(row) else None for row in rows] for j, name in enumerate(header)}
    return columns, lines


def _one_kind_per_field(path: Path, records: list[dict[str, Any]], rows: list[str]) -> list[str]:
    """Each field holds one kind of value (nulls aside). ``datasets`` would turn a field of strings and
    numbers into its ``Json`` type, which reads the string ``"1"`` back as the number 1."""
    kinds = {str: "string", int: "number", float: "number", bool: "true/false", list: "list", dict: "object"}
    first: dict[str, tuple[str, str]] = {}
    for record, row in zip(records, rows, strict=True):
        for key, value in record.items():
            if value is None:
                continue
            kind = kinds.get(type(value), type(value).__name__)
            seen = first.setdefault(key, (kind, row))
            if seen[0] != kind:
                raise input_error(str(path), f"{row} holds a {kind} ({value!r:.60}), not a {seen[0]} "
                                             f"like {seen[1]} (field {key!r})",
                                  "give each field one kind of value: quote numbers that are texts or labels "
                                  '("42"), or fix the row')
    return rows


def _json_rows(path: Path, text: str) -> list[str]:
    """Check a .json/.jsonl file holds records; the name of each record (``line n`` or ``record i``)."""
    if path.suffix.lower() == ".jsonl":
        records, lines = read_json_lines(path)
        return _one_kind_per_field(path, records, [f"line {n}" for n in lines])
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        first = text.lstrip().split("\n", 1)[0]
        try:
            one_per_line = isinstance(json.loads(first), dict)
        except json.JSONDecodeError:
            one_per_line = False
        if one_per_line:  # JSON Lines in a .json file, which datasets reads too
            records, lines = read_json_lines(path)
            return _one_kind_per_field(path, records, [f"line {n}" for n in lines])
        raise input_error(str(path), f"line {err.lineno}, column {err.colno} is not valid JSON ({err.msg})",
                          "correct the JSON there (a missing comma, quote or bracket is usual)") from None
    if not isinstance(records, list):
        found = f"an object with the keys {sorted(records)}" if isinstance(records, dict) else "not a list"
        raise input_error(str(path), f"the top level is {found}; expected a list of records "
                                     '[{"text": ..., "label": ...}, ...]',
                          "save the records as a list, or one object per line as JSON Lines (.jsonl)")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise input_error(str(path), f"record {i} is a {type(record).__name__}, not an object",
                              'write each record as {"text": ..., "label": ...}')
    if not records:
        raise input_error(str(path), "holds an empty list: no records", "add records, or point to the right file")
    return _one_kind_per_field(path, records, [f"record {i}" for i in range(len(records))])


def _is_csv(path: Path) -> bool:
    return _FILE_KINDS[path.suffix.lower()] in ("CSV", "TSV")


def _check_file(path: Path) -> _File:
    """Read and check one local data file (a JSON one before ``datasets`` parses it)."""
    kind = _FILE_KINDS[path.suffix.lower()]
    text = read_text_file(path, f"{kind} file")
    if _is_csv(path):
        columns, lines = _read_csv(path, text, "\t" if kind == "TSV" else ",")
        return _File(path, lines, columns)
    return _File(path, _json_rows(path, text))


def _csv_dataset(files: list[_File], where: str) -> datasets.Dataset:
    """One split from checked CSV/TSV files (their rows one after the other), every column a string column."""
    first = files[0]
    for other in files[1:]:
        if set(other.columns) != set(first.columns):
            raise input_error(where, f"{other.path.name} has the columns {list(other.columns)} but "
                                     f"{first.path.name} has {list(first.columns)}",
                              "give every file of a split the same header")
    columns = {name: [v for f in files for v in f.columns[name]] for name in first.columns}
    features = datasets.Features({name: datasets.Value("string") for name in columns})
    return datasets.Dataset.from_dict(columns, features=features)


def _load_local(source: Path, builder: str, **kwargs: Any) -> datasets.DatasetDict:
    """``datasets.load_dataset(builder, **kwargs)`` on checked local files; what it still refuses is an
    InputError naming ``source``."""
    try:
        with progress.no_library_bars():  # a local file loads in a second: its "Generating split" bar is noise
            return datasets.load_dataset(builder, **kwargs)
    except Exception as err:  # the files passed our checks: what is left is about their content
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise input_error(str(source), f"datasets could not read it ({type(err).__name__}: {detail[:200]})",
                          "check that every row has the same columns and each column one kind of value "
                          "(all texts, or all numbers)") from None


def _folder_splits(folder: Path) -> dict[str, list[Path]]:
    """The data files of each split of a folder, named as ``datasets`` names them: ``train*``, ``validation*`` /
    ``dev*`` / ``val*`` and ``test*`` / ``eval*`` files (or folders), else every file is ``train``. Hidden files
    and folders (``.ipynb_checkpoints``) are skipped, as ``datasets`` does.

    Raises:
        InputError: the folder has no data file, or a data file that no split takes (it would be left out silently).
    """
    from datasets.data_files import FILES_TO_IGNORE, DataFilesDict, get_data_patterns

    def skipped(p: Path) -> bool:
        return p.name in FILES_TO_IGNORE or any(part.startswith((".", "__")) for part in p.relative_to(folder).parts)

    files = {os.path.realpath(p): p for p in sorted(folder.rglob("*"))
             if p.suffix.lower() in _FILE_KINDS and p.is_file() and not skipped(p)}
    if not files:
        raise input_error(str(folder), "is a folder without .csv, .tsv, .json or .jsonl files",
                          "give a data file, or a folder with e.g. train.csv and test.csv")
    resolved = DataFilesDict.from_patterns(get_data_patterns(str(folder)), base_path=str(folder))
    splits = {str(split): sorted(files[real] for real in {os.path.realpath(f) for f in found} if real in files)
              for split, found in resolved.items()}
    splits = {split: ps for split, ps in splits.items() if ps}
    taken = {p for ps in splits.values() for p in ps}
    left = [p for p in files.values() if p not in taken]
    if left:
        named = ", ".join(str(p.relative_to(folder)) for p in left[:3])
        raise input_error(str(folder), f"{len(left)} data file(s) belong to no split and would be left out: {named} "
                                       f"(the folder's splits are read from the file names: {', '.join(splits)})",
                          "name each file after its split (train.csv, validation.csv, test.csv), or move the "
                          "others out of the folder")
    return splits


def _read_folder(folder: Path) -> _Source:
    """A folder's splits (:func:`_folder_splits`): CSV/TSV files read as written, JSON files by ``datasets``."""
    checked = {split: [_check_file(p) for p in ps] for split, ps in _folder_splits(folder).items()}
    parts, files, lines, json_splits = {}, {}, {}, {}
    for split, fs in checked.items():
        if len(fs) == 1:
            files[split], lines[split] = str(fs[0].path), fs[0].rows
        else:
            lines[split] = [f"{f.path.relative_to(folder)}, {row}" for f in fs for row in f.rows]
        where = files.get(split) or f"{folder} (split {split!r})"
        kinds = {_is_csv(f.path) for f in fs}
        if len(kinds) > 1:
            raise input_error(where, "mixes CSV/TSV and JSON files in one split",
                              "save the split's files in one format")
        if kinds == {True}:
            parts[split] = _csv_dataset(fs, where)
        else:
            json_splits[split] = [str(f.path) for f in fs]
    if json_splits:
        parts.update(_load_local(folder, "json", data_files=json_splits))
    return _Source(datasets.DatasetDict({s: parts[s] for s in checked}), str(folder), True, files, lines)


def _hub_offline() -> str | None:
    """The variable that switches the Hub off (``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1``), read now, or
    ``"HF_HUB_OFFLINE"`` when the libraries were imported offline; None when the Hub may be reached."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in _TRUE:
            return name
    from huggingface_hub import constants

    return "HF_HUB_OFFLINE" if datasets.config.HF_HUB_OFFLINE or constants.HF_HUB_OFFLINE else None


@contextmanager
def _offline_flags() -> Iterator[None]:
    """``datasets`` and ``huggingface_hub`` read the offline variables once, at import: set after that (in a
    notebook), they were ignored and an unknown name took ~23 s of network retries. This makes both libraries
    offline for one call, so a cached dataset loads and any other fails at once."""
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _read_hub(name: str) -> _Source:
    """A Hub dataset by id (``"fancyzhx/ag_news"``), or from the local cache when the Hub is offline."""
    offline = _hub_offline()
    not_local = f"is not a local file or folder (no such path under {Path.cwd()})"
    try:
        if offline:
            with _offline_flags():
                loaded = datasets.load_dataset(name)
        else:
            loaded = datasets.load_dataset(name)  # a Hub dataset id, e.g. "fancyzhx/ag_news" (needs network)
    except (ConnectionError, FileNotFoundError) as err:  # datasets' DatasetNotFoundError is a FileNotFoundError
        if offline and isinstance(err, ConnectionError):  # what datasets raises offline for a name not in the cache
            raise input_error(name, f"{not_local}, and as a Hub dataset id it cannot be fetched: the Hugging Face Hub "
                                    f"is switched off in this process ({offline}=1) and the dataset is not in the "
                                    "local cache",
                              "give the path of a local .csv, .tsv, .json or .jsonl file or folder (check the "
                              "spelling), or go online: unset HF_HUB_OFFLINE and HF_DATASETS_OFFLINE (either one "
                              "switches the Hub off) and restart the kernel") from None
        if isinstance(err, ConnectionError):
            raise input_error(name, f"{not_local}, and the Hugging Face Hub could not be reached to fetch it as a "
                                    f"dataset id ({type(err).__name__})",
                              "check the network connection, or give the path of a local data file or folder") from None
        raise input_error(name, "is neither a local file or folder nor a Hub dataset id that exists",
                          "check the spelling: a local file ends in .csv, .tsv, .json or .jsonl, a Hub id looks "
                          "like 'fancyzhx/ag_news'") from None
    except Exception as err:  # e.g. a name that is no valid Hub id ('my data'): still the user's input
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise input_error(name, f"{not_local}, and datasets could not load it as a Hub dataset id "
                                f"({type(err).__name__}: {detail[:200]})",
                          "check the spelling: a local file ends in .csv, .tsv, .json or .jsonl, a Hub id looks "
                          "like 'fancyzhx/ag_news'") from None
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return _Source(loaded, name, False)


def _check_source(source: Any) -> str | Path:
    """``source`` is a non-empty path or name (else an InputError, before anything is read)."""
    if isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        if isinstance(text, str) and text.strip():
            return source
        problem = f"is {'an empty' if not text else 'a blank'} path"
    else:
        kind = type(source).__name__
        problem = f"is {'None' if source is None else ('an ' if kind[0] in 'aeiou' else 'a ') + kind}, not a path or a "
        problem += "dataset name"
    raise input_error(f"source={source!r}", problem,
                      "give the path of a .csv, .tsv, .json or .jsonl file or of a folder of them, a Hub dataset id "
                      f"('fancyzhx/ag_news') or one of the course's datasets ({', '.join(map(repr, COURSE_DATA))})")


def _read_source(source: str | Path) -> _Source:
    """Load a data file, a folder of them or a Hub dataset, checking local files first.

    Raises:
        InputError: a path that does not exist, a folder where a file is expected, a file type that is not
            CSV/TSV/JSON/JSON Lines, an empty or header-only file, a file that is not UTF-8, a row with more
            fields than the header, a JSON syntax error (file and line), a folder without data files or with a
            file no split takes, an unknown Hub dataset, a name that is no local path while the Hub is offline.
    """
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in _FILE_KINDS and not path.is_dir():
        checked = _check_file(path)
        if checked.columns is not None:
            data = datasets.DatasetDict({"train": _csv_dataset([checked], str(path))})
        else:
            data = _load_local(path, "json", data_files=str(path))
        return _Source(data, str(path), True, {"train": str(path)}, {"train": checked.rows})
    if path.is_file():
        raise input_error(str(path), f"is a {suffix or 'suffix-less'} file; expected .csv, .tsv, .json or .jsonl",
                          "save it as one of those (from a spreadsheet: Save As 'CSV UTF-8')")
    if path.is_dir():
        return _read_folder(path)
    looks_local = str(source).startswith((".", "/", "~")) or suffix in _FILE_KINDS or (
        "/" in str(source) and path.parent.is_dir() and str(path.parent) not in (".", ""))
    if looks_local:
        raise no_such_path(path, "data file or folder")
    return _read_hub(str(source))


def _check_texts(texts: list[Any], where: str, rows: list[str] | None = None) -> None:
    """Every text is a non-empty string; ``rows`` names the rows (default ``row i``, from 0).

    Raises:
        InputError: naming ``where`` and the row.
    """
    for i, text in enumerate(texts):
        row = rows[i] if rows is not None else f"row {i}"
        if text is None or (isinstance(text, str) and not text.strip()):
            raise input_error(where, f"{row} has an empty text", "fill it in or drop the row")
        if not isinstance(text, str):
            raise input_error(where, f"{row} holds a {type(text).__name__} ({text!r}), not a string",
                              "texts must be strings: pick the right text column or convert it with str()")


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip())


def _check_share(test_size: Any) -> None:
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real) or not 0 < test_size < 1:
        hint = " (a share of the rows, not a count)" if isinstance(test_size, numbers.Real) and test_size >= 1 else ""
        raise input_error(f"test_size={test_size!r}", f"expected a share of the rows between 0 and 1, exclusive{hint}",
                          "use e.g. test_size=0.2 to hold out 20% of the rows")


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")
_INTEGER = re.compile(r"-?\d+")


def _spelling(value: Any) -> str:
    """The key under which two spellings of one class meet: spaces and case folded, and a number written as text
    compared as the number (``"007"`` and ``"7"``, ``"1.0"`` and ``"1"``), since a CSV keeps both as written."""
    key = " ".join(str(value).split()).casefold()
    if _NUMBER.fullmatch(key):  # exact, at any length: no leading zeros, no trailing zeros after the point
        whole, _, fraction = key.lstrip("+-").partition(".")
        whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
        key = ("-" if key.startswith("-") and (whole, fraction) != ("0", "") else "") + whole + (
            f".{fraction}" if fraction else "")
    return key


def _check_labels(src: _Source, label_column: str, values: dict[str, list[Any]]) -> tuple[list[str], dict[Any, int]]:
    """Class names in id order and value -> id, from the labels of each split (``values``); refuses empty, odd or
    inconsistently spelled labels."""
    feature = src.data[next(iter(values))].features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        for split, part in values.items():
            for i, value in enumerate(part):
                if value is None or not 0 <= value < len(names):
                    raise input_error(src.where(split), f"{src.row(split, i)} has the label {value!r}, not one of "
                                                        f"the class ids 0..{len(names) - 1} (-1 marks an unlabelled "
                                                        "row, as in the test splits of GLUE)",
                                      "use a labelled split: drop the unlabelled rows or that split")
        return names, {i: i for i in range(len(names))}
    spellings: dict[str, dict[Any, str]] = {}  # normalised -> {value: where it first appears}
    for split, part in values.items():
        first: dict[Any, int] = {}
        for i, value in enumerate(part):
            if _is_empty(value):
                raise input_error(src.where(split), f"{src.row(split, i)} has an empty label",
                                  "fill in the label or drop the row")
            if not isinstance(value, str | numbers.Number):
                raise input_error(src.where(split), f"{src.row(split, i)} has the label {value!r} "
                                                    f"({type(value).__name__}); expected a class name or number",
                                  f"pick the right label column (label_column={label_column!r} now)")
            first.setdefault(value, i)
        for value, i in first.items():
            spellings.setdefault(_spelling(value), {}).setdefault(value, f"{src.where(split)}, {src.row(split, i)}")
    variants = {key: seen for key, seen in spellings.items() if len(seen) > 1}
    if variants:
        shown = "; ".join(" vs ".join(f"{v!r} ({at})" for v, at in seen.items()) for seen in list(variants.values())[:3])
        raise input_error(f"label_column={label_column!r}", f"{len(variants)} class(es) are spelled in more than one "
                                                            f"way (case, spaces or text vs number): {shown}",
                          "spell each class one way in the file (e.g. strip spaces and lower-case the labels)")
    values_ = {v for seen in spellings.values() for v in seen}
    if all(isinstance(v, str) and _INTEGER.fullmatch(v) for v in values_):  # class numbers in a CSV: 2 before 10
        ordered = sorted(values_, key=Decimal)
    else:
        ordered = sorted(values_) if len({type(v) for v in values_}) == 1 else sorted(values_, key=str)
    names = [str(v) for v in ordered]  # ints stay in numeric order (2 before 10)
    index = {name: i for i, name in enumerate(names)}
    return names, {v: index[str(v)] for v in values_}


def _check_duplicates(src: _Source, texts: dict[str, list[str]], labels: dict[str, list[int]],
                      names: list[str], given: bool) -> dict[str, list[int]]:
    """Identical texts (up to whitespace): with two labels (inconsistent labels), or in two of the given splits /
    twice in the data about to be split (a leaking split). Returns, per split, the rows to keep: all of them for a
    local source (which raises instead), all but the leaking copies for a Hub dataset (with a warning)."""
    first: dict[str, tuple[str, int]] = {}
    conflicts, repeats = [], []
    for split, part in texts.items():
        for i, text in enumerate(part):
            key = " ".join(text.split())
            if key not in first:
                first[key] = (split, i)
                continue
            s0, i0 = first[key]
            (conflicts if labels[s0][i0] != labels[split][i] else repeats).append((s0, i0, split, i))

    def at(split: str, i: int) -> str:
        return f"{src.where(split)}, {src.row(split, i)}" if src.where(split) != src.name else src.row(split, i)

    if conflicts:
        s0, i0, s, i = conflicts[0]
        problem = (f"{len(conflicts)} row(s) repeat a text with another label (inconsistent labels), e.g. "
                   f"{at(s, i)} has {texts[s][i][:60]!r} as {names[labels[s][i]]!r} but {at(s0, i0)} as "
                   f"{names[labels[s0][i0]]!r}")
        fix = "give each text one label (drop or correct the wrong rows): a contradiction caps the accuracy"
        if src.local:
            raise input_error(src.name, problem, fix)
        warnings.warn(f"{src.name}: {problem}. Fix: {fix}.", stacklevel=3)
    leaks = [r for r in conflicts + repeats if not given or r[0] != r[2]]
    if leaks:
        shown = "; ".join(f"{texts[s][i][:50]!r} ({at(s0, i0)} and {at(s, i)})" for s0, i0, s, i in leaks[:3])
        pairs = list(dict.fromkeys((s0, s) for s0, _, s, _ in leaks))
        if given and len(pairs) == 1:
            problem = (f"{len(leaks)} text(s) of the {pairs[0][1]} split are also in the {pairs[0][0]} split "
                       f"(a leaking split), e.g. {shown}")
        elif given:
            problem = (f"{len(leaks)} text(s) are in two splits ({'; '.join(f'{b} and {a}' for a, b in pairs)}: a "
                       f"leaking split), e.g. {shown}")
        else:
            problem = (f"{len(leaks)} text(s) appear more than once, so a random train/test split would put copies "
                       f"on both sides (a leaking split), e.g. {shown}")
        fix = "drop the repeated rows (e.g. pandas' drop_duplicates('text')) so that each text is in one split only"
        if src.local:
            raise input_error(src.name, problem, fix)
        warnings.warn(f"{src.name}: {problem}; the later copies were dropped (a Hub dataset cannot be fixed here).",
                      stacklevel=3)
    dropped = {(s, i) for _, _, s, i in leaks}
    return {split: [i for i in range(len(part)) if (split, i) not in dropped] for split, part in texts.items()}


def _check_split_sizes(counts: dict[str, int], n: int, test_size: float, source: str) -> None:
    """The stratified split of ``n`` rows with these class counts is possible (else datasets raises)."""
    singles = {name: c for name, c in counts.items() if c < 2}
    if singles:
        shown = ", ".join(f"{name!r} ({c} example)" for name, c in list(singles.items())[:5])
        swapped = (f"; with {len(counts)} classes in {n} rows, text_column and label_column may be swapped"
                   if len(counts) > n / 2 else "")
        raise input_error(source, f"{len(singles)} class(es) have a single example: {shown}; a stratified split needs "
                                  f"at least 2 of each class (one for train, one for test){swapped}",
                          "add examples of that class, merge it into a related class or drop it, or give your own "
                          "test split (a folder with train.csv and test.csv)")
    n_test = math.ceil(test_size * n)
    for part, size in (("test", n_test), ("train", n - n_test)):
        if size < len(counts):
            change, bound = ("raise", len(counts) / n) if part == "test" else ("lower", 1 - len(counts) / n)
            raise input_error(source, f"test_size={test_size} leaves {size} of the {n} rows for {part}, fewer than the "
                                      f"{len(counts)} classes (a stratified split puts every class in both parts)",
                              f"{change} test_size (to about {bound:.2f}) or add rows")


def _pick_splits(src: _Source) -> tuple[dict[str, str], bool]:
    """Which splits of the source ``load_labelled`` uses, as ``{role: split}``, and whether the held-out split is
    given (True) or cut from ``train`` (False). The rows of one named split never go into another:

    - ``train`` and ``test`` (and ``validation``, kept as ``validation``): used as they are;
    - ``train`` and ``validation``, no ``test``: ``validation`` is the held-out ``test`` split;
    - ``train`` alone: ``test`` is cut off it (stratified); any other split (a Hub dataset's ``unsupervised``) is
      left out;
    - none of these names (one split called ``full``, or one per class): all of them are pooled, then split.

    Raises:
        InputError: a ``test`` or ``validation`` split without a ``train`` split (its rows would be trained on).
    """
    held = next((s for s in ("test", "validation") if s in src.data), None)
    if "train" in src.data and held:
        roles = {"train": "train"}
        if held == "test" and "validation" in src.data:
            roles["validation"] = "validation"
        return {**roles, "test": held}, True
    if held:
        fix = (f"add the training rows as a train split (train.csv beside {Path(src.where(held)).name}), or give one "
               "file alone to have a test split cut off it") if src.local else "use a dataset that has a train split"
        raise input_error(src.name, f"has a {held} split ({src.where(held)}) but no train split, and held-out rows "
                                    "must not be trained on", fix)
    if "train" in src.data:
        return {"train": "train"}, False
    return {split: split for split in src.data}, False


def _stratified_split(part: datasets.Dataset, n_test: int, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """``part.train_test_split(test_size=n_test, stratify_by_column="label", seed=seed)`` as (train, test): the
    same rows (``datasets``' own index generator, seeded the same way), without its row-by-row read of the label
    column, which takes seconds on 50,000 rows (tests/test_classification.py compares the two)."""
    from datasets.utils.stratify import stratified_shuffle_split_generate_indices

    labels = np.asarray(part["label"][:])
    train, test = next(stratified_shuffle_split_generate_indices(labels, len(part) - n_test, n_test,
                                                                 rng=np.random.default_rng(seed)))
    return part.select(train), part.select(test)


def load_labelled(
    source: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    test_size: float = 0.25,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Load labelled text into ``{"train", "test"}`` with columns ``text`` (str) and ``label`` (int id).

    Args:
        source: a ``.csv``/``.tsv``/``.json``/``.jsonl`` file, a folder of them (``train.csv`` + ``test.csv``),
            a Hub dataset id (``"fancyzhx/ag_news"``) or one of the course's :data:`COURSE_DATA` names
            (``"movie-reviews"``, ``"support-tickets"``).
        text_column, label_column: the columns holding the text and its label (any names).
        test_size: share of rows held out for ``test`` when the source has no ``test`` (or ``validation``) split
            (the split is stratified: every class keeps its share in both parts).
        seed: seed of the split.

    Splits the source names are kept apart, never pooled and re-split: a folder's files are read by name
    (``train*``, ``validation*``/``dev*``/``val*``, ``test*``/``eval*``), like a Hub dataset's splits. With
    ``train`` and ``test`` both are used as given (a ``validation`` split too, returned as ``validation``: then
    the result is ``{"train", "validation", "test"}``); with ``train`` and ``validation`` but no ``test``, the
    ``validation`` rows are the ``test`` split; with ``train`` alone, ``test`` is cut off it (``test_size``);
    a ``test`` or ``validation`` split without ``train`` is an error.

    A CSV/TSV cell is read as the text written in it: ``007``, ``NaN``, ``NA``, ``None`` and ``True`` stay those
    strings (as texts, and as class names). The label names (sorted; whole numbers in numeric order; or the
    dataset's own ``ClassLabel`` names) are kept in the ``label`` feature: :func:`label_names` reads them back.

    Everything is checked before the data is used. Messages name a local file's rows by their line in the
    file (the header is line 1; a ``.json`` list by ``record i``, from 0), other rows as ``row i`` (from 0
    in their split). Decisions: labels spelled two ways (``"Billing"`` / ``"billing "``, ``"7"`` / ``"007"``) are
    an error, not silently merged; the same text with two labels is an error; the same text in two given splits,
    or twice in a source that is about to be split (a leaking split), is an error for local data, while for a Hub
    dataset (which cannot be fixed here) the later copies are dropped with a warning.

    Raises:
        InputError: a ``source`` that is None, empty or not a path; a bad ``test_size``, ``seed`` or column name;
            anything :func:`_read_source` refuses (a missing path, an empty, header-only or non-UTF-8 file, a
            broken JSON line, a folder file that no split takes, a name that is no local path while the Hub is
            offline, ...); a ``test``/``validation`` split without ``train``; an unknown column (the existing ones
            are listed, with a hint when a wrong delimiter left one column); an empty text or label, a text that
            is not a string, labels spelled in several ways, fewer than 2 classes, a held-out class never seen in
            train, the same text with two labels, a leaking split, a class with one example or a ``test_size``
            that leaves fewer rows than classes on one side.
    """
    source = _check_source(source)
    _check_share(test_size)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise input_error(f"seed={seed!r}", "expected a whole number >= 0", "use e.g. seed=0")
    if text_column == label_column:
        raise input_error(f"text_column=label_column={text_column!r}", "the text and the label must be two columns",
                          "name the column holding the label in label_column")
    if isinstance(source, str) and source in COURSE_DATA and not Path(source).exists():
        source = course_data_path(source)
    src = _read_source(source)
    roles, given = _pick_splits(src)
    used = list(roles.values())
    for split_name in used:
        split = src.data[split_name]
        for role, column in (("text_column", text_column), ("label_column", label_column)):
            if column not in split.column_names:
                hint = ""
                if len(split.column_names) == 1:
                    seps = [s for s in (",", ";", "\t", "|") if s in split.column_names[0]]
                    if seps:
                        hint = (f" (one column only: the file seems separated by {seps[0]!r}; name a tab-separated "
                                "file .tsv, a comma-separated one .csv, and re-save other separators with commas)")
                raise input_error(src.where(split_name), f"{role}={column!r} is not a column; columns: "
                                                         f"{split.column_names}{hint}",
                                  f"pass {role}= one of those column names")
        if len(split) == 0:
            raise input_error(src.where(split_name), "has no rows", "use a split with data, or add rows")
    # whole columns at once: indexing a datasets column row by row took ~7 s for 50,000 rows
    raw_labels = {s: src.data[s][label_column][:] for s in used}
    names, to_id = _check_labels(src, label_column, raw_labels)
    present = {v for part in raw_labels.values() for v in part}
    if len(present) < 2:
        raise input_error(src.name, f"label_column={label_column!r} holds {len(present)} class "
                                    f"({sorted(map(str, present))}); a classifier needs at least 2 classes",
                          "add examples of at least one other class, or pick the right label column")
    texts, labels = {}, {}
    for split_name in used:
        texts[split_name] = src.data[split_name][text_column][:]
        _check_texts(texts[split_name], src.where(split_name), src.row_names(split_name))
        labels[split_name] = [to_id[v] for v in raw_labels[split_name]]
    if given:
        for split_name in used[1:]:
            unseen = sorted({names[i] for i in labels[split_name]} - {names[i] for i in labels["train"]})
            if unseen:
                raise input_error(src.where(split_name), f"the class(es) {unseen} are in the {split_name} split but "
                                                         "never in train",
                                  f"add training examples of them, or drop them from the {split_name} split")
    keep = _check_duplicates(src, texts, labels, names, given)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    parts = {split: datasets.Dataset.from_dict({"text": [texts[split][i] for i in keep[split]],
                                                "label": [labels[split][i] for i in keep[split]]}, features=features)
             for split in used}
    if given:
        return datasets.DatasetDict({role: parts[split] for role, split in roles.items()})
    everything = datasets.concatenate_datasets(list(parts.values())) if len(parts) > 1 else parts[used[0]]
    counts = dict(zip(names, np.bincount(everything["label"][:], minlength=len(names)).tolist(), strict=True))
    _check_split_sizes({k: c for k, c in counts.items() if c}, len(everything), float(test_size), src.name)
    train, test = _stratified_split(everything, math.ceil(test_size * len(everything)), seed)
    return datasets.DatasetDict({"train": train, "test": test})


def label_names(dataset: datasets.DatasetDict | datasets.Dataset) -> list[str]:
    """Class names in id order (``label_names(ds)[i]`` is the name of id ``i``)."""
    split = dataset["train"] if isinstance(dataset, datasets.DatasetDict) else dataset
    return list(split.features["label"].names)


def class_balance(dataset: datasets.DatasetDict) -> dict[str, dict[str, int]]:
    """``{split: {class name: number of rows}}``."""
    names = label_names(dataset)
    return {split: {names[i]: int(n) for i, n in enumerate(np.bincount(part["label"][:], minlength=len(names)))}
            for split, part in dataset.items()}


def _class_takes(labels: list[int], n: int, at_least: dict[int, int] | None = None) -> dict[int, int]:
    """Rows per class for a stratified subset of ``n``: each class's exact share ``n * count / total`` rounded by
    largest remainders, never below ``at_least`` (the takes of a smaller nested subset: rounding each size on its
    own can give a class fewer rows at a larger size, the Alabama paradox)."""
    counts: dict[int, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    exact = {c: n * m / len(labels) for c, m in counts.items()}
    take = {c: math.floor(q) for c, q in exact.items()}
    for c in sorted(exact, key=lambda c: (take[c] - exact[c], c))[:n - sum(take.values())]:
        take[c] += 1
    floor = at_least or {}
    for c in take:  # raise the classes below the smaller subset's takes, then give the surplus back
        take[c] = max(take[c], floor.get(c, 0))
    for c in sorted(take, key=lambda c: (exact[c] - take[c], c)):
        while sum(take.values()) > n and take[c] > floor.get(c, 0):
            take[c] -= 1
    return take


def nested_subsets(labels: list[int], sizes: list[int], seed: int = 0) -> dict[int, list[int]]:
    """Row indices of stratified subsets of ``sizes`` (increasing) rows that nest: each size's rows are among the
    next size's, and each class keeps its share within one row (:func:`_class_takes`)."""
    out, takes = {}, None
    for n in sizes:
        takes = _class_takes(labels, n, at_least=takes)
        out[n] = _stratified_indices(labels, n, seed, take=takes)
    return out


def _stratified_indices(labels: list[int], n: int, seed: int, take: dict[int, int] | None = None) -> list[int]:
    """``n`` row indices with each class's share (largest remainders, or ``take`` rows per class), seeded; for the
    sizes where ``train_test_split``'s stratification cannot work (a class of one row, or fewer rows left than
    classes). With one ``seed``, a class's rows for a smaller ``take`` are among those for a larger one."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    take = take or _class_takes(labels, n)
    picked = [int(i) for c, rows in sorted(by_class.items()) for i in rng.permutation(rows)[:take[c]]]
    return [int(i) for i in rng.permutation(picked)]


def subsample(dataset: datasets.DatasetDict, train_size: int, test_size: int, seed: int = 0) -> datasets.DatasetDict:
    """A stratified subset of ``train`` and ``test`` (e.g. 2,000 of AG News' 120,000 training rows), same class
    shares; any other split (``validation``) is kept whole.

    A size equal to its split's length keeps the split whole.

    Raises:
        InputError: ``dataset`` has no ``train`` and ``test`` split; a size that is not a whole number, is
            <= 0, larger than its split, or smaller than the number of classes in its split (every class
            keeps at least one row).
    """
    if not isinstance(dataset, datasets.DatasetDict) or not {"train", "test"} <= set(dataset):
        found = list(dataset) if isinstance(dataset, datasets.DatasetDict) else type(dataset).__name__
        raise input_error("subsample(dataset)", f"expected a DatasetDict with 'train' and 'test' splits, got {found}",
                          "pass what load_labelled returns")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise input_error(f"seed={seed!r}", "expected a whole number >= 0", "use e.g. seed=0")
    out = dict(dataset)  # a validation split (hold_out_validation) is kept as it is
    for split, n in (("train", train_size), ("test", test_size)):
        part = dataset[split]
        name = f"{split}_size={n!r}"
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n <= 0:
            raise input_error(name, "expected a positive whole number of rows",
                              f"give how many of the {len(part)} {split} rows to keep, e.g. {min(len(part), 100)}")
        if n > len(part):
            raise input_error(name, f"asks for more rows than the {split} split has ({len(part)})",
                              f"ask for at most {len(part)} (that many keeps the split whole)")
        if n == len(part):
            out[split] = part
            continue
        labels = part["label"][:]
        counts = np.bincount(labels)
        classes = int(np.count_nonzero(counts))
        if n < classes:
            raise input_error(name, f"is fewer rows than the {classes} classes of the {split} split, so some class "
                                    "would have no row", f"ask for at least {classes} rows")
        if counts[counts > 0].min() < 2 or len(part) - n < classes:  # train_test_split cannot stratify these
            out[split] = part.select(_stratified_indices(labels, int(n), int(seed)))
        else:
            out[split] = _stratified_split(part, len(part) - int(n), int(seed))[0]
    return datasets.DatasetDict(out)


def hold_out_validation(dataset: datasets.DatasetDict, size: int, seed: int = 0) -> datasets.DatasetDict:
    """Split ``size`` rows (stratified) off ``train`` as ``validation``: ``{"train", "validation", "test"}``.

    Settings (learning rates, the number of epochs, TF-IDF's ``C``) are chosen on ``validation``; ``test`` is
    scored once, with the chosen settings.

    Raises:
        InputError: ``size`` is not a whole number, or leaves fewer ``train`` or ``validation`` rows than classes.
    """
    if not isinstance(dataset, datasets.DatasetDict) or not {"train", "test"} <= set(dataset):
        raise input_error("hold_out_validation(dataset)", "expected a DatasetDict with 'train' and 'test' splits",
                          "pass what load_labelled returns")
    train = dataset["train"]
    train_labels = train["label"][:]
    classes = int(np.count_nonzero(np.bincount(train_labels)))
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not classes <= size <= len(train) - classes:
        raise input_error(f"validation size={size!r}", f"must be a whole number from {classes} (one row per class) to "
                                                       f"{len(train) - classes} (the {len(train)} train rows less one "
                                                       "per class)", "choose e.g. a tenth of the training rows")
    counts = np.bincount(train_labels)
    if counts[counts > 0].min() < 2:
        rare = [label_names(dataset)[i] for i, m in enumerate(counts) if m == 1]
        raise input_error("hold_out_validation(dataset)", f"the class(es) {rare} have a single training row, which "
                          "cannot be in both the training and the validation split",
                          "add examples of them, or drop them from the data")
    kept, validation = _stratified_split(train, int(size), int(seed))
    return datasets.DatasetDict({"train": kept, "validation": validation, "test": dataset["test"]})


def encode_labels(labels: list[str], names: list[str]) -> list[int]:
    """Label names -> ids of a trained model.

    Raises:
        InputError: ``labels`` is one string instead of a list; a name the model never saw (a near
            spelling of a known name is pointed out).
    """
    if isinstance(labels, str):
        raise input_error("encode_labels(labels)", f"got one string ({labels!r}), not a list of labels",
                          "wrap a single label as [label]")
    unknown = sorted({str(x) for x in labels} - set(names))
    if unknown:
        known = {" ".join(n.split()).casefold(): n for n in names}
        near = [f"{u!r} looks like {known[k]!r}" for u in unknown if (k := " ".join(u.split()).casefold()) in known]
        hint = f" ({'; '.join(near)}: labels must be spelled exactly as in training)" if near else ""
        raise input_error("labels", f"label(s) {unknown} were never seen in training; this model knows {names}{hint}",
                          "use the model's label names, or train on data that has these classes")
    return [names.index(str(x)) for x in labels]
