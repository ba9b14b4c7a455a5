"""QLoRA training of a causal LM on QA with transformers' ``Trainer``: arguments, collators, loss, saving.

Training packs examples instead of padding each one (:func:`batching`): with ``row_length > 0`` into rows of exactly
that many tokens made in advance (:func:`pack_rows`), with ``row_length == 0`` each pass's examples laid end to end
in one row (``DataCollatorWithFlattening``) and rounded up to a multiple of ``pack_multiple`` tokens. Either way
``position_ids`` restart at 0 for every example, and the attention mask built from them keeps each example from
attending to its neighbour (checked in tests/test_qa_train.py against padded batches); the only tokens that carry
no example are a row's filler or rounding, which :func:`token_budget` counts. :class:`PaddedCollator` is the naive
alternative (pad every example to a fixed length), kept for the speed benchmark's baseline. With
``answer_logits_only`` the language-model head runs only at the positions whose next token is graded (the answer).
"""

from __future__ import annotations

import math
import shutil
import tempfile
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

from utils import progress
from utils.bnb_cpu import keep_4bit_trainable
from utils.errors import InputError, input_error
from utils.models.loading import checkpointing_arguments, mixed_precision
from utils.qa.config import PARAMS_FILE, QAConfig, read_params, save_params, setting_error
from utils.qa.data import IGNORE_INDEX


def training_arguments(output_dir: str | Path, config: QAConfig | None = None, *, disable_tqdm: bool = False,
                       weight_decay: float = 0.0, **settings: Any) -> TrainingArguments:
    """The QLoRA recipe as ``TrainingArguments``, from a :class:`~utils.qa.config.QAConfig`.

    Args:
        output_dir: where the Trainer writes checkpoints.
        config: the settings (default ``QAConfig()``, the full profile's); ``settings`` replace single
            fields, e.g. ``max_steps=3`` (unknown names and bad values raise ``ConfigError``).
        disable_tqdm, weight_decay: Trainer options that are not QA settings.
    """
    c = (config or QAConfig()).replace(**settings)
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=c.max_steps, per_device_train_batch_size=c.batch_size,
        gradient_accumulation_steps=c.grad_accum, learning_rate=c.learning_rate, lr_scheduler_type=c.lr_scheduler,
        warmup_steps=round(c.warmup_ratio * c.max_steps), max_grad_norm=c.max_grad_norm, optim=c.optimizer,
        weight_decay=weight_decay, **checkpointing_arguments(c.gradient_checkpointing),
        logging_steps=c.logging_steps, save_steps=c.save_steps, save_total_limit=2, seed=c.seed, data_seed=c.seed,
        report_to="none", remove_unused_columns=False, disable_tqdm=disable_tqdm,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, **mixed_precision(c.precision),
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
                    "compute (T4), call utils.qa.precision.fp16_guard(model, batch) before training (it switches "
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
        """Raises InputError unless ``max_length`` is None or a positive integer."""
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0):
            raise input_error("PaddedCollator max_length", f"must be a positive integer or None, got {max_length!r}",
                              "pass the max_length the examples were encoded with, or None (pad to the longest)")
        self.pad_token_id, self.max_length = pad_token_id, max_length

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        width = self.max_length or longest
        if longest > width:
            raise input_error("PaddedCollator", f"an example has {longest} tokens, more than max_length={width}",
                              "encode with a max_length no larger than the collator's")
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
        """Raises InputError unless ``multiple`` is a positive integer."""
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple <= 0:
            raise input_error("pack_multiple", f"multiple must be a positive integer, got {multiple!r}",
                              "pass e.g. 256 (QAConfig.pack_multiple), or 1 for no rounding")
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


def packing_collator(pad_token_id: int, multiple: int) -> RoundUpPacked:
    """The training collator: examples packed into one row (``DataCollatorWithFlattening``), the
    row rounded up to a multiple of ``multiple`` tokens (:class:`RoundUpPacked`; the course's value is
    ``QAConfig.pack_multiple``)."""
    return RoundUpPacked(DataCollatorWithFlattening(), multiple, pad_token_id)


def pack_rows(features: Sequence[Mapping[str, list[int]]], row_length: int,
              pad_token_id: int) -> list[dict[str, list[int]]]:
    """Pack examples in advance into rows of exactly ``row_length`` tokens (best-fit decreasing), for a fixed
    token budget per pass: ``batch_size`` rows of ``row_length`` tokens, so every pass has the same shape
    (``(batch_size, row_length)``) and no example attends to another (``position_ids`` restart at 0 for each).

    Each row is ``{"input_ids", "labels", "position_ids", "real_tokens"}`` (lists of ``row_length``; the end
    of a row is filled with ``pad_token_id``, labels -100 and positions from 0: a separate "example" that attends
    only to itself and carries no loss). Rows come out in a deterministic order (the longest examples'
    rows first); the Trainer shuffles them.

    Raises:
        InputError: ``row_length`` is not a positive integer, or an example is longer than it.
    """
    if isinstance(row_length, bool) or not isinstance(row_length, int) or row_length <= 0:
        raise input_error("row_length", f"must be a positive integer, got {row_length!r}",
                          "pass e.g. 1024 (tokens per packed row)")
    longest = max((len(f["input_ids"]) for f in features), default=0)
    if longest > row_length:
        raise input_error("row_length", f"an example has {longest} tokens, more than row_length={row_length}",
                          "use a row_length at least the max_length the examples were encoded with")
    rows: list[list[Mapping[str, list[int]]]] = []
    free: list[int] = []
    for f in sorted(features, key=lambda f: -len(f["input_ids"])):
        n = len(f["input_ids"])
        fits = [i for i, space in enumerate(free) if space >= n]
        if fits:
            best = min(fits, key=free.__getitem__)  # the fullest row it fits in
            rows[best].append(f)
            free[best] -= n
        else:
            rows.append([f])
            free.append(row_length - n)
    packed = []
    for members, space in zip(rows, free, strict=True):
        ids = [t for f in members for t in f["input_ids"]] + [pad_token_id] * space
        labels = [t for f in members for t in f["labels"]] + [IGNORE_INDEX] * space
        positions = [p for f in members for p in range(len(f["input_ids"]))] + list(range(space))
        packed.append({"input_ids": ids, "labels": labels, "position_ids": positions,
                       "real_tokens": row_length - space})
    return packed


class RowsCollator:
    """Stacks rows made by :func:`pack_rows` into ``input_ids``, ``labels`` and ``position_ids`` (int64,
    shape ``(rows, row_length)``); no attention mask: the restarting ``position_ids`` keep examples apart."""

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        return {key: torch.tensor([f[key] for f in features], dtype=torch.long)
                for key in ("input_ids", "labels", "position_ids")}


def batching(config: QAConfig, features: Sequence[Mapping[str, list[int]]],
             pad_token_id: int) -> tuple[list[dict[str, list[int]]], Any, bool]:
    """How ``config`` batches: ``(train items, collator, graded_head)`` for :func:`make_trainer`.

    ``row_length > 0``: the examples packed in advance into rows of that many tokens (:func:`pack_rows`),
    ``batch_size`` rows per pass (:class:`RowsCollator`), the LM head at each row's graded positions
    (``graded_head``, if ``answer_logits_only``). ``row_length == 0``: each pass's ``batch_size`` examples laid
    end to end in one row, rounded up to ``pack_multiple`` tokens (:func:`packing_collator`).
    """
    if config.row_length:
        return pack_rows(features, config.row_length, pad_token_id), RowsCollator(), config.answer_logits_only
    return list(features), packing_collator(pad_token_id, config.pack_multiple), False


def token_budget(config: QAConfig, features: Sequence[Mapping[str, list[int]]],
                 pad_token_id: int) -> dict[str, int]:
    """Tokens processed in one pass through ``features`` (in their order), by ``config``'s batching and by padding.

    Returns ``{"examples", "real"`` (the examples' own tokens), ``"this run"`` (what :func:`batching` gives the model:
    rows of ``row_length`` tokens, filler included, or each pass's ``batch_size`` examples in one row rounded up to a
    multiple of ``pack_multiple``; packing with nothing added would process the real tokens alone),
    ``"padded to the longest"`` (each pass of ``batch_size`` examples padded to its longest example, as a padding
    collator does) and ``"padded to max_length"`` (every example padded to ``max_length``)``}``. The Trainer draws
    the examples in a shuffled order, so its passes group them differently; the totals are per pass through the data
    in the given order.
    """
    lengths = [len(f["input_ids"]) for f in features]
    passes = [lengths[i:i + config.batch_size] for i in range(0, len(lengths), config.batch_size)]
    if config.row_length:
        this_run = len(pack_rows(features, config.row_length, pad_token_id)) * config.row_length
    else:
        this_run = sum(-(-sum(p) // config.pack_multiple) * config.pack_multiple for p in passes)
    return {"examples": len(lengths), "real": sum(lengths), "this run": this_run,
            "padded to the longest": sum(len(p) * max(p) for p in passes),
            "padded to max_length": len(lengths) * config.max_length}


def apply_fused_kernels(model: torch.nn.Module, config: QAConfig) -> None:
    """The speed settings of :mod:`utils.models.kernels`: with ``config.fused_kernels`` the one-kernel tanh-GELU,
    LoRA's addition in one pass over the 4-bit layers' output and, under 16-bit autocast, 16-bit norm outputs (the
    same function each, to rounding); with ``config.residual_16bit`` and bf16 (:func:`residual_16bit`) a 16-bit
    residual stream, embeddings and head. Under float32 (the CPU) the GELU swap and the LoRA addition act."""
    from utils.models.kernels import (
        embeddings_and_head_in,
        lean_lora_4bit,
        norm_outputs_in,
        residual_in,
        use_fused_gelu,
    )

    flags = mixed_precision(config.precision)
    dtype = torch.bfloat16 if flags["bf16"] else torch.float16 if flags["fp16"] else torch.float32
    if config.fused_kernels:
        use_fused_gelu(model)
        lean_lora_4bit(model)
        norm_outputs_in(model, dtype)
    if residual_16bit(config):
        residual_in(model, dtype)
        embeddings_and_head_in(model, dtype)


def residual_16bit(config: QAConfig) -> bool:
    """Whether ``config.residual_16bit`` acts here: under bf16 only. bf16 has float32's range; fp16 (a T4) tops out
    at 65504, which Phi-2's residual stream can exceed (its attention already overflows in fp16: the fp16 guard),
    so on a T4 the residual stream stays float32 and only the norm outputs are 16-bit."""
    return config.residual_16bit and mixed_precision(config.precision)["bf16"]


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


class GradedHeadLoss:
    """The LM head at graded positions only, for batches of several rows (:func:`pack_rows`).

    ``logits_to_keep`` (:class:`AnswerLogitsCollator`) selects the same positions in every row, so with many
    rows it would keep the union of their answer positions. Instead, a forward hook keeps the decoder's last
    hidden state (``(rows, row_length, hidden)``), the model's own head runs on one position per row
    (:class:`GradedHeadCollator` asks for ``logits_to_keep=1``), and this loss runs the head on exactly the
    graded positions of every row (``(k, hidden)`` -> ``(k, vocab)``). Summed cross-entropy over those
    positions divided by ``num_items_in_batch`` (or this batch's count): the model's own loss (tested).
    A ``compute_loss_func`` for ``Trainer``; the forward still goes through the (possibly wrapped) model.
    """

    def __init__(self, model: torch.nn.Module):
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.head = inner.get_output_embeddings()
        self.hidden: torch.Tensor | None = None
        self.handle = inner.get_decoder().register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def __call__(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        hidden, self.hidden = self.hidden, None
        if hidden is None:
            raise RuntimeError("GradedHeadLoss: no hidden state was kept; was the model's decoder run?")
        graded = labels[:, 1:] != IGNORE_INDEX
        # the Trainer calls the loss outside the forward's autocast: run the head in its weights' dtype
        logits = self.head(hidden[:, :-1][graded].to(self.head.weight.dtype))
        total = F.cross_entropy(logits.float(), labels[:, 1:][graded], reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else graded.sum()
        return total / torch.as_tensor(count, device=total.device).clamp(min=1)


class GradedHeadCollator:
    """Wraps a collator and asks the model for the logits of one position per row (``logits_to_keep=1``): the
    loss is :class:`GradedHeadLoss`'s, from the hidden states."""

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, Any]:
        return {**self.collator(features), "logits_to_keep": 1}


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
        self.real.append(sum(f.get("real_tokens", len(f["input_ids"])) for f in features))
        self.processed.append(int(batch["input_ids"].numel()))
        self.graded.append(int(graded_positions(batch["labels"]).numel()))
        return batch

    def largest(self) -> dict[str, int]:
        """The micro-batch with the most processed tokens: ``{"tokens", "real", "graded"}``."""
        if not self.processed:
            raise ValueError("no batch has been collated yet: train first.")
        i = max(range(len(self.processed)), key=self.processed.__getitem__)
        return {"tokens": self.processed[i], "real": self.real[i], "graded": self.graded[i]}


def make_trainer(model: torch.nn.Module, args: TrainingArguments, train_features: Sequence[Mapping],
                 callbacks: Sequence[TrainerCallback] = (), collator: Any = None,
                 answer_logits_only: bool = False, progress_bar: bool = True, graded_head: bool = False) -> Trainer:
    """A ``Trainer`` with the guard, 4-bit layers kept trainable on every CPU, KV cache off (:func:`disable_kv_cache`) and a collator: by default
    the padding-free ``DataCollatorWithFlattening`` (or e.g. :class:`PaddedCollator`); with
    ``answer_logits_only`` the LM head runs on answer positions only (:class:`AnswerLogitsCollator`).
    Output: one progress bar over the steps (none if not ``progress_bar``), no table, no printed logs
    (:func:`utils.progress.quiet`); the losses are in ``trainer.state.log_history``.

    Raises:
        InputError: ``train_features`` is empty.
    """
    train_features = list(train_features)
    if not train_features:
        raise input_error("train_features", "there are no examples to train on",
                          "check the dataset and that max_length lets examples fit (utils.qa.data.encode_rows)")
    disable_kv_cache(model)
    keep_4bit_trainable(model)  # undo any CPU inference repacking an earlier eval pass did (utils.bnb_cpu)
    collator = collator if collator is not None else DataCollatorWithFlattening()
    loss_func = None
    if graded_head:  # several rows per pass (pack_rows): the head at each row's graded positions
        collator, loss_func = GradedHeadCollator(collator), GradedHeadLoss(model)
    elif answer_logits_only:
        collator, loss_func = AnswerLogitsCollator(collator), answer_logits_loss
    trainer = Trainer(model=model, args=args, train_dataset=train_features, data_collator=collator,
                      compute_loss_func=loss_func,
                      callbacks=[NonFiniteGuard(), *callbacks])
    return progress.quiet(trainer, bar=progress_bar)


def loss_history(trainer: Trainer) -> tuple[list[int], list[float]]:
    """(steps, training losses) from the trainer's log history."""
    points = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return [s for s, _ in points], [loss for _, loss in points]


def save_adapter(model: torch.nn.Module, tokenizer: Any, folder: str | Path, config: QAConfig,
                 run: Mapping[str, Any]) -> Path:
    """Save the LoRA adapter (weights + ``adapter_config.json``), the tokenizer and ``training_params.json``
    (the :class:`~utils.qa.config.QAConfig` it was trained with and ``run``: what the run measured)."""
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_params(folder, config, run)
    return folder


class OutputExistsError(InputError, FileExistsError):
    """An output folder holds results that a run would overwrite (or checkpoints it cannot continue from). An
    :class:`~utils.errors.InputError` and a ``FileExistsError``."""


CHECKPOINTS = "checkpoints"  # train_qa's Trainer checkpoints, under its output folder
RESULT_FILES = ("adapter_config.json", "adapter_model.safetensors", PARAMS_FILE)  # what save_adapter writes
RESUMABLE_CHANGES = ("max_steps", "logging_steps", "save_steps")  # settings a resumed run may change


def last_checkpoint(folder: str | Path) -> Path | None:
    """The newest ``checkpoint-<step>`` folder (with its ``trainer_state.json``) in ``folder``, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    steps = [(int(p.name.split("-", 1)[1]), p) for p in folder.glob("checkpoint-*")
             if p.name.split("-", 1)[1].isdigit() and (p / "trainer_state.json").is_file()]
    return max(steps)[1] if steps else None


def _check_writable(out: Path) -> None:
    """Create ``out`` (and its parents) and write a probe file there, or raise InputError saying why not."""
    if out.exists() and not out.is_dir():
        raise input_error(f"--output-dir {out}", "it is a file, not a folder",
                          "choose a folder (it is created if missing), e.g. outputs/phi-2-qa-adapter")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise input_error(f"--output-dir {out}", f"it cannot be created or written to ({err.strerror or err})",
                          "choose a folder you can write to (check that no part of the path is a file, and its "
                          "permissions)") from None


def check_output_dir(output_dir: str | Path, config: QAConfig, *, resume: bool = False, overwrite: bool = False,
                     checkpoints: str | Path | None = None) -> Path | None:
    """Check ``output_dir`` for a run of ``config`` before anything is loaded (and create it): nothing a run wrote
    there before is overwritten unless asked, and a resumed run continues the same settings.

    Args:
        checkpoints: the Trainer's checkpoint folder (default ``output_dir/checkpoints``, :func:`train_qa`'s; notebook
            04 keeps them apart, in ``CHECKPOINT_DIR``).

    Returns:
        the checkpoint to resume from (with ``resume``), else None.

    Raises:
        InputError: ``resume`` and ``overwrite`` both set; ``output_dir`` (or ``checkpoints``) is a file, or cannot
            be created or written to; with ``resume``, no checkpoint in ``checkpoints`` or one written with other
            settings (only max_steps, logging_steps and save_steps may change).
        OutputExistsError: without ``resume`` or ``overwrite``, ``output_dir`` holds an adapter or a
            training_params.json, or ``checkpoints`` a checkpoint, of an earlier run (an InputError and a
            FileExistsError).
    """
    out = Path(output_dir).expanduser()
    checkpoints = out / CHECKPOINTS if checkpoints is None else Path(checkpoints).expanduser()
    if not isinstance(resume, bool) or not isinstance(overwrite, bool):
        raise input_error("resume / overwrite", f"must be True or False, got {resume!r} and {overwrite!r}",
                          "pass booleans (--resume, --overwrite on the command line)")
    if resume and overwrite:
        raise input_error("--resume and --overwrite", "both were given: --resume continues the run in "
                          f"{out}, --overwrite starts it again", "pass one of them")
    _check_writable(out)
    _check_writable(checkpoints)
    checkpoint = last_checkpoint(checkpoints)
    if resume:
        if checkpoint is None:
            raise input_error("--resume", f"there is no checkpoint to resume from in {checkpoints}",
                              f"drop --resume to start a new run there (checkpoints are written every save_steps="
                              f"{config.save_steps} steps), or point --output-dir at the run to continue")
        for folder in (checkpoints, out):  # the settings the checkpoints were written with, else the adapter's
            if (folder / PARAMS_FILE).is_file():
                stored, _ = read_params(folder)
                differ = {k: [getattr(stored, k), getattr(config, k)] for k in QAConfig.field_names()
                          if k not in RESUMABLE_CHANGES and getattr(stored, k) != getattr(config, k)}
                if differ:
                    raise input_error("--resume", f"the checkpoints in {checkpoints} were written with other "
                                      f"settings (stored, given: {differ}); only {list(RESUMABLE_CHANGES)} may change "
                                      "when a run is resumed", f"resume with the stored settings "
                                      f"({folder / PARAMS_FILE}), or start a new run with --overwrite or another "
                                      "--output-dir")
                break
        return checkpoint
    earlier = [name for name in RESULT_FILES if (out / name).exists()]
    if checkpoint is not None:
        earlier.append(str(checkpoint.relative_to(out)) if checkpoint.is_relative_to(out) else str(checkpoint))
    if earlier and not overwrite:
        raise OutputExistsError(*input_error(
            f"--output-dir {out}", f"it holds the results of an earlier run ({', '.join(earlier)}), which this run "
            "would overwrite", "pass --overwrite (overwrite=True) to replace them, --resume (resume=True) to continue "
            "that run from its last checkpoint, or choose another --output-dir").args)
    return None


def start_run(checkpoints: str | Path, config: QAConfig, *, overwrite: bool = False, **run_info: Any) -> None:
    """What a run does once :func:`check_output_dir` let it start, in the main process only: with ``overwrite``
    delete the earlier run's checkpoints (else the Trainer's rotation, which keeps the highest step numbers, could
    keep the old run's and delete the new run's), then record ``config`` next to the checkpoints (the settings a
    later ``resume`` is compared with)."""
    checkpoints = Path(checkpoints)
    if overwrite and checkpoints.is_dir():
        shutil.rmtree(checkpoints)
    save_params(checkpoints, config, {**run_info, "state": "checkpoints of this run"})


def check_max_length(config: QAConfig, tokenizer: Any, fmt: Any) -> None:
    """Check that ``config.max_length`` can hold an example at all: the prompt format's fixed text (a question and
    context of one token each), one answer token and the end-of-sequence token.

    Raises:
        ConfigError: naming max_length, the tokens the format needs and the fix.
    """
    context = "x" if config.text_format == "squad" else ""
    head, piece, tail = fmt.parts("x", context)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    fixed = count(head) + count(tail) + (1 if piece else 0)
    minimum = fixed + count(fmt.answer_prefix + "x") + 1
    if config.max_length < minimum:
        raise setting_error("max_length", f"max_length={config.max_length} tokens cannot hold any example: the "
                            f"{fmt.style} prompt of {config.model_id} with a one-token question"
                            f"{' and context' if piece else ''} takes {fixed} tokens, and an answer token and the end "
                            f"token make {minimum}", "raise max_length well above that (the course uses 192 for "
                            "SmolLM2 and 384 for Phi-2); a longer prompt loses context, never the answer")


def training_rows(config: QAConfig) -> tuple[list[dict[str, Any]], QAConfig]:
    """The rows ``config`` trains on (its seeded ``train_size`` subset), and the config, whose ``dataset`` names the
    offline stand-in if the Hub dataset could not be reached (:func:`utils.qa.data.load_or_stand_in`), so that
    ``training_params.json`` records what was trained on."""
    from utils.qa import data

    rows, used = data.load_or_stand_in(config.dataset, config.train_split,
                                       config.columns if config.text_format == "squad" else None, config.text_format,
                                       limit=config.train_size or None, seed=config.seed)
    if used == config.dataset:
        return rows, config
    return rows, config.replace(dataset=used, text_format="squad", columns={f: f for f in data.REQUIRED_FIELDS})


def train_qa(config: QAConfig, output_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
             quiet: bool = False, callbacks: Sequence[TrainerCallback] = (), **run_info: Any) -> dict[str, Any]:
    """Notebook 04's recipe end to end, as ``python -m utils.cli.finetune`` runs it: load the data and the base
    model in 4-bit, add LoRA, train, and save the adapter with ``training_params.json`` in ``output_dir``.

    Nothing is lost: a folder that holds an earlier run's adapter or checkpoints is refused unless ``overwrite``
    (which deletes its old checkpoints first; the old adapter stays until the new one is saved) or ``resume``
    (which continues from the newest checkpoint, written every ``save_steps`` with the optimizer, scheduler and
    random states, so an interrupted run ends as it would have uninterrupted; tested).

    Args:
        config: the settings (:meth:`QAConfig.resolve`); its ``seed`` seeds everything.
        output_dir: the adapter's folder; checkpoints go to ``output_dir/checkpoints``, with the settings
            (``training_params.json``) they are written with.
        resume: continue from the newest checkpoint there (same settings; max_steps, logging_steps and
            save_steps may change).
        overwrite: replace an earlier run's results in ``output_dir``.
        quiet: no progress bar and no printed logs (the losses are in the returned record).
        callbacks: extra ``TrainerCallback``\\ s.
        run_info: recorded in the run's record (e.g. ``profile``, ``preset``).
    Returns:
        The run's record (``training_params.json``'s ``"run"``): steps, seconds, losses, example counts, ...

    Raises:
        InputError: all before the model is loaded: ``config`` is not a valid QAConfig
            (:class:`~utils.qa.config.ConfigError`: :meth:`~QAConfig.validate`, :meth:`~QAConfig.check_paths`,
            :func:`check_max_length`); ``output_dir`` cannot be used (:func:`check_output_dir`; an earlier run's
            results there: :class:`OutputExistsError`).
    """
    from transformers import AutoModelForCausalLM, set_seed

    from utils.models import bnb_4bit_config, load_model, load_tokenizer
    from utils.models.adapters import add_lora
    from utils.qa import data

    if not isinstance(config, QAConfig):
        raise input_error("config", f"must be a utils.qa.config.QAConfig, got {type(config).__name__}",
                          "build it with QAConfig.resolve(profile, preset, **settings)")
    config.validate().check_paths()
    out = Path(output_dir).expanduser()
    checkpoint = check_output_dir(out, config, resume=resume, overwrite=overwrite)
    set_seed(config.seed)
    rows, config = training_rows(config)  # a Hub dataset that cannot be reached: its offline stand-in, recorded
    tokenizer, architecture = load_tokenizer(config.model_id)
    fmt = data.PromptFormat(architecture.prompt_style, tokenizer)
    check_max_length(config, tokenizer, fmt)
    features, counts = data.encode_rows(rows, tokenizer, config.max_length, source=config.dataset, fmt=fmt)
    model = load_model(config.model_id, AutoModelForCausalLM, bnb_4bit_config())
    model = add_lora(model, config.lora_rank, config.lora_alpha, list(config.target_modules),
                     dropout=config.lora_dropout, task_type="CAUSAL_LM",
                     gradient_checkpointing=config.gradient_checkpointing)
    apply_fused_kernels(model, config)
    targs = training_arguments(out / CHECKPOINTS, config, disable_tqdm=quiet)
    items, collator, graded_head = batching(config, features, tokenizer.pad_token_id)
    trainer = make_trainer(model, targs, items, callbacks=callbacks, collator=collator,
                           answer_logits_only=config.answer_logits_only, progress_bar=not quiet,
                           graded_head=graded_head)
    if trainer.is_world_process_zero():  # every process has checked the folder by now (they start together)
        start_run(out / CHECKPOINTS, config, overwrite=overwrite, **run_info)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    run = {**run_info, "world_size": trainer.args.world_size, "steps": trainer.state.global_step,
           "seconds": result.metrics["train_runtime"], "losses": loss_history(trainer)[1], "examples": counts,
           "device": str(next(model.parameters()).device)}
    if trainer.is_world_process_zero():
        save_adapter(model, tokenizer, out, config, run)
    return run


def ensure_trained(config: QAConfig, folder: str | Path, *, set_aside: bool = False,
                   **train_kwargs: Any) -> tuple[dict[str, Any], bool]:
    """The adapter trained with exactly ``config`` in ``folder``: reused if it is there, else trained
    (:func:`train_qa`; continued from its checkpoints if an earlier call with the same settings was interrupted).
    Returns ``(run, reused)``.

    Args:
        set_aside: when ``folder`` holds another training (other settings, or written by an older version of the
            course), rename it to ``<name>.old-<time>`` (:func:`utils.paths.move_aside`; recorded in the run as
            ``"set_aside"``) and train anew, instead of raising.

    Raises:
        OutputExistsError: ``folder`` holds an adapter (or checkpoints) of other settings and not ``set_aside``; it
            is never overwritten (the message names the settings that differ). An InputError and a FileExistsError.
        ConfigError: its settings file was written by an older version of the course, and not ``set_aside``.
    """
    folder = Path(folder)
    for where in (folder, folder / CHECKPOINTS):
        if not (where / PARAMS_FILE).is_file():
            continue
        try:
            stored, run = read_params(where)
        except InputError:  # written by an older version of the course: another training
            if not set_aside:
                raise
            stored, run = None, {}
        if stored is not None and stored == config and where == folder:
            return run, True
        if stored is not None and stored == config:  # an interrupted run of these settings: continue it
            train_kwargs.setdefault("resume", last_checkpoint(where) is not None)
            break
        if set_aside:
            from utils.paths import move_aside

            kept = move_aside(folder)
            run = train_qa(config, folder, **train_kwargs)
            return run | {"set_aside": str(kept)}, False
        differ = {k: [getattr(stored, k), getattr(config, k)] for k in QAConfig.field_names()
                  if getattr(stored, k) != getattr(config, k)}
        what = "an adapter" if where == folder else "checkpoints of an unfinished run"
        raise OutputExistsError(*input_error(
            str(folder), f"it holds {what} trained with other settings (stored, wanted: {differ}); it is left as it "
            "is", "delete it, or choose another folder").args)
    return train_qa(config, folder, **train_kwargs), False


def read_training_params(folder: str | Path) -> tuple[QAConfig, dict[str, Any]]:
    """``(config, run)`` that notebook 04 or ``python -m utils.cli.finetune`` saved next to the adapter; a clear
    error if there is no adapter (see :func:`utils.qa.config.read_params`)."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"No trained adapter in {folder}: run notebook 04 (04_phi2_qlora_training.ipynb) or "
            "`python -m utils.cli.finetune --output-dir ...` first, with the same QLORA_OUTPUT_DIR, or set "
            "notebook 05's ADAPTER (the demo's --adapter) to the folder they wrote.")
    return read_params(folder)


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
