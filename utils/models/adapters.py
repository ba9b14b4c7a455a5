"""Attaching peft LoRA adapters to a (4-bit or 16/32-bit) model, with the arguments checked first, and loading
a saved one back.

Every notebook that fine-tunes goes through :func:`add_lora`, so a rank of 0 or a target module
that does not exist fails the same clear way everywhere: with :class:`utils.errors.InputError`, before peft is
called (peft would fail later, or silently match nothing). Every saved adapter (QA's and classification's, both
peft's ``save_pretrained`` folders) is loaded back by :func:`load_adapter`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

from utils.errors import input_error
from utils.models.architectures import architecture_of
from utils.models.loading import load_model, set_activation_checkpointing

# shorthand target sets; "all-linear" is peft's own keyword (every linear layer but the output head)
ALL_LINEAR = "all-linear"
CLASSIFIER_HEADS = ("classifier", "score")  # sequence-classification heads: new, trained, never 4-bit
OUTPUT_HEADS = (*CLASSIFIER_HEADS, "lm_head")  # output layers that "all-linear" and the quantizers leave alone


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
        ValueError: ``quantization`` or ``dtype`` given with a model, or a model that is not a ``PeftModel``; with a
            name, peft's own error for a ``folder`` without ``adapter_config.json``.
        FileNotFoundError: with a model, ``folder`` has no ``adapter_model.safetensors``.
        SafetensorError: the weights file is corrupt (and peft's or torch's errors for weights that do not fit).
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

        set_peft_model_state_dict(base, load_file(Path(folder) / "adapter_model.safetensors"))
        return base.eval()
    from transformers import AutoModelForCausalLM

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
