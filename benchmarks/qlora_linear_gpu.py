"""The fused 4-bit + LoRA layer (utils.models.qlora_linear) against peft's on a GPU: error and time, Phi-2's shapes.

    python benchmarks/qlora_linear_gpu.py --out results/<date>_qlora_linear_gpu/record.json

For each of Phi-2's LoRA target shapes (q/k/v/dense 2560 -> 2560, fc1 2560 -> 10240, fc2 10240 -> 2560), a
bitsandbytes NF4 layer (double quantization, bf16 compute, bias) with a rank-16 LoRA adapter (alpha 32, random B) is
run on 14,336 tokens (28 rows of 512, notebook 04's pass) in bf16 two ways: peft's LoRA layer under autocast, and
:class:`~utils.models.qlora_linear.QLoRALinearFunction`. Both are compared with the same function computed in
float32 from the dequantized weight (output, and the gradients of the input, A and B); the check passes when the fused
error is at most twice peft's plus one bf16 rounding of the largest value (2^-8 relative): both round to bf16, in
different places. Forward + backward time: median of 20 repetitions after 5 warm-ups (CUDA events).
Random weights: the numbers say how the two computations differ, not what a model learns.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHAPES = {"q_proj": (2560, 2560), "fc1": (2560, 10240), "fc2": (10240, 2560)}  # (in, out); k/v/dense as q
TOKENS, RANK, ALPHA = 28 * 512, 16, 32


def layer_pair(n_in: int, n_out: int, seed: int):
    """A peft LoRA layer over a bitsandbytes NF4 layer on the GPU, and the same layer's float32 pieces."""
    import bitsandbytes as bnb
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    dense = torch.nn.Linear(n_in, n_out, bias=True)
    layer = bnb.nn.Linear4bit(n_in, n_out, bias=True, compute_dtype=torch.bfloat16, quant_type="nf4",
                              compress_statistics=True)
    layer.weight = bnb.nn.Params4bit(dense.weight.data.clone(), requires_grad=False, quant_type="nf4",
                                     compress_statistics=True)
    layer.bias = torch.nn.Parameter(dense.bias.data.clone(), requires_grad=False)
    holder = torch.nn.Module()
    holder.proj = layer
    holder = holder.cuda()
    model = get_peft_model(holder, LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["proj"], lora_dropout=0.0))
    lora = model.base_model.model.proj
    with torch.no_grad():
        lora.lora_B["default"].weight.normal_(0, 0.02)
    return model, lora


def reference(lora, x, g):
    """Output and gradients (x, A, B) of the same function in float32 from the dequantized weight."""
    import torch
    from bitsandbytes import functional as bnb_f

    base = lora.base_layer
    w = bnb_f.dequantize_4bit(base.weight.data, base.weight.quant_state).float()
    a = lora.lora_A["default"].weight.detach().float().requires_grad_()
    b = lora.lora_B["default"].weight.detach().float().requires_grad_()
    xf = x.detach().float().requires_grad_()
    s = lora.scaling["default"]
    y = xf @ w.T + base.bias.float() + s * (xf @ a.T) @ b.T
    return (y.detach(), *torch.autograd.grad(y, (xf, a, b), g.float()))


def run_path(lora, x, g, fused: bool):
    import torch

    from utils.models.qlora_linear import fuse_qlora_linears, unfuse_qlora_linears

    changed = fuse_qlora_linears(lora) if fused else []
    a, b = lora.lora_A["default"].weight, lora.lora_B["default"].weight

    def once():
        xi = x.detach().requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = lora(xi)
        dx, da, db = torch.autograd.grad(y, (xi, a, b), g)
        return y, dx, da, db

    out = once()
    for _ in range(5):
        once()
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        once()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    torch.cuda.reset_peak_memory_stats()
    base_mem = torch.cuda.memory_allocated()
    once()
    peak = (torch.cuda.max_memory_allocated() - base_mem) / 2**20
    unfuse_qlora_linears(changed)
    return out, statistics.median(times), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="record.json to write (refused if it exists)")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: pass another --out (a record is never overwritten)")
    import bitsandbytes
    import peft
    import torch

    rows = []
    for i, (name, (n_in, n_out)) in enumerate(SHAPES.items()):
        model, lora = layer_pair(n_in, n_out, seed=i)
        gen = torch.Generator(device="cuda").manual_seed(100 + i)
        x = torch.randn(TOKENS, n_in, device="cuda", generator=gen).to(torch.bfloat16)
        g = (torch.randn(TOKENS, n_out, device="cuda", generator=gen) * 1e-3).to(torch.bfloat16)
        ref = reference(lora, x, g)
        row = {"layer": name, "in": n_in, "out": n_out, "tokens": TOKENS}
        for label, fused in (("peft", False), ("fused", True)):
            out, ms, peak = run_path(lora, x, g, fused)
            errors = {k: ((o.float() - r).abs().max() / r.abs().max()).item()
                      for k, o, r in zip(("y", "dx", "dA", "dB"), out, ref, strict=True)}
            row[label] = {"ms_fwd_bwd": ms, "extra_peak_mib": peak, "max_rel_error": errors}
        row["ok"] = all(row["fused"]["max_rel_error"][k] <= 2 * row["peft"]["max_rel_error"][k] + 2 ** -8
                        for k in ("y", "dx", "dA", "dB"))
        row["speedup"] = row["peft"]["ms_fwd_bwd"] / row["fused"]["ms_fwd_bwd"]
        rows.append(row)
        print(json.dumps(row), flush=True)
        del model, lora
        torch.cuda.empty_cache()
    record = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "peft": peft.__version__,
              "bitsandbytes": bitsandbytes.__version__, "random_weights": True, "rows": rows,
              "ok": all(r["ok"] for r in rows), "command": "python benchmarks/qlora_linear_gpu.py --out " + str(args.out)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    if not record["ok"]:
        raise SystemExit("the fused layer's error exceeded the stated bound: see " + str(args.out))


if __name__ == "__main__":
    main()
