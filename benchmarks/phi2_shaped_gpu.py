"""The full QLoRA training + evaluation code on a Phi-2-SHAPED model with RANDOM weights, on one GPU.

    python benchmarks/phi2_shaped_gpu.py [--out results/<today>_phi2_shaped_gpu/record.json]

Why random weights: the machine this was run on cannot reach the Hugging Face Hub, so real
microsoft/phi-2 weights were not available. The model has Phi-2's exact architecture and sizes
(hidden 2560, 32 layers, 32 heads, MLP 10240, vocabulary 51200, partial rotary factor 0.4), so
memory, step time and tokens/s are those of Phi-2; quality numbers (EM/F1, perplexity) are those of a
random network and mean nothing. With Hub access, pass ``--model microsoft/phi-2`` to measure the
real model with the same code.

Sections (each recorded even if a later one fails): build + 4-bit load, memory savings, QLoRA
training steps (bf16), the fp16 overflow check and remedy, adapter evaluation, merge, inference timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from utils import memory  # noqa: E402
from utils.evaluation import qa as qa_eval  # noqa: E402
from utils.evaluation import squad as squad_metrics  # noqa: E402
from utils.memory import double_quant_saving_bytes, model_storage_bytes, track_peak  # noqa: E402
from utils.models import (  # noqa: E402
    bnb_4bit_config,
    load_model,
    tiny_phi,  # noqa: E402
)
from utils.models.adapters import add_lora, count_parameters, load_adapter, weight_count  # noqa: E402
from utils.qa import collate, precision, run_folder, training  # noqa: E402
from utils.qa import data as qa_data  # noqa: E402
from utils.qa.config import QAConfig  # noqa: E402
from utils.run_mode import environment_report  # noqa: E402

QA = QAConfig.resolve("full")  # notebook 04's full-profile settings
DATA = [REPO / "data/qa/train.json", REPO / "data/qa/validation.json"]
GIB = 2**30


OUT_PATH: Path | None = None


def write(results: dict) -> None:
    if OUT_PATH is not None:
        OUT_PATH.parent.mkdir(parents=True, exist_ok=True)
        OUT_PATH.write_text(json.dumps(results, indent=1, default=str) + "\n")


def section(results: dict, name: str):
    """Decorator-free helper: run a block, store its dict or its error under ``name``."""
    class _Ctx:
        def __enter__(self):
            self.t = time.perf_counter()
            results[name] = {}
            return results[name]

        def __exit__(self, exc_type, exc, tb):
            results[name]["section_seconds"] = round(time.perf_counter() - self.t, 1)
            if exc is not None:
                results[name]["error"] = "".join(traceback.format_exception(exc_type, exc, tb))[-3000:]
                print(results[name]["error"], flush=True)
            print(f"== {name}: {json.dumps(results[name], default=str)[:1500]}", flush=True)
            write(results)
            torch.cuda.empty_cache()
            return True  # keep going
    return _Ctx()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Hub id or folder; default: build a random Phi-2-shaped one")
    parser.add_argument("--out", help="the record to write (default results/<today>_phi2_shaped_gpu/record.json); "
                        "an existing one is never replaced")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--accum", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out = args.out or str(REPO / f"results/{datetime.date.today().isoformat()}_phi2_shaped_gpu/record.json")
    if Path(args.out).exists():
        raise SystemExit(f"{args.out} holds an earlier run: pass another --out.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    global OUT_PATH
    OUT_PATH = Path(args.out)
    transformers.set_seed(args.seed)
    results: dict = {"environment": environment_report(), "args": vars(args),
                     "note": "RANDOM-WEIGHT Phi-2-shaped model: memory/speed are Phi-2's, quality numbers are "
                             "meaningless; real Phi-2 quality needs the Hugging Face Hub."}
    work = Path(tempfile.mkdtemp(prefix="phi2_shaped_"))
    model_path = args.model

    with section(results, "build_and_load_4bit") as r:
        if model_path is None:
            t = time.perf_counter()
            model_path = str(tiny_phi.build_random_phi2(work / "base", qa_data.qa_texts(*DATA), args.seed))
            torch.cuda.empty_cache()
            r["build_seconds"] = time.perf_counter() - t
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        with track_peak() as peak:
            model = load_model(model_path, AutoModelForCausalLM, bnb_4bit_config())
        storage = model_storage_bytes(model)
        n_params = sum(weight_count(p) for p in model.parameters())
        r.update(load_seconds=peak.seconds, gpu_allocated_gib=torch.cuda.memory_allocated() / GIB,
                 storage_4bit_gib=storage["total"] / GIB, parameters=n_params,
                 storage_bf16_gib=n_params * 2 / GIB, compute_dtype=str(model.config.quantization_config
                                                                          .bnb_4bit_compute_dtype))
        r["double_quant_saving_mib"] = sum(double_quant_saving_bytes(p) for p in model.parameters()) / 2**20

    rows = qa_data.load_qa_split(REPO / "data/qa/train.json")
    eval_rows = qa_data.load_qa_split(REPO / "data/qa/validation.json")
    features, counts = qa_data.encode_rows(rows, tokenizer, args.max_length)
    eval_features, _ = qa_data.encode_rows(eval_rows, tokenizer, args.max_length)
    results["data"] = {"train_examples": counts, **qa_data.token_lengths(features)}

    with section(results, "lora_and_memory_savings") as r:
        model = add_lora(model, QA.lora_rank, QA.lora_alpha, list(QA.target_modules), dropout=QA.lora_dropout,
                        task_type="CAUSAL_LM", gradient_checkpointing=True)
        r["parameters"] = count_parameters(model)
        batch = {k: v.cuda() for k, v in collate.sample_batch(features, args.batch).items()}
        r["batch_tokens"] = int(batch["input_ids"].numel())
        with torch.autocast("cuda", dtype=torch.bfloat16):
            r["activations_checkpointing_mib"] = memory.saved_activation_bytes(model, batch) / 2**20
            model.base_model.model.gradient_checkpointing_disable()
            r["activations_no_checkpointing_mib"] = memory.saved_activation_bytes(model, batch) / 2**20
            model.base_model.model.gradient_checkpointing_enable({"use_reentrant": False})
        import bitsandbytes as bnb

        r["adamw32_state_mib"] = memory.optimizer_state_bytes(model, torch.optim.AdamW, lr=1e-4) / 2**20
        r["adamw8bit_state_mib"] = memory.optimizer_state_bytes(model, bnb.optim.PagedAdamW8bit, lr=1e-4) / 2**20

    adapter_dir = work / "adapter"
    with section(results, "train_bf16") as r:
        timer = training.StepTimer()
        targs = training.training_arguments(work / "ckpt", QA, max_steps=args.steps, batch_size=args.batch,
                                            grad_accum=args.accum, logging_steps=5,
                                            save_steps=args.steps, disable_tqdm=True)
        trainer = training.make_trainer(model, targs, features, callbacks=[timer])
        torch.cuda.reset_peak_memory_stats()
        trainer.train()
        steady = timer.seconds[2:] or timer.seconds
        tokens_per_step = results["data"]["mean"] * args.batch * args.accum
        r.update(precision="bf16" if targs.bf16 else ("fp16" if targs.fp16 else "fp32"),
                 optimizer=targs.optim, steps=args.steps, first_step_s=timer.seconds[0],
                 median_step_s=statistics.median(steady), peak_gib=torch.cuda.max_memory_allocated() / GIB,
                 tokens_per_step=tokens_per_step, tokens_per_s=tokens_per_step / statistics.median(steady),
                 losses=training.loss_history(trainer)[1])
        run_folder.save_adapter(model, tokenizer, adapter_dir, dataclasses.replace(QA, model_id=model_path),
                              {"steps": args.steps, "random_weights": True})
        r["adapter_mib"] = sum(f.stat().st_size for f in adapter_dir.iterdir()) / 2**20
    del trainer
    del model
    torch.cuda.empty_cache()

    with section(results, "fp16_overflow_check") as r:
        # A T4 has no bf16, so Phi-2 trains with fp16 compute there. Real Phi-2 has large query/key
        # activations that overflow fp16 (65504) in Q K^T; random weights do not, so we ALSO check a
        # model whose q/k outputs are scaled up by hooks to reach Phi-2-like attention logits.
        batch = collate.sample_batch(features, args.batch)
        m = load_model(model_path, AutoModelForCausalLM, bnb_4bit_config(dtype=torch.float16), dtype=torch.float16)
        cases = {}
        for attn in ("eager", "sdpa"):
            precision.set_attention(m, attn)
            case = {"default_init_finite": precision.forward_is_finite(m, batch, torch.float16)}
            for scale in (30.0, 100.0):
                hooks = [mod.register_forward_hook(lambda _m, _i, out, s=scale: out * s)
                         for name, mod in m.named_modules() if name.endswith(("q_proj", "k_proj"))]
                try:
                    with torch.no_grad():
                        layer = m.model.layers[0]
                        q = layer.self_attn.q_proj(layer.input_layernorm(m.model.embed_tokens(
                            batch["input_ids"].cuda())))
                    case[f"x{scale:g}_max_abs_q"] = float(q.abs().max())
                    case[f"x{scale:g}"] = precision.fp16_guard(m, batch, torch.float16)
                except FloatingPointError as err:
                    case[f"x{scale:g}"] = {"finite_before": False, "error": str(err)}
                finally:
                    for h in hooks:
                        h.remove()
                    precision.set_attention(m, attn)
            cases[attn] = case
        r["cases"] = cases
        # fp16 QLoRA training steps as on a T4 (autocast fp16 + GradScaler), with the guard first
        precision.set_attention(m, "sdpa")
        r["fp16_training_guard"] = precision.fp16_guard(m, batch, torch.float16)
        m = add_lora(m, QA.lora_rank, QA.lora_alpha, list(QA.target_modules), dropout=QA.lora_dropout,
                    task_type="CAUSAL_LM", gradient_checkpointing=True)
        timer = training.StepTimer()
        targs = training.training_arguments(work / "ckpt16", QA, max_steps=6, batch_size=args.batch,
                                            grad_accum=args.accum, logging_steps=1,
                                            save_steps=1000, disable_tqdm=True, precision="fp16")
        tr = training.make_trainer(m, targs, features, callbacks=[timer])
        torch.cuda.reset_peak_memory_stats()
        tr.train()
        r["fp16_train"] = {"losses": training.loss_history(tr)[1], "median_step_s": statistics.median(timer.seconds[2:]),
                           "peak_gib": torch.cuda.max_memory_allocated() / GIB}
        del tr, m
        torch.cuda.empty_cache()

    with section(results, "evaluation") as r:
        n = len(eval_rows)
        refs = [row["answers"]["text"] for row in eval_rows]
        tuned = load_adapter(model_path, adapter_dir, bnb_4bit_config())
        with track_peak() as peak:
            tuned_answers = qa_eval.generate_answers(tuned, tokenizer, eval_rows, max_new_tokens=24,
                                                      max_length=args.max_length, batch_size=16, progress=False)
        r["tuned_4bit"] = {"seconds": peak.seconds, "peak_gib": peak.gib, "questions": n,
                           **{k: v for k, v in squad_metrics.squad_scores(tuned_answers, refs).items()
                              if not k.startswith("per_")},
                           "answer_perplexity": qa_eval.answer_perplexity(tuned, eval_features)}
        with tuned.disable_adapter():
            base_answers = qa_eval.generate_answers(tuned, tokenizer, eval_rows, max_new_tokens=24,
                                                     max_length=args.max_length, progress=False)
            r["base_4bit"] = {k: v for k, v in squad_metrics.squad_scores(base_answers, refs).items()
                              if not k.startswith("per_")}
        batch = collate.sample_batch(eval_features, 4)
        # merge into a 16-bit copy; compare with the unmerged 16-bit base + adapter and the 4-bit one
        merged, r["merge"] = qa_eval.merge_check(tuned, model_path, adapter_dir, batch, torch.bfloat16)
        del tuned
        torch.cuda.empty_cache()
        with track_peak() as peak:
            qa_eval.generate_answers(merged, tokenizer, eval_rows, max_new_tokens=24,
                                      max_length=args.max_length, batch_size=16, progress=False)
        r["merged_bf16"] = {"seconds": peak.seconds, "peak_gib": peak.gib, "questions": n,
                            "storage_gib": model_storage_bytes(merged)["total"] / GIB}
        r["generation"] = "greedy, max_new_tokens=24, batch 16, left padding, cut at EOS/newline"

    write(results)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
