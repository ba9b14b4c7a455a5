"""Question-answering data for causal-LM fine-tuning: load, check, prompt, tokenize.

Rows are plain dicts ``{"id", "question", "context", "answers": {"text": [str, ...], "answer_start": [int, ...]}}``
(the SQuAD v1.1 layout that the Hub's ``squad`` dataset also uses). A prompt follows the base model's own
format (:class:`PromptFormat`): Phi-2's documented ``"Instruct: <prompt>\\nOutput:"`` (microsoft/phi-2 model
card), or a chat model's chat template (SmolLM2-Instruct); the model learns to continue it with the answer and
its end token. Only the answer tokens carry a loss.
"""

from __future__ import annotations

import dataclasses
import random
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.errors import InputError, input_error
from utils.files import is_int, json_type, parse_json, read_json_lines, read_text_file, short_repr
from utils.models.architectures import PROMPT_STYLES, architecture_of
from utils.qa.config import TEXT_FORMATS

REQUIRED_FIELDS = ("question", "context", "answers")
INSTRUCTION = "Answer the question with a short span copied from the context."
IGNORE_INDEX = -100  # label value that the cross-entropy loss skips


# --------------------------------------------------------------------------------------- loading
_SQUAD_LAYOUT = ('{"data": [{"title": ..., "paragraphs": [{"context": ..., "qas": [{"id": ..., "question": ..., '
                 '"answers": [{"text": ..., "answer_start": ...}]}]}]}]}')
_RECORDS_LAYOUT = '[{"question": ..., "context": ..., "answers": ...}, ...]'  # a .json list of records (load_qa_split)
_SQUAD_EXPECTED = "SQuAD v1.1 JSON ({'data': [...]})"


def _field(record: Any, key: str, src: str, at: str, kind: type | tuple[type, ...], expected: str) -> Any:
    """``record[key]`` of a SQuAD file, checked to be present and of the right JSON type."""
    if not isinstance(record, Mapping):
        raise input_error(src, f"{at} is {json_type(record)}, not an object",
                          f"follow the SQuAD v1.1 layout {_SQUAD_LAYOUT}")
    if key not in record:
        raise input_error(src, f"{at} has no {key!r} field (its fields are {sorted(record)}); expected {expected}",
                          f"add {key!r}, following the SQuAD v1.1 layout {_SQUAD_LAYOUT}")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise input_error(src, f"{at}: {key!r} is {json_type(value)} ({short_repr(value)}); expected {expected}",
                          f"make {key!r} {expected}")
    return value


def _check_answers(texts: Sequence[Any], starts: Sequence[Any], context: str, src: str, at: str,
                   unknown_start_ok: bool) -> None:
    """Every answer text is a non-empty string found at its ``answer_start`` in ``context``.

    ``answer_start`` -1 means "position unknown" where ``unknown_start_ok`` (answers given as plain
    strings, guanaco replies); a SQuAD file gives every position.
    """
    if not texts:
        raise input_error(src, f"{at}: 'answers' holds no non-empty answer text (the list is empty)",
                          "give at least one answer (a span of the context) or drop the question")
    if len(starts) != len(texts):
        raise input_error(src, f"{at}: 'answers' has {len(texts)} text(s) but {len(starts)} answer_start value(s)",
                          "give one answer_start per answer text")
    for k, (text, start) in enumerate(zip(texts, starts, strict=True)):
        where = at if len(texts) == 1 else f"{at}, answer {k}"
        if not isinstance(text, str) or not text.strip():
            raise input_error(src, f"{where}: 'answers' holds no non-empty answer text (got {short_repr(text)})",
                              "fill in the answer text (a span of the context) or drop the question")
        found = context.find(text)
        recompute = (f"recompute it as context.find(answer_text) (= {found} here)" if found >= 0 else
                     f"correct the answer text or the context: {short_repr(text)} does not occur in the context at all")
        if not is_int(start):
            raise input_error(src, f"{where}: answer_start is {short_repr(start)}, not a whole number (a character "
                                   "offset in the context)", recompute)
        if start == -1 and unknown_start_ok:
            continue
        if not 0 <= start <= len(context) - len(text):
            raise input_error(src, f"{where}: answer_start={start} is outside its context (the answer {short_repr(text)} "
                                   f"has {len(text)} characters, the context {len(context)})", recompute)
        held = context[start:start + len(text)]
        if held != text:
            raise input_error(src, f"{where}: the answer {short_repr(text)} is not at answer_start={start} of its "
                                   f"context, which holds {short_repr(held)} there", recompute)


def load_squad_json(path: str | Path) -> list[dict[str, Any]]:
    """Flatten a SQuAD v1.1 JSON file (``data -> paragraphs -> qas``) into one row per question.

    Everything is checked before a row is returned: the layout, non-empty context / question / answer
    strings, unique question ids, and that each answer text is at its ``answer_start`` in the context.

    Raises:
        InputError: the file is missing, a folder, empty, not UTF-8 or not JSON (the line and column are
            named); a field is missing or of the wrong type (named by its position ``data[i], paragraphs[j],
            qas[k]`` and the question id); an empty context, question or answer; an answer that is not at
            its ``answer_start``; a question id used twice; a SQuAD v2 unanswerable question; no questions.
    """
    path = Path(path)
    return _squad_rows(parse_json(path, read_text_file(path, "SQuAD JSON file"), _SQUAD_EXPECTED), str(path))


def _squad_rows(raw: Any, src: str) -> list[dict[str, Any]]:
    """:func:`load_squad_json`'s rows of a parsed file."""
    if isinstance(raw, list):
        raise input_error(src, f"is not SQuAD v1.1 JSON: the top level is a list ({len(raw)} item(s)), not an object "
                          "with a 'data' key", f"as a dataset (DATASET / --dataset, load_qa_split) a .json list of "
                          f"records {_RECORDS_LAYOUT} is read as it is; here, use the SQuAD layout {_SQUAD_LAYOUT}")
    if not isinstance(raw, dict) or "data" not in raw:
        found = f"the top level has the keys {sorted(raw)}" if isinstance(raw, dict) else \
            f"the top level is {json_type(raw)}"
        raise input_error(src, f"is not SQuAD v1.1 JSON: {found}, not a 'data' key",
                          f"use the layout {_SQUAD_LAYOUT}, or a list of records {_RECORDS_LAYOUT} (in a .json file "
                          "as one list, or in a .jsonl file one record per line)")
    rows: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for a, article in enumerate(_field(raw, "data", src, "the top level", list, "a list of articles")):
        at = f"data[{a}]"
        paragraphs = _field(article, "paragraphs", src, at, list, "a list of paragraphs")
        for p, paragraph in enumerate(paragraphs):
            pt = f"{at}, paragraphs[{p}]"
            context = _field(paragraph, "context", src, pt, str, "the paragraph's text (a string)")
            if not context.strip():
                raise input_error(src, f"{pt}: the context is empty", "fill in the paragraph's text or drop it")
            for q, qa in enumerate(_field(paragraph, "qas", src, pt, list, "a list of questions")):
                qt = f"{pt}, qas[{q}]"
                qid = str(_field(qa, "id", src, qt, (str, int), "a unique question id (a string)"))
                qt = f"{qt} (id {qid!r})"
                question = _field(qa, "question", src, qt, str, "the question text")
                if not question.strip():
                    raise input_error(src, f"{qt}: the question is empty", "fill in the question or drop it")
                answers = _field(qa, "answers", src, qt, list, "a list of {'text': ..., 'answer_start': ...}")
                if not answers and qa.get("is_impossible"):
                    raise input_error(src, f"{qt} is a SQuAD v2 unanswerable question (is_impossible, no answers); "
                                           "the course trains on answerable questions (SQuAD v1.1) only",
                                      "drop the questions with is_impossible: true")
                texts = [_field(x, "text", src, f"{qt}, answers[{k}]", str, "the answer text")
                         for k, x in enumerate(answers)]
                starts = [_field(x, "answer_start", src, f"{qt}, answers[{k}]", int, "the answer's character offset "
                                 "in the context (a whole number)") for k, x in enumerate(answers)]
                _check_answers(texts, starts, context, src, qt, unknown_start_ok=False)
                if qid in seen:
                    raise input_error(src, f"{qt}: the question id {qid!r} is used twice (first at {seen[qid]})",
                                      "give every question its own id (SQuAD's predictions are keyed by id)")
                seen[qid] = f"data[{a}], paragraphs[{p}], qas[{q}]"
                rows.append({"id": qid, "title": article.get("title", ""), "context": context, "question": question,
                             "answers": {"text": texts, "answer_start": starts}})
    if not rows:
        raise input_error(src, "is empty: its 'data' list holds no questions",
                          "add articles with paragraphs and questions, or point to the right file")
    return rows


def _answers(value: Any, src: str, at: str) -> dict[str, list]:
    """Accept ``{"text": [...], "answer_start": [...]}``, a list of strings, or one string."""
    if isinstance(value, Mapping):
        if "text" not in value:
            raise input_error(src, f"{at}: 'answers' is a dict without a 'text' key ({sorted(value)})",
                              "use {'text': [...], 'answer_start': [...]}, a list of strings or one string")
        texts = value["text"]
        texts = [texts] if isinstance(texts, str) else list(texts) if isinstance(texts, Sequence) else [texts]
        starts = value.get("answer_start", [-1] * len(texts))
        starts = list(starts) if isinstance(starts, Sequence) and not isinstance(starts, str) else [starts]
    elif isinstance(value, str):
        texts, starts = [value], [-1]
    elif isinstance(value, Sequence):
        texts, starts = list(value), [-1] * len(value)
    else:
        raise input_error(src, f"{at}: 'answers' is {json_type(value)} ({short_repr(value)}), with no non-empty "
                               "answer text", "use {'text': [...], 'answer_start': [...]}, a list of strings or "
                                              "one string")
    return {"text": texts, "answer_start": [int(s) if is_int(s) else s for s in starts]}


def _text(record: Mapping[str, Any], column: str, field: str, src: str, at: str, required: bool) -> str:
    """A question or context value: a string (a missing context may be null: no context)."""
    value = record[column]
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise input_error(src, f"{at}: the {field} ({column!r}) is {json_type(value)} ({short_repr(value)}), not text",
                          f"store the {field} as a string, or map {field!r} to another column with columns=...")
    if required and not value.strip():
        raise input_error(src, f"{at}: the {field} ({column!r}) is empty", f"fill in the {field} or drop the row")
    return value


def check_rows(records: Sequence[Mapping[str, Any]], columns: Mapping[str, str] | None = None,
               source: str = "dataset", row_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Validate and rename rows to ``question / context / answers``.

    Answers may be ``{"text": [...], "answer_start": [...]}``, a list of strings or one string; a plain
    string's position is unknown (``answer_start`` -1, also accepted in the dict form). A known
    ``answer_start`` must point at its answer text in the context.

    Args:
        records: rows as mappings (a list of dicts or a ``datasets.Dataset``).
        columns: our field -> the dataset's column, for datasets named differently,
            e.g. ``{"question": "query", "context": "passage", "answers": "answer"}``.
        source: name used in error messages.
        row_names: how messages name each record (default ``row i``, i counted from 0 in ``records``;
            :func:`load_qa_split` passes ``line n`` for a JSON Lines file).
    Raises:
        InputError: no rows; a row that is not a mapping or lacks a field (the message names the field, the
            row and its fields); an empty or non-text question; an empty answer; an answer that is not at
            its ``answer_start``; an id used twice. A context may be empty or null (guanaco-style rows)
            unless an answer position points into it.
    """
    columns = {f: f for f in REQUIRED_FIELDS} | dict(columns or {})
    unknown = set(columns) - set(REQUIRED_FIELDS)
    if unknown:
        raise input_error(f"columns={dict(columns)}", f"maps unknown field(s) {sorted(unknown)}",
                          f"map only the fields {REQUIRED_FIELDS} to your column names")
    if len(records) == 0:
        raise input_error(source, "is empty: no rows to train or evaluate on",
                          "check the file or split name and any subset size (TRAIN_SIZE / EVAL_SIZE) you set")
    rows = []
    seen: dict[str, str] = {}
    for i, record in enumerate(records):
        at = row_names[i] if row_names is not None else f"row {i}"
        if not isinstance(record, Mapping):
            raise input_error(source, f"{at} is {json_type(record)}, not a record with fields",
                              f"give one mapping per row with the fields {REQUIRED_FIELDS}")
        for field, column in columns.items():
            if column not in record:
                raise input_error(source, f"{at} has no field {column!r} (needed as {field!r}); its fields are "
                                          f"{sorted(record)}",
                                  f"pass a column mapping, e.g. columns={{'{field}': '<your column>'}}")
        row_id = str(record.get("id", i))
        if "id" in record:
            at = f"{at} (id {row_id!r})"
        question = _text(record, columns["question"], "question", source, at, required=True)
        context = _text(record, columns["context"], "context", source, at, required=False)
        answers = _answers(record[columns["answers"]], source, at)
        _check_answers(answers["text"], answers["answer_start"], context, source, at, unknown_start_ok=True)
        if row_id in seen:
            raise input_error(source, f"{at}: the id {row_id!r} is used twice (first at {seen[row_id]})",
                              "give every row its own id")
        seen[row_id] = at
        rows.append({"id": row_id, "question": question, "context": context, "answers": answers})
    return rows


def check_no_overlap(train_rows: Sequence[Mapping[str, Any]], eval_rows: Sequence[Mapping[str, Any]],
                     train_name: str = "train", eval_name: str = "evaluation", same_context: bool = False,
                     same_answer: bool = False) -> None:
    """Refuse a leaking split: evaluation questions that are also in the training rows.

    Two rows hold the same question when their question and context are equal up to whitespace. Ids are
    not compared: rows without an id column are numbered from 0 in every split, so equal ids mean nothing.
    With ``same_context=True`` an evaluation question whose context (passage) is among the training
    contexts is refused too: the model has read the passage (the course's own data holds whole passages
    out, as SQuAD does). With ``same_answer=True`` an evaluation question is refused when one of its reference
    answers, normalised as SQuAD scores it (:func:`utils.evaluation.squad.normalize_answer`), is a training
    answer: a model could score by repeating an answer it was trained to give (:func:`without_seen_answers`
    drops such rows from an evaluation set that is not yours to change).

    Raises:
        InputError: naming how many evaluation rows leak, in which way, and up to three of them.
    """
    def key(text: Any) -> str:
        return " ".join(str(text).split())

    pairs = {(key(r["question"]), key(r["context"])) for r in train_rows}
    leaks = [r for r in eval_rows if (key(r["question"]), key(r["context"])) in pairs]
    what = "question and context"
    if same_context and not leaks:
        contexts = {key(r["context"]) for r in train_rows} - {""}
        leaks = [r for r in eval_rows if key(r["context"]) in contexts]
        what = "context (passage)"
    if same_answer and not leaks:
        leaks = _seen_answer_rows(train_rows, eval_rows)
        what = "answer (a reference answer, normalised as SQuAD scores it, is a training answer)"
    if leaks:
        shown = "; ".join(f"id {str(r.get('id'))!r}: {short_repr(r['question'], 50)}" for r in leaks[:3])
        raise input_error(eval_name, f"{len(leaks)} of its {len(eval_rows)} rows share their {what} with "
                                     f"{train_name} (a leaking split: the score would reward memorising), e.g. {shown}",
                          f"drop those rows from {eval_name} (or from {train_name}); split by passage, so that no "
                          "question or context is in both, and keep answers that training teaches out of the "
                          "evaluation set (qa_data.without_seen_answers)")


def _answer_keys(row: Mapping[str, Any]) -> set[str]:
    from utils.evaluation.squad import normalize_answer

    return {normalize_answer(t) for t in row["answers"]["text"]} - {""}


def _seen_answer_rows(train_rows: Sequence[Mapping[str, Any]],
                      eval_rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The evaluation rows one of whose normalised reference answers is a normalised training answer."""
    seen = set().union(*(_answer_keys(r) for r in train_rows)) if train_rows else set()
    return [r for r in eval_rows if _answer_keys(r) & seen]


def without_seen_answers(train_rows: Sequence[Mapping[str, Any]], eval_rows: Sequence[Mapping[str, Any]]
                         ) -> tuple[list[dict[str, Any]], int]:
    """``(eval rows whose answers training never taught, how many were dropped)``.

    For an evaluation set that is not the course's own (SQuAD's validation split: "1990" or "two" are answers
    in both splits), so that what is scored is finding an answer, not repeating one; the course's own splits are
    answer-disjoint already (``check_no_overlap(..., same_answer=True)`` passes on them, and a test says so).
    """
    drop = {id(r) for r in _seen_answer_rows(train_rows, eval_rows)}
    return [dict(r) for r in eval_rows if id(r) not in drop], len(drop)


_GUANACO_TURN = re.compile(r"### Human:(.*?)### Assistant:(.*?)(?=### Human:|$)", flags=re.S)


def guanaco_to_rows(records: Iterable[Mapping[str, Any]], source: str = "guanaco") -> list[dict[str, Any]]:
    """openassistant-guanaco rows (``text`` = ``### Human: ... ### Assistant: ...``) -> first-turn QA rows.

    The instruction becomes the question, the context is empty, the reply is the one reference answer.

    Raises:
        InputError: no rows; a row without a ``text`` field, or whose text is not a string, has no
            ``### Human: ... ### Assistant: ...`` turn, or has an empty instruction or reply.
    """
    rows = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping) or "text" not in record:
            fields = sorted(record) if isinstance(record, Mapping) else json_type(record)
            raise input_error(source, f"row {i} has no field 'text'; its fields are {fields}",
                              "give each row a 'text' field holding '### Human: ... ### Assistant: ...'")
        text = record["text"]
        match = _GUANACO_TURN.search(text) if isinstance(text, str) else None
        if match is None:
            raise input_error(source, f"row {i}: no '### Human: ... ### Assistant: ...' turn in its text "
                                      f"({short_repr(text)})",
                              "write each conversation as '### Human: <question>### Assistant: <answer>', or use "
                              "text_format='squad' for question/context/answers rows")
        question, answer = match.group(1).strip(), match.group(2).strip()
        if not question or not answer:
            raise input_error(source, f"row {i}: its first turn has an empty {'instruction' if not question else 'reply'}",
                              "fill it in or drop the row")
        rows.append({"id": str(i), "question": question, "context": "",
                     "answers": {"text": [answer], "answer_start": [-1]}})
    if not rows:
        raise input_error(source, "is empty: no rows to train on", "check the file or the split name")
    return rows


def load_qa_split(source: str | Path, split: str = "train", columns: Mapping[str, str] | None = None,
                  text_format: str = "squad", limit: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of one split: a local SQuAD JSON file (``*.json``), a JSON file whose top level is a list of records
    (``[{"question": ..., "context": ..., "answers": ...}, ...]``, the layout the Hub's datasets export), a JSON Lines
    file of records (``*.jsonl``, e.g. guanaco's ``{"text": ...}``) or a Hub dataset id (``datasets``).

    One split at a time: :func:`check_no_overlap` on a training and an evaluation split refuses a
    leaking split.

    Args:
        source: ``data/qa/train.json``, ``my_chats.jsonl`` or e.g. ``"rajpurkar/squad"``.
        split: Hub split name (ignored for a local file, which is one split).
        columns: column mapping for datasets not laid out like SQuAD (see :func:`check_rows`).
        text_format: ``"squad"`` or ``"guanaco"`` (one ``text`` column with ``### Human/Assistant`` turns).
        limit: keep a seeded random subset of at most this many rows (None: all).
        seed: seed of that subset.
    Raises:
        InputError: a bad ``text_format``, ``limit`` or ``seed`` (before anything is loaded); whatever
            :func:`load_squad_json`, :func:`utils.files.read_json_lines`, :func:`check_rows` or :func:`guanaco_to_rows`
            refuse (JSON Lines rows are named by their line, a JSON list's by their item); a local file with
            another suffix; a Hub
            dataset or a split that does not exist.
    """
    if text_format not in TEXT_FORMATS:
        raise input_error(f"text_format={text_format!r}", f"expected one of {TEXT_FORMATS}",
                          "use 'squad' for question/context/answers rows, 'guanaco' for '### Human/### Assistant' text")
    if limit is not None and (not is_int(limit) or limit <= 0):
        raise input_error(f"limit={limit!r}", "expected a positive whole number of rows",
                          "give the number of rows to keep (e.g. 500), or None for all of them")
    if not is_int(seed) or seed < 0:
        raise input_error(f"seed={seed!r}", "expected a whole number >= 0", "use e.g. seed=0")
    path = Path(source)
    suffix = path.suffix.lower()
    row_names: list[str] | None = None
    name = str(source)
    if suffix == ".json":
        raw = parse_json(path, read_text_file(path, "SQuAD JSON file"), f"{_SQUAD_EXPECTED} or a list of records")
        if isinstance(raw, list):  # records, as in a .jsonl file but in one JSON list
            records: Sequence[Mapping[str, Any]] = raw
            row_names = [f"item {i} of the list" for i in range(len(raw))]
        else:
            records = _squad_rows(raw, name)
    elif suffix == ".jsonl":
        records, lines = read_json_lines(path)
        row_names = [f"line {n}" for n in lines]
    elif path.is_file():
        raise input_error(name, f"is a {suffix or 'suffix-less'} file; expected a SQuAD .json or a .jsonl file",
                          "convert it to one of those (or rename it, if it already is one)")
    else:
        records = _load_hub_split(name, split)
        name = f"{source}[{split}]"
    if limit is not None and limit < len(records):
        keep = _sample_positions(len(records), limit, seed)
        records = [records[i] for i in keep]
        row_names = None if row_names is None else [row_names[i] for i in keep]
    if text_format == "guanaco":
        return guanaco_to_rows(records, name)
    return check_rows(records, columns, name, row_names)


def _sample_positions(n: int, limit: int, seed: int) -> list[int]:
    return sorted(random.Random(seed).sample(range(n), int(limit)))


def sample_rows(rows: Sequence[Mapping[str, Any]], limit: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """A seeded subset of at most ``limit`` rows, in their order (``load_qa_split``'s ``limit``; None: all)."""
    if limit is None or limit >= len(rows):
        return [dict(r) for r in rows]
    return [dict(rows[i]) for i in _sample_positions(len(rows), limit, seed)]


class HubUnreachable(InputError, ConnectionError):
    """A Hub dataset could not be reached (no network, offline mode, the Hub down)."""


def load_or_stand_in(source: str | Path, split: str = "train", columns: Mapping[str, str] | None = None,
                     text_format: str = "squad", limit: int | None = None, seed: int = 0
                     ) -> tuple[list[dict[str, Any]], str]:
    """:func:`load_qa_split`, and where ``source`` is a Hub dataset with an offline stand-in
    (:data:`utils.qa.config.HUB_STAND_INS`: SQuAD -> the real ``disfl-qa`` passages) that cannot be reached, the
    stand-in's split instead, with a warning. Returns ``(rows, the source used)``: record the second.

    Raises:
        InputError: what :func:`load_qa_split` raises (a Hub dataset without a stand-in stays unreachable).
    """
    from utils.qa.config import HUB_STAND_INS, qa_set_file

    source = qa_set_file(str(source), split)  # a named offline set: its file of that split
    try:
        return load_qa_split(source, split, columns, text_format, limit, seed), str(source)
    except HubUnreachable as err:
        if str(source) not in HUB_STAND_INS:
            raise
        stand_in = qa_set_file(HUB_STAND_INS[str(source)], split)
        warnings.warn(f"{str(err).split('. Fix:')[0]}. Using the offline set {HUB_STAND_INS[str(source)]!r} ({stand_in}: "
                      "real Wikipedia passages, human-written questions) instead; the run records it.", stacklevel=2)
        return load_qa_split(stand_in, split, None, "squad", limit, seed), stand_in


def _load_hub_split(source: str, split: str) -> Any:
    """``datasets.load_dataset(source, split=split)``; a dataset or split that does not exist is an InputError."""
    from datasets import load_dataset  # Hub path (full profile)

    try:
        return load_dataset(source, split=split)
    except ConnectionError as err:  # offline mode, no network, the Hub down: datasets raises the builtin
        raise HubUnreachable(*input_error(source, f"could not be loaded from the Hugging Face Hub ({err})",
                                          "connect to the internet (or log in), or use an offline set such as "
                                          "'disfl-qa' or a local file").args) from None
    except FileNotFoundError:  # datasets' DatasetNotFoundError and DataFilesNotFoundError are FileNotFoundErrors
        raise input_error(source, "is neither a local .json / .jsonl file or data folder nor a Hub dataset id that "
                                  "exists", "check the spelling: a local file ends in .json (SQuAD) or .jsonl, a "
                                            "Hub id looks like 'rajpurkar/squad'") from None
    except ValueError as err:
        known = re.search(r"Unknown split \"(.*?)\"\. Should be one of (\[.*\])", str(err))
        if known is None:
            raise
        raise input_error(source, f"has no split {split!r}; its splits are {known.group(2)}",
                          "pick one of those, e.g. split='validation' for SQuAD's held-out questions") from None


# ---------------------------------------------------------------------------------------- prompts
_CONTEXT_SLOT = "\x00context\x00"  # marks where the context goes in a rendered chat template


@dataclass(frozen=True)
class Shot:
    """One worked example of a few-shot prompt: a question, the context it is asked about, and its answer."""

    question: str
    context: str
    answer: str


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def answer_sentence(context: str, answer: str, answer_start: int = -1) -> str:
    """The sentence(s) of ``context`` that hold the answer span (at ``answer_start``, or its first occurrence).

    A worked example needs the sentence that answers it, not its whole passage: a few-shot prompt of full
    Wikipedia paragraphs would be several times longer than the question it is for.
    """
    start = answer_start if answer_start >= 0 else context.find(answer)
    if start < 0:
        return context.strip()
    end = start + len(answer)
    bounds = [0, *(m.start() for m in _SENTENCE_END.finditer(context)), len(context)]
    first = max(b for b in bounds if b <= start)
    last = min(b for b in bounds if b >= end)
    return context[first:last].strip()


def few_shot_examples(train_rows: Sequence[Mapping[str, Any]], k: int, seed: int = 0) -> list[Shot]:
    """``k`` worked examples for a few-shot prompt: training rows from ``k`` different contexts (seeded), each
    with its context cut to the sentence that answers it (:func:`answer_sentence`) and its first answer.

    Raises:
        InputError: ``k`` is not a whole number >= 0, or the rows hold fewer than ``k`` contexts with an answer.
    """
    if not is_int(k) or k < 0:
        raise input_error(f"k={k!r}", "expected a whole number of worked examples >= 0", "use e.g. FEW_SHOT = 3")
    by_context: dict[str, Mapping[str, Any]] = {}
    for row in train_rows:
        if row["context"].strip() and row["answers"]["text"]:
            by_context.setdefault(row["context"], row)
    if len(by_context) < k:
        raise input_error(f"k={k}", f"the training rows hold only {len(by_context)} contexts with an answer",
                          f"use at most {len(by_context)} worked examples")
    picked = random.Random(seed).sample(sorted(by_context), k)
    shots = []
    for context in picked:
        row = by_context[context]
        answer, start = row["answers"]["text"][0], row["answers"]["answer_start"][0]
        shots.append(Shot(row["question"].strip(), answer_sentence(context, answer, start), answer.strip()))
    return shots


@dataclass(frozen=True)
class PromptFormat:
    """How a question (and its context) becomes a prompt, and how the answer follows it.

    ``style`` comes from the model's row in :data:`utils.models.architectures.ARCHITECTURES`:

    * ``"instruct"``: Phi-2's documented QA format, ``Instruct: ...\\nOutput:``; the answer follows after one
      space.
    * ``"chat"``: the tokenizer's chat template (system: :data:`INSTRUCTION`; user: context and question;
      then the assistant's turn); the answer follows directly.

    Either way the prompt is ``head + context piece + tail`` so that the context alone can be shortened.
    """

    style: str = "instruct"
    tokenizer: Any = dataclasses.field(default=None, compare=False, repr=False)  # whose chat template ("chat")

    def __post_init__(self) -> None:
        if self.style not in PROMPT_STYLES:
            raise input_error(f"prompt style {self.style!r}", f"expected one of {PROMPT_STYLES}",
                              "use the style of the model's row in utils.models.architectures.ARCHITECTURES")
        if self.style == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise input_error("prompt style 'chat'", "needs a tokenizer with a chat template",
                              "pass the chat model's own tokenizer (or use the 'instruct' style)")

    @property
    def answer_prefix(self) -> str:
        """What goes between the prompt and the answer text."""
        return " " if self.style == "instruct" else ""

    def parts(self, question: str, context: str, shots: Sequence[Shot] = ()) -> tuple[str, str, str]:
        """``(head, context piece, tail)``; joined they are the prompt. The context piece is ``" " + context``
        (empty without a context). ``shots`` (worked examples, :func:`few_shot_examples`) come first, each a
        finished question and answer in the same format; they are part of ``head``."""
        question, context = question.strip(), context.strip()
        if self.style == "instruct":
            solved = "".join(f"Instruct: {INSTRUCTION}\nContext: {s.context}\nQuestion: {s.question}\nOutput: "
                             f"{s.answer}\n" for s in shots)
            if not context:
                return f"{solved}Instruct: {question}", "", "\nOutput:"
            return f"{solved}Instruct: {INSTRUCTION}\nContext:", f" {context}", f"\nQuestion: {question}\nOutput:"
        if not context:
            messages = [{"role": "user", "content": question + _CONTEXT_SLOT}]
        else:
            messages = [{"role": "system", "content": INSTRUCTION}]
            for s in shots:
                messages += [{"role": "user", "content": f"Context: {s.context}\nQuestion: {s.question}"},
                             {"role": "assistant", "content": s.answer}]
            messages.append({"role": "user", "content": f"Context:{_CONTEXT_SLOT}\nQuestion: {question}"})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        head, tail = text.split(_CONTEXT_SLOT)
        return head, f" {context}" if context else "", tail


INSTRUCT = PromptFormat("instruct")  # Phi-2's format, the default where no model is involved


def prompt_format(tokenizer: Any, model_or_config: Any) -> PromptFormat:
    """The prompt format of a model (or its config, or a peft model), from its row in
    :data:`utils.models.architectures.ARCHITECTURES`."""
    return PromptFormat(architecture_of(model_or_config).prompt_style, tokenizer)


def prompt_parts(question: str, context: str, fmt: PromptFormat = INSTRUCT,
                 shots: Sequence[Shot] = ()) -> tuple[str, str, str]:
    """(head, context piece, tail) of the prompt in format ``fmt``; joined they are the prompt."""
    return fmt.parts(question, context, shots)


def build_prompt(question: str, context: str, fmt: PromptFormat = INSTRUCT, shots: Sequence[Shot] = ()) -> str:
    """The full prompt text (after the worked examples ``shots``, if any); the model's answer follows it (after
    ``fmt.answer_prefix``)."""
    return "".join(fmt.parts(question, context, shots))


def qa_texts(*json_paths: str | Path) -> list[str]:
    """Every context, question and answer of SQuAD JSON files, plus the prompt template's words: the texts the
    tests' tiny tokenizer is trained on (:func:`utils.models.tiny_phi.ensure_tiny_phi`)."""
    texts = []
    for path in json_paths:
        for row in load_squad_json(path):
            texts += [build_prompt(row["question"], row["context"]), *row["answers"]["text"]]
    return texts


@dataclass
class Encoded:
    """One tokenized example: ``input_ids`` and ``labels`` (same length; prompt labels are -100)."""

    input_ids: list[int]
    labels: list[int]
    prompt_length: int
    context_truncated: bool


def _ids(tokenizer: Any, text: str, offsets: bool = False) -> Any:
    return tokenizer(text, add_special_tokens=False, return_offsets_mapping=offsets)


def encode_prompt(tokenizer: Any, question: str, context: str, max_prompt_tokens: int,
                  answer_start: int = -1, fmt: PromptFormat = INSTRUCT, shots: Sequence[Shot] = ()
                  ) -> tuple[list[int], bool]:
    """Token ids of the prompt, the context cut to fit ``max_prompt_tokens``; returns (ids, truncated).

    The context is the only part ever shortened; it keeps a window around the answer when its
    character position ``answer_start`` is known (training), else its beginning (evaluation: a scored
    prompt never depends on where the answer is). Worked examples (``shots``) come on top of
    ``max_prompt_tokens``: a few-shot prompt leaves the question's own context as much room as a zero-shot one.

    Raises:
        InputError: even with an empty context the prompt would not fit.
    """
    head, ctx, tail = fmt.parts(question, context, shots)
    head_ids, tail_ids = _ids(tokenizer, head)["input_ids"], _ids(tokenizer, tail)["input_ids"]
    own_head = len(_ids(tokenizer, fmt.parts(question, context)[0])["input_ids"]) if shots else len(head_ids)
    budget = max_prompt_tokens - own_head - len(tail_ids)
    if budget < 0 or (ctx and budget < 1):
        raise input_error(f"max_prompt_tokens={max_prompt_tokens}", f"the prompt without its context needs "
                                                                     f"{own_head + len(tail_ids)} tokens, more "
                                                                     f"than the {max_prompt_tokens} available",
                          "raise MAX_LENGTH")
    if not ctx:
        return head_ids + tail_ids, False
    enc = _ids(tokenizer, ctx, offsets=True)
    ctx_ids = enc["input_ids"]
    if len(ctx_ids) <= budget:
        return head_ids + ctx_ids + tail_ids, False
    start = 0
    if answer_start >= 0:
        char = answer_start + 1 - (len(context) - len(context.lstrip()))  # the piece: one space + stripped context
        answer_token = next((t for t, (a, b) in enumerate(enc["offset_mapping"]) if b > char), 0)
        start = max(0, min(answer_token - budget // 2, len(ctx_ids) - budget))
    return head_ids + ctx_ids[start:start + budget] + tail_ids, True


def encode_example(row: Mapping[str, Any], tokenizer: Any, max_length: int, fmt: PromptFormat = INSTRUCT) -> Encoded:
    """Prompt + answer + EOS in format ``fmt``, at most ``max_length`` tokens, loss on the answer (and EOS) only.

    Raises:
        InputError: the answer alone (plus the prompt without context) exceeds ``max_length``;
            the answer is never truncated.
    """
    answer = row["answers"]["text"][0]
    answer_ids = _ids(tokenizer, fmt.answer_prefix + answer.strip())["input_ids"] + [tokenizer.eos_token_id]
    room = max_length - len(answer_ids)
    try:
        prompt_ids, truncated = encode_prompt(tokenizer, row["question"], row["context"], room,
                                              row["answers"]["answer_start"][0], fmt)
    except ValueError as err:
        raise input_error(f"example {row.get('id')!r}", f"its answer takes {len(answer_ids)} tokens and the prompt "
                                                        f"cannot fit in max_length={max_length} without cutting "
                                                        f"the answer ({str(err).split('. Fix:')[0]})",
                          "raise max_length (MAX_LENGTH) or drop the example") from None
    return Encoded(prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
                   len(prompt_ids), truncated)


def encode_rows(rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int,
                source: str = "dataset", fmt: PromptFormat = INSTRUCT) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Tokenize rows for training; returns (features, counts).

    Examples whose context had to be truncated are counted (``context_truncated``) and a warning
    says how many; examples that cannot fit without cutting the answer are dropped and counted
    (``dropped_too_long``). Features are ``{"input_ids": [...], "labels": [...]}`` of varying length
    (no padding: the collator packs them).

    Raises:
        InputError: no rows, or every example is longer than ``max_length``.
    """
    if not rows:
        raise input_error(source, "is empty: nothing to tokenize", "check the rows you pass (and any subset size)")
    features, truncated, dropped = [], 0, 0
    for row in rows:
        try:
            enc = encode_example(row, tokenizer, max_length, fmt)
        except ValueError:
            dropped += 1
            continue
        truncated += enc.context_truncated
        features.append({"input_ids": enc.input_ids, "labels": enc.labels})
    counts = {"examples": len(rows), "kept": len(features), "context_truncated": truncated,
              "dropped_too_long": dropped}
    if truncated or dropped:
        warnings.warn(f"{source}: {truncated} of {len(rows)} prompts were longer than max_length={max_length} "
                      f"and had their context truncated (answers are never cut); {dropped} could not fit "
                      "even so and were dropped.", stacklevel=2)
    if not features:
        raise input_error(source, f"every example was longer than max_length={max_length}",
                          "raise max_length (MAX_LENGTH)")
    return features, counts


def token_lengths(features: Sequence[Mapping[str, list[int]]]) -> dict[str, float]:
    """Total, mean and max tokens of tokenized features, and the share that answer (labelled) tokens take."""
    lengths = [len(f["input_ids"]) for f in features]
    labelled = sum(sum(1 for t in f["labels"] if t != IGNORE_INDEX) for f in features)
    return {"tokens": sum(lengths), "mean": sum(lengths) / len(lengths), "max": max(lengths),
            "answer_token_share": labelled / sum(lengths)}
