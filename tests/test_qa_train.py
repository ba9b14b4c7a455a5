"""utils.qa.training and utils.models.tiny_phi on a tiny Phi: packing, save/load, resume, fp16 remedy, merge, perplexity."""

from __future__ import annotations

import math
import re

import pytest
import tolerances as T
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorWithFlattening,
    TrainerCallback,
    set_seed,
)

from utils import memory
from utils.errors import InputError
from utils.evaluation import qa as qa_eval
from utils.models import bnb_4bit_config, load_model, mixed_precision, tiny_phi
from utils.models.adapters import add_lora
from utils.paths import REPO_ROOT
from utils.qa import data as qa_data
from utils.qa import precision, training
from utils.qa.config import QAConfig, read_params

DATA = [REPO_ROOT / "data/qa/train.json", REPO_ROOT / "data/qa/validation.json"]
TARGETS = ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", DATA, seed=0, vocab_size=512,
                                      hidden_size=64, intermediate_size=256)
    return folder, AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def features(base):
    rows = qa_data.load_qa_split(DATA[0])[:8]
    return qa_data.encode_rows(rows, base[1], 128)[0]


def lora_model(folder, quantized=True, seed=0):
    set_seed(seed)
    model = load_model(str(folder), AutoModelForCausalLM, bnb_4bit_config() if quantized else None)
    model = add_lora(model, 4, 8, TARGETS, task_type="CAUSAL_LM")
    for name, p in model.named_parameters():  # a non-trivial adapter (B starts at 0)
        if "lora_B" in name:
            p.data.normal_(0, 0.05)
    return model


def test_tiny_phi_is_rebuilt_identically(base, tmp_path):
    folder, _ = base
    again = tiny_phi.ensure_tiny_phi(tmp_path / "phi", DATA, seed=0, vocab_size=512, hidden_size=64,
                                     intermediate_size=256)
    a = AutoModelForCausalLM.from_pretrained(folder).state_dict()
    b = AutoModelForCausalLM.from_pretrained(again).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    config = AutoModelForCausalLM.from_pretrained(folder).config
    assert config.model_type == "phi" and config.rope_parameters["partial_rotary_factor"] == 0.4
    big = tiny_phi.phi2_shaped_config()
    assert (big.hidden_size, big.num_hidden_layers, big.intermediate_size, big.vocab_size) == (2560, 32, 10240, 51200)


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


def test_packed_and_padded_losses_equal_each_example_alone(base, features):
    """The packed row (position ids restarting at 0, as training feeds it) and a padded batch (attention mask) give
    the loss of each example run alone. All forwards run with use_cache=False, as training does (make_trainer):
    with a KV cache transformers ignores the packing and lets the examples attend to each other. The reference is
    computed another way (one example at a time, no mask), and the KV-cache mistake is shown to fail against it,
    so the comparison cannot pass with a mask that is wrong the same way on both sides."""
    model = AutoModelForCausalLM.from_pretrained(base[0]).eval()
    assert model.config.use_cache  # Phi's default: the forwards below must switch it off themselves
    reference = one_by_one_loss(model, features[:4])
    packed = training.sample_batch(features, 4)
    padded = training.PaddedCollator(pad_token_id=0)(features[:4])
    assert packed["input_ids"].shape[0] == 1 and (packed["position_ids"] == 0).sum() == 4
    with torch.no_grad():
        packed_loss = model(**packed, use_cache=False).loss
        padded_loss = model(**padded, use_cache=False).loss
        cached_loss = model(**packed, use_cache=True).loss  # the blind spot: examples see their neighbours
    tol = T.loss_tolerance(model, reference, packed["input_ids"].shape[1])
    T.assert_within(packed_loss, reference, tol, what="packed (no KV cache) vs one by one")
    T.assert_within(padded_loss, reference, tol, what="padded (no KV cache) vs one by one")
    # measured: packed and padded equal the reference exactly; the cached loss is ~10 tolerances off (3e-3 of 7.4)
    assert abs(cached_loss - reference) > 3 * tol, "with a KV cache the packing should leak, and be caught"


def test_padded_collator_pads_to_max_length_and_masks_padding(features):
    batch = training.PaddedCollator(pad_token_id=7, max_length=128)(features[:3])
    n = len(features[0]["input_ids"])
    assert batch["input_ids"].shape == (3, 128) and batch["input_ids"][0, n:].eq(7).all()
    assert batch["labels"][0, n:].eq(-100).all() and batch["attention_mask"][0].sum() == n
    assert training.PaddedCollator(7)(features[:3])["input_ids"].shape[1] == max(len(f["input_ids"]) for f in features[:3])
    with pytest.raises(ValueError, match="more than max_length=8"):
        training.PaddedCollator(7, max_length=8)(features[:1])


def test_round_up_packed_pads_the_row_without_changing_the_loss(base, features):
    """The padding block appended to a packed row changes no loss. Compared with each example alone
    (:func:`one_by_one_loss`), not only with the packed row: both rows go through the same packed-attention path,
    so a mask wrong on both would agree with itself."""
    model = AutoModelForCausalLM.from_pretrained(base[0]).eval()
    packed = training.sample_batch(features, 3)
    rounded = training.RoundUpPacked(DataCollatorWithFlattening(), 256, pad_token_id=0)(features[:3])
    assert rounded["input_ids"].shape[1] % 256 == 0 and rounded["input_ids"].shape[1] > packed["input_ids"].shape[1]
    reference = one_by_one_loss(model, features[:3])
    tol = T.loss_tolerance(model, reference, rounded["input_ids"].shape[1])
    with torch.no_grad():
        T.assert_within(model(**rounded, use_cache=False).loss, reference, tol, what="rounded-up vs one by one")
        T.assert_within(model(**packed, use_cache=False).loss, reference, tol, what="packed vs one by one")


def test_set_attention_switches_every_layer_also_under_peft(base):
    model = lora_model(base[0], quantized=False)
    precision.set_attention(model, "eager")
    configs = [m.config for m in model.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")]
    assert configs and all(c._attn_implementation == "eager" for c in configs)


def test_graded_positions_by_hand():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 4, -100, -100, -100]])
    assert training.graded_positions(labels).tolist() == [0, 1, 2]


@pytest.mark.parametrize("packed", [True, False])
def test_answer_only_logits_give_the_models_own_loss_and_gradients(base, features, packed):
    """Running the LM head on answer positions only changes nothing but the work done. Every forward runs with
    use_cache=False, as training does: with Phi's default KV cache the packed examples would attend to each other on
    both sides alike, and the comparison could not see it. The full-logits side is itself checked against each example
    alone (:func:`one_by_one_loss`)."""
    model = lora_model(base[0])
    collate = training.sample_batch if packed else (lambda f, n: training.PaddedCollator(0, 128)(f[:n]))
    batch = collate(features, 4)
    model(**batch, use_cache=False).loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    slim = training.AnswerLogitsCollator(lambda f: collate(f, 4))(features)
    labels = slim.pop("labels")
    out = model(**slim, use_cache=False)
    assert out.logits.shape[1] == len(slim["logits_to_keep"]) < batch["input_ids"].shape[1] / 3
    loss = training.answer_logits_loss(out, labels)
    loss.backward()
    tokens = batch["input_ids"].shape[1]
    with torch.no_grad():
        full = model(**batch, use_cache=False).loss
    T.assert_within(loss, full, T.loss_tolerance(model, loss, tokens), what="answer-logits loss")
    T.assert_within(full, one_by_one_loss(model, features[:4]), T.loss_tolerance(model, loss, tokens),
                    what="full-logits loss vs one by one")
    for name, p in model.named_parameters():
        if p.requires_grad:  # the backward pass runs the chain again: twice the roundings, relative to the grad
            tol = 2**0.5 * T.loss_tolerance(model, reference[name].abs().max(), tokens)
            T.assert_within(p.grad, reference[name], tol, what=name)


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


def test_adapter_save_then_load_gives_identical_logits(base, features, tmp_path):
    model = lora_model(base[0]).eval()
    config = QAConfig.resolve("smoke", model_id=str(base[0]), lora_rank=4, lora_alpha=8)
    training.save_adapter(model, base[1], tmp_path / "adapter", config, {"steps": 0})
    assert training.read_training_params(tmp_path / "adapter") == (config, {"steps": 0})
    reloaded = qa_eval.load_tuned(base[0], tmp_path / "adapter", bnb_4bit_config())
    batch = training.sample_batch(features, 3)
    batch.pop("labels")
    with torch.no_grad():
        assert torch.equal(model(**batch, use_cache=False).logits, reloaded(**batch, use_cache=False).logits)


def test_missing_adapter_tells_to_run_notebook_04(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebook 04"):
        training.read_training_params(tmp_path / "nothing-here")


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
    assert training.last_checkpoint(tmp_path / "cut/checkpoints").name == "checkpoint-4"
    assert not (tmp_path / "cut/adapter_model.safetensors").exists()
    with pytest.raises(training.OutputExistsError, match=r"earlier run \(checkpoints/checkpoint-4\).*--resume"):
        training.train_qa(config, tmp_path / "cut", quiet=True)  # a restart would overwrite the interrupted run
    resumed = training.train_qa(config, tmp_path / "cut", resume=True, quiet=True)

    assert whole["steps"] == resumed["steps"] == 6 and len(whole["losses"]) == 6
    assert resumed["losses"] == whole["losses"]  # steps 1-4 from the checkpoint's log, 5-6 trained again
    a, b = (load_file(tmp_path / name / "adapter_model.safetensors") for name in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole["losses"][-1] < whole["losses"][0]
    with pytest.raises(training.OutputExistsError, match="pass --overwrite"):
        training.train_qa(config, tmp_path / "whole", quiet=True)


def test_overwrite_clears_the_earlier_runs_checkpoints_and_a_resume_compares_the_recorded_settings(tmp_path):
    """--overwrite: the old checkpoints go before the new run writes its own (the Trainer's rotation keeps the highest
    step numbers: an old checkpoint-100 would outlive the new run's and be what a later --resume picks up). The
    settings recorded next to the checkpoints are what --resume is checked against. Also notebook 04's layout, with
    the checkpoints in a folder of their own (``checkpoints=``)."""
    config = QAConfig.resolve("smoke")
    old = tmp_path / "run" / training.CHECKPOINTS / "checkpoint-100"
    old.mkdir(parents=True)
    (old / "trainer_state.json").write_text("{}")
    with pytest.raises(training.OutputExistsError, match=r"\(checkpoints/checkpoint-100\)"):
        training.check_output_dir(tmp_path / "run", config)
    assert training.check_output_dir(tmp_path / "run", config, resume=True) == old  # no settings recorded: old run
    assert training.check_output_dir(tmp_path / "run", config, overwrite=True) is None
    training.start_run(tmp_path / "run" / training.CHECKPOINTS, config, overwrite=True, profile="smoke")
    assert not old.exists() and training.last_checkpoint(tmp_path / "run" / training.CHECKPOINTS) is None
    assert read_params(tmp_path / "run" / training.CHECKPOINTS) == (config, {"profile": "smoke",
                                                                           "state": "checkpoints of this run"})
    apart = tmp_path / "ckpt" / "checkpoint-4"
    apart.mkdir(parents=True)
    (apart / "trainer_state.json").write_text("{}")
    with pytest.raises(training.OutputExistsError, match=re.escape(f"earlier run ({apart})")):
        training.check_output_dir(tmp_path / "adapter", config, checkpoints=tmp_path / "ckpt")
    assert training.check_output_dir(tmp_path / "adapter", config, checkpoints=tmp_path / "ckpt", resume=True) == apart


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
    batch = training.sample_batch(features, 2)
    assert not precision.forward_is_finite(model, batch)
    report = precision.fp16_guard(model, batch, torch.float16)
    assert report["finite_before"] is False and report["finite_after"] is True and "float32" in report["remedy"]
    assert model.config._attn_implementation == precision.FP32_ATTENTION


def test_merged_model_matches_base_plus_adapter(base, features, tmp_path):
    model = lora_model(base[0], quantized=False).eval()
    training.save_adapter(model, base[1], tmp_path / "adapter", QAConfig.resolve("smoke", model_id=str(base[0])), {})
    merged = qa_eval.merge_adapter(base[0], tmp_path / "adapter", torch.float32)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    batch = training.sample_batch(features, 3)
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
    batch = training.sample_batch(features, 4)
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


def test_rows_of_fixed_length_hold_every_example_once_and_give_the_one_by_one_loss(base, features):
    """pack_rows: static (rows, row_length) batches; each example intact, in one row, attending only to itself (the
    loss over the rows equals each example's alone); GradedHeadLoss (head at each row's graded positions only) equals
    the model's own loss over the rows, gradients included."""
    L = 2 * max(len(f["input_ids"]) for f in features) + 16  # two examples and some filler per row
    rows = training.pack_rows(features, L, pad_token_id=0)
    assert all(len(r[k]) == L for r in rows for k in ("input_ids", "labels", "position_ids"))
    assert sum(r["real_tokens"] for r in rows) == sum(len(f["input_ids"]) for f in features)
    lengths = sorted(len(f["input_ids"]) for f in features)
    assert len(rows) < len(features) and len(rows) >= math.ceil(sum(lengths) / L)  # several examples per row
    for r in rows:  # every example starts at position 0 and is one of ours, labels included
        starts = [i for i, p in enumerate(r["position_ids"]) if p == 0] + [L]
        pieces = [(r["input_ids"][a:b], r["labels"][a:b]) for a, b in zip(starts, starts[1:], strict=False)]
        real = [p for p in pieces if any(t != -100 for t in p[1])]
        assert all(any(p == (f["input_ids"], f["labels"]) for f in features) for p in real)
    batch = training.RowsCollator()(rows)
    assert batch["input_ids"].shape == (len(rows), L)
    model = lora_model(base[0])
    model(**batch, use_cache=False).loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    loss_func = training.GradedHeadLoss(model)
    slim = training.GradedHeadCollator(training.RowsCollator())(rows)
    labels = slim.pop("labels")
    out = model(**slim, use_cache=False)
    assert out.logits.shape[:2] == (len(rows), 1)  # the model's own head ran on one position per row
    loss = loss_func(out, labels)
    loss.backward()
    tokens = len(rows) * L
    T.assert_within(loss, one_by_one_loss(model, features), T.loss_tolerance(model, loss, tokens),
                    what="rows with the head at graded positions vs one by one")
    for name, p in model.named_parameters():
        if p.requires_grad:  # same rounding argument as in the answer-logits test above
            tol = 2**0.5 * T.loss_tolerance(model, reference[name].abs().max(), tokens)
            T.assert_within(p.grad, reference[name], tol, what=name)
    loss_func.handle.remove()
    with pytest.raises(InputError, match="more than row_length=10"):
        training.pack_rows(features, 10, pad_token_id=0)


def test_trainer_on_rows_with_the_head_at_graded_positions_logs_the_models_own_losses(base, features, tmp_path):
    """The full profile's batching through the Trainer (rows of a fixed length, GradedHeadLoss, gradient
    accumulation): the same logged losses as the model's own loss on the same rows."""
    rows = training.pack_rows(features, 2 * max(len(f["input_ids"]) for f in features), pad_token_id=0)
    curves = [logged_losses(base, tmp_path / str(graded), rows, 2, 1, collator=training.RowsCollator(),
                            graded_head=graded) for graded in (False, True)]
    # as in the answer-only test above: float32 rounding differences, moved through 1-2 AdamW updates
    torch.testing.assert_close(curves[0], curves[1], rtol=1e-3, atol=1e-4)
    assert len(curves[0]) == 2


@pytest.mark.parametrize("row_length,pack_multiple", [(0, 256), (0, 1), (256, 256)])
def test_token_budget_counts_what_the_batching_gives_the_model(features, row_length, pack_multiple):
    """token_budget (notebook 04's packing-vs-padding sentence) counts the tokens the run's own collator produces, and
    padding by hand: each pass of batch_size examples to its longest, every example to max_length."""
    config = QAConfig.resolve("smoke", max_length=128, batch_size=3, row_length=row_length, pack_multiple=pack_multiple)
    budget = training.token_budget(config, features, pad_token_id=0)
    lengths = [len(f["input_ids"]) for f in features]
    items, collator, _ = training.batching(config, features, 0)
    per_pass = [collator(items[i:i + config.batch_size]) for i in range(0, len(items), config.batch_size)]
    assert budget["this run"] == sum(b["input_ids"].numel() for b in per_pass)
    passes = [lengths[i:i + 3] for i in range(0, len(lengths), 3)]
    assert budget["padded to the longest"] == sum(len(p) * max(p) for p in passes)
    assert budget["padded to max_length"] == 128 * len(lengths) and budget["real"] == sum(lengths)
    if not row_length and pack_multiple == 1:
        assert budget["this run"] == budget["real"]  # packing with nothing added: the real tokens only
