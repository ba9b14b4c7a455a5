"""The exercise checks of notebook 06 (custom text classification): each says in plain words what is wrong."""

from __future__ import annotations

from collections.abc import Callable

from utils.exercises.common import CheckFailed, _call


def check_macro_f1(macro_f1: Callable) -> str:
    """``macro_f1(y_true, y_pred, n_classes) -> float``, compared with scikit-learn's ``f1_score(average="macro")``.

    Every class 0..n_classes-1 occurs in ``y_true`` in the test cases (no 0/0 ambiguity); some are
    never predicted, and those count as F1 = 0.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    cases = [([0, 0, 0, 0, 1, 1, 2, 2, 2, 3], [0, 0, 1, 0, 1, 2, 2, 2, 0, 0], 4),  # class 3 never predicted
             ([0, 1, 1, 2, 2, 2, 2, 2], [2, 2, 2, 2, 2, 2, 2, 2], 3),  # a majority-class predictor
             ([0, 1, 2, 0, 1, 2, 1, 1], [0, 2, 1, 0, 1, 2, 1, 0], 3)]
    for y_true, y_pred, n in cases:
        labels = list(range(n))
        expected = f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)
        got = float(_call(macro_f1, list(y_true), list(y_pred), n))
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
        else:
            hint = "per class c: F1_c = 2TP / (2TP + FP + FN) (0 when that is 0/0); macro-F1 = their mean over all classes."
        raise CheckFailed(f"y_true={y_true}, y_pred={y_pred}: macro-F1 is {expected:.4f} (per class "
                          f"{[round(float(f), 3) for f in per_class]}), got {got:.4f}. {hint}")
    return "✓ macro_f1 matches sklearn.metrics.f1_score(average='macro')."


def _majority(train_labels: list[int], test_labels: list[int]) -> dict[str, float]:
    """``utils.classification.majority_baseline`` on a DatasetDict built from the two label lists."""
    import datasets

    from utils import classification

    names = [f"class {i}" for i in range(max(train_labels + test_labels) + 1)]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    parts = {split: datasets.Dataset.from_dict({"text": ["x"] * len(y), "label": y}, features=features)
             for split, y in (("train", train_labels), ("test", test_labels))}
    return classification.majority_baseline(datasets.DatasetDict(parts))


def check_majority_accuracy(majority_accuracy: Callable) -> str:
    """``majority_accuracy(train_labels, test_labels) -> float``: the majority-class baseline's test accuracy."""
    from collections import Counter

    cases = [([0, 1, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2, 2, 2, 2]),  # train's majority (1) is not the test's (2)
             ([3, 3, 3, 0, 1, 2, 3, 1], [0, 1, 2, 3, 3])]
    for train, test in cases:
        expected = _majority(train, test)["accuracy"]
        got = float(_call(majority_accuracy, list(train), list(test)))
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
    return "✓ majority_accuracy matches utils.classification.majority_baseline."


def check_label_ids(label_ids: Callable) -> str:
    """``label_ids(labels) -> (names, ids)``: sorted class names and each label's id, like
    ``utils.classification.load_labelled`` (and scikit-learn's ``LabelEncoder``) assign them."""
    from sklearn.preprocessing import LabelEncoder

    cases = [["shipping", "billing", "login", "billing", "refund", "shipping"], [10, 2, 1, 2, 10, 1, 2]]
    for labels in cases:
        encoder = LabelEncoder().fit(labels)
        names, ids = [str(c) for c in encoder.classes_], [int(i) for i in encoder.transform(labels)]
        out = _call(label_ids, list(labels))
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CheckFailed("`label_ids` should return a pair `(names, ids)`.")
        got_names, got_ids = [str(n) for n in out[0]], [int(i) for i in out[1]]
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
    return "✓ label_ids numbers the classes as utils.classification.load_labelled does."
