"""The exercise checks of notebook 02 (NF4 vs int4 vs FP4): each says in plain words what is wrong."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from utils.exercises.common import CheckFailed, _call, _inputs
from utils.lessons import quant


def _hidden_tensors(seed: int = 1) -> list[tuple[str, torch.Tensor]]:
    """Hidden weights of other sizes than the public ones (seed ``seed``), each with the words a message names
    it by: Gaussian, heavy-tailed (a cubed Gaussian) and all-negative values."""
    g = torch.Generator().manual_seed(seed)
    return [("500 Gaussian values (std 0.03)", torch.randn(500, generator=g) * 0.03),
            ("2048 heavy-tailed values (a cubed Gaussian)", torch.randn(2048, generator=g).pow(3)),
            ("300 values, all negative", -(torch.rand(300, generator=g) + 0.05))]


def _hidden_sqnr_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(words, x, x_hat)``: :func:`_hidden_tensors` reconstructed by NF4 at block 128, int4 at block 32 and FP4
    at block 64, and x_hat = x / 2, whose SQNR is exactly 10 log10(4) = 6.02 dB."""
    formats = [("nf4", 128), ("int4", 32), ("fp4", 64)]
    cases = [(f"{words}, x_hat = {method} at block {blocksize}", x, quant.fake_quantize(x, method, blocksize))
             for (words, x), (method, blocksize) in zip(_hidden_tensors(), formats, strict=True)]
    words, x = _hidden_tensors()[0]
    return cases + [(f"{words}, x_hat = x / 2 (SQNR = 10 log10(4) = 6.02 dB)", x, x / 2)]


def _sqnr_hint(got: float, x: torch.Tensor, x_hat: torch.Tensor) -> str:
    """Name the usual mistake behind a wrong SQNR (hidden cases only): the ratio upside down, 20 log10, the
    natural log, no factor 10, or variances instead of mean squares; empty if none fits."""
    x, err = x.double(), (x - x_hat).double()
    signal, noise = float((x**2).mean()), float((err**2).mean())
    ratio = signal / noise
    candidates = [(-10 * math.log10(ratio), "the ratio is signal / noise: you computed noise / signal"),
                  (20 * math.log10(ratio), "SQNR compares powers (mean squares): 10 log10, not 20 log10"),
                  (10 * math.log(ratio), "use log10 (base 10), not the natural log"),
                  (math.log(ratio), "use 10 * log10, not the natural log"),
                  (math.log10(ratio), "multiply log10 of the ratio by 10 (decibels)"),
                  (10 * math.log10(float(x.var()) / noise), "the signal is mean(x**2), not x.var(): the variance "
                   "subtracts x's mean, which is not zero"),
                  (10 * math.log10(float(x.var()) / float(err.var())), "signal and noise are mean(x**2) and "
                   "mean((x - x_hat)**2), not variances: a variance subtracts the mean, which is not zero")]
    return next((hint for value, hint in candidates if abs(got - value) <= 1e-3), "")


def check_sqnr_db(sqnr_db: Callable, *, hidden: bool = False) -> str:
    """``sqnr_db(x, x_hat) -> float``: 10 log10(mean(x^2) / mean((x - x_hat)^2)). ``hidden=True`` tries
    :func:`_hidden_sqnr_cases`: other sizes and seeds, three formats and block sizes, all-negative values, and
    x_hat = x / 2."""
    if hidden:
        for words, x, x_hat in _hidden_sqnr_cases():
            got, expected = float(_call(sqnr_db, x, x_hat)), quant.quant_error(x, x_hat)["sqnr_db"]
            if abs(got - expected) > 1e-3:
                hint = _sqnr_hint(got, x, x_hat) or ("check that the signal is mean(x**2) and the noise mean((x - "
                                                     "x_hat)**2), and that you take 10 * log10 of their ratio")
                raise CheckFailed(f"on {words}: expected {expected:.4f} dB, got {got:.4f} dB: {hint}.")
        return "✓ sqnr_db matches quant.quant_error on every hidden case."
    for x in _inputs():
        x_hat = quant.fake_quantize(x, "nf4", 64)
        got, expected = float(_call(sqnr_db, x, x_hat)), quant.quant_error(x, x_hat)["sqnr_db"]
        if abs(got - expected) > 1e-3:
            hint = ("you may have used log instead of log10, or forgotten the factor 10" if abs(got) < abs(expected) / 2
                    else "check that the signal is mean(x**2) and the noise mean((x - x_hat)**2)")
            raise CheckFailed(f"expected {expected:.3f} dB, got {got:.3f} dB: {hint}.")
    return "✓ sqnr_db matches quant.quant_error."


def _hidden_p999_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(words, x, x_hat)``: other sizes and seeds than the public cases, int4 and NF4 at other block sizes, 12
    values (the 99.9th percentile falls between the two largest errors), and 2000 values reconstructed exactly
    but one (a single error sets the max, not the 99.9th percentile, which is 0)."""
    g = torch.Generator().manual_seed(3)
    gaussian, few, exact = (torch.randn(n, generator=g) * 0.02 for n in (1500, 12, 2000))
    one_off = exact.clone()
    one_off[1234] += 0.5
    (_, heavy), (_, negative) = _hidden_tensors()[1:]
    return [("1500 Gaussian values, x_hat = int4 at block 128", gaussian, quant.fake_quantize(gaussian, "int4", 128)),
            ("2048 heavy-tailed values, x_hat = nf4 at block 32", heavy, quant.fake_quantize(heavy, "nf4", 32)),
            ("300 values, all negative, x_hat = int4 at block 64", negative, quant.fake_quantize(negative, "int4", 64)),
            ("12 values, x_hat = int4 at block 4 (the percentile lies between the two largest errors)", few,
             quant.fake_quantize(few, "int4", 4)),
            ("2000 values, x_hat = x except one value off by 0.5", exact, one_off)]


def _p999_hint(got: float, x: torch.Tensor, x_hat: torch.Tensor) -> str:
    """Name the usual mistake behind a wrong 99.9th percentile (hidden cases only): the max, the quantile of the
    signed errors, 0.99, or another interpolation; empty if none fits."""
    signed = (x - x_hat).double()
    errors = signed.abs()
    candidates = [(float(errors.max()), "that is the largest error, which one weight sets: the 99.9th percentile, "
                   "torch.quantile(errors, 0.999), lies below it"),
                  (abs(float(torch.quantile(signed, 0.999))), "take absolute errors first, then the quantile "
                   "(not the quantile of the signed errors)"),
                  (abs(float(torch.quantile(-signed, 0.999))), "take absolute errors first, then the quantile "
                   "(not the quantile of the signed errors)"),
                  (float(torch.quantile(errors, 0.99)), "0.99 is the 99th percentile; the 99.9th is 0.999"),
                  *((float(torch.quantile(errors, 0.999, interpolation=way)), f"torch.quantile interpolates "
                     f"linearly between neighbours by default; keep that (not interpolation={way!r})")
                    for way in ("lower", "higher", "nearest", "midpoint"))]
    return next((hint for value, hint in candidates if abs(got - value) <= 1e-6 * max(1.0, abs(value))), "")


def check_p999_error(p999_error: Callable, *, hidden: bool = False) -> str:
    """``p999_error(x, x_hat) -> float``: the 99.9th percentile of |x - x_hat|. ``hidden=True`` tries
    :func:`_hidden_p999_cases`."""
    cases = (_hidden_p999_cases() if hidden
             else [("", x, quant.fake_quantize(x, "int4", 64)) for x in _inputs()])
    for words, x, x_hat in cases:
        expected = float(torch.quantile((x - x_hat).abs().double(), 0.999))
        got = float(_call(p999_error, x, x_hat))
        if abs(got - expected) <= 1e-6 * max(1.0, abs(expected)):
            continue
        if hidden:
            hint = _p999_hint(got, x, x_hat) or "take absolute errors first, then torch.quantile(..., 0.999)"
            raise CheckFailed(f"on {words}: expected {expected:.6g}, got {got:.6g}: {hint}.")
        raise CheckFailed(f"expected {expected:.6g}, got {got:.6g}. Take absolute errors first, then "
                          "torch.quantile(..., 0.999) (0.999, not 99.9).")
    return "✓ p999_error is right" + (" on every hidden case." if hidden else ".")


def _hidden_sweeps() -> list[tuple[str, list[dict]]]:
    """Two sweeps unlike the public one, each with its words: heavy-tailed weights (int4, FP4, NF4 at blocks 16
    to 1024, the block sizes not in ascending order), and uniform weights, on which int4 beats NF4 at every block
    size."""
    g = torch.Generator().manual_seed(2)
    uniform = torch.rand(4096, generator=g) * 0.1 - 0.05
    heavy = torch.randn(4096, generator=g).pow(3)
    return [("heavy-tailed weights (int4, FP4 and NF4 rows at blocks 1024, 32, 128, 16, in that order)",
             quant.error_sweep(heavy, ["int4", "fp4", "nf4"], [1024, 32, 128, 16])),
            ("uniform weights (NF4 and int4 rows at blocks 32, 256, 2048; int4 beats NF4 here)",
             quant.error_sweep(uniform, ["nf4", "int4"], [32, 256, 2048]))]


def _hidden_blocksize_cases() -> list[tuple[str, list[dict], float]]:
    """``(words, rows, floor)``: on :func:`_hidden_sweeps`, a floor equal to NF4's SQNR at block 128 (that row
    qualifies), floors below and above every row, and on uniform weights floors that int4 rows meet at larger
    block sizes than NF4 rows, or that only int4 rows meet (the answer is then None)."""
    (heavy_words, heavy), (uniform_words, uniform) = _hidden_sweeps()
    at_128 = next(r["sqnr_db"] for r in heavy if r["method"] == "nf4" and r["blocksize"] == 128)
    lowest, highest = min(r["sqnr_db"] for r in heavy), max(r["sqnr_db"] for r in heavy)
    nf4_best = max(r["sqnr_db"] for r in uniform if r["method"] == "nf4")
    nf4_worst = min(r["sqnr_db"] for r in uniform if r["method"] == "nf4")
    return [(f"{heavy_words}, a floor of exactly NF4's SQNR at block 128", heavy, at_128),
            (f"{heavy_words}, a floor below every row's SQNR", heavy, math.floor(lowest) - 1.0),
            (f"{heavy_words}, a floor above every row's SQNR", heavy, math.ceil(highest) + 1.0),
            (f"{uniform_words}, a floor only NF4's smallest block meets", uniform, (nf4_best + nf4_worst) / 2),
            (f"{uniform_words}, a floor only int4 rows meet", uniform, nf4_best + 0.01)]


def _blocksize_hint(got: object, rows: list[dict], floor: float) -> str:
    """Name the usual mistake behind a wrong block size (hidden cases only), or give the public hint."""
    def largest(keep: Callable[[dict], bool]) -> int | None:
        sizes = [r["blocksize"] for r in rows if keep(r)]
        return max(sizes) if sizes else None

    nf4_ok = [r["blocksize"] for r in rows if r["method"] == "nf4" and r["sqnr_db"] >= floor]
    if got == largest(lambda r: r["method"] == "nf4" and r["sqnr_db"] > floor):
        return "A block size whose SQNR equals the floor is good enough: keep rows with sqnr_db >= the floor, not >."
    if got == largest(lambda r: r["sqnr_db"] >= floor):
        return "Keep only NF4 rows (r['method'] == 'nf4'): another format's row does not tell NF4's SQNR."
    if nf4_ok and got in (nf4_ok[-1], min(nf4_ok)):
        return ("The rows come in any order: return the largest qualifying block size (max), not the last or the "
                "smallest one.")
    return ("Keep only NF4 rows with sqnr_db >= the floor; the largest block size among them costs the least "
            "memory (return None if none qualifies).")


def check_choose_blocksize(choose_blocksize: Callable, *, hidden: bool = False) -> str:
    """``choose_blocksize(rows, min_sqnr_db) -> int``: the largest NF4 block size meeting the floor.
    ``hidden=True`` tries :func:`_hidden_blocksize_cases`."""
    if hidden:
        for words, rows, floor in _hidden_blocksize_cases():
            ok = [r["blocksize"] for r in rows if r["method"] == "nf4" and r["sqnr_db"] >= floor]
            expected = max(ok) if ok else None
            got = _call(choose_blocksize, [dict(r) for r in rows], floor)
            if got != expected:
                raise CheckFailed(f"rows of {words} ({floor:.6g} dB): the answer is {expected}, got {got}. "
                                  + _blocksize_hint(got, rows, floor))
        return "✓ choose_blocksize picks the cheapest block size that is good enough, in every hidden case."
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
