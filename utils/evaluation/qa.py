"""Evaluating a QA adapter: greedy answers, answer perplexity, generation speed, loading and merging.

Scores of the answers are :mod:`utils.evaluation.squad`'s (official SQuAD v1.1 EM/F1).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithFlattening

from utils.qa.data import IGNORE_INDEX, PromptFormat, encode_prompt, prompt_format
from utils.qa.training import graded_positions


@torch.no_grad()
def generate_answers(model: torch.nn.Module, tokenizer: Any, rows: Sequence[Mapping[str, Any]],
                     max_new_tokens: int = 24, max_length: int = 512, batch_size: int = 16,
                     progress: bool = True, fmt: PromptFormat | None = None) -> list[str]:
    """Greedy answers (no sampling: reproducible), cut at the end token or the first newline.

    Prompts are in ``fmt`` (default: the model's own, :func:`utils.qa.data.prompt_format`), left-padded into
    batches; their context is truncated like in training.
    """
    from utils.progress import progress_bar

    device = next(model.parameters()).device
    fmt = fmt or prompt_format(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers: list[str] = []
    was_training = model.training
    model.eval()
    starts = range(0, len(rows), batch_size)
    for start in progress_bar(starts, desc="generating", disable=not progress):
        chunk = rows[start:start + batch_size]
        prompts = [encode_prompt(tokenizer, r["question"], r["context"], max_length - max_new_tokens,
                                 r["answers"]["answer_start"][0] if r.get("answers") else -1, fmt)[0]
                   for r in chunk]
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
                             use_cache=True)
        for seq in out[:, width:]:
            text = tokenizer.decode(seq, skip_special_tokens=True)
            answers.append(text.split("\n")[0].strip())
    model.train(was_training)
    return answers


def gain_over_seeds(base: Mapping[str, float], tuned: Mapping[int, Mapping[str, float]],
                    metric: str = "f1") -> dict[str, Any]:
    """Is the tuned model's gain larger than its seed-to-seed noise?

    Args:
        base: the base model's scores (``squad_scores``; greedy decoding: one number, no seed).
        tuned: ``{training seed: squad_scores}`` of adapters trained with the same settings but different seeds.
        metric: ``"f1"`` or ``"exact_match"``.
    Returns:
        ``base``, the tuned ``mean`` and sample ``std`` over seeds (``nan`` for one seed), ``gain = mean - base``,
        ``min_gain`` (the worst seed's), and ``gain_in_std`` (``gain / std``: how many seed standard deviations
        the gain spans; ``inf`` if every seed scored the same).
    """
    values = [scores[metric] for scores in tuned.values()]
    if not values:
        raise ValueError("no tuned scores: train at least one adapter.")
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    gain = mean - base[metric]
    return {"metric": metric, "seeds": sorted(tuned), "base": base[metric], "mean": mean, "std": std, "gain": gain,
            "min_gain": min(values) - base[metric],
            "gain_in_std": gain / std if std > 0 else (math.copysign(math.inf, gain) if std == 0 else math.nan)}


@torch.no_grad()
def answer_perplexity(model: torch.nn.Module, features: Sequence[Mapping[str, list[int]]],
                      batch_size: int = 16) -> float:
    """exp(mean negative log-likelihood per answer token) over tokenized features (answer tokens only)."""
    device = next(model.parameters()).device
    collator = DataCollatorWithFlattening()
    nll, count = 0.0, 0
    was_training = model.training
    model.eval()
    for start in range(0, len(features), batch_size):
        batch = {k: v.to(device) for k, v in collator(list(features[start:start + batch_size])).items()}
        labels = batch.pop("labels")
        keep = graded_positions(labels)  # the LM head runs only where the next token is an answer token
        logits = model(**batch, use_cache=False, logits_to_keep=keep).logits.float()  # packed: no KV cache
        targets = labels[:, keep + 1]
        logp = torch.log_softmax(logits, dim=-1)
        mask = targets != IGNORE_INDEX
        picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        nll -= picked[mask].sum().item()
        count += int(mask.sum())
    model.train(was_training)
    return math.exp(nll / count)


@torch.no_grad()
def timed_generation(model: torch.nn.Module, tokenizer: Any, rows: Sequence[Mapping[str, Any]],
                     **kwargs: Any) -> dict[str, float]:
    """Seconds and peak memory of :func:`generate_answers` (peak: GPU tensors, or process RSS on CPU)."""
    from utils.memory import track_peak

    with track_peak() as peak:
        generate_answers(model, tokenizer, rows, progress=False, **kwargs)
    return {"seconds": peak.seconds, "peak_gib": peak.gib, "questions_per_s": len(rows) / peak.seconds}


def merge_adapter(base_path: str | Path, adapter_path: str | Path, dtype: torch.dtype) -> torch.nn.Module:
    """Load the base unquantized in ``dtype`` (16-bit on a GPU), apply the adapter and merge it in.

    The result is a plain transformers model (no peft, no bitsandbytes) with W + (alpha/r) B A folded
    into each targeted weight: no adapter overhead at inference, and it can be quantized or exported.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from utils.models import load_model

    base = load_model(str(base_path), AutoModelForCausalLM, dtype=dtype)
    return PeftModel.from_pretrained(base, str(adapter_path)).merge_and_unload().eval()


def load_tuned(base_path: str | Path, adapter_path: str | Path, quantization: Any = None,
               dtype: torch.dtype | None = None) -> torch.nn.Module:
    """Base model (4-bit if ``quantization`` is given) with the saved LoRA adapter attached, in eval mode."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from utils.models import load_model

    base = load_model(str(base_path), AutoModelForCausalLM, quantization, dtype=dtype)
    return PeftModel.from_pretrained(base, str(adapter_path)).eval()


@torch.no_grad()
def merge_check(tuned: torch.nn.Module, base_path: str | Path, adapter_path: str | Path,
                batch: Mapping[str, torch.Tensor], dtype: torch.dtype) -> tuple[torch.nn.Module, dict[str, float]]:
    """Merge the adapter into a ``dtype`` copy of the base and compare logits on ``batch``.

    Three models see the same batch: ``tuned`` (the 4-bit base + adapter, as trained), the unquantized
    ``dtype`` base with the adapter unmerged, and that same copy with the adapter merged in (``merge_and_unload``, as in :func:`merge_adapter`).
    Merging alone must change nothing but rounding; the 4-bit vs 16-bit gap is quantization.

    Returns:
        ``(merged model, report)``; the report's differences are shares of the unmerged model's largest
        |logit|, plus the share of positions whose top-1 token agrees.
    """
    device = next(tuned.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    logits_4bit = tuned(**batch, use_cache=False).logits.float()
    unmerged = load_tuned(base_path, adapter_path, None, dtype=dtype)
    logits_unmerged = unmerged(**batch, use_cache=False).logits.float()
    merged = unmerged.merge_and_unload().eval()  # the same copy, merged in place (what merge_adapter does): one load
    logits_merged = merged(**batch, use_cache=False).logits.float()
    scale = logits_unmerged.abs().max().item()
    return merged, {
        "dtype": str(dtype).removeprefix("torch."),
        "max |merged - unmerged| / max|logit|": (logits_merged - logits_unmerged).abs().max().item() / scale,
        "top-1 agreement": (logits_merged.argmax(-1) == logits_unmerged.argmax(-1)).float().mean().item(),
        "max |merged 16-bit - 4-bit + adapter| / max|logit|": (logits_merged - logits_4bit).abs().max().item() / scale,
    }


def general_text_perplexity(model: torch.nn.Module, tokenizer: Any, text: str, max_length: int) -> dict[str, float]:
    """What fine-tuning cost outside its task: perplexity of ``text`` (plain prose, not QA) with the adapter
    and without it (peft's ``disable_adapter``), in sliding windows of ``max_length`` tokens, stride half that
    (:func:`utils.evaluation.quantized.perplexity`).

    Returns:
        ``{"base", "tuned", "change"}``; ``change = tuned / base - 1`` (> 0: the adapter made the text harder).
    """
    from utils.evaluation.quantized import perplexity

    window = {"max_length": max_length, "stride": max(1, max_length // 2)}
    tuned = perplexity(model, tokenizer, text, **window)
    with model.disable_adapter():
        base = perplexity(model, tokenizer, text, **window)
    return {"base": base, "tuned": tuned, "change": tuned / base - 1}
