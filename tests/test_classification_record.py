"""The committed learning curve of notebook 06 (results/2026-12-06_sentiment_curve/) says what its README, the
notebook and the course README say of it, and what the code computes from its runs."""

from __future__ import annotations

import json

import pytest

from utils.evaluation.seeds import compare_over_seeds
from utils.experiments import learning_curve as lc
from utils.paths import RESULTS_DIR

NAME = "2026-12-06_sentiment_curve"
DECODER = "qlora · SmolLM2-135M-Instruct"
ENCODER = ("head", "last_n", "full", "lora", "qlora")


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads((RESULTS_DIR / NAME / "record.json").read_text())


@pytest.fixture(scope="module")
def cell(record) -> dict:
    return {(r["label"], r["n_train"]): r for r in record["summary"]}


def test_the_summary_and_crossover_are_what_the_code_computes_from_the_runs(record):
    chosen = lc.choose_settings(record["runs"])
    assert json.dumps(lc.summarize(chosen)) == json.dumps(record["summary"])  # as text: one seed's std is NaN
    tfidf = {int(n): b["tfidf"] for n, b in record["baselines"].items()}
    assert lc.crossover(record["summary"], tfidf) == record["crossover"]


def test_fine_tuning_beats_tfidf_at_every_size_with_three_seeds(record):
    points = record["crossover"]["points"]
    assert [p["n_train"] for p in points] == [100, 1000, 8536]
    assert all(p["verdict"] == "beats" and p["seeds"] == 3 for p in points)
    assert record["crossover"]["first_beats"] == 100
    gaps = [p["gap"] for p in points]
    assert gaps == sorted(gaps, reverse=True)  # "the gap narrows as data grows"
    tfidf = [round(p["tfidf_macro_f1"], 2) for p in points]
    assert tfidf[0] == 0.56 and tfidf[-1] == 0.80 and tfidf == sorted(tfidf)


def test_the_record_is_complete_and_ran_on_one_card(record):
    assert record["missing"] == [] and record["out_of_domain_missing"] is False
    assert record["run_devices"] == ["cuda (NVIDIA H100 80GB HBM3)"] == sorted({r["device"] for r in record["runs"]})
    assert record["versions"]["bitsandbytes"] == "0.50.2" and record["versions"]["transformers"] == "5.24.0"


def test_the_decoder_is_best_at_every_size_at_4_to_21_times_the_encoders_time(cell):
    for n in (100, 1000, 8536):
        assert max((r for (label, size), r in cell.items() if size == n), key=lambda r: r["macro_f1"])["label"] == DECODER
        ratios = [cell[DECODER, n]["seconds"] / cell[m, n]["seconds"] for m in ENCODER]
        assert 4 <= round(min(ratios)) and round(max(ratios)) <= 21, ratios
    d, f = cell[DECODER, 100], cell["full", 100]  # "at 100 the two are within it"
    assert compare_over_seeds("d", d["macro_f1"], d["macro_f1_std"], "f", f["macro_f1"], f["macro_f1_std"]) == \
        "within seed noise"
    for n in (1000, 8536):  # "beats full fine-tuning of MiniLM by more than twice the seed spread"
        d, f = cell[DECODER, n], cell["full", n]
        assert compare_over_seeds("d", d["macro_f1"], d["macro_f1_std"], "f", f["macro_f1"],
                                  f["macro_f1_std"]).startswith("d better by")


def test_qlora_is_level_with_full_fine_tuning_at_every_size_and_head_is_last(cell):
    for n in (100, 1000, 8536):
        q, f = cell["qlora", n], cell["full", n]
        assert compare_over_seeds("qlora", q["macro_f1"], q["macro_f1_std"], "full", f["macro_f1"],
                                  f["macro_f1_std"]) == "within seed noise"
        assert min((r for (label, size), r in cell.items() if size == n), key=lambda r: r["macro_f1"])["label"] == "head"
    assert round(100 * cell["qlora", 100]["trainable_params"] / cell["full", 100]["trainable_params"], 1) == 1.5


def test_where_the_chosen_rates_sit_in_their_grids(record, cell):
    grids = {m["label"]: m["lrs"] for m in record["settings"]["methods"]}
    inside = {label for label, grid in grids.items() if min(grid) < cell[label, 100]["lr"] < max(grid)}
    assert inside == {"head", "lora", "qlora"}  # "chose a value inside their grid"
    assert all(cell[label, 100]["lr"] == max(grids[label]) for label in ("full", "last_n", DECODER))
    assert len(grids[DECODER]) == 2 and all(len(grids[m]) == 3 for m in ENCODER)  # "SmolLM2's grid was not extended"
    full = {r["lr"]: [] for r in record["runs"] if r["label"] == "full" and r["n_train"] == 100}
    for r in record["runs"]:
        if r["label"] == "full" and r["n_train"] == 100:
            full[r["lr"]].append(r["validation_macro_f1"])
    best, second = sorted((sum(v) / len(v) for v in full.values()), reverse=True)[:2]
    assert round(best - second, 3) == 0.001  # "full fine-tuning by 0.001 of validation macro-F1"
    from utils.classification import TFIDF_C_GRID

    assert all(min(TFIDF_C_GRID) < b["tfidf"]["C"] < max(TFIDF_C_GRID) for b in record["baselines"].values())


def test_out_of_domain_fine_tuning_beats_tfidf_and_the_decoder_is_level_with_full(record):
    ood = record["out_of_domain"]
    assert {d: s["rows"] for d, s in ood.items()} == {"tweets": 3362, "amazon": 2934}
    for scores in ood.values():
        assert set(scores) == {"rows", "tfidf", DECODER, "full"}  # the best two by validation
        for name in (DECODER, "full"):
            v = scores[name]
            assert len(v["per_seed"]) == 3
            assert v["macro_f1"] - scores["tfidf"]["macro_f1"] > 2 * v["macro_f1_std"], (name, v, scores["tfidf"])
        d, f = scores[DECODER], scores["full"]
        assert compare_over_seeds("d", d["macro_f1"], d["macro_f1_std"], "f", f["macro_f1"], f["macro_f1_std"]) == \
            "within seed noise"
    for name in (DECODER, "full"):  # "both score lower on tweets than on Amazon sentences"
        assert ood["tweets"][name]["macro_f1"] < ood["amazon"][name]["macro_f1"]
    assert abs(ood["tweets"]["tfidf"]["macro_f1"] - ood["amazon"]["tfidf"]["macro_f1"]) < 0.01  # "about the same"
    again = record["out_of_domain_models"]  # "the same in-domain macro-F1 as logged, to the last digit"
    assert again == {DECODER: {"device": "cuda (NVIDIA H100 80GB HBM3)", "seeds": [0],
                               "macro_f1": again[DECODER]["logged_macro_f1"],
                               "logged_macro_f1": again[DECODER]["logged_macro_f1"]}}
