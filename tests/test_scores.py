"""utils.experiments.scores: the per-configuration table (mean, std and count over the seeds that trained) and the
score-vs-rank plot that notebook 03 and the sweep make from ablation rows."""

from __future__ import annotations

import pytest

from utils.experiments import scores


def test_summary_and_plot_count_runs_that_failed_to_train_but_leave_them_out_of_the_means():
    """Notebook 03 flags a run whose loss diverged or stalled (``failed``): it measures a learning rate that does
    not suit the configuration, so it is counted and drawn, never averaged; one seed measures no spread (nan)."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [{"variant": "v", "rank": 8, "seed": s, "accuracy": a, "failed": f, "seconds": 2.0 + s}
            for s, (a, f) in enumerate([(0.8, False), (0.6, False), (0.2, True)])]
    rows += [{"variant": "v", "rank": 64, "seed": 0, "accuracy": 0.2, "failed": True, "seconds": 5.0},
             {"variant": "w", "rank": 8, "seed": 0, "accuracy": 0.7, "failed": False}]
    by_key = {(e["variant"], e["rank"]): e for e in scores.summarise(rows, metrics=["accuracy"])}
    r8 = by_key[("v", 8)]
    assert (r8["n_seeds"], r8["n_failed"]) == (2, 1) and r8["accuracy_mean"] == pytest.approx(0.7)
    assert r8["accuracy_std"] == pytest.approx(math.sqrt(0.02)) and r8["seconds"] == pytest.approx(3.0)  # time: all 3
    r64 = by_key[("v", 64)]
    assert (r64["n_seeds"], r64["n_failed"]) == (0, 1) and math.isnan(r64["accuracy_mean"]) and r64["seconds"] == 5.0
    assert math.isnan(by_key[("w", 8)]["accuracy_std"])  # one seed: the spread is not measured
    ax = scores.plot_scores([r for r in rows if r["variant"] == "v"], "rank", "accuracy")
    crosses = [c for c in ax.collections if c.get_label() == "failed run (not in the mean)"]
    assert len(crosses) == 1 and len(crosses[0].get_offsets()) == 2
    plt.close(ax.figure)
