"""The exercise checks of notebook 02 (NF4 vs int4 vs FP4): each says in plain words what is wrong."""

from __future__ import annotations

from collections.abc import Callable

import torch

from utils.exercises.common import CheckFailed, _call, _inputs
from utils.lessons import quant


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
