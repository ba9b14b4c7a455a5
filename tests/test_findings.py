"""Each finding that benchmarks/README.md and README.md state in words (tools/templates/*.md) still holds in the
committed records they are filled from. The templates state a comparison ("faster", "rises", "exact"); a new run
that overturns one fails here instead of leaving the sentence false."""

from __future__ import annotations

import re

import pytest

from tools import readme
from utils.paths import committed_result
from utils.qa.config import QAConfig


def tps(run: dict) -> float:
    """Real (non-pad) tokens trained per second."""
    return run["effective_tokens_per_s"]


@pytest.fixture(scope="module")
def records() -> dict:
    return {"A": committed_result("2026-11-30_train_speed_squad_runA"), "E": committed_result("2026-11-30_train_speed_squad_runE"),
            "F": committed_result("2026-11-30_train_speed_squad_runF"), "G": committed_result("2026-12-07_train_speed_squad_runG"),
            "H": committed_result("2026-12-07_train_speed_squad_runH"), "J": committed_result("2026-12-07_train_speed_squad_runJ"),
            "L": committed_result("2026-12-07_train_speed_squad_runL"), "M": committed_result("2026-12-07_train_speed_squad_runM"),
            "levers": committed_result("2026-12-07_levers_gpu"), "model": committed_result("2026-11-23_phi2_shaped_gpu"),
            "notebook": committed_result("2026-11-23_notebooks_on_gpu")}


def test_the_speed_runs_are_the_ones_the_section_names(records):
    """speed-levers.md: "all three on 2026-11-30 on an NVIDIA H200", at SQuAD's lengths."""
    for run in ("A", "E", "F"):
        env = records[run]["environment"]
        assert (env["gpu"], records[run]["measured"], env["data"]) == ("NVIDIA H200", "2026-11-30", "squad"), run


def test_the_settings_described_are_notebook_04s_defaults(records):
    """The full profile's defaults are run M's default configuration (bf16, and fp16 with its rows per pass); the
    smoke profile still packs one row per pass (what the section says of it)."""
    course, full = records["M"]["runs"]["course"], QAConfig.resolve("full")
    assert (full.row_length, full.batch_size, full.lora_dropout) == (course["row_length"], course["batch"], course["dropout"])
    assert full.fused_kernels and full.residual_16bit and full.answer_logits_only and course["fused_lora"] and course["rope"]
    assert full.offload_checkpoints == course["offload"] and full.optimizer == course["optimizer"] == "adamw_torch_fused"
    fp16, t4 = QAConfig.resolve("full", precision="fp16"), records["M"]["runs"]["t4_fp16_15gib"]
    assert (fp16.batch_size, fp16.grad_accum) == (t4["batch"], t4["accum"]) and t4["precision"] == "fp16" and t4["offload"]
    assert QAConfig.resolve("smoke").row_length == 0


def test_the_new_default_and_its_rivals_as_the_section_states(records):
    """speed-levers.md, runs G, H, J, L, M (one H100 call each) and the levers' GPU check: the fused 4-bit + LoRA layer
    beat the one-pass addition in all three pairs (G, H); the in-place RoPE beat transformers' (J) and its kernel beat
    PyTorch's operations (L, and equal to the bit); offloading lowered the peak at no loss of speed, transformers' own
    offload was slower (J); fused AdamW beat paged 8-bit AdamW for more memory (L); in run M the default beat Unsloth
    in both pairs at less memory and >= 40% MFU, Unsloth had beaten run H's default; the fp16 path under a 15 GiB cap
    is under the naive baseline's peak, with 28 rows and the checkpoints on the GPU it was above (H); TRL's wrapped
    packing beats its padding-free packing (M) and the padded run (H), and the default beats it."""
    G, H = records["G"], records["H"]
    assert {records[r]["environment"]["gpu"] for r in "GHJLM"} == {"NVIDIA H100 80GB HBM3"}
    assert min(readme.fused_lora_gains(G, H)) > 0
    j, run_l, m, h = (records[r]["runs"] for r in "JLMH")
    assert tps(j["course"]) > tps(j["course_no_rope"]) and tps(run_l["course"]) > tps(run_l["course_rope_torch_ops"])
    kernel = records["levers"]["kernel"]
    assert kernel["equal"] and all(kernel[k]["triton_ms"] < kernel[k]["torch_ops_ms"] for k in ("cos_bfloat16", "cos_float32"))
    assert j["course"]["peak_gib"] < j["course_no_offload"]["peak_gib"]
    assert tps(j["course"]) >= 0.98 * tps(j["course_no_offload"])  # "at no loss of speed": within run-to-run noise
    assert j["course_hf_offload"]["peak_gib"] < j["course_no_offload"]["peak_gib"]
    assert tps(j["course_hf_offload"]) < tps(j["course_no_offload"])
    assert tps(run_l["course_fused_adamw"]) > tps(run_l["course"]) and run_l["course_fused_adamw"]["peak_gib"] > run_l["course"]["peak_gib"]
    for ours, theirs in (("course", "unsloth"), ("pair_default_1", "unsloth_pair_1")):  # issue 32's bar, both pairs
        assert "error" not in m[theirs] and m[theirs]["real_tokens_per_step"] > 0.95 * m[ours]["real_tokens_per_step"]
        assert tps(m[ours]) > tps(m[theirs]) and m[ours]["peak_gib"] < m[theirs]["peak_gib"] and m[ours]["mfu"] >= 0.40
    assert m["course"]["rope_kernel"] == {"triton": True}  # the Triton kernel ran (no fallback)
    assert tps(h["unsloth"]) > tps(h["course"])
    assert m["course"]["peak_gib"] < m["naive"]["peak_gib"] and tps(m["course"]) > max(tps(m["naive"]), tps(m["pad_longest"]))
    assert m["t4_fp16_15gib"]["memory_cap_gib"] == 15.0 and m["t4_fp16_15gib"]["peak_gib"] < m["naive"]["peak_gib"]
    assert h["course_fp16_28"]["peak_gib"] > h["naive"]["peak_gib"]
    assert tps(m["trl_wrapped"]) > tps(m["trl_packed"]) and tps(h["trl_wrapped"]) > tps(h["trl_padded"])
    assert tps(m["course"]) > tps(m["trl_wrapped"])
    for trl in ("trl_packed", "trl_wrapped"):  # "overestimates TRL's rows"
        assert m[trl]["estimate_gib"] > m[trl]["peak_gib"]


def levers_gpu_script():
    """benchmarks/levers_gpu.py as a module (its ``verdict`` is the check the record is judged by)."""
    import importlib.util

    from utils.paths import REPO_ROOT

    spec = importlib.util.spec_from_file_location("levers_gpu", REPO_ROOT / "benchmarks" / "levers_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_levers_gpu_check_passes_and_can_fail(records):
    """results/2026-12-07_levers_gpu: every loss equal, every gradient within twice the plain stack's own difference
    (benchmarks/levers_gpu.py's verdict); a lever twice as far off as allowed fails it."""
    import copy

    levers_gpu = levers_gpu_script()
    record = dict(records["levers"])
    verdict = levers_gpu.verdict(record)
    assert verdict["ok"] and all(r["loss_diff"] == 0 for r in record["runs"].values())
    worse = copy.deepcopy(record)
    worse["runs"]["offload"]["max_rel_grad_diff"] = 2 * verdict["allowed"]
    assert not levers_gpu.verdict(worse)["ok"]


def test_each_comparison_of_the_section_holds_in_the_records(records):
    A, E, F = (records[r]["runs"] for r in "AEF")
    # rows of a fixed length beat one long row with the same kernel settings (and the same dropout, 0)
    assert A["rows_1024x8"]["dropout"] == A["before+gelu+cast+d0"]["dropout"] == 0
    assert A["rows_1024x8"]["mfu"] > A["before+gelu+cast+d0"]["mfu"]
    # one long row: an example is at most 384 tokens, so the pairs within one example are at most 384 / row of all
    longest = int(re.search(r"max (\d+)", records["A"]["environment"]["lengths"]).group(1))
    assert 1 - longest / A["before"]["real_tokens_per_step"] >= 0.93
    # each kernel lever is faster than the step before it, and dropout 0 than dropout 0.05
    assert tps(A["before+gelu"]) > tps(A["before"]) and tps(A["before+gelu+cast"]) > tps(A["before+gelu"])
    assert A["rows_1024x16_d05"]["dropout"] == 0.05 and tps(A["rows_1024x16"]) > tps(A["rows_1024x16_d05"])
    # LoRA added in one pass won both back-to-back pairs
    assert tps(F["course"]) > tps(F["course_peft_lora"]) and tps(F["course_again"]) > tps(F["course_peft_lora_again"])
    # the default: within the naive baseline's memory, faster than both baselines; pad_longest slower than naive
    assert F["course"]["peak_gib"] < F["naive"]["peak_gib"]
    assert tps(F["course"]) > tps(F["naive"]) and tps(F["course"]) > tps(F["naive_last"])
    assert tps(F["pad_longest"]) < tps(F["naive"])
    assert F["naive"]["max_micro_tokens"] // F["naive"]["batch"] == 512  # each example padded to 512 tokens
    # Unsloth was faster than that run's default, which still used peft's LoRA forward
    assert tps(E["unsloth"]) > (tps(E["ab_course_1"]) + tps(E["ab_course_2"])) / 2
    # memory: each QLoRA piece saves what the section says it saves
    load, nb = records["model"]["build_and_load_4bit"], records["notebook"]["04_bf16"]
    assert load["storage_4bit_gib"] < load["storage_bf16_gib"]
    assert nb["activations"]["with checkpointing MiB"] < nb["activations"]["saved activations MiB (plain)"]
    opt = nb["optimizer_memory"]
    assert opt["paged 8-bit AdamW state MiB"] < opt["AdamW 32-bit state MiB"]


def test_train_speed_findings_hold(records):
    """train-speed.md: LoRA in one pass beat peft's forward in both pairs; Liger's LayerNorm won each pair; compile
    did not help; only cold fp16 had slow steps; Unsloth was faster than its call's default."""
    E, F = records["E"], records["F"]
    assert min(readme.lean_lora_gains(F)) > 0
    assert len(readme.liger_gains(E)) == 3 and min(readme.liger_gains(E)) > 0
    assert tps(E["runs"]["course_compile"]) < tps(E["runs"]["course"])
    slow = {name: readme.slow_steps(E["runs"][name]) for name in ("cold_bf16", "cold_fp16", "cold_fp16_no_cudnn")}
    assert slow["cold_fp16"] > 0 and slow["cold_bf16"] == slow["cold_fp16_no_cudnn"] == 0, slow
    warm = {name: E["runs"][name]["step_s"][:E["runs"][name]["warmup_steps"]] for name in ("cold_bf16", "cold_fp16")}
    assert min(warm["cold_fp16"]) > max(warm["cold_bf16"]), warm  # "fp16's warm-up steps took ... against bf16's"
    assert tps(E["runs"]["unsloth"]) > readme.unsloth_call_default(E)


def test_a_finding_the_records_no_longer_show_fails(records):
    """The checks above can fail: an edited copy of run F where peft's forward wins is caught."""
    import copy

    f = copy.deepcopy(dict(records["F"]))
    f["runs"] = {k: dict(v) for k, v in records["F"]["runs"].items()}
    f["runs"]["course"]["effective_tokens_per_s"] = f["runs"]["course_peft_lora"]["effective_tokens_per_s"] * 0.99
    assert min(readme.lean_lora_gains(f)) < 0


@pytest.fixture(scope="module")
def rendered_records() -> dict:
    """Every record the generated blocks are rendered from (tools.readme.load_records: a few seconds, read once)."""
    return readme.load_records()


@pytest.fixture(scope="module")
def course(rendered_records) -> dict:
    return rendered_records["course"]


def test_smoke_quantization_findings_hold(course):
    """smoke-quantization.md's words, on the recorded course run."""
    q1, q2 = course["quantization"]["01"], course["quantization"]["02"]
    ratio = q1["outlier_error_ratio"]
    assert ratio["per_tensor"] > ratio["blockwise"]  # "raises the per-tensor error ... but the block-wise only"
    assert q1["packed_bytes_equal_bitsandbytes"]  # "our packed bytes equal bitsandbytes'"
    bits = q1["bits_per_weight"]
    assert bits["measured_double_quant"] != bits["formula_double_quant"]  # "not the formula"
    assert q2["nf4_below_symmetric_everywhere"]  # "at every block size"
    asym = {w: b for w, b in q2["asym_int4_below_nf4_at"].items() if b}
    assert asym and q2["asym_int4_stores_more_bits_there"]  # "edges NF4 only at ..., where it stores more bits"
    err = q2["output_rel_error"]
    assert err["nf4"] < err["int4"] < err["fp4"]  # the order the sentence lists them in
    v = readme.smoke_quantization(course)
    assert v["q41"]["SQNR gaussian (dB)"] > v["nf4_same"]  # "NF4 wins against symmetric grids, not against" Q4_1
    assert v["again"]["mse"] == 0  # "Re-quantizing ... with Q4_1 is exact"
    assert v["ppl"][1] > v["ppl"][0]  # "the perplexity ... rises"


def test_smoke_qa_findings_hold(course):
    """smoke-figures.md: "the answer loss falls"."""
    train = course["qa_training"]
    assert train["last_loss"] < train["first_loss"]


def test_gpu_findings_hold(rendered_records):
    """gpu-qa.md and gpu-memory.md: each QLoRA piece saves memory; multi-gpu.md: two GPUs are faster than one."""
    records = rendered_records
    load = records["phi2"]["build_and_load_4bit"]
    assert load["storage_4bit_gib"] < load["storage_bf16_gib"]
    saving = records["phi2"]["lora_and_memory_savings"]
    assert saving["adamw8bit_state_mib"] < saving["adamw32_state_mib"]
    scaling = readme.multi_gpu(records["scaling"], records["scaling_runs"])
    assert 1 < scaling["speedup"] <= scaling["n"]


def test_the_default_gguf_type_keeps_what_q4_0_lost():
    """README ("Export to GGUF"), utils.export.DEFAULT_QUANT and notebook 05's section 9 say: on held-out questions,
    q4_0 lost answers that q8_0 kept, run by llama.cpp, and q8_0 is the default; the f16 file answers as the merged
    model does."""
    from utils.export import DEFAULT_QUANT

    rows = {r["way"]: r for r in committed_result("2026-12-07_gguf_quality_smollm2")["results"]}
    merged, q8, q4 = (rows[k]["f1"] for k in ("merged float32 (transformers)", "GGUF q8_0 (llama.cpp)",
                                              "GGUF q4_0 (llama.cpp)"))
    assert q4 < min(merged, q8) and DEFAULT_QUANT == "q8_0"
    assert rows["GGUF f16 (llama.cpp)"]["answers"] == rows["merged float32 (transformers)"]["answers"]


def test_the_levers_readme_states_the_records_numbers(records):
    """results/2026-12-07_levers_gpu/README.md was written by hand: each figure in its table and kernel sentence is
    the record's, at the precision shown."""
    from utils.paths import RESULTS_DIR

    readme = (RESULTS_DIR / "2026-12-07_levers_gpu" / "README.md").read_text()
    record = records["levers"]
    labels = {"plain": "plain (torch's checkpoint, transformers' RoPE)", "plain_again": "plain again",
              "offload": "offload", "rope": "rope (Triton)", "rope_torch_ops": "rope (PyTorch's operations)",
              "both": "both"}
    for name, label in labels.items():
        run = record["runs"][name]
        diff = "0 (the reference)" if name == "plain" else f"{run['max_rel_grad_diff']:.4f}"
        row = f"| {label} | {run['loss']:.4f} | {diff} | {run['peak_gib']:.2f} | {run['median_s']:.3f} |"
        assert row in readme, row
    for kernel in (record["kernel"]["cos_bfloat16"], record["kernel"]["cos_float32"]):
        assert f"{kernel['triton_ms']:.2f} ms against {kernel['torch_ops_ms']:.2f} ms" in readme
    verdict = levers_gpu_script().verdict(record)
    assert f"({verdict['noise']:.4f})" in readme and f"({verdict['allowed']:.4f})" in readme
