"""Patches to a loaded model's forward pass for QLoRA training: the same function in fewer, larger GPU kernels.

Nothing here writes a kernel: each function swaps a module, adds a forward hook, casts frozen weights or gives
peft's LoRA layers another forward, and returns what it changed so that it can be undone.
:func:`utils.qa.training.apply_fused_kernels` applies them as ``QAConfig.fused_kernels`` and ``residual_16bit`` say.
What each saves is measured in benchmarks/README.md.

* Phi-2's activation ``gelu_new`` is written in Python (``0.5 * x * (1 + tanh(...(x + 0.044715 * x**3)))``):
  eight elementwise kernels forward and more backward, each a pass over a ``(tokens, 10240)`` tensor.
  PyTorch's ``gelu(approximate="tanh")`` is the same formula in one kernel (:func:`use_fused_gelu`).
* Under 16-bit autocast, LayerNorm runs (and returns) float32; every 4-bit layer after it then casts its input
  to 16 bits and its output back to float32, and the LoRA path and residual additions run in float32.
  :func:`norm_outputs_in` casts each decoder layer's input norm output to the compute dtype once: what
  bitsandbytes' ``Linear4bit`` and the LoRA matrices compute on is unchanged (they cast to it anyway).
* peft's LoRA layer over a 4-bit base (``peft.tuners.lora.bnb.Linear4bit``) copies the base layer's output
  ("defensively", its comment says) and then adds ``B(A(x)) * scaling`` in two more passes: three passes over a
  ``(tokens, out_features)`` tensor where one does. :func:`lean_lora_4bit` adds it in one (``torch.add`` with
  ``alpha=scaling``), out of place, so nothing needs the copy.
* A 16-bit residual stream (:func:`residual_in`; not the same function: each residual addition rounds to 16 bits)
  and the frozen embeddings and head stored in 16 bits again (:func:`embeddings_and_head_in`); the course uses
  them under bf16 only.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch


class FusedTanhGELU(torch.nn.Module):
    """``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` as PyTorch's single kernel (``approximate="tanh"``);
    input and output: any shape, same dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x, approximate="tanh")


Swap = tuple[torch.nn.Module, str, torch.nn.Module]  # (parent, attribute name, the module it held before)


def swap_modules(model: torch.nn.Module, match: Callable[[torch.nn.Module], bool],
                 make: Callable[[torch.nn.Module], torch.nn.Module]) -> list[Swap]:
    """Replace every submodule for which ``match`` is true with ``make(it)``; returns what was replaced, for
    :func:`restore`."""
    swaps = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if match(child):
                setattr(parent, name, make(child))
                swaps.append((parent, name, child))
    return swaps


def restore(swaps: list[Swap]) -> None:
    """Put back the modules :func:`swap_modules` replaced."""
    for parent, name, child in swaps:
        setattr(parent, name, child)


def use_fused_gelu(model: torch.nn.Module) -> list[Swap]:
    """Replace transformers' Python tanh-GELU modules (``NewGELUActivation``, Phi-2's ``gelu_new``) with
    :class:`FusedTanhGELU`; returns the replacements (none for models with another activation; :func:`restore`
    undoes them)."""
    return swap_modules(model, lambda m: type(m).__name__ == "NewGELUActivation", lambda m: FusedTanhGELU())


def set_forward(modules: list[torch.nn.Module], forward: Callable[..., Any]) -> list[torch.nn.Module]:
    """Give each of ``modules`` the method ``forward`` (a function of ``(module, *args, **kwargs)``) instead of its
    class's; returns them (:func:`restore_forward` undoes it)."""
    for m in modules:
        m.forward = types.MethodType(forward, m)
    return list(modules)


def restore_forward(modules: list[torch.nn.Module]) -> None:
    """Give the modules :func:`set_forward` changed their class's forward back."""
    for m in modules:
        vars(m).pop("forward", None)


class _ForwardSwap:
    """A module given another forward; ``remove()`` gives it its class's forward back (as a hook's handle does)."""

    def __init__(self, module: torch.nn.Module, forward: Callable[..., torch.Tensor]):
        self.module = module
        set_forward([module], forward)

    def remove(self) -> None:
        restore_forward([self.module])


def norm_outputs_in(model: torch.nn.Module, dtype: torch.dtype) -> list[Any]:
    """Make every decoder layer's ``input_layernorm`` return ``dtype`` (the autocast dtype), so the 4-bit layers and
    LoRA matrices after it receive 16-bit inputs instead of casting float32 ones one by one. A no-op for float32.

    A frozen ``LayerNorm`` (Phi-2's) whose weights ``dtype`` holds exactly (they came from a 16-bit checkpoint; peft
    upcast them to float32) and whose input is already ``dtype`` (the 16-bit residual stream) runs PyTorch's layer
    norm in ``dtype`` outside autocast, with ``dtype`` copies of its weights: PyTorch computes a 16-bit layer norm in
    float32 and rounds the output once, the output autocast's float32 layer norm followed by a cast gives, to the
    bit (the input's gradient to 16-bit rounding: tests/test_forward_patches.py), without casting the input up,
    writing a float32 output and casting it down (two passes forward, two backward). Any other norm (Llama's
    RMSNorm, trainable or inexact weights), or a float32 input, runs as before and its output is cast. Returns
    handles (``handle.remove()`` undoes each)."""
    if dtype == torch.float32:
        return []

    def cast(module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        return output.to(dtype)

    def exact_copy(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.detach().to(dtype)

    def direct(m: torch.nn.Module) -> bool:
        if type(m) is not torch.nn.LayerNorm:
            return False
        params = [p for p in (m.weight, m.bias) if p is not None]
        return (not any(p.requires_grad for p in params)
                and all(torch.equal(p.detach().to(dtype).to(p.dtype), p.detach()) for p in params))

    def layer_norm_in(self: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != dtype:
            return type(self).forward(self, x).to(dtype)
        weight, bias = self.weight16, self.bias16
        if weight is not None and weight.device != x.device:
            weight, bias = exact_copy(self.weight), exact_copy(self.bias)
            self.weight16, self.bias16 = weight, bias
        with torch.autocast(x.device.type, enabled=False):
            return torch.nn.functional.layer_norm(x, self.normalized_shape, weight, bias, self.eps)

    handles = []
    for name, m in model.named_modules():
        if not name.endswith("input_layernorm"):
            continue
        if direct(m):
            m.weight16, m.bias16 = exact_copy(m.weight), exact_copy(m.bias)  # frozen: copied once
            handles.append(_ForwardSwap(m, layer_norm_in))
        else:
            handles.append(m.register_forward_hook(cast))
    return handles


def residual_in(model: torch.nn.Module, dtype: torch.dtype) -> list[torch.utils.hooks.RemovableHandle]:
    """Cast the input embeddings' output to ``dtype``, so the residual stream between decoder layers is 16-bit.

    Not the same function: peft's ``prepare_model_for_kbit_training`` keeps the embeddings (and so the residual
    stream) in float32; in 16 bits each residual addition rounds to bf16's 8 significant bits, as it does in any
    model trained or run in bf16 without that upcast. What it buys: the hidden states that activation
    checkpointing keeps between layers take half the memory (``(tokens, hidden)`` per layer in 2 bytes instead of 4),
    and the residual additions move half the bytes. A no-op for float32. Returns the hook's handle."""
    if dtype == torch.float32:
        return []

    def cast(module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        return output.to(dtype)

    return [model.get_input_embeddings().register_forward_hook(cast)]


def embeddings_and_head_in(model: torch.nn.Module, dtype: torch.dtype) -> list[torch.nn.Parameter]:
    """Store the frozen input embeddings and output head in ``dtype`` again (peft's
    ``prepare_model_for_kbit_training`` upcasts them to float32). Their values came from a 16-bit checkpoint, so
    nothing is rounded; under 16-bit autocast the head's matrix product casts the float32 copy to 16 bits on every
    call anyway, and with :func:`residual_in` the embeddings' output is cast too: the same function, 2 bytes per
    weight less (about 0.5 GiB for Phi-2) and no per-call cast of the head. A no-op for float32 (the CPU).
    Returns the parameters cast (``p.data = p.data.float()`` undoes it)."""
    if dtype == torch.float32:
        return []
    cast = [p for module in (model.get_input_embeddings(), model.get_output_embeddings())
            for p in module.parameters() if not p.requires_grad and p.dtype == torch.float32]
    for p in cast:
        p.data = p.data.to(dtype)
    return cast


def _lean_lora_4bit_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """peft's ``Linear4bit.forward`` for plain LoRA, in one addition per adapter and without the output copy.
    ``x``: ``(..., in_features)``; returns ``(..., out_features)`` in the base layer's output dtype. Anything else
    (extra arguments, disabled or merged adapters, DoRA and other variants) goes to peft's own forward."""
    active = [a for a in self.active_adapters if a in self.lora_A]
    variant = getattr(self, "lora_variant", {})  # DoRA and other variants; older peft releases flag DoRA in use_dora
    if (args or kwargs or self.disable_adapters or self.merged
            or any(a in variant or getattr(self, "use_dora", {}).get(a) for a in active)):
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    autocast = torch.is_autocast_enabled(x.device.type)  # autocast picks the matmul dtype; without it, cast
    for name in active:
        lora_a, lora_b = self.lora_A[name], self.lora_B[name]
        h = x if autocast else x.to(lora_a.weight.dtype)
        out = lora_b(lora_a(self.lora_dropout[name](h)))
        result = torch.add(result, out if autocast else out.to(result.dtype), alpha=self.scaling[name])
    return result


def lean_lora_4bit(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Give every peft LoRA layer over a bitsandbytes 4-bit layer :func:`_lean_lora_4bit_forward` (the same
    function; the sum rounds once instead of twice). Returns the layers changed (:func:`undo_lean_lora_4bit`)."""
    from utils.models.qlora_linear import set_lora_4bit_forward

    return set_lora_4bit_forward(model, _lean_lora_4bit_forward)


def undo_lean_lora_4bit(layers: list[torch.nn.Module]) -> None:
    """Give the layers :func:`lean_lora_4bit` changed peft's own forward back."""
    restore_forward(layers)
