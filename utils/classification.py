"""Text classification with a pretrained encoder or LLM: your data, four fine-tuning methods, one loop.

Shared by notebook 03 (LoRA rank ablation) and notebook 06 (head only vs last N layers vs LoRA vs
QLoRA). The steps, each a function:

1. :func:`load_labelled` reads a CSV/JSONL file (or a Hub dataset) with a text and a label column,
   checks it, maps labels to ids and splits it (stratified) into ``train``/``test``.
2. :func:`load_classifier` loads ``AutoModelForSequenceClassification`` with a new head and makes
   only the part that a method trains trainable (:data:`METHODS`).
3. :func:`train_and_evaluate` trains with ``transformers.Trainer``, scores the test split, saves what
   was trained and returns a :class:`RunResult`.
4. :func:`load_saved` + :func:`classify` predict labels and probabilities for new text.

The new classification head (``classifier`` in BERT-like models, ``score`` in decoder LLMs such as
Phi-2) is always trained in fp32 and never quantized: it starts from random numbers, so there are no
pretrained weights whose distribution NF4 was designed for, and it is small, so quantizing it saves
nothing while costing precision on the one layer that learns the most.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from utils import progress
from utils.bnb_cpu import keep_4bit_trainable
from utils.memory import model_storage_bytes, track_peak
from utils.models import bnb_4bit_config, load_model, mixed_precision, resolve_model_path
from utils.models.adapters import CLASSIFIER_HEADS, add_lora, count_parameters
from utils.report import REPO_ROOT

SMOKE_DATA = REPO_ROOT / "data" / "labelled" / "support_tickets.csv"

# method -> what it trains (the rest of the model stays frozen)
METHODS = {
    "head": "the new classification head only (frozen 16/32-bit base)",
    "last_n": "the head + the last N transformer blocks (frozen rest, 16/32-bit base)",
    "lora": "the head + LoRA adapters on a frozen 16-bit base (32-bit on CPU)",
    "qlora": "the head + LoRA adapters on a frozen 4-bit NF4 base (double quantization)",
}
SPEC_FILE = "classifier_spec.json"


# ----------------------------------------------------------------------------------------- data
def _read_source(source: str | Path) -> datasets.DatasetDict:
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".json", ".jsonl"):
        if not path.is_file():
            raise FileNotFoundError(f"No data file at {path}. Give a CSV or JSONL path, or a Hub dataset id.")
        with progress.no_library_bars():  # a local file loads in a second: its "Generating split" bar is noise
            if suffix in (".csv", ".tsv"):
                return datasets.load_dataset("csv", data_files=str(path), delimiter="\t" if suffix == ".tsv" else ",")
            return datasets.load_dataset("json", data_files=str(path))
    loaded = datasets.load_dataset(str(source))  # a Hub dataset id, e.g. "fancyzhx/ag_news" (needs network)
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def _check_texts(texts: list[Any], where: str) -> None:
    for i, text in enumerate(texts):
        if text is None or (isinstance(text, str) and not text.strip()):
            raise ValueError(f"{where}: row {i} has an empty text. Drop or fill empty rows first.")
        if not isinstance(text, str):
            raise TypeError(
                f"{where}: row {i} holds a {type(text).__name__} ({text!r}), not a string. "
                "Texts must be strings: pick the right text column or convert it with str()."
            )


def load_labelled(
    source: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    test_size: float = 0.25,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Load labelled text into ``{"train", "test"}`` with columns ``text`` (str) and ``label`` (int id).

    Args:
        source: a ``.csv``/``.tsv``/``.json``/``.jsonl`` file, or a Hub dataset id (``"fancyzhx/ag_news"``).
        text_column, label_column: the columns holding the text and its label (any names).
        test_size: share of rows held out for ``test`` when the source has no ``test`` split
            (the split is stratified: every class keeps its share in both parts).
        seed: seed of the split.

    The label names (sorted, or the dataset's own ``ClassLabel`` names) are kept in the ``label``
    feature: :func:`label_names` reads them back.

    Raises:
        ValueError: unknown column (the existing ones are listed), fewer than 2 classes, an empty
            text or label, a bad ``test_size``. TypeError: a text that is not a string.
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}.")
    raw = _read_source(source)
    for split_name, split in raw.items():
        for role, column in (("text_column", text_column), ("label_column", label_column)):
            if column not in split.column_names:
                raise ValueError(
                    f"{role}={column!r} is not a column of {source} ({split_name}); "
                    f"columns: {split.column_names}."
                )
    feature = raw[next(iter(raw))].features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        to_id = {i: i for i in range(len(names))}
    else:
        values = set()
        for split_name, split in raw.items():
            for i, value in enumerate(split[label_column]):
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise ValueError(f"{source} ({split_name}): row {i} has an empty label.")
                values.add(value)
        ordered = sorted(values) if len({type(v) for v in values}) == 1 else sorted(values, key=str)
        names = [str(v) for v in ordered]  # ints stay in numeric order (2 before 10)
        to_id = {v: names.index(str(v)) for v in values}
    present = {v for split in raw.values() for v in split[label_column]}
    if len(present) < 2:
        raise ValueError(
            f"label_column={label_column!r} holds {len(present)} class ({sorted(map(str, present))}); "
            "a classifier needs at least 2 classes."
        )
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    parts = {}
    for split_name, split in raw.items():
        texts = split[text_column]
        _check_texts(texts, f"{source} ({split_name}, column {text_column!r})")
        labels = [to_id[v] for v in split[label_column]]
        parts[split_name] = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)
    if "train" in parts and "test" in parts:
        return datasets.DatasetDict({"train": parts["train"], "test": parts["test"]})
    everything = datasets.concatenate_datasets(list(parts.values()))
    return everything.train_test_split(test_size=test_size, stratify_by_column="label", seed=seed)


def label_names(dataset: datasets.DatasetDict | datasets.Dataset) -> list[str]:
    """Class names in id order (``label_names(ds)[i]`` is the name of id ``i``)."""
    split = dataset["train"] if isinstance(dataset, datasets.DatasetDict) else dataset
    return list(split.features["label"].names)


def class_balance(dataset: datasets.DatasetDict) -> dict[str, dict[str, int]]:
    """``{split: {class name: number of rows}}``."""
    names = label_names(dataset)
    return {split: {names[i]: int(n) for i, n in enumerate(np.bincount(part["label"], minlength=len(names)))}
            for split, part in dataset.items()}


def subsample(dataset: datasets.DatasetDict, train_size: int, test_size: int, seed: int = 0) -> datasets.DatasetDict:
    """A stratified subset (e.g. 2,000 of AG News' 120,000 training rows), same class shares."""
    out = {}
    for split, n in (("train", train_size), ("test", test_size)):
        part = dataset[split]
        out[split] = part if n >= len(part) else part.train_test_split(
            train_size=n, stratify_by_column="label", seed=seed)["train"]
    return datasets.DatasetDict(out)


def encode_labels(labels: list[str], names: list[str]) -> list[int]:
    """Label names -> ids of a trained model; a name the model never saw is a ValueError."""
    unknown = sorted({str(x) for x in labels} - set(names))
    if unknown:
        raise ValueError(f"label(s) {unknown} were never seen in training; this model knows {names}.")
    return [names.index(str(x)) for x in labels]


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
        method: one of :data:`METHODS`: ``"head"``, ``"last_n"``, ``"lora"``, ``"qlora"``.
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
    if method in ("head", "last_n"):
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    """Rebuild a model saved by :func:`train_and_evaluate`: ``(model, tokenizer, id2label)``."""
    path = Path(path)
    if not (path / SPEC_FILE).is_file():
        raise FileNotFoundError(f"{path} holds no {SPEC_FILE}: save with train_and_evaluate(..., output_dir).")
    spec = json.loads((path / SPEC_FILE).read_text())
    id2label = {int(k): v for k, v in spec.pop("id2label").items()}
    model_id, num_labels, method = spec.pop("model_id"), spec.pop("num_labels"), spec.pop("method")
    model, tokenizer = load_classifier(model_id, num_labels, method, id2label=id2label, **spec)
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"))
    else:
        state = load_file(path / "trainable.safetensors")
        missing = set(state) - {n for n, _ in model.named_parameters()}
        if missing:
            raise ValueError(f"saved tensors {sorted(missing)[:5]} do not fit {model_id} ({method}).")
        model.load_state_dict(state, strict=False)
    return model.eval(), tokenizer, id2label


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
        epochs, lr, batch_size: the training budget (linear decay, no warm-up, no weight decay).
        max_length: tokens per text (longer texts are truncated).
        seed: seeds the data order and dropout (the head was seeded by :func:`load_classifier`).
        output_dir: where the trained part is saved (see :func:`save_trained`); the Trainer keeps no checkpoints.
        optimizer: a ``TrainingArguments.optim`` name; QLoRA's paged 8-bit AdamW by default.

    Returns:
        A :class:`RunResult`: accuracy and macro-F1 on the test split, parameter counts, training
        wall time and peak memory (``utils.memory.track_peak``), size on disk of what was saved.
    """
    encoded = tokenize(dataset, tokenizer, max_length)
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
    progress.quiet(trainer, bar=False)  # no per-run table or log lines: callers show one bar over their runs
    with track_peak() as peak:
        trainer.train()
    logits = trainer.predict(encoded["test"]).predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    predicted = np.asarray(logits).argmax(-1)
    truth = np.asarray(dataset["test"]["label"])
    num_labels = len(label_names(dataset))
    counts = count_parameters(model)
    return RunResult(
        accuracy=float(accuracy_score(truth, predicted)),
        macro_f1=float(f1_score(truth, predicted, average="macro", labels=list(range(num_labels)), zero_division=0)),
        trainable_params=counts["trainable"], total_params=counts["total"],
        seconds=peak.seconds, peak_bytes=peak.bytes,
        adapter_bytes=save_trained(model, output_dir),
        confusion=confusion_matrix(truth, predicted, labels=list(range(num_labels))).tolist(),
        loss_history=[float(e["loss"]) for e in trainer.state.log_history if "loss" in e],
        model_bytes=model_storage_bytes(model)["total"],
        predictions=predicted.tolist(),
    )


def majority_baseline(dataset: datasets.DatasetDict) -> dict[str, float]:
    """Accuracy and macro-F1 on ``test`` of always predicting the most frequent ``train`` class."""
    train = np.asarray(dataset["train"]["label"])
    truth = np.asarray(dataset["test"]["label"])
    predicted = np.full_like(truth, np.bincount(train).argmax())
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro",
                                       labels=list(range(len(label_names(dataset)))), zero_division=0))}


def tfidf_baseline(dataset: datasets.DatasetDict, seed: int = 0) -> dict[str, float]:
    """The classical model a practitioner tries first: TF-IDF features of word unigrams and bigrams
    (sublinear term frequency) and a logistic regression, fit on ``train``, scored on ``test`` with the
    same metrics as the fine-tuned models. No pretrained weights, no GPU; deterministic for a ``seed``.

    Returns:
        ``{"accuracy", "macro_f1", "features", "seconds"}``.
    """
    import time

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform(dataset["train"]["text"])
    model = LogisticRegression(max_iter=2000, random_state=seed).fit(features, dataset["train"]["label"])
    predicted = model.predict(vectorizer.transform(dataset["test"]["text"]))
    truth = np.asarray(dataset["test"]["label"])
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro",
                                       labels=list(range(len(label_names(dataset)))), zero_division=0)),
            "features": int(features.shape[1]), "seconds": time.perf_counter() - start}


def verdict_against(mean: float, std: float, reference: float, k: float = 2.0) -> str:
    """Compare a score measured over seeds (``mean`` ± ``std``) with a single ``reference`` score: ``"beats"``
    or ``"falls short of"`` when the gap exceeds ``k`` standard deviations, else ``"is level with"``."""
    if std < 0 or k <= 0:
        raise ValueError(f"std must be >= 0 and k > 0, got std={std}, k={k}.")
    gap = mean - reference
    return "beats" if gap > k * std else "falls short of" if -gap > k * std else "is level with"


def compare_over_seeds(a: str, mean_a: float, std_a: float, b: str, mean_b: float, std_b: float,
                       k: float = 2.0) -> str:
    """Compare two configurations measured over seeds: ``"<a or b> better by <gap>"`` when their means differ by
    more than ``k`` times the larger standard deviation, else ``"within seed noise"`` (the rule
    :func:`verdict_against` applies against a single reference score)."""
    if std_a < 0 or std_b < 0 or k <= 0:
        raise ValueError(f"stds must be >= 0 and k > 0, got std_a={std_a}, std_b={std_b}, k={k}.")
    if math.isnan(std_a) or math.isnan(std_b):  # pandas' std of a single seed
        return "not comparable (no seed spread: run at least 2 seeds)"
    gap = mean_a - mean_b
    if abs(gap) <= k * max(std_a, std_b):
        return "within seed noise"
    return f"{a if gap > 0 else b} better by {abs(gap):.3f}"


# ----------------------------------------------------------------------------------- prediction
@torch.no_grad()
def classify(texts: list[str], model: torch.nn.Module, tokenizer: Any, id2label: dict[int, str],
             max_length: int = 512) -> list[dict[str, Any]]:
    """Predict each text's class: ``[{"label": name, "probs": {name: probability}}]`` (probs sum to 1).

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
    device = next(model.parameters()).device
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
    with torch.autocast(device.type, enabled=device.type == "cuda"):
        logits = model(**batch).logits
    probs = torch.softmax(logits.float(), dim=-1).cpu()
    names = [id2label[i] for i in range(probs.shape[-1])]
    return [{"label": names[int(row.argmax())], "probs": dict(zip(names, row.tolist(), strict=True))}
            for row in probs]


def score(texts: list[str], labels: list[str], model: torch.nn.Module, tokenizer: Any,
          id2label: dict[int, str]) -> dict[str, float]:
    """Accuracy and macro-F1 of ``model`` on new labelled texts (labels by name, all seen in training)."""
    names = [id2label[i] for i in sorted(id2label)]
    truth = encode_labels(labels, names)
    predicted = [names.index(p["label"]) for p in classify(texts, model, tokenizer, id2label)]
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", labels=list(range(len(names))),
                                       zero_division=0))}
