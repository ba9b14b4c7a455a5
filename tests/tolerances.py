"""Tolerances derived from the dtype and the magnitudes involved, for comparing two float computations.

Two evaluations of the same formula in a different order (peft's LoRA vs ours, a merged weight vs the
separate paths, a blocked BLAS kernel on one CPU vs another) agree only up to rounding. Higham's bound
(Accuracy and Stability of Numerical Algorithms, 2nd ed., eq. 3.5) for a length-n dot product computed
in floating point, in any order, with or without fused multiply-add:

    |fl(x . w) - x . w| <= gamma_n * (|x| . |w|),    gamma_n = n u / (1 - n u),  u = eps / 2.

Two evaluations can therefore differ by up to twice that, element by element. These helpers return that
bound as a tensor, so a test compares every element against its own worst case, and :func:`assert_within`
also checks that the bound is far below the signal the test is about: a tolerance that could hide a real
error fails the test by itself.
"""

from __future__ import annotations

import torch


def unit_roundoff(dtype: torch.dtype = torch.float32) -> float:
    """u = eps / 2: the largest relative error of one rounding (2^-24 for float32, 2^-8 for bfloat16)."""
    return torch.finfo(dtype).eps / 2


def gamma(n: int, dtype: torch.dtype = torch.float32) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of n chained roundings."""
    nu = n * unit_roundoff(dtype)
    assert nu < 1, f"n = {n} roundings exceed what {dtype} can bound"
    return nu / (1 - nu)


def linear_bound(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 extra_roundings: int = 1) -> torch.Tensor:
    """Elementwise bound on |two evaluations of ``x @ weight.T`` (plus a bias) differing|.

    Args:
        x: (..., in_features) input; weight: (out_features, in_features), already the magnitude to bound
            (pass ``|W| + s |B| |A|`` for a LoRA layer); bias: (out_features,) or None; extra_roundings:
            roundings beyond the in_features of the dot product (a bias add; a LoRA path's r products,
            scaling and sum; a merge).

    Returns:
        (..., out_features) float32 tensor: 2 gamma_(in + extra) (|x| @ |weight|.T + |bias|).
    """
    n = weight.shape[-1] + extra_roundings
    magnitude = x.abs().float() @ weight.abs().float().T
    if bias is not None:
        magnitude = magnitude + bias.abs().float()
    return 2 * gamma(n) * magnitude


def lora_weight_magnitude(weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                          scaling: float) -> torch.Tensor:
    """|W| + s |B| |A|: the magnitude whose products a LoRA layer (merged or not) sums. Shapes: W (out, in),
    A (r, in), B (out, r)."""
    return weight.abs() + scaling * (lora_b.abs() @ lora_a.abs())


def assert_within(actual: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor | float,
                  signal: float | None = None, what: str = "") -> None:
    """Every |actual - expected| <= bound; and, when ``signal`` (the size of the effect under test) is given,
    the largest bound is under a tenth of it, so an error of that size could not pass."""
    diff = (actual.detach().float() - expected.detach().float()).abs()
    bound_t = torch.as_tensor(bound, dtype=torch.float32).expand_as(diff)
    worst = (diff / bound_t.clamp(min=torch.finfo(torch.float32).tiny)).max().item()
    assert (diff <= bound_t).all(), (f"{what}: max |difference| {diff.max().item():.3g} exceeds its rounding "
                                     f"bound (worst element at {worst:.2f}x its bound)")
    if signal is not None:
        assert bound_t.max().item() < 0.1 * signal, (
            f"{what}: the tolerance {bound_t.max().item():.3g} is not well below the effect tested ({signal:.3g})")


def chain_tolerance(inner_dims: list[int], scale: float, dtype: torch.dtype = torch.float32,
                    lam: float = 6.0) -> float:
    """Absolute tolerance for two evaluations of a whole network (layers, norms, attention) that differ only
    in rounding, e.g. ours vs peft + bitsandbytes with the same weights.

    A worst-case bound through a whole network is far too loose to catch anything, so this uses the
    probabilistic one (Higham and Mary, SIAM J. Sci. Comput. 41(5), 2019, Theorem 2.4): with rounding errors
    independent and of mean zero, a chain of n dependent roundings has relative error at most lam sqrt(n) u
    with probability at least 1 - 2 n exp(-lam^2 / 2); lam = 6 puts the failure chance under 1e-3 for n up
    to ~30,000.

    Args:
        inner_dims: the inner dimension of every product on the longest path from input to output
            (e.g. per transformer layer: q/k/v, the head dimension, the tokens attended, the output
            projection, the MLP's two products); n is their sum.
        scale: the magnitude the errors are relative to: the reference output's largest absolute value.
    """
    n = sum(inner_dims)
    return 2 * lam * n**0.5 * unit_roundoff(dtype) * scale


def loss_tolerance(model: torch.nn.Module, loss: torch.Tensor, tokens: int) -> float:
    """Rounding tolerance (:func:`chain_tolerance`) for one decoder LM loss computed two ways (packed vs padded,
    all logits vs answer logits): per layer q/k/v, head dimension, the tokens attended, the attention output
    projection and the MLP's two products; then the LM head, the log-sum-exp over the vocabulary and the mean
    over the graded tokens. Holds for Phi and Llama (SmolLM2) configs alike."""
    c = model.config
    layer = [c.hidden_size, c.hidden_size // c.num_attention_heads, tokens, c.hidden_size, c.hidden_size,
             c.intermediate_size]
    return chain_tolerance(c.num_hidden_layers * layer + [c.hidden_size, c.vocab_size, tokens], loss.abs().item())


@torch.no_grad()
def assert_packed_loss_is_one_by_one(model: torch.nn.Module, features: list[dict], what: str) -> None:
    """The training collator's packed row (examples end to end, position ids restarting at 0) must give the
    same loss per answer token as the examples run one by one, within :func:`loss_tolerance`: the attention
    mask built from the position ids keeps the examples apart."""
    from utils.qa.collate import sample_batch

    batch = sample_batch(features, len(features))
    assert batch["input_ids"].shape[0] == 1 and (batch["position_ids"] == 0).sum() == len(features)
    packed = model(**batch, use_cache=False).loss  # with a KV cache, transformers ignores the packing
    nll, count = 0.0, 0
    for f in features:
        labels = torch.tensor([f["labels"]])
        n = int((labels[:, 1:] != -100).sum())
        nll += model(input_ids=torch.tensor([f["input_ids"]]), labels=labels, use_cache=False).loss * n  # as trained
        count += n
    assert_within(packed, nll / count, loss_tolerance(model, packed, batch["input_ids"].shape[1]), what=what)
