"""Checkers for the notebooks' exercises: each says in plain words what is wrong.

A checker takes the learner's function (or answer), compares it with a reference on small,
seeded inputs and raises :class:`CheckFailed` with an explanation, or returns a short message
on success. Checkers never print; the check cell shows the returned message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from utils import quant


class CheckFailed(AssertionError):
    """The exercise's answer is not right yet; the message says why and what to look at."""


def _call(fn: Callable, *args: Any) -> Any:
    """Call the learner's function, turning 'not written yet' and crashes into plain messages."""
    name = getattr(fn, "__name__", "your function")
    try:
        return fn(*args)
    except NotImplementedError:
        raise CheckFailed(f"`{name}` is not written yet: replace `raise NotImplementedError` with your code.") from None
    except Exception as err:  # the learner's bug, reported in words
        raise CheckFailed(f"`{name}` raised {type(err).__name__}: {err}") from None


def _inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(256, generator=g) * 0.02, torch.tensor([0.7, -0.36, 0.1, 0.0, -0.7]),
            torch.randn(1000, generator=g).pow(3)]


# --- notebook 01 ------------------------------------------------------------------------------


def check_absmax_int4(absmax_int4: Callable) -> str:
    """``absmax_int4(x) -> (codes, scale)``: integer codes in -7..7 and scale = max|x|."""
    for x in _inputs():
        out = _call(absmax_int4, x)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CheckFailed("`absmax_int4` should return a pair `(codes, scale)`.")
        codes, scale = out
        codes = torch.as_tensor(codes)
        if codes.shape != x.shape:
            raise CheckFailed(f"codes should have one entry per value: shape {tuple(x.shape)}, got {tuple(codes.shape)}.")
        if float(scale) != float(x.abs().max()):
            raise CheckFailed(f"scale should be the largest magnitude max|x| = {float(x.abs().max()):.6g}, got {float(scale):.6g}.")
        if codes.is_floating_point() and not torch.equal(codes, codes.round()):
            raise CheckFailed("codes should be whole numbers: round x / scale * 7 to the nearest integer.")
        if codes.min() < -7 or codes.max() > 7:
            raise CheckFailed(f"codes must lie in -7..7, got {int(codes.min())}..{int(codes.max())}.")
        reference = quant.fake_quantize(x, "int4", x.numel())
        yours = codes.float() * float(scale) / 7
        wrong = (yours - reference).abs() > 1e-6 * float(scale)
        if wrong.any():
            i = int(wrong.nonzero()[0])
            raise CheckFailed(f"{int(wrong.sum())} of {x.numel()} values come back wrong, e.g. x[{i}] = {float(x[i]):.4g} "
                              f"gives code {int(codes[i])}, expected {round(float(reference[i]) / float(scale) * 7)}: the code is "
                              "the nearest integer to x / scale * 7 (torch.round).")
    return "✓ absmax_int4 matches the reference on all test tensors."


def check_bits_per_weight(answers: dict[str, float]) -> str:
    """``answers = {"block 32 + double quant": ..., "block 128": ...}`` in bits per weight."""
    expected = {"block 32 + double quant": quant.bits_per_parameter(32, double_quant=True),
                "block 128": quant.bits_per_parameter(128)}
    for key, value in expected.items():
        if key not in answers or answers[key] is None:
            raise CheckFailed(f"fill in answers[{key!r}] with a number of bits per weight.")
        if abs(float(answers[key]) - value) > 1e-3:
            hint = ("4 bits for the code, plus 8/32 for the 8-bit absmax, plus 32/(32*256) for the second-level scale"
                    if "double" in key else "4 bits for the code plus one float32 (32 bits) shared by 128 weights")
            raise CheckFailed(f"{key}: {answers[key]} is not right. Count {hint}.")
    return "✓ both storage costs are right."


def check_spoiled_block(spoiled_block: Callable) -> str:
    """``spoiled_block(index, blocksize, shape) -> int``: the block of a flat index in a row-major tensor."""
    cases = [((0, 0), 64, (384, 384)), ((0, 100), 64, (384, 384)), ((2, 5), 64, (384, 384)), ((191, 200), 128, (384, 384))]
    for (row, col), blocksize, shape in cases:
        got = _call(spoiled_block, (row, col), blocksize, shape)
        expected = (row * shape[1] + col) // blocksize
        if got != expected:
            raise CheckFailed(f"weight ({row}, {col}) of a {shape} matrix with blocks of {blocksize}: expected block "
                              f"{expected}, got {got}. Blocks run over the *flattened* (row-major) tensor: "
                              "flat index = row * n_columns + column.")
    return "✓ spoiled_block finds the right block."


def check_nf4_levels(nf4_levels_yours: Callable) -> str:
    """``nf4_levels_yours() -> tensor(16)``: NF4 levels derived from normal quantiles."""
    levels = torch.as_tensor(_call(nf4_levels_yours)).float().flatten()
    reference = quant.nf4_levels()
    if levels.numel() != 16:
        raise CheckFailed(f"NF4 has 16 levels, you returned {levels.numel()}.")
    if not torch.equal(levels, levels.sort().values):
        raise CheckFailed("sort the levels in ascending order.")
    if levels.max() != 1 or levels.min() != -1:
        raise CheckFailed("normalise: divide by the largest level so the levels span exactly [-1, 1].")
    if not (levels == 0).any():
        raise CheckFailed("NF4 has an exact zero level: 7 negative quantiles, 0, and 8 positive ones.")
    worst = float((levels - reference).abs().max())
    if worst > 1e-5:
        raise CheckFailed(f"levels differ from NF4's by up to {worst:.3g}. Use probabilities evenly spaced from "
                          "the offset 0.9677083 down to 0.5 (9 points for the positive side, 8 for the negative), "
                          "drop the 0.5 itself, and take torch.special.ndtri of them.")
    return f"✓ your levels equal NF4's to within {worst:.1e}."


# --- notebook 02 ------------------------------------------------------------------------------


def check_sqnr_db(sqnr_db: Callable) -> str:
    """``sqnr_db(x, x_hat) -> float``: 10 log10(mean(x^2) / mean((x - x_hat)^2))."""
    for x in _inputs():
        x_hat = quant.fake_quantize(x, "nf4", 64)
        got, expected = float(_call(sqnr_db, x, x_hat)), quant.quant_error(x, x_hat)["sqnr_db"]
        if abs(got - expected) > 1e-3:
            hint = ("you may have used log instead of log10, or forgotten the factor 10" if abs(got) < abs(expected) / 2
                    else "check that the signal is mean(x**2) and the noise mean((x - x_hat)**2)")
            raise CheckFailed(f"expected {expected:.3f} dB, got {got:.3f} dB: {hint}.")
    return "✓ sqnr_db matches quant.quant_error."


def check_p999_error(p999_error: Callable) -> str:
    """``p999_error(x, x_hat) -> float``: the 99.9th percentile of |x - x_hat|."""
    for x in _inputs():
        x_hat = quant.fake_quantize(x, "int4", 64)
        expected = float(torch.quantile((x - x_hat).abs().double(), 0.999))
        got = float(_call(p999_error, x, x_hat))
        if abs(got - expected) > 1e-6 * max(1.0, abs(expected)):
            raise CheckFailed(f"expected {expected:.6g}, got {got:.6g}. Take absolute errors first, then "
                              "torch.quantile(..., 0.999) (0.999, not 99.9).")
    return "✓ p999_error is right."


def check_choose_blocksize(choose_blocksize: Callable) -> str:
    """``choose_blocksize(rows, min_sqnr_db) -> int``: the largest NF4 block size meeting the floor."""
    x = _inputs()[0].repeat(64)
    rows = quant.error_sweep(x, ["nf4", "int4"], [32, 64, 128, 256, 512])
    for floor in (15.0, 19.5, 20.5):
        ok = [r["blocksize"] for r in rows if r["method"] == "nf4" and r["sqnr_db"] >= floor]
        expected = max(ok) if ok else None
        got = _call(choose_blocksize, rows, floor)
        if got != expected:
            raise CheckFailed(f"with a floor of {floor} dB the answer is {expected}, got {got}. Keep only NF4 rows "
                              "with sqnr_db >= the floor; the largest block size among them costs the least memory "
                              "(return None if none qualifies).")
    return "✓ choose_blocksize picks the cheapest block size that is good enough."
