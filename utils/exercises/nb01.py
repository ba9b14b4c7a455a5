"""The exercise checks of notebook 01 (4-bit quantization, made visible): each says in plain words what is wrong."""

from __future__ import annotations

from collections.abc import Callable

import torch

from utils.exercises.common import CheckFailed, Choice, _call, _inputs
from utils.lessons import quant


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
    """``answers = {"block 16 + double quant": ..., "block 512": ...}`` in bits per weight (block sizes that
    section 6's table does not list)."""
    expected = {"block 16 + double quant": quant.bits_per_parameter(16, double_quant=True),
                "block 512": quant.bits_per_parameter(512)}
    for key, value in expected.items():
        if key not in answers or answers[key] is None:
            raise CheckFailed(f"fill in answers[{key!r}] with a number of bits per weight.")
        if abs(float(answers[key]) - value) > 1e-3:
            hint = ("4 bits for the code, plus 8/16 for the 8-bit absmax, plus 32/(16*256) for the second-level scale"
                    if "double" in key else "4 bits for the code plus one float32 (32 bits) shared by 512 weights")
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


WHY_OUTLIER_BLOCK = Choice(
    "Why do the other weights change their 4-bit value in the outlier's own block only, wherever it sits in W?",
    {"a": "each block is scaled by its own absmax, and the outlier raises only its own block's absmax",
     "b": "bitsandbytes clips weights larger than the block's absmax",
     "c": "an outlier in the middle of a matrix is rounded to zero"},
    "a", "Each block has its own absmax: the outlier raises its own block's absmax, which coarsens that block's levels, "
    "whichever block it is; every other block keeps its scale, so its weights keep their 4-bit values.",
    "compare how many blocks the outlier's absmax applies to with how many blocks W has.")


def check_why_outlier_block(answer: str | None) -> str:
    """Exercise 3's question: why an outlier changes its own block only, wherever it is."""
    return WHY_OUTLIER_BLOCK.check(answer)
