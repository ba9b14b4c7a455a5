"""Comparing scores measured over training seeds: the one rule notebooks 03, 05 and 06 state their findings with.

A configuration trained with several seeds gives a mean and a sample standard deviation. Two of them (or one
and a single deterministic score, whose spread is 0) differ only when their means are more than ``k`` (default
2) times the larger standard deviation apart; otherwise the difference is within the seed noise and no
finding is stated.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``nan`` for one value, as pandas gives) of scores over seeds."""
    if not values:
        raise ValueError("no scores: at least one seed is needed")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def seed_verdict(mean_a: float, std_a: float, mean_b: float, std_b: float, k: float = 2.0) -> str:
    """``"higher"`` or ``"lower"`` (a against b) when the means differ by more than ``k`` times the larger
    standard deviation, ``"within seed noise"`` when they do not, ``"not comparable"`` when a spread is unknown
    (``nan``: one seed of a configuration that varies with the seed). A deterministic score has std 0."""
    if std_a < 0 or std_b < 0 or k <= 0:
        raise ValueError(f"stds must be >= 0 and k > 0, got std_a={std_a}, std_b={std_b}, k={k}.")
    if math.isnan(std_a) or math.isnan(std_b):
        return "not comparable"
    gap = mean_a - mean_b
    if abs(gap) <= k * max(std_a, std_b):
        return "within seed noise"
    return "higher" if gap > 0 else "lower"


def verdict_against(mean: float, std: float, reference: float, k: float = 2.0) -> str:
    """Compare a score measured over seeds (``mean`` ± ``std``) with a single ``reference`` score: ``"beats"``
    or ``"falls short of"`` when the gap exceeds ``k`` standard deviations, else ``"is level with"``."""
    if std < 0 or k <= 0:
        raise ValueError(f"std must be >= 0 and k > 0, got std={std}, k={k}.")
    gap = mean - reference
    return "beats" if gap > k * std else "falls short of" if -gap > k * std else "is level with"


def compare_over_seeds(a: str, mean_a: float, std_a: float, b: str, mean_b: float, std_b: float,
                       k: float = 2.0) -> str:
    """:func:`seed_verdict` in words: ``"<a or b> better by <gap>"``, ``"within seed noise"``, or ``"not comparable
    (no seed spread: run at least 2 seeds)"``."""
    verdict = seed_verdict(mean_a, std_a, mean_b, std_b, k)
    if verdict == "not comparable":
        return "not comparable (no seed spread: run at least 2 seeds)"
    if verdict == "within seed noise":
        return verdict
    return f"{a if verdict == 'higher' else b} better by {abs(mean_a - mean_b):.3f}"


def gap_words(verdict: str, gap: float, up: str, down: str, level: str) -> str:
    """A :func:`seed_verdict` and its gap (a - b, in points) as the end of a sentence whose subject is a: ``"<up> by
    12.3 points"``, ``"<down> by 4.0 points"``, or ``"<level> by +1.2 points, within the seed noise"`` (``level``: the
    neutral verb, e.g. "changes F1"), or the same with "one seed: the noise is not measured"."""
    return {"higher": f"{up} by {gap:.1f} points", "lower": f"{down} by {-gap:.1f} points",
            "within seed noise": f"{level} by {gap:+.1f} points, within the seed noise",
            "not comparable": f"{level} by {gap:+.1f} points (one seed: the noise is not measured; set SEEDS = 3)"}[verdict]
