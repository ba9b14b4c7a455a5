"""The committed learning curve of notebook 06 (results/2026-12-06_sentiment_curve/) says what its README, the
notebook and the course README say of it, and what the code computes from its runs."""

from __future__ import annotations

import json

import pytest

from utils.evaluation.seeds import compare_over_seeds
from utils.experiments import learning_curve as lc
from utils.report import RESULTS_DIR

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


def test_the_decoder_leads_at_small_sizes_at_6_to_21_times_the_encoders_time(cell, record):
    for n in (100, 1000):
        assert max((r for (label, size), r in cell.items() if size == n), key=lambda r: r["macro_f1"])["label"] == DECODER
        ratios = [cell[DECODER, n]["seconds"] / cell[m, n]["seconds"] for m in ENCODER]
        assert 6 <= round(min(ratios)) and round(max(ratios)) <= 21, ratios
    assert cell[DECODER, 8536]["seeds"] == 1  # what the record still lacks, and says so
    assert record["missing"] == [{"label": DECODER, "n_train": 8536, "seeds_run": 1, "seeds": 3}]
    assert record["crossover"]["points"][-1]["best"] == "full"


def test_qlora_is_level_with_full_fine_tuning_at_every_size_and_head_is_last(cell):
    for n in (100, 1000, 8536):
        q, f = cell["qlora", n], cell["full", n]
        assert compare_over_seeds("qlora", q["macro_f1"], q["macro_f1_std"], "full", f["macro_f1"],
                                  f["macro_f1_std"]) == "within seed noise"
        assert min((r for (label, size), r in cell.items() if size == n), key=lambda r: r["macro_f1"])["label"] == "head"
    assert round(100 * cell["qlora", 100]["trainable_params"] / cell["full", 100]["trainable_params"], 1) == 1.5


def test_every_chosen_rate_is_the_top_of_its_grid(record, cell):
    grids = {m["label"]: m["lrs"] for m in record["settings"]["methods"]}
    assert all(cell[label, 100]["lr"] == max(grid) for label, grid in grids.items())
    assert record["baselines"]["100"]["tfidf"]["C"] == record["baselines"]["8536"]["tfidf"]["C"] == 100.0


def test_out_of_domain_fine_tuning_beats_tfidf_and_tweets_are_harder(record):
    ood = record["out_of_domain"]
    assert {d: s["rows"] for d, s in ood.items()} == {"tweets": 3362, "amazon": 2934}
    for scores in ood.values():
        assert set(scores) == {"rows", "tfidf", "full", "qlora"}  # the best two by validation with three seeds
        for name in ("full", "qlora"):
            v = scores[name]
            assert len(v["per_seed"]) == 3
            assert v["macro_f1"] - scores["tfidf"]["macro_f1"] > 2 * v["macro_f1_std"], (name, v, scores["tfidf"])
    for name in ("full", "qlora"):  # "both score lower on tweets than on Amazon sentences"
        assert ood["tweets"][name]["macro_f1"] < ood["amazon"][name]["macro_f1"]
    assert abs(ood["tweets"]["tfidf"]["macro_f1"] - ood["amazon"]["tfidf"]["macro_f1"]) < 0.01  # "about the same"
    again = record["out_of_domain_models"]
    mean = {name: sum(v["macro_f1"]) / 3 for name, v in again.items()}
    logged = {name: sum(v["logged_macro_f1"]) / 3 for name, v in again.items()}
    assert abs(mean["full"] - logged["full"]) < 0.01  # "score as the GPU's did for full fine-tuning"
    assert min(again["qlora"]["macro_f1"]) < min(again["qlora"]["logged_macro_f1"]) - 0.03  # "one QLoRA seed lower"
