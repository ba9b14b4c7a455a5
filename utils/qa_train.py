"""QLoRA training and evaluation of a causal LM on QA: Trainer set-up, fp16 guard, generation, merge.

Training uses transformers' ``Trainer`` with ``DataCollatorWithFlattening``: each batch is the
examples laid end to end in one row, with ``position_ids`` restarting at 0 for every example, so
no compute is spent on padding; Phi's attention mask is built from those position ids so that no
example attends to its neighbour (checked in tests/test_qa_train.py against padded batches).
:class:`PaddedCollator` is the naive alternative (pad every example to a fixed length), kept for
the speed benchmark's baseline. With ``answer_logits_only=True`` the language-model head runs only
at the positions whose next token is graded (the answer), not over the whole prompt.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (
    DataCollatorWithFlattening,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from utils.bnb_cpu import keep_4bit_trainable
from utils.memory import saved_tensor_bytes
from utils.qa_data import IGNORE_INDEX, encode_prompt

FP32_ATTENTION = "sdpa_fp32"  # name under which the fp16 remedy registers its attention function
TRAINING_PARAMS_FILE = "training_params.json"


# ------------------------------------------------------------------------------------ set-up
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def mixed_precision(precision: str = "auto") -> dict[str, bool]:
    """Trainer flags. ``auto``: bf16 on GPUs that have it (A100, H100, L4), fp16 on older ones (T4), fp32 on CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "auto":
        if not torch.cuda.is_available():
            precision = "fp32"
        else:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(output_dir: str | Path, *, max_steps: int, batch_size: int, grad_accum: int,
                       learning_rate: float, lr_scheduler: str = "cosine", warmup_ratio: float = 0.03,
                       max_grad_norm: float = 0.3, optimizer: str = "paged_adamw_8bit",
                       gradient_checkpointing: bool = True, logging_steps: int = 5, save_steps: int = 50,
                       seed: int = 0, weight_decay: float = 0.0, disable_tqdm: bool = False,
                       precision: str = "auto") -> TrainingArguments:
    """The QLoRA recipe as ``TrainingArguments`` (every argument is a notebook constant)."""
    if max_steps <= 0 or batch_size <= 0 or grad_accum <= 0:
        raise ValueError(f"max_steps, batch_size and grad_accum must be positive, got {max_steps}, "
                         f"{batch_size}, {grad_accum}.")
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum, learning_rate=learning_rate, lr_scheduler_type=lr_scheduler,
        warmup_steps=round(warmup_ratio * max_steps), max_grad_norm=max_grad_norm, optim=optimizer,
        weight_decay=weight_decay, gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
        logging_steps=logging_steps, save_steps=save_steps, save_total_limit=2, seed=seed, data_seed=seed,
        report_to="none", remove_unused_columns=False, disable_tqdm=disable_tqdm,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, **mixed_precision(precision),
        ddp_find_unused_parameters=False,  # data-parallel: every adapter gets a gradient every step
    )


class NonFiniteGuard(TrainerCallback):
    """Stop with a clear error if the training loss or gradient norm is NaN/inf in the first steps.

    Phi-2 in fp16 is known to overflow in attention; :func:`fp16_guard` applies the remedy before
    training, and this callback makes sure it worked rather than training on NaNs for an hour.
    """

    def __init__(self, first_steps: int = 20):
        self.first_steps = first_steps

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        for key in ("loss", "grad_norm"):
            value = logs.get(key)
            if value is not None and not math.isfinite(value) and state.global_step <= self.first_steps:
                raise FloatingPointError(
                    f"{key} = {value} at step {state.global_step}: the forward pass overflowed. With fp16 "
                    "compute (T4), call utils.qa_train.fp16_guard(model, batch) before training (it switches "
                    "attention to fp32), or lower the learning rate.")


def disable_kv_cache(model: torch.nn.Module) -> None:
    """Set ``use_cache=False`` on every config in ``model`` (also under peft).

    Needed for packed batches: transformers builds the per-example attention mask from
    ``position_ids`` only when no KV cache is passed, so with ``use_cache=True`` (Phi's default) the
    packed examples would silently attend to each other. Generation still uses its own cache setting.
    """
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "use_cache"):
            config.use_cache = False


class PaddedCollator:
    """Right-pad every example to ``max_length`` (or, if None, to the longest in the batch).

    The naive way to batch: returns ``input_ids`` and ``labels`` (int64, shape ``(batch, width)``,
    labels ``-100`` on padding) and ``attention_mask``. Every pad token costs as much compute as a
    real one; the speed benchmark uses it as its baseline.
    """

    def __init__(self, pad_token_id: int, max_length: int | None = None):
        if max_length is not None and max_length <= 0:
            raise ValueError(f"max_length must be positive or None, got {max_length}.")
        self.pad_token_id, self.max_length = pad_token_id, max_length

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        width = self.max_length or longest
        if longest > width:
            raise ValueError(f"an example has {longest} tokens, more than max_length={width}: encode with a "
                             "max_length no larger than the collator's.")
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class RoundUpPacked:
    """Wraps the packing collator and pads each packed row to a multiple of ``multiple`` tokens.

    The padding is appended as one extra "example" (pad tokens, ``position_ids`` from 0, labels -100):
    it attends only to itself and carries no loss. Its purpose is fewer distinct batch shapes, so
    that kernels which plan per shape (cuDNN attention) can reuse their plans.
    """

    def __init__(self, collator: Any, multiple: int, pad_token_id: int):
        if multiple <= 0:
            raise ValueError(f"multiple must be positive, got {multiple}.")
        self.collator, self.multiple, self.pad_token_id = collator, multiple, pad_token_id

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        batch = dict(self.collator(features))
        extra = -batch["input_ids"].shape[1] % self.multiple
        if extra:
            fill = {"input_ids": torch.full((1, extra), self.pad_token_id), "labels": torch.full((1, extra), IGNORE_INDEX),
                    "position_ids": torch.arange(extra).unsqueeze(0)}
            for key, value in fill.items():
                batch[key] = torch.cat([batch[key], value.to(batch[key].dtype)], dim=1)
        return batch


def packing_collator(pad_token_id: int, multiple: int = 256) -> RoundUpPacked:
    """The training collator: examples packed into one row (``DataCollatorWithFlattening``), the
    row rounded up to a multiple of ``multiple`` tokens (:class:`RoundUpPacked`)."""
    return RoundUpPacked(DataCollatorWithFlattening(), multiple, pad_token_id)


def graded_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions ``p`` (int64, shape ``(k,)``) whose next token ``p + 1`` is graded in any row of
    ``labels`` (int64, ``(batch, seq)``, ``-100`` where not graded): where the LM head must run."""
    return (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().flatten()


class AnswerLogitsCollator:
    """Wraps a collator and adds ``logits_to_keep`` (:func:`graded_positions`) to each batch.

    The model then computes logits only at those positions (``logits_to_keep`` is a standard argument
    of transformers' causal LMs): for QA, the answer is ~10% of the tokens, so the head's matrix
    product and the ``(tokens, vocab)`` logits (51,200 floats per token for Phi-2) shrink ~10x.
    Use with :func:`answer_logits_loss`.
    """

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        batch = dict(self.collator(features))
        batch["logits_to_keep"] = graded_positions(batch["labels"])
        return batch


def answer_logits_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    """Next-token cross-entropy from logits kept at :func:`graded_positions` (``outputs.logits``:
    ``(batch, k, vocab)``). Equal to the model's own loss: summed over graded tokens and divided by
    ``num_items_in_batch`` (the Trainer's count over all accumulated micro-batches) or, if None, by
    this batch's count. A ``compute_loss_func`` for ``Trainer``."""
    keep = graded_positions(labels)
    targets = labels[:, keep + 1]
    total = F.cross_entropy(outputs.logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                            reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


class TokenCounter:
    """Wraps a collator and records, per micro-batch, the real tokens, the tokens processed
    (padding included) and the graded positions (:func:`graded_positions`): the sizes that set a
    step's time and peak memory (see ``utils.memory.estimate``)."""

    def __init__(self, collator: Any):
        self.collator = collator
        self.real: list[int] = []
        self.processed: list[int] = []
        self.graded: list[int] = []

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        batch = self.collator(features)
        self.real.append(sum(len(f["input_ids"]) for f in features))
        self.processed.append(int(batch["input_ids"].numel()))
        self.graded.append(int(graded_positions(batch["labels"]).numel()))
        return batch

    def largest(self) -> dict[str, int]:
        """The micro-batch with the most processed tokens: ``{"tokens", "graded"}``."""
        if not self.processed:
            raise ValueError("no batch has been collated yet: train first.")
        i = max(range(len(self.processed)), key=self.processed.__getitem__)
        return {"tokens": self.processed[i], "graded": self.graded[i]}


def make_trainer(model: torch.nn.Module, args: TrainingArguments, train_features: Sequence[Mapping],
                 callbacks: Sequence[TrainerCallback] = (), collator: Any = None,
                 answer_logits_only: bool = False) -> Trainer:
    """A ``Trainer`` with the guard, 4-bit layers kept trainable on every CPU, KV cache off (:func:`disable_kv_cache`) and a collator: by default
    the padding-free ``DataCollatorWithFlattening`` (or e.g. :class:`PaddedCollator`); with
    ``answer_logits_only`` the LM head runs on answer positions only (:class:`AnswerLogitsCollator`)."""
    disable_kv_cache(model)
    keep_4bit_trainable(model)  # undo any CPU inference repacking an earlier eval pass did (utils.bnb_cpu)
    collator = collator if collator is not None else DataCollatorWithFlattening()
    if answer_logits_only:
        collator = AnswerLogitsCollator(collator)
    return Trainer(model=model, args=args, train_dataset=list(train_features), data_collator=collator,
                   compute_loss_func=answer_logits_loss if answer_logits_only else None,
                   callbacks=[NonFiniteGuard(), *callbacks])


def loss_history(trainer: Trainer) -> tuple[list[int], list[float]]:
    """(steps, training losses) from the trainer's log history."""
    points = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return [s for s, _ in points], [loss for _, loss in points]


def save_adapter(model: torch.nn.Module, tokenizer: Any, folder: str | Path, params: Mapping[str, Any]) -> Path:
    """Save the LoRA adapter (weights + ``adapter_config.json``), the tokenizer and the training parameters."""
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / TRAINING_PARAMS_FILE).write_text(json.dumps(dict(params), indent=1, sort_keys=True, default=str))
    return folder


def read_training_params(folder: str | Path) -> dict[str, Any]:
    """What notebook 04 saved next to the adapter; a clear error if 04 has not been run."""
    folder = Path(folder)
    path = folder / TRAINING_PARAMS_FILE
    if not (folder / "adapter_config.json").is_file() or not path.is_file():
        raise FileNotFoundError(
            f"no trained adapter in {folder}: run notebook 04_phi2_qlora_training first (it saves the adapter, "
            "its config and training_params.json there), with the same QLORA_OUTPUT_DIR.")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------- memory, measured
def saved_activation_bytes(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one forward on ``batch``.

    This is the activation memory that gradient checkpointing trades for recomputation; it is
    counted exactly through ``torch.autograd.graph.saved_tensors_hooks`` (works on CPU and GPU).
    """
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    was_training = model.training
    model.train()
    loss, total = saved_tensor_bytes(lambda: model(**batch, use_cache=False).loss, include_parameters=False)
    loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return total


def optimizer_state_bytes(model: torch.nn.Module, optimizer_cls: Any, **kwargs: Any) -> int:
    """Bytes of optimizer state after one step on the trainable parameters (e.g. AdamW vs 8-bit AdamW)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = optimizer_cls(params, **kwargs)
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    total = sum(t.numel() * t.element_size() for state in optimizer.state.values()
                for t in state.values() if torch.is_tensor(t))
    for p in params:
        p.grad = None
    return total


# ------------------------------------------------------------------------- fp16 overflow remedy
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


# ------------------------------------------------------------------------- generation and scores
@torch.no_grad()
def generate_answers(model: torch.nn.Module, tokenizer: Any, rows: Sequence[Mapping[str, Any]],
                     max_new_tokens: int = 24, max_length: int = 512, batch_size: int = 16,
                     progress: bool = True) -> list[str]:
    """Greedy answers (no sampling: reproducible), cut at the end-of-text token or the first newline.

    Prompts are left-padded into batches; their context is truncated like in training.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers: list[str] = []
    was_training = model.training
    model.eval()
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc="generating", disable=not progress):
        chunk = rows[start:start + batch_size]
        prompts = [encode_prompt(tokenizer, r["question"], r["context"], max_length - max_new_tokens,
                                 r["answers"]["answer_start"][0] if r.get("answers") else -1)[0] for r in chunk]
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
        logits = model(**batch, use_cache=False).logits.float()  # packed: no KV cache
        targets = labels[:, 1:]
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
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


def sample_batch(features: Sequence[Mapping[str, list[int]]], n: int = 4) -> dict[str, torch.Tensor]:
    """The first ``n`` features packed by the training collator (for memory measurements and guards)."""
    return dict(DataCollatorWithFlattening()(list(features[:n])))


def seconds_per_step(trainer: Trainer) -> float:
    """Mean wall-clock seconds per optimizer step of the last ``trainer.train()``."""
    metrics = [h for h in trainer.state.log_history if "train_runtime" in h]
    if not metrics:
        raise ValueError("the trainer has not finished a train() call yet.")
    return metrics[-1]["train_runtime"] / max(trainer.state.global_step, 1)


class StepTimer(TrainerCallback):
    """Wall-clock seconds of every optimizer step (synchronising the GPU), for step-time figures."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self._start)


def load_tuned(base_path: str | Path, adapter_path: str | Path, quantization: Any = None,
               dtype: torch.dtype | None = None) -> torch.nn.Module:
    """Base model (4-bit if ``quantization`` is given) with the saved LoRA adapter attached, in eval mode."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from utils.models import load_model

    base = load_model(str(base_path), AutoModelForCausalLM, quantization, dtype=dtype)
    return PeftModel.from_pretrained(base, str(adapter_path)).eval()
