"""Attaching peft LoRA adapters to a (4-bit or 16/32-bit) model, with the arguments checked first.

Every notebook that fine-tunes goes through :func:`add_lora`, so a rank of 0 or a target module
that does not exist fails the same clear way everywhere.
"""

from __future__ import annotations

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

from utils.models.architectures import architecture_of
from utils.models.loading import set_activation_checkpointing

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


def check_lora_args(rank: int, alpha: float, dropout: float = 0.0) -> None:
    """Raise ValueError unless ``rank`` is a positive integer, ``alpha`` > 0 and 0 <= ``dropout`` < 1."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ValueError(f"LoRA rank must be a positive integer (e.g. 8), got {rank!r}.")
    if not alpha > 0:
        raise ValueError(f"LoRA alpha must be > 0 (common choices: alpha = r or 2r), got {alpha!r}.")
    if not 0 <= dropout < 1:
        raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout!r}.")


def check_target_names(target_modules: list[str] | str, available: list[str], model_name: str) -> list[str]:
    """``target_modules`` as a list; ValueError naming the layer names if it is empty or one of its names matches
    none of ``available`` (the model's linear layers: leaf or full dotted names, see :func:`matches_target`)."""
    if isinstance(target_modules, str):
        target_modules = [target_modules]
    target_modules = list(target_modules)
    if not target_modules:
        raise ValueError("target_modules is empty: name at least one linear layer, or use 'all-linear'.")
    unknown = [t for t in target_modules if not any(matches_target(name, t) for name in available)]
    if unknown:
        leaves = sorted({name.rsplit(".", 1)[-1] for name in available})
        raise ValueError(
            f"target module(s) {unknown} match no linear layer of {model_name}. "
            f"Linear layers in this model: {leaves} (or use 'all-linear'; a dotted suffix such as "
            "'attention.output.dense' picks one of several layers with the same name)."
        )
    return target_modules


def check_target_modules(model: torch.nn.Module, target_modules: list[str] | str) -> None:
    """Raise ValueError naming the linear layers that exist if a target matches none of them (and, for a
    family in :data:`utils.models.architectures.ARCHITECTURES`, the targets its row gives)."""
    if target_modules == ALL_LINEAR:
        return
    try:
        check_target_names(target_modules, linear_module_names(model, full=True), type(model).__name__)
    except ValueError as err:
        try:
            row = architecture_of(model)
        except KeyError:
            raise err from None
        raise ValueError(f"{err} For this model family (model_type {model.config.model_type!r}) the course's "
                         f"architecture table gives {list(row.lora_targets)}: set TARGET_MODULES "
                         "(--target-modules) to those.") from None


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
        target_modules: leaf names of linear layers, or ``"all-linear"``.
        task_type: peft task type, e.g. ``"CAUSAL_LM"`` or ``"SEQ_CLS"``.
        modules_to_save: modules trained in full and saved with the adapter (e.g. ``["classifier"]``).
    """
    check_lora_args(rank, alpha, dropout)
    check_target_modules(model, target_modules)
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        set_activation_checkpointing(model, True)
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
        task_type=task_type, modules_to_save=modules_to_save, use_rslora=use_rslora, bias="none",
    )
    return get_peft_model(model, config)


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
