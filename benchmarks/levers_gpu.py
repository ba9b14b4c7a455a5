"""The default's levers on a GPU, at Phi-2's shape: the offloaded checkpoint and the in-place RoPE against the plain stack.

    python benchmarks/levers_gpu.py --model <phi-2-shaped folder> --out results/<date>_levers_gpu/record.json

One training pass of notebook 04's shape (28 rows of 512 tokens, examples packed with restarting positions, residual
dropout on as in Phi-2's config) on a 4-bit Phi-2-shaped model with LoRA (r 16, B random so every path carries a
gradient), under bf16 autocast, run four ways from the same weights and random state:

* ``plain``: torch's non-reentrant checkpoint, transformers' rotary embedding (the reference);
* ``offload``: :mod:`utils.models.offload` instead of torch's checkpoint;
* ``rope``: :mod:`utils.models.rotary` instead of transformers' rotary embedding;
* ``both``.

Recorded: the loss, the largest LoRA gradient difference from ``plain`` relative to the largest gradient, the peak
memory and the pass's time (median of 3 after 1 warm-up), and the RoPE kernel check (:func:`rope_kernel_check`).
Attention's backward kernel is not deterministic on a GPU, so ``plain`` runs twice and its own difference is the noise
every lever is judged against (:func:`verdict`).
Random weights: the numbers say how the computations differ, not what a model learns.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ROWS, ROW_LENGTH, RANK, ALPHA = 28, 512, 16, 32
TARGETS = ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]
BOUND = 2 ** -8


def verdict(record: dict) -> dict:
    """The check, from a record: the Triton kernel equal to PyTorch's operations to the bit; every run's loss equal to
    ``plain``'s within one bf16 rounding; every run's LoRA gradients within ``plain``'s own run-to-run difference
    (``plain_again``: attention's backward kernel is not deterministic on a GPU) times 2, or one bf16 rounding
    (2^-8 relative to the largest gradient) if that is larger. Returns ``{"ok", "noise", "allowed", "worst"}``."""
    runs = record["runs"]
    noise = runs["plain_again"]["max_rel_grad_diff"]
    allowed = max(BOUND, 2 * noise)
    worst = max(r["max_rel_grad_diff"] for r in runs.values())
    losses_ok = all(r["loss_diff"] <= BOUND * abs(runs["plain"]["loss"]) for r in runs.values())
    return {"ok": bool(record["kernel"]["equal"] and losses_ok and worst <= allowed), "noise": noise,
            "allowed": allowed, "worst": worst}


def rope_kernel_check(torch, rotary, config) -> dict:
    """The Triton RoPE kernel against PyTorch's operations (utils.models.rotary._rotate) at Phi-2's attention shape:
    forward (in place) and backward (out of place), with bf16 and float32 cos/sin: equal to the bit? And the time of
    each (forward + backward of query and key for one layer, median of 20 after 5 warm-ups, CUDA events)."""
    heads = config.num_attention_heads
    head_dim = config.hidden_size // heads
    rot = int(head_dim * config.partial_rotary_factor) if hasattr(config, "partial_rotary_factor") else int(
        head_dim * config.rope_parameters["partial_rotary_factor"])
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(ROWS, ROW_LENGTH, heads, head_dim, generator=g, device="cuda").to(torch.bfloat16)
    grad = torch.randn(x.shape, generator=g, device="cuda").to(torch.bfloat16)
    angle = torch.rand(ROWS, ROW_LENGTH, rot // 2, generator=g, device="cuda") * 100
    result = {"shape": list(x.shape), "rot": rot, "equal": True}
    for cos_dtype in (torch.bfloat16, torch.float32):
        cos = torch.cat([angle.cos()] * 2, -1).to(cos_dtype)
        sin = torch.cat([angle.sin()] * 2, -1).to(cos_dtype)
        outs = {}
        for triton in (True, False):
            rotary.KERNEL["triton"] = triton
            q = x.clone().requires_grad_(False)
            leaf = q.clone().requires_grad_(True)
            y = rotary.RotateInPlace.apply(leaf * 1, cos, sin)
            y.backward(grad)
            outs[triton] = (y.detach(), leaf.grad)
            times = []
            for i in range(25):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a = q.clone().requires_grad_(True)
                b = a * 1
                start.record()
                rotary.RotateInPlace.apply(b, cos, sin).backward(grad)
                end.record()
                torch.cuda.synchronize()
                if i >= 5:
                    times.append(start.elapsed_time(end))
            outs[triton] += (statistics.median(times),)
        same = torch.equal(outs[True][0], outs[False][0]) and torch.equal(outs[True][1], outs[False][1])
        result[str(cos_dtype).replace("torch.", "cos_")] = {
            "equal": same, "triton_ms": outs[True][2], "torch_ops_ms": outs[False][2],
            "max_abs_diff": max((outs[True][0].float() - outs[False][0].float()).abs().max().item(),
                                (outs[True][1].float() - outs[False][1].float()).abs().max().item())}
        result["equal"] = result["equal"] and same
    rotary.KERNEL["triton"] = True
    return result


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from utils.models import bnb_4bit_config, load_model, offload, rotary
    from utils.models.adapters import add_lora
    from utils.models.loading import set_activation_checkpointing
    from utils.qa.config import QAConfig
    from utils.qa.training import apply_fused_kernels

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a Phi-2-shaped model folder (benchmarks/train_speed.py --build)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model = load_model(args.model, AutoModelForCausalLM, bnb_4bit_config(dtype=torch.bfloat16), dtype=torch.bfloat16)
    model = add_lora(model, RANK, ALPHA, TARGETS, task_type="CAUSAL_LM", gradient_checkpointing=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=g, device=p.device, dtype=p.dtype) * 0.01
    qa = QAConfig.resolve("full", paths=False)
    apply_fused_kernels(model, qa.replace(precision="bf16"))  # the default's other levers (LoRA inside products, ...)
    rope_modules = [m for m in model.modules() if type(m).__name__ in rotary.ATTENTION_CLASSES]
    rotary.undo_rope_in_place(rope_modules)  # toggled per run below
    model.train()
    inner = model.get_base_model()
    vocab = inner.config.vocab_size
    ids = torch.randint(0, vocab, (ROWS, ROW_LENGTH), generator=g, device="cuda")
    lengths = torch.randint(60, 300, (ROWS, 4), generator=torch.Generator().manual_seed(0)).tolist()
    position_ids = torch.zeros(ROWS, ROW_LENGTH, dtype=torch.long)
    for r, parts in enumerate(lengths):  # examples packed in each row: positions restart
        start = 0
        for n in parts + [ROW_LENGTH]:
            n = min(n, ROW_LENGTH - start)
            position_ids[r, start:start + n] = torch.arange(n)
            start += n
            if start >= ROW_LENGTH:
                break
    position_ids = position_ids.cuda()
    labels = ids.clone()

    def one_pass(off: bool, rope: bool, triton: bool = True) -> tuple[float, dict, float]:
        rotary.KERNEL["triton"] = triton
        set_activation_checkpointing(inner, True)
        if off:
            offload.offload_checkpoints(model)
        changed = rotary.rope_in_place(model) if rope else []
        model.zero_grad(set_to_none=True)
        torch.manual_seed(7)
        torch.cuda.manual_seed(7)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=labels, position_ids=position_ids, use_cache=False).loss
        loss.backward()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        rotary.undo_rope_in_place(changed)
        grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.requires_grad}
        return loss.item(), grads, seconds

    import datetime

    record = {"measured": datetime.date.today().isoformat(), "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": ROWS, "row_length": ROW_LENGTH,
              "bound": BOUND, "runs": {}}
    import bitsandbytes
    import peft
    import transformers
    record.update(transformers=transformers.__version__, peft=peft.__version__, bitsandbytes=bitsandbytes.__version__)
    reference = None
    record["kernel"] = rope_kernel_check(torch, rotary, inner.config)
    print("kernel", record["kernel"], flush=True)
    for name, off, rope, triton in (("plain", False, False, True), ("plain_again", False, False, True),
                                    ("offload", True, False, True), ("rope", False, True, True),
                                    ("rope_torch_ops", False, True, False), ("both", True, True, True)):
        one_pass(off, rope, triton)  # warm-up
        times = []
        torch.cuda.reset_peak_memory_stats()
        for _ in range(3):
            loss, grads, seconds = one_pass(off, rope, triton)
            times.append(seconds)
        peak = torch.cuda.max_memory_allocated() / 2**30
        if reference is None:
            reference = (loss, grads)
        diff = max(((grads[n] - reference[1][n]).abs().max() / reference[1][n].abs().max()).item() for n in grads)
        record["runs"][name] = {"loss": loss, "loss_diff": abs(loss - reference[0]), "max_rel_grad_diff": diff,
                                "peak_gib": peak, "median_s": statistics.median(times)}
        print(name, record["runs"][name], flush=True)
    record["ok"] = verdict(record)["ok"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
