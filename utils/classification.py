"""Text classification with a pretrained encoder or LLM: your data, five fine-tuning methods, one loop.

Shared by notebook 03 (LoRA rank ablation) and notebook 06 (head only vs last N layers vs all layers vs
LoRA vs QLoRA; its learning curve is :mod:`utils.experiments.learning_curve`). The steps, each a function:

1. :func:`load_labelled` reads a CSV/JSONL file (or a Hub dataset, or a :data:`COURSE_DATA` name) with a text
   and a label column, checks it, maps labels to ids and splits it (stratified) into ``train``/``test``;
   :func:`hold_out_validation` splits a ``validation`` set off ``train`` to choose settings on.
2. :func:`load_classifier` loads ``AutoModelForSequenceClassification`` with a new head and makes
   only the part that a method trains trainable (:data:`METHODS`).
3. :func:`train_and_evaluate` trains with ``transformers.Trainer`` (keeping the best epoch on ``validation``
   when there is one), scores the test split, saves what was trained and returns a :class:`RunResult`.
4. :func:`load_saved` + :func:`classify` predict labels and probabilities for new text.

The new classification head (``classifier`` in BERT-like models, ``score`` in decoder LLMs such as
Phi-2) is always trained in fp32 and never quantized: it starts from random numbers, so there are no
pretrained weights whose distribution NF4 was designed for, and it is small, so quantizing it saves
nothing while costing precision on the one layer that learns the most.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from utils import progress
from utils.bnb_cpu import keep_4bit_trainable
from utils.errors import input_error
from utils.evaluation.seeds import compare_over_seeds, verdict_against  # noqa: F401  (used here and as clf.*)
from utils.memory import model_storage_bytes, track_peak
from utils.models import bnb_4bit_config, load_model, mixed_precision, resolve_model_path
from utils.models.adapters import CLASSIFIER_HEADS, add_lora, count_parameters
from utils.qa.data import no_such_path, read_json_lines, read_text_file
from utils.report import REPO_ROOT

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

# method -> what it trains (the rest of the model stays frozen)
METHODS = {
    "head": "the new classification head only (frozen 16/32-bit base)",
    "last_n": "the head + the last N transformer blocks (frozen rest, 16/32-bit base)",
    "full": "every weight of the model and the head (full fine-tuning, 16/32-bit)",
    "lora": "the head + LoRA adapters on a frozen 16-bit base (32-bit on CPU)",
    "qlora": "the head + LoRA adapters on a frozen 4-bit NF4 base (double quantization)",
}
SPEC_FILE = "classifier_spec.json"


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


# ---------------------------------------------------------------------------------------- model
def head_name(model: torch.nn.Module) -> str:
    """Attribute name of the classification head (``classifier`` or ``score``) of an unwrapped model."""
    for name in CLASSIFIER_HEADS:
        if isinstance(getattr(model, name, None), torch.nn.Module):
            return name
    raise ValueError(f"{type(model).__name__} has no classification head named one of {CLASSIFIER_HEADS}.")


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer blocks (BERT ``encoder.layer``, Phi/Llama ``model.layers``, GPT-2 ``h``)."""
    stacks = [m for name, m in model.named_modules()
              if isinstance(m, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layer", "layers", "h", "blocks")]
    if not stacks:
        raise ValueError(f"found no stack of transformer blocks in {type(model).__name__}.")
    return max(stacks, key=len)


def load_classifier(
    model_id: str,
    num_labels: int,
    method: str,
    *,
    rank: int = 8,
    alpha: float = 16,
    target_modules: list[str] | str = "all-linear",
    use_rslora: bool = False,
    last_n: int = 2,
    seed: int = 0,
    id2label: dict[int, str] | None = None,
) -> tuple[torch.nn.Module, Any]:
    """A pretrained model with a new ``num_labels``-way head, made trainable as ``method`` says.

    Args:
        model_id: Hub id (MiniLM resolves to its packaged copy), e.g. ``"microsoft/phi-2"``.
        num_labels: number of classes (>= 2).
        method: one of :data:`METHODS`: ``"head"``, ``"last_n"``, ``"full"``, ``"lora"``, ``"qlora"``.
        rank, alpha, target_modules, use_rslora: LoRA settings (``lora``/``qlora`` only; rsLoRA scales the
            update by ``alpha / sqrt(rank)`` instead of ``alpha / rank``).
        last_n: how many final transformer blocks ``last_n`` trains.
        seed: seeds the random initialisation of the head (and of LoRA's A matrices).
        id2label: class names, stored in the model config.

    Returns:
        ``(model, tokenizer)``. Trainable parameters are fp32 (the head always is); for decoder
        models without a pad token (Phi-2) the tokenizer pads with EOS and the config knows it.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}.")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
        raise ValueError(f"num_labels must be an integer >= 2, got {num_labels!r}.")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model_id))
    if tokenizer.pad_token is None:  # decoder LLMs (Phi-2) ship without one
        tokenizer.pad_token = tokenizer.eos_token
    id2label = {int(k): str(v) for k, v in (id2label or {i: f"LABEL_{i}" for i in range(num_labels)}).items()}
    if len(id2label) != num_labels:
        raise ValueError(f"id2label has {len(id2label)} names but num_labels={num_labels}.")
    quantization = bnb_4bit_config("nf4", double_quant=True, skip_modules=list(CLASSIFIER_HEADS)) if method == "qlora" else None
    transformers.set_seed(seed)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the load report lists the new head as "missing": it is new by design
    try:
        model = load_model(
            model_id, AutoModelForSequenceClassification, quantization, num_labels=num_labels,
            id2label=id2label, label2id={v: k for k, v in id2label.items()}, pad_token_id=tokenizer.pad_token_id,
        )
    finally:
        transformers.logging.set_verbosity(verbosity)
    head = head_name(model)
    if method == "full":
        model.requires_grad_(True)
    elif method in ("head", "last_n"):
        model.requires_grad_(False)
        getattr(model, head).requires_grad_(True)
        if method == "last_n":
            blocks = transformer_blocks(model)
            if isinstance(last_n, bool) or not isinstance(last_n, int) or not 1 <= last_n <= len(blocks):
                raise ValueError(f"last_n must be an integer in [1, {len(blocks)}] for this model, got {last_n!r}.")
            for block in blocks[-last_n:]:
                block.requires_grad_(True)
    else:
        model = add_lora(model, rank=rank, alpha=alpha, target_modules=target_modules,
                         task_type="SEQ_CLS", modules_to_save=[head], use_rslora=use_rslora)
    for p in model.parameters():  # train in fp32 even on a 16-bit base (GradScaler needs fp32 grads)
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    model.classifier_spec = {"model_id": model_id, "num_labels": num_labels, "method": method, "rank": rank,
                             "alpha": alpha, "target_modules": target_modules, "use_rslora": use_rslora, "last_n": last_n,
                             "id2label": id2label}
    return model, tokenizer


# ------------------------------------------------------------------------------------- training
@dataclass
class RunResult:
    """What one training run measured.

    ``peak_bytes``: on a GPU the peak of allocated tensors during training; on the CPU the process's
    peak resident memory so far (it never goes down, so on CPU compare ``model_bytes`` instead).
    ``adapter_bytes``: bytes on disk of what was saved (adapter + head, or the trained layers).
    ``confusion[i][j]``: test rows of true class i predicted as class j.
    """

    accuracy: float
    macro_f1: float
    trainable_params: int
    total_params: int
    seconds: float
    peak_bytes: int
    adapter_bytes: int | None
    confusion: list[list[int]]
    loss_history: list[float]
    model_bytes: int = 0  # parameter + buffer storage of the model (4-bit weights count packed)
    predictions: list[int] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch kept (best validation macro-F1); None without a validation split
    validation_history: list[float] = field(default_factory=list)  # validation macro-F1 after each epoch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tokenize(dataset: datasets.DatasetDict, tokenizer: Any, max_length: int) -> datasets.DatasetDict:
    """Token ids (truncated to ``max_length``) and ``labels``; the raw text column is dropped."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}.")
    with progress.no_library_bars():  # a "Map" bar per run is noise (and a frozen widget in a saved notebook)
        encoded = dataset.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
                              batched=True, remove_columns=["text"])
    return encoded.rename_column("label", "labels")


def save_trained(model: torch.nn.Module, output_dir: str | Path) -> int:
    """Save only what was trained (peft adapter + head, or the trainable tensors); return bytes on disk."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(out)
    else:
        trained = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(trained, out / "trainable.safetensors")
    spec = getattr(model, "classifier_spec", None)
    if spec is not None:
        (out / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    return sum(f.stat().st_size for f in out.iterdir() if f.is_file())


def load_saved(path: str | Path) -> tuple[torch.nn.Module, Any, dict[int, str]]:
    """Rebuild a model saved by :func:`train_and_evaluate`: ``(model, tokenizer, id2label)``."""
    path = Path(path)
    if not (path / SPEC_FILE).is_file():
        raise FileNotFoundError(f"{path} holds no {SPEC_FILE}: save with train_and_evaluate(..., output_dir).")
    spec = json.loads((path / SPEC_FILE).read_text())
    id2label = {int(k): v for k, v in spec.pop("id2label").items()}
    model_id, num_labels, method = spec.pop("model_id"), spec.pop("num_labels"), spec.pop("method")
    model, tokenizer = load_classifier(model_id, num_labels, method, id2label=id2label, **spec)
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"))
    else:
        state = load_file(path / "trainable.safetensors")
        missing = set(state) - {n for n, _ in model.named_parameters()}
        if missing:
            raise ValueError(f"saved tensors {sorted(missing)[:5]} do not fit {model_id} ({method}).")
        model.load_state_dict(state, strict=False)
    return model.eval(), tokenizer, id2label


@torch.no_grad()
def predict_logits(model: torch.nn.Module, tokenizer: Any, texts: list[str], *, max_length: int,
                   batch_size: int = 64) -> np.ndarray:
    """The head's outputs for ``texts``: float32 array of shape ``(len(texts), num_labels)``, in input order.

    Texts are batched by length (less padding) and truncated to ``max_length`` tokens; the model is left in
    the train/eval mode it came in.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[np.ndarray] = [np.empty(0)] * len(texts)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in chunk], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt").to(device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                logits = model(**batch).logits.float().cpu().numpy()
            for i, row in zip(chunk, logits, strict=True):
                out[i] = row
    finally:
        model.train(was_training)
    return np.stack(out)


def scores(truth: list[int] | np.ndarray, predicted: list[int] | np.ndarray, num_labels: int) -> dict[str, float]:
    """``{"accuracy", "macro_f1"}`` of integer predictions (every class ``0..num_labels-1`` counts in the mean)."""
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", labels=list(range(num_labels)),
                                       zero_division=0))}


class _BestOnValidation(transformers.TrainerCallback):
    """After every epoch: score the validation split; keep a copy of the trainable tensors of the best epoch."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, split: datasets.Dataset, max_length: int,
                 batch_size: int, num_labels: int) -> None:
        self.model, self.tokenizer, self.split = model, tokenizer, split
        self.max_length, self.batch_size, self.num_labels = max_length, batch_size, num_labels
        self.history: list[float] = []  # validation macro-F1 after each epoch
        self.best_epoch, self.best_state, self.seconds = 0, None, 0.0

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import time

        start = time.perf_counter()
        logits = predict_logits(self.model, self.tokenizer, self.split["text"], max_length=self.max_length,
                                batch_size=self.batch_size)
        f1 = scores(self.split["label"], logits.argmax(-1), self.num_labels)["macro_f1"]
        self.history.append(f1)
        if f1 > max(self.history[:-1], default=-1.0):
            self.best_epoch = len(self.history)
            self.best_state = {n: p.detach().to("cpu", copy=True) for n, p in self.model.named_parameters()
                               if p.requires_grad}
        self.seconds += time.perf_counter() - start

    def restore_best(self) -> None:
        """Put the best epoch's trainable tensors back into the model."""
        if self.best_state is None:
            return
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                if name in self.best_state:
                    param.copy_(self.best_state[name].to(param.device))


def train_and_evaluate(
    model: torch.nn.Module,
    tokenizer: Any,
    dataset: datasets.DatasetDict,
    *,
    epochs: float,
    lr: float,
    batch_size: int,
    max_length: int,
    seed: int,
    output_dir: str | Path,
    optimizer: str = "paged_adamw_8bit",
) -> RunResult:
    """Train on ``dataset["train"]`` with ``transformers.Trainer``, score ``dataset["test"]``, save.

    Args:
        dataset: ``train`` and ``test`` splits (:func:`load_labelled`), and optionally ``validation``
            (:func:`hold_out_validation`): then the model is scored on it after every epoch and the epoch with
            the best validation macro-F1 is the one kept, scored on ``test`` and saved (early stopping chosen
            on validation, never on test).
        epochs, lr, batch_size: the training budget (linear decay, no warm-up, no weight decay).
        max_length: tokens per text (longer texts are truncated).
        seed: seeds the data order and dropout (the head was seeded by :func:`load_classifier`).
        output_dir: where the trained part is saved (see :func:`save_trained`); a folder that already holds
            files is refused, so an earlier run is never overwritten. The Trainer keeps no checkpoints.
        optimizer: a ``TrainingArguments.optim`` name; QLoRA's paged 8-bit AdamW by default.

    Returns:
        A :class:`RunResult`: accuracy and macro-F1 on the test split, parameter counts, training
        wall time (validation scoring excluded) and peak memory (``utils.memory.track_peak``), size on disk of
        what was saved, and with a validation split the kept epoch and the validation macro-F1 of every epoch.

    Raises:
        FileExistsError: ``output_dir`` already holds files.
    """
    _check_empty_folder(output_dir)
    num_labels = len(label_names(dataset))
    encoded = tokenize(datasets.DatasetDict({"train": dataset["train"]}), tokenizer, max_length)
    steps = math.ceil(len(encoded["train"]) / batch_size) * epochs
    args = transformers.TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=epochs, learning_rate=lr,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=2 * batch_size,
        optim=optimizer, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
        seed=seed, data_seed=seed, logging_steps=max(1, int(steps // 40)), save_strategy="no",
        eval_strategy="no", report_to="none", **mixed_precision("auto"),
        remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning needs a GPU (torch warns on a CPU)
    )
    keep_4bit_trainable(model)  # undo any CPU inference repacking an earlier eval pass did (utils.bnb_cpu)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=encoded["train"],
                                   data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    best = None
    if "validation" in dataset:
        best = _BestOnValidation(model, tokenizer, dataset["validation"], max_length, 2 * batch_size, num_labels)
        trainer.add_callback(best)
    progress.quiet(trainer, bar=False)  # no per-run table or log lines: callers show one bar over their runs
    with track_peak() as peak:
        trainer.train()
    if best is not None:
        best.restore_best()
    logits = predict_logits(model, tokenizer, dataset["test"]["text"], max_length=max_length,
                            batch_size=2 * batch_size)
    predicted = logits.argmax(-1)
    truth = np.asarray(dataset["test"]["label"])
    counts = count_parameters(model)
    return RunResult(
        **scores(truth, predicted, num_labels),
        trainable_params=counts["trainable"], total_params=counts["total"],
        seconds=peak.seconds - (best.seconds if best else 0.0), peak_bytes=peak.bytes,
        adapter_bytes=save_trained(model, output_dir),
        confusion=confusion_matrix(truth, predicted, labels=list(range(num_labels))).tolist(),
        loss_history=[float(e["loss"]) for e in trainer.state.log_history if "loss" in e],
        model_bytes=model_storage_bytes(model)["total"],
        predictions=predicted.tolist(),
        best_epoch=best.best_epoch if best else None,
        validation_history=best.history if best else [],
    )


def _check_empty_folder(folder: str | Path) -> None:
    """Refuse to write a run into a folder that already holds files (an earlier run's results)."""
    path = Path(folder)
    if path.is_dir() and any(path.iterdir()):
        raise FileExistsError(f"{path} already holds files of an earlier run; nothing was overwritten. Pass a new "
                              "folder (utils.classification.new_run_folder gives one), or delete this one yourself.")


def new_run_folder(root: str | Path, dataset: str) -> Path:
    """A new, empty folder ``root/<dataset name>/run<k>`` (k = 1, 2, ...) for one notebook run's classifiers.

    Runs on different data go to different folders, and a second run on the same data to the next ``run<k>``:
    nothing saved earlier is overwritten.
    """
    name = Path(str(dataset).rstrip("/")).stem if Path(str(dataset)).suffix else str(dataset).rstrip("/")
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name.rsplit("/", 1)[-1]).strip("-.") or "data"
    parent = Path(root) / slug
    parent.mkdir(parents=True, exist_ok=True)
    k = 1
    while True:
        folder = parent / f"run{k}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            k += 1


def majority_baseline(dataset: datasets.DatasetDict) -> dict[str, float]:
    """Accuracy and macro-F1 on ``test`` of always predicting the most frequent ``train`` class."""
    train = np.asarray(dataset["train"]["label"])
    truth = np.asarray(dataset["test"]["label"])
    predicted = np.full_like(truth, np.bincount(train).argmax())
    return scores(truth, predicted, len(label_names(dataset)))


TFIDF_C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)  # inverse regularisation strengths tried on the validation split


def _tfidf_model(train: datasets.Dataset, seed: int) -> tuple[Any, Any, Any]:
    """``(vectorizer, train features, fit(C))``: TF-IDF of word unigrams and bigrams (sublinear term frequency)
    over ``train``, and a function fitting the logistic regression with regularisation ``C``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform(train["text"])

    def fit(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(features, train["label"])

    return vectorizer, features, fit


def tfidf_baseline(dataset: datasets.DatasetDict, seed: int = 0,
                   c_grid: tuple[float, ...] = TFIDF_C_GRID) -> dict[str, Any]:
    """The classical model a practitioner tries first: TF-IDF features of word unigrams and bigrams
    (sublinear term frequency) and a logistic regression, fit on ``train``, scored on ``test`` with the
    same metrics as the fine-tuned models. No pretrained weights, no GPU; deterministic for a ``seed``.

    With a ``validation`` split, the regularisation strength ``C`` is the one of ``c_grid`` with the best
    validation macro-F1 (its settings are tuned like the fine-tuned methods' learning rates); without one,
    scikit-learn's default ``C = 1``.

    Returns:
        ``{"accuracy", "macro_f1", "features", "seconds", "C"}`` (``seconds``: fitting and scoring, all ``C``s).
    """
    import time

    start = time.perf_counter()
    num_labels = len(label_names(dataset))
    vectorizer, features, fit = _tfidf_model(dataset["train"], seed)
    best_c = 1.0
    if "validation" in dataset:
        held = vectorizer.transform(dataset["validation"]["text"])
        tried = {c: scores(dataset["validation"]["label"], fit(c).predict(held), num_labels)["macro_f1"]
                 for c in c_grid}
        best_c = max(tried, key=lambda c: (tried[c], -abs(math.log(c))))  # ties: the C nearest 1
    predicted = fit(best_c).predict(vectorizer.transform(dataset["test"]["text"]))
    return {**scores(np.asarray(dataset["test"]["label"]), predicted, num_labels),
            "features": int(features.shape[1]), "seconds": time.perf_counter() - start, "C": best_c}


def tfidf_predict(dataset: datasets.DatasetDict, texts: list[str], c: float, seed: int = 0) -> np.ndarray:
    """Class ids predicted for ``texts`` by the TF-IDF + logistic regression model fit on ``dataset["train"]``
    with regularisation ``c`` (the ``"C"`` that :func:`tfidf_baseline` chose), e.g. for an out-of-domain test."""
    vectorizer, _, fit = _tfidf_model(dataset["train"], seed)
    return fit(c).predict(vectorizer.transform(list(texts)))


# ----------------------------------------------------------------------------------- prediction
def classify(texts: list[str], model: torch.nn.Module, tokenizer: Any, id2label: dict[int, str],
             max_length: int = 512, batch_size: int = 64) -> list[dict[str, Any]]:
    """Predict each text's class: ``[{"label": name, "probs": {name: probability}}]`` (probs sum to 1).

    Texts go through the model ``batch_size`` at a time (:func:`predict_logits`), so a long list fits in memory.

    Raises:
        TypeError: ``texts`` is a bare string or holds non-strings. ValueError: empty list or empty text.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings; wrap a single text as [text].")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: give at least one text to classify.")
    _check_texts(texts, "classify(texts)")
    id2label = {int(k): v for k, v in id2label.items()}
    model.eval()
    logits = torch.from_numpy(predict_logits(model, tokenizer, texts, max_length=max_length, batch_size=batch_size))
    probs = torch.softmax(logits, dim=-1)
    names = [id2label[i] for i in range(probs.shape[-1])]
    return [{"label": names[int(row.argmax())], "probs": dict(zip(names, row.tolist(), strict=True))}
            for row in probs]


def score(texts: list[str], labels: list[str], model: torch.nn.Module, tokenizer: Any,
          id2label: dict[int, str]) -> dict[str, float]:
    """Accuracy and macro-F1 of ``model`` on new labelled texts (labels by name, all seen in training)."""
    names = [id2label[i] for i in sorted(id2label)]
    truth = encode_labels(labels, names)
    predicted = [names.index(p["label"]) for p in classify(texts, model, tokenizer, id2label)]
    return scores(truth, predicted, len(names))
