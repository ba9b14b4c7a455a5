"""QLoRA training speed and memory of a Phi-2-SHAPED model (RANDOM weights) on one GPU, lever by lever.

    python benchmarks/train_speed.py                      # every configuration, SQuAD lengths -> results/<today>_train_speed_squad/
    python benchmarks/train_speed.py --data toy           # the same on the course's short toy examples
    python benchmarks/train_speed.py --only naive course  # some of them
    python benchmarks/train_speed.py --list               # what each configuration changes

Every configuration runs the notebook's own training code (``utils.qa.training.make_trainer`` with
``Trainer``, a 4-bit NF4 model from ``utils.models.load_model``, LoRA from ``utils.models.adapters.add_lora``)
on batches of QA examples of SQuAD v1.1's length distribution (``--data squad``, the default: the course's
examples lengthened with its own paragraphs, `benchmarks/lengths.py` states the distribution and its sources)
or the course's short toy examples as they are (``--data toy``). The naive baseline
(every example padded to 512 tokens) runs in the same invocation, so each speed-up is a ratio
measured side by side. For each configuration we record:

- effective tokens/s: real (non-pad) tokens trained on per second, over the timed steps;
- step time (median), peak GPU memory (``torch.cuda.max_memory_allocated``, whole run), and
- MFU: effective tokens/s x 6 N / the GPU's dense bf16 peak, N = parameters in matrix products.

Why random weights: the GPU machine cannot reach the Hugging Face Hub. Speed and memory depend on
shapes, not values, so they are Phi-2's; nothing here measures quality. Configurations that share a
model set-up run in one worker process (a fresh ``Trainer`` each, memory freed in between); the
others get their own process. Rows are appended to ``<out>/record.jsonl`` as they finish; ``<out>/README.md`` and
``<out>/table.csv`` are the tables, ``<out>/profile_<name>.txt`` the profiler runs.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
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
COURSE = dict(padding="rows" if QA.row_length else "packed", batch=QA.batch_size, accum=QA.grad_accum, answer_logits=QA.answer_logits_only,
              checkpointing=QA.gradient_checkpointing, attention="sdpa", optimizer=QA.optimizer, precision="bf16",
              rank=QA.lora_rank, alpha=QA.lora_alpha, dropout=QA.lora_dropout, targets=list(QA.target_modules),
              compile=False, memory_cap_gib=None, profile=False, warmup=None, cudnn_attention=True,
              round_to=QA.pack_multiple, row_length=QA.row_length or None, gelu=QA.fused_kernels,
              norm_cast=QA.fused_kernels, residual16=QA.residual_16bit, embed16=QA.residual_16bit, trainer="hf", backend="bnb", liger_ln=False,
              lean_lora=False, fused_lora=QA.fused_kernels, rope=QA.fused_kernels,
              offload=QA.offload_checkpoints and QA.gradient_checkpointing, hf_offload=False)
NAIVE = dict(COURSE, padding="max_length", batch=8, accum=2, answer_logits=False, round_to=None, row_length=None,
             optimizer="paged_adamw_8bit", gelu=False, norm_cast=False, residual16=False, embed16=False, dropout=0.05,
             lean_lora=False, fused_lora=False, rope=False, offload=False)  # padded to 512, full logits
# notebook 04's previous default (before issue 18): 32 examples packed in one row rounded to 256 tokens
BEFORE = dict(NAIVE, padding="packed", batch=32, accum=1, answer_logits=True, round_to=256)
# the levers of issue 18, all on: rows of a fixed length, fused GELU, 16-bit norm outputs, no LoRA dropout
ROWS = dict(BEFORE, padding="rows", row_length=1024, batch=16, gelu=True, norm_cast=True, dropout=0.0, round_to=None,
            residual16=False, embed16=False)
# the 4-bit + LoRA layer as one autograd function (utils.models.qlora_linear); the previous default added LoRA with
# the lean forward (utils.models.forward_patches.lean_lora_4bit)
FUSED = dict(COURSE, lean_lora=False, fused_lora=True)
LEAN = dict(COURSE, lean_lora=True, fused_lora=False)
FP16 = QAConfig.resolve("full", precision="fp16")  # the course's settings on a T4 (fp16): its rows per pass
COURSE_FP16 = dict(COURSE, precision="fp16", batch=FP16.batch_size, accum=FP16.grad_accum)
PAD_TO = 512  # the naive baseline's padded length (tokens)
MAX_LENGTH = QA.max_length  # notebook 04's (full profile): examples are encoded to at most this

# name -> (what it changes, settings, worker group). One group = one process = one loaded model.
CONFIGS: dict[str, tuple[str, dict, str]] = {
    "naive": ("baseline: each example padded to 512, 8 per pass x 2, paged 8-bit AdamW, full logits", NAIVE, "bf16"),
    "pad_longest": ("naive, padded to the batch's longest example instead of 512", dict(NAIVE, padding="longest"),
                    "bf16"),
    "trl_packed": ("TRL SFTTrainer, packing='bfd' (padding-free), 16 x 1024-token rows per pass, completion-only loss",
                   dict(NAIVE, trainer="trl", padding="trl", batch=16, accum=1, row_length=1024), "bf16"),
    "trl_wrapped": ("TRL SFTTrainer, packing='wrapped' (16 rows of 1024 tokens, each its own sequence: no "
                    "padding-free flattening into one 16k-token sequence under SDPA), completion-only loss",
                    dict(NAIVE, trainer="trl", padding="trl", batch=16, accum=1, row_length=1024, trl_packing="wrapped"),
                    "bf16"),
    "trl_padded": ("TRL SFTTrainer without packing: 8 examples per pass x 2, padded to the longest, completion-only loss",
                   dict(NAIVE, trainer="trl", padding="trl", batch=8, accum=2, row_length=MAX_LENGTH, trl_packing=None),
                   "bf16"),
    "before": ("notebook 04's default before issue 18: 32 examples packed in one row (rounded to 256), "
               "LM head on answer positions", BEFORE, "bf16"),
    "before+gelu": ("+ fused tanh-GELU (one kernel instead of eight)", dict(BEFORE, gelu=True), "bf16"),
    "before+gelu+cast": ("+ norm outputs cast to bf16 once (no float32 layer internals)",
                         dict(BEFORE, gelu=True, norm_cast=True), "bf16"),
    "before+gelu+cast+d0": ("+ LoRA dropout 0 (no dropout kernel, no masks)",
                            dict(BEFORE, gelu=True, norm_cast=True, dropout=0.0), "bf16"),
    "rows_1024x8": ("all levers, rows of 1024 tokens, 8 per pass (8k-token budget)", dict(ROWS, batch=8), "bf16"),
    "rows_1024x16": ("all levers, rows of 1024 tokens, 16 per pass (16k-token budget)", ROWS, "bf16"),
    "rows_1024x24": ("all levers, rows of 1024 tokens, 24 per pass (24k-token budget)", dict(ROWS, batch=24), "bf16"),
    "rows_512x32": ("all levers, rows of 512 tokens, 32 per pass", dict(ROWS, row_length=512, batch=32), "bf16"),
    "rows_2048x8": ("all levers, rows of 2048 tokens, 8 per pass", dict(ROWS, row_length=2048, batch=8), "bf16"),
    "rows_1024x16_d05": ("rows_1024x16 with LoRA dropout 0.05", dict(ROWS, dropout=0.05), "bf16"),
    "rows_512x16": ("all levers, rows of 512 tokens, 16 per pass (8k)", dict(ROWS, row_length=512, batch=16), "bf16"),
    "rows_512x16_res16": ("rows_512x16 + a 16-bit residual stream (half the checkpointed hidden states)",
                          dict(ROWS, row_length=512, batch=16, residual16=True), "bf16"),
    "rows_512x24_res16": ("rows of 512, 24 per pass (12k), 16-bit residual",
                          dict(ROWS, row_length=512, batch=24, residual16=True), "bf16"),
    "rows_512x32_res16": ("rows of 512, 32 per pass (16k), 16-bit residual",
                          dict(ROWS, row_length=512, batch=32, residual16=True), "bf16"),
    "rows_1024x12_res16": ("rows of 1024, 12 per pass (12k), 16-bit residual",
                           dict(ROWS, batch=12, residual16=True), "bf16"),
    "rows_1024x16_res16": ("rows of 1024, 16 per pass (16k), 16-bit residual",
                           dict(ROWS, batch=16, residual16=True), "bf16"),
    "rows_512x24_res16_emb16": ("rows_512x24_res16 + 16-bit frozen embeddings and head (exact: ~0.5 GiB less)",
                                dict(ROWS, row_length=512, batch=24, residual16=True, embed16=True), "bf16"),
    "rows_512x32_res16_emb16": ("rows of 512, 32 per pass (16k), 16-bit residual, embeddings and head",
                                dict(ROWS, row_length=512, batch=32, residual16=True, embed16=True), "bf16"),
    "course": ("notebook 04's full default now (QAConfig)", COURSE, "bf16"),
    "course_peft_lora": ("'course' with peft's own LoRA forward (output copied, then scaled and added: 3 passes)",
                         dict(COURSE, lean_lora=False, fused_lora=False), "bf16"),
    "course_again": ("'course' again, after 'course_peft_lora' (A/B in one process)", COURSE, "bf16"),
    "course_peft_lora_again": ("'course_peft_lora' again (A/B)", dict(COURSE, lean_lora=False, fused_lora=False),
                               "bf16"),
    "course_lean": ("'course' with the previous default's LoRA forward (lean_lora_4bit: one addition, no copy)",
                    LEAN, "bf16"),
    "course_no_offload": ("'course' with the checkpoints kept on the GPU (utils.models.offload off)",
                          dict(COURSE, offload=False), "bf16"),
    "course_hf_offload": ("'course' with transformers' own offload (save_on_cpu: copies on the compute stream) "
                          "instead of the course's", dict(COURSE, offload=False, hf_offload=True), "bf16"),
    "course_no_rope": ("'course' with transformers' rotary embedding (utils.models.rotary off)",
                       dict(COURSE, rope=False), "bf16"),
    "course_rope_torch_ops": ("'course' with the in-place RoPE computed by PyTorch's operations instead of the "
                              "Triton kernel", dict(COURSE, rope_triton=False), "bf16"),
    "course_previous": ("the previous default (run H's 'course'): no in-place RoPE, checkpoints on the GPU",
                        dict(COURSE, rope=False, offload=False), "bf16"),
    "course_liger_ln": ("'course' with Liger's LayerNorm kernel instead of PyTorch's (+ its output cast)",
                        dict(COURSE, liger_ln=True), "bf16"),
    "course_fused": ("'course' with the 4-bit + LoRA layer as one autograd function (utils.models.qlora_linear: "
                     "LoRA added in the products' epilogues, forward and backward)", FUSED, "bf16"),
    "course_fused_adamw": ("'course_fused' with PyTorch's fused AdamW (float32 states) instead of paged 8-bit AdamW",
                           dict(FUSED, optimizer="adamw_torch_fused"), "bf16"),
    "course_fused_14x2": ("'course_fused' with 14 rows per pass x 2 accumulated (the same 28 rows per step)",
                          dict(FUSED, batch=14, accum=2), "bf16"),
    "course_b": ("'course' again (A/B with 'course_fused' in one process)", COURSE, "bf16"),
    "course_fused_b": ("'course_fused' again (A/B)", FUSED, "bf16"),
    "naive_last": ("the naive baseline again, last in its process (drift check)", NAIVE, "bf16"),
    "before_profiled": ("'before' under torch.profiler (where the step time goes)", dict(BEFORE, profile=True),
                        "profile"),
    "course_profiled": ("'course' under torch.profiler", dict(COURSE, profile=True), "profile"),
    "course_fp16": ("notebook 04's default on a T4 (fp16: float32 residual stream, its rows per pass) on this GPU",
                    COURSE_FP16, "fp16"),
    "course_fp16_28": ("'course' in fp16 with bf16's 28 rows per pass (the previous T4 path)",
                       dict(COURSE, precision="fp16"), "fp16"),
    "before_fp16": ("'before' in fp16", dict(BEFORE, precision="fp16"), "fp16"),
    "course_fp16_profiled": ("'course' in fp16 under torch.profiler (the fp16 slowdown)",
                             dict(COURSE, precision="fp16", profile=True), "fp16"),
    "course_fp16_fused_14x2": ("'course_fused_14x2' in fp16 (the T4 path)",
                               dict(FUSED, precision="fp16", batch=14, accum=2), "fp16"),
    "t4_fp16_fused_14x2_15gib": ("'course_fp16_fused_14x2' under a 15 GiB cap (T4-shaped check)",
                                 dict(FUSED, precision="fp16", batch=14, accum=2, memory_cap_gib=15.0), "t4"),
    "pair_default_1": ("notebook 04's default, in a process of its own, just before Unsloth's (pair 1)", COURSE,
                       "pair_1"),
    "pair_default_2": ("notebook 04's default, in a process of its own, just before Unsloth's (pair 2)", COURSE,
                       "pair_2"),
    "t4_fp16_15gib": ("'course_fp16' under a 15 GiB cap (T4-shaped check)", dict(COURSE_FP16, memory_cap_gib=15.0),
                      "t4"),
    "course_compile": ("'course' + torch.compile (static shapes)", dict(COURSE, compile=True, warmup=4), "compile"),
    "course_torchao_nf4": ("'course' with torchao's NF4 tensor instead of bitsandbytes (block 64, scales per 256)",
                           dict(COURSE, backend="torchao"), "torchao"),
    # The fp16 slowdown of runs 2-3 (toy data): the fp16 row ran first in a fresh process on packed rows whose length
    # changes every step. Each of these runs first in a process of its own on such rows (no rounding), so a kernel
    # that plans per shape (cuDNN attention) meets a new shape at every step, as it did then.
    "cold_bf16": ("'before' unrounded (a new row length every step), first in a fresh process, bf16",
                  dict(BEFORE, round_to=None), "cold_bf16"),
    "cold_fp16": ("the same in fp16", dict(BEFORE, round_to=None, precision="fp16"), "cold_fp16"),
    "cold_fp16_no_cudnn": ("the same in fp16 with PyTorch's attention kernels instead of cuDNN's",
                           dict(BEFORE, round_to=None, precision="fp16", cudnn_attention=False), "cold_fp16_no_cudnn"),
    "cold_fp16_profiled": ("'cold_fp16' under torch.profiler (where its slow steps' time goes)",
                           dict(BEFORE, round_to=None, precision="fp16", profile=True), "cold_fp16_profiled"),
    # Liger's LayerNorm against PyTorch's, alternating in one process (a lever is kept only if it wins beyond the
    # drift between configurations of one process)
    "ab_course_1": ("'course' (A/B with Liger's LayerNorm, 1st)", COURSE, "ab"),
    "ab_liger_ln_1": ("'course_liger_ln' (A/B, 1st)", dict(COURSE, liger_ln=True), "ab"),
    "ab_course_2": ("'course' (A/B, 2nd)", COURSE, "ab"),
    "ab_liger_ln_2": ("'course_liger_ln' (A/B, 2nd)", dict(COURSE, liger_ln=True), "ab"),
}
GROUP_TIMEOUT = {"compile": 170}  # seconds; a compile that takes longer is reported as failed
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L4": 121.0, "T4": 65.0}  # dense bf16/fp16 tensor peak


def gpu_peak_flops(name: str) -> float | None:
    return next((v * 1e12 for k, v in PEAK_TFLOPS.items() if k in name), None)


def _cuda(name: str, *args):
    """torch.cuda.<name>(*args), or 0 without a GPU (``--dry-run`` checks this script on the CPU)."""
    import torch

    return getattr(torch.cuda, name)(*args) if torch.cuda.is_available() else 0


# ----------------------------------------------------------------------------------------------- worker
def load_features(tokenizer, max_length: int, data: str = "squad", n: int = 3000) -> list[dict]:
    """Encoded training examples: ``squad`` (default): ``n`` examples of SQuAD v1.1's length distribution built
    from the course's QA set (`benchmarks/lengths.py`: `realistic_rows`); ``toy``: the course's QA set as it is."""
    from benchmarks import lengths
    from utils.qa import data as qa_data

    rows = [*qa_data.load_qa_split(REPO / "data/qa/train.json"), *qa_data.load_qa_split(REPO / "data/qa/validation.json")]
    if data == "squad":
        rows = lengths.realistic_rows(rows, tokenizer, n, max_length, seed=0)
    return qa_data.encode_rows(rows, tokenizer, max_length)[0]


def set_lora_dropout(model, p: float) -> None:
    """Every LoRA layer's dropout to ``p`` (peft uses an identity when 0: no kernel, no mask)."""
    import torch

    for module in model.modules():
        if hasattr(module, "lora_dropout") and isinstance(module.lora_dropout, torch.nn.ModuleDict):
            for key in module.lora_dropout:
                module.lora_dropout[key] = torch.nn.Dropout(p) if p > 0 else torch.nn.Identity()


class Levers:
    """Apply a configuration's kernel levers to the loaded model, and undo them afterwards (one model serves a
    whole worker group)."""

    def __init__(self, model, cfg: dict, dtype):

        from utils.models.forward_patches import (
            embeddings_and_head_in,
            lean_lora_4bit,
            norm_outputs_in,
            residual_in,
            swap_modules,
            use_fused_gelu,
        )

        self.model, self.handles, self.swapped = model, [], []
        set_lora_dropout(model, cfg["dropout"])
        from utils.models.qlora_linear import fuse_qlora_linears

        self.fused = fuse_qlora_linears(model) if cfg.get("fused_lora") else []
        from utils.models import rotary
        from utils.models.rotary import rope_in_place

        rotary.KERNEL["triton"] = cfg.get("rope_triton", True)  # False: PyTorch's operations on the GPU too
        self.rope = rope_in_place(model) if cfg.get("rope") else []
        self.lean = lean_lora_4bit(model) if cfg.get("lean_lora") and not self.fused else []
        if cfg["gelu"]:
            self.swapped += use_fused_gelu(model)
        if cfg["liger_ln"]:
            from liger_kernel.transformers import LigerLayerNorm

            def liger(norm):
                new = LigerLayerNorm(norm.normalized_shape[0], eps=norm.eps).to(norm.weight.device)
                new.weight, new.bias = norm.weight, norm.bias
                return new

            self.swapped += swap_modules(model, lambda m: type(m).__name__ == "LayerNorm", liger)
        if cfg["norm_cast"]:
            self.handles += norm_outputs_in(model, dtype)
        self.upcast = []
        if cfg["residual16"]:  # run_config applied the course's rule (training.residual_16bit): bf16 only
            self.handles += residual_in(model, dtype)
            if cfg["embed16"]:
                self.upcast = embeddings_and_head_in(model.get_base_model(), dtype)

    def undo(self) -> None:
        from utils.models.forward_patches import restore, undo_lean_lora_4bit
        from utils.models.qlora_linear import unfuse_qlora_linears
        from utils.models.rotary import undo_rope_in_place

        restore(self.swapped)
        undo_rope_in_place(self.rope)
        undo_lean_lora_4bit(self.lean)
        unfuse_qlora_linears(self.fused)
        for h in self.handles:
            h.remove()
        for p in self.upcast:  # back to peft's float32, for the next configuration
            p.data = p.data.float()


def trl_trainer(model, tokenizer, features, cfg, args, counter):
    """TRL's SFTTrainer as a user would set it up: prompt/completion rows, packing='bfd' (padding-free rows of
    ``row_length``), completion-only loss, the same TrainingArguments values."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    texts = [{"prompt": tokenizer.decode([t for t, lab in zip(f["input_ids"], f["labels"], strict=True) if lab == -100]),
              "completion": tokenizer.decode([t for t, lab in zip(f["input_ids"], f["labels"], strict=True) if lab != -100])}
             for f in features]
    keep = {k: v for k, v in args.to_dict().items() if k in SFTConfig.__dataclass_fields__ and not k.startswith("_")}
    strategy = cfg.get("trl_packing", "bfd")  # "bfd": padding-free; "wrapped": rows cut at row_length; None: padded
    keep.update(packing=strategy is not None, max_length=cfg["row_length"], completion_only_loss=True,
                dataset_num_proc=None, report_to=[], **({"packing_strategy": strategy} if strategy else {}))
    sft_args = SFTConfig(**keep)
    trainer = SFTTrainer(model=model, args=sft_args, train_dataset=Dataset.from_list(texts), processing_class=tokenizer)
    inner = trainer.data_collator

    def counted(examples):  # tokens per micro-batch, as for every other configuration
        batch = inner(examples)
        counter.real.append(int((batch["position_ids"] >= 0).sum()) if "attention_mask" not in batch
                            else int(batch["attention_mask"].sum()))
        counter.processed.append(int(batch["input_ids"].numel()))
        counter.graded.append(int((batch["labels"] != -100).sum()))
        return batch

    trainer.data_collator = counted
    return trainer


def run_config(name: str, model, tokenizer, features, steps: int, warmup: int, work: Path,
               profile_path: Path) -> dict:
    import torch

    from utils.models import rotary
    from utils.models.adapters import weight_count
    from utils.models.loading import set_activation_checkpointing
    from utils.qa import collate, precision, training

    cfg = dict(CONFIGS[name][1])
    if not torch.cuda.is_available():
        cfg["precision"] = "fp32"  # --dry-run on the CPU
    precision.set_attention(model, cfg["attention"])
    inner = model.get_base_model()
    set_activation_checkpointing(inner, cfg["checkpointing"])
    if torch.cuda.is_available():  # cuDNN's attention plans per shape; the alternative is PyTorch's own kernel
        torch.backends.cuda.enable_cudnn_sdp(cfg["cudnn_attention"])
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg["precision"], torch.float32)
    # what acts, and is recorded: the course's rule for the 16-bit residual stream (and embeddings/head)
    cfg["residual16"] = training.residual_16bit(QA.replace(precision=cfg["precision"], residual_16bit=cfg["residual16"]))
    cfg["embed16"] = cfg["embed16"] and cfg["residual16"]
    levers = Levers(model, cfg, dtype)
    warmup = cfg["warmup"] or warmup
    rng = random.Random(0)
    graded_head = False
    if cfg["padding"] == "rows":  # a fixed token budget: batch rows of row_length tokens per pass
        picked = [features[rng.randrange(len(features))] for _ in range(len(features))]
        items = collate.pack_rows(picked, cfg["row_length"], tokenizer.eos_token_id)
        base, graded_head = collate.RowsCollator(), cfg["answer_logits"]
    else:
        items = features
        if cfg["padding"] == "packed":
            base = collate.packing_collator(tokenizer.eos_token_id, cfg["round_to"] or 1)
        else:
            base = collate.PaddedCollator(tokenizer.eos_token_id, PAD_TO if cfg["padding"] == "max_length" else None)
    counter = training.TokenCounter(base)
    timer = training.StepTimer()
    args = training.training_arguments(work / name, QA, max_steps=warmup + steps, batch_size=cfg["batch"],
                                       grad_accum=cfg["accum"], optimizer=cfg["optimizer"],
                                       gradient_checkpointing=cfg["checkpointing"], logging_steps=1,
                                       save_steps=10**6, disable_tqdm=True, precision=cfg["precision"])
    args.torch_compile = cfg["compile"]
    if cfg.get("hf_offload"):  # transformers' own: save_on_cpu around torch's checkpoint, on the compute stream
        args.activation_checkpointing_kwargs = {**(args.activation_checkpointing_kwargs or {}), "offload": True}
    n_items = (warmup + steps) * cfg["batch"] * cfg["accum"]
    if cfg["trainer"] == "trl":
        data = [features[rng.randrange(len(features))] for _ in range(n_items * 6)]  # ~5 examples per row
        trainer = trl_trainer(model, tokenizer, data, cfg, args, counter)
        trainer.add_callback(timer)
    else:
        data = [items[rng.randrange(len(items))] for _ in range(n_items)]
        trainer = training.make_trainer(model, args, data, callbacks=[timer], collator=counter,
                                        answer_logits_only=cfg["answer_logits"] and not graded_head,
                                        graded_head=graded_head, offload_checkpoints=bool(cfg.get("offload")))
    gc.collect()
    _cuda("empty_cache")
    _cuda("reset_peak_memory_stats")
    before = _cuda("memory_allocated")
    t0 = time.perf_counter()
    try:
        if cfg["profile"]:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
                trainer.train()
            kernel_classes = write_profile(prof, profile_path, name, warmup + steps, time.perf_counter() - t0)
        else:
            trainer.train()
            kernel_classes = None
    finally:
        levers.undo()
        loss_func = getattr(trainer, "compute_loss_func", None)
        if hasattr(loss_func, "handle"):  # GradedHeadLoss's hook on this model
            loss_func.handle.remove()
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
        "effective_tokens_per_s": tokens_per_s,
        "peak_gib": _cuda("max_memory_allocated") / 2**30, "reserved_peak_gib": _cuda("max_memory_reserved") / 2**30,
        "allocated_before_gib": before / 2**30, "matmul_params": matmul_params,
        "mfu": tokens_per_s * 6 * matmul_params / peak_flops if peak_flops else None,
        "wall_s": wall, "losses": training.loss_history(trainer)[1],
        "max_micro_tokens": max(counter.processed), "kernel_classes": kernel_classes,
        "step_s": timer.seconds,  # every step, warm-up included: outliers show here, not in the median
        "rope_kernel": dict(rotary.KERNEL) if cfg.get("rope") else None,  # the Triton kernel ran, or its fallback
        "alloc_retries": (torch.cuda.memory_stats().get("num_alloc_retries", 0) if torch.cuda.is_available()
                          else None),  # the allocator freed its cache to satisfy a request (a cap being hit)
    }
    # The estimator's prediction for this configuration (validated in the report)
    largest = counter.largest()
    row["logit_tokens"] = largest["graded"] if cfg["answer_logits"] else largest["tokens"]
    est = predict(row, model.config)
    row["estimate_gib"] = est.total / 2**30
    row["estimate_parts_gib"] = {k: v / 2**30 for k, v in est.parts.items()}
    del trainer
    model.zero_grad(set_to_none=True)
    gc.collect()
    _cuda("empty_cache")
    return row


def predict(row: dict, config=None):
    """``utils.memory.estimate`` of a result row's peak, from the settings the row records (rows written before a
    lever existed lack its key: it was off). ``config``: the model's (default: Phi-2's shapes)."""
    from utils.memory import estimate
    from utils.models.tiny_phi import phi2_shaped_config

    sequences = 1 if row["padding"] in ("packed", "trl") else row["batch"]
    return estimate(config or phi2_shaped_config(), tokens=row["max_micro_tokens"], sequences=sequences,
                    logit_tokens=row["logit_tokens"] if row["answer_logits"] else None, lora_rank=row["rank"],
                    target_modules=tuple(row["targets"].split("+")), lora_dropout=row["dropout"],
                    gradient_checkpointing=row["checkpointing"], optimizer=row["optimizer"],
                    attention=row["attention"], fused_kernels=bool(row.get("gelu") and row.get("norm_cast")),
                    residual_16bit=bool(row.get("residual16")),
                    offload_checkpoints=bool((row.get("offload") or row.get("hf_offload")) and row["checkpointing"]))


KERNEL_CLASSES = [  # (class, substrings of CUDA kernel names), first match wins
    ("matrix products (GEMM)", ("gemm", "nvjet", "cutlass", "sm90_xmma", "cublas", "_tst_", "splitk")),
    ("attention", ("sdpa", "flash", "fmha", "attention", "cudnn")),
    ("4-bit dequantize (bitsandbytes)", ("kdequantize", "dequantize")),
    ("optimizer", ("optimizer", "adam", "kpreconditional", "kOptimizer")),
    ("norms", ("layer_norm", "layernorm", "rms")),
    ("copies and dtype casts", ("copy", "memcpy", "cast", "unrolled_elementwise")),
    ("reductions", ("reduce", "sum", "norm")),
    ("elementwise", ("elementwise", "vectorized", "triton", "pointwise", "gelu", "tanh", "dropout", "mul", "add")),
]


def write_profile(prof, path: Path, name: str, steps: int, wall: float) -> dict:
    """Where the GPU time goes, per kernel class (:data:`KERNEL_CLASSES`), plus the top kernels; returns the
    class totals in seconds and the share of the wall time the GPU was busy."""
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA" or e.self_device_time_total > 0]
    kernels = [e for e in events if not e.key.startswith("aten::") and e.self_device_time_total > 0]
    totals: dict[str, float] = {}
    for e in kernels:
        key = e.key.lower()
        cls = next((c for c, subs in KERNEL_CLASSES if any(s.lower() in key for s in subs)), "other")
        totals[cls] = totals.get(cls, 0.0) + e.self_device_time_total / 1e6
    busy = sum(totals.values())
    lines = [f"{name}: {steps} steps in {wall:.2f} s wall; GPU kernels busy {busy:.2f} s ({busy / max(wall, 1e-9):.0%} of the wall "
             "time)", "", "| kernel class | GPU seconds | share of GPU time |", "|---|---|---|"]
    lines += [f"| {c} | {t:.3f} | {t / max(busy, 1e-9):.0%} |" for c, t in sorted(totals.items(), key=lambda x: -x[1])]
    lines += ["", prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=30)]
    lines += ["", "By CPU time (work on the host: planning, launches, synchronisation):", "",
              prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)]
    lines += ["", "Copies by the operation's input shapes (which tensors are copied):", "",
              prof.key_averages(group_by_input_shape=True).table(sort_by="self_cuda_time_total", row_limit=40,
                                                                  max_name_column_width=30, max_shapes_column_width=90)]
    path.write_text("\n".join(lines) + "\n")
    return {"busy_s": busy, "wall_s": wall, "classes": totals}


def saved_tensor_probe(model, features, tokens: int) -> dict:
    """Shapes and dtypes of what autograd saves in one forward (no checkpointing), for the estimator."""
    import torch
    from transformers import DataCollatorWithFlattening

    from utils.memory import saved_tensor_bytes

    inner = model.get_base_model()
    model.train()  # checkpointing and dropout act in training mode only
    from utils.models.loading import set_activation_checkpointing

    set_activation_checkpointing(inner, False)
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
    set_activation_checkpointing(inner, True)
    with torch.autocast(device, dtype=torch.bfloat16):
        loss, with_ckpt = saved_tensor_bytes(lambda: model(**batch, use_cache=False).loss, include_parameters=False)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return {"tokens": int(batch["input_ids"].numel()), "saved_no_ckpt_bytes": plain,
            "saved_ckpt_bytes": with_ckpt, "first_saved": rows[:120]}


def load_torchao_nf4(model_path: str, dtype):
    """The model in 16 bits with every decoder linear layer's weight replaced by torchao's ``NF4Tensor`` (NF4,
    blocks of 64, block scales quantized per 256 blocks: QLoRA's double quantization), as torchtune does; peft's
    LoRA then wraps these ``nn.Linear`` layers, whose ``F.linear`` torchao implements (dequantize, then matmul)."""
    import torch
    try:
        from torchao.dtypes.nf4tensor import to_nf4
    except ImportError:  # torchao >= 0.15 moved it
        from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import to_nf4
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, device_map={"": 0})
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in name:
            module.weight = torch.nn.Parameter(to_nf4(module.weight.data, 64, 256), requires_grad=False)
    torch.cuda.empty_cache()
    return model


def worker(group: str, names: list[str], model_path: str, out: Path, steps: int, warmup: int, data: str) -> None:
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
    features = load_features(tokenizer, MAX_LENGTH, data)
    t0 = time.perf_counter()
    if first["backend"] == "torchao":
        model = load_torchao_nf4(model_path, dtype)
    else:
        model = load_model(model_path, AutoModelForCausalLM, bnb_4bit_config(dtype=dtype), dtype=dtype)
    info = {"group": group, "load_s": time.perf_counter() - t0, "loaded_gib": _cuda("memory_allocated") / 2**30,
            "storage_gib": model_storage_bytes(model)["total"] / 2**30}
    if first["backend"] == "torchao":  # not a bitsandbytes model: peft directly, as torchtune's recipe does
        from peft import LoraConfig, get_peft_model

        from utils.models.loading import set_activation_checkpointing

        model.enable_input_require_grads()
        set_activation_checkpointing(model, True)
        model = get_peft_model(model, LoraConfig(r=first["rank"], lora_alpha=first["alpha"],
                                                 target_modules=first["targets"], lora_dropout=first["dropout"],
                                                 task_type="CAUSAL_LM"))
    else:
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
                             out.parent / f"profile_{name.replace('+', '_')}.txt")
        except Exception as err:  # e.g. out of memory: record it and go on
            row = {"config": name, "what": CONFIGS[name][0], "error": f"{type(err).__name__}: {err}"[:1500],
                   "traceback": traceback.format_exc()[-3000:]}
            model.zero_grad(set_to_none=True)
            gc.collect()
            _cuda("empty_cache")
        append(out, row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("losses", "estimate_parts_gib", "traceback")},
                         default=str), flush=True)


def unsloth_probe(model_path: str, out: Path, site: str, label: str = "unsloth") -> None:
    """Try Unsloth on the same model in a process of its own (it pins other transformers/trl versions: ``site``
    holds them, from wheels), and record how far it got and the exact error if it stopped."""
    code = f"""
import json, sys, time, traceback
record = {{"config": {label!r}, "what": "Unsloth FastLanguageModel, 4-bit, LoRA on the same targets"}}
try:
    import unsloth
    from unsloth import FastLanguageModel
    import transformers
    record["versions"] = {{"unsloth": unsloth.__version__, "transformers": transformers.__version__}}
    model, tok = FastLanguageModel.from_pretrained({model_path!r}, load_in_4bit=True, max_seq_length=1024,
                                                   local_files_only=True)
    record["loaded"] = type(model).__name__
    model = FastLanguageModel.get_peft_model(model, r={QA.lora_rank}, lora_alpha={QA.lora_alpha},
                                             target_modules={list(QA.target_modules)!r}, lora_dropout=0,
                                             use_gradient_checkpointing="unsloth")
    record["peft"] = type(model).__name__
    sys.path.insert(0, {str(REPO)!r})
    sys.argv = ["train_speed"]
    import torch
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_speed", {str(Path(__file__).resolve())!r})
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    load_features, MAX_LENGTH, QA, gpu_peak_flops = bench.load_features, bench.MAX_LENGTH, bench.QA, bench.gpu_peak_flops
    from utils.qa import collate, training
    from utils.models.adapters import weight_count
    features = load_features(tok, MAX_LENGTH, "squad")
    rows = collate.pack_rows(features, QA.row_length, tok.eos_token_id)
    counter, timer = training.TokenCounter(collate.RowsCollator()), training.StepTimer()
    args = training.training_arguments("/tmp/unsloth_run", QA, max_steps=8, logging_steps=1, save_steps=10**6,
                                       disable_tqdm=True, precision="bf16")
    trainer = training.make_trainer(model, args, rows[:8 * QA.batch_size], callbacks=[timer], collator=counter,
                                    graded_head=True, progress_bar=False)
    torch.cuda.reset_peak_memory_stats()
    trainer.train()
    timed = timer.seconds[2:]
    real = sum(counter.real[2:8])
    record["effective_tokens_per_s"] = real / sum(timed)
    record["median_step_s"] = sorted(timed)[len(timed) // 2]
    record["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    record["real_tokens_per_step"] = real / 6
    record["processed_tokens_per_step"] = sum(counter.processed[2:8]) / 6
    record["padding_share"] = 1 - real / sum(counter.processed[2:8])
    params = sum(weight_count(p) for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n)
    record["mfu"] = record["effective_tokens_per_s"] * 6 * params / gpu_peak_flops(torch.cuda.get_device_name())
    record["what"] += f": notebook 04's rows ({{QA.batch_size}} x {{QA.row_length}}), Trainer, bf16"
except BaseException as err:
    record["error"] = f"{{type(err).__name__}}: {{err}}"[:2000]
    record["traceback"] = traceback.format_exc()[-4000:]
with open({str(out)!r}, "a") as f:
    f.write(json.dumps(record) + "\\n")
print(json.dumps({{k: v for k, v in record.items() if k != "traceback"}}))
"""
    env = dict(os.environ, PYTHONPATH=f"{site}:{REPO}", HF_HUB_OFFLINE="1", UNSLOTH_DISABLE_STATISTICS="1")
    try:
        subprocess.run([sys.executable, "-c", code], env=env, timeout=150, check=False)
    except subprocess.TimeoutExpired:
        append(out, {"config": label, "what": "Unsloth", "error": "ran past 150 s"})


def append(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row, default=str) + "\n")


# ----------------------------------------------------------------------------------------------- driver
def run_group(group: str, members: list[str], model_path: str, args: argparse.Namespace, jsonl: Path) -> None:
    """One worker process for the configurations of ``group``; a timeout is recorded against those it left."""
    cmd = [sys.executable, __file__, "--worker", group, "--names", *members, "--model", model_path,
           "--out", str(args.out), "--steps", str(args.steps), "--warmup", str(args.warmup), "--data", args.data]
    try:
        subprocess.run(cmd, check=False, timeout=GROUP_TIMEOUT.get(group, args.timeout), env=os.environ.copy())
    except subprocess.TimeoutExpired:
        done = {json.loads(x).get("config") for x in jsonl.read_text().splitlines() if x.strip()}
        for name in [m for m in members if m not in done]:
            append(jsonl, {"config": name, "what": CONFIGS[name][0],
                           "error": f"worker {group} ran past {GROUP_TIMEOUT.get(group, args.timeout)} s"})


def data_line(meta: dict) -> str:
    """What the examples were, for the table's header."""
    if meta.get("data") == "squad":
        d = meta.get("distribution") or {}
        return (f"QA examples of SQuAD v1.1's length ({meta.get('lengths')}): the course's examples lengthened with its "
                f"own paragraphs to log-normal lengths of mean {d.get('mean')} tokens and spread "
                f"{d.get('std_over_mean')} x the mean, cut at max_length {MAX_LENGTH} (benchmarks/lengths.py says where the "
                "figures come from)")
    return f"the course's QA examples as they are ({meta.get('lengths')})"


def report(jsonl: Path, folder: Path) -> str:
    """CSV and Markdown tables from the JSONL rows; every ratio is against this run's ``naive`` row."""
    lines = [json.loads(x) for x in jsonl.read_text().splitlines() if x.strip()]
    meta = next((x["meta"] for x in lines if "meta" in x), {})
    rows = [x for x in lines if "config" in x]
    naive = next((r for r in rows if r["config"] == "naive" and "error" not in r), None)
    cols = ["config", "what", "effective_tokens_per_s", "speedup", "median_step_s", "peak_gib", "estimate_gib",
            "estimate_error", "mfu", "padding_share", "real_tokens_per_step"]
    table = []
    for r in rows:
        if "error" in r or "effective_tokens_per_s" not in r:
            why = r.get("error", "no timings (see the JSONL record)")
            table.append({"config": r["config"], "what": r["what"] + f" — failed: {why[:200]}"})
            continue
        t = dict(r)
        if "max_micro_tokens" in r and "logit_tokens" in r:  # today's estimator, from the row's recorded settings
            t["estimate_gib"] = predict(r).total / 2**30
        t["speedup"] = r["effective_tokens_per_s"] / naive["effective_tokens_per_s"] if naive else None
        t["estimate_error"] = t["estimate_gib"] / r["peak_gib"] - 1 if r.get("peak_gib") and "estimate_gib" in t else None
        table.append(t)
    import csv

    with (folder / "table.csv").open("w", newline="") as f:
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
          "", *([f"> {meta['note']}", ""] if meta.get("note") else []), f"torch {meta.get('torch')}, transformers {meta.get('transformers')}, peft {meta.get('peft')}, "
          f"bitsandbytes {meta.get('bitsandbytes')}, trl {meta.get('trl')}, liger-kernel {meta.get('liger_kernel')}, "
          f"torchao {meta.get('torchao')}, CUDA {meta.get('cuda')}. Data: {data_line(meta)}. "
          f"Each row: {meta.get('warmup')} warm-up + {meta.get('steps')} timed optimizer steps. Estimate: today's `utils.memory.estimate` from "
          f"each row's recorded settings. MFU counts 6 N FLOP "
          f"per real token (N = {meta.get('matmul_params', 0) / 1e9:.2f} B parameters in matrix products) against "
          f"{meta.get('peak_tflops')} TFLOP/s dense bf16. Re-run: `python benchmarks/train_speed.py`.", "",
          "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for t in table:
        md.append("| " + " | ".join(fmt(t.get(c), c) for c in cols) + " |")
    text = "\n".join(md) + "\n"
    (folder / "README.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="configuration names (default: all; 'naive' is always added)")
    parser.add_argument("--groups", nargs="*", help="worker groups to run (default: all), e.g. bf16 profile")
    parser.add_argument("--list", action="store_true", help="list the configurations and exit")
    parser.add_argument("--data", choices=["squad", "toy"], default="squad",
                        help="squad: SQuAD v1.1's lengths (benchmarks/lengths.py); toy: the course's short examples")
    parser.add_argument("--model", help="model folder or Hub id (default: build a random Phi-2-shaped one)")
    parser.add_argument("--build", type=Path, help="folder for the random Phi-2-shaped model (kept, reused if there)")
    parser.add_argument("--out", type=Path, help="the run's folder (record.jsonl, table.csv, README.md); default "
                        "results/<today>_train_speed_<data>; an existing record is never replaced (see --append)")
    parser.add_argument("--append", action="store_true", help="add to <out>/record.jsonl instead of refusing it "
                        "(a run split over several calls: each call has a time limit)")
    parser.add_argument("--unsloth-site", help="a folder with Unsloth and the versions it pins: also try Unsloth")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps per configuration")
    parser.add_argument("--timeout", type=int, default=420, help="seconds per worker process")
    parser.add_argument("--report-only", action="store_true", help="rebuild the tables from <out>/record.jsonl")
    parser.add_argument("--dry-run", action="store_true", help="check the script on the CPU with --model (fp32)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--names", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out = args.out or REPO / f"results/{datetime.date.today().isoformat()}_train_speed_{args.data}"
    jsonl = args.out / "record.jsonl"
    if args.list:
        for name, (what, _, group) in CONFIGS.items():
            print(f"{name:22s} [{group}] {what}")
        return
    if args.worker:
        return worker(args.worker, args.names, args.model, jsonl, args.steps, args.warmup, args.data)
    if args.report_only:
        print(report(jsonl, args.out))
        return
    unknown = sorted(set(args.only or []) - set(CONFIGS))
    groups_known = {g for _, _, g in CONFIGS.values()}
    unknown += sorted(set(args.groups or []) - groups_known)
    if unknown:
        raise SystemExit(f"unknown configuration(s) or group(s) {unknown}; configurations: {sorted(CONFIGS)}; "
                         f"groups: {sorted(groups_known)}")
    import torch
    import transformers

    if not torch.cuda.is_available() and not (args.dry_run and args.model):
        raise SystemExit("this benchmark needs a CUDA GPU (it measures GPU time and memory); to check the script "
                         "on the CPU, pass --dry-run --model <small model folder>.")
    names = list(CONFIGS) if not args.only else ["naive", *[n for n in args.only if n != "naive"]]
    if args.groups:
        names = [n for n in names if CONFIGS[n][2] in args.groups]
    model_path = args.model
    if model_path is None:
        from utils.models import tiny_phi
        from utils.qa.data import qa_texts

        folder = args.build or Path(tempfile.mkdtemp(prefix="phi2_shaped_")) / "model"
        if not (folder / "config.json").is_file():
            tiny_phi.build_random_phi2(folder, qa_texts(REPO / "data/qa/train.json", REPO / "data/qa/validation.json"))
        model_path = str(folder)
    import bitsandbytes
    import peft
    from transformers import AutoTokenizer

    from benchmarks import lengths as qa_lengths

    lengths = [len(f["input_ids"]) for f in load_features(AutoTokenizer.from_pretrained(model_path), MAX_LENGTH,
                                                           args.data)]
    if jsonl.is_file() and not args.append:
        raise SystemExit(f"{jsonl} holds an earlier run: pass --append to add to it, or another --out folder.")
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.append and jsonl.is_file()):
        jsonl.write_text("")
        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (dry run)"
        versions = {}
        for package in ("trl", "liger_kernel", "torchao", "accelerate"):
            try:  # installed versions (liger_kernel has no __version__); a missing one is recorded, not fatal
                versions[package] = importlib.metadata.version(package.replace("_", "-"))
            except importlib.metadata.PackageNotFoundError:
                versions[package] = "not installed"
        append(jsonl, {"meta": {
            "gpu": gpu, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__,
            "bitsandbytes": bitsandbytes.__version__, **versions, "cuda": torch.version.cuda,
            "steps": args.steps, "warmup": args.warmup, "peak_tflops": (gpu_peak_flops(gpu) or 0) / 1e12,
            "data": args.data, "distribution": qa_lengths.SQUAD_TOKENS if args.data == "squad" else None,
            "lengths": qa_lengths.describe(lengths), "random_weights": args.model is None}})
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(CONFIGS[name][2], []).append(name)
    pairs = [g for g in groups if g.startswith("pair_")]
    for group, members in groups.items():
        if group in pairs:
            continue
        run_group(group, members, model_path, args, jsonl)
    if args.unsloth_site:
        unsloth_probe(model_path, jsonl, args.unsloth_site)
    for group in pairs:  # the default and Unsloth back to back, each in a fresh process: is the ordering noise?
        run_group(group, groups[group], model_path, args, jsonl)
        if args.unsloth_site:
            unsloth_probe(model_path, jsonl, args.unsloth_site, label=f"unsloth_{group}")
    rows = [json.loads(x) for x in jsonl.read_text().splitlines() if x.strip()]
    matmul = next((r["matmul_params"] for r in rows if "matmul_params" in r), 0)
    lines = jsonl.read_text().splitlines()
    meta = json.loads(lines[0])
    meta["meta"]["matmul_params"] = matmul
    jsonl.write_text("\n".join([json.dumps(meta), *lines[1:]]) + "\n")
    print(report(jsonl, args.out))


if __name__ == "__main__":
    main()
