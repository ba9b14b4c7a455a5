"""Attaching peft LoRA adapters to a (4-bit or 16/32-bit) model, with the arguments checked first, and loading
a saved one back.

Every notebook that fine-tunes goes through :func:`add_lora`, so a rank of 0 or a target module
that does not exist fails the same clear way everywhere: with :class:`utils.errors.InputError`, before peft is
called (peft would fail later, or silently match nothing). Every saved adapter (QA's and classification's, both
peft's ``save_pretrained`` folders) is loaded back by :func:`load_adapter`, its files checked first
(:func:`check_adapter`: a cut-off or hand-edited file is an InputError naming it, not peft's JSONDecodeError,
SafetensorError or size mismatch after the base model loaded).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

from utils.errors import InputError, input_error
from utils.models.architectures import architecture_of
from utils.models.loading import load_model, set_activation_checkpointing

# shorthand target sets; "all-linear" is peft's own keyword (every linear layer but the output head)
ALL_LINEAR = "all-linear"
CLASSIFIER_HEADS = ("classifier", "score")  # sequence-classification heads: new, trained, never 4-bit
OUTPUT_HEADS = (*CLASSIFIER_HEADS, "lm_head")  # output layers that "all-linear" and the quantizers leave alone
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"  # what peft's save_pretrained writes
_REMAKE = ("restore the file from a copy of the adapter (notebook 04's KEEP_ON_DRIVE copy or PUSH_TO_HUB repo), or "
           "re-export it from the trained model (model.save_pretrained), or re-train it (notebook 04 or python -m "
           "utils.cli.finetune; a classifier: notebook 06)")


class AdapterFileError(InputError, FileNotFoundError):
    """A saved adapter's file is missing: an :class:`~utils.errors.InputError` and a ``FileNotFoundError``."""


def linear_module_names(model: torch.nn.Module, full: bool = False) -> list[str]:
    """Distinct leaf names (e.g. ``q_proj``, ``dense``) of the linear layers (incl. 4-bit) in ``model``, or with
    ``full`` their whole dotted names (``encoder.layer.0.attention.output.dense``)."""
    names = set()
    for full_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
            names.add(full_name if full else full_name.rsplit(".", 1)[-1])
    return sorted(names)


def matches_target(module_name: str, target: str) -> bool:
    """peft's rule for a target in a list: the module's dotted name equals it or ends with ``"." + target``
    (so ``"dense"`` matches every ``...dense``, ``"attention.output.dense"`` only the attention's)."""
    return module_name == target or module_name.endswith("." + target)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_lora_args(rank: int, alpha: float, dropout: float = 0.0) -> None:
    """Check LoRA's hyper-parameters before any model is touched.

    Raises:
        InputError: ``rank`` is not a positive integer (0, negative, a float, a bool), ``alpha`` is not a finite
            number > 0, or ``dropout`` is not a number in [0, 1).
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise input_error("rank", f"LoRA rank must be a positive integer, got {rank!r}",
                          "pass a whole number such as 8 or 16 (the number of columns of B and rows of A)")
    if not _is_number(alpha) or not math.isfinite(alpha) or alpha <= 0:
        raise input_error("alpha", f"LoRA alpha must be > 0 (a finite number), got {alpha!r}",
                          "pass a positive number; common choices are alpha = r or 2r (updates are scaled by alpha / r)")
    if not _is_number(dropout) or not 0 <= dropout < 1:
        raise input_error("dropout", f"LoRA dropout must be a number in [0, 1), got {dropout!r}",
                          "pass a probability such as 0.0 (off), 0.05 or 0.1")


def is_all_linear(target_modules: Any) -> bool:
    """Whether ``target_modules`` means peft's ``"all-linear"``: the string itself, or a list holding only it (what
    ``QAConfig.target_modules`` and ``--target-modules all-linear`` give)."""
    if isinstance(target_modules, str):
        return target_modules == ALL_LINEAR
    return isinstance(target_modules, (list, tuple)) and list(target_modules) == [ALL_LINEAR]


def target_list(target_modules: Any) -> list[str]:
    """``target_modules`` as a list of layer names, its shape checked (not whether the names exist).

    Raises:
        InputError: a single string other than ``"all-linear"`` (peft would read it as a regular expression over
            full module names, so ``"q_proj"`` would match nothing), not a list, an empty list, an entry that is
            not a non-empty string, a repeated name, or ``"all-linear"`` inside a list of names.
    """
    if isinstance(target_modules, str):
        raise input_error("target_modules", f"got the single string {target_modules!r}; a string other than "
                          f"{ALL_LINEAR!r} is not a layer name to peft (it reads it as a regular expression over "
                          "whole dotted module names, which a leaf name never matches)",
                          f"pass a list of layer names: [{target_modules!r}], or the string {ALL_LINEAR!r}")
    if not isinstance(target_modules, (list, tuple, set, frozenset)):
        raise input_error("target_modules", f"must be a list of layer names, got {target_modules!r} "
                          f"({type(target_modules).__name__})", f"pass e.g. ['q_proj', 'v_proj'] or {ALL_LINEAR!r}")
    names = list(target_modules)
    if not names:
        raise input_error("target_modules", "target_modules is empty: no layer would get LoRA",
                          f"name at least one linear layer, e.g. ['q_proj', 'v_proj'], or use {ALL_LINEAR!r}")
    bad = [t for t in names if not isinstance(t, str) or not t.strip()]
    if bad:
        raise input_error("target_modules", f"entries {bad!r} are not layer names (each entry must be a non-empty "
                          "string)", "write each layer's name as a string, e.g. ['q_proj', 'v_proj']")
    repeated = sorted({t for t in names if names.count(t) > 1})
    if repeated:
        raise input_error("target_modules", f"{repeated} appear more than once in {names}",
                          "name each layer once")
    if ALL_LINEAR in names:
        combined = ", and cannot be combined with names" if len(names) > 1 else ""
        raise input_error("target_modules", f"{ALL_LINEAR!r} is peft's keyword for every linear layer, not a layer "
                          f"name{combined}: {names}", f"pass {ALL_LINEAR!r} alone, as a string, or only layer names")
    return names


def check_target_names(target_modules: list[str] | str, available: list[str], model_name: str,
                       suggestion: str = "") -> list[str]:
    """``target_modules`` (see :func:`target_list`) as a list, each name checked against ``available`` (the model's
    linear layers: leaf or full dotted names, see :func:`matches_target`).

    Args:
        suggestion: appended to the fix when a name matches nothing (e.g. the architecture table's targets).

    Raises:
        InputError: what :func:`target_list` rejects, or a name that matches none of ``available`` (the message
            lists the linear layers that exist).
    """
    target_modules = target_list(target_modules)
    unknown = [t for t in target_modules if not any(matches_target(name, t) for name in available)]
    if unknown:
        leaves = sorted({name.rsplit(".", 1)[-1] for name in available})
        raise input_error(
            "target_modules",
            f"target module(s) {unknown} match no linear layer of {model_name}. Linear layers in this model: {leaves}",
            f"choose from those (or use {ALL_LINEAR!r}; a dotted suffix such as 'attention.output.dense' picks one "
            f"of several layers with the same name){suggestion}")
    return target_modules


def check_target_modules(model: torch.nn.Module, target_modules: list[str] | str) -> None:
    """Check ``target_modules`` against ``model``'s linear layers, before peft sees them.

    Raises:
        InputError: see :func:`check_target_names`; for a family in
            :data:`utils.models.architectures.ARCHITECTURES` the fix also gives the targets its row lists.
    """
    if is_all_linear(target_modules):
        return
    suggestion = ""
    try:
        row = architecture_of(model)
        suggestion = (f"; for this model family (model_type {model.config.model_type!r}) the course's architecture "
                      f"table gives {list(row.lora_targets)}: set TARGET_MODULES (--target-modules) to those")
    except (KeyError, AttributeError):
        pass
    check_target_names(target_modules, linear_module_names(model, full=True), type(model).__name__, suggestion)


def add_lora(
    model: torch.nn.Module,
    rank: int,
    alpha: float,
    target_modules: list[str] | str = ALL_LINEAR,
    dropout: float = 0.0,
    task_type: str | None = None,
    modules_to_save: list[str] | None = None,
    use_rslora: bool = False,
    gradient_checkpointing: bool = False,
) -> PeftModel:
    """Freeze ``model`` and wrap it with LoRA adapters (scaling alpha/r, or alpha/sqrt(r) with rsLoRA).

    A 4-bit model (``model.is_loaded_in_4bit``) first goes through peft's
    ``prepare_model_for_kbit_training`` (norms and head in fp32, input grads for checkpointing).

    Args:
        rank, alpha, dropout: LoRA hyper-parameters (checked by :func:`check_lora_args`).
        target_modules: a list of leaf names of linear layers (or dotted suffixes), or ``"all-linear"`` (also as
            ``["all-linear"]``); checked by :func:`check_target_modules`.
        task_type: peft task type, e.g. ``"CAUSAL_LM"`` or ``"SEQ_CLS"``.
        modules_to_save: modules trained in full and saved with the adapter (e.g. ``["classifier"]``).

    Raises:
        InputError: a bad rank, alpha or dropout (:func:`check_lora_args`) or target list
            (:func:`check_target_modules`), before the model is changed.
    """
    check_lora_args(rank, alpha, dropout)
    check_target_modules(model, target_modules)
    target_modules = ALL_LINEAR if is_all_linear(target_modules) else list(target_modules)
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        set_activation_checkpointing(model, True)
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
        task_type=task_type, modules_to_save=modules_to_save, use_rslora=use_rslora, bias="none",
    )
    return get_peft_model(model, config)


def safetensors_shapes(path: str | Path, fix: str = _REMAKE) -> dict[str, list[int]]:
    """The tensor shapes a ``.safetensors`` file holds, read from its header (no tensor is loaded), after checking that
    the file is whole: an 8-byte header length, a JSON header, and as many bytes as the header's last tensor ends at.

    Raises:
        AdapterFileError: the file is missing.
        InputError: it is truncated or not a safetensors file (naming the file, the bytes it holds and the bytes its
            header describes), with ``fix``.
    """
    path = Path(path)
    if not path.is_file():
        raise AdapterFileError(*input_error(str(path), "the file is missing" if not path.exists() else
                                            "is a folder, not a file", fix).args)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else None
        if length is None or length > size - 8:
            raise input_error(str(path), f"the file is truncated or not a safetensors file ({size} bytes"
                              + (f", its header alone claims {length} bytes" if length is not None else "") + ")", fix)
        try:
            header = json.loads(handle.read(length))
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
            shapes = {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise input_error(str(path), "the file's header is not a safetensors header (damaged)", fix) from None
    needed = 8 + length + max(ends, default=0)
    if size < needed:
        raise input_error(str(path), f"the file is truncated: it holds {size:,} bytes, its header describes "
                          f"{needed:,} (its last tensors are cut off)", fix)
    return shapes


def check_adapter(folder: str | Path, model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Check a saved LoRA adapter before peft reads it: ``adapter_config.json`` is there, valid JSON and names a
    positive rank ``r``; ``adapter_model.safetensors`` is there and whole (:func:`safetensors_shapes`); every LoRA
    weight's shape fits ``r`` (``lora_A``: r rows, ``lora_B``: r columns; per layer with a ``rank_pattern``); with
    ``model`` (the ``PeftModel`` :func:`load_adapter` fills), every saved tensor is one of its adapter tensors, of
    its shape. Returns the adapter's config (a dict); without ``model``, ``adapter_config.json`` is required.

    Raises:
        AdapterFileError: ``folder`` or one of its two files is missing (an InputError and a FileNotFoundError).
        InputError: a truncated or damaged file, or weights that do not fit the config (an ``r`` edited by hand) or
            the model; each names the file and the fix (re-train, restore or re-export it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AdapterFileError(*input_error(str(folder), "no such adapter folder" if not folder.exists() else
                                            "is a file, not an adapter folder", "point to the folder the adapter was "
                                            f"saved in (it holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})").args)
    config_file, weights_file = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    config: dict[str, Any] = {}
    if config_file.is_file() or model is None:
        if not config_file.is_file():
            raise AdapterFileError(*input_error(str(folder), f"it holds no {ADAPTER_CONFIG}, so it is not a saved LoRA "
                                                "adapter", "point to the folder the adapter was saved in, or " + _REMAKE
                                                ).args)
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise input_error(str(config_file), "the file is not UTF-8 text (damaged)", _REMAKE) from None
        except json.JSONDecodeError as err:
            raise input_error(str(config_file), f"the file is not valid JSON ({err.msg}, line {err.lineno}, column "
                              f"{err.colno}; it holds {len(config_file.read_bytes()):,} bytes): it was cut off or "
                              "edited", _REMAKE) from None
        rank = config.get("r") if isinstance(config, dict) else None
        if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
            raise input_error(str(config_file), f"it gives no LoRA rank: 'r' is {rank!r}, not a positive integer",
                              "restore the file (r is the rank the adapter was trained with: the lora_A weights' "
                              "rows), or " + _REMAKE)
    shapes = safetensors_shapes(weights_file)
    if config:
        pattern = config.get("rank_pattern") or {}
        for name, shape in shapes.items():
            part = "lora_A" if ".lora_A." in name else "lora_B" if ".lora_B." in name else None
            if part is None or len(shape) != 2:
                continue
            rank = next((r for key, r in pattern.items() if re.search(rf"(^|\.){re.escape(key)}\.lora_", name)),
                        config["r"])
            held = shape[0] if part == "lora_A" else shape[1]
            if held != rank:
                raise input_error(str(config_file), f"r={rank} does not fit the weights in {ADAPTER_WEIGHTS}: {name} "
                                  f"has shape {shape}, so the adapter was trained with r={held}",
                                  f"set 'r' back to {held} in {ADAPTER_CONFIG} (or restore the file), or " + _REMAKE)
    if model is not None:
        from peft import get_peft_model_state_dict

        expected = {k: list(v.shape) for k, v in get_peft_model_state_dict(model).items()}
        unknown = sorted(set(shapes) - set(expected))
        if unknown:
            raise input_error(str(weights_file), f"it holds tensors the model has no place for, e.g. {unknown[:3]} "
                              f"(the model's adapter tensors: e.g. {sorted(expected)[:3]})", "load it onto the model it "
                              "was trained with (the same base, targets and method), or " + _REMAKE)
        for name, shape in shapes.items():
            if shape != expected[name]:
                raise input_error(str(weights_file), f"{name} has shape {shape}, but the model's has "
                                  f"{expected[name]}: the adapter was trained with other settings (rank, targets)",
                                  "rebuild the model with the adapter's own settings (its rank r), or " + _REMAKE)
    return config


def load_adapter(base: str | Path | torch.nn.Module, folder: str | Path, quantization: Any = None, *,
                 dtype: torch.dtype | None = None) -> PeftModel:
    """The LoRA adapter saved in ``folder`` (peft's ``save_pretrained``: ``adapter_config.json`` and
    ``adapter_model.safetensors``, with any ``modules_to_save`` such as a classification head) on its base model,
    in eval mode.

    Args:
        base: the base model's Hub id or folder: loaded as a causal LM (:func:`~utils.models.loading.load_model`;
            4-bit with ``quantization``, the other tensors in ``dtype``, default the compute dtype) and the adapter
            attached as its ``adapter_config.json`` describes (``PeftModel.from_pretrained``, unmerged); or a
            ``PeftModel`` already built with the adapter's settings (:func:`add_lora`, as training built it), whose
            adapter weights are replaced by the saved ones (``set_peft_model_state_dict``).
        quantization, dtype: how to load ``base`` when it is a name; None with a model.

    Raises:
        ValueError: ``quantization`` or ``dtype`` given with a model, or a model that is not a ``PeftModel``.
        InputError: before the base model is loaded, what :func:`check_adapter` finds: a missing file
            (:class:`AdapterFileError`, also a ``FileNotFoundError``), a truncated or damaged ``adapter_config.json``
            or ``adapter_model.safetensors``, an ``r`` that does not fit the weights, weights that do not fit the
            model; and a base model folder that does not exist (:func:`~utils.models.loading.check_model_path`).
    """
    if isinstance(base, torch.nn.Module):
        if quantization is not None or dtype is not None:
            raise ValueError("load_adapter: quantization and dtype apply when base is a model id or folder; the "
                             "model given is already loaded")
        if not isinstance(base, PeftModel):
            raise ValueError(f"load_adapter: base is a {type(base).__name__}, not a PeftModel; pass the base "
                             "model's id or folder (the adapter is attached as saved), or the model add_lora built")
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        check_adapter(folder, base)
        set_peft_model_state_dict(base, load_file(Path(folder) / ADAPTER_WEIGHTS))
        return base.eval()
    from transformers import AutoModelForCausalLM

    check_adapter(folder)
    model = load_model(str(base), AutoModelForCausalLM, quantization, dtype=dtype)
    return PeftModel.from_pretrained(model, str(folder)).eval()


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts (a 4-bit weight counts as its number of weights)."""
    trainable = total = 0
    for p in model.parameters():
        n = weight_count(p)
        total += n
        if p.requires_grad:
            trainable += n
    return {"trainable": trainable, "total": total}


def weight_count(p: torch.Tensor) -> int:
    """How many weights a parameter holds: its element count, or for a bitsandbytes 4-bit weight (stored two
    codes per byte) the element count of the matrix it quantized (``quant_state.shape``)."""
    state = getattr(p, "quant_state", None)
    if type(p).__name__ == "Params4bit" or state is not None:
        return state.shape.numel() if state is not None else 2 * p.numel()
    return p.numel()
