"""utils.classification: data loading and checks, the four methods' parameter counts, train/save/predict."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch

from utils import classification as clf
from utils.errors import InputError
from utils.models import MINILM_ID

# all-MiniLM-L6-v2 (BERT, hidden 384, FFN 1536, 6 layers, vocab 30522, 512 positions), counted by hand
H, FFN, LAYERS = 384, 1536, 6
BLOCK = 4 * (H * H + H) + 2 * H + (H * FFN + FFN) + (FFN * H + H) + 2 * H  # attention, 2 LayerNorms, FFN
BASE = (30522 + 512 + 2) * H + 2 * H + LAYERS * BLOCK + (H * H + H)  # embeddings + blocks + pooler


def head(c: int) -> int:
    return H * c + c


@pytest.fixture(scope="module")
def smoke() -> datasets.DatasetDict:
    return clf.load_labelled(clf.SMOKE_DATA, seed=0)


@pytest.fixture(scope="module")
def tiny(smoke):
    """48 train / 15 test rows, stratified: enough for a few optimizer steps."""
    return clf.subsample(smoke, 48, 15, seed=0)


def write_csv(path, rows, header=("text", "label")):
    import csv

    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------ data
def test_smoke_data_is_balanced_and_the_split_stratified(smoke):
    names = clf.label_names(smoke)
    assert names == ["account", "billing", "delivery", "returns", "technical"]
    balance = clf.class_balance(smoke)
    assert balance["train"] == dict.fromkeys(names, 90) and balance["test"] == dict.fromkeys(names, 30)
    assert set(smoke["train"]["text"]).isdisjoint(smoke["test"]["text"])


def test_label_mapping_round_trips(tmp_path):
    rows = [(f"text number {i}", lab) for i, lab in enumerate(["pos", "neg", "neu", "pos", "neg", "neu"] * 4)]
    ds = clf.load_labelled(write_csv(tmp_path / "d.csv", rows), test_size=0.5, seed=1)
    names = clf.label_names(ds)
    assert names == ["neg", "neu", "pos"]
    back = {t: names[i] for split in ds.values() for t, i in zip(split["text"], split["label"], strict=True)}
    assert back == dict(rows)
    assert clf.class_balance(ds)["test"] == {"neg": 4, "neu": 4, "pos": 4}  # stratified: 8 of each -> 4 + 4


def test_stratified_split_keeps_unequal_shares(tmp_path):
    rows = [(f"t{i}", "big") for i in range(60)] + [(f"s{i}", "small") for i in range(20)]
    ds = clf.load_labelled(write_csv(tmp_path / "d.csv", rows), test_size=0.25, seed=3)
    assert clf.class_balance(ds)["test"] == {"big": 15, "small": 5}


def test_jsonl_with_other_column_names_and_integer_labels_in_numeric_order(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"body": f"msg {i}", "y": [2, 10, 7][i % 3]}) + "\n" for i in range(30)))
    ds = clf.load_labelled(path, text_column="body", label_column="y")
    assert clf.label_names(ds) == ["2", "7", "10"]
    assert ds["train"].column_names == ["text", "label"]


def test_a_source_with_its_own_test_split_keeps_it(tmp_path):
    # a folder with train/test files is read like a Hub dataset with two splits (AG News has both)
    (tmp_path / "ds").mkdir()
    write_csv(tmp_path / "ds" / "train.csv", [(f"train {i}", "ab"[i % 2]) for i in range(10)])
    write_csv(tmp_path / "ds" / "test.csv", [(f"test {i}", "ab"[i % 2]) for i in range(4)])
    ds = clf.load_labelled(str(tmp_path / "ds"))
    assert (len(ds["train"]), len(ds["test"])) == (10, 4) and ds["test"]["text"][0] == "test 0"


def test_subsample_is_stratified(smoke):
    small = clf.subsample(smoke, 100, 50, seed=0)
    assert clf.class_balance(small) == {"train": dict.fromkeys(clf.label_names(smoke), 20),
                                        "test": dict.fromkeys(clf.label_names(smoke), 10)}


def test_majority_baseline_by_hand(tmp_path):
    rows = [(f"a{i}", "a") for i in range(30)] + [(f"b{i}", "b") for i in range(10)]
    ds = clf.load_labelled(write_csv(tmp_path / "d.csv", rows), test_size=0.5, seed=0)
    # test: 15 "a" + 5 "b", always "a": accuracy 0.75; F1 of a = 2*15/(2*15+5) = 6/7, of b = 0
    assert clf.majority_baseline(ds) == pytest.approx({"accuracy": 0.75, "macro_f1": 3 / 7})


# ------------------------------------------------------------------------------------ bad input
def test_unknown_column_lists_the_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("hi", "a"), ("yo", "b")], header=("sentence", "label"))
    with pytest.raises(ValueError, match=r"text_column='text' is not a column.*\['sentence', 'label'\]"):
        clf.load_labelled(path)
    with pytest.raises(ValueError, match=r"label_column='category'.*\['sentence', 'label'\]"):
        clf.load_labelled(path, text_column="sentence", label_column="category")


def test_a_single_class_is_an_error(tmp_path):
    path = write_csv(tmp_path / "d.csv", [(f"t{i}", "only") for i in range(10)])
    with pytest.raises(ValueError, match=r"holds 1 class \(\['only'\]\).*at least 2 classes"):
        clf.load_labelled(path)


def test_empty_and_non_string_texts_name_the_row(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("fine", "a"), ("", "b"), ("ok", "a")])
    with pytest.raises(InputError, match=r"d\.csv: line 3 has an empty text"):  # the line in the file
        clf.load_labelled(path)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "fine", "label": "a"}\n{"text": 42, "label": "b"}\n')
    with pytest.raises(InputError, match=r"d\.jsonl: line 2 holds a number \(42\), not a string"):
        clf.load_labelled(jsonl)


def test_missing_file_and_unknown_method(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: no such CSV file"):
        clf.load_labelled(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match=r"method must be one of \['head', 'last_n', 'full', 'lora', 'qlora'\]"):
        clf.load_classifier(MINILM_ID, 3, "everything")
    with pytest.raises(ValueError, match=r"last_n must be an integer in \[1, 6\]"):
        clf.load_classifier(MINILM_ID, 3, "last_n", last_n=7)


def test_a_label_never_seen_in_training_is_an_error():
    assert clf.encode_labels(["b", "a"], ["a", "b"]) == [1, 0]
    with pytest.raises(ValueError, match=r"\['refunds'\] were never seen in training; this model knows \['a', 'b'\]"):
        clf.encode_labels(["a", "refunds"], ["a", "b"])


# --------------------------------------------------------------------- named splits, odd sources, speed
def _folder(tmp_path, files: dict[str, list[tuple[str, str]]]):
    folder = tmp_path / "ds"
    folder.mkdir()
    for name, rows in files.items():
        write_csv(folder / name, rows)
    return folder


def test_train_and_validation_files_keep_validation_as_the_test_split(tmp_path):
    """A folder with train.csv and validation.csv (no test.csv): validation's rows are the test split, none of them
    goes into training and no training row into test (they used to be pooled and re-split)."""
    train = [(f"train {i}", "ab"[i % 2]) for i in range(20)]
    validation = [(f"val {i}", "ab"[i % 2]) for i in range(8)]
    ds = clf.load_labelled(_folder(tmp_path, {"train.csv": train, "validation.csv": validation}))
    assert set(ds) == {"train", "test"}
    assert ds["train"]["text"][:] == [t for t, _ in train] and ds["test"]["text"][:] == [t for t, _ in validation]
    names = clf.label_names(ds)
    assert [names[i] for i in ds["test"]["label"][:]] == [y for _, y in validation]


def test_train_validation_and_test_files_are_all_kept(tmp_path):
    files = {"train.csv": [(f"train {i}", "ab"[i % 2]) for i in range(12)],
             "validation.csv": [(f"val {i}", "ab"[i % 2]) for i in range(4)],
             "test.csv": [(f"test {i}", "ab"[i % 2]) for i in range(6)]}
    ds = clf.load_labelled(_folder(tmp_path, files))
    assert list(ds) == ["train", "validation", "test"]
    assert {s: ds[s]["text"][:] for s in ds} == {"train": [t for t, _ in files["train.csv"]],
                                                 "validation": [t for t, _ in files["validation.csv"]],
                                                 "test": [t for t, _ in files["test.csv"]]}


def test_named_splits_that_leak_lack_train_or_leave_a_file_out_are_refused(tmp_path):
    train = [(f"train {i}", "ab"[i % 2]) for i in range(10)]
    leak = _folder(tmp_path, {"train.csv": train, "validation.csv": [("train 3", "b"), ("new", "a")]})
    with pytest.raises(InputError, match=r"ds: 1 text\(s\) of the validation split are also in the train split "
                                         r"\(a leaking split\), e\.g\. 'train 3' \(.*train\.csv, line 5 and "
                                         r".*validation\.csv, line 2\)"):
        clf.load_labelled(leak)
    (tmp_path / "only_test").mkdir()
    write_csv(tmp_path / "only_test" / "test.csv", train)
    with pytest.raises(InputError, match=r"only_test: has a test split \(.*test\.csv\) but no train split, and "
                                         r"held-out rows must not be trained on\. Fix: add the training rows"):
        clf.load_labelled(tmp_path / "only_test")
    (tmp_path / "extra").mkdir()
    for name in ("train.csv", "test.csv", "notes.csv"):
        write_csv(tmp_path / "extra" / name, [(f"{name} {i}", "ab"[i % 2]) for i in range(4)])
    with pytest.raises(InputError, match=r"extra: 1 data file\(s\) belong to no split and would be left out: "
                                         r"notes\.csv.*Fix: name each file after its split"):
        clf.load_labelled(tmp_path / "extra")


@pytest.mark.parametrize("source,match", [
    (None, r"^source=None: is None, not a path or a dataset name\. Fix: give the path of a \.csv"),
    ("", r"^source='': is an empty path\. Fix: give the path"),
    ("   ", r"^source='   ': is a blank path"),
    (42, r"^source=42: is an int, not a path"),
    (["a.csv"], r"^source=\['a\.csv'\]: is a list, not a path"),
])
def test_a_missing_or_empty_source_is_refused_before_anything_is_read(source, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "" used to scan the working folder (.venv included) and blame some file in it
    (tmp_path / "unrelated.json").write_text("not json")
    with pytest.raises(InputError, match=match):
        clf.load_labelled(source)


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_a_dataset_name_while_the_hub_is_offline_is_refused_at_once(variable, tmp_path, monkeypatch):
    """A name that is no local path, with the Hub switched off after the libraries were imported (as in a notebook
    that sets os.environ): an InputError at once, not ~23 s of network retries then a ConnectionError."""
    import time

    from huggingface_hub import constants

    monkeypatch.chdir(tmp_path)
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # ./run.sh test sets both: keep only the one tried
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # what the libraries read at import
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    start = time.perf_counter()
    with pytest.raises(InputError, match=rf"^tickets: is not a local file or folder \(no such path under .*\), and as "
                                         rf"a Hub dataset id it cannot be fetched: the Hugging Face Hub is switched "
                                         rf"off in this process \({variable}=1\).*Fix: give the path of a local "
                                         r"\.csv.*or go online: unset HF_HUB_OFFLINE and HF_DATASETS_OFFLINE"):
        clf.load_labelled("tickets")
    assert time.perf_counter() - start < 5
    assert datasets.config.HF_HUB_OFFLINE is False and constants.HF_HUB_OFFLINE is False  # restored


def test_csv_cells_stay_the_strings_written(tmp_path):
    """'007', 'NaN', 'None', 'NA' and 'True' are texts and class names as written (the datasets CSV reader made
    them 7, a missing value or a bool); whole-number class names keep their numeric order."""
    rows = [("007", "10"), ("NaN", "2"), ("None", "10"), ("NA", "2"), ("True", "10"), ("0.50", "2")]
    ds = clf.load_labelled(write_csv(tmp_path / "d.csv", rows), test_size=0.5)
    names = clf.label_names(ds)
    assert names == ["2", "10"]
    back = sorted((t, names[i]) for split in ds.values() for t, i in zip(split["text"][:], split["label"][:],
                                                                        strict=True))
    assert back == sorted(rows)
    for spelled in (("7", "007"), ("1", "1.0")):
        path = write_csv(tmp_path / "two.csv", [(f"t{i}", spelled[i % 2]) for i in range(8)])
        with pytest.raises(InputError, match=rf"1 class\(es\) are spelled in more than one way \(case, spaces or "
                                             rf"text vs number\): '{spelled[0]}' .* vs '{spelled[1]}'"):
            clf.load_labelled(path)


def test_splits_equal_those_of_datasets_train_test_split(tmp_path):
    """load_labelled, hold_out_validation and subsample split column-wise but pick exactly the rows datasets'
    train_test_split(stratify_by_column="label") picks with the same seed (earlier results stay reproducible)."""
    rows = [(f"text {i}", "abc"[i % 3] if i % 7 else "d") for i in range(120)]
    ds = clf.load_labelled(write_csv(tmp_path / "d.csv", rows), test_size=0.3, seed=4)
    names = sorted({y for _, y in rows})
    whole = datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [names.index(y) for _, y in rows]},
                                       features=datasets.Features({"text": datasets.Value("string"),
                                                                   "label": datasets.ClassLabel(names=names)}))
    expected = whole.train_test_split(test_size=0.3, stratify_by_column="label", seed=4)
    assert {s: ds[s]["text"][:] for s in ds} == {s: expected[s]["text"][:] for s in expected}
    held = clf.hold_out_validation(ds, 12, seed=2)
    by_datasets = ds["train"].train_test_split(test_size=12, stratify_by_column="label", seed=2)
    assert held["validation"]["text"][:] == by_datasets["test"]["text"][:]
    assert held["train"]["text"][:] == by_datasets["train"]["text"][:]
    small = clf.subsample(ds, 40, 20, seed=1)
    assert small["train"]["text"][:] == ds["train"].train_test_split(train_size=40, stratify_by_column="label",
                                                                     seed=1)["train"]["text"][:]


def test_a_50000_row_csv_loads_in_well_under_two_seconds(tmp_path):
    """Reading the columns row by row (a datasets column indexed per row, and train_test_split's own per-row read
    of the label column) took ~8 s for 50,000 rows; column-wise it takes ~0.3-0.5 s on the 2-core CPU it was
    measured on, so 2 s leaves 4x headroom for a loaded machine and still fails the row-by-row code."""
    import time

    rows = [(f"review number {i}: some words about the film", "pos" if i % 2 else "neg") for i in range(50_000)]
    path = write_csv(tmp_path / "big.csv", rows)
    start = time.perf_counter()
    ds = clf.load_labelled(path)
    seconds = time.perf_counter() - start
    assert (len(ds["train"]), len(ds["test"])) == (37_500, 12_500)
    assert seconds < 2.0, f"load_labelled took {seconds:.1f} s for 50,000 rows"


# --------------------------------------------------------------------------- the four methods
@pytest.mark.parametrize("method,trainable", [
    ("head", head(5)),
    ("last_n", head(5) + 2 * BLOCK),
    # LoRA r=4 on every linear layer but the head: per block 4 of 384x384, 384->1536, 1536->384; + pooler
    ("lora", LAYERS * 4 * (4 * (H + H) + (H + FFN) + (FFN + H)) + 4 * (H + H) + head(5)),
])
def test_trainable_parameters_by_hand(method, trainable):
    model, _ = clf.load_classifier(MINILM_ID, 5, method, rank=4, alpha=8)
    counts = clf.count_parameters(model)
    assert counts["trainable"] == trainable
    lora_extra = trainable - head(5) if method == "lora" else 0
    assert counts["total"] == BASE + head(5) + lora_extra + (head(5) if method == "lora" else 0)  # peft's head copy
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


def test_seed_fixes_the_new_head():
    a, _ = clf.load_classifier(MINILM_ID, 3, "head", seed=5)
    b, _ = clf.load_classifier(MINILM_ID, 3, "head", seed=5)
    c, _ = clf.load_classifier(MINILM_ID, 3, "head", seed=6)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_head_only_trains_saves_and_predicts_the_same(tiny, tmp_path):
    names = clf.label_names(tiny)
    model, tok = clf.load_classifier(MINILM_ID, len(names), "head", seed=0, id2label=dict(enumerate(names)))
    frozen = model.bert.encoder.layer[0].output.dense.weight.clone()
    before = model.classifier.weight.clone()
    run = clf.train_and_evaluate(model, tok, tiny, epochs=1, lr=1e-2, batch_size=16, max_length=48, seed=0,
                                 output_dir=tmp_path / "head")
    assert torch.equal(model.bert.encoder.layer[0].output.dense.weight, frozen)
    assert not torch.equal(model.classifier.weight, before)
    confusion = np.array(run.confusion)
    assert confusion.shape == (5, 5) and confusion.sum() == 15
    assert run.accuracy == pytest.approx(np.trace(confusion) / 15)
    assert run.trainable_params == head(5) and len(run.loss_history) == 3  # 48 rows / 16 = 3 steps
    saved = tmp_path / "head" / "trainable.safetensors"
    assert head(5) * 4 < saved.stat().st_size < head(5) * 4 + 1000 and run.adapter_bytes >= saved.stat().st_size
    loaded, tok2, id2label = clf.load_saved(tmp_path / "head")
    preds = clf.classify(tiny["test"]["text"], loaded, tok2, id2label)
    assert [names.index(p["label"]) for p in preds] == run.predictions
    for p in preds:
        assert sum(p["probs"].values()) == pytest.approx(1.0, abs=1e-5) and list(p["probs"]) == names
        assert p["probs"][p["label"]] == max(p["probs"].values())


def test_qlora_keeps_the_head_out_of_4bit_and_trains_with_paged_adamw_8bit(tiny, tmp_path):
    names = clf.label_names(tiny)
    model, tok = clf.load_classifier(MINILM_ID, len(names), "qlora", rank=4, alpha=8, seed=0,
                                     id2label=dict(enumerate(names)))
    kinds = {n: type(m).__name__ for n, m in model.named_modules()}
    assert kinds["base_model.model.bert.encoder.layer.0.attention.self.query.base_layer"] == "Linear4bit"
    head_layer = model.base_model.model.classifier.modules_to_save["default"]
    assert type(head_layer) is torch.nn.Linear and head_layer.weight.dtype == torch.float32
    assert head_layer.weight.requires_grad
    lora_b = model.base_model.model.bert.encoder.layer[0].attention.self.query.lora_B["default"].weight
    assert torch.count_nonzero(lora_b) == 0  # LoRA starts as a no-op
    run = clf.train_and_evaluate(model, tok, clf.subsample(tiny, 16, 15), epochs=1, lr=1e-3, batch_size=16,
                                 max_length=48, seed=0, output_dir=tmp_path / "qlora", optimizer="paged_adamw_8bit")
    assert torch.count_nonzero(lora_b) > 0 and len(run.loss_history) == 1 and np.isfinite(run.loss_history[0])
    assert (tmp_path / "qlora" / "adapter_model.safetensors").is_file()
    loaded, tok2, id2label = clf.load_saved(tmp_path / "qlora")
    preds = clf.classify(tiny["test"]["text"], loaded, tok2, id2label)
    assert [names.index(p["label"]) for p in preds] == run.predictions


def test_classify_rejects_bad_texts():
    model, tok = clf.load_classifier(MINILM_ID, 2, "head", id2label={0: "no", 1: "yes"})
    with pytest.raises(TypeError, match=r"list of strings; wrap a single text as \[text\]"):
        clf.classify("hello", model, tok, {0: "no", 1: "yes"})
    with pytest.raises(ValueError, match="texts is empty"):
        clf.classify([], model, tok, {0: "no", 1: "yes"})
    with pytest.raises(ValueError, match="row 1 has an empty text"):
        clf.classify(["fine", "   "], model, tok, {0: "no", 1: "yes"})
    with pytest.raises(InputError, match=r"row 0 holds a NoneType|row 0 holds a float"):
        clf.classify([3.5], model, tok, {0: "no", 1: "yes"})
    with pytest.raises(ValueError, match=r"\['maybe'\] were never seen"):
        clf.score(["fine"], ["maybe"], model, tok, {0: "no", 1: "yes"})


# ------------------------------------------------------------------ decoder LLMs (Phi-2's path)
@pytest.fixture(scope="module")
def tiny_phi_folder(smoke, tmp_path_factory):
    """A seeded, randomly initialised Phi (Phi-2's architecture, tiny sizes) whose tokenizer has no pad token."""
    from transformers import PhiForCausalLM

    from utils.models.tiny_phi import tiny_phi_config, train_tokenizer

    folder = tmp_path_factory.mktemp("tiny_phi")
    tokenizer = train_tokenizer(smoke["train"]["text"], vocab_size=512)
    torch.manual_seed(0)
    PhiForCausalLM(tiny_phi_config(vocab_size=512, hidden_size=64, intermediate_size=128)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert tokenizer.pad_token is None
    return str(folder)


def test_decoder_gets_a_pad_token_and_an_fp32_score_head_outside_4bit(tiny_phi_folder):
    model, tok = clf.load_classifier(tiny_phi_folder, 3, "qlora", rank=4, alpha=8, id2label={0: "a", 1: "b", 2: "c"})
    assert tok.pad_token == tok.eos_token and model.config.pad_token_id == tok.pad_token_id
    kinds = {n: type(m).__name__ for n, m in model.named_modules()}
    assert kinds["base_model.model.model.layers.0.self_attn.q_proj.base_layer"] == "Linear4bit"
    score = model.base_model.model.score.modules_to_save["default"]
    assert type(score) is torch.nn.Linear and score.weight.dtype == torch.float32 and score.weight.requires_grad
    # right padding must not change a text's prediction: the head reads the last non-pad token
    short, long = "Where is my parcel?", "I was charged twice for my order and the app crashes at checkout."
    alone = clf.classify([short], model, tok, {0: "a", 1: "b", 2: "c"})[0]["probs"]
    padded = clf.classify([short, long], model, tok, {0: "a", 1: "b", 2: "c"})[0]["probs"]
    assert alone == pytest.approx(padded, abs=1e-5)


def test_tfidf_baseline_is_seeded_beats_the_majority_and_scores_like_the_other_methods():
    """The classical baseline of notebook 06: same split, same metrics (accuracy, macro-F1 over all labels)."""
    data = clf.subsample(clf.load_labelled(str(clf.SMOKE_DATA), "text", "label", test_size=0.25, seed=0), 120, 60)
    first, again = clf.tfidf_baseline(data, seed=0), clf.tfidf_baseline(data, seed=0)
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in again.items() if k != "seconds"}
    assert first["accuracy"] > clf.majority_baseline(data)["accuracy"] + 0.5
    assert 0 < first["macro_f1"] <= 1 and first["features"] > 100
    # trained on 2 of the C classes it can predict only those 2: the classes it never predicts count as F1 0,
    # so macro-F1 is at most 2 / C (as for the fine-tuned methods, labels=range(C))
    two = type(data)({"train": data["train"].filter(lambda row: row["label"] in (0, 1)), "test": data["test"]})
    assert clf.tfidf_baseline(two)["macro_f1"] <= 2 / len(clf.label_names(data)) + 1e-12


@pytest.mark.parametrize("mean,std,reference,expected", [
    (0.90, 0.02, 0.80, "beats"),            # gap 0.10 > 2 x 0.02
    (0.80, 0.02, 0.90, "falls short of"),   # gap -0.10
    (0.85, 0.03, 0.82, "is level with"),    # gap 0.03 < 0.06
    (0.85, 0.0, 0.85, "is level with"),     # no gap, no spread
])
def test_verdict_against_a_reference_by_hand(mean, std, reference, expected):
    assert clf.verdict_against(mean, std, reference) == expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    ((0.80, 0.02), (0.70, 0.03), "x better by 0.100"),   # gap 0.10 > 2 x 0.03
    ((0.70, 0.03), (0.80, 0.02), "y better by 0.100"),   # the same, the other way round
    ((0.80, 0.06), (0.70, 0.03), "within seed noise"),   # gap 0.10 <= 2 x 0.06
    ((0.75, 0.0), (0.75, 0.0), "within seed noise"),     # no gap
    ((0.90, float("nan")), (0.70, 0.01), "not comparable (no seed spread: run at least 2 seeds)"),  # one seed
])
def test_compare_over_seeds_by_hand(a, b, expected):
    assert clf.compare_over_seeds("x", *a, "y", *b) == expected


def test_verdict_rejects_a_negative_spread():
    with pytest.raises(ValueError, match="std must be >= 0"):
        clf.verdict_against(0.9, -0.1, 0.8)
