"""demo/app.py: predict() answers through base + adapter, and refuses empty input (gradio not needed)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from utils.models import bnb_4bit_config, load_model, tiny_phi
from utils.models.adapters import add_lora
from utils.paths import REPO_ROOT
from utils.qa.config import QAConfig
from utils.qa.data import qa_texts
from utils.qa.run_folder import save_adapter

spec = importlib.util.spec_from_file_location("demo_app", REPO_ROOT / "demo/app.py")
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("demo")
    base = tiny_phi.ensure_tiny_phi(root / "base", qa_texts(REPO_ROOT / "data/qa/train.json"), vocab_size=512,
                                    hidden_size=64, intermediate_size=256)
    model = add_lora(load_model(str(base), AutoModelForCausalLM, bnb_4bit_config()), 4, 8, ["q_proj", "fc2"],
                     task_type="CAUSAL_LM")
    config = QAConfig.resolve("smoke", model_id=str(base), max_length=128)
    return save_adapter(model, AutoTokenizer.from_pretrained(base), root / "adapter", config, {"steps": 0})


def test_predict_answers_with_base_plus_adapter(adapter):
    model, tokenizer, config = app.load(adapter)
    assert config.max_length == 128 and hasattr(model, "peft_config")
    answer = app.predict(app.EXAMPLE_CONTEXT, app.EXAMPLE_QUESTION, model, tokenizer, max_new_tokens=6,
                         max_length=128)
    assert isinstance(answer, str) and "\n" not in answer
    # deterministic (greedy): the same question gives the same answer
    assert answer == app.predict(app.EXAMPLE_CONTEXT, app.EXAMPLE_QUESTION, model, tokenizer, max_new_tokens=6,
                                 max_length=128)
    # a context longer than max_length is truncated, not an error
    assert isinstance(app.predict(app.EXAMPLE_CONTEXT * 20, "Who?", model, tokenizer, 4, 128), str)
    assert torch.is_grad_enabled()


def test_empty_inputs_and_missing_adapter_are_clear_errors(adapter, tmp_path):
    with pytest.raises(ValueError, match="question box is empty"):
        app.predict("some context", "  ", None, None)
    with pytest.raises(ValueError, match="Paste a context"):
        app.predict("", "Who?", None, None)
    with pytest.raises(FileNotFoundError, match="run notebook 04"):
        app.load(tmp_path / "missing")


def test_gradio_app_builds_and_answers_through_its_interface(adapter):
    import gradio as gr

    model, tokenizer, _ = app.load(adapter)
    demo = app.build_app(model, tokenizer, max_length=128)
    assert isinstance(demo, gr.Interface)
    assert [c.label for c in demo.input_components] == ["Context", "Question"]
    answer = demo.fn(app.EXAMPLE_CONTEXT, app.EXAMPLE_QUESTION)  # what the Submit button calls
    assert answer == app.predict(app.EXAMPLE_CONTEXT, app.EXAMPLE_QUESTION, model, tokenizer, max_length=128)
    with pytest.raises(gr.Error, match="question box is empty"):
        demo.fn(app.EXAMPLE_CONTEXT, "")
