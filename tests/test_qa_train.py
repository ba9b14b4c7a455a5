"""utils.qa.training on a tiny Phi: the Trainer (answer-only logits, rows with the head at graded positions), train_qa
resumed bit for bit, the fp16 remedy, merge, perplexity, activation memory; and utils.models.tiny_phi itself."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import tolerances as T
import torch
from safetensors.torch import load_file
from tiny_qa import DATA, TARGETS, lora_model, one_by_one_loss
from transformers import AutoModelForCausalLM, TrainerCallback

from utils import memory
from utils.evaluation import qa as qa_eval
from utils.models import mixed_precision, tiny_phi
from utils.qa import collate, precision, run_folder, training
from utils.qa import data as qa_data
from utils.qa.config import QAConfig


def test_tiny_phi_is_rebuilt_identically(base, tmp_path):
    folder, _ = base
    again = tiny_phi.ensure_tiny_phi(tmp_path / "phi", qa_data.qa_texts(*DATA), seed=0, vocab_size=512, hidden_size=64,
                                     intermediate_size=256)
    a = AutoModelForCausalLM.from_pretrained(folder).state_dict()
    b = AutoModelForCausalLM.from_pretrained(again).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    config = AutoModelForCausalLM.from_pretrained(folder).config
    assert config.model_type == "phi" and config.rope_parameters["partial_rotary_factor"] == 0.4
    big = tiny_phi.phi2_shaped_config()
    assert (big.hidden_size, big.num_hidden_layers, big.intermediate_size, big.vocab_size) == (2560, 32, 10240, 51200)


def test_set_attention_switches_every_layer_also_under_peft(base):
    model = lora_model(base[0], quantized=False)
    precision.set_attention(model, "eager")
    configs = [m.config for m in model.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")]
    assert configs and all(c._attn_implementation == "eager" for c in configs)


def logged_losses(base, folder, items, steps, batch_size, **trainer_kwargs):
    """The losses a Trainer logs at every step of a short run (gradient accumulation 2, 32-bit AdamW) of a fresh
    seeded LoRA model on ``items``; ``trainer_kwargs`` go to :func:`training.make_trainer`."""
    args = training.training_arguments(folder, max_steps=steps, batch_size=batch_size, grad_accum=2,
                                       learning_rate=5e-3, logging_steps=1, save_steps=100, disable_tqdm=True,
                                       optimizer="adamw_torch")
    trainer = training.make_trainer(lora_model(base[0]), args, items, **trainer_kwargs)
    trainer.train()
    return training.loss_history(trainer)[1]


def test_trainer_with_answer_only_logits_logs_the_same_losses(base, features, tmp_path):
    """Same first losses with and without answer-only logits, with gradient accumulation (loss scaling)."""
    curves = [logged_losses(base, tmp_path / str(slim), features, 3, 2, answer_logits_only=slim) for slim in (False, True)]
    # each logged loss follows 1-3 AdamW updates computed from gradients that differ by float32 rounding
    # (answer-only vs full logits): Adam divides by sqrt(v), so a relative gradient difference d moves each
    # step by about d, and the loss by a few d; 1e-3 is far above that (~1e-6) and far below what a wrong
    # loss scaling under gradient accumulation does (a factor 2 in the update)
    torch.testing.assert_close(curves[0], curves[1], rtol=1e-3, atol=1e-4)


class Interrupted(Exception):
    """Stands in for a kill (Ctrl-C, a lost Colab runtime) in the middle of a training step."""


class InterruptAt(TrainerCallback):
    """Raise :class:`Interrupted` when step ``step + 1`` begins: its batch is drawn, checkpoint ``step`` is on disk."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Interrupted(f"interrupted after step {self.step}")


def test_an_interrupted_run_resumes_to_the_same_loss_and_adapter(base, tmp_path):
    """train_qa (the command's path: 4-bit base, LoRA with dropout, 8-bit paged AdamW, cosine schedule, packed
    batches) for 6 steps, checkpoint every 2; the same run killed in step 5 and resumed (--resume) from checkpoint
    4 ends bit for bit where the uninterrupted run does: the checkpoint holds the adapter, the optimizer and
    scheduler states, the Trainer's state and every random generator's state, and the resumed Trainer skips the
    batches already drawn. Exact equality is what was measured on this CPU (fp32, one thread order); nothing is
    recomputed differently after a resume, so any tolerance would only hide a state that is not restored. Also:
    nothing is lost, a finished run's folder is refused without --overwrite or --resume."""
    config = QAConfig.resolve("smoke", model_id=str(base[0]), target_modules=TARGETS, dataset=str(DATA[0]),
                              train_size=16, max_length=128, max_steps=6, batch_size=2, save_steps=2,
                              logging_steps=1, learning_rate=5e-3, lora_dropout=0.1)
    whole = training.train_qa(config, tmp_path / "whole", quiet=True)
    with pytest.raises(Interrupted):
        training.train_qa(config, tmp_path / "cut", quiet=True, callbacks=[InterruptAt(4)])
    assert run_folder.last_checkpoint(tmp_path / "cut/checkpoints").name == "checkpoint-4"
    assert not (tmp_path / "cut/adapter_model.safetensors").exists()
    with pytest.raises(run_folder.OutputExistsError, match=r"earlier run \(checkpoints/checkpoint-4\).*--resume"):
        training.train_qa(config, tmp_path / "cut", quiet=True)  # a restart would overwrite the interrupted run
    shutil.copytree(tmp_path / "cut", tmp_path / "older")  # as a checkpoint written before LegTimer existed
    state_file = tmp_path / "older/checkpoints/checkpoint-4/trainer_state.json"
    state = json.loads(state_file.read_text())
    assert state["stateful_callbacks"]["LegTimer"]["attributes"]["legs"][0] > 0  # the first leg, to checkpoint 4
    del state["stateful_callbacks"]["LegTimer"]
    state_file.write_text(json.dumps(state))
    resumed = training.train_qa(config, tmp_path / "cut", resume=True, quiet=True)

    assert whole["steps"] == resumed["steps"] == 6 and len(whole["losses"]) == 6
    assert resumed["losses"] == whole["losses"]  # steps 1-4 from the checkpoint's log, 5-6 trained again
    a, b = (load_file(tmp_path / name / "adapter_model.safetensors") for name in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole["losses"][-1] < whole["losses"][0]
    with pytest.raises(run_folder.OutputExistsError, match="pass --overwrite"):
        training.train_qa(config, tmp_path / "whole", quiet=True)
    # the record's seconds: every leg (to checkpoint 4, then 4-6), not only the last
    assert len(whole["seconds_per_leg"]) == 1 and whole["seconds"] == whole["seconds_per_leg"][0] > 0
    legs = resumed["seconds_per_leg"]
    assert len(legs) == 2 and all(leg > 0 for leg in legs) and resumed["seconds"] == pytest.approx(sum(legs))
    assert run_folder.read_training_params(tmp_path / "cut")[1]["seconds"] == resumed["seconds"]
    older = training.train_qa(config, tmp_path / "older", resume=True, quiet=True)  # saves checkpoint 6 (no KeyError)
    assert older["steps"] == 6 and older["seconds"] is None and older["seconds_per_leg"][0] is None  # unknown: said so


def test_ensure_trained_does_not_reuse_a_run_recorded_past_its_max_steps(tmp_path, monkeypatch):
    """Before --resume with a smaller max_steps was refused, such a run was saved with max_steps 4 and 13 trained
    steps, and notebook 05's ensure_trained reused it as a 4-step run; and checkpoints of these settings at their last
    step (the adapter never saved) would be resumed past max_steps. Both are now another training: refused, or set
    aside with set_aside. (train_qa stands in: what is checked is what ensure_trained does around it.)"""
    from utils.qa.config import save_params

    config = QAConfig.resolve("smoke", max_steps=4)
    monkeypatch.setattr(training, "train_qa", lambda c, folder, **kw: Path(folder).mkdir(exist_ok=True) or {"steps": 4})
    miscounted = tmp_path / "miscounted"
    save_params(miscounted, config, {"steps": 13})
    with pytest.raises(run_folder.OutputExistsError, match=r"records max_steps=4 but 13 trained steps"):
        training.ensure_trained(config, miscounted)
    run, reused = training.ensure_trained(config, miscounted, set_aside=True)
    assert not reused and run["steps"] == 4 and Path(run["set_aside"]).name.startswith("miscounted.old-")
    finished = tmp_path / "finished"
    save_params(finished / run_folder.CHECKPOINTS, config, {})
    (finished / run_folder.CHECKPOINTS / "checkpoint-4").mkdir()
    (finished / run_folder.CHECKPOINTS / "checkpoint-4" / "trainer_state.json").write_text("{}")
    with pytest.raises(run_folder.OutputExistsError, match=r"reached its last step \(checkpoint-4\) but never saved"):
        training.ensure_trained(config, finished)
    save_params(tmp_path / "fine", config, {"steps": 4})
    assert training.ensure_trained(config, tmp_path / "fine") == ({"steps": 4}, True)


def test_non_finite_loss_in_first_steps_stops_training():
    guard = training.NonFiniteGuard(first_steps=5)
    state = type("State", (), {"global_step": 2})()
    with pytest.raises(FloatingPointError, match="loss = nan at step 2"):
        guard.on_log(None, state, None, logs={"loss": float("nan")})
    guard.on_log(None, state, None, logs={"loss": 1.0})  # finite: fine


def test_fp16_overflow_is_detected_and_fp32_attention_fixes_it(base, features):
    """Query/key activations scaled up like Phi-2's make fp16 Q K^T overflow in eager attention."""
    model = AutoModelForCausalLM.from_pretrained(base[0], dtype=torch.float16, attn_implementation="eager")
    for name, module in model.named_modules():
        if name.endswith(("q_proj", "k_proj")):
            module.register_forward_hook(lambda _m, _i, out: out * 300)
    batch = collate.sample_batch(features, 2)
    assert not precision.forward_is_finite(model, batch)
    report = precision.fp16_guard(model, batch, torch.float16)
    assert report["finite_before"] is False and report["finite_after"] is True and "float32" in report["remedy"]
    assert model.config._attn_implementation == precision.FP32_ATTENTION


def test_merged_model_matches_base_plus_adapter(base, features, tmp_path):
    model = lora_model(base[0], quantized=False).eval()
    run_folder.save_adapter(model, base[1], tmp_path / "adapter", QAConfig.resolve("smoke", model_id=str(base[0])), {})
    merged = qa_eval.merge_adapter(base[0], tmp_path / "adapter", torch.float32)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    batch = collate.sample_batch(features, 3)
    batch.pop("labels")
    with torch.no_grad():
        # W + s B A folded into one float32 matrix vs the separate paths: rounding through the whole network
        logits = model(**batch, use_cache=False).logits  # packed rows: no KV cache, as in training
        c = model.config
        chain = c.num_hidden_layers * [c.hidden_size, c.hidden_size // c.num_attention_heads,
                                       batch["input_ids"].shape[1], c.hidden_size, c.hidden_size,
                                       c.intermediate_size] + [c.hidden_size]
        T.assert_within(merged(**batch, use_cache=False).logits, logits, T.chain_tolerance(chain, logits.abs().max().item()),
                        what="merged vs base + adapter")


def test_answer_perplexity_is_exp_of_the_answer_token_loss(base, features):
    """answer_perplexity packs its batches; the reference runs each example alone (not the same packed path)."""
    model = AutoModelForCausalLM.from_pretrained(base[0]).eval()
    loss = one_by_one_loss(model, features[:4])
    assert qa_eval.answer_perplexity(model, features[:4], batch_size=4) == pytest.approx(math.exp(loss), rel=1e-4)


def test_checkpointing_saves_activation_memory(base, features):
    model = lora_model(base[0], quantized=False)
    batch = collate.sample_batch(features, 4)
    plain = memory.saved_activation_bytes(model, batch)
    model.base_model.model.gradient_checkpointing_enable({"use_reentrant": False})
    assert memory.saved_activation_bytes(model, batch) < plain / 2


def test_generation_returns_one_stripped_line_per_question(base):
    model = AutoModelForCausalLM.from_pretrained(base[0]).eval()
    rows = qa_data.load_qa_split(DATA[1])[:3]
    answers = qa_eval.generate_answers(model, base[1], rows, max_new_tokens=5, max_length=128, progress=False)
    assert len(answers) == 3 and all("\n" not in a and a == a.strip() for a in answers)


def test_bad_precision_and_steps_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="precision must be one of"):
        mixed_precision("fp8")
    with pytest.raises(ValueError, match="max_steps must be a positive integer, got 0"):
        training.training_arguments(tmp_path, max_steps=0, batch_size=1, grad_accum=1, learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"unknown QA setting\(s\) \['steps'\]"):
        training.training_arguments(tmp_path, steps=3)


def test_trainer_on_rows_with_the_head_at_graded_positions_logs_the_models_own_losses(base, features, tmp_path):
    """The full profile's batching through the Trainer (rows of a fixed length, GradedHeadLoss, gradient
    accumulation): the same logged losses as the model's own loss on the same rows."""
    rows = collate.pack_rows(features, 2 * max(len(f["input_ids"]) for f in features), pad_token_id=0)
    curves = [logged_losses(base, tmp_path / str(graded), rows, 2, 1, collator=collate.RowsCollator(),
                            graded_head=graded) for graded in (False, True)]
    # as in the answer-only test above: float32 rounding differences, moved through 1-2 AdamW updates
    torch.testing.assert_close(curves[0], curves[1], rtol=1e-3, atol=1e-4)
    assert len(curves[0]) == 2
