"""The QA fine-tuning settings, owned here and nowhere else: defaults per profile, presets, validation, and
the schema of ``training_params.json``.

Notebook 04's ``parameters`` cell, ``python -m utils.cli.finetune`` (its flags are generated from
:class:`QAConfig`'s fields), notebook 05, the demo, the benchmarks and ``utils.memory.estimate`` all read
this one definition. A setting is resolved in one order everywhere (:meth:`QAConfig.resolve`)::

    field default  <  profile default (smoke / full)  <  preset (course / assignment)  <  what you set

so a preset fills only what you did not set: ``-p PRESET assignment -p LORA_RANK 8`` trains rank 8.
"Not set" is ``None`` (the notebook's parameters cell and the command line's defaults). Notebook 04's parameters
cell shows the few settings a learner changes as constants (``LORA_RANK``) and takes any other one by its field name
in one dict, ``SETTINGS = {"batch_size": 8}`` (:meth:`QAConfig.from_namespace`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.errors import InputError, input_error
from utils.models.architectures import ARCHITECTURES
from utils.models.loading import PHI2_ID, PRECISIONS, check_model_path, looks_local
from utils.models.smollm2 import SMOLLM2_ID

PHI2_TARGETS = ARCHITECTURES["phi"].lora_targets  # Phi-2's linear layers in a decoder block
PRESETS = ("course", "assignment")
TEXT_FORMATS = ("squad", "guanaco")  # how a dataset's records are laid out (utils.qa.data reads both)
LR_SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
PARAMS_FILE = "training_params.json"
PARAMS_SCHEMA = 1  # version of training_params.json's layout; bump it when the layout changes
# Settings added after schema 1 that change where the work happens, not what is learned: a file written before
# one existed reads as if it had been off then (the adapter in it was trained that way)
ADDED_SPEED_SETTINGS: dict[str, Any] = {"offload_checkpoints": False}
ALL_LINEAR = "all-linear"  # peft's keyword for every linear layer (utils.models.adapters.ALL_LINEAR; tested equal)
SEED_MAX = 2**32 - 1  # numpy's seeds (transformers.set_seed seeds numpy too)


def setting(default: Any, help: str) -> Any:  # noqa: A002
    """A :class:`QAConfig` field: its default (or a factory for a mutable one) and one line of help, which the
    command line shows (``python -m utils.cli.finetune --help``)."""
    if callable(default):
        return field(default_factory=default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


class ConfigError(InputError):
    """A setting is unknown, of the wrong type or out of range; the message names it and the fix."""


@dataclass(frozen=True)
class QAConfig:
    """Every setting of QLoRA fine-tuning for QA. Defaults here are the full profile's (Phi-2, SQuAD)."""

    model_id: str = setting(PHI2_ID, "base model: Hub id or local folder")
    dataset: str = setting("rajpurkar/squad", '"course-qa" (invented towns) or "disfl-qa" (real Wikipedia passages), '
                                              'both offline; a SQuAD JSON file, JSON Lines file (guanaco) or Hub id')
    text_format: str = setting("squad", '"squad" (question/context/answers) or "guanaco" (one "### Human: ... '
                                        '### Assistant: ..." text)')
    columns: dict[str, str] = setting(lambda: {"question": "question", "context": "context", "answers": "answers"},
                                      "our field -> dataset column, for datasets laid out otherwise")
    train_split: str = setting("train", "Hub split to train on")
    train_size: int = setting(3200, "questions trained on (a seeded subset); 0: all")
    max_length: int = setting(384, "tokens per example; longer prompts lose context, never the answer")
    lora_rank: int = setting(16, "LoRA rank r")
    lora_alpha: float = setting(32, "LoRA scaling numerator: updates are scaled by alpha / r")
    lora_dropout: float = setting(0.0, "dropout on the LoRA input (QLoRA's paper: 0.05-0.1; 0 skips its kernel)")
    target_modules: tuple[str, ...] = setting(PHI2_TARGETS, "linear layers that get LoRA")
    learning_rate: float = setting(2e-4, "peak learning rate")
    lr_scheduler: str = setting("cosine", "learning-rate schedule after warm-up")
    warmup_ratio: float = setting(0.03, "share of steps with a linear warm-up")
    max_steps: int = setting(100, "optimizer steps")
    batch_size: int = setting(28, "per forward pass: rows of row_length tokens; with row_length 0, examples "
                                  "packed into one row")
    grad_accum: int = setting(1, "forward passes per optimizer step")
    answer_logits_only: bool = setting(True, "run the LM head only where the next token is graded")
    row_length: int = setting(512, "tokens per row: examples are packed in advance into rows of this length "
                                    "(every pass the same shape); 0: each pass's examples laid end to end in one row")
    pack_multiple: int = setting(256, "with row_length 0: pad the row to a multiple of this many tokens")
    fused_kernels: bool = setting(True, "the same function in fewer GPU kernels: one-kernel tanh-GELU, LoRA added "
                                        "inside the 4-bit layers' products (utils.models.qlora_linear), the rotary "
                                        "embedding in place (utils.models.rotary), 16-bit norm outputs "
                                        "(utils.models.forward_patches)")
    residual_16bit: bool = setting(True, "under bf16, keep the residual stream, embeddings and head in bf16 (peft "
                                         "upcasts them to float32): half the checkpointed activations; fp16 keeps "
                                         "float32 (its range is too small)")
    max_grad_norm: float = setting(0.3, "gradient clipping (QLoRA paper's value)")
    optimizer: str = setting("adamw_torch_fused", 'transformers optim name: PyTorch\'s AdamW in one fused kernel; '
                                                  '"paged_adamw_8bit" for QLoRA\'s paged 8-bit AdamW (less memory)')
    gradient_checkpointing: bool = setting(True, "recompute activations in the backward pass")
    offload_checkpoints: bool = setting(True, "with gradient_checkpointing on a GPU: keep each layer's checkpoint in "
                                              "CPU memory, copied while the GPU computes (utils.models.offload)")
    precision: str = setting("auto", '"auto" (bf16 / fp16 on a T4 / fp32 on CPU), "bf16", "fp16" or "fp32"')
    logging_steps: int = setting(10, "log the loss every N steps")
    save_steps: int = setting(100, "write a checkpoint every N steps")
    seed: int = setting(0, "seeds data order, adapters and dropout")

    def __post_init__(self) -> None:
        # a list of layer names is kept as a tuple (the config is frozen and hashable); a bare string is an
        # error, however the config was made (resolve, dataclasses.replace, read_params)
        object.__setattr__(self, "target_modules", _as_names(self.target_modules, "target_modules"))
        object.__setattr__(self, "dataset", qa_set_file(self.dataset, "train"))  # a named set: its training file

    # ------------------------------------------------------------------ resolution
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def resolve(cls, profile: str, preset: str = "course", *, paths: bool = True, **explicit: Any) -> QAConfig:
        """The settings for ``profile`` and ``preset``, with every non-None ``explicit`` value winning.

        Args:
            paths: also :meth:`check_paths` (False: the values only, e.g. the sweep's checks of a notebook that runs
                in another folder).

        Raises:
            ConfigError: unknown profile, preset or setting name, a value :meth:`validate` rejects, or a local
                dataset or model path that does not exist (:meth:`check_paths`).
        """
        values, _ = cls._layers(profile, preset, explicit)
        config = cls(**values).validate()
        return config.check_paths() if paths else config

    @classmethod
    def from_namespace(cls, profile: str, preset: str, namespace: Mapping[str, Any],
                       settings: str = "SETTINGS", *, paths: bool = True) -> tuple[QAConfig, dict]:
        """Resolve from a notebook's parameters: each field's UPPER_CASE constant where the namespace defines one
        (``LORA_RANK`` for ``lora_rank``), and any field by its own name in the dict named ``settings``
        (``SETTINGS = {"batch_size": 8}``); None, or a field given neither way, means "not set". Returns
        ``(config, sources)`` (see :meth:`sources`); ``paths`` as in :meth:`resolve`.

        Raises:
            ConfigError: ``SETTINGS`` is not a dict, names a setting that does not exist (or in upper case), or
                sets one that its constant sets too; or what :meth:`resolve` raises.
        """
        extra = namespace.get(settings)
        extra = {} if extra is None else extra
        if not isinstance(extra, Mapping):
            raise setting_error(settings, f"{settings} must be a dict of QA settings by name, got {extra!r} "
                                f"({type(extra).__name__})", 'write it like {"batch_size": 8, "save_steps": 50}, '
                                "or {} for none")
        fields = cls.field_names()
        upper = sorted(k for k in extra if isinstance(k, str) and k.lower() in fields and k != k.lower())
        if upper:
            raise setting_error(settings, f"{settings} names settings in upper case: {upper}", "write each as its "
                                f"field name in lower case, e.g. {upper[0].lower()!r}, as the settings table spells it")
        bad = [k for k in extra if not isinstance(k, str)]
        if bad:
            raise setting_error(settings, f"{settings} has keys that are not setting names: {bad}",
                                'use the names as strings, e.g. {"batch_size": 8}')
        unknown = sorted(set(extra) - set(fields))
        if unknown:
            close = {u: difflib.get_close_matches(u, fields, n=1) for u in unknown}
            hint = ", ".join(f"{u} -> {c[0]}" for u, c in close.items() if c)
            raise setting_error(settings, f"{settings} names unknown QA setting(s) {unknown}; the settings are: "
                                f"{', '.join(fields)}", f"correct the name{f' ({hint})' if hint else ''}, or drop it")
        twice = [n for n in fields if namespace.get(n.upper()) is not None and extra.get(n) is not None]
        if twice:
            raise setting_error(settings, f"{[n.upper() for n in twice]} are set both as constants and in {settings} "
                                f"({ {n: [namespace[n.upper()], extra[n]] for n in twice} })",
                                f"set each once: the constant, or {settings}")
        explicit = {n: namespace[n.upper()] if namespace.get(n.upper()) is not None else extra.get(n) for n in fields}
        return cls.resolve(profile, preset, paths=paths, **explicit), cls.sources(profile, preset, **explicit)

    @classmethod
    def sources(cls, profile: str, preset: str = "course", **explicit: Any) -> dict[str, str]:
        """``{setting: "default" | "profile" | "preset" | "fp16 (T4)" | "you"}``: where each resolved value came from
        (``"fp16 (T4)"``: :func:`fp16_rows`)."""
        return cls._layers(profile, preset, explicit)[1]

    @classmethod
    def _layers(cls, profile: str, preset: str, explicit: Mapping[str, Any]) -> tuple[dict, dict]:
        if profile not in PROFILE_DEFAULTS:
            raise setting_error("PROFILE ($QLORA_PROFILE)", f"profile must be one of {tuple(PROFILE_DEFAULTS)}, got {profile!r}",
                                "set QLORA_PROFILE=smoke (CPU, offline) or full (GPU + Hub)")
        if preset not in PRESETS:
            raise setting_error("PRESET (--preset)", f"PRESET must be one of {PRESETS}, got {preset!r}",
                                "use 'course' (SQuAD) or 'assignment' (the original course's guanaco run)")
        _check_names(explicit)
        values = {f.name: (f.default_factory() if f.default is dataclasses.MISSING else f.default)
                  for f in dataclasses.fields(cls)}
        sources = dict.fromkeys(values, "default")
        layers = [("profile", _profile_defaults(profile)), ("preset", _preset_values(preset)),
                  ("you", {k: v for k, v in explicit.items() if v is not None})]
        for source, layer in layers:
            for name, value in layer.items():
                values[name] = value
                sources[name] = source
        for name, value in fp16_rows(values, sources).items():
            values[name], sources[name] = value, "fp16 (T4)"
        return values, sources

    def replace(self, **settings: Any) -> QAConfig:
        """A copy with single settings replaced (e.g. ``max_steps=3``), checked like :meth:`resolve` (but not its
        paths: :meth:`check_paths`).

        Raises:
            ConfigError: an unknown setting name, or a value :meth:`validate` rejects.
        """
        _check_names(settings)
        return dataclasses.replace(self, **settings).validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> QAConfig:
        """Check every setting's type and range, and the settings against each other; returns ``self``.

        Raises:
            ConfigError: naming the setting (as the notebook and the command line spell it), what was expected and
                the fix: a wrong type (a bool for a number, a float for an integer, a string for a list); an integer
                setting below 1 (``max_length``, ``lora_rank``, ``max_steps``, ``batch_size``, ``grad_accum``,
                ``pack_multiple``, ``logging_steps``, ``save_steps``) or a negative ``train_size``; a NaN or
                infinite number; ``lora_alpha``, ``learning_rate`` or ``max_grad_norm`` not > 0; ``lora_dropout`` or
                ``warmup_ratio`` outside [0, 1); ``logging_steps`` above ``max_steps`` (no loss would be logged);
                ``seed`` outside numpy's [0, 2**32 - 1]; an unknown ``text_format``, ``precision``,
                ``lr_scheduler`` or ``optimizer``; ``target_modules`` empty, with a repeated or empty name, or
                ``"all-linear"`` mixed with names; ``columns`` missing a field.
        """
        for f in dataclasses.fields(self):
            problem = setting_problem(f.name, getattr(self, f.name))
            if problem is not None:
                raise setting_error(f.name, *problem)
        if 0 < self.row_length < self.max_length:
            raise setting_error("row_length", f"row_length={self.row_length} is shorter than max_length={self.max_length}: "
                                "a long example would not fit in a row", f"set row_length to at least {self.max_length} "
                                "(or 0 to lay each pass's examples end to end in one row)")
        if self.logging_steps > self.max_steps:
            raise setting_error("logging_steps", f"logging_steps={self.logging_steps} is more than max_steps={self.max_steps}: "
                                "no training loss would ever be logged", f"set logging_steps to at most {self.max_steps}")
        return self

    def check_paths(self) -> QAConfig:
        """Check that a ``dataset`` or ``model_id`` that is a local path exists; returns ``self``.

        Local: a dataset ending in ``.json``/``.jsonl`` (what :func:`utils.qa.data.load_qa_split` reads as a file),
        or either setting written as a path (absolute, starting with ``.`` or ``~``, or more than one ``/``; a Hub id
        is ``owner/name``; :func:`utils.models.loading.looks_local`), and a model folder that exists. Not part of
        :meth:`validate`, so that a stored ``training_params.json`` stays readable after its data moved;
        :meth:`resolve` and :func:`utils.qa.training.train_qa` call it.

        Raises:
            ConfigError: the dataset file or the model folder does not exist, or the model folder holds no
                ``config.json`` or no weights (:func:`utils.models.loading.check_model_path`, the loaders' check).
        """
        dataset = Path(self.dataset).expanduser()
        if self.dataset.endswith((".json", ".jsonl")) or looks_local(self.dataset):
            if not dataset.is_file():
                what = "is a folder, not a file" if dataset.is_dir() else "does not exist"
                raise setting_error("dataset", f"the dataset file {self.dataset} {what}",
                                    "point DATASET (--dataset) at a SQuAD JSON or JSON Lines file (e.g. data/qa/train.json), "
                                    "or give a Hub dataset id such as rajpurkar/squad")
        try:
            check_model_path(self.model_id, _where("model_id"), weights=True)
        except InputError as err:  # the loaders' check, as a ConfigError (a setting)
            raise ConfigError(*err.args) from None
        return self

    # ------------------------------------------------------------------ views
    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def table(self, sources: Mapping[str, str] | None = None, meaning: bool = False) -> list[dict[str, Any]]:
        """One row per setting (``setting``, ``value``; given :meth:`sources`, ``from``; with ``meaning``, the field's
        one line of help, as ``python -m utils.cli.finetune --help`` shows it), for display."""
        helps = {f.name: f.metadata["help"] for f in dataclasses.fields(self)}
        return [{"setting": k, "value": v, **({"from": sources[k]} if sources else {}),
                 **({"meaning": helps[k]} if meaning else {})} for k, v in self.as_dict().items()]


# ---------------------------------------------------------------------- profiles and presets
# The course's offline QA sets by name: a folder under the repository with train.json and validation.json
# (SQuAD v1.1 layout). "course-qa": invented towns and inventors (data/qa/README.md); "disfl-qa": real Wikipedia
# passages with human-written questions (data/disfl_qa/README.md).
QA_SETS = {"course-qa": "data/qa", "disfl-qa": "data/disfl_qa"}
# a Hub dataset -> the offline set that stands in for it when the Hub cannot be reached (real text, never invented)
HUB_STAND_INS = {"rajpurkar/squad": "disfl-qa"}


def qa_set_file(source: str, split: str) -> str:
    """The file of split ``split`` (``"train"`` or ``"validation"``) of a named offline QA set (:data:`QA_SETS`);
    any other ``source`` (a file, a Hub id) is returned unchanged."""
    if source not in QA_SETS:
        return source
    from utils.paths import REPO_ROOT

    if split not in ("train", "validation"):
        raise setting_error("dataset", f"the offline set {source!r} has the splits 'train' and 'validation', not "
                            f"{split!r}", "use split 'train' or 'validation'")
    return str(REPO_ROOT / QA_SETS[source] / f"{split}.json")


def _smoke_dataset() -> str:
    return qa_set_file("course-qa", "train")


# what the smoke profile changes (2 CPU cores, offline, minutes): SmolLM2-135M-Instruct (a Llama, from its
# pip-packaged GGUF: utils.models.smollm2) with its layer names, the course's own QA set, and few, short steps
# at a larger learning rate (chosen by measurement: 8 steps of 4 lift held-out F1 from ~2 to ~80); the full
# profile is the field defaults
PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "full": {},
    "smoke": {"model_id": SMOLLM2_ID, "target_modules": ARCHITECTURES["llama"].lora_targets, "train_size": 64,
              "max_length": 192, "learning_rate": 1e-3, "max_steps": 8, "batch_size": 4, "logging_steps": 1,
              "save_steps": 4,
              # on 2 CPU cores recomputing activations doubled the step time, and memory is plentiful; notebook
              # 04 still measures what checkpointing saves, and the unit tests train with it
              "gradient_checkpointing": False,
              # drawing LoRA's dropout masks took 14% of a smoke training step on one CPU core (cProfile, 8 steps of
              # SmolLM2), and 8 steps have nothing to regularise; the unit tests train with dropout 0.1
              "lora_dropout": 0.0,
              # 4 examples laid end to end per pass, as tuned (8 steps of 4); rows of a fixed length pay off on a GPU
              "row_length": 0},
}


def fp16_rows(values: Mapping[str, Any], sources: Mapping[str, str]) -> dict[str, int]:
    """What a T4 (fp16) changes, unless ``batch_size`` or ``grad_accum`` was set (by you, a profile or a preset): half
    the rows per forward pass, accumulated twice, so each optimizer step trains on the same rows.

    Why: fp16 tops out at 65504, which Phi-2's residual stream can exceed, so under fp16 it stays float32
    (:func:`utils.qa.training.residual_16bit`) and the hidden states activation checkpointing keeps take twice the
    memory they take under bf16. With half the tokens per pass the T4 path's peak stays below the naive baseline's
    (measured on an H100 under a 15 GiB cap: benchmarks/README.md). The price is speed: smaller products ran slower
    on the H100 (same page); a T4's was not measured. Returns the values to change (none on bf16, float32 or the
    CPU)."""
    from utils.models.loading import mixed_precision

    if sources.get("batch_size") != "default" or sources.get("grad_accum") != "default":
        return {}
    if values["precision"] not in PRECISIONS:  # validate() names the bad value
        return {}
    if not mixed_precision(values["precision"])["fp16"]:
        return {}
    return {"batch_size": max(1, values["batch_size"] // 2), "grad_accum": 2 * values["grad_accum"]}


# the original course assignment: Phi-2 on OpenAssistant's guanaco, r=64, alpha=16, 500 steps of 2 x 8. Its
# dataset is on the Hub: offline (smoke), set DATASET to a local guanaco-format JSON Lines file
ASSIGNMENT = {"dataset": "timdettmers/openassistant-guanaco", "text_format": "guanaco", "train_split": "train",
              "train_size": 0, "lora_rank": 64, "lora_alpha": 16, "lora_dropout": 0.1, "max_length": 256,
              "max_steps": 500, "batch_size": 2, "grad_accum": 8, "row_length": 0, "learning_rate": 2e-4,
              "lr_scheduler": "constant", "warmup_ratio": 0.03, "max_grad_norm": 0.3}


def _profile_defaults(profile: str) -> dict[str, Any]:
    values = dict(PROFILE_DEFAULTS[profile])
    if profile == "smoke":
        values["dataset"] = _smoke_dataset()
    return values


def _preset_values(preset: str) -> dict[str, Any]:
    return dict(ASSIGNMENT) if preset == "assignment" else {}


# ---------------------------------------------------------------------- errors and types
def _where(name: str) -> str:
    """A setting as the notebook's parameters cell and the command line spell it: ``MAX_STEPS (--max-steps)``."""
    return f"{name.upper()} (--{name.replace('_', '-')})" if name in QAConfig.field_names() else name


def setting_error(name: str, problem: str, fix: str) -> ConfigError:
    """:func:`utils.errors.input_error`'s message as a :class:`ConfigError`, where = the setting as the notebook and
    the command line spell it (``MAX_STEPS (--max-steps)``); for any check of a setting, here or where it is used."""
    return ConfigError(*input_error(_where(name), problem, fix).args)


def _default(name: str) -> Any:
    f = next(f for f in dataclasses.fields(QAConfig) if f.name == name)
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    return list(value) if isinstance(value, tuple) else value


def _example(name: str) -> str:
    """The fix for a number out of range: what the setting means, and the full profile's value."""
    meaning = next(f for f in dataclasses.fields(QAConfig) if f.name == name).metadata["help"]
    return f"set it to a value that fits ({meaning}); the full profile uses {_default(name)!r}"


def _check_names(settings: Mapping[str, Any]) -> None:
    unknown = sorted(set(settings) - set(QAConfig.field_names()))
    if unknown:
        close = {u: difflib.get_close_matches(u, QAConfig.field_names(), n=1) for u in unknown}
        hint = ", ".join(f"{u} -> {c[0]}" for u, c in close.items() if c)
        raise setting_error("QA settings", f"unknown QA setting(s) {unknown}; the settings are: "
                            f"{', '.join(QAConfig.field_names())}",
                            f"correct the name{f' ({hint})' if hint else ''}, or drop it")


def _as_names(value: Any, name: str) -> tuple[str, ...]:
    """A list of layer names as a tuple; a bare string is an error (it would be split into characters)."""
    problem = _names_problem(value, name)
    if problem is not None:
        raise setting_error(name, *problem)
    return tuple(value)


def _names_problem(value: Any, name: str) -> tuple[str, str] | None:
    if isinstance(value, str):
        return (f"{name} must be a list of layer names, e.g. [{value!r}], not the string {value!r} (a string would be "
                f"read one character at a time)",
                f"write it as a list, [{value!r}] (on the command line: --{name.replace('_', '-')} {value})")
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        return (f"{name} must be a list of layer names, got {value!r} ({type(value).__name__})",
                f"write it as a list of names, e.g. {list(PHI2_TARGETS)} for Phi-2")
    return None


def _targets_problem(names: tuple[str, ...]) -> tuple[str, str] | None:
    """``target_modules``: not empty, no empty or repeated name, ``"all-linear"`` only alone (peft's keyword).
    Whether each name exists in the model is checked when the model is there
    (:func:`utils.models.adapters.check_target_modules`)."""
    if not names:
        return ("target_modules is empty: no layer would get LoRA",
                f"name the linear layers that get LoRA, e.g. {list(PHI2_TARGETS)} for Phi-2, or [{ALL_LINEAR!r}]")
    if any(not n.strip() for n in names):
        return f"target_modules holds an empty name: {list(names)}", "remove it"
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        return f"target_modules names {repeated} more than once: {list(names)}", "name each layer once"
    if ALL_LINEAR in names and len(names) > 1:
        return (f"{ALL_LINEAR!r} (every linear layer) cannot be combined with layer names: {list(names)}",
                f"use [{ALL_LINEAR!r}] alone, or only layer names")
    return None


def _optimizer_problem(name: str) -> tuple[str, str] | None:
    """``optimizer`` must be one of transformers' ``OptimizerNames`` (else ``TrainingArguments`` fails later)."""
    from transformers.training_args import OptimizerNames

    known = [o.value for o in OptimizerNames]
    if name in known:
        return None
    close = [k for k in known if k.startswith(name)][:3] or difflib.get_close_matches(name, known, n=3)
    return (f"unknown optimizer {name!r}; transformers' optim names include "
            f"{['adamw_torch', 'adamw_torch_fused', 'paged_adamw_8bit', 'paged_adamw_32bit', 'sgd']}"
            + (f" (close: {close})" if close else ""),
            "use 'paged_adamw_8bit' (QLoRA's) or 'adamw_torch' (32-bit AdamW); all names: "
            "transformers.training_args.OptimizerNames")


_POSITIVE = ("max_length", "lora_rank", "max_steps", "batch_size", "grad_accum", "pack_multiple", "logging_steps",
             "save_steps")  # integer settings of at least 1
_HINTS: dict[str, Any] = {}


def setting_problem(name: str, value: Any) -> tuple[str, str] | None:
    """What is wrong with ``value`` as the setting ``name`` on its own, as ``(problem, fix)`` for
    :func:`setting_error`, or None: every check of :meth:`QAConfig.validate` but those between two settings (type,
    finite, range, the known names of text_format, precision, lr_scheduler and optimizer, target_modules' shape,
    columns' fields). Also for a value meant as that setting elsewhere (the sweep checks a notebook's ``LR`` as
    ``learning_rate``).

    Raises:
        ConfigError: ``name`` is not a setting.
    """
    _check_names({name: value})
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(QAConfig))
    hint = _HINTS[name]
    if name == "target_modules" and not isinstance(value, tuple):
        problem = _names_problem(value, name)
        if problem is not None:
            return problem
        value = tuple(value)
    if not _type_ok(value, hint):
        return (f"{name} must be {_describe(hint)}, got {value!r} ({type(value).__name__})",
                f"write it like the default, {_default(name)!r}")
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be a finite number, got {value}", _example(name)
    if name in _POSITIVE and value <= 0:
        return f"{name} must be a positive integer, got {value}", _example(name)
    if name == "row_length" and value < 0:
        return f"row_length must be 0 (one row per pass) or a number of tokens, got {value}", "use e.g. 1024, or 0"
    if name == "train_size" and value < 0:
        return (f"train_size must be a number of questions, or 0 for all, got {value}",
                "set it to how many questions to train on (e.g. 3200), or 0 for the whole split")
    if name in ("lora_alpha", "learning_rate", "max_grad_norm") and not value > 0:
        return f"{name} must be > 0, got {value}", _example(name)
    if name in ("lora_dropout", "warmup_ratio") and not 0 <= value < 1:
        return f"{name} must be in [0, 1), got {value}", _example(name)
    if name == "seed" and not 0 <= value <= SEED_MAX:
        return f"seed must be in [0, 2**32 - 1] (numpy's seeds), got {value}", "use a non-negative whole number, e.g. 0"
    allowed = {"text_format": TEXT_FORMATS, "precision": PRECISIONS, "lr_scheduler": LR_SCHEDULERS}.get(name)
    if allowed is not None and value not in allowed:
        return f"{name} must be one of {allowed}, got {value!r}", f"use one of those (default {_default(name)!r})"
    problem = (_optimizer_problem(value) if name == "optimizer" else
               _targets_problem(value) if name == "target_modules" else None)
    if problem is not None:
        return problem
    missing = sorted({"question", "context", "answers"} - set(value)) if name == "columns" else []
    if missing:
        return (f"columns must map our fields question, context, answers to dataset columns; missing {missing}",
                'map all three, e.g. {"question": "q", "context": "passage", "answers": "a"}')
    return None


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return "a list of strings"
    if typing.get_origin(hint) is dict:
        return "a mapping of strings to strings"
    return {int: "an integer", float: "a number", bool: "True or False", str: "a string"}.get(
        hint, str(hint).replace("typing.", ""))


# ---------------------------------------------------------------------- training_params.json
def save_params(folder: str | Path, config: QAConfig, run: Mapping[str, Any]) -> Path:
    """Write ``training_params.json``: ``{"schema", "config": QAConfig fields, "run": what the run measured}``
    (``run``: profile, preset, steps, seconds, losses, ...). The only writer of that file."""
    path = Path(folder) / PARAMS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"schema": PARAMS_SCHEMA, "config": config.as_dict(), "run": dict(run)}
    path.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n")
    return path


def read_params(folder: str | Path) -> tuple[QAConfig, dict[str, Any]]:
    """Read ``training_params.json`` back: ``(QAConfig, run)``. The only reader of that file.

    Raises:
        FileNotFoundError: no adapter there (says to run notebook 04 or ``python -m utils.cli.finetune``).
        ConfigError: another schema version, or a missing or unknown setting (names them).
    """
    path = Path(folder) / PARAMS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"No trained adapter in {Path(folder)} ({PARAMS_FILE} is missing): run notebook 04 "
            "(04_phi2_qlora_training.ipynb) or `python -m utils.cli.finetune --output-dir ...` first, "
            "or set notebook 05's ADAPTER (the demo's --adapter) to the folder they wrote.")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise setting_error(str(path), f"the file is not valid JSON ({err.msg}, line {err.lineno}); it was damaged or "
                            "edited by hand", "retrain the adapter, or restore the file") from None
    schema = payload.get("schema") if isinstance(payload, dict) else None
    if schema != PARAMS_SCHEMA:
        raise setting_error(str(path), f"the file has schema {schema!r}; this course reads schema {PARAMS_SCHEMA}",
                            "retrain the adapter with this version of notebook 04 or utils.cli.finetune")
    stored = payload.get("config")
    stored = stored if isinstance(stored, dict) else {}
    stored = {**{k: v for k, v in ADDED_SPEED_SETTINGS.items() if k not in stored}, **stored}
    fields = set(QAConfig.field_names())
    missing, unknown = sorted(fields - set(stored)), sorted(set(stored) - fields)
    if missing or unknown:
        raise setting_error(str(path), f"settings missing {missing}, unknown {unknown}; it was not written by this version "
                            "of the course", "retrain the adapter")
    return QAConfig(**stored).validate(), dict(payload.get("run", {}))
