"""The exercise checks of notebook 03 (LoRA from scratch, and which rank): each says in plain words what is wrong."""

from __future__ import annotations

from collections.abc import Callable

import torch

from utils.exercises.common import CheckFailed, Choice, _call


def _lora_case(seed: int, n_in: int, n_out: int, rank: int) -> tuple[torch.Tensor, ...]:
    """Seeded x (2, 5, in), W (out, in), A (r, in), B (out, r); B non-zero, as after some training."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 5, n_in, generator=g), torch.randn(n_out, n_in, generator=g) / n_in**0.5,
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


def _scaling_hint(got: torch.Tensor, base: torch.Tensor, update: torch.Tensor, rank: int, alpha: float,
                  n_out: int) -> str:
    """Name the usual mistake when ``got = base + s * update`` for a wrong s (or without the base)."""
    for s, hint in ((1.0, "scale the update by alpha / r (here r = A.shape[0])."),
                    (alpha, "the scaling is alpha / r, not alpha."),
                    (alpha / rank**0.5, "alpha / sqrt(r) is rsLoRA's scaling; plain LoRA uses alpha / r."),
                    (alpha / n_out, "r is A.shape[0] (A is (r, in)); B.shape[0] is the layer's out_features."),
                    (rank / alpha, "the scaling is alpha / r, not r / alpha.")):
        if torch.allclose(got, base + s * update, atol=1e-4, rtol=1e-4):
            return hint
    if torch.allclose(got, alpha / rank * update, atol=1e-4, rtol=1e-4):
        return "add the frozen layer's own part: the update comes on top of W (or x W^T)."
    return ""


def check_lora_grads(lora_grads: Callable) -> str:
    """``lora_grads(x, A, B, alpha, grad_y) -> (grad_A, grad_B)``: the gradients of a loss with respect to A and B,
    given ``grad_y`` = d loss / d y of shape (..., out); compared with autograd through
    ``utils.lessons.lora.LoRALinear`` (float32, sums of at most 10 products: agreement to 1e-4)."""
    for seed, n_in, n_out, rank, alpha in _LORA_CASES:
        x, W, A, B = _lora_case(seed, n_in, n_out, rank)
        grad_y = torch.randn(*x.shape[:-1], n_out, generator=torch.Generator().manual_seed(seed + 100))
        layer = _reference_lora(W, A, B, alpha)
        layer(x).backward(grad_y)
        want = {"grad_A": layer.lora_A.grad, "grad_B": layer.lora_B.grad}
        try:
            got = _call(lora_grads, x.clone(), A.clone(), B.clone(), alpha, grad_y.clone())
        except CheckFailed as err:
            if "RuntimeError" in str(err):
                raise CheckFailed(f"{err} Check the shapes: x is (..., in), A is (r, in), B is (out, r), grad_y is "
                                  "(..., out); flatten the leading dimensions first, e.g. x.reshape(-1, x.shape[-1]).") from None
            raise
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailed("return a pair (grad_A, grad_B): grad_A with A's shape (r, in), grad_B with B's (out, r).")
        got = dict(zip(want, (torch.as_tensor(g).detach().float() for g in got), strict=True))
        for name, expected in want.items():
            if got[name].shape != expected.shape:
                swapped = got["grad_A"].shape == want["grad_B"].shape and got["grad_B"].shape == want["grad_A"].shape
                raise CheckFailed(f"{name} should have shape {tuple(expected.shape)} (the shape of "
                                  f"{name[-1]}), got {tuple(got[name].shape)}"
                                  + (": you returned them in the other order, (grad_B, grad_A)." if swapped else "."))
        for name, expected in want.items():
            if torch.allclose(got[name], expected, atol=1e-4, rtol=1e-4):
                continue
            scaling = alpha / rank
            if torch.allclose(got[name] * scaling, expected, atol=1e-4, rtol=1e-4):
                hint = "multiply by the scaling alpha / r: the update is (alpha / r) x A^T B^T, so both gradients carry it."
            elif torch.allclose(got[name], expected / x.shape[0] / x.shape[1], atol=1e-4, rtol=1e-4):
                hint = "sum over all positions, do not average: the loss's gradient already holds any averaging."
            else:
                hint = ("with h = x A^T (..., r), the update is (alpha / r) h B^T; for Y = H B^T the chain rule gives "
                        "dL/dB = (dL/dY)^T H, and dL/dH = dL/dY B.")
            raise CheckFailed(f"in={n_in}, out={n_out}, r={rank}, alpha={alpha:g}: {name} differs from autograd's by up "
                              f"to {float((got[name] - expected).abs().max()):.3g}. Hint: {hint}")
    return "✓ lora_grads equals autograd's gradients of LoRALinear's A and B."


def check_merge(merge: Callable) -> str:
    """``merge(W, A, B, alpha) -> W'``: W + (alpha/r) B A, compared with ``LoRALinear.merge()``."""
    for seed, n_in, n_out, rank, alpha in _LORA_CASES:
        _, W, A, B = _lora_case(seed, n_in, n_out, rank)
        layer = _reference_lora(W, A, B, alpha)
        layer.merge()
        expected = layer.base.weight.detach()
        try:
            got = _call(merge, W.clone(), A.clone(), B.clone(), alpha)
        except CheckFailed as err:
            if "RuntimeError" in str(err):
                raise CheckFailed(f"{err} The update is B @ A: (out, r) @ (r, in) = (out, in), W's shape.") from None
            raise
        got = torch.as_tensor(got).detach().float()
        if got.shape != expected.shape:
            raise CheckFailed(f"the merged weight has W's shape {tuple(W.shape)} (out, in), got {tuple(got.shape)}: "
                              "the update is B @ A (not A.T @ B.T, which is its transpose).")
        if torch.allclose(got, expected, atol=1e-5, rtol=1e-5):
            continue
        hint = _scaling_hint(got, W, B @ A, rank, alpha, n_out) or "W' = W + (alpha / r) * B @ A."
        raise CheckFailed(f"in={n_in}, out={n_out}, r={rank}, alpha={alpha:g}: your merged weight differs from "
                          f"LoRALinear.merge()'s by up to {float((got - expected).abs().max()):.3g}. {hint}")
    return "✓ merge gives the weight LoRALinear.merge() writes: x @ W'.T equals the unmerged layer's output."


def check_rank_for_budget(rank_for_budget: Callable) -> str:
    """``rank_for_budget(layer_shapes, budget) -> int``: the largest r with r * sum(in + out) <= budget."""
    from utils.lessons import lora

    bert_attention = [(384, 384)] * 4
    bert_block = [(384, 384)] * 4 + [(1536, 384), (384, 1536)]
    phi2_block = [(2560, 2560)] * 4 + [(10240, 2560), (2560, 10240)]
    exact = 8 * sum(n_in + n_out for n_out, n_in in bert_block)  # rank 8 uses the budget exactly
    cases = [(bert_attention, 100_000), (bert_block, exact), (phi2_block, 5_000_000), (bert_block, 5000),
             ([(7, 5), (3, 11)], 100)]
    for shapes, budget in cases:
        expected = 0  # count up with the library's own per-layer count until the next rank no longer fits
        while sum(lora.lora_parameter_count(n_in, n_out, expected + 1) for n_out, n_in in shapes) <= budget:
            expected += 1
        got = _call(rank_for_budget, list(shapes), budget)
        if got == expected and float(got).is_integer():
            continue
        where = f"layer shapes {shapes if len(shapes) < 3 else f'{shapes[:2]} ... ({len(shapes)} layers)'}, budget {budget:,}"
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
    return "✓ rank_for_budget picks the largest rank that fits, for every budget."


WHY_THIN_PRODUCT = Choice(
    "Why does LoRALinear.forward compute (x A^T) B^T instead of forming B A first?",
    {"a": "it is more accurate in float32",
     "b": "it never builds the (out, in) matrix B A: each token costs r (in + out) multiply-adds instead of in * out",
     "c": "peft stores A and B in an order that requires it"},
    "b", "Through the thin rank-r middle a token costs r (in + out) multiply-adds (for Phi-2's 2560 x 2560 layers "
    "at r = 8: 40,960) instead of in * out (6,553,600) for the full B A, which would also need memory of W's size.",
    "count the multiply-adds per token of each order for in = out = 2560 and r = 8.")


def check_why_thin_product(answer: str | None) -> str:
    """Exercise 1's question: why the LoRA product is taken through the rank-r middle."""
    return WHY_THIN_PRODUCT.check(answer)
