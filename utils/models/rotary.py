"""The rotary position embedding (RoPE) applied in place on the projections' output: no copies, no concatenation.

transformers' attention (Phi-2's, Llama's) views each projection's output ``(batch, seq, heads * head_dim)`` as
``(batch, heads, seq, head_dim)`` (a transposed view), rotates the first ``rot`` features of every head
(``rot = head_dim`` for Llama, 32 of Phi-2's 80) with ``q * cos + rotate_half(q) * sin``, where ``rotate_half``
concatenates two negated and swapped halves, and for a partial rotation concatenates the rotated part with the rest.
On a strided view each of those steps is a separate pass, and the concatenations copy the whole query and key.

:class:`RotateInPlace` computes the same numbers on the ``(batch, seq, heads, head_dim)`` layout the projection wrote,
in place and on the rotated features only. With ``x1, x2`` the two halves of the rotated part and ``c, s`` the first
half of ``cos, sin`` (RoPE repeats its frequencies: ``cos = cat(c, c)``, ``sin = cat(s, s)``):

    forward:   x1' = x1 c - x2 s ;  x2' = x2 c + x1 s                  (a rotation by the angle of each position)
    backward:  g1' = g1 c + g2 s ;  g2' = g2 c - g1 s                  (the transposed rotation: by minus the angle)

``x1 c + (-x2) s`` equals ``x1 c - x2 s`` exactly in floating point and each product is rounded as transformers
rounds it, so the forward gives transformers' numbers to the bit (tests/test_rotary.py); the backward rounds in
another order. Nothing is saved but ``cos`` and ``sin`` (``(batch, seq, rot)``, shared by every layer).

:func:`rope_in_place` gives every Phi and Llama attention module a forward that uses it (the rest of that forward is
transformers' own: the same attention function, mask and output projection), and falls back to transformers' forward
for what it does not cover (a key/value cache, Phi's optional query/key LayerNorm).
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from utils.models.forward_patches import restore_forward, set_forward


def _rotate(x: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> None:
    """Rotate ``x`` (``(..., rot)``, a view) in place: ``x1' = x1 c - x2 s``, ``x2' = x2 c + x1 s`` with ``c``, ``s``
    broadcastable to ``(..., rot // 2)``. To invert the rotation, pass ``-s``. Computed in the dtype ``x * c``
    promotes to (float32 when transformers passes float32 cos/sin with a bf16 ``x``) and rounded to ``x``'s dtype
    once, where transformers' result would be rounded by the attention's autocast."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    # in the promoted dtype of x and c (float32 cos/sin with a bf16 x under autocast), each product rounded as
    # transformers' q * cos + rotate_half(q) * sin rounds it; written back (rounded to x's dtype) at the end
    new1 = (x1 * c).sub_(x2 * s)
    new2 = (x2 * c).add_(x1 * s)
    x1.copy_(new1)
    x2.copy_(new2)


_TRITON: dict[str, Any] = {}  # the compiled kernel, made on first use on a GPU


def _triton_kernel() -> Any:
    """The Triton kernel (GPU only): one program per token and block of heads; the rotated features of each head are
    read once, computed as :func:`_rotate` computes them (each product rounded to ``x``'s dtype when ``cos`` is
    16-bit, as PyTorch rounds each operation; in float32 otherwise) and written to ``out`` with the rest copied
    when ``out`` is another tensor. ``sign`` -1 rotates by minus the angle (the backward pass)."""
    if "kernel" in _TRITON:
        return _TRITON["kernel"]
    import triton
    import triton.language as tl

    @triton.jit
    def rope_kernel(x_ptr, out_ptr, cos_ptr, sin_ptr, stride_xt, stride_xh, stride_ot, stride_oh, stride_ct,
                    n_heads, head_dim, half, sign, ROUND: tl.constexpr, COPY_REST: tl.constexpr,
                    BLOCK_H: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr):
        t = tl.program_id(0)
        h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
        j = tl.arange(0, BLOCK_J)[None, :]
        mask = (h < n_heads) & (j < half)
        c = tl.load(cos_ptr + t * stride_ct + j, mask=j < half, other=0.0).to(tl.float32)
        s = tl.load(sin_ptr + t * stride_ct + j, mask=j < half, other=0.0).to(tl.float32) * sign
        x_row = x_ptr + t * stride_xt + h * stride_xh
        x1 = tl.load(x_row + j, mask=mask, other=0.0)
        x2 = tl.load(x_row + half + j, mask=mask, other=0.0)
        kind = x1.dtype
        x1, x2 = x1.to(tl.float32), x2.to(tl.float32)
        if ROUND:  # 16-bit cos/sin: every product and sum rounded to x's dtype, as PyTorch's separate ops do
            new1 = ((x1 * c).to(kind).to(tl.float32) - (x2 * s).to(kind).to(tl.float32)).to(kind)
            new2 = ((x2 * c).to(kind).to(tl.float32) + (x1 * s).to(kind).to(tl.float32)).to(kind)
        else:  # float32 cos/sin: the promoted computation, rounded once
            new1 = (x1 * c - x2 * s).to(kind)
            new2 = (x2 * c + x1 * s).to(kind)
        o_row = out_ptr + t * stride_ot + h * stride_oh
        tl.store(o_row + j, new1, mask=mask)
        tl.store(o_row + half + j, new2, mask=mask)
        if COPY_REST:  # the features past the rotated ones, for an out-of-place call
            d = tl.arange(0, BLOCK_D)[None, :]
            rest = (h < n_heads) & (d >= 2 * half) & (d < head_dim)
            tl.store(o_row + d, tl.load(x_row + d, mask=rest, other=0.0), mask=rest)

    _TRITON["kernel"] = rope_kernel
    return rope_kernel


def _rotate_triton(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, sign: float,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`_rotate` on ``x`` ``(batch, seq, heads, head_dim)`` (last two dims contiguous) with the Triton kernel:
    in place if ``out`` is None, else into ``out`` (same shape, contiguous) with the rest of each head copied.
    ``cos``, ``sin``: ``(batch, seq, rot)``. Returns the tensor written."""
    import triton

    batch, seq, heads, head_dim = x.shape
    half = cos.shape[-1] // 2
    cos2, sin2 = cos.reshape(batch * seq, -1), sin.reshape(batch * seq, -1)
    if cos2.stride(-1) != 1 or sin2.stride() != cos2.stride():
        cos2, sin2 = cos2.contiguous(), sin2.contiguous()
    target = x if out is None else out
    x2 = x.view(batch * seq, heads, head_dim)
    o2 = target.view(batch * seq, heads, head_dim)
    block_h = min(16, triton.next_power_of_2(heads))
    grid = (batch * seq, triton.cdiv(heads, block_h))
    _triton_kernel()[grid](x2, o2, cos2, sin2, x2.stride(0), x2.stride(1), o2.stride(0), o2.stride(1),
                           cos2.stride(0), heads, head_dim, half, sign, ROUND=cos.dtype != torch.float32,
                           COPY_REST=out is not None, BLOCK_H=block_h, BLOCK_J=triton.next_power_of_2(half),
                           BLOCK_D=triton.next_power_of_2(head_dim),
                           enable_fp_fusion=False)  # no fused multiply-add: each product rounds, as PyTorch's do
    return target


def _use_triton(x: torch.Tensor) -> bool:
    """The Triton kernel on a CUDA tensor whose heads are laid out as the projection wrote them (tested against
    :func:`_rotate` on the GPU: benchmarks/levers_gpu.py); PyTorch's operations otherwise (the CPU)."""
    return (x.is_cuda and x.stride(-1) == 1 and x.stride(-2) == x.shape[-1]
            and x.stride(0) == x.shape[1] * x.stride(1) and KERNEL["triton"])


KERNEL: dict[str, Any] = {"triton": True}  # False: PyTorch's operations on the GPU too (what the GPU check compares)


def _triton_ok(launch: Any) -> bool:
    """Run ``launch``; if Triton cannot build or launch the kernel here (an old GPU, no compiler), say so once and
    use PyTorch's operations from then on (the same numbers, more passes). Returns whether the kernel ran."""
    try:
        launch()
        return True
    except Exception as err:  # noqa: BLE001 - any build or launch failure: the fallback computes the same function
        import warnings

        KERNEL.update(triton=False, error=f"{type(err).__name__}: {err}"[:500])
        warnings.warn(f"utils.models.rotary: the Triton kernel failed ({KERNEL['error'][:200]}); using PyTorch's "
                      "operations instead (the same numbers)", RuntimeWarning, stacklevel=3)
        return False


class RotateInPlace(torch.autograd.Function):
    """RoPE on the first ``rot`` features of each head of ``x`` (``(batch, seq, heads, head_dim)``, any float dtype),
    in place; ``cos``, ``sin``: ``(batch, seq, rot)`` as transformers' rotary embedding returns them (the same dtype
    as ``x``, or float32). Returns ``x`` (marked dirty: autograd checks that nothing saved it before). On a GPU one
    Triton kernel computes it (:func:`_rotate_triton`), elsewhere PyTorch's operations (:func:`_rotate`)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        rot = cos.shape[-1]
        if _use_triton(x) and _triton_ok(lambda: _rotate_triton(x, cos, sin, 1.0)):
            pass
        else:
            c, s = cos[..., : rot // 2].unsqueeze(-2), sin[..., : rot // 2].unsqueeze(-2)  # (batch, seq, 1, rot/2)
            _rotate(x[..., :rot], c, s)
        ctx.mark_dirty(x)
        ctx.save_for_backward(cos, sin)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        rot = cos.shape[-1]
        if _use_triton(grad):  # one kernel writes the rotated gradient and copies the rest
            out = torch.empty_like(grad)
            if _triton_ok(lambda: _rotate_triton(grad, cos, sin, -1.0, out=out)):
                return out, None, None
        grad = grad.clone(memory_format=torch.contiguous_format)  # autograd may hold the incoming gradient elsewhere
        c, s = cos[..., : rot // 2].unsqueeze(-2), sin[..., : rot // 2].unsqueeze(-2)
        _rotate(grad[..., :rot], c, -s)
        return grad, None, None


def _attention_forward(self: Any, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                       attention_mask: torch.Tensor | None = None, cache: Any = None,
                       **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers' Phi / Llama attention forward with :class:`RotateInPlace` instead of ``apply_rotary_pos_emb``
    and the concatenation. ``hidden_states``: ``(batch, seq, hidden)``; returns ``(output, attention weights or
    None)`` as transformers' does."""
    if cache is not None or getattr(self, "qk_layernorm", False) or "past_key_values" in kwargs:
        return type(self).forward(self, hidden_states, position_embeddings, attention_mask, cache=cache, **kwargs)
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    eager = sys.modules[type(self).__module__].eager_attention_forward  # the model file's own, as transformers uses
    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, self.head_dim)
    cos, sin = position_embeddings
    query = RotateInPlace.apply(self.q_proj(hidden_states).view(hidden_shape), cos, sin).transpose(1, 2)
    key = RotateInPlace.apply(self.k_proj(hidden_states).view(hidden_shape), cos, sin).transpose(1, 2)
    value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager)
    output, weights = attention(self, query, key, value, attention_mask,
                                dropout=0.0 if not self.training else self.attention_dropout, scaling=self.scaling,
                                **kwargs)
    output = output.reshape(*input_shape, -1).contiguous()
    projection = self.dense if hasattr(self, "dense") else self.o_proj
    return projection(output), weights


ATTENTION_CLASSES = ("PhiAttention", "LlamaAttention")  # the forwards _attention_forward reproduces


def rope_in_place(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Give every Phi and Llama attention module of ``model`` the forward with :class:`RotateInPlace` (the same
    function). Returns the modules changed (:func:`undo_rope_in_place` gives them transformers' forward back)."""
    return set_forward([m for m in model.modules() if type(m).__name__ in ATTENTION_CLASSES], _attention_forward)


undo_rope_in_place = restore_forward  # the modules rope_in_place changed get transformers' own forward back
