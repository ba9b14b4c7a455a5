"""Scores of an ablation, per configuration: the table of mean, std and count over seeds, and the plot of a score
against the rank.

A row is one trained model (``variant``, ``rank``, ``alpha``, ``targets``, ``seed``, its metrics, ``failed``), as
:func:`utils.experiments.ablation.run_ablation` returns them and a sweep's ``sweep_results.csv`` holds them. Rows
that differ only by their seed are one configuration (:data:`CONFIG_KEYS`). Notebook 03 summarises and plots its
runs with these; the sweep (:mod:`utils.experiments.sweep`) writes its ``sweep_summary.csv`` and
``sweep_plot.png`` with them.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

DEFAULT_METRICS = ("accuracy", "macro_f1")
# columns that tell configurations apart (a row's "configuration" = these, minus the seed)
CONFIG_KEYS = ("variant", "rank", "alpha", "targets")


def cell_value(value: Any) -> Any:
    """``value`` as one cell of a table: a number, string, bool or None as it is, anything else as JSON."""
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)


def config_key(row: dict[str, Any], keys: Iterable[str] = CONFIG_KEYS) -> tuple:
    return tuple(cell_value(row.get(k)) for k in keys)


def summarise(rows: list[dict[str, Any]], metrics: Sequence[str] = DEFAULT_METRICS,
              keys: Sequence[str] = CONFIG_KEYS) -> list[dict[str, Any]]:
    """Mean, sample std and count of each metric per configuration (rows differing only by seed), over the seeds
    that trained: a row whose ``failed`` is true (diverged or stalled, notebook 03) is counted, not averaged.

    Returns one dict per configuration, sorted by variant then rank: the ``keys`` columns, ``n_seeds`` (rows in
    the means), ``n_failed`` (rows left out), ``<metric>_mean`` (``nan`` if no row trained), ``<metric>_std``
    (``nan`` unless at least two rows trained: one seed does not measure the seed noise), plus ``trainable_params``
    and ``adapter_bytes`` (equal across seeds), ``seconds`` and ``peak_bytes`` (means over every row: a failed
    run's time and memory are measured too) when present.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(config_key(row, keys), []).append(row)
    table = []
    for key, members in groups.items():
        entry = dict(zip(keys, key, strict=True))
        trained = [m for m in members if not m.get("failed")]
        entry["n_seeds"], entry["n_failed"] = len(trained), len(members) - len(trained)
        for metric in metrics:
            values = [float(m[metric]) for m in trained if m.get(metric) is not None]
            entry[f"{metric}_mean"] = statistics.fmean(values) if values else math.nan
            entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else math.nan
        for extra in ("trainable_params", "adapter_bytes", "seconds", "peak_bytes"):
            values = [m[extra] for m in members if m.get(extra) is not None]
            if values:
                entry[extra] = values[0] if extra in ("trainable_params", "adapter_bytes") else statistics.fmean(values)
        table.append(entry)
    return sorted(table, key=lambda e: (str(e.get("variant")), e.get("rank") if isinstance(e.get("rank"), (int, float))
                                        else math.inf))


def plot_scores(rows: list[dict[str, Any]], x: str = "rank", metric: str = "accuracy",
                baseline: float | None = None, ax=None, title: str | None = None):
    """Mean +- std (over the seeds that trained) of ``metric`` against ``x`` on a log axis, one line per variant;
    dots are seeds, crosses are runs that failed (``failed`` true: diverged or stalled), drawn but not averaged.

    Args:
        x: ``"rank"``, ``"trainable_params"`` or another numeric column :func:`summarise` keeps.
        baseline: drawn as a dashed line (e.g. the majority-class accuracy).
    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4))
    variants = sorted({str(r.get("variant", "")) for r in rows})
    failed_label = "failed run (not in the mean)"
    for i, variant in enumerate(variants):
        mine = [r for r in rows if str(r.get("variant", "")) == variant and r.get(x) is not None]
        summary = sorted((e for e in summarise(mine) if e.get(x) is not None and e["n_seeds"]), key=lambda e: e[x])
        color = f"C{i}"
        ax.errorbar([e[x] for e in summary], [e[f"{metric}_mean"] for e in summary],
                    yerr=[0.0 if math.isnan(e[f"{metric}_std"]) else e[f"{metric}_std"] for e in summary],
                    fmt="o-", color=color, capsize=3, label=variant or None)
        trained = [r for r in mine if not r.get("failed")]
        ax.scatter([r[x] for r in trained], [r[metric] for r in trained], s=10, color=color, alpha=0.35)
        failed = [r for r in mine if r.get("failed")]
        if failed:
            ax.scatter([r[x] for r in failed], [r[metric] for r in failed], marker="x", s=40, color=color,
                       label=failed_label if len(variants) == 1 else f"{variant}: {failed_label}")
            for at in sorted({r[x] for r in failed}):  # crosses of equal scores coincide: say how many there are
                here = [r[metric] for r in failed if r[x] == at]
                ax.annotate(f"{len(here)} failed", (at, statistics.fmean(here)), textcoords="offset points",
                            xytext=(0, 7), ha="center", fontsize=8, color=color)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", label=f"majority class ({baseline:.2f})")
    ax.set_xscale("log")
    ranks = sorted({r[x] for r in rows if r.get(x) is not None})
    if x == "rank" and ranks:
        ax.set_xticks(ranks, [str(r) for r in ranks])
        ax.minorticks_off()
    ax.set_xlabel({"rank": "LoRA rank r (log scale)",
                   "trainable_params": "trainable parameters (log scale)"}.get(x, f"{x} (log scale)"))
    ax.set_ylabel(f"test {metric.replace('_', '-')} (fraction of the test set)" if metric == "accuracy"
                  else f"test {metric.replace('_', '-')}")
    ax.set_title(title or f"{metric.replace('_', '-')} vs {x.replace('_', ' ')} (mean +- std over seeds)")
    ax.legend(fontsize=8)
    return ax
