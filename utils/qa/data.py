"""Question-answering data for causal-LM fine-tuning: load, check, prompt, tokenize.

Rows are plain dicts ``{"id", "question", "context", "answers": {"text": [str, ...], "answer_start": [int, ...]}}``
(the SQuAD v1.1 layout that the Hub's ``squad`` dataset also uses). A prompt follows the base model's own
format (:class:`PromptFormat`): Phi-2's documented ``"Instruct: <prompt>\\nOutput:"`` (microsoft/phi-2 model
card), or a chat model's chat template (SmolLM2-Instruct); the model learns to continue it with the answer and
its end token. Only the answer tokens carry a loss.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.models.architectures import PROMPT_STYLES, architecture_of
from utils.qa.config import TEXT_FORMATS

REQUIRED_FIELDS = ("question", "context", "answers")
INSTRUCTION = "Answer the question with a short span copied from the context."
IGNORE_INDEX = -100  # label value that the cross-entropy loss skips


# --------------------------------------------------------------------------------------- loading
def load_squad_json(path: str | Path) -> list[dict[str, Any]]:
    """Flatten a SQuAD v1.1 JSON file (``data -> paragraphs -> qas``) into one row per question."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SQuAD JSON file at {path}; expected e.g. data/qa/train.json.")
    raw = json.loads(path.read_text())
    if "data" not in raw:
        raise ValueError(f"{path} is not SQuAD v1.1 JSON: the top level has no 'data' key ({sorted(raw)}).")
    rows = []
    for article in raw["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                rows.append({"id": qa["id"], "title": article.get("title", ""), "context": paragraph["context"],
                             "question": qa["question"],
                             "answers": {"text": [a["text"] for a in qa["answers"]],
                                         "answer_start": [a["answer_start"] for a in qa["answers"]]}})
    return rows


def load_json_lines(path: str | Path) -> list[dict[str, Any]]:
    """One JSON object per line (blank lines skipped); a clear error naming the file and line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found.")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not valid JSON ({err.msg}); each line must be one object.") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number} is a {type(record).__name__}, not a JSON object.")
        records.append(record)
    return records


def _answers(value: Any, where: str) -> dict[str, list]:
    """Accept ``{"text": [...], "answer_start": [...]}``, a list of strings, or one string."""
    if isinstance(value, Mapping):
        texts = value.get("text")
        if texts is None:
            raise ValueError(f"{where}: 'answers' is a dict without a 'text' key ({sorted(value)}).")
        texts = [texts] if isinstance(texts, str) else list(texts)
        starts = value.get("answer_start", [-1] * len(texts))
        starts = [starts] if isinstance(starts, int) else list(starts)
    elif isinstance(value, str):
        texts, starts = [value], [-1]
    else:
        texts, starts = list(value), [-1] * len(value)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError(f"{where}: 'answers' holds no non-empty answer text ({value!r}).")
    return {"text": texts, "answer_start": [int(s) for s in starts]}


def check_rows(records: Sequence[Mapping[str, Any]], columns: Mapping[str, str] | None = None,
               source: str = "dataset") -> list[dict[str, Any]]:
    """Validate and rename rows to ``question / context / answers``.

    Args:
        records: rows as mappings (a list of dicts or a ``datasets.Dataset``).
        columns: our field -> the dataset's column, for datasets named differently,
            e.g. ``{"question": "query", "context": "passage", "answers": "answer"}``.
        source: name used in error messages.
    Raises:
        ValueError: the split is empty, or a row lacks a field (the message names the field and the row).
    """
    columns = {f: f for f in REQUIRED_FIELDS} | dict(columns or {})
    unknown = set(columns) - set(REQUIRED_FIELDS)
    if unknown:
        raise ValueError(f"columns maps unknown field(s) {sorted(unknown)}; valid fields: {REQUIRED_FIELDS}.")
    if len(records) == 0:
        raise ValueError(f"{source} is empty: no rows to train or evaluate on. Check the split name and "
                         "any subset size (TRAIN_SIZE / EVAL_SIZE) you set.")
    rows = []
    for i, record in enumerate(records):
        for field, column in columns.items():
            if column not in record:
                raise ValueError(
                    f"row {i} of {source} has no field {column!r} (needed as {field!r}); its fields are "
                    f"{sorted(record)}. Pass a column mapping, e.g. columns={{'{field}': '<your column>'}}.")
        where = f"row {i} of {source}"
        rows.append({"id": str(record.get("id", i)), "question": str(record[columns["question"]]),
                     "context": str(record[columns["context"]] or ""),
                     "answers": _answers(record[columns["answers"]], where)})
    return rows


_GUANACO_TURN = re.compile(r"### Human:(.*?)### Assistant:(.*?)(?=### Human:|$)", flags=re.S)


def guanaco_to_rows(records: Iterable[Mapping[str, Any]], source: str = "guanaco") -> list[dict[str, Any]]:
    """openassistant-guanaco rows (``text`` = ``### Human: ... ### Assistant: ...``) -> first-turn QA rows.

    The instruction becomes the question, the context is empty, the reply is the one reference answer.
    """
    rows = []
    for i, record in enumerate(records):
        if "text" not in record:
            raise ValueError(f"row {i} of {source} has no field 'text'; its fields are {sorted(record)}.")
        match = _GUANACO_TURN.search(record["text"])
        if match is None:
            raise ValueError(f"row {i} of {source}: no '### Human: ... ### Assistant: ...' turn in its text.")
        question, answer = match.group(1).strip(), match.group(2).strip()
        rows.append({"id": str(i), "question": question, "context": "",
                     "answers": {"text": [answer], "answer_start": [-1]}})
    if not rows:
        raise ValueError(f"{source} is empty: no rows to train on.")
    return rows


def load_qa_split(source: str | Path, split: str = "train", columns: Mapping[str, str] | None = None,
                  text_format: str = "squad", limit: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of one split: a local SQuAD JSON file (``*.json``), a JSON Lines file of records (``*.jsonl``,
    e.g. guanaco's ``{"text": ...}``) or a Hub dataset id (``datasets``).

    Args:
        source: ``data/qa/train.json``, ``my_chats.jsonl`` or e.g. ``"rajpurkar/squad"``.
        split: Hub split name (ignored for a local file, which is one split).
        columns: column mapping for datasets not laid out like SQuAD (see :func:`check_rows`).
        text_format: ``"squad"`` or ``"guanaco"`` (one ``text`` column with ``### Human/Assistant`` turns).
        limit: keep a seeded random subset of this many rows (None: all).
    """
    if text_format not in TEXT_FORMATS:
        raise ValueError(f"text_format must be one of {TEXT_FORMATS}, got {text_format!r}.")
    if str(source).endswith(".json"):
        records: Sequence[Mapping[str, Any]] = load_squad_json(source)
        name = str(source)
    elif str(source).endswith(".jsonl"):
        records = load_json_lines(source)
        name = str(source)
    else:
        from datasets import load_dataset  # Hub path (full profile)

        records = load_dataset(str(source), split=split)
        name = f"{source}[{split}]"
    if limit is not None and limit < len(records):
        if limit <= 0:
            raise ValueError(f"limit must be a positive number of rows, got {limit}.")
        keep = sorted(random.Random(seed).sample(range(len(records)), limit))
        records = [records[i] for i in keep]
    if text_format == "guanaco":
        return guanaco_to_rows(records, name)
    return check_rows(records, columns, name)


# ---------------------------------------------------------------------------------------- prompts
_CONTEXT_SLOT = "\x00context\x00"  # marks where the context goes in a rendered chat template


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
            raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, got {self.style!r}.")
        if self.style == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("the chat prompt style needs a tokenizer with a chat template.")

    @property
    def answer_prefix(self) -> str:
        """What goes between the prompt and the answer text."""
        return " " if self.style == "instruct" else ""

    def parts(self, question: str, context: str) -> tuple[str, str, str]:
        """``(head, context piece, tail)``; joined they are the prompt. The context piece is ``" " + context``
        (empty without a context)."""
        question, context = question.strip(), context.strip()
        if self.style == "instruct":
            if not context:
                return f"Instruct: {question}", "", "\nOutput:"
            return f"Instruct: {INSTRUCTION}\nContext:", f" {context}", f"\nQuestion: {question}\nOutput:"
        if not context:
            messages = [{"role": "user", "content": question + _CONTEXT_SLOT}]
        else:
            messages = [{"role": "system", "content": INSTRUCTION},
                        {"role": "user", "content": f"Context:{_CONTEXT_SLOT}\nQuestion: {question}"}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        head, tail = text.split(_CONTEXT_SLOT)
        return head, f" {context}" if context else "", tail


INSTRUCT = PromptFormat("instruct")  # Phi-2's format, the default where no model is involved


def prompt_format(tokenizer: Any, model_or_config: Any) -> PromptFormat:
    """The prompt format of a model (or its config, or a peft model), from its row in
    :data:`utils.models.architectures.ARCHITECTURES`."""
    return PromptFormat(architecture_of(model_or_config).prompt_style, tokenizer)


def prompt_parts(question: str, context: str, fmt: PromptFormat = INSTRUCT) -> tuple[str, str, str]:
    """(head, context piece, tail) of the prompt in format ``fmt``; joined they are the prompt."""
    return fmt.parts(question, context)


def build_prompt(question: str, context: str, fmt: PromptFormat = INSTRUCT) -> str:
    """The full prompt text; the model's answer follows it (after ``fmt.answer_prefix``)."""
    return "".join(fmt.parts(question, context))


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
                  answer_start: int = -1, fmt: PromptFormat = INSTRUCT) -> tuple[list[int], bool]:
    """Token ids of the prompt, the context cut to fit ``max_prompt_tokens``; returns (ids, truncated).

    The context is the only part ever shortened; it keeps a window around the answer when its
    character position ``answer_start`` is known (else its beginning).

    Raises:
        ValueError: even with an empty context the prompt would not fit.
    """
    head, ctx, tail = fmt.parts(question, context)
    head_ids, tail_ids = _ids(tokenizer, head)["input_ids"], _ids(tokenizer, tail)["input_ids"]
    budget = max_prompt_tokens - len(head_ids) - len(tail_ids)
    if budget < 0 or (ctx and budget < 1):
        raise ValueError(f"the prompt without its context needs {len(head_ids) + len(tail_ids)} tokens, more "
                         f"than the {max_prompt_tokens} available: raise MAX_LENGTH.")
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
        ValueError: the answer alone (plus the prompt without context) exceeds ``max_length``;
            the answer is never truncated.
    """
    answer = row["answers"]["text"][0]
    answer_ids = _ids(tokenizer, fmt.answer_prefix + answer.strip())["input_ids"] + [tokenizer.eos_token_id]
    room = max_length - len(answer_ids)
    try:
        prompt_ids, truncated = encode_prompt(tokenizer, row["question"], row["context"], room,
                                              row["answers"]["answer_start"][0], fmt)
    except ValueError as err:
        raise ValueError(f"example {row.get('id')!r}: its answer takes {len(answer_ids)} tokens and the prompt "
                         f"cannot fit in max_length={max_length} without cutting the answer ({err})") from err
    return Encoded(prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
                   len(prompt_ids), truncated)


def encode_rows(rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int,
                source: str = "dataset", fmt: PromptFormat = INSTRUCT) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Tokenize rows for training; returns (features, counts).

    Examples whose context had to be truncated are counted (``context_truncated``) and a warning
    says how many; examples that cannot fit without cutting the answer are dropped and counted
    (``dropped_too_long``). Features are ``{"input_ids": [...], "labels": [...]}`` of varying length
    (no padding: the collator packs them).
    """
    if not rows:
        raise ValueError(f"{source} is empty: nothing to tokenize.")
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
        raise ValueError(f"{source}: every example was longer than max_length={max_length}; raise it.")
    return features, counts


def token_lengths(features: Sequence[Mapping[str, list[int]]]) -> dict[str, float]:
    """Total, mean and max tokens of tokenized features, and the share that answer (labelled) tokens take."""
    lengths = [len(f["input_ids"]) for f in features]
    labelled = sum(sum(1 for t in f["labels"] if t != IGNORE_INDEX) for f in features)
    return {"tokens": sum(lengths), "mean": sum(lengths) / len(lengths), "max": max(lengths),
            "answer_token_share": labelled / sum(lengths)}
