"""The speed and memory findings that benchmarks/README.md states for notebook 04 ("Why notebook 04's settings are
fast"), checked against the committed records they are read from: each comparison its prose makes holds in the record
(a new run that overturns one fails here instead of leaving the sentence false), and each figure it quotes is the
record's, formatted as quoted."""

from __future__ import annotations

import math
import re

import pytest

from utils.paths import REPO_ROOT, committed_result
from utils.qa.config import QAConfig

HEADING = "## Why notebook 04's settings are fast"


def tps(run: dict) -> float:
    """Real (non-pad) tokens trained per second."""
    return run["effective_tokens_per_s"]


@pytest.fixture(scope="module")
def section() -> str:
    text = (REPO_ROOT / "benchmarks" / "README.md").read_text()
    assert HEADING in text, f"benchmarks/README.md lost its section {HEADING!r}"
    body = text.split(HEADING, 1)[1]
    return re.split(r"^## ", body, maxsplit=1, flags=re.M)[0]


@pytest.fixture(scope="module")
def records() -> dict:
    return {"A": committed_result("train_speed_squad_runA"), "E": committed_result("train_speed_squad_runE"),
            "F": committed_result("train_speed_squad_runF"), "model": committed_result("gpu_phi2_shaped"),
            "notebook": committed_result("gpu_phi2_shaped_notebooks")}


def test_the_runs_are_the_ones_the_section_names(section, records):
    for run in ("A", "E", "F"):
        env = records[run]["environment"]
        assert (env["gpu"], records[run]["measured"], env["data"]) == ("NVIDIA H200", "2026-11-30", "squad"), run
        assert f"train_speed_squad_run{run}.md" in section
    assert "2026-11-30 on an NVIDIA H200" in section
    assert records["notebook"]["measured"] == "2026-11-23" and "2026-11-23" in section


def test_the_settings_described_are_notebook_04s_defaults(records):
    """The full profile's defaults are run F's default configuration; the smoke profile still packs one row per
    pass (what the section says of it)."""
    course, full = records["F"]["runs"]["course"], QAConfig.resolve("full")
    assert (full.row_length, full.batch_size, full.lora_dropout) == (course["row_length"], course["batch"], course["dropout"])
    assert full.fused_kernels and full.residual_16bit and full.answer_logits_only and course["lean_lora"]
    assert QAConfig.resolve("smoke").row_length == 0


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


def test_each_figure_the_section_quotes_is_the_records(section, records):
    A, E, F = (records[r]["runs"] for r in "AEF")
    load, nb = records["model"]["build_and_load_4bit"], records["notebook"]["04_bf16"]
    errors = [r["estimate_gib"] / r["peak_gib"] - 1 for r in F.values()
              if r.get("estimate_gib") and r["trainer"] == "hf" and r["backend"] == "bnb"]
    longest = int(re.search(r"max (\d+)", records["A"]["environment"]["lengths"]).group(1))
    unsloth_call = (tps(E["ab_course_1"]) + tps(E["ab_course_2"])) / 2
    figures = {
        "before: examples per pass": f"{A['before']['batch']} examples end to end",
        "before: tokens per pass": f"about {A['before']['real_tokens_per_step']:,.0f} real tokens",
        "longest example": f"at most {longest} tokens",
        "cross-example pairs": f"at least {math.floor(100 * (1 - longest / A['before']['real_tokens_per_step']))}%",
        "rows: MFU": f"used {A['rows_1024x8']['mfu']:.0%} of the GPU's peak against {A['before+gelu+cast+d0']['mfu']:.0%}",
        "default rows": f"{F['course']['batch']} rows of {F['course']['row_length']} tokens per pass, "
                        f"{F['course']['padding_share']:.0%} of the tokens",
        "gelu": f"{tps(A['before+gelu']) / tps(A['before']):.2f}× the tokens per second",
        "norm cast": f"another {tps(A['before+gelu+cast']) / tps(A['before+gelu']):.2f}×",
        "lean LoRA": f"{tps(F['course']) / tps(F['course_peft_lora']):.2f}×\n  and "
                     f"{tps(F['course_again']) / tps(F['course_peft_lora_again']):.2f}×",
        "peaks": f"{F['course']['peak_gib']:.2f} GiB against the naive baseline's {F['naive']['peak_gib']:.2f} GiB",
        "dropout": f"{tps(A['rows_1024x16']) / tps(A['rows_1024x16_d05']):.2f}× the tokens per second of dropout",
        "together": f"{tps(F['course']):,.0f} tokens per second, {F['course']['mfu']:.0%} of the GPU's bf16 peak, "
                    f"{tps(F['course']) / tps(F['naive']):.1f}× the naive baseline",
        "naive again": f"{tps(F['course']) / tps(F['naive_last']):.1f}× against the same baseline run again",
        "pad_longest": f"{tps(F['course']) / tps(F['pad_longest']):.1f}× padding each pass",
        "unsloth": f"faster still: {tps(E['unsloth']) / unsloth_call:.2f}×",
        "weights": f"{load['storage_4bit_gib']:.2f} GiB in 4 bit\ninstead of {load['storage_bf16_gib']:.2f} GiB in 16 bit",
        "double quant": f"double quantization saves {load['double_quant_saving_mib']:.0f} MiB",
        "activations": f"keeps {nb['activations']['with checkpointing MiB'] / 1024:.2f} GiB\nof activations instead of "
                       f"{nb['activations']['saved activations MiB (plain)'] / 1024:.2f} GiB for a "
                       f"{nb['packed_vs_padded_tokens'][0]}-token batch",
        "optimizer": f"keeps {nb['optimizer_memory']['paged 8-bit AdamW state MiB']:.0f} MiB of optimizer state\n"
                     f"instead of {nb['optimizer_memory']['AdamW 32-bit state MiB']:.0f} MiB",
        "estimate": f"within {min(errors):+.1%} to {max(errors):+.1%} of every measured peak",
    }
    flat = re.sub(r"\s+", " ", section)
    missing = {name: text for name, text in figures.items() if re.sub(r"\s+", " ", text) not in flat}
    assert not missing, f"benchmarks/README.md no longer quotes the records' figures (expected text): {missing}"


def test_utils_models_kernels_states_where_the_plain_stacks_gpu_time_went():
    """utils/models/kernels.py's docstring: before the levers, elementwise kernels and dtype copies took more GPU time
    than matrix products (the profile's kernel-class table)."""
    table = (REPO_ROOT / "results" / "train_speed_squad_profile_before.txt").read_text()
    share = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\| ([^|]+?) \| [\d.]+ \| (\d+)% \|$", table, re.M)}
    assert share["elementwise"] + share["copies and dtype casts"] > share["matrix products (GEMM)"], share
    import utils.models.kernels as kernels

    assert "more GPU time in elementwise kernels and dtype copies than\nin matrix products" in kernels.__doc__
