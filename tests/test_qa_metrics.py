"""utils.evaluation.squad against hand-computed cases of the official SQuAD v1.1 rules."""

from __future__ import annotations

import pytest

from utils.evaluation import squad as sm


@pytest.mark.parametrize("raw,expected", [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  an   apple, a pear  ", "apple pear"),
    ("Theatre", "theatre"),               # 'the' only as a whole word
    ("U.S.A.", "usa"),                     # punctuation removed before articles
    ("A-team", "ateam"),                   # hyphen is punctuation: 'a' glued on, not an article
    ("1,790", "1790"),
])
def test_normalize_answer(raw, expected):
    assert sm.normalize_answer(raw) == expected


def test_exact_match_ignores_case_articles_and_punctuation():
    assert sm.exact_match("the Denver Broncos.", "Denver Broncos") == 1.0
    assert sm.exact_match("Denver", "Denver Broncos") == 0.0


def test_f1_hand_computed():
    # prediction 3 tokens, reference 2, 1 shared: P = 1/3, R = 1/2, F1 = 2PR/(P+R) = 0.4
    assert sm.f1("green stag statue", "stag head") == pytest.approx(0.4)
    # repeated tokens count with multiplicity: pred [a? no] 'fox fox fox' vs 'fox' -> P=1/3, R=1 -> 0.5
    assert sm.f1("fox fox fox", "fox") == pytest.approx(0.5)
    assert sm.f1("", "fox") == 0.0
    assert sm.f1("The", "a") == 0.0  # both normalise to empty: no shared token


def test_best_over_several_references_and_corpus_percentages():
    scores = sm.squad_scores(["Broncos", "1790", "a red owl"],
                             [["Denver Broncos", "Broncos"], ["1791"], ["red owl"]])
    assert scores["per_question_em"] == [1.0, 0.0, 1.0]
    assert scores["exact_match"] == pytest.approx(200 / 3)
    assert scores["f1"] == pytest.approx(200 / 3)
    assert scores["n"] == 3


def test_misaligned_or_empty_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="2 predictions but 1 reference"):
        sm.squad_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="empty evaluation set"):
        sm.squad_scores([], [])
    with pytest.raises(ValueError, match="at least one reference"):
        sm.squad_scores(["a"], [[]])
