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


def test_all_linear_alone_in_a_list_is_peft_s_keyword(minilm_4bit):
    """``--target-modules all-linear`` and QAConfig give ``["all-linear"]``: the keyword, not a layer name (peft would
    look for a layer called "all-linear"). Bad target lists are in tests/test_bad_input_settings.py."""
    from utils.qa.config import ALL_LINEAR

    assert ALL_LINEAR == adapters.ALL_LINEAR and adapters.is_all_linear(["all-linear"])
    assert not adapters.is_all_linear(["all-linear", "query"]) and not adapters.is_all_linear("query")
    adapters.check_target_modules(minilm_4bit, ["all-linear"])
    assert adapters.target_list(("query", "value")) == ["query", "value"]


def test_all_linear_in_a_list_wraps_the_layers_the_keyword_does():
    from transformers import AutoModelForCausalLM

    from utils.models.tiny_phi import tiny_phi_config

    def wrapped(targets):
        model = AutoModelForCausalLM.from_config(tiny_phi_config(vocab_size=64, hidden_size=32, intermediate_size=64))
        peft_model = adapters.add_lora(model, 2, 4, targets, task_type="CAUSAL_LM")
        return sorted(n for n, _ in peft_model.named_modules() if n.endswith(".lora_A"))

    keyword = wrapped("all-linear")
    assert keyword and wrapped(["all-linear"]) == keyword and not any("lm_head" in n for n in keyword)


def test_load_adapter_refuses_what_it_cannot_load(minilm_4bit, tmp_path):
    """load_adapter takes a base model's name or folder (loaded, then the adapter attached as saved) or the PeftModel
    add_lora built (its weights replaced): loading options with a model already loaded, or a model peft has not
    wrapped, are refused; a folder without the weights file is the FileNotFoundError classification's loader raised
    before it was shared. (Round trips: tests/test_qa_run_folder.py, tests/test_classification.py.)"""
    with pytest.raises(ValueError, match="quantization and dtype apply when base is a model id or folder"):
        adapters.load_adapter(minilm_4bit, tmp_path, bnb_4bit_config())
    plain = load_model(MINILM_ID, AutoModelForSequenceClassification, num_labels=2)
    with pytest.raises(ValueError, match="base is a BertForSequenceClassification, not a PeftModel"):
        adapters.load_adapter(plain, tmp_path)
    wrapped = adapters.add_lora(plain, rank=2, alpha=4, target_modules=["query"], task_type="SEQ_CLS")
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
        adapters.load_adapter(wrapped, tmp_path)
