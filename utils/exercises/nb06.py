"""The exercise checks of notebook 06 (custom text classification): each says in plain words what is wrong."""

from __future__ import annotations

import random
from collections.abc import Callable

from utils.exercises.common import CheckFailed, _call, _converted, _int_list, _number, _passed


def _macro_f1_cases(hidden: bool) -> list[tuple[list[int], list[int], int]]:
    """``(y_true, y_pred, n_classes)``. Public: every class occurs in ``y_true``, some are never predicted.
    Hidden: 30 seeded labels of 5 classes (class 4 never predicted); a class in neither list (its F1 is the 0/0
    case, 0), once with a class predicted but absent from ``y_true``; a single-class test set; a binary
    majority-class predictor."""
    if not hidden:
        return [([0, 0, 0, 0, 1, 1, 2, 2, 2, 3], [0, 0, 1, 0, 1, 2, 2, 2, 0, 0], 4),  # class 3 never predicted
                ([0, 1, 1, 2, 2, 2, 2, 2], [2, 2, 2, 2, 2, 2, 2, 2], 3),  # a majority-class predictor
                ([0, 1, 2, 0, 1, 2, 1, 1], [0, 2, 1, 0, 1, 2, 1, 0], 3)]
    rng = random.Random(606)
    y_true = list(range(5)) + [rng.randrange(5) for _ in range(25)]
    y_pred = [y if y < 4 and rng.random() < 0.6 else rng.randrange(4) for y in y_true]
    return [(y_true, y_pred, 5), ([0, 0, 0, 1, 1, 2, 2, 2, 2, 2], [0, 0, 4, 1, 0, 2, 2, 2, 1, 2], 5),
            ([0, 1, 1, 0, 2, 2, 2], [0, 1, 0, 0, 2, 1, 2], 4), ([1, 1, 1, 1, 1], [1, 1, 0, 2, 1], 3),
            ([1, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 0], 2)]


def _zero_division_hint(y_true: list[int], y_pred: list[int], n_classes: int) -> str:
    """Why a macro-F1 divided by zero on these labels (for the hidden checks)."""
    empty = sorted(set(range(n_classes)) - set(y_true) - set(y_pred))
    if empty:
        return (f"class(es) {empty} occur in neither y_true nor y_pred, so their 2TP + FP + FN is 0 (precision and "
                "recall are 0/0 too): the exercise counts such a class's F1 as 0, and it still counts in the mean.")
    return ("a class that is never predicted has precision 0/0 (and one absent from y_true recall 0/0): use "
            "F1_c = 2TP / (2TP + FP + FN), which is 0 for it, and 0 when that is 0/0.")


def check_macro_f1(macro_f1: Callable, *, hidden: bool = False) -> str:
    """``macro_f1(y_true, y_pred, n_classes) -> float``, compared with scikit-learn's ``f1_score(average="macro")``.

    Every class 0..n_classes-1 occurs in ``y_true`` in the public test cases (no 0/0 ambiguity); some are
    never predicted, and those count as F1 = 0. ``hidden=True`` checks other cases, the 0/0 one among them
    (see :func:`_macro_f1_cases`).
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    for y_true, y_pred, n in _macro_f1_cases(hidden):
        labels = list(range(n))
        expected = f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)
        call = f"macro_f1(y_true={y_true}, y_pred={y_pred}, n_classes={n})"
        try:
            got = _number(_call(macro_f1, list(y_true), list(y_pred), n), call, hidden)
        except CheckFailed as err:
            if hidden and "ZeroDivisionError" in str(err):
                raise CheckFailed(f"{call} divided by zero: {_zero_division_hint(y_true, y_pred, n)}") from None
            raise
        if abs(got - expected) < 1e-9:
            continue
        per_class = f1_score(y_true, y_pred, average=None, labels=labels, zero_division=0)
        predicted = sorted(set(y_pred))
        if abs(got - 100 * expected) < 1e-6:
            hint = "return a number between 0 and 1, not a percentage."
        elif abs(got - accuracy_score(y_true, y_pred)) < 1e-9:
            hint = ("that is accuracy (the micro-average over examples); macro-F1 is the mean of the per-class F1 "
                    "scores, every class counting once however many examples it has.")
        elif abs(got - f1_score(y_true, y_pred, average="weighted", labels=labels, zero_division=0)) < 1e-9:
            hint = "you weighted the classes by their size; macro gives every class the same weight."
        elif abs(got - sum(per_class[c] for c in predicted) / len(predicted)) < 1e-9:
            hint = (f"a class that is never predicted (here {sorted(set(labels) - set(predicted))}) has F1 = 0 and "
                    "still counts in the average: divide by n_classes.")
        elif abs(got - precision_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)) < 1e-9 or \
                abs(got - recall_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)) < 1e-9:
            hint = "that is macro precision or recall; each class's F1 is 2PR / (P + R) = 2TP / (2TP + FP + FN)."
        elif abs(got - sum(per_class) / len(set(y_true))) < 1e-9:  # only reachable when a class is not in y_true
            hint = (f"class(es) {sorted(set(labels) - set(y_true))} never occur in y_true but still count: "
                    "divide by n_classes, not by the number of classes in y_true.")
        else:
            hint = "per class c: F1_c = 2TP / (2TP + FP + FN) (0 when that is 0/0); macro-F1 = their mean over all classes."
        where = f"y_true={y_true}, y_pred={y_pred}" + (f", n_classes={n}" if hidden else "")
        raise CheckFailed(f"{where}: macro-F1 is {expected:.4f} (per class "
                          f"{[round(float(f), 3) for f in per_class]}), got {got:.4f}. {hint}")
    return _passed("✓ macro_f1 matches sklearn.metrics.f1_score(average='macro').", hidden)


def _majority(train_labels: list[int], test_labels: list[int]) -> dict[str, float]:
    """``utils.classification.majority_baseline`` on a DatasetDict built from the two label lists."""
    import datasets

    from utils import classification

    names = [f"class {i}" for i in range(max(train_labels + test_labels) + 1)]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    parts = {split: datasets.Dataset.from_dict({"text": ["x"] * len(y), "label": y}, features=features)
             for split, y in (("train", train_labels), ("test", test_labels))}
    return classification.majority_baseline(datasets.DatasetDict(parts))


def _majority_cases(hidden: bool) -> list[tuple[list[int], list[int]]]:
    """``(train_labels, test_labels)``. Hidden: 40 / 25 seeded labels of classes 2, 5, 7 (train's majority is not
    the test's), a majority that is neither the median nor the first label, a tie for the training majority (both
    tied classes score the same, so any tie-break is right), a single-class test set without the majority class,
    and a test label never seen in training."""
    if not hidden:
        return [([0, 1, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2, 2, 2, 2]),  # train's majority (1) is not the test's (2)
                ([3, 3, 3, 0, 1, 2, 3, 1], [0, 1, 2, 3, 3])]
    rng = random.Random(707)
    train = rng.choices([2, 5, 7], weights=[2, 5, 3], k=40)
    test = rng.choices([2, 5, 7], weights=[2, 3, 5], k=25)
    return [(train, test), ([1, 9, 3, 9, 5, 7, 9, 2, 9], [9, 1, 2, 3, 9]), ([4, 4, 1, 1, 0], [1, 4, 0, 4, 1, 2]),
            ([1, 2, 2, 0], [0, 0, 0, 0]), ([5, 5, 6], [7, 5, 7, 7])]


def check_majority_accuracy(majority_accuracy: Callable, *, hidden: bool = False) -> str:
    """``majority_accuracy(train_labels, test_labels) -> float``: the majority-class baseline's test accuracy.

    ``hidden=True`` checks other label lists (see :func:`_majority_cases`)."""
    from collections import Counter

    for train, test in _majority_cases(hidden):
        expected = _majority(train, test)["accuracy"]
        got = _number(_call(majority_accuracy, list(train), list(test)),
                      f"majority_accuracy({train}, {test})", hidden)
        if abs(got - expected) < 1e-9:
            continue
        test_majority = Counter(test).most_common(1)[0][0]
        train_majority = Counter(train).most_common(1)[0][0]
        if abs(got - 100 * expected) < 1e-6:
            hint = "return a number between 0 and 1, not a percentage."
        elif abs(got - test.count(test_majority) / len(test)) < 1e-9:
            hint = ("you took the most frequent class of the TEST labels; the baseline learns it from the training "
                    "labels (the test labels are not known when predicting).")
        elif abs(got - train.count(train_majority) / len(train)) < 1e-9:
            hint = "score it on the test labels: the share of TEST rows whose label is the training majority class."
        elif abs(got - 1 / len(set(train) | set(test))) < 1e-9:
            hint = "the baseline always answers the most frequent class; its accuracy is not 1 / number of classes."
        else:
            hint = ("find the most frequent training label (Counter(train).most_common(1)), predict it for every test "
                    "row, and return the share of test rows it gets right.")
        raise CheckFailed(f"train={train}, test={test}: expected {expected:.4f}, got {got:.4f}. {hint}")
    return _passed("✓ majority_accuracy matches utils.classification.majority_baseline.", hidden)


def _label_lists(hidden: bool) -> list[list]:
    """Label lists. Public: ticket topics and the numbers 10, 2, 1. Hidden: other words, numbers whose text order
    differs from their numeric order, one class only, ids 0..2 given out of order, 20 seeded numbers."""
    if not hidden:
        return [["shipping", "billing", "login", "billing", "refund", "shipping"], [10, 2, 1, 2, 10, 1, 2]]
    rng = random.Random(808)
    return [["spam", "ham", "eggs", "spam", "toast", "ham"], [100, 9, 25, 9, 100, 3], ["only"] * 3, [2, 0, 1, 2, 1],
            rng.choices([30, 5, 12, 1], k=20)]


def check_label_ids(label_ids: Callable, *, hidden: bool = False) -> str:
    """``label_ids(labels) -> (names, ids)``: sorted class names and each label's id, like
    ``utils.classification.load_labelled`` (and scikit-learn's ``LabelEncoder``) assign them.
    ``hidden=True`` checks other label lists (see :func:`_label_lists`)."""
    from sklearn.preprocessing import LabelEncoder

    for labels in _label_lists(hidden):
        encoder = LabelEncoder().fit(labels)
        names, ids = [str(c) for c in encoder.classes_], [int(i) for i in encoder.transform(labels)]
        out = _call(label_ids, list(labels))
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CheckFailed("`label_ids` should return a pair `(names, ids)`." +
                              (f" For {labels} it returned {out!r:.80}." if hidden else ""))
        got_names = _converted(lambda values: [str(n) for n in values], out[0], f"the names of label_ids({labels})",
                               "a list of names", hidden)
        got_ids = _int_list(out[1], f"the ids of label_ids({labels})", hidden)
        if got_names != names:
            if len(got_names) != len(set(got_names)):
                hint = "list every class once (a set of the labels, then sorted)."
            elif got_names == list(dict.fromkeys(str(x) for x in labels)):
                hint = "sort the names, so the ids do not depend on which row comes first."
            elif got_names == sorted(names):
                hint = "sort the label values themselves, not their str(): as numbers 2 comes before 10."
            else:
                hint = "names = the distinct labels, sorted."
            raise CheckFailed(f"labels {labels}: names should be {names}, got {got_names}. {hint}")
        if got_ids != ids:
            raise CheckFailed(f"labels {labels}: ids should be {ids}, got {got_ids}. The id of a label is its "
                              "position in names (names.index(label)); one id per label, in the labels' order.")
    return _passed("✓ label_ids numbers the classes as utils.classification.load_labelled does.", hidden)
