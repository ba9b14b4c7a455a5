"""What the QA training tests share (test_qa_collate, test_qa_loss, test_qa_run_folder, test_qa_train): a tiny
seeded Phi with a tokenizer trained on the course's QA data, encoded examples, a LoRA model on it, and the reference
every packed or padded loss is compared with (:func:`one_by_one_loss`)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

from utils.models import bnb_4bit_config, load_model, tiny_phi
from utils.models.adapters import add_lora
from utils.paths import REPO_ROOT
from utils.qa import data as qa_data

DATA = [REPO_ROOT / "data/qa/train.json", REPO_ROOT / "data/qa/validation.json"]
TARGETS = ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]
SIZES = {"seed": 0, "vocab_size": 512, "hidden_size": 64, "intermediate_size": 256}


def tiny_base(folder) -> tuple:
    """``(folder, tokenizer)`` of the tiny Phi built (once) in ``folder``."""
    folder = tiny_phi.ensure_tiny_phi(folder, qa_data.qa_texts(*DATA), **SIZES)
    return folder, AutoTokenizer.from_pretrained(folder)


def encoded_examples(tokenizer, n: int = 8, max_length: int = 128) -> list[dict]:
    """The first ``n`` training examples encoded for training (``input_ids``, ``labels``)."""
    rows = qa_data.load_qa_split(DATA[0])[:n]
    return qa_data.encode_rows(rows, tokenizer, max_length)[0]


def lora_model(folder, quantized=True, seed=0):
    """The tiny Phi (4-bit unless not ``quantized``) with a seeded, non-trivial LoRA adapter on :data:`TARGETS`."""
    set_seed(seed)
    model = load_model(str(folder), AutoModelForCausalLM, bnb_4bit_config() if quantized else None)
    model = add_lora(model, 4, 8, TARGETS, task_type="CAUSAL_LM")
    for name, p in model.named_parameters():  # a non-trivial adapter (B starts at 0)
        if "lora_B" in name:
            p.data.normal_(0, 0.05)
    return model


def one_by_one_loss(model, features):
    """The reference for every packed or padded loss: each example alone, unpadded, no KV cache, no position ids
    or attention mask given (nothing to get wrong), its summed next-token loss over the graded tokens, divided by
    their count: the mean over all answer tokens, as the model's own loss on a batch is."""
    nll, count = 0.0, 0
    with torch.no_grad():
        for f in features:
            labels = torch.tensor([f["labels"]])
            n = int((labels[:, 1:] != -100).sum())
            nll += model(input_ids=torch.tensor([f["input_ids"]]), labels=labels, use_cache=False).loss * n
            count += n
    return nll / count
