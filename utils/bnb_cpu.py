"""bitsandbytes on the CPU, made the same on every x86-64 machine: one guard and one log filter.

**The guard.** Since bitsandbytes 0.49.0 (its fused CPU 4-bit kernel) and still in 0.50.2, the version
the course's lock installs, a ``Linear4bit`` on a CPU whose ``bitsandbytes.functional.has_avx512bf16()``
is true (Intel Xeons since Cooper Lake, AMD Zen 4 and later: ``grep -c avx512_bf16 /proc/cpuinfo``)
rewrites its weight *in place* the first time it runs with ``not self.training`` and an input without
grad: the codes are reordered into an inference-only layout and the double-quantized block scales are
replaced by bfloat16 ones (``quant_state.packing_format_for_cpu = True``). Every later forward, training
included, then takes the inference kernel, whose in-place bias add fails under autograd ("a view of a
leaf Variable that requires grad is being used in an in-place operation") and whose numbers differ from
every other machine. Any eval-mode pass before training (a "before" score, a generation, a test's
``model.eval()``) triggers it. :func:`keep_4bit_trainable` turns the repacking off on every
``Linear4bit`` of a model (the layer attribute ``support_avx512bf16_for_cpu``) and undoes it, with a
warning, where it already happened. ``utils.models.load_model`` calls it on every model it loads, and the
course's trainers call it again before training, so every 4-bit model of the course passes through it.

**The log filter.** On the same CPUs, ``import bitsandbytes`` logs "Failed to load CPU gemm_4bit_forward
from kernels-community ..." (it tries to download an optional kernel from the Hub). That kernel serves
only the repacked inference layout the guard turns off, so the message says nothing a learner can act
on; :func:`quiet_optional_kernel_message` drops exactly that message (no other warning) and runs when
``utils`` is imported, so notebooks import ``utils`` before bitsandbytes.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing utils stays light: torch and bitsandbytes load only when a model is guarded
    import torch

# the logger bitsandbytes 0.49-0.50 uses in bitsandbytes/backends/cpu/ops.py, and the start of its message
OPTIONAL_KERNEL_LOGGER = "bitsandbytes.backends.cpu.ops"
OPTIONAL_KERNEL_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"
REPACK_FLAG = "support_avx512bf16_for_cpu"  # Linear4bit attribute (bitsandbytes >= 0.49.0)


class _DropOptionalKernelMessage(logging.Filter):
    """Drops the one record whose message starts with :data:`OPTIONAL_KERNEL_MESSAGE`; keeps all others."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(OPTIONAL_KERNEL_MESSAGE)


def quiet_optional_kernel_message() -> None:
    """Attach the filter to bitsandbytes' CPU-ops logger (idempotent). Must run before ``import bitsandbytes``
    to catch the message, which is logged at import time."""
    logger = logging.getLogger(OPTIONAL_KERNEL_LOGGER)
    if not any(isinstance(f, _DropOptionalKernelMessage) for f in logger.filters):
        logger.addFilter(_DropOptionalKernelMessage())


def is_repacked(layer: torch.nn.Module) -> bool:
    """True if a bitsandbytes ``Linear4bit``'s weight is in the CPU inference layout (see module docstring)."""
    state = getattr(layer.weight, "quant_state", None)
    return bool(getattr(state, "packing_format_for_cpu", False))


def _convert_back(weight: torch.nn.Parameter, bnbF) -> None:  # noqa: ANN001
    """Undo ``_convert_weight_packed_for_cpu`` on a ``Params4bit``, in place.

    bitsandbytes' own inverse (0.49-0.50.2) restores the codes, and the block scales only of double-quantized
    states; single-quantized ones keep the inference layout, (K / blocksize, N) bfloat16, which would scale
    the wrong blocks wherever a row holds more than one. Here they go back to (N * K / blocksize,) float32
    in row-major block order.
    """
    state = weight.quant_state
    single = not state.original_nested
    scales = state.absmax
    weight.data, weight.quant_state = bnbF._convert_weight_packed_for_cpu_inverse(weight.data, state)
    if single:
        weight.quant_state.absmax = scales.T.reshape(-1).float()


def keep_4bit_trainable(model: torch.nn.Module) -> torch.nn.Module:
    """Keep every bitsandbytes ``Linear4bit`` in ``model`` in its trainable layout, on every CPU; in place.

    Sets ``support_avx512bf16_for_cpu = False`` on each layer, so an eval-mode forward no longer repacks
    its weight, and converts back any layer that was already repacked (a warning says how many: their block
    scales were rounded to bfloat16 on the way, a relative change of up to 2**-8 each, and re-quantized to
    8 bits where double quantization is on). A model without 4-bit layers is returned untouched; so is every
    model when bitsandbytes was never imported.

    Returns:
        ``model`` itself.
    """
    if "bitsandbytes" not in sys.modules:  # no Linear4bit can exist; avoid importing bitsandbytes for nothing
        return model
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbF

    repacked = 0
    for module in model.modules():
        if not isinstance(module, bnb.nn.Linear4bit):
            continue
        setattr(module, REPACK_FLAG, False)
        if is_repacked(module):
            _convert_back(module.weight, bnbF)
            repacked += 1
    if repacked:
        warnings.warn(
            f"{repacked} bitsandbytes Linear4bit layer(s) had been repacked for CPU inference by an eval-mode "
            "forward and were converted back so that training works; their block scales now carry bfloat16 "
            "rounding. Load 4-bit models with utils.models.load_model (or call utils.bnb_cpu.keep_4bit_trainable "
            "right after loading) to avoid this.",
            stacklevel=2,
        )
    return model
