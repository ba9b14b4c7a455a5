"""The exercise checks of notebook 05 (evaluating the QA adapter): each says in plain words what is wrong."""

from __future__ import annotations

from collections.abc import Callable

from utils.exercises.common import CheckFailed, Choice, _call

_ANSWERS = ["The Denver Broncos!", "  in   1790 ", "a grey heron", "AN APPLE", "Theatre of an answer",
            "U.S. Navy", "Hugo Nolte's flag", "red\tand\nblue", "8 a.m.", "the-end"]


def check_normalize_answer(normalize_answer: Callable) -> str:
    """``normalize_answer(text) -> str``: SQuAD's normalisation, compared with ``utils.evaluation.squad``."""
    import string

    from utils.evaluation import squad as squad_metrics

    for text in _ANSWERS:
        expected, got = squad_metrics.normalize_answer(text), _call(normalize_answer, text)
        if got == expected:
            continue
        got = str(got)
        if got != got.lower():
            hint = "lower-case the text first."
        elif text in ("8 a.m.", "the-end") and not any(ch in string.punctuation for ch in got):
            hint = ("remove punctuation BEFORE the articles (the official order): '8 a.m.' becomes '8 am' and "
                    "'the-end' becomes 'theend', which hold no article.")
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
    return "✓ normalize_answer matches SQuAD's official normalisation."


def check_token_f1(token_f1: Callable) -> str:
    """``token_f1(prediction, truth) -> float`` in [0, 1], compared with ``utils.evaluation.squad.f1``."""
    from utils.evaluation import squad as squad_metrics

    cases = [("Denver Broncos", "Denver Broncos"), ("The Denver Broncos!", "denver broncos"), ("in 1790", "1790"),
             ("new york new york", "new york new york"), ("york york", "new york"), ("Sable river", "Oss"),
             ("", "Oss"), ("a grey heron by the river", "the heron")]
    for prediction, truth in cases:
        expected = squad_metrics.f1(prediction, truth)
        try:
            got = float(_call(token_f1, prediction, truth))
        except CheckFailed as err:
            if "ZeroDivisionError" in str(err):
                raise CheckFailed(f"token_f1({prediction!r}, {truth!r}) divided by zero: when no token is shared "
                                  "(or the prediction is empty) F1 is 0; return 0.0 before computing precision.") from None
            raise
        if abs(got - expected) < 1e-9:
            continue
        if abs(got - 100 * expected) < 1e-6:
            hint = "return a number between 0 and 1 here (the corpus score is the one reported in percent)."
        elif prediction == "The Denver Broncos!":
            hint = "normalise both strings first (squad_metrics.normalize_answer), then split into tokens."
        elif prediction in ("new york new york", "york york"):
            hint = ("count shared tokens with multiplicity: sum((Counter(pred) & Counter(truth)).values()); a set "
                    "counts 'york' once, a plain loop counts it too often.")
        elif prediction == "in 1790" and abs(got - 0.75) < 1e-9:
            hint = "F1 is the harmonic mean 2PR / (P + R), not the average (P + R) / 2."
        else:
            hint = ("precision = shared / prediction tokens, recall = shared / truth tokens, "
                    "F1 = 2PR / (P + R), on normalised tokens.")
        raise CheckFailed(f"token_f1({prediction!r}, {truth!r}) should be {expected:.4f}, got {got:.4f}: {hint}")
    return "✓ token_f1 matches SQuAD's official F1."


def check_corpus_f1(corpus_f1: Callable) -> str:
    """``corpus_f1(predictions, references) -> float``: SQuAD's corpus F1 in percent (best over references)."""
    from utils.evaluation import squad as squad_metrics

    predictions = ["Denver Broncos", "in 1790", "a grey heron", "Sable river"]
    references = [["Denver Broncos", "Broncos"], ["1790", "the year 1790"], ["heron", "grey heron"], ["Oss"]]
    expected = squad_metrics.squad_scores(predictions, references)["f1"]
    got = float(_call(corpus_f1, predictions, [list(r) for r in references]))
    if abs(got - expected) < 1e-6:
        return f"✓ corpus_f1 = {got:.2f}, as squad_metrics.squad_scores computes it."
    per_question_first = [squad_metrics.f1(p, r[0]) for p, r in zip(predictions, references, strict=True)]
    per_question_mean = [sum(squad_metrics.f1(p, x) for x in r) / len(r) for p, r in zip(predictions, references, strict=True)]
    if abs(got - expected / 100) < 1e-6:
        hint = "SQuAD reports the corpus score in percent: multiply the mean by 100."
    elif abs(got - 100 * sum(per_question_first) / 4) < 1e-6:
        hint = "every reference answer counts: take each question's BEST F1 over its references, not the first one's."
    elif abs(got - 100 * sum(per_question_mean) / 4) < 1e-6:
        hint = "take the best (max) F1 over a question's references, not their mean."
    else:
        hint = "per question: max over its references of f1(prediction, reference); then the mean over questions x 100."
    raise CheckFailed(f"on {len(predictions)} questions with 1-2 references each the corpus F1 is {expected:.2f}, "
                      f"got {got:.2f}: {hint}")


WHY_BEST_REFERENCE = Choice(
    "Why does SQuAD score each question by its best F1 over the references, not the mean?",
    {"a": "the best is cheaper to compute",
     "b": "the references are alternative correct answers: matching any one of them is right, and the mean would "
          "penalise a correct answer for differing from the other phrasings",
     "c": "the mean could exceed 1"},
    "b", "Annotators wrote different but equally correct spans; a prediction equal to one of them deserves full "
    "credit, which only the maximum gives.",
    "take a question with references 'Denver Broncos' and 'Broncos' and the prediction 'Broncos': what would the mean give?")


def check_why_best_reference(answer: str | None) -> str:
    """Exercise 3's question: why the best reference counts."""
    return WHY_BEST_REFERENCE.check(answer)
