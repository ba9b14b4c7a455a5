"""The exercise checks of notebook 05 (evaluating the QA adapter): each says in plain words what is wrong."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable

from utils.exercises.common import CheckFailed, Choice, _call, _number, _passed

_ANSWERS = ["The Denver Broncos!", "  in   1790 ", "a grey heron", "AN APPLE", "Theatre of an answer",
            "U.S. Navy", "Hugo Nolte's flag", "red\tand\nblue", "8 a.m.", "the-end"]
# Hidden: other words for the same rules, plus the edge cases an answer can be: empty, punctuation only,
# articles only, articles glued to punctuation ('a.k.a.', 'an-other'), words that start with an article.
_HIDDEN_ANSWERS = ["An Idea!", "THE   END.", "a.k.a. the Bard", "an-other day", "Rock 'n' roll (1950s)", "", "?!...",
                   "The a AN", "anthem of the seas", "Mr. O'Neil's hat", " x\t\ty\n", "path/to:file;v2", "A 50% rise",
                   "#1 hit, then"]


def _articles_first(text: str) -> str:
    """The normalisation with articles removed before punctuation (the wrong order)."""
    text = re.sub(r"\b(a|an|the)\b", " ", text.lower())
    return " ".join("".join(ch for ch in text if ch not in string.punctuation).split())


def check_normalize_answer(normalize_answer: Callable, *, hidden: bool = False) -> str:
    """``normalize_answer(text) -> str``: SQuAD's normalisation, compared with ``utils.evaluation.squad``.

    ``hidden=True`` checks ``_HIDDEN_ANSWERS`` instead of ``_ANSWERS``."""
    from utils.evaluation import squad as squad_metrics

    for text in _HIDDEN_ANSWERS if hidden else _ANSWERS:
        expected, got = squad_metrics.normalize_answer(text), _call(normalize_answer, text)
        if got == expected:
            continue
        if hidden and not isinstance(got, str):
            raise CheckFailed(f"normalize_answer({text!r}) returned {got!r:.80}, not a string: does every branch of "
                              "your function `return` the normalised text?")
        got = str(got)
        if got != got.lower():
            hint = "lower-case the text first."
        elif _articles_first(text) != expected and not any(ch in string.punctuation for ch in got):
            hint = ("remove punctuation BEFORE the articles (the official order): " +
                    (f"{text!r} becomes {expected!r}." if hidden else
                     "'8 a.m.' becomes '8 am' and 'the-end' becomes 'theend', which hold no article."))
        elif any(ch in string.punctuation for ch in got):
            hint = "remove every punctuation character (string.punctuation), also inside words: 'U.S.' -> 'us'."
        elif {"a", "an", "the"} & set(got.split()):
            hint = "drop the articles a, an and the."
        elif got != " ".join(got.split()):
            hint = "collapse whitespace: no leading or trailing spaces, one space between words (' '.join(s.split()))."
        elif set(expected.split()) - set(got.split()):
            hint = (r"remove articles only as whole words (a regex like \b(a|an|the)\b): 'theatre' keeps its 'the', "
                    "'apple' its 'a'.")
        else:
            hint = "lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace, in that order."
        raise CheckFailed(f"normalize_answer({text!r}) should be {expected!r}, got {got!r}: {hint}")
    return _passed("✓ normalize_answer matches SQuAD's official normalisation.", hidden)


def _f1_cases(hidden: bool) -> list[tuple[str, str, str]]:
    """``(prediction, truth, topic)``; the topic (``normalise``, ``multiplicity``, ``harmonic`` or empty) picks the
    hint when the case fails. Hidden: other strings for each topic, predictions that normalise to nothing
    (punctuation only, an article only), reordered tokens, and a seeded pair with repeated tokens."""
    if not hidden:
        return [("Denver Broncos", "Denver Broncos", ""), ("The Denver Broncos!", "denver broncos", "normalise"),
                ("in 1790", "1790", "harmonic"), ("new york new york", "new york new york", "multiplicity"),
                ("york york", "new york", "multiplicity"), ("Sable river", "Oss", ""), ("", "Oss", ""),
                ("a grey heron by the river", "the heron", "")]
    rng = random.Random(505)
    words = "river bank north port old city".split()
    prediction, truth = " ".join(rng.choices(words, k=7)), " ".join(rng.choices(words, k=4))
    return [("blue whale", "whale blue", ""), ("PARIS, France.", "paris france", "normalise"),
            ("Eiffel Tower", "the Eiffel Tower", "normalise"), ("Lake Geneva in Switzerland", "Geneva", "harmonic"),
            ("to be to be", "to be to be", "multiplicity"), ("ha ha ha", "ha", "multiplicity"),
            ("...", "Oss", ""), ("the", "an answer", ""), ("north by north-west", "west", ""),
            (prediction, truth, "multiplicity")]


def check_token_f1(token_f1: Callable, *, hidden: bool = False) -> str:
    """``token_f1(prediction, truth) -> float`` in [0, 1], compared with ``utils.evaluation.squad.f1``.

    ``hidden=True`` checks other pairs (see :func:`_f1_cases`)."""
    from utils.evaluation import squad as squad_metrics

    for prediction, truth, topic in _f1_cases(hidden):
        expected = squad_metrics.f1(prediction, truth)
        try:
            got = _number(_call(token_f1, prediction, truth), f"token_f1({prediction!r}, {truth!r})", hidden)
        except CheckFailed as err:
            if "ZeroDivisionError" in str(err):
                raise CheckFailed(f"token_f1({prediction!r}, {truth!r}) divided by zero: when no token is shared "
                                  "(or the prediction is empty) F1 is 0; return 0.0 before computing precision.") from None
            raise
        if abs(got - expected) < 1e-9:
            continue
        if abs(got - 100 * expected) < 1e-6:
            hint = "return a number between 0 and 1 here (the corpus score is the one reported in percent)."
        elif topic == "normalise":
            hint = "normalise both strings first (squad_metrics.normalize_answer), then split into tokens."
        elif topic == "multiplicity":
            hint = ("count shared tokens with multiplicity: sum((Counter(pred) & Counter(truth)).values()); a set "
                    f"counts {'a repeated token' if hidden else repr('york')} once, a plain loop counts it too often.")
        elif topic == "harmonic" and abs(got - _arithmetic_f1(prediction, truth)) < 1e-9:
            hint = "F1 is the harmonic mean 2PR / (P + R), not the average (P + R) / 2."
        else:
            hint = ("precision = shared / prediction tokens, recall = shared / truth tokens, "
                    "F1 = 2PR / (P + R), on normalised tokens.")
        raise CheckFailed(f"token_f1({prediction!r}, {truth!r}) should be {expected:.4f}, got {got:.4f}: {hint}")
    return _passed("✓ token_f1 matches SQuAD's official F1.", hidden)


def _arithmetic_f1(prediction: str, truth: str) -> float:
    """(P + R) / 2 on SQuAD-normalised tokens: what F1 comes out as when the harmonic mean is mistaken for it."""
    from collections import Counter

    from utils.evaluation import squad as squad_metrics

    pred, ref = squad_metrics.normalize_answer(prediction).split(), squad_metrics.normalize_answer(truth).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    return 0.0 if same == 0 else (same / len(pred) + same / len(ref)) / 2


def _corpora(hidden: bool) -> list[tuple[list[str], list[list[str]]]]:
    """``(predictions, references)`` corpora. Public: 4 questions with 1-2 references. Hidden: 6 questions with 1-3
    references (the best never the first; an empty and a punctuation-only prediction) and a single question."""
    if not hidden:
        return [(["Denver Broncos", "in 1790", "a grey heron", "Sable river"],
                 [["Denver Broncos", "Broncos"], ["1790", "the year 1790"], ["heron", "grey heron"], ["Oss"]])]
    return [(["Eiffel Tower", "in 1889", "", "Gustave Eiffel's company", "iron", "..."],
             [["the tower", "Eiffel Tower"], ["the year 1889", "1889"], ["Paris"],
              ["Eiffel", "Gustave Eiffel", "the company of Gustave Eiffel"], ["wrought iron", "puddled iron", "iron"],
              ["Seine"]]),
            (["north bank"], [["the south bank", "bank of the river", "north bank"]])]


def _reference_counts(references: list[list[str]]) -> str:
    """'1-2' or '3': how many references a question of the corpus has."""
    low, high = min(map(len, references)), max(map(len, references))
    return f"{low}-{high}" if low != high else f"{low}"


def check_corpus_f1(corpus_f1: Callable, *, hidden: bool = False) -> str:
    """``corpus_f1(predictions, references) -> float``: SQuAD's corpus F1 in percent (best over references).

    ``hidden=True`` checks other corpora (see :func:`_corpora`)."""
    from utils.evaluation import squad as squad_metrics

    for predictions, references in _corpora(hidden):
        expected = squad_metrics.squad_scores(predictions, references)["f1"]
        got = _number(_call(corpus_f1, predictions, [list(r) for r in references]),
                      f"corpus_f1 on {len(predictions)} questions", hidden)
        if abs(got - expected) < 1e-6:
            if hidden:
                continue
            return f"✓ corpus_f1 = {got:.2f}, as squad_metrics.squad_scores computes it."
        n = len(predictions)
        per_question_first = [squad_metrics.f1(p, r[0]) for p, r in zip(predictions, references, strict=True)]
        per_question_mean = [sum(squad_metrics.f1(p, x) for x in r) / len(r)
                             for p, r in zip(predictions, references, strict=True)]
        if abs(got - expected / 100) < 1e-6:
            hint = "SQuAD reports the corpus score in percent: multiply the mean by 100."
        elif abs(got - 100 * sum(per_question_first) / n) < 1e-6:
            hint = ("every reference answer counts: take each question's BEST F1 over its references, not the first "
                    "one's.")
        elif abs(got - 100 * sum(per_question_mean) / n) < 1e-6:
            hint = "take the best (max) F1 over a question's references, not their mean."
        else:
            hint = ("per question: max over its references of f1(prediction, reference); then the mean over questions "
                    "x 100.")
        where = f"on {n} questions with {_reference_counts(references)} references each"
        if hidden:
            where += f" (predictions {predictions}, references {references})"
        raise CheckFailed(f"{where} the corpus F1 is {expected:.2f}, got {got:.2f}: {hint}")
    return _passed("✓ corpus_f1 matches squad_metrics.squad_scores on every corpus.", hidden)


WHY_BEST_REFERENCE = Choice(
    "nb05", "why_best_reference",
    "Why does SQuAD score each question by its best F1 over the references, not the mean?",
    {"a": "the best is cheaper to compute",
     "b": "the references are alternative correct answers: matching any one of them is right, and the mean would "
          "penalise a correct answer for differing from the other phrasings",
     "c": "the mean could exceed 1"},
    "take a question with references 'Denver Broncos' and 'Broncos' and the prediction 'Broncos': what would the mean give?")


def check_why_best_reference(answer: str | None, graded: bool = False) -> str:
    """Exercise 3's question: why the best reference counts."""
    return WHY_BEST_REFERENCE.check(answer, graded)
