"""LoRA and QLoRA linear layers written from scratch, to be checked against peft and bitsandbytes.

LoRA (Hu et al., 2021) freezes a pretrained weight ``W`` (out, in) and learns a low-rank update::

    y = x W^T + b + scaling * dropout(x) A^T B^T        A: (r, in), B: (out, r), dW = scaling * B A

with ``scaling = alpha / r`` (or ``alpha / sqrt(r)``, rank-stabilised LoRA). ``B`` starts at zero,
so training starts from the pretrained model exactly. Only ``r * (in + out)`` numbers are trained
instead of ``in * out``.

QLoRA (Dettmers et al., 2023) stores the frozen ``W`` in 4 bits (here with our own quantizer from
:mod:`utils.lessons.quant`) and dequantizes it to the compute dtype *on the fly*, in the forward pass and
again in the backward pass; the 16/32-bit copy is never kept. ``A`` and ``B`` stay in higher
precision and are the only tensors that receive gradients.

Contents: :class:`LoRALinear`, :class:`FrozenLinear4bit`, :class:`QLoRALinear`,
:func:`inject_lora` (put our layers into a whole model), :func:`copy_lora_weights` (take A and B
from a peft layer), :func:`lora_parameter_count`, two teaching plots, and :func:`first_adam_step` (the size of the
update after one Adam step, for a rank and a scaling; :func:`layer_input_and_output_grad` gives it a real layer's
input and output gradient).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from utils import memory
from utils.lessons import quant as Q
from utils.models.adapters import (
    ALL_LINEAR,
    OUTPUT_HEADS,
    check_lora_args,
    check_target_names,
    matches_target,
)


def lora_parameter_count(in_features: int, out_features: int, rank: int) -> int:
    """Trainable numbers of one LoRA pair: ``rank * (in_features + out_features)`` (A plus B)."""
    check_lora_args(rank, 1.0)
    return rank * (in_features + out_features)


def lora_scaling(rank: int, alpha: float, use_rslora: bool = False) -> float:
    """``alpha / rank`` (LoRA) or ``alpha / sqrt(rank)`` (rank-stabilised LoRA, Kalajdzievski 2023)."""
    check_lora_args(rank, alpha)
    return alpha / math.sqrt(rank) if use_rslora else alpha / rank


# ----------------------------------------------------------------------------------------------
# LoRA around a frozen 16/32-bit linear layer
# ----------------------------------------------------------------------------------------------


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update ``scaling * B @ A``.

    Args:
        base: the pretrained layer (``nn.Linear`` or :class:`FrozenLinear4bit`); it is frozen here.
        rank: r > 0, the inner dimension of ``B @ A``.
        alpha: > 0; the update is multiplied by ``alpha / r`` (``alpha / sqrt(r)`` with ``use_rslora``).
        dropout: probability in [0, 1) of zeroing an input of the LoRA path (training only).
        use_rslora: rank-stabilised scaling.
        adapter_dtype: dtype of A and B (float32: the adapters train in full precision).

    Shapes: input (..., in_features) in the base's compute dtype -> output (..., out_features).
    ``lora_A`` is (r, in_features), initialised like ``nn.Linear`` (Kaiming-uniform, as peft does);
    ``lora_B`` is (out_features, r), initialised to zero.
    """

    def __init__(self, base: nn.Module, rank: int, alpha: float, dropout: float = 0.0,
                 use_rslora: bool = False, adapter_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if not isinstance(base, (nn.Linear, FrozenLinear4bit)):
            raise TypeError(f"LoRALinear wraps an nn.Linear (or FrozenLinear4bit), got {type(base).__name__}.")
        check_lora_args(rank, alpha, dropout)
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha, self.use_rslora = rank, alpha, use_rslora
        self.scaling = lora_scaling(rank, alpha, use_rslora)
        device = next(base.buffers(), next(base.parameters(), torch.empty(0))).device
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, dtype=adapter_dtype, device=device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, dtype=adapter_dtype, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The update ``scaling * B @ A``: (out_features, in_features) in the adapter dtype."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        if self.merged:
            return result
        h = self.dropout(x).to(self.lora_A.dtype)
        update = (h @ self.lora_A.T) @ self.lora_B.T  # (..., r) then (..., out): never forms B @ A
        return result + (update * self.scaling).to(result.dtype)

    def _check_mergeable(self) -> nn.Linear:
        if not isinstance(self.base, nn.Linear):
            raise TypeError(
                "merge() adds B @ A into a 16/32-bit weight; this base is stored in 4 bits, where the sum "
                "would have to be re-quantized (and lose the update's precision). Use merged_linear() "
                "to get a plain nn.Linear with the update included."
            )
        return self.base

    @torch.no_grad()
    def merge(self) -> None:
        """Add the update into the base weight (W <- W + scaling * B A): inference then costs nothing extra."""
        base = self._check_mergeable()
        if self.merged:
            raise RuntimeError("this LoRA layer is already merged; call unmerge() first.")
        base.weight += self.delta_weight().to(base.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge` (W <- W - scaling * B A), e.g. to keep training the adapter."""
        base = self._check_mergeable()
        if not self.merged:
            raise RuntimeError("this LoRA layer is not merged; nothing to unmerge.")
        base.weight -= self.delta_weight().to(base.weight.dtype)
        self.merged = False

    @torch.no_grad()
    def merged_linear(self) -> nn.Linear:
        """A new ``nn.Linear`` computing what this layer computes (base weight, dequantized if 4-bit, + update)."""
        weight = self.base.weight if isinstance(self.base, nn.Linear) else self.base.dequantized_weight()
        if not self.merged:
            weight = weight + self.delta_weight().to(weight.dtype)
        bias = self.base.bias
        out = nn.Linear(self.in_features, self.out_features, bias=bias is not None,
                        dtype=weight.dtype, device=weight.device)
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias)
        return out

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"alpha={self.alpha}, scaling={self.scaling:.4g}, merged={self.merged}")


# ----------------------------------------------------------------------------------------------
# a frozen linear layer stored in 4 bits, dequantized on the fly
# ----------------------------------------------------------------------------------------------


class _Dequantize4bitLinear(torch.autograd.Function):
    """``x @ W^T`` where W is rebuilt from 4-bit codes in forward AND again in backward.

    Nothing of W's full-precision copy is saved between the passes (only the layer, which holds the
    packed codes). W is frozen, so backward returns a gradient for ``x`` only: ``grad_x = grad_y @ W``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: FrozenLinear4bit) -> torch.Tensor:  # noqa: ANN001
        ctx.layer = layer
        return x @ layer.dequantized_weight().T

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: ANN205
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_output @ ctx.layer.dequantized_weight()  # dequantized again, then dropped
        return grad_x, None


class FrozenLinear4bit(nn.Module):
    """A frozen ``nn.Linear`` whose weight is stored as packed 4-bit codes plus per-block scales.

    Args:
        linear: the layer to quantize (its weight (out, in) is quantized block-wise, row-major,
            exactly as bitsandbytes ``Linear4bit`` does).
        method: a :data:`utils.lessons.quant.METHODS` entry (QLoRA uses ``"nf4"``).
        blocksize: weights per block (bitsandbytes' default 64).
        double_quant: store the float32 absmax constants in 8 bits too (QLoRA's double quantization).
        compute_dtype: dtype the weight is dequantized to for the matmul (float32 on CPU,
            bfloat16/float16 on GPUs); also the bias dtype.

    Buffers: ``packed`` uint8 (ceil(in*out/2),), and either ``absmax`` float32 (n_blocks,) or, with
    double quantization, ``absmax_codes`` uint8 (n_blocks,), ``absmax2`` float32, ``absmax_offset``.
    """

    def __init__(self, linear: nn.Linear, method: str = "nf4", blocksize: int = 64,
                 double_quant: bool = False, compute_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"FrozenLinear4bit quantizes an nn.Linear, got {type(linear).__name__}.")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.method, self.blocksize, self.double_quant = method, blocksize, double_quant
        self.compute_dtype = compute_dtype
        q = Q.quantize_4bit(linear.weight.detach(), method, blocksize)
        self.register_buffer("packed", Q.pack_4bit(q.codes))
        if double_quant:
            dq = Q.double_quantize(q.scale)
            self.dq_blocksize = dq.blocksize
            self.register_buffer("absmax_codes", dq.codes)
            self.register_buffer("absmax2", dq.absmax2)
            self.register_buffer("absmax_offset", dq.offset)
        else:
            self.register_buffer("absmax", q.scale)
        self.register_buffer("zero_point", q.zero_point)
        bias = None if linear.bias is None else linear.bias.detach().to(compute_dtype).clone()
        self.register_buffer("bias", bias)

    def scales(self) -> torch.Tensor:
        """The per-block float32 scales (n_blocks,), double-dequantized if stored in 8 bits."""
        if self.double_quant:
            return Q.double_dequantize(Q.DoubleQuantized(self.absmax_codes, self.absmax2, self.absmax_offset,
                                                         self.dq_blocksize))
        return self.absmax

    def dequantized_weight(self) -> torch.Tensor:
        """Rebuild W: (out_features, in_features) in ``compute_dtype`` (a fresh tensor every call)."""
        n = self.in_features * self.out_features
        q = Q.Quantized4bit(Q.unpack_4bit(self.packed, n), self.scales(), self.zero_point,
                            torch.Size((self.out_features, self.in_features)), self.compute_dtype,
                            self.blocksize, self.method)
        return Q.dequantize_4bit(q)

    @property
    def weight(self) -> torch.Tensor:
        """Read-only view for code that expects ``.weight`` (dequantized, so it costs a full copy)."""
        return self.dequantized_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _Dequantize4bitLinear.apply(x.to(self.compute_dtype), self)
        return out + self.bias if self.bias is not None else out

    def storage_bytes(self) -> int:
        """Bytes of the stored 4-bit weight: packed codes plus quantization constants (plus bias)."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, method={self.method}, "
                f"blocksize={self.blocksize}, double_quant={self.double_quant}, compute_dtype={self.compute_dtype}")


class QLoRALinear(LoRALinear):
    """LoRA around a 4-bit frozen base: quantizes ``base`` with :class:`FrozenLinear4bit`, then adds A and B.

    Args: as :class:`LoRALinear` plus ``method``, ``blocksize``, ``double_quant``, ``compute_dtype``
    (passed to :class:`FrozenLinear4bit`). A and B stay in ``adapter_dtype`` (float32).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0,
                 use_rslora: bool = False, adapter_dtype: torch.dtype = torch.float32, *,
                 method: str = "nf4", blocksize: int = 64, double_quant: bool = False,
                 compute_dtype: torch.dtype = torch.float32) -> None:
        check_lora_args(rank, alpha, dropout)  # fail before the (slow) quantization
        quantized = FrozenLinear4bit(base, method, blocksize, double_quant, compute_dtype)
        super().__init__(quantized, rank, alpha, dropout, use_rslora, adapter_dtype)


def memory_breakdown(layer: LoRALinear) -> dict[str, int]:
    """Bytes of a (Q)LoRA layer: the frozen base as stored, its 16/32-bit equivalent, and the adapters."""
    adapters = sum(p.numel() * p.element_size() for p in (layer.lora_A, layer.lora_B))
    n = layer.in_features * layer.out_features
    if isinstance(layer.base, FrozenLinear4bit):
        base = layer.base.storage_bytes()
        elem = torch.empty(0, dtype=layer.base.compute_dtype).element_size()
        bias = layer.base.bias
    else:
        base = sum(p.numel() * p.element_size() for p in layer.base.parameters())
        elem = layer.base.weight.element_size()
        bias = layer.base.bias
    full = n * elem + (0 if bias is None else bias.numel() * bias.element_size())
    return {"base_stored": base, "base_full_precision": full, "adapters": adapters,
            "adapter_grads": adapters, "weight_numbers": n,
            "adapter_numbers": layer.lora_A.numel() + layer.lora_B.numel()}


# ----------------------------------------------------------------------------------------------
# whole models
# ----------------------------------------------------------------------------------------------


def _linear_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Linear layers (plain or our 4-bit) by full name, leaving out LoRA wrappers' insides."""
    return {n: m for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, FrozenLinear4bit)) and not n.endswith(".base")}


def _head_modules(model: nn.Module) -> set[int]:
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {id(output)} if output is not None else set()


def _targets(model: nn.Module, target_modules: str | Iterable[str]) -> list[str]:
    """Full names of the linear modules to wrap; ValueError listing what exists if one matches nothing."""
    linear = _linear_layers(model)
    if target_modules == ALL_LINEAR:
        heads = _head_modules(model)
        return [n for n, m in linear.items() if id(m) not in heads and n.rsplit(".", 1)[-1] not in OUTPUT_HEADS]
    targets = check_target_names(target_modules, sorted(linear), type(model).__name__)
    return [n for n in linear if any(matches_target(n, t) for t in targets)]  # peft's matching rule


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, leaf, new)


def quantize_linear_layers(model: nn.Module, skip: Iterable[str] = OUTPUT_HEADS, **quant_kwargs) -> nn.Module:
    """Replace every ``nn.Linear`` but the heads (leaf names in ``skip``, output embeddings) by a
    :class:`FrozenLinear4bit`, in place: the whole base model in 4 bits, as QLoRA stores it.

    ``quant_kwargs``: ``method``, ``blocksize``, ``double_quant``, ``compute_dtype``.
    """
    skip, heads = set(skip), _head_modules(model)
    for name, module in _linear_layers(model).items():
        if isinstance(module, nn.Linear) and id(module) not in heads and name.rsplit(".", 1)[-1] not in skip:
            _replace(model, name, FrozenLinear4bit(module, **quant_kwargs))
    return model


def inject_lora(model: nn.Module, rank: int, alpha: float, target_modules: str | Iterable[str] = ALL_LINEAR,
                dropout: float = 0.0, use_rslora: bool = False, quantize: bool = False,
                **quant_kwargs) -> nn.Module:
    """Freeze ``model`` and wrap its target linear layers with our LoRA layers, in place.

    Args:
        target_modules: leaf names (e.g. ``["query", "value"]``) or ``"all-linear"`` (every linear
            layer but the output/classifier head, as peft does).
        quantize: QLoRA: first store every linear layer but the heads in 4 bits
            (:func:`quantize_linear_layers`, ``quant_kwargs`` go there), then wrap the targets.

    Returns:
        the same model object, with only the A and B matrices trainable.
    """
    check_lora_args(rank, alpha, dropout)
    names = _targets(model, target_modules)  # checked before anything is changed
    for p in model.parameters():
        p.requires_grad_(False)
    if quantize:
        quantize_linear_layers(model, **quant_kwargs)
    for name in names:
        _replace(model, name, LoRALinear(model.get_submodule(name), rank, alpha, dropout, use_rslora))
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The (Q)LoRA layers of ``model`` by full name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


@torch.no_grad()
def copy_lora_weights(peft_layer: nn.Module, ours: LoRALinear, adapter: str = "default") -> None:
    """Copy A and B from a peft LoRA layer into ours (shapes checked), so both compute the same function."""
    a, b = peft_layer.lora_A[adapter].weight, peft_layer.lora_B[adapter].weight
    if a.shape != ours.lora_A.shape or b.shape != ours.lora_B.shape:
        raise ValueError(f"shapes differ: peft A {tuple(a.shape)}, B {tuple(b.shape)} vs ours "
                         f"A {tuple(ours.lora_A.shape)}, B {tuple(ours.lora_B.shape)}.")
    ours.lora_A.copy_(a)
    ours.lora_B.copy_(b)


# ----------------------------------------------------------------------------------------------
# teaching plots
# ----------------------------------------------------------------------------------------------


def plot_low_rank_update(layer: LoRALinear, rows: int = 48, cols: int = 48):
    """Heat maps of B (out, r), A (r, in) and their product dW = scaling * B A (top-left corner shown).

    Returns the matplotlib figure. The point: dW is a full (out, in) matrix, yet it is fixed by
    only r * (in + out) numbers, and its rank is at most r.
    """
    import matplotlib.pyplot as plt

    with torch.no_grad():
        a, b, dw = (t.detach().float().cpu() for t in (layer.lora_A, layer.lora_B, layer.delta_weight()))
    r = layer.rank
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), gridspec_kw={"width_ratios": [max(r, 4), cols, cols]})
    for ax, mat, title in ((axes[0], b[:rows], f"B ({layer.out_features} x {r})"),
                           (axes[1], a[:, :cols], f"A ({r} x {layer.in_features})"),
                           (axes[2], dw[:rows, :cols], f"dW = {layer.scaling:g} * B A  (rank <= {r})")):
        lim = float(mat.abs().max()) or 1.0
        ax.imshow(mat.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("column (input feature)" if ax is not axes[0] else "rank index")
        ax.set_ylabel("row (output feature)" if ax is not axes[1] else "rank index")
    fig.suptitle(f"The update is a product of two thin matrices (top-left {rows} x {cols} shown)")
    fig.tight_layout()
    return fig


def plot_parameters_vs_rank(in_features: int, out_features: int, ranks: Iterable[int]):
    """Trainable numbers of one layer vs rank: r (in + out) for LoRA against in * out for full fine-tuning."""
    import matplotlib.pyplot as plt

    ranks = list(ranks)
    counts = [lora_parameter_count(in_features, out_features, r) for r in ranks]
    full = in_features * out_features
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(ranks, counts, "o-", label="LoRA: r (in + out)")
    ax.axhline(full, color="C3", ls="--", label=f"full fine-tuning: in x out = {full:,}")
    for r, c in zip(ranks, counts, strict=True):
        ax.annotate(f"{100 * c / full:.1f}%", (r, c), textcoords="offset points", xytext=(0, 6),
                    ha="center", fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="LoRA rank r (log scale)", ylabel="trainable numbers (log scale)",
           title=f"Rank {ranks[-1]} trains {100 * counts[-1] / full:.1f}% of a {out_features}x{in_features} layer")
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.legend()
    fig.tight_layout()
    return fig


saved_tensor_bytes = memory.saved_tensor_bytes  # (output, bytes kept for backward) of fn()


# ----------------------------------------------------------------------------------------------
# the first optimizer step: what the scaling alpha / r (or alpha / sqrt(r)) does to the update (notebook 03)
# ----------------------------------------------------------------------------------------------


def layer_input_and_output_grad(model: nn.Module, layer_name: str, loss_fn) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """What one training step shows a layer: its input ``x`` (..., in) and the gradient ``dL/dy`` (..., out) of the
    loss with respect to its output, from one forward and backward pass ``loss_fn(model)`` (a scalar loss).
    ``model``'s parameter gradients are cleared afterwards.

    Raises:
        ValueError: the layer's output needs no gradient (a frozen model whose inputs need none either).
    """
    layer = model.get_submodule(layer_name)
    seen: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not output.requires_grad:
            raise ValueError(f"the output of {layer_name!r} needs no gradient: unfreeze the model "
                             "(model.requires_grad_(True)) before asking for its output gradient.")
        seen["x"] = inputs[0].detach()
        output.register_hook(lambda grad: seen.__setitem__("grad_y", grad.detach()))

    handle = layer.register_forward_hook(hook)
    try:
        loss_fn(model).backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    return seen["x"], seen["grad_y"]


def first_adam_step(base: nn.Linear, x: torch.Tensor, grad_y: torch.Tensor, rank: int, alpha: float,
                    use_rslora: bool = False, lr: float = 1e-3, seed: int = 0) -> float:
    """``||dW|| / ||W||`` (Frobenius norms) after one Adam step of LoRA around a copy of ``base``, from its start
    (``B = 0``), for a layer that sees input ``x`` and output gradient ``grad_y`` (:func:`layer_input_and_output_grad`).

    On the first step only ``B`` moves (``A``'s gradient is ``s B^T ...``: zero while ``B = 0``), and Adam moves each
    entry of ``B`` by ``lr * g / (|g| + eps)``: about ``lr``, whatever the gradient's size. So the update
    ``dW = s * dB @ A`` is the scaling ``s`` times a sum of ``r`` rank-one pieces. ``A`` is drawn from ``seed``
    (the global random state is left as it was); ``base`` is not changed.
    """
    import copy

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = LoRALinear(copy.deepcopy(base), rank, alpha, use_rslora=use_rslora)
    optimizer = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=lr)
    layer(x).backward(grad_y)
    optimizer.step()
    with torch.no_grad():
        return (layer.delta_weight().norm() / layer.base.weight.norm()).item()
