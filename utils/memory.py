"""Measuring memory: parameter storage of a model and peak memory of a block of code."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


def param_storage_bytes(p: torch.Tensor) -> int:
    """Bytes a parameter occupies; for a bitsandbytes 4-bit weight, its packed codes plus the
    quantization constants (absmax, and under double quantization the second-level absmax)."""
    size = p.numel() * p.element_size()
    state = getattr(p, "quant_state", None)
    if state is not None:
        size += state.absmax.numel() * state.absmax.element_size()
        if getattr(state, "state2", None) is not None:
            size += state.state2.absmax.numel() * state.state2.absmax.element_size()
    return size


def model_storage_bytes(model: torch.nn.Module) -> dict[str, int]:
    """Bytes held by a model's parameters and buffers, split into trainable and frozen.

    4-bit bitsandbytes weights count as their packed uint8 storage plus their quantization
    constants (absmax, and the nested state under double quantization).
    """
    trainable = frozen = 0
    for p in model.parameters():
        size = param_storage_bytes(p)
        if p.requires_grad:
            trainable += size
        else:
            frozen += size
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return {"trainable": trainable, "frozen": frozen, "buffers": buffers,
            "total": trainable + frozen + buffers}


def saved_tensor_bytes(fn: Callable[[], Any], include_parameters: bool = True) -> tuple[Any, int]:
    """Run ``fn()`` and count the bytes autograd keeps for the backward pass.

    Counted through ``torch.autograd.graph.saved_tensors_hooks``, once per storage (views of one
    tensor count once). With ``include_parameters=False`` saved parameters are left out, leaving
    the activations (what gradient checkpointing trades for recomputation).

    Returns:
        ``(fn's return value, bytes)``.
    """
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if include_parameters or not isinstance(t, torch.nn.Parameter):
            key = id(t) if t.device.type == "meta" else t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total


@dataclass
class PeakMemory:
    """Filled in by :func:`track_peak`: ``bytes`` is the peak during the block, ``seconds`` its wall time.

    On a GPU the peak is ``torch.cuda.max_memory_allocated`` (tensors only, reset at entry). On
    the CPU it is the process's peak resident set size, which never goes down: it measures the
    whole process up to the end of the block, so compare CPU numbers only within one run.
    """

    bytes: int = 0
    seconds: float = 0.0
    device: str = "cpu"

    @property
    def gib(self) -> float:
        return self.bytes / 2**30


@contextmanager
def track_peak() -> Iterator[PeakMemory]:
    """``with track_peak() as peak: ...`` then read ``peak.bytes`` and ``peak.seconds``."""
    result = PeakMemory(device="cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        yield result
    finally:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            result.bytes = torch.cuda.max_memory_allocated()
        else:
            result.bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        result.seconds = time.perf_counter() - start
