"""QA examples of realistic length, built offline from the course's own text, for speed and memory benchmarks.

The course's QA set (``data/qa``) has short contexts (about 86 tokens per example with Phi-2's tokenizer);
SQuAD v1.1, what notebook 04 trains on in the full profile, averages about 190. Speed and memory depend on
lengths, not words, so :func:`realistic_rows` lengthens each of our examples to a length drawn from a
SQuAD-like distribution: other paragraphs of the course's data are added around the example's own paragraph
(the answer stays where it was, its ``answer_start`` shifted), until the encoded example reaches its target.

The distribution (:data:`SQUAD_TOKENS`): a log-normal over tokens per example (prompt + answer), **mean 190**
(SQuAD v1.1's, measured with Phi-2's tokenizer by an earlier session and quoted in issue 18 and the developers'
guide) and **standard deviation 0.45 x the mean** (an assumption: SQuAD's paragraphs are Wikipedia paragraphs
whose lengths vary by about half their mean; the Hub is unreachable here, so this spread was not measured),
cut at ``max_length`` like notebook 04's encoding cuts long contexts. Every table built on it says so.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

SQUAD_TOKENS = {"mean": 190.0, "std_over_mean": 0.45}  # tokens per example, see the module docstring


def target_lengths(n: int, mean: float = SQUAD_TOKENS["mean"], std_over_mean: float = SQUAD_TOKENS["std_over_mean"],
                   seed: int = 0) -> list[int]:
    """``n`` seeded draws from the log-normal with that mean and relative spread (tokens per example)."""
    sigma = math.sqrt(math.log(1 + std_over_mean ** 2))
    mu = math.log(mean) - sigma ** 2 / 2
    rng = random.Random(seed)
    return [max(1, round(rng.lognormvariate(mu, sigma))) for _ in range(n)]


def realistic_rows(rows: Sequence[Mapping[str, Any]], tokenizer: Any, n: int, max_length: int,
                   seed: int = 0, **distribution: float) -> list[dict[str, Any]]:
    """``n`` QA rows whose encoded length (prompt + answer, :func:`utils.qa.data.encode_example`) follows
    :data:`SQUAD_TOKENS` (or ``distribution``'s ``mean``/``std_over_mean``), cut at ``max_length``.

    Each row is one of ``rows`` (cycled, seeded order) with distractor paragraphs (other rows' contexts) added
    before and after its own context until the target is reached; ``answer_start`` is shifted accordingly, so
    the rows pass :func:`utils.qa.data.check_rows`. Rows that are already longer than their target are kept as
    they are.
    """
    from utils.qa.data import encode_example

    rng = random.Random(seed)
    paragraphs = sorted({r["context"] for r in rows})
    order = [rows[i % len(rows)] for i in rng.sample(range(len(rows)), len(rows))]
    out = []
    for i, target in enumerate(target_lengths(n, seed=seed, **distribution)):
        base = order[i % len(order)]
        before: list[str] = []
        after: list[str] = []
        row, target = dict(base), min(target, max_length)
        length = len(encode_example(row, tokenizer, 10**6).input_ids)
        while length < target:  # add a paragraph while that brings the length closer to the target
            extra = rng.choice([p for p in paragraphs if p != base["context"]])
            side = before if rng.random() < 0.5 else after
            side.append(extra)
            shift = sum(len(p) + 1 for p in before)
            candidate = {**base, "id": f"{base['id']}_len{i}", "context": " ".join([*before, base["context"], *after]),
                         "answers": {"text": list(base["answers"]["text"]),
                                     "answer_start": [s + shift for s in base["answers"]["answer_start"]]}}
            new_length = len(encode_example(candidate, tokenizer, 10**6).input_ids)
            if new_length - target > target - length:
                side.pop()
                break
            row, length = candidate, new_length
        out.append(row)
    return out


def describe(lengths: Sequence[int]) -> str:
    """One line: count, mean, median, 10th/90th percentile and max of token lengths."""
    s = sorted(lengths)
    pct = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return (f"{len(s)} examples, tokens per example mean {statistics.mean(s):.0f}, median {pct(0.5)}, "
            f"p10 {pct(0.1)}, p90 {pct(0.9)}, max {s[-1]}")
