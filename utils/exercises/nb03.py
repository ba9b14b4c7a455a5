"""The exercise checks of notebook 03 (LoRA from scratch, and which rank): each says in plain words what is wrong."""

from __future__ import annotations

from collections.abc import Callable

import torch

from utils.exercises.common import CheckFailed, Choice, _call


def _lora_case(seed: int, n_in: int, n_out: int, rank: int, lead: tuple[int, ...] = (2, 5)) -> tuple[torch.Tensor, ...]:
    """Seeded x (*lead, in), W (out, in), A (r, in), B (out, r); B non-zero, as after some training."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*lead, n_in, generator=g), torch.randn(n_out, n_in, generator=g) / n_in**0.5,
            torch.randn(rank, n_in, generator=g) / n_in**0.5, torch.randn(n_out, rank, generator=g) * 0.5)


def _reference_lora(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float):
    """``utils.lessons.lora.LoRALinear`` around a bias-free linear layer with weight W, holding A and B."""
    from utils.lessons import lora

    base = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    layer = lora.LoRALinear(base, rank=A.shape[0], alpha=alpha)
    with torch.no_grad():
        base.weight.copy_(W)
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
    return layer


_LORA_CASES = [(0, 12, 7, 3, 6.0), (1, 10, 20, 4, 16.0)]  # seed, in, out, r, alpha: alpha/r, alpha, sqrt differ
# The hidden cases add the leading shape of x: (seed, lead, in, out, r, alpha). The first two tell every scaling of
# _scaling_hint apart and have alpha / r not whole (alpha // r is wrong there); the last is a square layer at rank 1,
# with a 4-D x. Their x are 3-D with other leading sizes, 2-D, and 4-D.
_HIDDEN_LORA_CASES = [(11, (3, 4), 16, 8, 2, 9.0), (12, (11,), 6, 14, 5, 11.0), (13, (2, 3, 2), 9, 9, 1, 3.0)]


def _scaling_hint(got: torch.Tensor, base: torch.Tensor, update: torch.Tensor, rank: int, alpha: float,
                  n_out: int) -> str:
    """Name the usual mistake when ``got = base + s * update`` for a wrong s (or without the base), or when the
    update is transposed (possible only for a square layer)."""
    for s, hint in ((1.0, "scale the update by alpha / r (here r = A.shape[0])."),
                    (alpha, "the scaling is alpha / r, not alpha."),
                    (alpha / rank**0.5, "alpha / sqrt(r) is rsLoRA's scaling; plain LoRA uses alpha / r."),
                    (alpha / n_out, "r is A.shape[0] (A is (r, in)); B.shape[0] is the layer's out_features."),
                    (rank / alpha, "the scaling is alpha / r, not r / alpha.")):
        if torch.allclose(got, base + s * update, atol=1e-4, rtol=1e-4):
            return hint
    if torch.allclose(got, alpha / rank * update, atol=1e-4, rtol=1e-4):
        return "add the frozen layer's own part: the update comes on top of W (or x W^T)."
    if alpha // rank != alpha / rank and torch.allclose(got, base + alpha // rank * update, atol=1e-4, rtol=1e-4):
        return f"alpha / r is a true division: alpha // r rounds it down ({alpha:g} // {rank} = {alpha // rank:g})."
    if update.shape[0] == update.shape[1] and torch.allclose(got, base + alpha / rank * update.T, atol=1e-4, rtol=1e-4):
        return "you added the transpose of B @ A (A.T @ B.T, shaped (in, out)): the update is B @ A, shaped (out, in)."
    return ""


def _lora_grads_hint(got: torch.Tensor, expected: torch.Tensor, x: torch.Tensor, rank: int, alpha: float) -> str:
    """Name the usual mistake behind a wrong gradient: no scaling, an average instead of a sum, or alpha // r."""
    scaling = alpha / rank
    if torch.allclose(got * scaling, expected, atol=1e-4, rtol=1e-4):
        return "multiply by the scaling alpha / r: the update is (alpha / r) x A^T B^T, so both gradients carry it."
    if torch.allclose(got, expected / (x.numel() // x.shape[-1]), atol=1e-4, rtol=1e-4):
        return "sum over all positions, do not average: the loss's gradient already holds any averaging."
    if alpha // rank != scaling and torch.allclose(got, expected / scaling * (alpha // rank), atol=1e-4, rtol=1e-4):
        return f"alpha / r is a true division: alpha // r rounds it down ({alpha:g} // {rank} = {alpha // rank:g})."
    return ("with h = x A^T (..., r), the update is (alpha / r) h B^T; for Y = H B^T the chain rule gives "
            "dL/dB = (dL/dY)^T H, and dL/dH = dL/dY B.")


def _check_lora_grads_case(lora_grads: Callable, seed: int, lead: tuple[int, ...], n_in: int, n_out: int, rank: int,
                           alpha: float, hidden: bool) -> None:
    """Raise :class:`CheckFailed` unless ``lora_grads`` gives autograd's gradients on this case; a hidden case's
    messages all start with where it is (its sizes and x's shape)."""
    x, W, A, B = _lora_case(seed, n_in, n_out, rank, lead)
    grad_y = torch.randn(*x.shape[:-1], n_out, generator=torch.Generator().manual_seed(seed + 100))
    layer = _reference_lora(W, A, B, alpha)
    layer(x).backward(grad_y)
    want = {"grad_A": layer.lora_A.grad, "grad_B": layer.lora_B.grad}
    where = f"in={n_in}, out={n_out}, r={rank}, alpha={alpha:g}" + (f", x of shape {tuple(x.shape)}" if hidden else "")
    prefix = f"{where}: " if hidden else ""
    try:
        got = _call(lora_grads, x.clone(), A.clone(), B.clone(), alpha, grad_y.clone())
    except CheckFailed as err:
        if "RuntimeError" in str(err):
            raise CheckFailed(f"{prefix}{err} Check the shapes: x is (..., in), A is (r, in), B is (out, r), grad_y is "
                              "(..., out); flatten the leading dimensions first, e.g. x.reshape(-1, x.shape[-1])."
                              ) from None
        raise CheckFailed(f"{prefix}{err}") from None
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise CheckFailed(f"{prefix}return a pair (grad_A, grad_B): grad_A with A's shape (r, in), grad_B with B's "
                          "(out, r).")
    got = dict(zip(want, (torch.as_tensor(g).detach().float() for g in got), strict=True))
    for name, expected in want.items():
        if got[name].shape != expected.shape:
            swapped = got["grad_A"].shape == want["grad_B"].shape and got["grad_B"].shape == want["grad_A"].shape
            raise CheckFailed(f"{prefix}{name} should have shape {tuple(expected.shape)} (the shape of "
                              f"{name[-1]}), got {tuple(got[name].shape)}"
                              + (": you returned them in the other order, (grad_B, grad_A)." if swapped else "."))
    for name, expected in want.items():
        if not torch.allclose(got[name], expected, atol=1e-4, rtol=1e-4):
            raise CheckFailed(f"{where}: {name} differs from autograd's by up to "
                              f"{float((got[name] - expected).abs().max()):.3g}. "
                              f"Hint: {_lora_grads_hint(got[name], expected, x, rank, alpha)}")


def check_lora_grads(lora_grads: Callable, *, hidden: bool = False) -> str:
    """``lora_grads(x, A, B, alpha, grad_y) -> (grad_A, grad_B)``: the gradients of a loss with respect to A and B,
    given ``grad_y`` = d loss / d y of shape (..., out); compared with autograd through
    ``utils.lessons.lora.LoRALinear`` (float32, sums of at most 12 products: agreement to 1e-4). ``hidden=True``
    tries :data:`_HIDDEN_LORA_CASES`: other seeds and sizes, alpha / r not whole, rank 1, a square layer, and x
    of 2, 3 and 4 dimensions."""
    if hidden:
        for seed, lead, n_in, n_out, rank, alpha in _HIDDEN_LORA_CASES:
            _check_lora_grads_case(lora_grads, seed, lead, n_in, n_out, rank, alpha, hidden=True)
        return "✓ lora_grads equals autograd's gradients of LoRALinear's A and B in every hidden case."
    for seed, n_in, n_out, rank, alpha in _LORA_CASES:
        _check_lora_grads_case(lora_grads, seed, (2, 5), n_in, n_out, rank, alpha, hidden=False)
    return "✓ lora_grads equals autograd's gradients of LoRALinear's A and B."


def _check_merge_case(merge: Callable, seed: int, n_in: int, n_out: int, rank: int, alpha: float,
                      hidden: bool) -> None:
    """Raise :class:`CheckFailed` unless ``merge`` gives the weight ``LoRALinear.merge()`` writes on this case; a
    hidden case's messages all start with its sizes."""
    _, W, A, B = _lora_case(seed, n_in, n_out, rank)
    layer = _reference_lora(W, A, B, alpha)
    layer.merge()
    expected = layer.base.weight.detach()
    where = f"in={n_in}, out={n_out}, r={rank}, alpha={alpha:g}"
    prefix = f"{where}: " if hidden else ""
    try:
        got = _call(merge, W.clone(), A.clone(), B.clone(), alpha)
    except CheckFailed as err:
        if "RuntimeError" in str(err):
            raise CheckFailed(f"{prefix}{err} The update is B @ A: (out, r) @ (r, in) = (out, in), W's shape."
                              ) from None
        raise CheckFailed(f"{prefix}{err}") from None
    got = torch.as_tensor(got).detach().float()
    if got.shape != expected.shape:
        raise CheckFailed(f"{prefix}the merged weight has W's shape {tuple(W.shape)} (out, in), got "
                          f"{tuple(got.shape)}: the update is B @ A (not A.T @ B.T, which is its transpose).")
    if torch.allclose(got, expected, atol=1e-5, rtol=1e-5):
        return
    hint = _scaling_hint(got, W, B @ A, rank, alpha, n_out) or "W' = W + (alpha / r) * B @ A."
    raise CheckFailed(f"{where}: your merged weight differs from LoRALinear.merge()'s by up to "
                      f"{float((got - expected).abs().max()):.3g}. {hint}")


def check_merge(merge: Callable, *, hidden: bool = False) -> str:
    """``merge(W, A, B, alpha) -> W'``: W + (alpha/r) B A, compared with ``LoRALinear.merge()``. ``hidden=True``
    tries the layers of :data:`_HIDDEN_LORA_CASES`: other seeds and sizes, alpha / r not whole, and a square
    layer at rank 1 (where a transposed update has the right shape)."""
    if hidden:
        for seed, _, n_in, n_out, rank, alpha in _HIDDEN_LORA_CASES:
            _check_merge_case(merge, seed, n_in, n_out, rank, alpha, hidden=True)
        return "✓ merge gives the weight LoRALinear.merge() writes, in every hidden case."
    for seed, n_in, n_out, rank, alpha in _LORA_CASES:
        _check_merge_case(merge, seed, n_in, n_out, rank, alpha, hidden=False)
    return "✓ merge gives the weight LoRALinear.merge() writes: x @ W'.T equals the unmerged layer's output."


_BERT_BLOCK = [(384, 384)] * 4 + [(1536, 384), (384, 1536)]
_PHI2_BLOCK = [(2560, 2560)] * 4 + [(10240, 2560), (2560, 10240)]


def _budget_cases() -> list[tuple[list[tuple[int, int]], int]]:
    """The public ``(layer_shapes, budget)`` cases: BERT attention and block, a Phi-2 block, a budget that rank 8
    uses exactly, one too small for rank 1, and two odd shapes."""
    exact = 8 * sum(n_in + n_out for n_out, n_in in _BERT_BLOCK)  # rank 8 uses the budget exactly
    return [([(384, 384)] * 4, 100_000), (_BERT_BLOCK, exact), (_PHI2_BLOCK, 5_000_000), (_BERT_BLOCK, 5000),
            ([(7, 5), (3, 11)], 100)]


def _hidden_budget_cases() -> list[tuple[list[tuple[int, int]], int]]:
    """Hidden ``(layer_shapes, budget)`` cases: a Phi-2 block whose budget rank 16 uses exactly, mixed shapes with
    a large budget, a single layer (with a budget it fits exactly at rank 5, and with 1 million), and budgets one
    short of rank 1 (answer 0) and exactly rank 1."""
    small = [(300, 200), (50, 70)]  # one rank costs 500 + 120 = 620
    return [(_PHI2_BLOCK, 16 * sum(n_in + n_out for n_out, n_in in _PHI2_BLOCK)),
            ([(1000, 300), (300, 1000), (64, 64)], 3_000_000), ([(48, 80)], 5 * 128), ([(2560, 2560)], 1_000_000),
            (small, 619), (small, 620)]


def check_rank_for_budget(rank_for_budget: Callable, *, hidden: bool = False) -> str:
    """``rank_for_budget(layer_shapes, budget) -> int``: the largest r with r * sum(in + out) <= budget.
    ``hidden=True`` tries :func:`_hidden_budget_cases`."""
    from utils.lessons import lora

    for shapes, budget in _hidden_budget_cases() if hidden else _budget_cases():
        expected = 0  # count up with the library's own per-layer count until the next rank no longer fits
        while sum(lora.lora_parameter_count(n_in, n_out, expected + 1) for n_out, n_in in shapes) <= budget:
            expected += 1
        got = _call(rank_for_budget, list(shapes), budget)
        if got == expected and float(got).is_integer():
            continue
        listed = shapes if len(shapes) < 3 else f"{shapes[:2]} ... ({len(shapes)} layers)"
        where = f"layer shapes {listed}, budget {budget:,}"
        per_rank = sum(n_in + n_out for n_out, n_in in shapes)
        if got is None or not float(got).is_integer():
            hint = "a rank is a whole number: round down (//), and return 0 if not even r = 1 fits."
        elif got == expected - 1 and expected * per_rank == budget:
            hint = "a rank whose count equals the budget exactly still fits: the test is <=, not <."
        elif got == budget // (shapes[0][0] + shapes[0][1]) or got == budget // (shapes[-1][0] + shapes[-1][1]):
            hint = "count every layer: one rank costs the sum over ALL layers of (in + out)."
        elif got > expected:
            hint = f"rank {got} needs {got * per_rank:,} parameters, over the budget: round down."
        else:
            hint = "one rank costs sum over the layers of (in + out) parameters (A is r x in, B is out x r)."
        raise CheckFailed(f"{where}: expected r = {expected}, got {got}. {hint}")
    return f"✓ rank_for_budget picks the largest rank that fits, for every {'hidden ' if hidden else ''}budget."


WHY_THIN_PRODUCT = Choice(
    "nb03", "why_thin_product",
    "Why does LoRALinear.forward compute (x A^T) B^T instead of forming B A first?",
    {"a": "it is more accurate in float32",
     "b": "it never builds the (out, in) matrix B A: each token costs r (in + out) multiply-adds instead of in * out",
     "c": "peft stores A and B in an order that requires it"},
    "count the multiply-adds per token of each order for in = out = 2560 and r = 8.")


def check_why_thin_product(answer: str | None, graded: bool = False) -> str:
    """Exercise 1's question: why the LoRA product is taken through the rank-r middle."""
    return WHY_THIN_PRODUCT.check(answer, graded)
