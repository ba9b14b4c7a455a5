"""QLoRA training of a causal LM on QA with transformers' ``Trainer``: notebook 04's recipe and the command's.

:func:`training_arguments` turns a :class:`~utils.qa.config.QAConfig` into ``TrainingArguments``; :func:`make_trainer`
builds the ``Trainer`` (KV cache off for packed batches, :class:`NonFiniteGuard`, the answer-only loss of
:mod:`utils.qa.loss`) around the batches of :mod:`utils.qa.collate`; :func:`apply_fused_kernels` applies the speed
settings of :mod:`utils.models.forward_patches`. :func:`train_qa` runs it all end to end into a run folder
(:mod:`utils.qa.run_folder`), and :func:`ensure_trained` reuses an adapter already trained with the same settings.
:class:`TokenCounter`, :class:`StepTimer`, :func:`seconds_per_step`, :func:`loss_history` and
:func:`training_seconds` (every leg of a resumed run, :class:`LegTimer`) measure a run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    DataCollatorWithFlattening,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import ExportableState

from utils import progress
from utils.bnb_cpu import keep_4bit_trainable
from utils.errors import InputError, input_error
from utils.models.loading import checkpointing_arguments, checkpointing_on, mixed_precision
from utils.qa.collate import batching
from utils.qa.config import PARAMS_FILE, QAConfig, read_params, setting_error
from utils.qa.loss import (
    AnswerLogitsCollator,
    GradedHeadCollator,
    GradedHeadLoss,
    answer_logits_loss,
    graded_positions,
)
from utils.qa.run_folder import (
    CHECKPOINTS,
    OutputExistsError,
    check_output_dir,
    checkpoint_step,
    last_checkpoint,
    save_adapter,
    start_run,
)


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
        # the Trainer's filter reads every step's loss on the host, a wait for the GPU mid-step; NonFiniteGuard stops
        # a run whose logged loss is not finite instead
        logging_nan_inf_filter=False,
    )


class NonFiniteGuard(TrainerCallback):
    """Stop with a clear error if the training loss or gradient norm is NaN/inf in the first steps.

    Phi-2 in fp16 is known to overflow in attention; :func:`utils.qa.precision.fp16_guard` applies the remedy before
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


class LegTimer(TrainerCallback, ExportableState):
    """Records in every checkpoint the training seconds of each leg of a run: the earlier legs' (read back from the
    checkpoint a resumed run starts from) and this leg's up to the checkpoint. transformers saves it in the
    checkpoint's ``trainer_state.json`` (``stateful_callbacks``), so a resumed run knows what its checkpoint cost:
    :func:`training_seconds` adds the legs up. :func:`make_trainer` adds one to every Trainer."""

    def __init__(self):
        self.earlier: list[float | None] = []
        self._start: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        name = type(self).__name__
        stored = (state.stateful_callbacks or {}).get(name)
        legs = stored.get("attributes", {}).get("legs") if isinstance(stored, dict) else None
        if state.global_step == 0:
            self.earlier = []
        else:  # resumed: the legs that brought the run to its checkpoint (None: a checkpoint without the record)
            self.earlier = list(legs) if isinstance(legs, list) and legs else [None]
        # a checkpoint written without this record: the Trainer's next save looks the name up (a KeyError otherwise)
        state.stateful_callbacks = {**(state.stateful_callbacks or {}), name: self.state()}
        self._start = time.perf_counter()

    def state(self) -> dict:
        now = [] if self._start is None else [time.perf_counter() - self._start]
        return {"args": {}, "attributes": {"legs": [*self.earlier, *now]}}


def training_seconds(trainer: Trainer, train_output: Any) -> dict[str, Any]:
    """A run's training time, every leg counted: ``{"seconds": total, "seconds_per_leg": [...]}``, the earlier legs
    as the checkpoint it resumed from recorded them (:class:`LegTimer`: each up to its last checkpoint; the steps
    after it were trained again) and this ``trainer.train()``'s ``train_runtime`` last. A run never resumed has one
    leg. An earlier leg whose checkpoint was written without the record is None, and so is the total (unknown)."""
    timer = next((c for c in trainer.callback_handler.callbacks if isinstance(c, LegTimer)), None)
    legs = [*(timer.earlier if timer is not None else []), float(train_output.metrics["train_runtime"])]
    return {"seconds": None if None in legs else sum(legs), "seconds_per_leg": legs}


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


def apply_fused_kernels(model: torch.nn.Module, config: QAConfig) -> None:
    """The speed settings: with ``config.fused_kernels`` the one-kernel tanh-GELU and, under 16-bit autocast, 16-bit
    norm outputs (:mod:`utils.models.forward_patches`), and every 4-bit + LoRA layer as one autograd function
    (:mod:`utils.models.qlora_linear`: LoRA added inside the products, forward and backward), the rotary embedding
    applied in place (:mod:`utils.models.rotary`): the same function each, to rounding; with
    ``config.residual_16bit`` and bf16 (:func:`residual_16bit`) a 16-bit residual stream, embeddings and head.
    Under float32 (the CPU) the GELU swap, the fused layers and the in-place rotary embedding act."""
    from utils.models.forward_patches import (
        embeddings_and_head_in,
        norm_outputs_in,
        residual_in,
        use_fused_gelu,
    )
    from utils.models.qlora_linear import fuse_qlora_linears
    from utils.models.rotary import rope_in_place

    flags = mixed_precision(config.precision)
    dtype = torch.bfloat16 if flags["bf16"] else torch.float16 if flags["fp16"] else torch.float32
    if config.fused_kernels:
        use_fused_gelu(model)
        fuse_qlora_linears(model)
        rope_in_place(model)
        norm_outputs_in(model, dtype)
    if residual_16bit(config):
        residual_in(model, dtype)
        embeddings_and_head_in(model, dtype)


def residual_16bit(config: QAConfig) -> bool:
    """Whether ``config.residual_16bit`` acts here: under bf16 only. bf16 has float32's range; fp16 (a T4) tops out
    at 65504, which Phi-2's residual stream can exceed (its attention already overflows in fp16: the fp16 guard),
    so on a T4 the residual stream stays float32 and only the norm outputs are 16-bit."""
    return config.residual_16bit and mixed_precision(config.precision)["bf16"]


class TokenCounter:
    """Wraps a collator and records, per micro-batch, the real tokens, the tokens processed
    (padding included) and the graded positions (:func:`utils.qa.loss.graded_positions`): the sizes that set a
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
                 answer_logits_only: bool = False, progress_bar: bool = True, graded_head: bool = False,
                 offload_checkpoints: bool = False) -> Trainer:
    """A ``Trainer`` with the guard, a :class:`LegTimer` (:func:`training_seconds`), 4-bit layers kept trainable on every
    CPU, KV cache off (:func:`disable_kv_cache`) and a collator: by default
    the padding-free ``DataCollatorWithFlattening`` (or e.g. :class:`utils.qa.collate.PaddedCollator`); with
    ``answer_logits_only`` the LM head runs on answer positions only (:class:`utils.qa.loss.AnswerLogitsCollator`),
    with ``graded_head`` (rows of :func:`utils.qa.collate.pack_rows`) at each row's graded positions
    (:class:`utils.qa.loss.GradedHeadLoss`). With ``offload_checkpoints`` and activation checkpointing on in
    ``args``, each layer's checkpoint waits in CPU memory (:class:`utils.models.offload.OffloadCallback`; a no-op
    copy on a CPU).
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
    if offload_checkpoints and checkpointing_on(args):
        from utils.models.offload import OffloadCallback

        callbacks = [OffloadCallback(), *callbacks]
    trainer = Trainer(model=model, args=args, train_dataset=train_features, data_collator=collator,
                      compute_loss_func=loss_func,
                      callbacks=[NonFiniteGuard(), LegTimer(), *callbacks])
    return progress.quiet(trainer, bar=progress_bar)


def loss_history(trainer: Trainer) -> tuple[list[int], list[float]]:
    """(steps, training losses) from the trainer's log history."""
    points = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return [s for s, _ in points], [loss for _, loss in points]




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
        The run's record (``training_params.json``'s ``"run"``): steps, seconds (every leg of a resumed run:
        :func:`training_seconds`, with ``seconds_per_leg``), losses, example counts, ...

    Raises:
        InputError: all before the model is loaded: ``config`` is not a valid QAConfig
            (:class:`~utils.qa.config.ConfigError`: :meth:`~QAConfig.validate`, :meth:`~QAConfig.check_paths`,
            :func:`check_max_length`); ``output_dir`` cannot be used (:func:`utils.qa.run_folder.check_output_dir`; an
            earlier run's results there: :class:`~utils.qa.run_folder.OutputExistsError`; with ``resume``, a run
            already at ``config.max_steps`` or a damaged checkpoint).
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
                           graded_head=graded_head, offload_checkpoints=config.offload_checkpoints)
    if trainer.is_world_process_zero():  # every process has checked the folder by now (they start together)
        start_run(out / CHECKPOINTS, config, overwrite=overwrite, **run_info)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    run = {**run_info, "world_size": trainer.args.world_size, "steps": trainer.state.global_step,
           **training_seconds(trainer, result), "losses": loss_history(trainer)[1], "examples": counts,
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

    An adapter of these settings whose record counts more steps than ``config.max_steps`` (a run resumed with a smaller
    max_steps, before that was refused) and checkpoints of these settings already at ``max_steps`` (the adapter never
    saved) are another training, as one of other settings.

    Raises:
        OutputExistsError: ``folder`` holds an adapter (or checkpoints) of other settings, or of these settings trained
            past max_steps (or to it, the adapter never saved), and not ``set_aside``; it is never overwritten (the
            message names the settings that differ). An InputError and a FileExistsError.
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
        same = stored is not None and stored == config
        # an adapter of these settings whose record says it trained more steps than max_steps (a resume below the
        # checkpoint's step wrote such records before check_output_dir refused it) is not what config asks for
        steps = run.get("steps")
        miscounted = same and where == folder and isinstance(steps, int) and steps > config.max_steps
        if same and where == folder and not miscounted:
            return run, True
        checkpoint = last_checkpoint(where) if same and where != folder else None
        finished = checkpoint is not None and checkpoint_step(checkpoint) >= config.max_steps
        if same and where != folder and not finished:  # an interrupted run of these settings: continue it
            train_kwargs.setdefault("resume", checkpoint is not None)
            break
        if set_aside:
            from utils.paths import move_aside

            kept = move_aside(folder)
            run = train_qa(config, folder, **train_kwargs)
            return run | {"set_aside": str(kept)}, False
        if miscounted:
            raise OutputExistsError(*input_error(
                str(folder), f"it holds an adapter whose {PARAMS_FILE} records max_steps={config.max_steps} but "
                f"{steps} trained steps (resumed with a max_steps below its step), so it is not a run of these settings; "
                "it is left as it is",
                "delete it (or pass set_aside=True) to train it again").args)
        if finished:  # these settings, trained to the last step, but the adapter was never saved
            raise OutputExistsError(*input_error(
                str(folder), f"it holds checkpoints of a run of these settings that reached its last step "
                f"({checkpoint.name}) but never saved its adapter; it is left as it is",
                "delete it (or pass set_aside=True) to train it again").args)
        differ = {k: [getattr(stored, k), getattr(config, k)] for k in QAConfig.field_names()
                  if getattr(stored, k) != getattr(config, k)}
        what = "an adapter" if where == folder else "checkpoints of an unfinished run"
        raise OutputExistsError(*input_error(
            str(folder), f"it holds {what} trained with other settings (stored, wanted: {differ}); it is left as it "
            "is", "delete it, or choose another folder").args)
    return train_qa(config, folder, **train_kwargs), False


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
