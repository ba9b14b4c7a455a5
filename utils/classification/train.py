"""One training run with ``transformers.Trainer`` (the best epoch on validation kept), its scores on the test
split, and prediction on new text."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from transformers import DataCollatorWithPadding

from utils import progress
from utils.bnb_cpu import keep_4bit_trainable
from utils.classification.data import _check_texts, encode_labels, label_names
from utils.classification.model import save_trained, tokenize
from utils.memory import model_storage_bytes, track_peak
from utils.models import mixed_precision
from utils.models.adapters import count_parameters


# ------------------------------------------------------------------------------------- training
@dataclass
class RunResult:
    """What one training run measured.

    ``peak_bytes``: on a GPU the peak of allocated tensors during training; on the CPU the process's
    peak resident memory so far (it never goes down, so on CPU compare ``model_bytes`` instead).
    ``adapter_bytes``: bytes on disk of what was saved (adapter + head, or the trained layers).
    ``confusion[i][j]``: test rows of true class i predicted as class j.
    """

    accuracy: float
    macro_f1: float
    trainable_params: int
    total_params: int
    seconds: float
    peak_bytes: int
    adapter_bytes: int | None
    confusion: list[list[int]]
    loss_history: list[float]
    model_bytes: int = 0  # parameter + buffer storage of the model (4-bit weights count packed)
    predictions: list[int] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch kept (best validation macro-F1); None without a validation split
    validation_history: list[float] = field(default_factory=list)  # validation macro-F1 after each epoch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, tokenizer: Any, texts: list[str], *, max_length: int,
                   batch_size: int = 64) -> np.ndarray:
    """The head's outputs for ``texts``: float32 array of shape ``(len(texts), num_labels)``, in input order.

    Texts are batched by length (less padding) and truncated to ``max_length`` tokens; the model is left in
    the train/eval mode it came in.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[np.ndarray] = [np.empty(0)] * len(texts)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in chunk], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt").to(device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                logits = model(**batch).logits.float().cpu().numpy()
            for i, row in zip(chunk, logits, strict=True):
                out[i] = row
    finally:
        model.train(was_training)
    return np.stack(out)


def scores(truth: list[int] | np.ndarray, predicted: list[int] | np.ndarray, num_labels: int) -> dict[str, float]:
    """``{"accuracy", "macro_f1"}`` of integer predictions (every class ``0..num_labels-1`` counts in the mean)."""
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", labels=list(range(num_labels)),
                                       zero_division=0))}


class _BestOnValidation(transformers.TrainerCallback):
    """After every epoch: score the validation split; keep a copy of the trainable tensors of the best epoch."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, split: datasets.Dataset, max_length: int,
                 batch_size: int, num_labels: int) -> None:
        self.model, self.tokenizer, self.split = model, tokenizer, split
        self.max_length, self.batch_size, self.num_labels = max_length, batch_size, num_labels
        self.history: list[float] = []  # validation macro-F1 after each epoch
        self.best_epoch, self.best_state, self.seconds = 0, None, 0.0

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import time

        start = time.perf_counter()
        logits = predict_logits(self.model, self.tokenizer, self.split["text"], max_length=self.max_length,
                                batch_size=self.batch_size)
        f1 = scores(self.split["label"], logits.argmax(-1), self.num_labels)["macro_f1"]
        self.history.append(f1)
        if f1 > max(self.history[:-1], default=-1.0):
            self.best_epoch = len(self.history)
            self.best_state = {n: p.detach().to("cpu", copy=True) for n, p in self.model.named_parameters()
                               if p.requires_grad}
        self.seconds += time.perf_counter() - start

    def restore_best(self) -> None:
        """Put the best epoch's trainable tensors back into the model."""
        if self.best_state is None:
            return
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                if name in self.best_state:
                    param.copy_(self.best_state[name].to(param.device))


def train_and_evaluate(
    model: torch.nn.Module,
    tokenizer: Any,
    dataset: datasets.DatasetDict,
    *,
    epochs: float,
    lr: float,
    batch_size: int,
    max_length: int,
    seed: int,
    output_dir: str | Path,
    optimizer: str = "paged_adamw_8bit",
) -> RunResult:
    """Train on ``dataset["train"]`` with ``transformers.Trainer``, score ``dataset["test"]``, save.

    Args:
        dataset: ``train`` and ``test`` splits (:func:`load_labelled`), and optionally ``validation``
            (:func:`hold_out_validation`): then the model is scored on it after every epoch and the epoch with
            the best validation macro-F1 is the one kept, scored on ``test`` and saved (early stopping chosen
            on validation, never on test).
        epochs, lr, batch_size: the training budget (linear decay, no warm-up, no weight decay).
        max_length: tokens per text (longer texts are truncated).
        seed: seeds the data order and dropout (the head was seeded by :func:`load_classifier`).
        output_dir: where the trained part is saved (see :func:`save_trained`); a folder that already holds
            files is refused, so an earlier run is never overwritten. The Trainer keeps no checkpoints.
        optimizer: a ``TrainingArguments.optim`` name; QLoRA's paged 8-bit AdamW by default.

    Returns:
        A :class:`RunResult`: accuracy and macro-F1 on the test split, parameter counts, training
        wall time (validation scoring excluded) and peak memory (``utils.memory.track_peak``), size on disk of
        what was saved, and with a validation split the kept epoch and the validation macro-F1 of every epoch.

    Raises:
        FileExistsError: ``output_dir`` already holds files.
    """
    _check_empty_folder(output_dir)
    num_labels = len(label_names(dataset))
    encoded = tokenize(datasets.DatasetDict({"train": dataset["train"]}), tokenizer, max_length)
    steps = math.ceil(len(encoded["train"]) / batch_size) * epochs
    args = transformers.TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=epochs, learning_rate=lr,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=2 * batch_size,
        optim=optimizer, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
        seed=seed, data_seed=seed, logging_steps=max(1, int(steps // 40)), save_strategy="no",
        eval_strategy="no", report_to="none", **mixed_precision("auto"),
        remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning needs a GPU (torch warns on a CPU)
    )
    keep_4bit_trainable(model)  # undo any CPU inference repacking an earlier eval pass did (utils.bnb_cpu)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=encoded["train"],
                                   data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    best = None
    if "validation" in dataset:
        best = _BestOnValidation(model, tokenizer, dataset["validation"], max_length, 2 * batch_size, num_labels)
        trainer.add_callback(best)
    progress.quiet(trainer, bar=False)  # no per-run table or log lines: callers show one bar over their runs
    with track_peak() as peak:
        trainer.train()
    if best is not None:
        best.restore_best()
    logits = predict_logits(model, tokenizer, dataset["test"]["text"], max_length=max_length,
                            batch_size=2 * batch_size)
    predicted = logits.argmax(-1)
    truth = np.asarray(dataset["test"]["label"])
    counts = count_parameters(model)
    return RunResult(
        **scores(truth, predicted, num_labels),
        trainable_params=counts["trainable"], total_params=counts["total"],
        seconds=peak.seconds - (best.seconds if best else 0.0), peak_bytes=peak.bytes,
        adapter_bytes=save_trained(model, output_dir),
        confusion=confusion_matrix(truth, predicted, labels=list(range(num_labels))).tolist(),
        loss_history=[float(e["loss"]) for e in trainer.state.log_history if "loss" in e],
        model_bytes=model_storage_bytes(model)["total"],
        predictions=predicted.tolist(),
        best_epoch=best.best_epoch if best else None,
        validation_history=best.history if best else [],
    )


def _check_empty_folder(folder: str | Path) -> None:
    """Refuse to write a run into a folder that already holds files (an earlier run's results)."""
    path = Path(folder)
    if path.is_dir() and any(path.iterdir()):
        raise FileExistsError(f"{path} already holds files of an earlier run; nothing was overwritten. Pass a new "
                              "folder (utils.classification.new_run_folder gives one), or delete this one yourself.")


def new_run_folder(root: str | Path, dataset: str) -> Path:
    """A new, empty folder ``root/<dataset name>/run<k>`` (k = 1, 2, ...) for one notebook run's classifiers.

    Runs on different data go to different folders, and a second run on the same data to the next ``run<k>``:
    nothing saved earlier is overwritten.
    """
    name = Path(str(dataset).rstrip("/")).stem if Path(str(dataset)).suffix else str(dataset).rstrip("/")
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name.rsplit("/", 1)[-1]).strip("-.") or "data"
    parent = Path(root) / slug
    parent.mkdir(parents=True, exist_ok=True)
    k = 1
    while True:
        folder = parent / f"run{k}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            k += 1


# ----------------------------------------------------------------------------------- prediction
def classify(texts: list[str], model: torch.nn.Module, tokenizer: Any, id2label: dict[int, str],
             max_length: int = 512, batch_size: int = 64) -> list[dict[str, Any]]:
    """Predict each text's class: ``[{"label": name, "probs": {name: probability}}]`` (probs sum to 1).

    Texts go through the model ``batch_size`` at a time (:func:`predict_logits`), so a long list fits in memory.

    Raises:
        TypeError: ``texts`` is a bare string or holds non-strings. ValueError: empty list or empty text.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings; wrap a single text as [text].")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: give at least one text to classify.")
    _check_texts(texts, "classify(texts)")
    id2label = {int(k): v for k, v in id2label.items()}
    model.eval()
    logits = torch.from_numpy(predict_logits(model, tokenizer, texts, max_length=max_length, batch_size=batch_size))
    probs = torch.softmax(logits, dim=-1)
    names = [id2label[i] for i in range(probs.shape[-1])]
    return [{"label": names[int(row.argmax())], "probs": dict(zip(names, row.tolist(), strict=True))}
            for row in probs]


def score(texts: list[str], labels: list[str], model: torch.nn.Module, tokenizer: Any,
          id2label: dict[int, str]) -> dict[str, float]:
    """Accuracy and macro-F1 of ``model`` on new labelled texts (labels by name, all seen in training)."""
    names = [id2label[i] for i in sorted(id2label)]
    truth = encode_labels(labels, names)
    predicted = [names.index(p["label"]) for p in classify(texts, model, tokenizer, id2label)]
    return scores(truth, predicted, len(names))
