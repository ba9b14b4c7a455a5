"""Exact match and F1 for extractive QA, with the official SQuAD v1.1 answer normalisation.

This re-implements the official ``evaluate-v1.1.py`` script (Rajpurkar et al., 2016) offline, so no
Hub metric has to be downloaded: an answer is lower-cased, stripped of punctuation and of the
articles *a, an, the*, and its whitespace collapsed; EM is 1 when the normalised strings are equal,
F1 is the harmonic mean of token precision and recall; both take the best over the reference answers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", flags=re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop articles, collapse whitespace (in the official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def f1(prediction: str, reference: str) -> float:
    """Token-level F1 between the normalised prediction and reference (0.0 if no token is shared)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_over_references(metric, prediction: str, references: Sequence[str]) -> float:
    """The official rule with several reference answers: the best score over them."""
    if isinstance(references, str):
        references = [references]
    if not references:
        raise ValueError("every question needs at least one reference answer; got an empty list.")
    return max(metric(prediction, ref) for ref in references)


def squad_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus EM and F1 in percent (like the official script), plus the per-question lists.

    Args:
        predictions: one answer string per question.
        references: per question, the list of acceptable answers.
    Returns:
        ``{"exact_match": float, "f1": float, "n": int, "per_question_em": [...], "per_question_f1": [...]}``
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists: "
                         "they must align one to one.")
    if not predictions:
        raise ValueError("no predictions to score (empty evaluation set).")
    em = [best_over_references(exact_match, p, r) for p, r in zip(predictions, references, strict=True)]
    f = [best_over_references(f1, p, r) for p, r in zip(predictions, references, strict=True)]
    return {"exact_match": 100.0 * sum(em) / len(em), "f1": 100.0 * sum(f) / len(f), "n": len(em),
            "per_question_em": em, "per_question_f1": f}
