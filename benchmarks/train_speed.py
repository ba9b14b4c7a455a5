"""QLoRA training speed and memory of a Phi-2-SHAPED model (RANDOM weights) on one GPU, lever by lever.

    python benchmarks/train_speed.py                      # every configuration -> results/train_speed.*
    python benchmarks/train_speed.py --only naive course  # some of them
    python benchmarks/train_speed.py --list               # what each configuration changes

Every configuration runs the notebook's own training code (``utils.qa.training.make_trainer`` with
``Trainer``, a 4-bit NF4 model from ``utils.models.load_model``, LoRA from ``utils.models.adapters.add_lora``)
on batches of the course's QA examples (``data/qa``: their real token lengths). The naive baseline
(every example padded to 512 tokens) runs in the same invocation, so each speed-up is a ratio
measured side by side. For each configuration we record:

- effective tokens/s: real (non-pad) tokens trained on per second, over the timed steps;
- step time (median), peak GPU memory (``torch.cuda.max_memory_allocated``, whole run), and
- MFU: effective tokens/s x 6 N / the GPU's dense bf16 peak, N = parameters in matrix products.

Why random weights: the GPU machine cannot reach the Hugging Face Hub. Speed and memory depend on
shapes, not values, so they are Phi-2's; nothing here measures quality. Configurations that share a
model set-up run in one worker process (a fresh ``Trainer`` each, memory freed in between); the
others get their own process. Rows are appended to ``<out>.jsonl`` as they finish.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from utils.qa.config import QAConfig  # noqa: E402

QA = QAConfig.resolve("full")  # notebook 04's full-profile settings: the one place they are written
# Knobs of the notebook's full profile; configurations override some.
COURSE = dict(padding="packed", batch=QA.batch_size, accum=QA.grad_accum, answer_logits=QA.answer_logits_only,
              checkpointing=QA.gradient_checkpointing, attention="sdpa", optimizer=QA.optimizer, precision="bf16",
              rank=QA.lora_rank, alpha=QA.lora_alpha, dropout=QA.lora_dropout, targets=list(QA.target_modules),
              compile=False, memory_cap_gib=None, profile=False, warmup=None, cudnn_attention=True,
              round_to=QA.pack_multiple)
NAIVE = dict(COURSE, padding="max_length", batch=8, accum=2, answer_logits=False, round_to=None,
             optimizer="paged_adamw_8bit")  # the plain stack: padded to 512, paged 8-bit AdamW, full logits
OLD = dict(NAIVE, padding="packed")  # the notebook's previous default: packed, 8 x 2, paged 8-bit AdamW
PAD_TO = 512  # the naive baseline's padded length (tokens)
MAX_LENGTH = QA.max_length  # notebook 04's (full profile): examples are encoded to at most this

# name -> (what it changes, settings, worker group). One group = one process = one loaded model.
CONFIGS: dict[str, tuple[str, dict, str]] = {
    "naive": ("baseline: each example padded to 512, 8 per pass x 2, paged 8-bit AdamW, full logits", NAIVE, "bf16"),
    "pad_longest": ("naive, padded to the batch's longest example instead of 512", dict(NAIVE, padding="longest"),
                    "bf16"),
    "packed_8x2": ("packed (padding-free), 8 per pass x 2: the notebook's previous default", OLD, "bf16"),
    "packed_16": ("packed, 16 per pass, no accumulation (same 16 examples per step)", dict(OLD, batch=16, accum=1),
                  "bf16"),
    "answer_logits_16": ("+ LM head on answer positions only", dict(COURSE, batch=16, round_to=None), "bf16"),
    "course_unrounded": ("+ 32 examples per step", dict(COURSE, round_to=None), "bf16"),
    "course": ("+ rows padded to a multiple of 256 tokens: notebook 04's full default", COURSE, "bf16"),
    "course_fused_adamw": ("course with fused 32-bit AdamW", dict(COURSE, optimizer="adamw_torch_fused"), "bf16"),
    "course_adamw_8bit": ("course with non-paged 8-bit AdamW", dict(COURSE, optimizer="adamw_bnb_8bit"), "bf16"),
    "course_64": ("course, 64 examples per step", dict(COURSE, batch=64), "bf16"),
    "no_checkpointing": ("course without gradient checkpointing", dict(COURSE, checkpointing=False), "bf16"),
    "eager_attention": ("course with eager (unfused) attention", dict(COURSE, attention="eager"), "bf16"),
    "naive_last": ("the naive baseline again, last in its process (drift check)", NAIVE, "bf16"),
    "r64_attention_only": ("rank 64 on q/k/v/dense only, 32-bit AdamW", dict(COURSE, rank=64, alpha=128,
                           targets=["q_proj", "k_proj", "v_proj", "dense"], optimizer="adamw_torch"), "r64"),
    "t4_fp16_15gib": ("course in fp16 under a 15 GiB cap (T4-shaped check)",
                      dict(COURSE, precision="fp16", memory_cap_gib=15.0), "fp16"),
    "t4_fp16_naive_15gib": ("naive in fp16 under a 15 GiB cap", dict(NAIVE, precision="fp16", memory_cap_gib=15.0),
                            "fp16"),
    "compile": ("course + torch.compile", dict(COURSE, compile=True, warmup=4), "compile"),
    "course_no_cudnn": ("32 per step, unrounded rows, PyTorch's memory-efficient attention instead of cuDNN's",
                        dict(COURSE, round_to=None, cudnn_attention=False), "bf16"),
    "course_64_no_cudnn": ("64 examples per step, unrounded rows, memory-efficient attention",
                           dict(COURSE, batch=64, round_to=None, cudnn_attention=False), "bf16"),
    "naive_no_cudnn": ("naive with memory-efficient attention", dict(NAIVE, cudnn_attention=False), "bf16"),
    "course_profiled": ("course under torch.profiler (where the step time goes)", dict(COURSE, profile=True), "profile"),
}
GROUP_TIMEOUT = {"compile": 150}  # seconds; a compile that takes longer is reported as failed
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L4": 121.0, "T4": 65.0}  # dense bf16/fp16 tensor peak


def gpu_peak_flops(name: str) -> float | None:
    return next((v * 1e12 for k, v in PEAK_TFLOPS.items() if k in name), None)


def _cuda(name: str, *args):
    """torch.cuda.<name>(*args), or 0 without a GPU (``--dry-run`` checks this script on the CPU)."""
    import torch

    return getattr(torch.cuda, name)(*args) if torch.cuda.is_available() else 0


# ----------------------------------------------------------------------------------------------- worker
def load_features(tokenizer, max_length: int) -> list[dict]:
    from utils.qa import data as qa_data

    rows = [*qa_data.load_qa_split(REPO / "data/qa/train.json"), *qa_data.load_qa_split(REPO / "data/qa/validation.json")]
    return qa_data.encode_rows(rows, tokenizer, max_length)[0]


def run_config(name: str, model, tokenizer, features, steps: int, warmup: int, work: Path,
               profile_path: Path) -> dict:
    import torch

    from utils.memory import estimate
    from utils.models.adapters import weight_count
    from utils.qa import precision, training

    cfg = dict(CONFIGS[name][1])
    if not torch.cuda.is_available():
        cfg["precision"] = "fp32"  # --dry-run on the CPU
    precision.set_attention(model, cfg["attention"])
    inner = model.get_base_model()
    if cfg["checkpointing"]:
        inner.gradient_checkpointing_enable({"use_reentrant": False})
    else:
        inner.gradient_checkpointing_disable()
    if torch.cuda.is_available():  # cuDNN's attention plans per shape; the alternative is PyTorch's own kernel
        torch.backends.cuda.enable_cudnn_sdp(cfg["cudnn_attention"])
    if cfg["padding"] == "packed":
        base = training.packing_collator(tokenizer.eos_token_id, cfg["round_to"] or 1)
    else:
        base = training.PaddedCollator(tokenizer.eos_token_id, PAD_TO if cfg["padding"] == "max_length" else None)
    counter = training.TokenCounter(base)
    warmup = cfg["warmup"] or warmup
    timer = training.StepTimer()
    args = training.training_arguments(work / name, QA, max_steps=warmup + steps, batch_size=cfg["batch"],
                                       grad_accum=cfg["accum"], optimizer=cfg["optimizer"],
                                       gradient_checkpointing=cfg["checkpointing"], logging_steps=1,
                                       save_steps=10**6, disable_tqdm=True, precision=cfg["precision"])
    args.torch_compile = cfg["compile"]
    n_examples = (warmup + steps) * cfg["batch"] * cfg["accum"]
    rng = random.Random(0)
    data = [features[rng.randrange(len(features))] for _ in range(n_examples)]
    trainer = training.make_trainer(model, args, data, callbacks=[timer], collator=counter,
                                    answer_logits_only=cfg["answer_logits"])
    gc.collect()
    _cuda("empty_cache")
    _cuda("reset_peak_memory_stats")
    before = _cuda("memory_allocated")
    t0 = time.perf_counter()
    if cfg["profile"]:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            trainer.train()
        averages = prof.key_averages()
        gpu_busy = sum(e.self_device_time_total for e in averages) / 1e6
        profile_path.write_text(f"{name}: {warmup + steps} steps; GPU kernels busy {gpu_busy:.2f} s in all\n\n"
                                + averages.table(sort_by="self_cuda_time_total", row_limit=25) + "\n\n"
                                + averages.table(sort_by="self_cpu_time_total", row_limit=25))
    else:
        trainer.train()
    wall = time.perf_counter() - t0
    micro = cfg["accum"]
    real = [sum(counter.real[i * micro:(i + 1) * micro]) for i in range(warmup + steps)]
    processed = [sum(counter.processed[i * micro:(i + 1) * micro]) for i in range(warmup + steps)]
    timed = timer.seconds[warmup:]
    tokens_per_s = sum(real[warmup:]) / sum(timed)
    matmul_params = sum(weight_count(p) for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n)
    peak_flops = gpu_peak_flops(torch.cuda.get_device_name()) if torch.cuda.is_available() else None
    row = {
        "config": name, "what": CONFIGS[name][0],
        **{k: v for k, v in cfg.items() if k not in ("targets", "profile", "warmup")},
        "sdpa_backend": "cudnn" if cfg["cudnn_attention"] else "flash/efficient",
        "targets": "+".join(cfg["targets"]), "steps_timed": steps, "warmup_steps": warmup,
        "median_step_s": statistics.median(timed), "first_step_s": timer.seconds[0],
        "real_tokens_per_step": sum(real[warmup:]) / steps, "processed_tokens_per_step": sum(processed[warmup:]) / steps,
        "padding_share": 1 - sum(real[warmup:]) / sum(processed[warmup:]),
        "effective_tokens_per_s": tokens_per_s, "examples_per_s": cfg["batch"] * cfg["accum"] * steps / sum(timed),
        "peak_gib": _cuda("max_memory_allocated") / 2**30, "reserved_peak_gib": _cuda("max_memory_reserved") / 2**30,
        "allocated_before_gib": before / 2**30, "matmul_params": matmul_params,
        "mfu": tokens_per_s * 6 * matmul_params / peak_flops if peak_flops else None,
        "wall_s": wall, "losses": training.loss_history(trainer)[1],
        "max_micro_tokens": max(counter.processed),
    }
    # The estimator's prediction for this configuration (validated in the report)
    largest = counter.largest()
    est = estimate(model.config, tokens=largest["tokens"], sequences=cfg["batch"] if cfg["padding"] != "packed" else 1,
                   logit_tokens=largest["graded"] if cfg["answer_logits"] else None,
                   lora_rank=cfg["rank"], target_modules=tuple(cfg["targets"]), lora_dropout=cfg["dropout"],
                   gradient_checkpointing=cfg["checkpointing"], optimizer=cfg["optimizer"],
                   attention=cfg["attention"])
    row["logit_tokens"] = largest["graded"] if cfg["answer_logits"] else largest["tokens"]
    row["estimate_gib"] = est.total / 2**30
    row["estimate_parts_gib"] = {k: v / 2**30 for k, v in est.parts.items()}
    del trainer
    model.zero_grad(set_to_none=True)
    gc.collect()
    _cuda("empty_cache")
    return row


def saved_tensor_probe(model, features, tokens: int) -> dict:
    """Shapes and dtypes of what autograd saves in one forward (no checkpointing), for the estimator."""
    import torch
    from transformers import DataCollatorWithFlattening

    from utils.memory import saved_tensor_bytes

    inner = model.get_base_model()
    model.train()  # checkpointing and dropout act in training mode only
    inner.gradient_checkpointing_disable()
    picked, total = [], 0
    for f in features:
        if total + len(f["input_ids"]) > tokens:
            break
        picked.append(f)
        total += len(f["input_ids"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch = {k: v.to(device) for k, v in DataCollatorWithFlattening()(picked).items()}
    rows: list = []
    with torch.autocast(device, dtype=torch.bfloat16):
        loss, plain = saved_tensor_bytes(lambda: model(**batch, use_cache=False).loss, include_parameters=False,
                                         record=rows)
    loss.backward()
    model.zero_grad(set_to_none=True)
    inner.gradient_checkpointing_enable({"use_reentrant": False})
    with torch.autocast(device, dtype=torch.bfloat16):
        loss, with_ckpt = saved_tensor_bytes(lambda: model(**batch, use_cache=False).loss, include_parameters=False)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return {"tokens": int(batch["input_ids"].numel()), "saved_no_ckpt_bytes": plain,
            "saved_ckpt_bytes": with_ckpt, "first_saved": rows[:120]}


def worker(group: str, names: list[str], model_path: str, out: Path, steps: int, warmup: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from utils.memory import model_storage_bytes
    from utils.models import bnb_4bit_config, load_model
    from utils.models.adapters import add_lora

    first = CONFIGS[names[0]][1]
    dtype = torch.float16 if first["precision"] == "fp16" else torch.bfloat16
    if not torch.cuda.is_available():
        dtype = torch.float32  # --dry-run on the CPU
    if first["memory_cap_gib"] and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(first["memory_cap_gib"] * 2**30 / total)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    features = load_features(tokenizer, MAX_LENGTH)
    t0 = time.perf_counter()
    model = load_model(model_path, AutoModelForCausalLM, bnb_4bit_config(dtype=dtype), dtype=dtype)
    info = {"group": group, "load_s": time.perf_counter() - t0, "loaded_gib": _cuda("memory_allocated") / 2**30,
            "storage_gib": model_storage_bytes(model)["total"] / 2**30}
    model = add_lora(model, first["rank"], first["alpha"], first["targets"], dropout=first["dropout"],
                     task_type="CAUSAL_LM", gradient_checkpointing=True)
    info["with_lora_gib"] = _cuda("memory_allocated") / 2**30
    if group == "bf16":
        try:
            info["probe"] = saved_tensor_probe(model, features, 1024)
        except Exception:  # a probe failure must not cost the timings
            info["probe_error"] = traceback.format_exc()[-2000:]
    append(out, {"worker": info})
    for name in names:
        try:
            row = run_config(name, model, tokenizer, features, steps, warmup, Path(tempfile.mkdtemp()),
                             out.parent / f"profile_{name}.txt")
        except Exception as err:  # e.g. out of memory: record it and go on
            row = {"config": name, "what": CONFIGS[name][0], "error": f"{type(err).__name__}: {err}"[:1500]}
            model.zero_grad(set_to_none=True)
            gc.collect()
            _cuda("empty_cache")
        append(out, row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("losses", "estimate_parts_gib")}, default=str),
              flush=True)


def append(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row, default=str) + "\n")


# ----------------------------------------------------------------------------------------------- driver
def report(jsonl: Path, stem: Path) -> str:
    """CSV and Markdown tables from the JSONL rows; every ratio is against this run's ``naive`` row."""
    lines = [json.loads(x) for x in jsonl.read_text().splitlines() if x.strip()]
    meta = next((x["meta"] for x in lines if "meta" in x), {})
    rows = [x for x in lines if "config" in x]
    naive = next((r for r in rows if r["config"] == "naive" and "error" not in r), None)
    cols = ["config", "what", "effective_tokens_per_s", "speedup", "median_step_s", "peak_gib", "estimate_gib",
            "estimate_error", "mfu", "padding_share", "real_tokens_per_step"]
    table = []
    for r in rows:
        if "error" in r:
            table.append({"config": r["config"], "what": r["what"] + f" — failed: {r['error'][:120]}"})
            continue
        t = dict(r)
        t["speedup"] = r["effective_tokens_per_s"] / naive["effective_tokens_per_s"] if naive else None
        t["estimate_error"] = r["estimate_gib"] / r["peak_gib"] - 1 if r["peak_gib"] else None
        table.append(t)
    import csv

    with stem.with_suffix(".csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)

    def fmt(v, col):
        if v is None:
            return ""
        if col in ("mfu", "padding_share", "estimate_error"):
            return f"{v:+.0%}" if col == "estimate_error" else f"{v:.0%}"
        if col == "speedup":
            return f"{v:.2f}x"
        if col in ("effective_tokens_per_s", "real_tokens_per_step"):
            return f"{v:,.0f}"
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    heads = ["configuration", "what changes", "effective tokens/s", "vs naive", "median step (s)", "peak GiB",
             "estimate GiB", "estimate error", "MFU", "padding", "real tokens/step"]
    md = [f"# QLoRA training speed, Phi-2-shaped model with RANDOM weights — {meta.get('gpu', '?')}, {meta.get('date', '?')}",
          "", f"torch {meta.get('torch')}, transformers {meta.get('transformers')}, peft {meta.get('peft')}, "
          f"bitsandbytes {meta.get('bitsandbytes')}. Data: the course's QA examples ({meta.get('lengths')}). "
          f"Each row: {meta.get('warmup')} warm-up + {meta.get('steps')} timed optimizer steps. MFU counts 6 N FLOP "
          f"per real token (N = {meta.get('matmul_params', 0) / 1e9:.2f} B parameters in matrix products) against "
          f"{meta.get('peak_tflops')} TFLOP/s dense bf16. Re-run: `python benchmarks/train_speed.py`.", "",
          "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for t in table:
        md.append("| " + " | ".join(fmt(t.get(c), c) for c in cols) + " |")
    text = "\n".join(md) + "\n"
    stem.with_suffix(".md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="configuration names (default: all; 'naive' is always added)")
    parser.add_argument("--list", action="store_true", help="list the configurations and exit")
    parser.add_argument("--model", help="model folder or Hub id (default: build a random Phi-2-shaped one)")
    parser.add_argument("--build", type=Path, help="folder for the random Phi-2-shaped model (kept, reused if there)")
    parser.add_argument("--out", type=Path, default=REPO / "results/train_speed", help="output stem (.jsonl/.csv/.md)")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps per configuration")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per worker process")
    parser.add_argument("--report-only", action="store_true", help="rebuild the tables from <out>.jsonl")
    parser.add_argument("--dry-run", action="store_true", help="check the script on the CPU with --model (fp32)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--names", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    jsonl = args.out.with_suffix(".jsonl")
    if args.list:
        for name, (what, _, group) in CONFIGS.items():
            print(f"{name:22s} [{group}] {what}")
        return
    if args.worker:
        return worker(args.worker, args.names, args.model, jsonl, args.steps, args.warmup)
    if args.report_only:
        print(report(jsonl, args.out))
        return
    unknown = sorted(set(args.only or []) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; choose from {sorted(CONFIGS)}")
    import torch
    import transformers

    if not torch.cuda.is_available() and not (args.dry_run and args.model):
        raise SystemExit("this benchmark needs a CUDA GPU (it measures GPU time and memory); to check the script "
                         "on the CPU, pass --dry-run --model <small model folder>.")
    names = list(CONFIGS) if not args.only else ["naive", *[n for n in args.only if n != "naive"]]
    model_path = args.model
    if model_path is None:
        from utils.models import tiny_phi

        folder = args.build or Path(tempfile.mkdtemp(prefix="phi2_shaped_")) / "model"
        if not (folder / "config.json").is_file():
            tiny_phi.build_random_phi2(folder, [REPO / "data/qa/train.json", REPO / "data/qa/validation.json"])
        model_path = str(folder)
    import bitsandbytes
    import peft
    from transformers import AutoTokenizer

    lengths = [len(f["input_ids"]) for f in load_features(AutoTokenizer.from_pretrained(model_path), MAX_LENGTH)]
    lengths.sort()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    jsonl.write_text("")
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (dry run)"
    append(jsonl, {"meta": {
        "gpu": gpu, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
        "transformers": transformers.__version__, "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__,
        "steps": args.steps, "warmup": args.warmup, "peak_tflops": (gpu_peak_flops(gpu) or 0) / 1e12,
        "lengths": f"{len(lengths)} examples, tokens per example mean {statistics.mean(lengths):.0f}, median "
                   f"{lengths[len(lengths) // 2]}, max {lengths[-1]}", "random_weights": args.model is None}})
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(CONFIGS[name][2], []).append(name)
    for group, members in groups.items():
        cmd = [sys.executable, __file__, "--worker", group, "--names", *members, "--model", model_path,
               "--out", str(args.out), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        try:
            subprocess.run(cmd, check=False, timeout=GROUP_TIMEOUT.get(group, args.timeout), env=os.environ.copy())
        except subprocess.TimeoutExpired:
            append(jsonl, {"config": members[-1], "what": CONFIGS[members[-1]][0],
                           "error": f"worker {group} ran past {args.timeout} s"})
    rows = [json.loads(x) for x in jsonl.read_text().splitlines() if x.strip()]
    matmul = next((r["matmul_params"] for r in rows if "matmul_params" in r), 0)
    lines = jsonl.read_text().splitlines()
    meta = json.loads(lines[0])
    meta["meta"]["matmul_params"] = matmul
    jsonl.write_text("\n".join([json.dumps(meta), *lines[1:]]) + "\n")
    print(report(jsonl, args.out))


if __name__ == "__main__":
    main()
