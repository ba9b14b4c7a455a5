"""Activation checkpointing with the checkpoints in CPU memory, copied on a second CUDA stream while the GPU computes.

With activation checkpointing, each decoder layer keeps only its input between the forward and the backward pass and
computes the rest again in the backward pass. Those inputs are what is left of the activations: ``layers x tokens x
hidden`` numbers (Phi-2, 28 rows of 512 tokens, bf16: 32 x 14,336 x 2,560 x 2 bytes = 2.2 GiB), more than the 4-bit
model itself. The GPU needs each only twice: when the forward pass leaves the layer and when the backward pass
reaches it. :class:`OffloadedCheckpoint` keeps it in pinned CPU memory in between.

The copies must not make the GPU wait. transformers' own ``activation_checkpointing_enable(offload=True)`` copies on
the compute stream (its docstring: "so the step gets slower"). Here a :class:`CheckpointOffloader` copies on a
second CUDA stream: in the forward pass the copy of layer ``i``'s input to the CPU runs while layers ``i``, ``i+1``,
... compute; in the backward pass, when layer ``i``'s backward starts, the copy of layer ``i-1``'s input back to the
GPU starts (a prefetch), so it is there when needed. Events order the two streams; ``record_stream`` keeps the
allocator from reusing a tensor's memory while a copy still reads it.

On a CPU there is nothing to copy: the checkpoint keeps the tensor as it is, and the rest (the recomputation, the
random and autocast states, the gradients) runs as on the GPU, so the smoke profile runs this same code.

:func:`offload_checkpoints` installs it in a model whose activation checkpointing is on; :class:`OffloadCallback`
does so when a ``Trainer`` starts (the Trainer turns checkpointing on at the start of ``train()``, which would
replace a function installed before).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback


class _Stored:
    """One checkpoint: the tensor itself (CPU), or its pinned CPU copy and, once fetched, its GPU copy."""

    __slots__ = ("host", "gpu", "ready", "device", "__weakref__")

    def __init__(self, host: torch.Tensor | None, gpu: torch.Tensor | None, device: torch.device):
        self.host, self.gpu, self.ready, self.device = host, gpu, None, device


class CheckpointOffloader:
    """Copies checkpoints to pinned CPU memory and back on its own CUDA stream (see the module docstring).

    :meth:`store` in the forward pass, :meth:`fetch` in the backward pass (which also starts bringing back the
    checkpoint stored just before, the next one the backward pass needs). Host buffers are reused across steps,
    one per checkpoint of a step (a pool by shape and dtype); every copy that reads or writes them runs on the one
    copy stream, in order, so a buffer is free again as soon as its copy back has been issued.
    """

    def __init__(self) -> None:
        self.streams: dict[torch.device, torch.cuda.Stream] = {}
        self.pool: dict[tuple, list[torch.Tensor]] = {}
        self.order: list[weakref.ref] = []  # the checkpoints stored, in forward order (dead ones dropped)

    def _stream(self, device: torch.device) -> torch.cuda.Stream:
        if device not in self.streams:
            self.streams[device] = torch.cuda.Stream(device)
        return self.streams[device]

    def store(self, x: torch.Tensor) -> _Stored:
        """Keep ``x`` (any shape and dtype) until :meth:`fetch`: on a GPU, copied to pinned CPU memory on the copy
        stream (``x`` may be freed meanwhile: the copy keeps its memory reserved); on a CPU, as it is."""
        if x.device.type != "cuda":
            return self._register(_Stored(None, x, x.device))
        stream = self._stream(x.device)
        key = (tuple(x.shape), x.dtype)
        free = self.pool.setdefault(key, [])
        host = free.pop() if free else torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
        stream.wait_stream(torch.cuda.current_stream(x.device))  # x has been computed
        with torch.cuda.stream(stream):
            host.copy_(x, non_blocking=True)
        x.record_stream(stream)
        return self._register(_Stored(host, None, x.device))

    def _register(self, stored: _Stored) -> _Stored:
        """Note ``stored`` in forward order (weakly: a graph dropped without a backward pass takes it along)."""
        self.order = [r for r in self.order if r() is not None]
        self.order.append(weakref.ref(stored))
        return stored

    def _bring_back(self, stored: _Stored) -> None:
        """Start copying ``stored`` to its GPU on the copy stream; give its host buffer back to the pool."""
        stream = self._stream(stored.device)
        with torch.cuda.stream(stream):
            stored.gpu = stored.host.to(stored.device, non_blocking=True)
            stored.ready = torch.cuda.Event()
            stored.ready.record(stream)
        self.pool[(tuple(stored.host.shape), stored.host.dtype)].append(stored.host)
        stored.host = None

    def fetch(self, stored: _Stored) -> torch.Tensor:
        """The tensor :meth:`store` kept, on its device; starts bringing back the checkpoint stored before it."""
        on_gpu = stored.device.type == "cuda"
        if on_gpu:
            if stored.gpu is None:
                self._bring_back(stored)
            compute = torch.cuda.current_stream(stored.device)
            compute.wait_event(stored.ready)
            stored.gpu.record_stream(compute)
        x, stored.gpu = stored.gpu, None  # on a CPU: the tensor, kept as it was
        alive = [r() for r in self.order]
        if stored in alive:
            i = alive.index(stored)
            before = alive[i - 1] if i > 0 else None
            self.order = [weakref.ref(s) for s in alive[:i] + alive[i + 1:] if s is not None]
            if on_gpu and before is not None and before.host is not None and before.gpu is None:
                self._bring_back(before)  # the prefetch: layer i-1's input, while layer i recomputes
        return x


class OffloadedCheckpoint(torch.autograd.Function):
    """``run(hidden, *args)`` without keeping anything for backward but ``hidden`` (in CPU memory, via ``offloader``);
    the backward pass computes ``run`` again from it with the same random and autocast states, then backpropagates.

    ``hidden``: ``(batch, seq, hidden)``, the one input that needs a gradient; ``args``: tensors that need none, or
    other values. ``run`` returns a tensor (transformers' decoder layers do). Returns ``run``'s output.
    """

    @staticmethod
    def forward(ctx: Any, run: Callable[..., torch.Tensor], offloader: CheckpointOffloader, hidden: torch.Tensor,
                *args: Any) -> torch.Tensor:
        device = hidden.device
        ctx.run, ctx.offloader, ctx.args = run, offloader, args
        ctx.autocast = {kind: (torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind))
                        for kind in {device.type, "cpu"}}
        ctx.cpu_rng = torch.get_rng_state()
        ctx.cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        with torch.no_grad():
            out = run(hidden, *args)
        ctx.stored = offloader.store(hidden)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden = ctx.offloader.fetch(ctx.stored).detach().requires_grad_(True)
        ctx.stored = None
        devices = [hidden.device] if ctx.cuda_rng is not None else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.set_rng_state(ctx.cpu_rng)
            if ctx.cuda_rng is not None:
                torch.cuda.set_rng_state(ctx.cuda_rng, hidden.device)
            with _autocast(ctx.autocast):
                out = ctx.run(hidden, *ctx.args)
        torch.autograd.backward(out, grad)
        return (None, None, hidden.grad, *(None for _ in ctx.args))


class _autocast:
    """Re-enter the autocast states recorded in the forward pass (one per device type)."""

    def __init__(self, states: dict[str, tuple[bool, torch.dtype]]):
        self.contexts = [torch.autocast(kind, dtype=dtype, enabled=on) for kind, (on, dtype) in states.items()]

    def __enter__(self) -> None:
        for c in self.contexts:
            c.__enter__()

    def __exit__(self, *exc: Any) -> None:
        for c in reversed(self.contexts):
            c.__exit__(*exc)


def offloaded_checkpoint_function(offloader: CheckpointOffloader) -> Callable[..., Any]:
    """A ``_gradient_checkpointing_func`` for transformers' layers: ``func(run, hidden, *args)`` as
    :class:`OffloadedCheckpoint`. Falls back to ``torch.utils.checkpoint`` (non-reentrant) where another argument
    needs a gradient or ``run`` returns something other than a tensor."""

    def checkpoint(run: Callable[..., Any], hidden: torch.Tensor, *args: Any) -> Any:
        if any(isinstance(a, torch.Tensor) and a.requires_grad for a in args) or not isinstance(hidden, torch.Tensor):
            return torch.utils.checkpoint.checkpoint(run, hidden, *args, use_reentrant=False)
        if not hidden.requires_grad:  # the first layer's input (frozen embeddings): gradients must still flow
            hidden = hidden.detach().requires_grad_(True)
        return OffloadedCheckpoint.apply(run, offloader, hidden, *args)

    return checkpoint


def offload_checkpoints(model: torch.nn.Module) -> CheckpointOffloader | None:
    """Make every layer whose activation checkpointing is on (transformers' ``gradient_checkpointing`` flag) keep its
    checkpoint in CPU memory (:class:`OffloadedCheckpoint`). Returns the offloader, or None if no layer has
    checkpointing on (nothing changed)."""
    layers = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False)]
    if not layers:
        return None
    offloader = CheckpointOffloader()
    function = offloaded_checkpoint_function(offloader)
    for m in layers:
        m._gradient_checkpointing_func = function
    return offloader


class OffloadCallback(TrainerCallback):
    """Install :func:`offload_checkpoints` when training starts (after the Trainer has turned checkpointing on)."""

    def __init__(self) -> None:
        self.offloader: CheckpointOffloader | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None,
                       **kwargs: Any) -> None:
        if model is not None:
            self.offloader = offload_checkpoints(model)
