"""utils.memory.estimate: hand-counted parts, a real 4-bit model's storage, and the GPU measurements."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM

from utils.memory import estimate, full_profile_phi2, model_storage_bytes
from utils.models import bnb_4bit_config, load_model, tiny_phi
from utils.models.adapters import add_lora, count_parameters
from utils.paths import REPO_ROOT
from utils.qa.config import QAConfig
from utils.qa.data import qa_texts

PHI2 = tiny_phi.phi2_shaped_config()
DATA = [REPO_ROOT / "data/qa/train.json", REPO_ROOT / "data/qa/validation.json"]


def test_parts_by_hand_for_phi2():
    e = estimate(PHI2, tokens=1000, lora_rank=16, optimizer="adamw_torch", residual_16bit=False,
                 offload_checkpoints=False)
    n_linear = 32 * (4 * 2560 * 2560 + 2 * 2560 * 10240)  # q, k, v, dense; fc1, fc2
    n_fp32 = 2 * 51200 * 2560 + 51200 + 32 * (2 * 2560 + 4 * 2560 + 10240 + 2560) + 2 * 2560
    assert e.parts["weights"] == int(n_linear / 2 + n_linear / 64 * (1 + 4 / 256) + 4 * n_fp32)
    n_lora = 32 * 16 * (4 * (2560 + 2560) + 2 * (2560 + 10240))
    assert n_lora == 23_592_960  # peft's count for Phi-2, r=16, all six (notebook 04)
    assert e.parts["lora"] == 8 * n_lora and e.parts["optimizer"] == 8 * n_lora
    assert e.parts["activations"] == 32 * 1000 * 4 * 2560  # checkpointing: each layer's fp32 input
    # utils.models.forward_patches' 16-bit residual stream: the checkpointed inputs and the embeddings and head in 2 bytes
    e16 = estimate(PHI2, tokens=1000, lora_rank=16, optimizer="adamw_torch", residual_16bit=True,
                   offload_checkpoints=False)
    n_embed = 2 * 51200 * 2560 + 51200
    assert e.parts["weights"] - e16.parts["weights"] == 2 * n_embed
    assert e16.parts["activations"] == 32 * 1000 * 2 * 2560
    # utils.models.offload: the checkpoints wait in CPU memory; on the GPU, the one being fetched back and the next
    offloaded = estimate(PHI2, tokens=1000, lora_rank=16, optimizer="adamw_torch", residual_16bit=True)
    assert offloaded.parts["activations"] == 2 * 1000 * 2 * 2560
    assert offloaded.total == e16.total - 30 * 1000 * 2 * 2560


def test_weights_and_adapters_equal_a_real_4bit_model(tmp_path):
    folder = tiny_phi.ensure_tiny_phi(tmp_path / "phi", qa_texts(*DATA), seed=0, vocab_size=512, hidden_size=64,
                                      intermediate_size=256)
    model = add_lora(load_model(str(folder), AutoModelForCausalLM, bnb_4bit_config()), 8, 16,
                     ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"], task_type="CAUSAL_LM",
                     gradient_checkpointing=True)
    storage = model_storage_bytes(model)
    e = estimate(model.config, tokens=10, lora_rank=8, residual_16bit=False)  # float32 on the CPU: no 16-bit casts
    assert e.parts["lora"] == 8 * count_parameters(model)["trainable"]
    assert e.parts["weights"] == pytest.approx(storage["frozen"], rel=0.01)  # packed codes, absmax, fp32 rest


def _rows(name):
    return [r for r in map(json.loads, (REPO_ROOT / "results" / name).read_text().splitlines())
            if r.get("peak_gib", 0) > 0 and "max_micro_tokens" in r]  # not Unsloth's row: its own trainer and settings


SQUAD_RUNS = ["2026-11-30_train_speed_squad_runA/record.jsonl", "2026-11-30_train_speed_squad_runB/record.jsonl", "2026-11-30_train_speed_squad_runD/record.jsonl",
              "2026-11-30_train_speed_squad_runE/record.jsonl", "2026-11-30_train_speed_squad_runF/record.jsonl",
              "2026-12-07_train_speed_squad_runG/record.jsonl", "2026-12-07_train_speed_squad_runH/record.jsonl",
              "2026-12-07_train_speed_squad_runJ/record.jsonl", "2026-12-07_train_speed_squad_runL/record.jsonl",
              "2026-12-07_train_speed_squad_runM/record.jsonl"]
TOY_RUNS = ["2026-11-23_train_speed_toy_run3/record.jsonl", "2026-11-23_train_speed_toy_run2/record.jsonl", "2026-11-23_train_speed_toy_run4/record.jsonl", "2026-11-30_train_speed_toy_runE/record.jsonl"]


def _course_recipe(r):
    """Rows QAConfig can express: not TRL's own trainer (its loss is not ours) and not the one-lever-at-a-time
    steps that fuse the GELU without the 16-bit norm outputs (QAConfig.fused_kernels switches both)."""
    return r.get("trainer", "hf") == "hf" and bool(r.get("gelu")) == bool(r.get("norm_cast"))


@pytest.mark.parametrize("name", [*TOY_RUNS, *SQUAD_RUNS])
def test_within_15_percent_of_every_gpu_measurement(name):
    """Peaks measured on an H100 and an H200 (benchmarks/train_speed.py), predicted again with today's estimator from
    each row's settings (rows from before a lever existed lack its key: it was off)."""
    rows = [r for r in _rows(name) if _course_recipe(r)]
    assert len(rows) >= 4  # the toy run of issue 18 has four: naive (twice), pad_longest, the default
    for r in rows:
        logit_tokens = r.get("logit_tokens", round(0.105 * r["max_micro_tokens"]) if r["answer_logits"] else None)
        e = estimate(PHI2, tokens=r["max_micro_tokens"], sequences=r["batch"] if r["padding"] != "packed" else 1,
                     logit_tokens=logit_tokens, lora_rank=r["rank"], target_modules=tuple(r["targets"].split("+")),
                     lora_dropout=r["dropout"], gradient_checkpointing=r["checkpointing"], optimizer=r["optimizer"],
                     attention=r["attention"], fused_kernels=bool(r.get("gelu") and r.get("norm_cast")),
                     residual_16bit=bool(r.get("residual16")),
                     offload_checkpoints=bool((r.get("offload") or r.get("hf_offload")) and r["checkpointing"]))
        assert abs(e.gib / r["peak_gib"] - 1) < 0.15, (r["config"], e.gib, r["peak_gib"])


def test_the_course_default_is_fast_at_squad_lengths_within_the_naive_memory():
    """Issue 18's bar, from the committed H100 run H (random-weight Phi-2 shape, SQuAD-length data): notebook 04's
    full default trains at >= 30% MFU, >= 2x both the naive and the pad_longest baselines timed in the same process,
    at no more peak memory than naive; in fp16 under a 15 GiB cap (the T4-shaped check) it fits."""
    rows = {r["config"]: r for r in _rows("2026-12-07_train_speed_squad_runH/record.jsonl")}
    course, naive, longest = rows["course"], rows["naive"], rows["pad_longest"]
    assert course["mfu"] >= 0.30
    assert course["effective_tokens_per_s"] >= 2 * max(naive["effective_tokens_per_s"], longest["effective_tokens_per_s"])
    assert course["peak_gib"] <= naive["peak_gib"]
    t4 = rows["t4_fp16_15gib"]
    assert t4["precision"] == "fp16" and t4["memory_cap_gib"] == 15.0 and t4["peak_gib"] < 15.0
    qa = QAConfig()  # the defaults measured are today's defaults
    assert (course["row_length"], course["batch"], course["dropout"]) == (qa.row_length, qa.batch_size, qa.lora_dropout)
    assert course["gelu"] and course["norm_cast"] and course["residual16"] == qa.residual_16bit and qa.fused_kernels
    assert not course["compile"] and not course["liger_ln"] and course["backend"] == "bnb"
    assert course["fused_lora"] == qa.fused_kernels  # the 4-bit + LoRA layer as one function (utils.models.qlora_linear)


def test_levers_move_the_estimate_the_right_way():
    base = dict(tokens=4096, lora_rank=16, fused_kernels=False, residual_16bit=False)
    assert estimate(PHI2, **base, gradient_checkpointing=False).gib > 3 * estimate(PHI2, **base).gib
    levers = dict(base, logit_tokens=400, fused_kernels=True, residual_16bit=True)
    fused_only, plain = dict(levers, residual_16bit=False), dict(levers, fused_kernels=False, residual_16bit=False)
    assert estimate(PHI2, **levers).gib < estimate(PHI2, **fused_only).gib < estimate(PHI2, **plain).gib
    assert estimate(PHI2, **base, logit_tokens=400).gib < estimate(PHI2, **base).gib
    assert estimate(PHI2, **base, attention="eager").gib > estimate(PHI2, **base).gib


def test_all_linear_counts_every_linear_layer_of_a_decoder_layer():
    """('all-linear',) (what QAConfig and --target-modules all-linear give) is peft's keyword: all six of Phi's
    decoder-layer linears. Bad input to estimate() is in tests/test_bad_input_settings.py."""
    every = estimate(PHI2, tokens=100, target_modules=("all-linear",))
    assert every.parts == estimate(PHI2, tokens=100, target_modules=("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2")).parts


def test_saved_tensor_bytes_records_each_storage_once():
    import torch

    from utils.memory import saved_tensor_bytes

    x = torch.ones(10, requires_grad=True)
    record: list = []
    _, total = saved_tensor_bytes(lambda: (x * x).exp().sum(), record=record)  # mul keeps x twice, exp its output
    assert total == 80 and record == [([10], "float32", 40), ([10], "float32", 40)]


def test_random_phi2_builder_saves_a_loadable_model_and_tokenizer(tmp_path, monkeypatch):
    small = tiny_phi.tiny_phi_config(vocab_size=2048, hidden_size=64, intermediate_size=256)
    monkeypatch.setattr(tiny_phi, "phi2_shaped_config", lambda: small)  # Phi-2's real size takes 5 GB
    folder = tiny_phi.build_random_phi2(tmp_path / "phi", qa_texts(*DATA), seed=0)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.hidden_size == 64 and model.config.eos_token_id == model.config.bos_token_id
    assert next(model.parameters()).dtype.is_floating_point


def test_summary_gives_parts_in_mib_and_the_error_against_a_measurement():
    e = estimate(PHI2, tokens=1000)
    table = e.summary(measured=e.total // 2)
    assert table["predicted peak (MiB)"] == round(e.total / 2**20, 1) and table["error"] == pytest.approx(1.0, abs=1e-3)
    assert table["weights (MiB)"] == round(e.parts["weights"] / 2**20, 1) and "error" not in e.summary()


def test_the_full_profiles_pass_on_phi2_and_what_answer_only_logits_take_off():
    """What notebook 04 predicts on a CPU and the README quotes: the full profile's pass shape on Phi-2's shapes."""
    qa = QAConfig.resolve("full")
    bound, shape = full_profile_phi2()
    assert shape == {"batch": qa.batch_size, "row_length": qa.row_length, "max_length": qa.max_length,
                     "tokens": qa.batch_size * (qa.row_length or qa.max_length)}
    assert bound.total == estimate(PHI2, tokens=shape["tokens"], sequences=qa.batch_size if qa.row_length else 1,
                                   qa=qa).total
    answers_only, _ = full_profile_phi2(answer_share=0.1)  # the LM head on a tenth of the positions
    assert answers_only.parts["transient"] < bound.parts["transient"] and answers_only.total < bound.total
    assert {k: v for k, v in answers_only.parts.items() if k != "transient"} == \
        {k: v for k, v in bound.parts.items() if k != "transient"}  # only the logits phase changes
