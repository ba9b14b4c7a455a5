"""utils.evaluation.squad against hand-computed cases of the official SQuAD v1.1 rules."""

from __future__ import annotations

import pytest

from utils.errors import InputError
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
    with pytest.raises(InputError, match="2 predictions but 1 reference"):
        sm.squad_scores(["a", "b"], [["a"]])
    with pytest.raises(InputError, match="empty evaluation set"):
        sm.squad_scores([], [])
    with pytest.raises(InputError, match="at least one reference"):
        sm.squad_scores(["a"], [[]])


def test_references_in_the_datasets_answers_format_a_single_string_and_squad_json():
    # the loader's own SQuAD `answers` field: its 'text' list is used, not the dict's keys (which scored 0)
    answers = {"text": ["Ann", "Ann Lee"], "answer_start": [0, 0]}
    assert sm.squad_scores(["Ann"], [answers])["exact_match"] == 100.0
    assert sm.squad_scores(["Lee"], [answers])["f1"] == pytest.approx(100 * 2 / 3)  # 'Lee' vs 'ann lee': P=1, R=1/2
    # one string is one reference answer, not a list of its characters ('A' alone would match the old way)
    assert sm.squad_scores(["Ann"], ["Ann"])["exact_match"] == 100.0
    assert sm.squad_scores(["n"], ["Ann"])["exact_match"] == 0.0
    # the raw SQuAD JSON list of {"text", "answer_start"}
    assert sm.squad_scores(["Ann"], [[{"text": "Ann", "answer_start": 0}]])["exact_match"] == 100.0


@pytest.mark.parametrize("predictions,references,match", [
    ([None], [["Ann"]], r"^squad_scores\(predictions\), question 0: the prediction is None, not a string"),
    (["Ann", 3], [["Ann"], ["3"]], r"^squad_scores\(predictions\), question 1: the prediction is an int \(3\)"),
    (["a", "b"], [["a"]], r"^squad_scores: 2 predictions but 1 reference lists: they must align one to one"),
    (["a"], [["a"], ["b"]], r"1 predictions but 2 reference lists"),
    (["a", "b"], [["a"], []], r"^squad_scores\(references\), question 1: has no reference answer \(an empty list\)"),
    (["a"], [{"answer_start": [0]}], r"question 0: is a dict without a 'text' field \(its keys are \['answer_start'\]\)"),
    (["a"], [{"text": []}], r"question 0\['text'\]: has no reference answer"),
    (["a"], [[None]], r"question 0, answer 0: is None, not a string"),
    (["a"], [[["nested"]]], r"question 0, answer 0: is a list \(\['nested'\]\), not a string"),
    (["a"], [7], r"question 0: is an int \(7\), not a list of answers"),
    ("Ann", ["Ann"], r"^squad_scores\(predictions\): is a str \('Ann'\), not a list with one entry per question"),
    (["a"], {"q0": ["a"]}, r"^squad_scores\(references\): is a dict"),
    ([], [], r"no predictions to score \(empty evaluation set\)"),
])
def test_bad_predictions_and_references_are_input_errors_naming_the_question(predictions, references, match):
    with pytest.raises(InputError, match=match) as info:
        sm.squad_scores(predictions, references)
    assert ". Fix: " in str(info.value) and info.value.__cause__ is None


def test_the_per_answer_metrics_refuse_what_is_not_a_string():
    with pytest.raises(InputError, match=r"normalize_answer\(text\): the text is None, not a string"):
        sm.normalize_answer(None)
    with pytest.raises(InputError, match=r"f1\(prediction\): the prediction is an int \(3\)"):
        sm.f1(3, "3")
    with pytest.raises(InputError, match=r"exact_match\(reference\): the reference is a list"):
        sm.exact_match("a", ["a"])


def test_an_answer_that_normalises_to_nothing_follows_the_official_v1_1_rule():
    # EM compares the normalised strings ('' == ''), F1 finds no shared token: the v1.1 script's 1 and 0
    scores = sm.squad_scores(["The"], [["a"]])
    assert (scores["exact_match"], scores["f1"]) == (100.0, 0.0)
