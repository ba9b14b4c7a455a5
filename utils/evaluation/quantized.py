"""Quantization applied to whole models: per-layer error and the effect on a model's output.

:func:`fake_quantized` swaps every linear weight for its 4-bit reconstruction (our quantizers,
bit-identical to bitsandbytes for NF4/FP4) *in place* and restores the originals afterwards, so
comparing methods on a 2.7B-parameter model needs no second copy of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from utils.lessons.quant import fake_quantize, quant_error
from utils.models.adapters import OUTPUT_HEADS
from utils.progress import progress_bar


def linear_weights(model: torch.nn.Module, skip: tuple[str, ...] = OUTPUT_HEADS) -> dict[str, torch.nn.Parameter]:
    """The weight (out_features, in_features) of every ``nn.Linear``, by module name, minus output heads.

    Output heads are skipped because QLoRA keeps them in 16 bits (bitsandbytes skips ``lm_head``).
    """
    return {name: module.weight for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and not name.endswith(skip)}


def sample_linear_weights(model: torch.nn.Module, n: int, chunk: int = 4096, seed: int = 0) -> torch.Tensor:
    """About ``n`` real weights (float32, 1-D, on CPU) drawn from all linear layers in contiguous chunks.

    Chunks of ``chunk`` consecutive weights keep the local structure block-wise quantization sees
    (rows of one layer), while spreading the sample over every layer in proportion to its size.
    """
    weights = list(linear_weights(model).values())
    sizes = torch.tensor([w.numel() for w in weights], dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.multinomial(sizes / sizes.sum(), max(1, n // chunk), replacement=True, generator=generator)
    pieces = []
    for i in picks.tolist():
        flat = weights[i].detach().reshape(-1)
        start = int(torch.randint(0, max(1, flat.numel() - chunk), (1,), generator=generator))
        pieces.append(flat[start:start + chunk].float().cpu())
    return torch.cat(pieces)


def layer_errors(model: torch.nn.Module, methods: list[str], blocksize: int = 64) -> list[dict]:
    """Quantization error of every linear weight under each method.

    Returns:
        one dict per (layer, method): ``layer``, ``method``, ``numel``, ``mse``, ``max_abs``, ``sqnr_db``.
    """
    rows = []
    weights = linear_weights(model)
    for name, weight in progress_bar(weights.items(), desc="layers", leave=False):
        w = weight.detach().float()
        for method in methods:
            rows.append({"layer": name, "method": method, "numel": w.numel(),
                         **quant_error(w, fake_quantize(w, method, blocksize))})
    return rows


@contextmanager
def fake_quantized(model: torch.nn.Module, method: str, blocksize: int = 64) -> Iterator[torch.nn.Module]:
    """Within the block, every linear weight of ``model`` holds its quantize->dequantize value."""
    originals = {}
    try:
        with torch.no_grad():
            for name, weight in linear_weights(model).items():
                originals[name] = weight.detach().to("cpu", copy=True)
                weight.copy_(fake_quantize(weight, method, blocksize))
        yield model
    finally:
        with torch.no_grad():
            weights = linear_weights(model)
            for name, original in originals.items():
                weights[name].copy_(original.to(weights[name].device))


@torch.no_grad()
def last_hidden_states(model: torch.nn.Module, tokenizer, texts: list[str], max_length: int = 128) -> torch.Tensor:
    """Final-layer hidden states of all non-padding tokens: float32 (n_tokens, hidden_size)."""
    batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    batch = batch.to(next(model.parameters()).device)
    out = model(**batch, output_hidden_states=True)
    hidden = out.hidden_states[-1]
    return hidden[batch["attention_mask"].bool()].float().cpu()


def output_agreement(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """How close two (n_tokens, hidden) outputs are: mean per-token cosine similarity and
    relative error ||other - reference|| / ||reference|| (Frobenius norms)."""
    cosine = torch.nn.functional.cosine_similarity(reference, other, dim=-1).mean()
    rel = (other - reference).norm() / reference.norm()
    return {"cosine": float(cosine), "rel_error": float(rel)}


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokenizer, text: str, max_length: int = 512, stride: int = 256) -> float:
    """Perplexity of a causal LM on ``text``, with a sliding window of ``max_length`` tokens.

    Each window scores only the tokens not scored by the previous one (the usual strided
    evaluation), so every token is predicted once: those of the first window with every token before them as
    context, the others with at least ``max_length - stride`` tokens of context (at most ``max_length - 1``).
    """
    if not text.strip():
        raise ValueError("perplexity needs a non-empty text.")
    ids = tokenizer(text, return_tensors="pt").input_ids.to(next(model.parameters()).device)
    nll_sum, n_scored, prev_end = 0.0, 0, 0
    for begin in range(0, ids.size(1), stride):
        end = min(begin + max_length, ids.size(1))
        target_len = end - prev_end
        window = ids[:, begin:end]
        labels = window.clone()
        labels[:, :-target_len] = -100
        loss = model(window, labels=labels).loss  # mean over scored tokens (shifted by one)
        scored = int((labels[:, 1:] != -100).sum())
        nll_sum += float(loss) * scored
        n_scored += scored
        prev_end = end
        if end == ids.size(1):
            break
    return math.exp(nll_sum / n_scored)
