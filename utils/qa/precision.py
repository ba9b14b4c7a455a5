"""Phi-2 in fp16 (a T4 has no bf16): detect the attention overflow to inf/NaN and compute attention in fp32.

Phi-2's query/key activations are large enough that ``Q K^T`` can exceed fp16's range (65504). The guard
runs one forward pass in the training dtype; if it is not finite, every attention layer is switched to an
SDPA computed in float32 (:func:`use_fp32_attention`) and the pass is checked again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

FP32_ATTENTION = "sdpa_fp32"  # name under which the fp16 remedy registers its attention function


def _sdpa_fp32(module, query, key, value, attention_mask, **kwargs):
    """SDPA attention computed in float32 (autocast off), cast back to the caller's dtype."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = query.dtype
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        attention_mask = attention_mask.float()
    with torch.autocast(device_type=query.device.type, enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(),
                                              attention_mask, **kwargs)
    return out.to(dtype), weights


def use_fp32_attention(model: torch.nn.Module) -> None:
    """Compute every attention layer of ``model`` (also under peft) in float32: the fp16 overflow remedy."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(FP32_ATTENTION, _sdpa_fp32)
    if FP32_ATTENTION not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(FP32_ATTENTION, sdpa_mask)
    set_attention(model, FP32_ATTENTION)


def set_attention(model: torch.nn.Module, name: str) -> None:
    """Switch every attention layer of ``model`` (also under peft) to the implementation ``name``
    (``"sdpa"``, ``"eager"``, or a registered one such as the fp32 remedy's)."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = name


@torch.no_grad()
def forward_is_finite(model: torch.nn.Module, batch: Mapping[str, torch.Tensor],
                      dtype: torch.dtype | None = None) -> bool:
    """True if loss and logits of one forward (under autocast ``dtype`` if given) are all finite."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(**batch, use_cache=False)
    return bool(torch.isfinite(out.logits).all()) and (out.loss is None or bool(torch.isfinite(out.loss)))


def fp16_guard(model: torch.nn.Module, batch: Mapping[str, torch.Tensor],
               dtype: torch.dtype = torch.float16) -> dict[str, Any]:
    """Check one forward in ``dtype``; if it overflows, switch attention to fp32 and check again.

    Returns ``{"finite_before": bool, "remedy": str | None, "finite_after": bool}``.
    Raises FloatingPointError when even the remedy leaves non-finite values.
    """
    report = {"dtype": str(dtype), "finite_before": forward_is_finite(model, batch, dtype), "remedy": None}
    if not report["finite_before"]:
        use_fp32_attention(model)
        report["remedy"] = "attention (QK^T, softmax, AV) computed in float32"
    report["finite_after"] = forward_is_finite(model, batch, dtype)
    if not report["finite_after"]:
        raise FloatingPointError(f"the forward pass in {dtype} is non-finite even with fp32 attention; "
                                 "train in bf16 or fp32 instead.")
    return report
