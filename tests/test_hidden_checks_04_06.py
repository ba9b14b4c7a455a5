"""The hidden exercise checks of notebooks 04-06 (``check_<name>(fn, hidden=True)``): the instructor notebooks'
solutions pass them, a function that only knows the public inputs' answers fails them, and typical mistakes get
a specific message on the hidden inputs too."""

from __future__ import annotations

import copy
import functools
import inspect
import re
import string
from collections import Counter
from collections.abc import Callable
from types import ModuleType
from typing import Any

import nbformat
import pytest

from utils.evaluation import squad as squad_metrics
from utils.exercises import nb04, nb05, nb06
from utils.exercises.common import CheckFailed
from utils.paths import REPO_ROOT
from utils.qa import data as qa_data

_NOTEBOOKS = {nb04: "04_phi2_qlora_training.ipynb", nb05: "05_phi2_qa_evaluation.ipynb",
              nb06: "06_custom_classification.ipynb"}
EXERCISES = [(nb04, "answer_only_labels"), (nb04, "padding_waste"), (nb04, "adam_state_bytes"),
             (nb05, "normalize_answer"), (nb05, "token_f1"), (nb05, "corpus_f1"),
             (nb06, "label_ids"), (nb06, "majority_accuracy"), (nb06, "macro_f1")]
_IDS = [name for _, name in EXERCISES]


def _checker(module: ModuleType, name: str) -> Callable[..., str]:
    return getattr(module, f"check_{name}")


@functools.cache
def _cells(module: ModuleType) -> list:
    return nbformat.read(REPO_ROOT / "notebooks" / _NOTEBOOKS[module], as_version=4).cells


def _solution(module: ModuleType, name: str) -> Callable:
    """The instructor notebook's solution: the first cell tagged ``solution`` after the ``exercise`` cell that
    defines ``name``, run with the module aliases the notebook's set-up cells import."""
    cells = _cells(module)
    tags = [cell.metadata.get("tags", []) for cell in cells]
    start = next(i for i, cell in enumerate(cells) if "exercise" in tags[i] and f"def {name}(" in cell.source)
    source = next(cells[i].source for i in range(start + 1, len(cells)) if "solution" in tags[i])
    namespace: dict[str, Any] = {"qa_data": qa_data, "squad_metrics": squad_metrics}
    exec(source, namespace)  # the notebook's own code, as the notebook runs it
    return namespace[name]


# What a function that knows only the public answers returns for anything else: the right type, a wrong value.
_WRONG_VALUE: dict[str, Callable[..., Any]] = {
    "answer_only_labels": lambda input_ids, prompt_length: list(input_ids),
    "normalize_answer": lambda text: "?",
    "label_ids": lambda labels: ([], []),
}


def _memorised(check: Callable[..., str], reference: Callable, fallback: Callable) -> Callable:
    """A function right only on the public inputs: it returns the reference's outputs, recorded while the public
    check runs, for exactly those arguments, and ``fallback(*args)`` for any others."""
    outputs: dict[str, Any] = {}

    def recorder(*args: Any) -> Any:
        key = repr(args)
        outputs[key] = reference(*args)
        return copy.deepcopy(outputs[key])

    check(recorder)

    def memorised(*args: Any) -> Any:
        key = repr(args)
        return copy.deepcopy(outputs[key]) if key in outputs else fallback(*args)

    return memorised


def test_every_function_checker_of_notebooks_04_to_06_is_covered():
    found = {(module, name.removeprefix("check_")) for module in _NOTEBOOKS for name, fn in vars(module).items()
             if name.startswith("check_") and inspect.isfunction(fn) and "hidden" in inspect.signature(fn).parameters}
    function_checkers = {(module, name.removeprefix("check_")) for module in _NOTEBOOKS
                         for name in vars(module) if name.startswith("check_") and not name.startswith("check_why_")}
    assert found == function_checkers == set(EXERCISES)


@pytest.mark.parametrize("module,name", EXERCISES, ids=_IDS)
def test_the_notebook_solution_passes_the_hidden_check(module, name, capsys):
    solution = _solution(module, name)
    message = _checker(module, name)(solution, hidden=True)
    assert message.startswith("✓") and message.endswith("(hidden inputs)")
    assert not _checker(module, name)(solution).endswith("(hidden inputs)")
    assert capsys.readouterr().out == ""  # checkers never print


@pytest.mark.parametrize("fallback", ["wrong value", "None"])
@pytest.mark.parametrize("module,name", EXERCISES, ids=_IDS)
def test_answers_known_only_for_the_public_inputs_fail_the_hidden_check(module, name, fallback):
    check = _checker(module, name)
    wrong = _WRONG_VALUE.get(name, lambda *args: -1.0) if fallback == "wrong value" else lambda *args: None
    memorised = _memorised(check, _solution(module, name), wrong)
    assert check(memorised).startswith("✓")
    with pytest.raises(CheckFailed):  # a plain-words failure, also for None: never a TypeError
        check(memorised, hidden=True)


# --- typical mistakes ----------------------------------------------------------------------------------------


def _normalize(text: str) -> str:
    return squad_metrics.normalize_answer(text)


def _f1_from(normalize: Callable[[str], str], combine: Callable[[int, int, int], float],
             overlap: Callable[[list[str], list[str]], int]) -> Callable[[str, str], float]:
    """token_f1 built from a normalisation, a shared-token count and a way to combine (shared, n_pred, n_truth)."""

    def token_f1(prediction: str, truth: str) -> float:
        pred, ref = normalize(prediction).split(), normalize(truth).split()
        same = overlap(pred, ref)
        return combine(same, len(pred), len(ref))

    return token_f1


def _counted(pred: list[str], ref: list[str]) -> int:
    return sum((Counter(pred) & Counter(ref)).values())


def _harmonic(same: int, n_pred: int, n_ref: int) -> float:
    return 0.0 if same == 0 else 2 * same / (n_pred + n_ref)


def _no_zero_guard(same: int, n_pred: int, n_ref: int) -> float:
    p, r = same / n_pred, same / n_ref
    return 2 * p * r / (p + r)


def _ends_only(text: str) -> str:
    """A normalisation that strips punctuation only at the ends of the answer."""
    text = re.sub(r"\b(a|an|the)\b", " ", text.lower().strip(string.punctuation))
    return " ".join(text.split())


def _articles_first(text: str) -> str:
    """The normalisation in the wrong order: articles removed before punctuation."""
    text = re.sub(r"\b(a|an|the)\b", " ", text.lower())
    return " ".join("".join(ch for ch in text if ch not in string.punctuation).split())


def _best(prediction: str, references: list[str]) -> float:
    return max(squad_metrics.f1(prediction, r) for r in references)


def _class_f1(y_true: list[int], y_pred: list[int], c: int) -> float:
    tp = sum(t == c and p == c for t, p in zip(y_true, y_pred, strict=True))
    fp = sum(t != c and p == c for t, p in zip(y_true, y_pred, strict=True))
    fn = sum(t == c and p != c for t, p in zip(y_true, y_pred, strict=True))
    return 2 * tp / (2 * tp + fp + fn)  # no 0/0 guard


def _majority_of(labels: list[int], test: list[int]) -> float:
    label = Counter(labels).most_common(1)[0][0]
    return sum(y == label for y in test) / len(test)


def _own_punctuation(text: str) -> str:
    """A normalisation with a hand-written punctuation list instead of string.punctuation."""
    text = "".join(ch for ch in text.lower() if ch not in ".,;:!?'-")
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _median_label(train: list[int], test: list[int]) -> float:
    """The baseline with the median training label where the most frequent one belongs."""
    label = sorted(train)[len(train) // 2]
    return sum(y == label for y in test) / len(test)


def _sorted_as_text(labels: list) -> tuple[list[str], list[int]]:
    """label_ids with the names sorted as strings ('10' before '2')."""
    names = sorted({str(x) for x in labels})
    return names, [names.index(str(x)) for x in labels]


def _blocks_rounded(n: int, optimizer: str) -> int:
    return 8 * n if optimizer == "adamw_torch" or n < 4096 else 2 * (n + 4 * round(n / 256))


def _in_place(input_ids: list[int], prompt_length: int) -> list[int]:
    input_ids[:prompt_length] = [-100] * prompt_length
    return input_ids


# (module, name, wrong function, message it must get on the hidden inputs, whether it passes the public check)
MISTAKES = [
    (nb04, "answer_only_labels", lambda ids, p: list(ids[:p]) + [-100] * (len(ids) - p), "you masked the answer",
     False),
    (nb04, "answer_only_labels", lambda ids, p: [-100] * (p + 1) + list(ids[p + 1:]), "off-by-one", False),
    (nb04, "answer_only_labels", _in_place, "changed `input_ids` in place", False),
    (nb04, "padding_waste", lambda ls, pad_to=None: (len(ls) * (pad_to or max(ls)) - sum(ls)) / sum(ls),
     r"lengths \[.*\] padded to the longest: expected .*ALL tokens of the padded batch", False),
    (nb04, "padding_waste", lambda ls, pad_to=None: 1 - sum(ls) / (len(ls) * max(ls)),
     r"padded to 192: .*not to the longest", False),
    (nb04, "adam_state_bytes", _blocks_rounded, r"a tensor of 4,097 values: .*round the number of blocks up", True),
    (nb04, "adam_state_bytes", lambda n, o: 4 * n, r"adamw_torch, a tensor of 1 values: .*TWO moments", False),
    (nb05, "normalize_answer", _own_punctuation, r"should be 'rock n roll 1950s'.*string\.punctuation", True),
    (nb05, "normalize_answer", _ends_only, r"normalize_answer\('a\.k\.a\. the Bard'\).*string\.punctuation", False),
    (nb05, "normalize_answer", _articles_first,
     r"should be 'aka bard', got 'k bard': remove punctuation BEFORE the articles .*'a\.k\.a\. the Bard' becomes", False),
    (nb05, "token_f1", _f1_from(_normalize, _harmonic, lambda p, r: len(set(p) & set(r))),
     r"token_f1\('to be to be'.*multiplicity", False),
    (nb05, "token_f1", _f1_from(_normalize, lambda s, p, r: 0.0 if s == 0 else (s / p + s / r) / 2, _counted),
     r"token_f1\('Lake Geneva in Switzerland', 'Geneva'\) should be 0\.4000, got 0\.6250: .*harmonic mean", False),
    (nb05, "token_f1", _f1_from(_normalize, _no_zero_guard, _counted), r"token_f1\('\.\.\.', 'Oss'\) divided by zero",
     False),
    (nb05, "token_f1", _f1_from(_ends_only, _harmonic, _counted),
     r"token_f1\('PARIS, France\.', 'paris france'\).*normalise both strings", True),
    (nb05, "corpus_f1", lambda ps, rs: 100 * sum(_best(p, r[:1]) for p, r in zip(ps, rs, strict=True)) / len(ps),
     r"on 6 questions with 1-3 references each .*not the first one's", False),
    (nb05, "corpus_f1", lambda ps, rs: 100 * sum(_best(p, r) for p, r in zip(ps, rs, strict=True)) / 4,
     r"on 6 questions .*then the mean over questions x 100", True),
    (nb06, "label_ids", lambda ls: (list(dict.fromkeys(ls)), [list(dict.fromkeys(ls)).index(x) for x in ls]),
     r"labels \['spam'.*do not depend on which row comes first", False),
    (nb06, "label_ids", _sorted_as_text, r"labels \[100, 9, 25.*2 comes before 10", False),
    (nb06, "majority_accuracy", _median_label, r"train=\[1, 9, 3, .*expected 0\.4000, got 0\.0000.*most_common", True),
    (nb06, "majority_accuracy", lambda train, test: _majority_of(test, test), "TEST labels", False),
    (nb06, "macro_f1", lambda t, p, n: sum(_class_f1(t, p, c) for c in range(n)) / n,
     r"n_classes=5\) divided by zero: class\(es\) \[3\] occur in neither y_true nor y_pred", True),
    (nb06, "macro_f1", lambda t, p, n: sum(_class_f1(t, p, c) for c in set(t)) / len(set(t)),
     r"never occur in y_true but still count: divide by n_classes", True),
    (nb06, "macro_f1", lambda t, p, n: sum(a == b for a, b in zip(t, p, strict=True)) / len(t), "that is accuracy",
     False),
]


@pytest.mark.parametrize("module,name,wrong,message,passes_public", MISTAKES,
                         ids=[f"{m[1]}-{i}" for i, m in enumerate(MISTAKES)])
def test_a_typical_mistake_fails_the_hidden_check_in_words(module, name, wrong, message, passes_public):
    check = _checker(module, name)
    with pytest.raises(CheckFailed, match=message):
        check(wrong, hidden=True)
    if passes_public:  # a mistake only the hidden inputs catch
        assert check(wrong).startswith("✓")


def test_the_majority_tie_in_the_hidden_inputs_accepts_any_tie_break():
    """The exercise does not say which of two equally frequent training labels to answer."""

    def lowest_first(train, test):
        counts = Counter(train)
        label = min(counts, key=lambda c: (-counts[c], c))
        return sum(y == label for y in test) / len(test)

    def highest_first(train, test):
        counts = Counter(train)
        label = max(counts, key=lambda c: (counts[c], c))
        return sum(y == label for y in test) / len(test)

    for majority in (lowest_first, highest_first):
        assert nb06.check_majority_accuracy(majority, hidden=True).startswith("✓")


def test_the_punctuation_order_hint_picks_the_same_public_answers_as_before():
    """The hint once named '8 a.m.' and 'the-end'; it now asks which answers the order changes."""
    assert {t for t in nb05._ANSWERS if nb05._articles_first(t) != _normalize(t)} == {"8 a.m.", "the-end"}


def test_the_hidden_inputs_are_seeded_and_differ_from_the_public_ones():
    builders = [nb04._label_cases, nb04._padding_cases, nb04._adam_sizes, nb05._f1_cases, nb05._corpora,
                nb06._macro_f1_cases, nb06._majority_cases, nb06._label_lists]
    for build in builders:
        assert build(True) == build(True)
        assert not {repr(c) for c in build(True)} & {repr(c) for c in build(False)}, build.__name__
    assert not set(nb05._HIDDEN_ANSWERS) & set(nb05._ANSWERS)
