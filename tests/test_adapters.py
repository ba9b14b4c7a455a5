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


def _damaged(folder, case):
    """A copy of the adapter saved in ``folder`` with one damage, as users met them."""
    import json
    import shutil

    copy = folder.parent / case.replace(" ", "-")
    shutil.copytree(folder, copy)
    config, weights = copy / "adapter_config.json", copy / "adapter_model.safetensors"
    if case == "config cut off":
        config.write_text(config.read_text()[:120])
    elif case == "weights cut off":
        weights.write_bytes(weights.read_bytes()[:-200])
    elif case == "weights header cut off":
        weights.write_bytes(weights.read_bytes()[:40])
    elif case == "r edited":
        settings = json.loads(config.read_text())
        settings["r"] = 8
        config.write_text(json.dumps(settings))
    elif case == "config missing":
        config.unlink()
    elif case == "weights missing":
        weights.unlink()
    return copy


DAMAGE = {  # case: what the message says (after the file's path), before "Fix:"
    "config cut off": r"adapter_config\.json: the file is not valid JSON \(.*line \d+, column \d+; it holds 120 bytes\): it "
                      r"was cut off or edited\. Fix: restore the file from a copy",
    "weights cut off": r"adapter_model\.safetensors: the file is truncated: it holds [\d,]+ bytes, its header describes "
                       r"[\d,]+ \(its last tensors are cut off\)\. Fix: restore the file from a copy",
    "weights header cut off": r"adapter_model\.safetensors: the file is truncated or not a safetensors file \(40 bytes, "
                              r"its header alone claims \d+ bytes\)\. Fix: restore",
    "r edited": r"adapter_config\.json: r=8 does not fit the weights in adapter_model\.safetensors: .*lora_A\.weight has "
                r"shape \[4, \d+\], so the adapter was trained with r=4\. Fix: set 'r' back to 4 in adapter_config\.json",
    "config missing": r"config-missing: it holds no adapter_config\.json, so it is not a saved LoRA adapter\. Fix:",
    "weights missing": r"adapter_model\.safetensors: the file is missing\. Fix: restore the file from a copy",
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_adapter_is_our_error_naming_the_file_before_anything_loads(base, tmp_path, case, monkeypatch):
    """A truncated adapter_config.json or adapter_model.safetensors, or an r edited by hand, reached peft as a
    JSONDecodeError, a SafetensorError or a RuntimeError (size mismatch) after the base model had loaded: load_adapter
    (notebook 05, the demo, the export) now names the file and the fix first, for a base given by name (nothing
    loaded: load_model is never called) and for the model add_lora built (notebook 06's classifiers)."""
    from pathlib import Path

    from tiny_qa import lora_model

    from utils.errors import InputError
    from utils.paths import REPO_ROOT

    model = lora_model(base[0], quantized=False)
    model.save_pretrained(tmp_path / "adapter")
    folder = _damaged(tmp_path / "adapter", case)
    monkeypatch.setattr(adapters, "load_model", lambda *a, **k: pytest.fail("the base model was loaded"))
    targets = [base[0]] + ([] if case == "config missing" else [lora_model(base[0], quantized=False)])
    for target in targets:
        with pytest.raises(InputError, match=DAMAGE[case]) as caught:
            adapters.load_adapter(target, folder)
        assert Path(str(caught.traceback[-1].path)).is_relative_to(REPO_ROOT / "utils")
        assert caught.value.__cause__ is None and (caught.value.__context__ is None or caught.value.__suppress_context__)
    if case == "weights missing":
        assert isinstance(caught.value, FileNotFoundError)  # what callers caught before


def test_an_adapter_of_another_rank_does_not_load_into_a_model_built_for_another(base, tmp_path):
    """The PeftModel path (notebook 06's load_saved): weights of rank 4 into a model built with rank 2 are refused
    with both shapes named, before peft copies anything."""
    from tiny_qa import TARGETS, lora_model
    from transformers import AutoModelForCausalLM

    from utils.errors import InputError

    lora_model(base[0], quantized=False).save_pretrained(tmp_path / "r4")
    other = adapters.add_lora(AutoModelForCausalLM.from_pretrained(base[0]), 2, 4, TARGETS, task_type="CAUSAL_LM")
    with pytest.raises(InputError, match=r"r4/adapter_model\.safetensors: .*lora_A\.weight has shape \[4, \d+\], but the "
                                         r"model's has \[2, \d+\]: the adapter was trained with other settings"):
        adapters.load_adapter(other, tmp_path / "r4")
    reloaded = adapters.load_adapter(lora_model(base[0], quantized=False, seed=1), tmp_path / "r4")  # a fitting one loads
    assert reloaded is not None
