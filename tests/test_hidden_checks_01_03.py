"""The hidden variants (``hidden=True``) of the exercise checks of notebooks 01-03: the instructor's solution passes
them, a function that only memorised the answers to the public cases does not, and typical mistakes get a message
that names them. The solutions are read from the instructor notebooks (the function of the ``solution`` cell that
follows the ``exercise`` cell defining it)."""

from __future__ import annotations

import ast
import functools
import inspect
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch

from utils.exercises import nb01, nb02, nb03
from utils.exercises.common import CheckFailed
from utils.lessons import lora, quant

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK_OF = {nb01: "01_quantization_visualized.ipynb", nb02: "02_nf4_vs_int4.ipynb",
               nb03: "03_lora_rank_ablation.ipynb"}
VALUE_CHECKS = {"check_bits_per_weight", "check_why_outlier_block", "check_why_thin_product"}  # no function to call

# (checker, the exercise's function name)
CHECKS = [(nb01.check_absmax_int4, "absmax_int4"), (nb01.check_spoiled_block, "spoiled_block"),
          (nb01.check_nf4_levels, "nf4_levels_yours"), (nb02.check_sqnr_db, "sqnr_db"),
          (nb02.check_p999_error, "p999_error"), (nb02.check_choose_blocksize, "choose_blocksize"),
          (nb03.check_lora_grads, "lora_grads"), (nb03.check_merge, "merge"),
          (nb03.check_rank_for_budget, "rank_for_budget")]
WITH_INPUTS = [(check, name) for check, name in CHECKS if name != "nf4_levels_yours"]  # nf4_levels_yours() takes none


def _ids(case: tuple) -> str:
    return case[0].__name__


@functools.cache
def _cells(notebook: str) -> tuple:
    return tuple(nbformat.read(str(NOTEBOOKS / notebook), as_version=4).cells)


def _tagged(cell: Any, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


@functools.cache
def solution(check: Callable, name: str) -> Callable:
    """The instructor's ``name``: the function definition of the first ``solution`` cell after the ``exercise`` cell
    that defines it, run on its own (a solution cell may go on with code that needs the lesson's variables) in a
    namespace with the set-up imports solutions use (torch, math, L = utils.lessons.lora, quant)."""
    cells = _cells(NOTEBOOK_OF[inspect.getmodule(check)])
    start = next(i for i, c in enumerate(cells)
                 if _tagged(c, "exercise") and re.search(rf"^def {name}\(", c.source, re.MULTILINE))
    source = next(c.source for c in cells[start + 1:] if _tagged(c, "solution"))
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name)
    namespace: dict[str, Any] = {"torch": torch, "math": math, "L": lora, "quant": quant}
    exec(compile(ast.Module(body=[node], type_ignores=[]), f"<solution {name}>", "exec"), namespace)
    return namespace[name]


def _key(value: Any) -> Any:
    """A hashable stand-in for a call's arguments: tensors by shape and values, lists, tuples and dicts by content."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), tuple(value.flatten().tolist()))
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    return value


def _spoil(value: Any) -> Any:
    """A wrong answer of the same kind: zeros for tensors, one more for numbers, a block size for None."""
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_spoil(v) for v in value)
    return 64 if value is None else value + 1


def memorised(check: Callable, reference: Callable) -> Callable:
    """A function that knows the reference's answers to exactly the calls the public check makes (recorded by
    running it) and answers any other call wrongly."""
    answers = {}

    def recording(*args: Any) -> Any:
        answers[_key(args)] = out = reference(*args)
        return out

    recording.__name__ = reference.__name__
    check(recording)

    def lookup(*args: Any) -> Any:
        key = _key(args)
        return answers[key] if key in answers else _spoil(reference(*args))

    lookup.__name__ = reference.__name__
    return lookup


def test_every_function_checker_takes_hidden_and_is_tested_here():
    found = {(module.__name__, name) for module in NOTEBOOK_OF for name, _ in inspect.getmembers(module)
             if name.startswith("check_") and name not in VALUE_CHECKS}
    assert found == {(check.__module__, check.__name__) for check, _ in CHECKS}
    for check, _ in CHECKS:
        parameter = inspect.signature(check).parameters.get("hidden")
        assert parameter is not None and parameter.default is False and parameter.kind is parameter.KEYWORD_ONLY


@pytest.mark.parametrize("case", CHECKS, ids=_ids)
def test_the_notebook_solution_passes_hidden_and_public_checks_without_printing(case, capsys):
    check, name = case
    reference = solution(check, name)
    assert check(reference, hidden=True).startswith("✓")
    assert check(reference).startswith("✓")
    assert check(reference, hidden=True) == check(reference, hidden=True)  # seeded: the same every time
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("case", WITH_INPUTS, ids=_ids)
def test_answers_memorised_for_the_public_cases_fail_the_hidden_ones(case):
    check, name = case
    only_public = memorised(check, solution(check, name))
    assert check(only_public).startswith("✓")
    with pytest.raises(CheckFailed):
        check(only_public, hidden=True)


def test_nf4_levels_has_no_inputs_to_hide():
    """nf4_levels_yours() takes nothing: the hidden check is the public one, and a hard-coded table passes both."""
    table = quant.nf4_levels().tolist()
    assert nb01.check_nf4_levels(lambda: torch.tensor(table), hidden=True) == nb01.check_nf4_levels(
        lambda: torch.tensor(table))
    with pytest.raises(CheckFailed, match="exact zero"):
        nb01.check_nf4_levels(lambda: torch.linspace(-1, 1, 16), hidden=True)


# --- plausible mistakes, and what the hidden check says about them ---------------------------------------------


def _absmax_by_max(x):
    return torch.round(x / x.max() * 7).clamp(-7, 7), x.max()


def _spoiled_by_rows(position, blocksize, shape):
    return (position[0] * shape[0] + position[1]) // blocksize


def _sqnr_by_variance(x, x_hat):
    return float(10 * torch.log10(x.var() / (x - x_hat).var()))


def _sqnr_amplitude(x, x_hat):
    return float(20 * torch.log10((x**2).mean() / ((x - x_hat) ** 2).mean()))


def _p999_max(x, x_hat):
    return float((x - x_hat).abs().max())


def _p999_signed(x, x_hat):
    return abs(float(torch.quantile((x - x_hat).double(), 0.999)))


def _blocksize_strict(rows, floor):
    good = [r["blocksize"] for r in rows if r["method"] == "nf4" and r["sqnr_db"] > floor]
    return max(good) if good else None


def _blocksize_last_in_list(rows, floor):
    good = [r["blocksize"] for r in rows if r["method"] == "nf4" and r["sqnr_db"] >= floor]
    return good[-1] if good else None


def _blocksize_any_format(rows, floor):
    good = [r["blocksize"] for r in rows if r["sqnr_db"] >= floor]
    return max(good) if good else None


def _grads_floor_division(x, A, B, alpha, grad_y):
    grad_A, grad_B = solution(nb03.check_lora_grads, "lora_grads")(x, A, B, alpha, grad_y)
    return grad_A / (alpha / A.shape[0]) * (alpha // A.shape[0]), grad_B / (alpha / A.shape[0]) * (alpha // A.shape[0])


def _grads_for_3d_x(x, A, B, alpha, grad_y):
    h = torch.einsum("bti,ri->btr", x, A)
    s = alpha / A.shape[0]
    return s * torch.einsum("bto,or,bti->ri", grad_y, B, x), s * torch.einsum("bto,btr->or", grad_y, h)


def _merge_floor_division(W, A, B, alpha):
    return W + (alpha // A.shape[0]) * B @ A


def _merge_transposed_when_square(W, A, B, alpha):
    update = B @ A
    return W + alpha / A.shape[0] * (update.T if update.shape[0] == update.shape[1] else update)


def _rank_strict(shapes, budget):
    return (budget - 1) // sum(n_in + n_out for n_out, n_in in shapes)


def _rank_first_layer(shapes, budget):
    return budget // (shapes[0][0] + shapes[0][1])


MISTAKES = [
    (nb01.check_absmax_int4, _absmax_by_max,
     r"^on .*: scale should be the largest magnitude .* That is x\.max\(\)"),
    (nb01.check_spoiled_block, _spoiled_by_rows, r"weight \(3, 7\) of a \(10, 50\) matrix .* row \* shape\[1\]"),
    (nb02.check_sqnr_db, _sqnr_by_variance,
     r"^on 500 Gaussian values .*: expected 20\.0\d+ dB, got 20\.0\d+ dB: .*not variances"),
    (nb02.check_sqnr_db, _sqnr_amplitude, r"10 log10, not 20 log10"),
    (nb02.check_p999_error, _p999_max, r"^on 1500 Gaussian values.*: that is the largest error"),
    (nb02.check_p999_error, _p999_signed, r"take absolute errors first"),
    (nb02.check_choose_blocksize, _blocksize_strict,
     r"exactly NF4's SQNR at block 128 .*: the answer is 128, got \d+\. .*>= the floor, not >"),
    (nb02.check_choose_blocksize, _blocksize_last_in_list,
     r"blocks 1024, 32, 128, 16, in that order.*The rows come in any order: .* \(max\)"),
    (nb02.check_choose_blocksize, _blocksize_any_format,
     r"uniform weights .*: the answer is 32, got 2048\. Keep only NF4 rows \(r\['method'\] == 'nf4'\)"),
    (nb03.check_lora_grads, _grads_floor_division,
     r"r=2, alpha=9, x of shape \(3, 4, 16\): .* alpha // r rounds it down"),
    (nb03.check_lora_grads, _grads_for_3d_x,
     r"^in=6, out=14, r=5, alpha=11, x of shape \(11, 6\): .*Check the shapes"),
    (nb03.check_merge, _merge_floor_division,
     r"^in=16, out=8, r=2, alpha=9: .* alpha // r rounds it down \(9 // 2 = 4\)"),
    (nb03.check_merge, _merge_transposed_when_square, r"^in=9, out=9, r=1.*the transpose of B @ A"),
    (nb03.check_rank_for_budget, _rank_strict, r"budget 737,280: expected r = 16, got 15\. .*<=, not <"),
    (nb03.check_rank_for_budget, _rank_first_layer, r"count every layer"),
]


@pytest.mark.parametrize("check,wrong,message", MISTAKES, ids=[m[1].__name__.lstrip("_") for m in MISTAKES])
def test_a_plausible_mistake_fails_the_hidden_check_with_a_specific_message(check, wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check(wrong, hidden=True)


@pytest.mark.parametrize("wrong", [_spoiled_by_rows, _grads_floor_division, _merge_floor_division,
                                   _merge_transposed_when_square, _blocksize_last_in_list],
                         ids=lambda f: f.__name__.lstrip("_"))
def test_some_mistakes_only_the_hidden_cases_catch(wrong):
    """Square public matrices, alpha / r whole, and rows sorted by block size let these through; hidden ones do not."""
    check = next(c for c, w, _ in MISTAKES if w is wrong)
    assert check(wrong).startswith("✓")
    with pytest.raises(CheckFailed):
        check(wrong, hidden=True)


# --- the hidden inputs themselves --------------------------------------------------------------------------------


def test_hidden_absmax_inputs_avoid_rounding_ties():
    for _, x in nb01._hidden_inputs():
        scaled = (x / x.abs().max() * 7).abs()
        assert not torch.any((scaled - scaled.floor() - 0.5).abs() < 1e-6), "a tie would make two answers right"


def test_hidden_inputs_differ_from_the_public_ones():
    public = {_key(x) for x in nb01._inputs()}
    assert not public & {_key(x) for _, x in nb01._hidden_inputs()}
    assert not public & {_key(x) for _, x, _ in nb02._hidden_sqnr_cases() + nb02._hidden_p999_cases()}
    assert not {case[1:] for case in nb03._LORA_CASES} & {case[2:] for case in nb03._HIDDEN_LORA_CASES}
    assert not set(map(_key, nb03._budget_cases())) & set(map(_key, nb03._hidden_budget_cases()))


def test_hidden_lora_cases_tell_the_scalings_apart_above_rank_1():
    for _, _, _, n_out, rank, alpha in nb03._HIDDEN_LORA_CASES:
        if rank > 1:
            scalings = [1.0, alpha, alpha / rank, alpha / rank**0.5, alpha / n_out, rank / alpha, alpha // rank]
            assert len({round(s, 6) for s in scalings}) == len(scalings)


def test_hidden_blocksize_cases_have_the_answers_their_words_promise():
    answers = [max((r["blocksize"] for r in rows if r["method"] == "nf4" and r["sqnr_db"] >= floor), default=None)
               for _, rows, floor in nb02._hidden_blocksize_cases()]
    assert answers == [128, 1024, None, 32, None]
