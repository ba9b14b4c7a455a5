"""A 4-bit base layer plus its LoRA adapter as one autograd function: the LoRA product added inside a matrix
product's epilogue instead of in separate passes.

peft computes a LoRA layer over a bitsandbytes 4-bit layer as ``base(x) + B(A(x)) * s`` (``s = alpha / r``); autograd
then runs, per layer and step, these passes over ``(tokens, features)``-sized tensors besides the matrix products:

* forward: the addition of the LoRA term (one pass over ``(tokens, out)``);
* backward: the gradient of that term scaled by ``s`` (one pass over ``(tokens, out)``), and the input's gradient
  from the base layer plus the one from the LoRA path (one pass over ``(tokens, in)``).

:class:`QLoRALinearFunction` computes the same function with the scale folded into the small ``(tokens, r)``
products, and the small products written first so that the large product adds them in its epilogue (``addmm_``:
cuBLAS reads ``C`` and adds ``beta * C`` while it writes the result, inside a compute-bound kernel), so none of those
passes remain and no separate kernel reads and rewrites a ``(tokens, features)`` tensor:

    forward:   xa  = s * (x A^T)                     (tokens, r)
               y   = xa B^T + b                      (tokens, out): the LoRA term, written once
               y  += x W^T                           (W dequantized by bitsandbytes; addmm_: in the epilogue)
    backward:  gb  = s * (g B)                       (tokens, r)
               dx  = gb A ;  dx += g W               (W dequantized again, as bitsandbytes does; addmm_)
               dB  = g^T xa ;  dA = gb^T x

Saved for backward: ``x`` (which the layers before keep anyway), ``xa`` (``r`` numbers per token), the adapter's
two small matrices; ``W`` stays 4-bit (as in bitsandbytes' own ``MatMul4Bit``, which saves no input at all, and as
notebook 03's ``DequantizeInBackward`` teaches). The sums round once instead of twice, so in 16-bit the result
differs from peft's by rounding (tests/test_qlora_linear.py states the tolerance); in float32 (the CPU) it agrees
to float32 rounding.

:func:`fuse_qlora_linears` gives every peft LoRA layer over a bitsandbytes ``Linear4bit`` this forward when it is
the plain case: one active adapter, no dropout, no DoRA or other variant, not merged, a frozen bias. Anything else
goes to peft's own forward.
"""

from __future__ import annotations

from typing import Any

import torch

from utils.models.forward_patches import restore_forward, set_forward


def _dequantized(weight: Any, dtype: torch.dtype) -> torch.Tensor:
    """The 4-bit weight ``(out, in)`` dequantized to ``dtype`` (bitsandbytes' kernel; dropped after use)."""
    from bitsandbytes import functional as bnb_f

    return bnb_f.dequantize_4bit(weight.data, weight.quant_state).to(dtype)


class QLoRALinearFunction(torch.autograd.Function):
    """``x W^T + b + s (x A^T) B^T`` with W a frozen bitsandbytes 4-bit weight.

    Forward args: ``x`` ``(..., in)`` in any float dtype; ``weight`` a ``bitsandbytes.nn.Params4bit`` of shape
    ``(out, in)`` with its ``quant_state``; ``bias`` ``(out,)`` or None (frozen); ``lora_a`` ``(r, in)`` and ``lora_b``
    ``(out, r)`` (trainable, any float dtype, usually float32); ``scaling`` the float ``s``; ``dtype`` the compute
    dtype (bfloat16 / float16 on a GPU, float32 on a CPU). Returns ``(..., out)`` in ``x``'s dtype. Autocast is off
    inside: every product runs in ``dtype``, as bitsandbytes' layer computes in its ``compute_dtype``; the weight is
    dequantized with bitsandbytes' kernel (as its ``matmul_4bit`` does) and multiplied by cuBLAS (or the CPU's BLAS).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: Any, bias: torch.Tensor | None, lora_a: torch.Tensor,
                lora_b: torch.Tensor, scaling: float, dtype: torch.dtype) -> torch.Tensor:
        shape = x.shape
        with torch.autocast(x.device.type, enabled=False):
            x2 = x.reshape(-1, shape[-1]).to(dtype)
            a, b = lora_a.to(dtype), lora_b.to(dtype)
            xa = torch.mm(x2, a.t()).mul_(scaling)  # (tokens, r), the scale folded in here
            # the output in its final shape, written through a 2-D view: what is returned is not a view (a view
            # made inside a Function could not be changed in place later, as utils.models.rotary does)
            out = torch.empty(*shape[:-1], b.shape[0], dtype=dtype, device=x.device)
            y = out.view(-1, b.shape[0])  # (tokens, out)
            if bias is None:
                torch.mm(xa, b.t(), out=y)  # the LoRA term, written once
            else:
                torch.addmm(bias.to(dtype), xa, b.t(), out=y)
            y.addmm_(x2, _dequantized(weight, dtype).t())  # the large product adds the LoRA term in its epilogue
        ctx.save_for_backward(x2, xa, lora_a, lora_b)
        ctx.weight, ctx.scaling, ctx.dtype, ctx.x_dtype, ctx.shape = weight, scaling, dtype, x.dtype, shape
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x2, xa, lora_a, lora_b = ctx.saved_tensors
        dtype = ctx.dtype
        with torch.autocast(grad_out.device.type, enabled=False):
            g = grad_out.reshape(-1, grad_out.shape[-1]).to(dtype)
            a, b = lora_a.to(dtype), lora_b.to(dtype)
            gb = torch.mm(g, b).mul_(ctx.scaling)  # (tokens, r)
            grad_x = None
            if ctx.needs_input_grad[0]:
                grad_x = torch.mm(gb, a)  # (tokens, in): the LoRA path's part, written once
                grad_x.addmm_(g, _dequantized(ctx.weight, dtype))  # the large product adds it in its epilogue
                grad_x = grad_x.view(ctx.shape).to(ctx.x_dtype)
            grad_a = torch.mm(gb.t(), x2).to(lora_a.dtype) if ctx.needs_input_grad[3] else None
            grad_b = torch.mm(g.t(), xa).to(lora_b.dtype) if ctx.needs_input_grad[4] else None
        return grad_x, None, None, grad_a, grad_b, None, None


def plain_case(layer: Any) -> str | None:
    """The active adapter's name if ``layer`` (a peft LoRA layer over a 4-bit base) is the case
    :class:`QLoRALinearFunction` computes; None otherwise (peft's forward then runs)."""
    active = [a for a in layer.active_adapters if a in layer.lora_A]
    if len(active) != 1 or layer.disable_adapters or layer.merged:
        return None
    name = active[0]
    variant = getattr(layer, "lora_variant", {})
    if name in variant or getattr(layer, "use_dora", {}).get(name):
        return None
    if not isinstance(layer.lora_dropout[name], torch.nn.Identity):
        return None
    bias = layer.base_layer.bias
    if bias is not None and bias.requires_grad:
        return None
    if getattr(layer.base_layer.weight.quant_state, "packing_format_for_cpu", False):  # utils.bnb_cpu's case
        return None
    if layer.lora_A[name].bias is not None or layer.lora_B[name].bias is not None:
        return None
    return name


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """peft's ``Linear4bit.forward`` for the plain case, as :class:`QLoRALinearFunction`; else peft's own."""
    name = None if (args or kwargs) else plain_case(self)
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    base = self.base_layer
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
    else:
        dtype = base.compute_dtype or x.dtype
    return QLoRALinearFunction.apply(x, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight,
                                     float(self.scaling[name]), dtype)


def set_lora_4bit_forward(model: torch.nn.Module, forward: Any) -> list[torch.nn.Module]:
    """Give every peft LoRA layer over a bitsandbytes 4-bit layer of ``model`` the method ``forward`` (a function of
    ``(layer, x, *args, **kwargs)``); returns the layers changed (:func:`restore_forward` undoes it)."""
    from peft.tuners.lora.bnb import Linear4bit

    return set_forward([m for m in model.modules() if isinstance(m, Linear4bit)], forward)


def fuse_qlora_linears(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Give every peft LoRA layer over a bitsandbytes 4-bit layer the fused forward (see the module docstring).
    Returns the layers changed (:func:`unfuse_qlora_linears` undoes it)."""
    return set_lora_4bit_forward(model, _fused_forward)


unfuse_qlora_linears = restore_forward  # the fused layers get peft's own forward back
