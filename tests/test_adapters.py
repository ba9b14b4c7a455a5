"""utils.models.adapters: argument checks, and parameter counts against peft's own."""

from __future__ import annotations

import pytest
from transformers import AutoModelForSequenceClassification

from utils.models import MINILM_ID, adapters, bnb_4bit_config, load_model


@pytest.fixture(scope="module")
def minilm_4bit():
    return load_model(MINILM_ID, AutoModelForSequenceClassification, bnb_4bit_config(skip_modules=["classifier"]),
                      num_labels=3)


def test_linear_module_names_of_minilm(minilm_4bit):
    names = adapters.linear_module_names(minilm_4bit)
    assert {"query", "key", "value", "dense", "classifier"} <= set(names)


@pytest.mark.parametrize("rank,alpha,match", [(0, 16, "rank must be a positive integer"),
                                              (-4, 16, "rank must be a positive integer"),
                                              (2.5, 16, "rank must be a positive integer"),
                                              (8, 0, "alpha must be > 0")])
def test_bad_rank_or_alpha_is_a_clear_error(rank, alpha, match):
    with pytest.raises(ValueError, match=match):
        adapters.check_lora_args(rank, alpha)


def test_unknown_target_module_lists_the_ones_that_exist(minilm_4bit):
    with pytest.raises(ValueError, match=r"\['q_proj'\] match no linear layer.*'query'"):
        adapters.check_target_modules(minilm_4bit, ["q_proj", "query"])


def test_qlora_counts_match_peft(minilm_4bit):
    model = adapters.add_lora(minilm_4bit, rank=4, alpha=8, target_modules=["query", "value"],
                              task_type="SEQ_CLS")
    trainable, total = model.get_nb_trainable_parameters()
    counts = adapters.count_parameters(model)
    assert counts == {"trainable": trainable, "total": total}
    # 6 layers x 2 modules x r(384 + 384) LoRA weights + the fp32 classifier head (peft's modules_to_save)
    assert trainable == 6 * 2 * 4 * (384 + 384) + (384 * 3 + 3)
