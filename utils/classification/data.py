"""Your labelled text as a checked, stratified ``train``/``test`` split (and a ``validation`` split to choose
settings on): CSV, TSV, JSON or JSON Lines files, a Hub dataset or one of :data:`COURSE_DATA`."""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import warnings
from dataclasses import dataclass, field
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
        names = self.lines.get(split)
        return names[i] if names and len(names) == len(self.data[split]) else f"row {i}"


def _csv_lines(path: Path, text: str, delimiter: str) -> list[str]:
    """Check a CSV/TSV file's shape; the line on which each data row starts (the header is line 1)."""
    sep = "tab" if delimiter == "\t" else repr(delimiter)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
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
            lines.append(f"line {first}")
    except csv.Error as err:
        raise input_error(str(path), f"line {reader.line_num} cannot be read as {sep}-separated text ({err})",
                          "check the quotes on that line (a quote inside a text is written twice: \"\")") from None
    if header is None or not lines:
        raise input_error(str(path), f"has a header ({', '.join(header or [])}) but no data rows",
                          "add one row per example below the header, or point to the right file")
    return lines


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


def _check_file(path: Path) -> list[str]:
    """Read and check one local data file before ``datasets`` parses it; the name of each of its rows."""
    kind = _FILE_KINDS[path.suffix.lower()]
    text = read_text_file(path, f"{kind} file")
    if kind in ("CSV", "TSV"):
        return _csv_lines(path, text, "\t" if kind == "TSV" else ",")
    return _json_rows(path, text)


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


def _read_source(source: str | Path) -> _Source:
    """Load a data file, a folder of them or a Hub dataset, checking local files first.

    Raises:
        InputError: a path that does not exist, a folder where a file is expected, a file type that is not
            CSV/TSV/JSON/JSON Lines, an empty or header-only file, a file that is not UTF-8, a row with more
            fields than the header, a JSON syntax error (file and line), a folder without data files, an
            unknown Hub dataset.
    """
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in _FILE_KINDS and not path.is_dir():
        lines = _check_file(path)
        if suffix in (".csv", ".tsv"):
            data = _load_local(path, "csv", data_files=str(path), delimiter="\t" if suffix == ".tsv" else ",")
        else:
            data = _load_local(path, "json", data_files=str(path))
        return _Source(data, str(path), True, {"train": str(path)}, {"train": lines})
    if path.is_file():
        raise input_error(str(path), f"is a {suffix or 'suffix-less'} file; expected .csv, .tsv, .json or .jsonl",
                          "save it as one of those (from a spreadsheet: Save As 'CSV UTF-8')")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _FILE_KINDS and p.is_file())
        if not files:
            raise input_error(str(path), "is a folder without .csv, .tsv, .json or .jsonl files",
                              "give a data file, or a folder with e.g. train.csv and test.csv")
        names = {p: _check_file(p) for p in files}
        data = _load_local(path, str(path))
        by_split = {split: [p for p in files if p.stem.lower() == split.lower()] for split in data}
        mapped = {split: ps[0] for split, ps in by_split.items() if len(ps) == 1}
        return _Source(data, str(path), True, {s: str(p) for s, p in mapped.items()},
                       {s: names[p] for s, p in mapped.items()})
    looks_local = str(source).startswith((".", "/", "~")) or suffix in _FILE_KINDS or (
        "/" in str(source) and path.parent.is_dir() and str(path.parent) not in (".", ""))
    if looks_local:
        raise no_such_path(path, "data file or folder")
    try:
        loaded = datasets.load_dataset(str(source))  # a Hub dataset id, e.g. "fancyzhx/ag_news" (needs network)
    except FileNotFoundError:  # datasets' DatasetNotFoundError / DataFilesNotFoundError
        raise input_error(str(source), "is neither a local file or folder nor a Hub dataset id that exists",
                          "check the spelling: a local file ends in .csv, .tsv, .json or .jsonl, a Hub id looks "
                          "like 'fancyzhx/ag_news'") from None
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return _Source(loaded, str(source), False)


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


def _check_labels(src: _Source, label_column: str) -> tuple[list[str], dict[Any, int]]:
    """Class names in id order and value -> id; refuses empty, odd or inconsistently spelled labels."""
    first = next(iter(src.data))
    feature = src.data[first].features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        for split, part in src.data.items():
            for i, value in enumerate(part[label_column]):
                if value is None or not 0 <= value < len(names):
                    raise input_error(src.where(split), f"{src.row(split, i)} has the label {value!r}, not one of "
                                                        f"the class ids 0..{len(names) - 1} (-1 marks an unlabelled "
                                                        "row, as in the test splits of GLUE)",
                                      "use a labelled split: drop the unlabelled rows or that split")
        return names, {i: i for i in range(len(names))}
    spellings: dict[str, dict[Any, str]] = {}  # normalised -> {value: where it first appears}
    for split, part in src.data.items():
        for i, value in enumerate(part[label_column]):
            if _is_empty(value):
                raise input_error(src.where(split), f"{src.row(split, i)} has an empty label",
                                  "fill in the label or drop the row")
            if not isinstance(value, str | numbers.Number):
                raise input_error(src.where(split), f"{src.row(split, i)} has the label {value!r} "
                                                    f"({type(value).__name__}); expected a class name or number",
                                  f"pick the right label column (label_column={label_column!r} now)")
            spellings.setdefault(" ".join(str(value).split()).casefold(), {}).setdefault(
                value, f"{src.where(split)}, {src.row(split, i)}")
    variants = {key: seen for key, seen in spellings.items() if len(seen) > 1}
    if variants:
        shown = "; ".join(" vs ".join(f"{v!r} ({at})" for v, at in seen.items()) for seen in list(variants.values())[:3])
        raise input_error(f"label_column={label_column!r}", f"{len(variants)} class(es) are spelled in more than one "
                                                            f"way (case, spaces or text vs number): {shown}",
                          "spell each class one way in the file (e.g. strip spaces and lower-case the labels)")
    values = {v for seen in spellings.values() for v in seen}
    ordered = sorted(values) if len({type(v) for v in values}) == 1 else sorted(values, key=str)
    names = [str(v) for v in ordered]  # ints stay in numeric order (2 before 10)
    return names, {v: names.index(str(v)) for v in values}


def _check_duplicates(src: _Source, texts: dict[str, list[str]], labels: dict[str, list[int]],
                      names: list[str], given: bool) -> dict[str, list[int]]:
    """Identical texts (up to whitespace): with two labels (inconsistent labels), or in train and test / twice
    in the data about to be split (a leaking split). Returns, per split, the rows to keep: all of them for a
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
    leaks = [r for r in conflicts + repeats if not given or {r[0], r[2]} == {"train", "test"}]
    if leaks:
        shown = "; ".join(f"{texts[s][i][:50]!r} ({at(s0, i0)} and {at(s, i)})" for s0, i0, s, i in leaks[:3])
        if given:
            problem = f"{len(leaks)} text(s) of the test split are also in the train split (a leaking split), e.g. {shown}"
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
        test_size: share of rows held out for ``test`` when the source has no ``test`` split
            (the split is stratified: every class keeps its share in both parts).
        seed: seed of the split.

    The label names (sorted, or the dataset's own ``ClassLabel`` names) are kept in the ``label``
    feature: :func:`label_names` reads them back.

    Everything is checked before the data is used. Messages name a local file's rows by their line in the
    file (the header is line 1; a ``.json`` list by ``record i``, from 0), other rows as ``row i`` (from 0
    in their split). Decisions: labels spelled two ways (``"Billing"`` / ``"billing "``) are an error, not
    silently merged; the same text with two labels is an error; the same text in train and test, or twice
    in a source that is about to be split (a leaking split), is an error for local data, while for a Hub
    dataset (which cannot be fixed here) the later copies are dropped with a warning.

    Raises:
        InputError: a bad ``test_size``, ``seed`` or column name; anything :func:`_read_source` refuses (a
            missing path, an empty, header-only or non-UTF-8 file, a broken JSON line, ...); an unknown
            column (the existing ones are listed, with a hint when a wrong delimiter left one column);
            an empty text or label, a text that is not a string, labels spelled in several ways, fewer than
            2 classes, a test class never seen in train, the same text with two labels, a leaking split, a
            class with one example or a ``test_size`` that leaves fewer rows than classes on one side.
    """
    _check_share(test_size)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise input_error(f"seed={seed!r}", "expected a whole number >= 0", "use e.g. seed=0")
    if text_column == label_column:
        raise input_error(f"text_column=label_column={text_column!r}", "the text and the label must be two columns",
                          "name the column holding the label in label_column")
    if isinstance(source, str) and source in COURSE_DATA and not Path(source).exists():
        source = course_data_path(source)
    src = _read_source(source)
    for split_name, split in src.data.items():
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
    names, to_id = _check_labels(src, label_column)
    present = {v for split in src.data.values() for v in split[label_column]}
    if len(present) < 2:
        raise input_error(src.name, f"label_column={label_column!r} holds {len(present)} class "
                                    f"({sorted(map(str, present))}); a classifier needs at least 2 classes",
                          "add examples of at least one other class, or pick the right label column")
    texts, labels = {}, {}
    for split_name, split in src.data.items():
        texts[split_name] = split[text_column]
        _check_texts(texts[split_name], src.where(split_name),
                     [src.row(split_name, i) for i in range(len(split))])
        labels[split_name] = [to_id[v] for v in split[label_column]]
    given = "train" in src.data and "test" in src.data
    if given:
        unseen = sorted({names[i] for i in labels["test"]} - {names[i] for i in labels["train"]})
        if unseen:
            raise input_error(src.where("test"), f"the class(es) {unseen} are in the test split but never in train",
                              "add training examples of them, or drop them from the test split")
        texts = {"train": texts["train"], "test": texts["test"]}
        labels = {"train": labels["train"], "test": labels["test"]}
    keep = _check_duplicates(src, texts, labels, names, given)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    parts = {split: datasets.Dataset.from_dict({"text": [texts[split][i] for i in keep[split]],
                                                "label": [labels[split][i] for i in keep[split]]}, features=features)
             for split in texts}
    if given:
        return datasets.DatasetDict({"train": parts["train"], "test": parts["test"]})
    everything = datasets.concatenate_datasets(list(parts.values()))
    counts = dict(zip(names, np.bincount(everything["label"], minlength=len(names)).tolist(), strict=True))
    _check_split_sizes({k: c for k, c in counts.items() if c}, len(everything), float(test_size), src.name)
    return everything.train_test_split(test_size=test_size, stratify_by_column="label", seed=seed)


def label_names(dataset: datasets.DatasetDict | datasets.Dataset) -> list[str]:
    """Class names in id order (``label_names(ds)[i]`` is the name of id ``i``)."""
    split = dataset["train"] if isinstance(dataset, datasets.DatasetDict) else dataset
    return list(split.features["label"].names)


def class_balance(dataset: datasets.DatasetDict) -> dict[str, dict[str, int]]:
    """``{split: {class name: number of rows}}``."""
    names = label_names(dataset)
    return {split: {names[i]: int(n) for i, n in enumerate(np.bincount(part["label"], minlength=len(names)))}
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
        labels = part["label"]
        counts = np.bincount(labels)
        classes = int(np.count_nonzero(counts))
        if n < classes:
            raise input_error(name, f"is fewer rows than the {classes} classes of the {split} split, so some class "
                                    "would have no row", f"ask for at least {classes} rows")
        if counts[counts > 0].min() < 2 or len(part) - n < classes:  # train_test_split cannot stratify these
            out[split] = part.select(_stratified_indices(labels, int(n), int(seed)))
        else:
            out[split] = part.train_test_split(train_size=int(n), stratify_by_column="label", seed=seed)["train"]
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
    classes = int(np.count_nonzero(np.bincount(train["label"])))
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not classes <= size <= len(train) - classes:
        raise input_error(f"validation size={size!r}", f"must be a whole number from {classes} (one row per class) to "
                                                       f"{len(train) - classes} (the {len(train)} train rows less one "
                                                       "per class)", "choose e.g. a tenth of the training rows")
    counts = np.bincount(train["label"])
    if counts[counts > 0].min() < 2:
        rare = [label_names(dataset)[i] for i, m in enumerate(counts) if m == 1]
        raise input_error("hold_out_validation(dataset)", f"the class(es) {rare} have a single training row, which "
                          "cannot be in both the training and the validation split",
                          "add examples of them, or drop them from the data")
    parts = train.train_test_split(test_size=int(size), stratify_by_column="label", seed=seed)
    return datasets.DatasetDict({"train": parts["train"], "validation": parts["test"], "test": dataset["test"]})


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
