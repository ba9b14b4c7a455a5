"""The exercise checks of notebook 01 (4-bit quantization, made visible): each says in plain words what is wrong."""

from __future__ import annotations

from collections.abc import Callable

import torch

from utils.exercises.common import CheckFailed, Choice, _call, _inputs
from utils.lessons import quant


def _hidden_inputs(seed: int = 1) -> list[tuple[str, torch.Tensor]]:
    """The hidden quantization inputs, each with the words a message names it by: Gaussian and heavy-tailed
    values of other sizes (seed ``seed``), all-negative values, a block whose largest magnitude occurs three times
    with both signs, and a single value. None puts a value halfway between two codes (no rounding ties)."""
    g = torch.Generator().manual_seed(seed)
    return [("300 Gaussian values (std 0.05)", torch.randn(300, generator=g) * 0.05),
            ("777 heavy-tailed values (a cubed Gaussian)", torch.randn(777, generator=g).pow(3)),
            ("40 values, all negative", -(torch.rand(40, generator=g) * 0.9 + 0.1)),
            ("x = [0.25, -0.25, 0.25, 0.1, -0.04] (the largest magnitude three times)",
             torch.tensor([0.25, -0.25, 0.25, 0.1, -0.04])),
            ("a single value, x = [-0.3]", torch.tensor([-0.3]))]


def _scale_hint(x: torch.Tensor, scale: float) -> str:
    """Name the usual wrong scale (hidden inputs only): the largest value, or minus the largest magnitude."""
    if scale == float(x.max()):
        return (" That is x.max(), the largest value; the scale is the largest magnitude, x.abs().max(), positive "
                "even when every value is negative.")
    if scale == -float(x.abs().max()):
        return " The scale is a magnitude: x.abs().max(), positive."
    return ""


def _check_absmax_on(absmax_int4: Callable, x: torch.Tensor, where: str = "") -> None:
    """Raise :class:`CheckFailed` unless ``absmax_int4(x)`` is right; ``where`` names a hidden input in messages
    (empty for the public ones, whose messages name none)."""
    out = _call(absmax_int4, x)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise CheckFailed(f"{where}`absmax_int4` should return a pair `(codes, scale)`.")
    codes, scale = out
    codes = torch.as_tensor(codes)
    if codes.shape != x.shape:
        raise CheckFailed(f"{where}codes should have one entry per value: shape {tuple(x.shape)}, "
                          f"got {tuple(codes.shape)}.")
    if float(scale) != float(x.abs().max()):
        raise CheckFailed(f"{where}scale should be the largest magnitude max|x| = {float(x.abs().max()):.6g}, got "
                          f"{float(scale):.6g}." + (_scale_hint(x, float(scale)) if where else ""))
    if codes.is_floating_point() and not torch.equal(codes, codes.round()):
        raise CheckFailed(f"{where}codes should be whole numbers: round x / scale * 7 to the nearest integer.")
    if codes.min() < -7 or codes.max() > 7:
        raise CheckFailed(f"{where}codes must lie in -7..7, got {int(codes.min())}..{int(codes.max())}.")
    reference = quant.fake_quantize(x, "int4", x.numel())
    yours = codes.float() * float(scale) / 7
    wrong = (yours - reference).abs() > 1e-6 * float(scale)
    if wrong.any():
        i = int(wrong.nonzero()[0])
        raise CheckFailed(f"{where}{int(wrong.sum())} of {x.numel()} values come back wrong, e.g. x[{i}] = "
                          f"{float(x[i]):.4g} gives code {int(codes[i])}, expected "
                          f"{round(float(reference[i]) / float(scale) * 7)}: the code is the nearest integer to "
                          "x / scale * 7 (torch.round).")


def check_absmax_int4(absmax_int4: Callable, *, hidden: bool = False) -> str:
    """``absmax_int4(x) -> (codes, scale)``: integer codes in -7..7 and scale = max|x|. ``hidden=True`` tries
    :func:`_hidden_inputs` instead of the public tensors."""
    if hidden:
        for words, x in _hidden_inputs():
            _check_absmax_on(absmax_int4, x, f"on {words}: ")
        return "✓ absmax_int4 matches the reference on all hidden test tensors."
    for x in _inputs():
        _check_absmax_on(absmax_int4, x)
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


_SPOILED_CASES = [((0, 0), 64, (384, 384)), ((0, 100), 64, (384, 384)), ((2, 5), 64, (384, 384)),
                  ((191, 200), 128, (384, 384))]  # (row, col), blocksize, shape: the public cases
_HIDDEN_SPOILED_CASES = [((0, 63), 64, (100, 300)), ((0, 64), 64, (100, 300)),  # the last of block 0, the first of 1
                         ((3, 7), 32, (10, 50)), ((150, 20), 64, (300, 100)),  # wide and tall: rows != columns
                         ((5, 2), 128, (6, 40)),  # a block longer than a row
                         ((99, 299), 256, (100, 300))]  # the very last weight


def _spoiled_hint(got: object, row: int, col: int, blocksize: int, shape: tuple[int, int]) -> str:
    """Name the usual mistake behind a wrong block (hidden cases only), or give the public hint."""
    n_rows, n_cols = shape
    if got == (row * n_rows + col) // blocksize:
        return ("You multiplied the row by shape[0], the number of rows: shape is (rows, columns), and the flat "
                "index is row * shape[1] + column.")
    if got == (col * n_rows + row) // blocksize:
        return ("That is the column-by-column (column-major) order: blocks run over the row-major flattening, "
                "flat index = row * n_columns + column.")
    if got == (row * n_cols + col) // blocksize + 1:
        return "Blocks are numbered from 0: the first `blocksize` weights are block 0."
    if got == row * n_cols + col:
        return "That is the flat index itself: the block is flat index // blocksize."
    return "Blocks run over the *flattened* (row-major) tensor: flat index = row * n_columns + column."


def check_spoiled_block(spoiled_block: Callable, *, hidden: bool = False) -> str:
    """``spoiled_block(index, blocksize, shape) -> int``: the block of a flat index in a row-major tensor.
    ``hidden=True`` tries :data:`_HIDDEN_SPOILED_CASES`: non-square matrices (wide and tall), weights either side
    of a block boundary, a block longer than a row, and the last weight."""
    for (row, col), blocksize, shape in _HIDDEN_SPOILED_CASES if hidden else _SPOILED_CASES:
        got = _call(spoiled_block, (row, col), blocksize, shape)
        expected = (row * shape[1] + col) // blocksize
        if got == expected:
            continue
        if hidden:
            raise CheckFailed(f"weight ({row}, {col}) of a {shape} matrix ({shape[0]} rows, {shape[1]} columns) with "
                              f"blocks of {blocksize}: expected block {expected}, got {got}. "
                              + _spoiled_hint(got, row, col, blocksize, shape))
        raise CheckFailed(f"weight ({row}, {col}) of a {shape} matrix with blocks of {blocksize}: expected block "
                          f"{expected}, got {got}. Blocks run over the *flattened* (row-major) tensor: "
                          "flat index = row * n_columns + column.")
    return "✓ spoiled_block finds the right block" + (" in every hidden case." if hidden else ".")


def check_nf4_levels(nf4_levels_yours: Callable, *, hidden: bool = False) -> str:
    """``nf4_levels_yours() -> tensor(16)``: NF4 levels derived from normal quantiles. The function takes no input,
    so there is nothing to vary: ``hidden=True`` runs the same check (a hard-coded table passes both)."""
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
    "nb01", "why_outlier_block",
    "Why do the other weights change their 4-bit value in the outlier's own block only, wherever it sits in W?",
    {"a": "each block is scaled by its own absmax, and the outlier raises only its own block's absmax",
     "b": "bitsandbytes clips weights larger than the block's absmax",
     "c": "an outlier in the middle of a matrix is rounded to zero"},
    "compare how many blocks the outlier's absmax applies to with how many blocks W has.")


def check_why_outlier_block(answer: str | None, graded: bool = False) -> str:
    """Exercise 3's question: why an outlier changes its own block only, wherever it is."""
    return WHY_OUTLIER_BLOCK.check(answer, graded)
