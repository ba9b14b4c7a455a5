"""A pretrained model with a new classification head, made trainable as a method says (:data:`METHODS`), and the
saved form of what was trained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from utils import progress
from utils.models import bnb_4bit_config, load_model, resolve_model_path
from utils.models.adapters import CLASSIFIER_HEADS, add_lora, load_adapter

# method -> what it trains (the rest of the model stays frozen)
METHODS = {
    "head": "the new classification head only (frozen 16/32-bit base)",
    "last_n": "the head + the last N transformer blocks (frozen rest, 16/32-bit base)",
    "full": "every weight of the model and the head (full fine-tuning, 16/32-bit)",
    "lora": "the head + LoRA adapters on a frozen 16-bit base (32-bit on CPU)",
    "qlora": "the head + LoRA adapters on a frozen 4-bit NF4 base (double quantization)",
}
SPEC_FILE = "classifier_spec.json"


# ---------------------------------------------------------------------------------------- model
def head_name(model: torch.nn.Module) -> str:
    """Attribute name of the classification head (``classifier`` or ``score``) of an unwrapped model."""
    for name in CLASSIFIER_HEADS:
        if isinstance(getattr(model, name, None), torch.nn.Module):
            return name
    raise ValueError(f"{type(model).__name__} has no classification head named one of {CLASSIFIER_HEADS}.")


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer blocks (BERT ``encoder.layer``, Phi/Llama ``model.layers``, GPT-2 ``h``)."""
    stacks = [m for name, m in model.named_modules()
              if isinstance(m, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layer", "layers", "h", "blocks")]
    if not stacks:
        raise ValueError(f"found no stack of transformer blocks in {type(model).__name__}.")
    return max(stacks, key=len)


def load_classifier(
    model_id: str,
    num_labels: int,
    method: str,
    *,
    rank: int = 8,
    alpha: float = 16,
    target_modules: list[str] | str = "all-linear",
    use_rslora: bool = False,
    last_n: int = 2,
    seed: int = 0,
    id2label: dict[int, str] | None = None,
) -> tuple[torch.nn.Module, Any]:
    """A pretrained model with a new ``num_labels``-way head, made trainable as ``method`` says.

    Args:
        model_id: Hub id (MiniLM resolves to its packaged copy), e.g. ``"microsoft/phi-2"``.
        num_labels: number of classes (>= 2).
        method: one of :data:`METHODS`: ``"head"``, ``"last_n"``, ``"full"``, ``"lora"``, ``"qlora"``.
        rank, alpha, target_modules, use_rslora: LoRA settings (``lora``/``qlora`` only; rsLoRA scales the
            update by ``alpha / sqrt(rank)`` instead of ``alpha / rank``).
        last_n: how many final transformer blocks ``last_n`` trains.
        seed: seeds the random initialisation of the head (and of LoRA's A matrices).
        id2label: class names, stored in the model config.

    Returns:
        ``(model, tokenizer)``. Trainable parameters are fp32 (the head always is); for decoder
        models without a pad token (Phi-2) the tokenizer pads with EOS and the config knows it.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}.")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
        raise ValueError(f"num_labels must be an integer >= 2, got {num_labels!r}.")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model_id))
    if tokenizer.pad_token is None:  # decoder LLMs (Phi-2) ship without one
        tokenizer.pad_token = tokenizer.eos_token
    id2label = {int(k): str(v) for k, v in (id2label or {i: f"LABEL_{i}" for i in range(num_labels)}).items()}
    if len(id2label) != num_labels:
        raise ValueError(f"id2label has {len(id2label)} names but num_labels={num_labels}.")
    quantization = bnb_4bit_config("nf4", double_quant=True, skip_modules=list(CLASSIFIER_HEADS)) if method == "qlora" else None
    transformers.set_seed(seed)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the load report lists the new head as "missing": it is new by design
    try:
        model = load_model(
            model_id, AutoModelForSequenceClassification, quantization, num_labels=num_labels,
            id2label=id2label, label2id={v: k for k, v in id2label.items()}, pad_token_id=tokenizer.pad_token_id,
        )
    finally:
        transformers.logging.set_verbosity(verbosity)
    head = head_name(model)
    if method == "full":
        model.requires_grad_(True)
    elif method in ("head", "last_n"):
        model.requires_grad_(False)
        getattr(model, head).requires_grad_(True)
        if method == "last_n":
            blocks = transformer_blocks(model)
            if isinstance(last_n, bool) or not isinstance(last_n, int) or not 1 <= last_n <= len(blocks):
                raise ValueError(f"last_n must be an integer in [1, {len(blocks)}] for this model, got {last_n!r}.")
            for block in blocks[-last_n:]:
                block.requires_grad_(True)
    else:
        model = add_lora(model, rank=rank, alpha=alpha, target_modules=target_modules,
                         task_type="SEQ_CLS", modules_to_save=[head], use_rslora=use_rslora)
    for p in model.parameters():  # train in fp32 even on a 16-bit base (GradScaler needs fp32 grads)
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    model.classifier_spec = {"model_id": model_id, "num_labels": num_labels, "method": method, "rank": rank,
                             "alpha": alpha, "target_modules": target_modules, "use_rslora": use_rslora, "last_n": last_n,
                             "id2label": id2label}
    return model, tokenizer


def tokenize(dataset: datasets.DatasetDict, tokenizer: Any, max_length: int) -> datasets.DatasetDict:
    """Token ids (truncated to ``max_length``) and ``labels``; the raw text column is dropped."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}.")
    with progress.no_library_bars():  # a "Map" bar per run is noise (and a frozen widget in a saved notebook)
        encoded = dataset.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
                              batched=True, remove_columns=["text"])
    return encoded.rename_column("label", "labels")


def save_trained(model: torch.nn.Module, output_dir: str | Path) -> int:
    """Save only what was trained (peft adapter + head, or the trainable tensors); return bytes on disk."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(out)
    else:
        trained = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(trained, out / "trainable.safetensors")
    spec = getattr(model, "classifier_spec", None)
    if spec is not None:
        (out / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    return sum(f.stat().st_size for f in out.iterdir() if f.is_file())


def load_saved(path: str | Path) -> tuple[torch.nn.Module, Any, dict[int, str]]:
    """Rebuild a model saved by :func:`train_and_evaluate`: ``(model, tokenizer, id2label)``, in eval mode.

    The run's :data:`SPEC_FILE` (base model, method, LoRA settings, label names) rebuilds the model as
    :func:`load_classifier` built it for training; then a LoRA method's saved adapter and head are loaded into it
    (:func:`utils.models.adapters.load_adapter`, the course's one adapter loader), or the other methods' trained
    tensors (``trainable.safetensors``).

    Raises:
        FileNotFoundError: ``path`` holds no :data:`SPEC_FILE` (or not the weights file its method saves).
        ValueError: saved tensors that the rebuilt model does not have.
    """
    path = Path(path)
    if not (path / SPEC_FILE).is_file():
        raise FileNotFoundError(f"{path} holds no {SPEC_FILE}: save with train_and_evaluate(..., output_dir).")
    spec = json.loads((path / SPEC_FILE).read_text())
    id2label = {int(k): v for k, v in spec.pop("id2label").items()}
    model_id, num_labels, method = spec.pop("model_id"), spec.pop("num_labels"), spec.pop("method")
    model, tokenizer = load_classifier(model_id, num_labels, method, id2label=id2label, **spec)
    if hasattr(model, "peft_config"):
        model = load_adapter(model, path)
    else:
        state = load_file(path / "trainable.safetensors")
        missing = set(state) - {n for n, _ in model.named_parameters()}
        if missing:
            raise ValueError(f"saved tensors {sorted(missing)[:5]} do not fit {model_id} ({method}).")
        model.load_state_dict(state, strict=False)
    return model.eval(), tokenizer, id2label
