"""Plot helpers shared by the quantization notebooks: one idea per figure, labelled axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


def weight_histogram(values: torch.Tensor, grid: torch.Tensor | None = None, *, title: str,
                     xlabel: str = "weight value", bins: int = 200, ax=None):
    """Histogram of ``values`` (any shape) with optional vertical lines at the quantization ``grid``."""
    ax = ax or plt.subplots(figsize=(8, 3.5))[1]
    ax.hist(values.detach().float().reshape(-1).cpu().numpy(), bins=bins, color="tab:blue", alpha=0.8)
    if grid is not None:
        for i, level in enumerate(grid.detach().float().cpu().tolist()):
            ax.axvline(level, color="tab:red", lw=0.8, alpha=0.8, label="4-bit levels" if i == 0 else None)
        ax.legend(loc="upper right")
    ax.set(title=title, xlabel=xlabel, ylabel="number of weights")
    return ax


def metric_vs_blocksize(rows: list[dict], metric: str, *, title: str, ylabel: str, ax=None):
    """One line per method: ``metric`` against block size (log2 axis). ``rows`` as from an error sweep."""
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["blocksize"], r[metric]) for r in rows if r["method"] == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    ax.set_xscale("log", base=2)
    ax.set(title=title, xlabel="block size (values per scale constant)", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
