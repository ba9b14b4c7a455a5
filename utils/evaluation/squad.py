"""Exact match and F1 for extractive QA, with the official SQuAD v1.1 answer normalisation.

This re-implements the official ``evaluate-v1.1.py`` script (Rajpurkar et al., 2016) offline, so no
Hub metric has to be downloaded: an answer is lower-cased, stripped of punctuation and of the
articles *a, an, the*, and its whitespace collapsed; EM is 1 when the normalised strings are equal,
F1 is the harmonic mean of token precision and recall; both take the best over the reference answers.

As in the official v1.1 script, an answer that normalises to nothing (``"The"``, ``"!!!"``) shares no token
with anything, so its F1 is 0 even against an equally empty reference, whose EM is 1 (SQuAD v2.0's script
changed this; the course keeps v1.1, which its exercises check).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

from utils.errors import input_error

_ARTICLES = re.compile(r"\b(a|an|the)\b", flags=re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def _check_str(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise input_error(where, f"{what} is {_kind(value)}, not a string",
                          "pass the answer text as a string (an empty answer is '')")
    return value


def _kind(value: Any) -> str:
    """``None``, or ``a list (['a'])``: the type and the start of the value, for messages."""
    name = type(value).__name__
    return "None" if value is None else f"{'an' if name[0] in 'aeiou' else 'a'} {name} ({value!r:.60})"


def _many(value: Any) -> bool:
    """A collection of several answers or questions: a list, tuple, array, ... but not a string, dict or set."""
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping | Set)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop articles, collapse whitespace (in the official order).

    Raises:
        InputError: ``text`` is not a string.
    """
    text = _check_str(text, "normalize_answer(text)", "the text")
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0.

    Raises:
        InputError: an argument is not a string.
    """
    _check_str(prediction, "exact_match(prediction)", "the prediction")
    _check_str(reference, "exact_match(reference)", "the reference")
    return float(normalize_answer(prediction) == normalize_answer(reference))


def f1(prediction: str, reference: str) -> float:
    """Token-level F1 between the normalised prediction and reference, in [0, 1] (0.0 if no token is shared).

    Raises:
        InputError: an argument is not a string.
    """
    _check_str(prediction, "f1(prediction)", "the prediction")
    _check_str(reference, "f1(reference)", "the reference")
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def reference_texts(references: Any, where: str = "references") -> list[str]:
    """The acceptable answers of one question, as a list of strings.

    Accepts a list of strings; a single string (one reference answer, never read character by character); the
    ``answers`` field of a ``datasets`` SQuAD row, ``{"text": [...], "answer_start": [...]}`` (its ``text``); or
    the raw SQuAD JSON list ``[{"text": ..., "answer_start": ...}, ...]``.

    Raises:
        InputError: naming ``where``: no answer at all, a dict without ``text``, or an answer that is not a string.
    """
    fix = ("give each question a list of answer strings, e.g. ['Denver Broncos', 'Broncos'] (or the dataset's "
           "answers field, {'text': [...], 'answer_start': [...]})")
    if isinstance(references, str):
        return [references]
    if isinstance(references, Mapping):
        if "text" not in references:
            raise input_error(where, f"is a dict without a 'text' field (its keys are {sorted(map(str, references))})",
                              fix)
        return reference_texts(references["text"], f"{where}['text']")
    if not _many(references):
        raise input_error(where, f"is {_kind(references)}, not a list of answers", fix)
    texts = []
    for j, answer in enumerate(references):
        if isinstance(answer, Mapping) and "text" in answer:  # SQuAD JSON: {"text": ..., "answer_start": ...}
            answer = answer["text"]
        if not isinstance(answer, str):
            raise input_error(f"{where}, answer {j}", f"is {_kind(answer)}, not a string", fix)
        texts.append(answer)
    if not texts:
        raise input_error(where, "has no reference answer (an empty list); every question needs at least one "
                                 "reference answer", fix)
    return texts


def best_over_references(metric, prediction: str, references: Sequence[str] | str) -> float:
    """The official rule with several reference answers: the best score over them (see :func:`reference_texts`
    for the forms ``references`` may take).

    Raises:
        InputError: the prediction is not a string; ``references`` is empty or not answer strings.
    """
    _check_str(prediction, "best_over_references(prediction)", "the prediction")
    return max(metric(prediction, ref) for ref in reference_texts(references))


def squad_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus EM and F1 in percent (like the official script), plus the per-question lists.

    Args:
        predictions: one answer string per question.
        references: per question, the acceptable answers: a list of strings, or a single string (one answer), or
            the ``answers`` field of a ``datasets`` SQuAD row (``{"text": [...], "answer_start": [...]}``: its
            ``text`` is used), or the raw SQuAD JSON list of ``{"text": ..., "answer_start": ...}``.
    Returns:
        ``{"exact_match": float, "f1": float, "n": int, "per_question_em": [...], "per_question_f1": [...]}``;
        the corpus scores are in [0, 100], the per-question ones in [0, 1].
    Raises:
        InputError: ``predictions`` or ``references`` is not a list (a string or a dict is refused, not read one
            character or key at a time), their lengths differ, there is nothing to score, a prediction is not a
            string (None, a number: the message names its index), or a question has no reference answer or one
            that is not a string (the message names the question).
    """
    for name, value in (("predictions", predictions), ("references", references)):
        if not _many(value):
            raise input_error(f"squad_scores({name})", f"is {_kind(value)}, not a list with one entry per question",
                              "pass a list, in question order (one string per question for predictions)")
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise input_error("squad_scores", f"{len(predictions)} predictions but {len(references)} reference lists: "
                                          "they must align one to one",
                          "pass one prediction and one list of reference answers per question, in the same order")
    if not predictions:
        raise input_error("squad_scores", "no predictions to score (empty evaluation set)",
                          "pass at least one question's prediction and references")
    for i, prediction in enumerate(predictions):
        _check_str(prediction, f"squad_scores(predictions), question {i}", "the prediction")
    answers = [reference_texts(r, f"squad_scores(references), question {i}") for i, r in enumerate(references)]
    em = [max(exact_match(p, ref) for ref in refs) for p, refs in zip(predictions, answers, strict=True)]
    f = [max(f1(p, ref) for ref in refs) for p, refs in zip(predictions, answers, strict=True)]
    return {"exact_match": 100.0 * sum(em) / len(em), "f1": 100.0 * sum(f) / len(f), "n": len(em),
            "per_question_em": em, "per_question_f1": f}
