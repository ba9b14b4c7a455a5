"""Quality on real weights: the course's default QLoRA recipe against the plain one, same data and steps, over seeds.

    python benchmarks/recipe_quality.py --out results/<date>_recipe_quality_smollm2 [--max-steps 100] [--seeds 0 1 2]
    python benchmarks/recipe_quality.py --out results/<date>_recipe_quality_smollm2 --report-only

The speed levers of the default recipe were measured for speed only, on random weights. Here two recipes train
SmolLM2-135M-Instruct's real weights (4-bit NF4 base from the pip-packaged GGUF, ``utils.models.smollm2``) on
Disfl-QA's real passages (``data/disfl_qa``) with notebook 04's smoke recipe otherwise (LoRA r 16 on all seven
linear layers, paged 8-bit AdamW, learning rate 1e-3 cosine), all under **bf16 autocast on the CPU**
(``precision="bf16"``), and are scored on the whole validation split:

- **fast**, the course's default levers: LoRA added inside the 4-bit layers' products (``fused_kernels``: the course's
  patched forward, ``utils.models.qlora_linear``'s one autograd function since commit be926bd,
  ``forward_patches.lean_lora_4bit`` before; the record names the forward that ran), 16-bit norm outputs (the fused
  GELU has nothing to replace in a Llama), a bf16 residual stream, embeddings and head
  (``residual_16bit``), examples packed into rows of ``--row-length`` tokens, no LoRA dropout;
- **fast_bf16_stream**: fast, plus the input-norm cast on every decoder layer's ``post_attention_layernorm`` too
  (done here, in the script). In a Llama layer (SmolLM2) that second norm returns float32 (its weight is float32 after
  peft's ``prepare_model_for_kbit_training``), so with the course's patches the MLP's output, and with it the residual
  stream from the first layer's MLP on, is float32 again; Phi-2's layer has one norm feeding attention and MLP, where
  the course's patches keep the whole stream bf16. This recipe is the 16-bit residual stream as it acts on Phi-2;
- **plain**: peft's own LoRA forward, a float32 residual stream, each step's examples in one padded batch
  (``row_length=0``: laid end to end, rounded up to ``pack_multiple`` tokens with filler), LoRA dropout 0.05 (the
  QLoRA paper's value for models of up to 13B parameters).

Same data and steps: the training examples are packed once into rows (``utils.qa.collate.pack_rows``, the fast
recipe's own packing); each seed shuffles the rows, and step ``k`` takes the next ``--rows-per-step`` rows. The fast
recipe trains on those rows; the plain recipe trains step ``k`` on exactly the examples those rows hold, in one
padded batch. The Trainer's own shuffling is replaced by this plan (a sequential sampler over one item per step), and
the collator records which examples each step actually saw. Both normalise the loss by the step's answer tokens, so
each step's loss and gradient are the same function of the same examples; a seed gives both recipes the same LoRA
initialisation (its hash is recorded).

Writes ``record.json`` (refused if it exists), ``README.md`` and ``loss_curves.png`` into ``--out``; ``--report-only``
rewrites the README and the figure from the record. Runs on 2 CPU cores in about half an hour with the defaults.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from utils.evaluation.seeds import mean_std, seed_verdict  # noqa: E402

DATASET = "disfl-qa"
OPTIMIZER_NAMES = {"paged_adamw_8bit": "paged 8-bit AdamW", "adamw_torch_fused": "PyTorch's fused AdamW (float32 states)"}
FAST = {"fused_kernels": True, "residual_16bit": True, "row_length": 512, "lora_dropout": 0.0}
RECIPES: dict[str, dict[str, Any]] = {  # QAConfig settings per recipe, in the order each seed trains them
    "fast": FAST,
    "fast_bf16_stream": FAST,  # + every post-attention norm's output cast to bf16 (BF16_STREAM)
    "plain": {"fused_kernels": False, "residual_16bit": False, "row_length": 0, "lora_dropout": 0.05},
}
BF16_STREAM = {"fast_bf16_stream"}  # the recipes that also cast the post-attention norms (post_attention_norms_in)
BASELINE = "plain"
MAIN = "fast"  # the comparison the verdict is about: the course's default against the plain recipe
WINDOW = 10  # the final-window loss: mean of the last WINDOW steps' losses
K = 2.0  # the course's seed rule: means agree when within K times the larger seed standard deviation
RECORD, README, FIGURE = "record.json", "README.md", "loss_curves.png"
CODE = ("utils/qa/training.py", "utils/qa/collate.py", "utils/qa/loss.py", "utils/models/forward_patches.py",
        "utils/models/qlora_linear.py", "utils/models/adapters.py", "benchmarks/recipe_quality.py")  # hashed at start


# ---------------------------------------------------------------------------------------------- the step plan
def check_members(rows: Sequence[Mapping[str, list[int]]], members: Sequence[Sequence[int]],
                  features: Sequence[Mapping[str, list[int]]]) -> None:
    """(``utils.qa.collate.pack_members`` says which examples ``pack_rows`` puts in each row.) Raise
    ``AssertionError`` unless every packed row starts with exactly its members' tokens and labels, in order,
    and every example is in exactly one row."""
    assert len(rows) == len(members), (len(rows), len(members))
    assert sorted(i for m in members for i in m) == list(range(len(features))), "an example is in no row or in two"
    for row, ids in zip(rows, members, strict=True):
        tokens = [t for i in ids for t in features[i]["input_ids"]]
        labels = [t for i in ids for t in features[i]["labels"]]
        assert row["input_ids"][:len(tokens)] == tokens and row["labels"][:len(labels)] == labels
        assert row["real_tokens"] == len(tokens)


def plan_steps(n_rows: int, rows_per_step: int, steps: int, seed: int) -> list[list[int]]:
    """The rows of each optimizer step: the rows shuffled with ``seed`` (a new shuffle each pass; a pass's last rows
    that do not fill a step are left out, so no step holds a row twice), ``rows_per_step`` at a time."""
    per_pass = n_rows // rows_per_step
    if per_pass < 1:
        raise ValueError(f"{n_rows} rows cannot fill a step of {rows_per_step} rows")
    rng = random.Random(seed)
    plan: list[list[int]] = []
    while len(plan) < steps:
        order = list(range(n_rows))
        rng.shuffle(order)
        plan += [order[s * rows_per_step:(s + 1) * rows_per_step] for s in range(per_pass)]
    return plan[:steps]


class PlannedSteps:
    """A collator for items ``{"step": k}`` (one per optimizer step, batch size 1): step ``k``'s features, batched by
    the recipe's own collator. Records, per call, the example ids it was given and the tokens and graded (answer)
    tokens of the batch it returned: what the step trained on."""

    def __init__(self, batches: Sequence[Sequence[Mapping[str, list[int]]]], ids: Sequence[Any], collator: Any):
        self.batches, self.ids, self.collator = batches, ids, collator
        self.seen: list[Any] = []
        self.tokens: list[int] = []
        self.graded: list[int] = []
        self.shapes: list[list[int]] = []

    def __call__(self, items: Sequence[Mapping[str, int]]) -> dict[str, torch.Tensor]:
        if len(items) != 1:
            raise ValueError(f"one step per item: got {len(items)} items (per_device_train_batch_size must be 1)")
        step = items[0]["step"]
        batch = self.collator(list(self.batches[step]))
        self.seen.append(self.ids[step])
        self.tokens.append(int(batch["input_ids"].numel()))
        self.graded.append(int((batch["labels"][:, 1:] != -100).sum()))
        self.shapes.append(list(batch["input_ids"].shape))
        return batch


# ---------------------------------------------------------------------------------------------- the lever check
class LeverProbe(TrainerCallback):
    """Records, during the first training step's forward, the dtypes the levers act on: autocast, the embeddings'
    output, the first decoder layer's input-norm output, the residual stream entering the second decoder layer and
    the final norm; then removes its hooks. Its hooks are registered after the course's, so they see their casts."""

    def __init__(self, model: torch.nn.Module):
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        decoder = inner.get_decoder()
        self.seen: dict[str, str] = {}

        def after(name: str) -> Any:
            def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
                out = output[0] if isinstance(output, tuple) else output
                self.seen.setdefault(name, str(out.dtype).removeprefix("torch."))
                self.seen.setdefault("autocast", f"{torch.is_autocast_enabled('cpu')} "
                                                 f"({str(torch.get_autocast_dtype('cpu')).removeprefix('torch.')})")
            return hook

        def before(name: str) -> Any:
            def hook(module: torch.nn.Module, args: Any, kwargs: Any) -> None:
                x = args[0] if args else kwargs["hidden_states"]
                self.seen.setdefault(name, str(x.dtype).removeprefix("torch."))
            return hook

        self.handles = [
            decoder.embed_tokens.register_forward_hook(after("embeddings output")),
            decoder.layers[0].input_layernorm.register_forward_hook(after("layer 0 input-norm output")),
            decoder.layers[0].post_attention_layernorm.register_forward_hook(after("layer 0 post-attention-norm output")),
            decoder.layers[0].mlp.register_forward_hook(after("layer 0 MLP output")),
            decoder.layers[1].register_forward_pre_hook(before("residual stream into layer 1"), with_kwargs=True),
            decoder.norm.register_forward_pre_hook(before("residual stream into the final norm"), with_kwargs=True),
        ]

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def post_attention_norms_in(model: torch.nn.Module, dtype: torch.dtype) -> list[torch.utils.hooks.RemovableHandle]:
    """``utils.models.forward_patches.norm_outputs_in``'s cast on every decoder layer's ``post_attention_layernorm``
    (a Llama layer's second norm, before the MLP): the MLP then computes on, and returns, ``dtype``, and the residual
    stream stays in ``dtype`` when ``residual_in`` put it there. Returns the hooks' handles."""

    def cast(module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        return output.to(dtype)

    return [m.register_forward_hook(cast) for n, m in model.named_modules() if n.endswith("post_attention_layernorm")]


def lora_sha256(model: torch.nn.Module) -> str:
    """sha256 of the LoRA weights (names and float32 values, in name order): equal for equal initialisations."""
    digest = hashlib.sha256()
    for name, p in sorted((n, p) for n, p in model.named_parameters() if "lora_" in n):
        digest.update(name.encode())
        digest.update(p.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def static_levers(model: torch.nn.Module) -> dict[str, Any]:
    """What the model holds after the course's patches: the forward of each LoRA layer over a 4-bit layer (peft's own
    or the course's patched one, by its function's name), their dropout, fused GELU modules, and the stored dtypes of
    the embeddings and head (tied in SmolLM2)."""
    from peft.tuners.lora.bnb import Linear4bit as LoraLinear4bit

    from utils.models.forward_patches import FusedTanhGELU

    lora = [m for m in model.modules() if isinstance(m, LoraLinear4bit)]
    inner = model.get_base_model()
    return {"lora_4bit_layers": len(lora),
            "lora_one_pass_forward": sum("forward" in vars(m) for m in lora),
            "lora_forward": dict(Counter(f"{m.forward.__func__.__module__}.{m.forward.__func__.__qualname__}"
                                         if "forward" in vars(m) else "peft" for m in lora)),
            "lora_dropout": sorted({repr(d) for m in lora for d in m.lora_dropout.values()}),
            "fused_gelu_modules": sum(isinstance(m, FusedTanhGELU) for m in model.modules()),
            "embedding_weight": str(inner.get_input_embeddings().weight.dtype).removeprefix("torch."),
            "head_weight": str(inner.get_output_embeddings().weight.dtype).removeprefix("torch."),
            "tied_embeddings": inner.get_input_embeddings().weight is inner.get_output_embeddings().weight}


def base_matmul_check(model: torch.nn.Module) -> dict[str, Any]:
    """After training: the 4-bit layers' compute dtypes (bitsandbytes sets each to its first input's dtype), and
    whether a 4-bit layer's product under CPU bf16 autocast is the bf16 product bit for bit (so the base matmuls run in
    bf16 here as on a GPU). A fixed input from its own generator: the global random state is not touched."""
    import bitsandbytes.functional as bnb_functional
    from bitsandbytes.nn import Linear4bit

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, Linear4bit)]
    compute = Counter(str(m.compute_dtype).removeprefix("torch.") for _, m in layers)
    name, layer = next((n, m) for n, m in layers if n.endswith("mlp.gate_proj.base_layer"))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, layer.in_features, generator=generator).to(layer.compute_dtype).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    weight = bnb_functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state)
    bf16 = torch.nn.functional.linear(x.detach().bfloat16(), weight.bfloat16()).float()
    fp32 = torch.nn.functional.linear(x.detach().float(), weight.float())
    return {"compute_dtypes": dict(sorted(compute.items())), "layer": name,
            "equals_bf16_product": bool(torch.equal(y.detach().float(), bf16)),
            "max_abs_diff_from_fp32_product": float((y.detach().float() - fp32).abs().max())}


# ---------------------------------------------------------------------------------------------- one training run
def train_recipe(config: Any, features: Sequence[Mapping[str, list[int]]], members: Sequence[Sequence[int]],
                 plan: Sequence[Sequence[int]], folder: Path, pad_token_id: int, bf16_stream: bool = False
                 ) -> dict[str, Any]:
    """Train ``config`` (a recipe at one seed) for ``len(plan)`` steps on the planned examples, save its adapter in
    ``folder``, and return what the run measured. Notebook 04's ``train_qa`` path (the same data, model, LoRA,
    patches, Trainer and collators), with the Trainer's shuffling replaced by ``plan``; with ``bf16_stream`` the
    post-attention norms' outputs are cast to bf16 too (:func:`post_attention_norms_in`)."""
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, set_seed

    from utils.models import bnb_4bit_config, load_model, load_tokenizer
    from utils.models.adapters import add_lora
    from utils.qa import training
    from utils.qa.collate import batching

    start = time.perf_counter()
    set_seed(config.seed)
    tokenizer, _ = load_tokenizer(config.model_id)
    model = load_model(config.model_id, AutoModelForCausalLM, bnb_4bit_config())
    model = add_lora(model, config.lora_rank, config.lora_alpha, list(config.target_modules),
                     dropout=config.lora_dropout, task_type="CAUSAL_LM",
                     gradient_checkpointing=config.gradient_checkpointing)
    init = lora_sha256(model)
    training.apply_fused_kernels(model, config)
    extra_casts = len(post_attention_norms_in(model, torch.bfloat16)) if bf16_stream else 0
    items, collator, graded_head = batching(config, features, pad_token_id)  # the course's own batching
    if config.row_length:  # the packed rows: train on the planned rows themselves
        check_members(items, members, features)
        batches = [[items[r] for r in rows] for rows in plan]
        ids: list[Any] = [[list(members[r]) for r in rows] for rows in plan]
    else:  # the same examples, laid end to end in one padded row per step
        batches = [[features[i] for r in rows for i in members[r]] for rows in plan]
        ids = [[i for r in rows for i in members[r]] for rows in plan]
    steps = PlannedSteps(batches, ids, collator)
    probe = LeverProbe(model)
    targs = training.training_arguments(folder / "checkpoints", config, disable_tqdm=True, batch_size=1)
    trainer = training.make_trainer(model, targs, [{"step": k} for k in range(len(plan))], callbacks=[probe],
                                    collator=steps, answer_logits_only=config.answer_logits_only,
                                    progress_bar=False, graded_head=graded_head,
                                    offload_checkpoints=config.offload_checkpoints)
    planned = trainer.train_dataset
    trainer._get_train_sampler = lambda *args, **kwargs: SequentialSampler(planned)  # the plan's order, not shuffled
    setup = time.perf_counter() - start
    result = trainer.train()
    history = [h for h in trainer.state.log_history if "loss" in h]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    run = {"steps": trainer.state.global_step, "losses": [h["loss"] for h in history],
           "grad_norms": [h.get("grad_norm") for h in history], "learning_rates": [h["learning_rate"] for h in history],
           "logged_steps": [h["step"] for h in history], "train_seconds": float(result.metrics["train_runtime"]),
           "setup_seconds": setup, "lora_init_sha256": init,
           "step_examples": [[i for row in s for i in row] if config.row_length else s for s in steps.seen],
           "step_tokens": steps.tokens, "step_graded_tokens": steps.graded, "first_batch_shape": steps.shapes[0],
           "lever_check": {"residual_16bit_acts": training.residual_16bit(config),
                           "post_attention_norm_casts": extra_casts, **probe.seen,
                           **static_levers(model), "base_4bit_matmul": base_matmul_check(model)}}
    if config.row_length:
        run["step_rows"] = steps.seen
    return run


# ---------------------------------------------------------------------------------------------- the summary
def final_window(losses: Sequence[float]) -> float:
    """Mean loss of the last :data:`WINDOW` steps."""
    return statistics.fmean(losses[-WINDOW:])


METRICS = {"exact_match": lambda r: r["exact_match"], "f1": lambda r: r["f1"],
           "final_loss": lambda r: final_window(r["losses"])}


def compare(runs: Mapping[str, Mapping[str, Mapping[str, Any]]], a: str, b: str, seeds: Sequence[str],
            recipes: Mapping[str, Any]) -> dict[str, Any]:
    """Recipe ``a`` against ``b`` by the seed rule: on EM, F1 and the final-window loss (gap, what the rule allows,
    verdict); the largest per-step gap of the seed-mean loss curves relative to the larger seed std at that step;
    the paired (same seed, same batches) final-window difference; and the overall verdict."""
    metrics = {}
    for metric in METRICS:
        ma, mb = recipes[a][metric], recipes[b][metric]
        metrics[metric] = {"gap": ma["mean"] - mb["mean"], "allowed": K * max(ma["std"], mb["std"]),
                           "verdict": seed_verdict(ma["mean"], ma["std"], mb["mean"], mb["std"], K)}
    ca, cb = recipes[a]["curve"], recipes[b]["curve"]
    ratios = []
    for t in range(len(ca["mean"])):
        spread = max(ca["std"][t], cb["std"][t])
        ratios.append(abs(ca["mean"][t] - cb["mean"][t]) / spread if spread > 0 else math.inf)
    worst = max(range(len(ratios)), key=ratios.__getitem__)
    paired = [final_window(runs[a][s]["losses"]) - final_window(runs[b][s]["losses"]) for s in seeds]
    paired_mean, paired_std = mean_std(paired)
    differ = [m for m, v in metrics.items() if v["verdict"] != "within seed noise"]
    return {"metrics": metrics,
            "largest_step_gap": {"step": worst + 1, "gap": ca["mean"][worst] - cb["mean"][worst],
                                 "std": max(ca["std"][worst], cb["std"][worst]), "ratio": ratios[worst]},
            "steps_beyond_k_std": sum(r > K for r in ratios),
            "paired_final_loss_difference": {"values": paired, "mean": paired_mean, "std": paired_std},
            "verdict": "agree within seed noise" if not differ else "differ beyond seed noise: " + ", ".join(differ)}


def summarize(runs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """From the per-seed numbers (``runs[recipe][seed]``): each recipe's mean and seed standard deviation of EM, F1 and
    the final-window loss and its seed-mean loss curve; each other recipe against the plain one (:func:`compare`);
    and the verdict, the course's default (``fast``) against the plain recipe."""
    seeds = sorted(set.intersection(*(set(v) for v in runs.values())), key=int)
    n = min(len(runs[r][s]["losses"]) for r in runs for s in seeds)
    recipes: dict[str, dict[str, Any]] = {}
    for recipe in runs:
        stats: dict[str, Any] = {}
        for metric, get in METRICS.items():
            values = [get(runs[recipe][s]) for s in seeds]
            mean, std = mean_std(values)
            stats[metric] = {"mean": mean, "std": std, "values": values}
        per_step = [mean_std([runs[recipe][s]["losses"][t] for s in seeds]) for t in range(n)]
        stats["curve"] = {"mean": [m for m, _ in per_step], "std": [sd for _, sd in per_step]}
        recipes[recipe] = stats
    comparisons = {f"{r} vs {BASELINE}": compare(runs, r, BASELINE, seeds, recipes) for r in runs if r != BASELINE}
    return {"seeds": [int(s) for s in seeds], "steps": n, "window": WINDOW, "k": K, "recipes": recipes,
            "comparisons": comparisons, "verdict": comparisons[f"{MAIN} vs {BASELINE}"]["verdict"]}


# ---------------------------------------------------------------------------------------------- the report
METRIC_NAMES = {"exact_match": "EM", "f1": "F1", "final_loss": f"final loss (last {WINDOW} steps)"}
DIGITS = {"exact_match": 1, "f1": 1, "final_loss": 3}
LABELS = {"fast": "fast (the course's default)", "fast_bf16_stream": "fast + bf16 stream throughout",
          "plain": "plain"}


def table_rows(record: Mapping[str, Any]) -> list[list[str]]:
    """The README's main table: one row per recipe, ``[recipe, EM, F1, final loss, median training seconds]`` as
    printed."""
    rows = []
    for recipe, stats in record["summary"]["recipes"].items():
        cells = [f"{stats[m]['mean']:.{DIGITS[m]}f} ± {stats[m]['std']:.{DIGITS[m]}f}" for m in METRICS]
        seconds = statistics.median(r["train_seconds"] for r in record["runs"][recipe].values())
        rows.append([recipe, *cells, f"{seconds:.0f}"])
    return rows


def _sentence(record: Mapping[str, Any], a: str, metric: str) -> str:
    recipes = record["summary"]["recipes"]
    c = record["summary"]["comparisons"][f"{a} vs {BASELINE}"]["metrics"][metric]
    d = DIGITS[metric]
    ma, mb = recipes[a][metric], recipes[BASELINE][metric]
    return (f"{METRIC_NAMES[metric]}: {a} {ma['mean']:.{d}f} ± {ma['std']:.{d}f}, {BASELINE} {mb['mean']:.{d}f} ± "
            f"{mb['std']:.{d}f}; the gap {c['gap']:+.{d}f} against the {c['allowed']:.{d}f} the rule allows "
            f"({K:g} × {max(ma['std'], mb['std']):.{d}f}): **{c['verdict']}**")


def paired_steps(record: Mapping[str, Any], a: str) -> dict[str, Any]:
    """The per-step loss difference ``a`` − plain at the same seed (the same batches), averaged over the seeds: the
    step where it is largest in size, its mean there and each seed's."""
    s = record["summary"]
    diffs = [[x - y for x, y in zip(record["runs"][a][str(seed)]["losses"][:s["steps"]],
                                    record["runs"][BASELINE][str(seed)]["losses"][:s["steps"]], strict=True)]
             for seed in s["seeds"]]
    means = [statistics.fmean(v) for v in zip(*diffs, strict=True)]
    step = max(range(len(means)), key=lambda t: abs(means[t]))
    return {"step": step + 1, "mean": means[step], "seeds": [d[step] for d in diffs]}


def _paired_scores(record: Mapping[str, Any], a: str, metric: str) -> str:
    """Each seed's ``metric`` difference ``a`` − plain, as the README prints it."""
    runs = record["runs"]
    return ", ".join(f"{runs[a][str(seed)][metric] - runs[BASELINE][str(seed)][metric]:+.1f}"
                     for seed in record["summary"]["seeds"])


def _comparison(record: Mapping[str, Any], a: str) -> list[str]:
    """The bullet list of one comparison against the plain recipe."""
    s = record["summary"]
    c = s["comparisons"][f"{a} vs {BASELINE}"]
    largest, paired, step = c["largest_step_gap"], c["paired_final_loss_difference"], paired_steps(record, a)
    return [f"- {_sentence(record, a, m)};" for m in METRICS] + [
        f"- the loss curves (`{FIGURE}`): the largest gap between the seed-mean curves is {largest['gap']:+.3f} at step "
        f"{largest['step']}, {largest['ratio']:.2f} times the larger seed standard deviation at that step "
        f"({largest['std']:.3f}); {c['steps_beyond_k_std']} of {s['steps']} steps differ by more than {K:g} of them;",
        f"- paired (not the course's rule: at the same seed both recipes see the same batches, so the per-seed "
        f"difference of the final-window loss, {a} − {BASELINE}, is free of the data-order noise): "
        f"{', '.join(f'{v:+.3f}' for v in paired['values'])} (mean {paired['mean']:+.3f} ± {paired['std']:.3f}); the "
        f"largest per-step difference, mean over the seeds, is {step['mean']:+.3f} at step {step['step']} (per seed "
        f"{', '.join(f'{v:+.3f}' for v in step['seeds'])}"
        f"{': the same sign in every seed' if len({v > 0 for v in step['seeds']}) == 1 else ''}); per seed, EM differs by {_paired_scores(record, a, 'exact_match')}"
        f" and F1 by {_paired_scores(record, a, 'f1')} points.",
    ]


def title(record: Mapping[str, Any]) -> str:
    """The figure's title: the finding."""
    s = record["summary"]
    f1 = {r: v["f1"]["mean"] for r, v in s["recipes"].items()}
    head = (f"The default recipe and the plain one {'agree within' if s['verdict'].startswith('agree') else 'differ beyond'}"
            " seed noise")
    return (f"{head}\nSmolLM2-135M on Disfl-QA, {len(s['seeds'])} seeds, held-out F1: "
            + ", ".join(f"{r} {v:.1f}" for r, v in f1.items()))


CHECK_ROWS = [
    ("autocast during the forward", "autocast"),
    ("`residual_16bit` acts (bf16 only)", "residual_16bit_acts"),
    ("embeddings' output", "embeddings output"),
    ("layer 0's input-norm output", "layer 0 input-norm output"),
    ("layer 0's post-attention-norm output", "layer 0 post-attention-norm output"),
    ("layer 0's MLP output", "layer 0 MLP output"),
    ("residual stream into layer 1", "residual stream into layer 1"),
    ("residual stream into the final norm", "residual stream into the final norm"),
    ("post-attention norms cast by the script", "post_attention_norm_casts"),
    ("embedding / head weights stored in", "embedding_weight"),
    ("LoRA layers' forward", "lora_forward"),
    ("LoRA dropout", "lora_dropout"),
    ("fused GELU modules", "fused_gelu_modules"),
    ("first batch's shape (rows × tokens)", "first_batch_shape"),
    ("4-bit layers' compute dtype (bitsandbytes)", "compute_dtypes"),
    ("a 4-bit product under autocast equals the bf16 product", "equals_bf16_product"),
]


def _cell(check: Mapping[str, Any], key: str) -> str:
    """One lever check as the README's table shows it."""
    if key == "lora_forward":
        value = check.get(key) or {  # a record written before the check named the function: patched or peft's
            "the course's patched forward": check["lora_one_pass_forward"],
            "peft": check["lora_4bit_layers"] - check["lora_one_pass_forward"]}
        return ", ".join(f"`{name}` × {n}" for name, n in value.items() if n)
    value = check["base_4bit_matmul"][key] if key in ("equals_bf16_product", "compute_dtypes") else check[key]
    if key == "compute_dtypes":
        return ", ".join(f"{n} × {d}" for d, n in value.items())
    if key == "first_batch_shape":
        return " × ".join(map(str, value))
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def render_readme(record: Mapping[str, Any]) -> str:
    """The folder's README, every number from ``record``."""
    s, settings, machine, versions = record["summary"], record["settings"], record["machine"], record["versions"]
    cfg = record["recipes"]
    seeds = s["seeds"]
    names = list(s["recipes"])
    check = {r: run["lever_check"] | {"first_batch_shape": run["first_batch_shape"]}
             for r in names for run in [record["runs"][r][str(seeds[0])]]}
    examples = [len(e) for r in record["runs"][MAIN].values() for e in r["step_examples"]]
    main, stream = cfg[MAIN], cfg["fast_bf16_stream"] if "fast_bf16_stream" in cfg else None
    plain = cfg[BASELINE]
    lines = [
        f"# The default recipe against the plain one on real weights: SmolLM2-135M on Disfl-QA ({record['measured']})",
        "",
        "**Question.** The default recipe's levers (LoRA added inside the 4-bit layers' products, a 16-bit residual "
        "stream and norm outputs, "
        "examples packed into rows of a fixed length, no LoRA dropout) were measured for speed only, on random weights. "
        "On real weights and real text, with the same data and steps, do they train as well as the plain recipe "
        "(peft's forward, float32 residual stream, padded batches, LoRA dropout)?",
        "",
        f"**Answer: the default recipe and the plain one {s['verdict']}** on held-out EM and F1 and on the final "
        f"training loss ({len(seeds)} seeds; the course's rule: two means agree when they are within {K:g} times the "
        "larger seed standard deviation). Details, and a third recipe that makes the 16-bit residual stream act "
        "throughout, below.",
        "",
        f"**What ran.** `{record['command']}` ({record['threads']} threads, `OMP_NUM_THREADS` "
        f"{record['omp_num_threads'] or 'unset'}, smoke profile, {machine['cores']} CPU cores "
        f"{'with' if machine['avx512_bf16'] else 'without'} `avx512_bf16`; {record['total_minutes']:.0f} minutes in "
        f"all). SmolLM2-135M-Instruct's real weights (4-bit NF4 from the pip-packaged GGUF), LoRA r = "
        f"{settings['lora_rank']}, alpha {settings['lora_alpha']:g} on all seven linear layers, "
        f"{OPTIMIZER_NAMES.get(settings['optimizer'], settings['optimizer'])}, "
        f"learning rate {settings['learning_rate']:g} cosine with {settings['warmup_ratio']:g} warm-up, gradient "
        f"clipping {settings['max_grad_norm']:g}, {settings['max_length']} tokens per example at most; all "
        f"{record['train_questions']} Disfl-QA training questions packed into {record['packed_rows']} rows of "
        f"{main['row_length']} tokens; {s['steps']} optimizer steps of {settings['rows_per_step']} rows "
        f"({min(examples)}–{max(examples)} examples a step, {statistics.fmean(examples):.1f} on average, "
        f"{sum(examples) / len(record['runs'][MAIN]) / record['train_questions']:.2f} passes); seeds "
        f"{', '.join(map(str, seeds))}; every recipe under bf16 autocast on the CPU (`precision=\"bf16\"`):",
        "",
        f"- **fast** (the course's default levers): `fused_kernels={main['fused_kernels']}` (LoRA inside the 4-bit "
        "layers' products by the course's patched forward, named in the check table below; 16-bit norm outputs"
        f"{'; the rotary embedding applied in place' if 'offload_checkpoints' in main else ''}), "
        + (f"`offload_checkpoints={main['offload_checkpoints']}` (the checkpoints' copies to CPU memory act on a GPU "
           "only; on the CPU the same checkpoint function runs without them), " if "offload_checkpoints" in main else "")
        + f"`residual_16bit={main['residual_16bit']}`, `row_length={main['row_length']}`, "
        f"`lora_dropout={main['lora_dropout']}`;",
    ]
    if stream is not None:
        lines.append(
            "- **fast_bf16_stream**: fast, and every decoder layer's post-attention norm output cast to bf16 as the "
            "course casts the input norm's (done by the script, not by `utils`). The lever check below shows why: in a "
            "Llama layer (SmolLM2) the second norm returns float32 (its weight is float32 after peft's "
            "`prepare_model_for_kbit_training`), so the MLP, and the residual stream from the first MLP on, are float32 "
            "again under the course's patches; Phi-2's layer has one norm for attention and MLP, and there the course's "
            "patches keep the stream bf16 throughout. This recipe is the 16-bit stream as it acts on Phi-2;")
    lines += [
        f"- **plain**: `fused_kernels={plain['fused_kernels']}` (peft's own LoRA forward), "
        f"`residual_16bit={plain['residual_16bit']}` (float32 residual stream, embeddings and head), "
        f"`row_length={plain['row_length']}` (each step's examples in one batch, laid end to end and padded up to "
        f"a multiple of {plain['pack_multiple']} tokens with filler that carries no loss), "
        f"`lora_dropout={plain['lora_dropout']}` (the QLoRA paper's value for models of up to 13B parameters).",
        "",
        "**Same data and steps.** The training examples are packed once into rows by the fast recipe's own packing "
        "(`utils.qa.collate.pack_rows`); each seed shuffles the rows, and step *k* takes the next "
        f"{settings['rows_per_step']}. The fast recipes train on those rows, the plain recipe on exactly the examples "
        "they hold, in one padded batch. The Trainer's shuffling is replaced by this plan (one item per step, read in "
        "order), and the collator records what each step saw: the record holds, per seed and recipe, every step's "
        "example ids, tokens and answer tokens; the example ids and answer tokens are the same in every recipe "
        "(`tests/test_recipe_quality_record.py` checks it). All recipes divide the summed loss by the step's answer "
        "tokens, so a step's loss is the same function of the same examples. A seed gives every recipe the same LoRA "
        "initialisation (the hash of the initial LoRA weights, recorded, is equal). Then the whole validation split, "
        f"{record['eval_questions']} questions on passages training never saw, is answered greedily "
        f"({record['generation']['max_new_tokens']} new tokens at most, prompts up to "
        f"{record['generation']['max_length']} tokens, as in `benchmarks/qa_real_data.py`) by each adapter on one "
        "4-bit base in float32 without autocast, so the evaluation differs only by the adapter's weights.",
        "",
        "**Result** (mean ± standard deviation over the seeds; EM and F1 in %; loss: the trainer's answer-token "
        "cross-entropy, nats per token):",
        "",
        f"| recipe | EM | F1 | final loss (last {WINDOW} steps) | training seconds per run (median) |",
        "|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in table_rows(record)],
        "",
        f"**Verdict, fast against plain: {s['verdict']}.**",
        "",
        *_comparison(record, MAIN),
        "",
    ]
    for other in (r for r in names if r not in (MAIN, BASELINE)):
        lines += [f"**{other} against plain: {s['comparisons'][f'{other} vs {BASELINE}']['verdict']}.**", "",
                  *_comparison(record, other), ""]
    lines += [
        "**Per seed:**",
        "",
        "| seed | recipe | EM | F1 | first loss | final loss | training seconds | evaluation seconds |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {seed} | {recipe} | {r['exact_match']:.1f} | {r['f1']:.1f} | {r['losses'][0]:.3f} | "
          f"{final_window(r['losses']):.3f} | {r['train_seconds']:.0f} | {r['eval_seconds']:.0f} |"
          for seed in seeds for recipe in names for r in [record["runs"][recipe][str(seed)]]],
        "",
        "**Did the levers act?** Checked in each run: the dtypes during the first training step's forward (hooks "
        "registered after the course's own), the patched modules, and after training the 4-bit layers; seed "
        f"{seeds[0]} shown, every run's check is in the record.",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *[f"| {label} | " + " | ".join(_cell(check[r], key) for r in names) + " |" for label, key in CHECK_ROWS],
        "",
        "**What bf16 autocast on the CPU measures, and what it does not.** The levers under test are numerical: "
        "where activations are rounded to bf16 (residual stream, norm outputs, embeddings and head), whether LoRA's "
        "update is added inside the 4-bit layer's product (one rounding) or after it (two), whether dropout perturbs "
        "LoRA's input, and how examples share a "
        "batch (packed rows against one padded row; attention is kept within each example either way). Under bf16 "
        "autocast they act on the CPU as they do on a GPU: the table shows the dtypes each recipe's activations have. "
        "The matrix products run in bf16 with float32 accumulation on both: autocast sends them to oneDNN, whose "
        "`avx512_bf16`/AMX kernels accumulate bf16 products in float32 as a GPU's tensor cores do; bitsandbytes' "
        "4-bit product under autocast equals the bf16 product bit for bit (last row), and the course's fused layer "
        "computes its products in the autocast dtype itself. What may differ on a GPU: "
        "bitsandbytes' CUDA kernels dequantize straight to bf16 (its compute dtype there) where the CPU path "
        "dequantizes to float32 and autocast rounds to bf16 (the same bf16 weights up to the rounding of a scale "
        "product); the attention kernel (the CPU's SDPA against a GPU's flash or memory-efficient kernel, which sum in "
        "another order); the order of the float32 accumulations inside the matrix products. These are rounding "
        "differences that every recipe has alike, not levers. Two things are not measured here at all: speed (the "
        "CPU times above are for the record; the GPU speed runs are in `benchmarks/README.md`), and the fused GELU, "
        "which has nothing to replace in SmolLM2 (SiLU; the check shows 0 modules swapped). And the model: a 135M "
        "Llama trained for a fraction of a pass, not Phi-2 for the course's 100 steps of 28 rows; the finding is about "
        "these numerical levers on real weights, not a measurement of Phi-2's quality.",
        "",
        f"**Machine and versions.** {machine['cores']} CPU cores "
        f"{'with' if machine['avx512_bf16'] else 'without'} `avx512_bf16`, shared with other work for part of the run "
        "(one recipe's training took "
        + "; ".join(f"{r} {min(t):.0f}–{max(t):.0f} s" for r in names
                    for t in [[run["train_seconds"] for run in record["runs"][r].values()]])
        + " per run, hence the medians above: the times are not benchmarks), "
        f"commit {machine['commit']}; Python {versions['python']}, torch {versions['torch']}, "
        f"transformers {versions['transformers']}, peft {versions['peft']}, bitsandbytes {versions['bitsandbytes']}, "
        f"accelerate {versions['accelerate']}.",
        "",
        f"**Files.** `{RECORD}`: the settings, each recipe's configuration, every run's per-step losses, gradient "
        "norms, learning rates, example ids, token counts, LoRA initialisation hash, lever check, answers and scores, "
        f"the references, the summary and the verdicts. `{FIGURE}`: the seed-mean loss per step with the seeds' range, "
        "and the paired differences. This README and the figure are written from the record: "
        f"`python benchmarks/recipe_quality.py --out {record['out']} --report-only`.",
        "",
    ]
    return "\n".join(lines)


COLORS = {"fast": "tab:blue", "fast_bf16_stream": "tab:green", "plain": "tab:orange"}


def plot(record: Mapping[str, Any], path: Path) -> None:
    """``loss_curves.png``: each recipe's seed-mean loss per step with the seeds' range, and each fast recipe's paired
    difference from the plain one (same seed, same batches)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = record["summary"]
    steps = list(range(1, s["steps"] + 1))

    def losses(recipe: str) -> list[list[float]]:
        return [record["runs"][recipe][str(seed)]["losses"][:s["steps"]] for seed in s["seeds"]]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for recipe in s["recipes"]:
        color, per_seed = COLORS.get(recipe), losses(recipe)
        top.plot(steps, s["recipes"][recipe]["curve"]["mean"], color=color, lw=1.2,
                 label=f"{recipe}: mean of {len(per_seed)} seeds")
        top.fill_between(steps, [min(v) for v in zip(*per_seed, strict=True)],
                         [max(v) for v in zip(*per_seed, strict=True)], color=color, alpha=0.15)
    top.set(ylabel="training loss (nats per answer token)", title=title(record))
    top.legend(title="band: range over seeds")
    top.grid(alpha=0.3)
    bottom.axhline(0, color="black", lw=0.8)
    for recipe in (r for r in s["recipes"] if r != BASELINE):
        diffs = [[a - b for a, b in zip(x, y, strict=True)]
                 for x, y in zip(losses(recipe), losses(BASELINE), strict=True)]
        bottom.plot(steps, [statistics.fmean(v) for v in zip(*diffs, strict=True)], color=COLORS.get(recipe), lw=1.2,
                    label=f"{recipe} − {BASELINE}")
        bottom.fill_between(steps, [min(v) for v in zip(*diffs, strict=True)],
                            [max(v) for v in zip(*diffs, strict=True)], color=COLORS.get(recipe), alpha=0.15)
    bottom.set(xlabel="optimizer step", ylabel="loss difference (nats per token)")
    bottom.legend(title="same seed and batches: mean, band: range")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(record: Mapping[str, Any], out: Path) -> None:
    """Write README.md and loss_curves.png into ``out`` from ``record``."""
    (out / README).write_text(render_readme(record))
    plot(record, out / FIGURE)


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="new folder for record.json, README.md, loss_curves.png")
    parser.add_argument("--report-only", action="store_true", help="rewrite README.md and loss_curves.png from record.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=64, help="optimizer steps per run (64: ~35 min on 2 cores)")
    parser.add_argument("--max-length", type=int, default=384, help="tokens per training example")
    parser.add_argument("--row-length", type=int, default=RECIPES["fast"]["row_length"], help="the fast recipes' rows")
    parser.add_argument("--rows-per-step", type=int, default=2, help="packed rows per optimizer step")
    parser.add_argument("--eval-max-length", type=int, default=512, help="prompt room at evaluation")
    parser.add_argument("--eval-size", type=int, default=0, help="validation questions scored (0: all)")
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "recipe_quality", help="adapters go here")
    args = parser.parse_args()
    record_path = args.out / RECORD
    if args.report_only:
        if not record_path.is_file():
            parser.error(f"{record_path} does not exist: run without --report-only first, or pass the --out that holds it")
        write_report(json.loads(record_path.read_text()), args.out)
        print(f"wrote {args.out / README} and {args.out / FIGURE}")
        return
    if record_path.exists():
        parser.error(f"{record_path} exists: a record is never overwritten; pass another --out (or --report-only to "
                     "rewrite its README and figure)")
    if len(args.seeds) < 2:
        parser.error("the comparison needs a seed spread: pass at least 2 seeds (3 or more for the record)")
    args.out.mkdir(parents=True, exist_ok=True)
    run(args)


def run(args: argparse.Namespace) -> None:
    """Train every recipe at every seed, score them, and write the record and the report."""
    from tools.readme import machine
    from utils.evaluation import qa as qa_eval
    from utils.evaluation.squad import squad_scores
    from utils.models import bnb_4bit_config, load_tokenizer
    from utils.models.adapters import load_adapter
    from utils.qa import data as qa_data
    from utils.qa import training
    from utils.qa.collate import pack_members
    from utils.qa.config import QAConfig, qa_set_file
    from utils.run_mode import environment_report

    started = time.time()
    train_rows = qa_data.load_qa_split(qa_set_file(DATASET, "train"))
    eval_rows = qa_data.load_qa_split(qa_set_file(DATASET, "validation"), limit=args.eval_size or None)
    qa_data.check_no_overlap(train_rows, eval_rows, "train", "validation", same_context=True)
    qa_data.check_no_overlap(train_rows, eval_rows, "train", "validation", same_answer=True)

    def config_for(recipe: str, seed: int) -> QAConfig:
        levers = RECIPES[recipe] | ({"row_length": args.row_length} if RECIPES[recipe]["row_length"] else {})
        return QAConfig.resolve("smoke", dataset=DATASET, train_size=0, max_length=args.max_length,
                                max_steps=args.max_steps, logging_steps=1, save_steps=args.max_steps, seed=seed,
                                precision="bf16", batch_size=args.rows_per_step, **levers)

    first = config_for("fast", args.seeds[0])
    rows, first = training.training_rows(first)
    assert len(rows) == len(train_rows), "train_size=0 trains on every training question"
    tokenizer, architecture = load_tokenizer(first.model_id)
    fmt = qa_data.PromptFormat(architecture.prompt_style, tokenizer)
    training.check_max_length(first, tokenizer, fmt)
    features, counts = qa_data.encode_rows(rows, tokenizer, first.max_length, source=first.dataset, fmt=fmt)
    if counts["kept"] != counts["examples"]:
        raise SystemExit(f"{counts['dropped_too_long']} examples do not fit max_length={args.max_length}: their ids "
                         "would no longer be positions in the training split; raise --max-length")
    members = pack_members([len(f["input_ids"]) for f in features], args.row_length)
    record: dict[str, Any] = {
        "measured": time.strftime("%Y-%m-%d"), "machine": machine(), "versions": environment_report(),
        "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "command": " ".join(["python", *sys.argv]), "out": str(args.out), "dataset": DATASET,
        "train_questions": len(train_rows), "eval_questions": len(eval_rows), "examples": counts,
        "example_ids": "positions in data/disfl_qa/train.json (every question kept, in the file's order)",
        "packed_rows": len(members),
        "code_sha256": {path: hashlib.sha256((REPO / path).read_bytes()).hexdigest() for path in CODE
                        if (REPO / path).is_file()},
        "settings": first.as_dict() | {"seed": "per run", "rows_per_step": args.rows_per_step,
                                       "batching": "one Trainer item per optimizer step (batch size 1) from the step "
                                                   "plan; batch_size is the fast recipe's rows per step"},
        "recipes": {r: config_for(r, args.seeds[0]).as_dict() | {"seed": "per run"} for r in RECIPES},
        "lora_dropout_source": "QLoRA (Dettmers et al. 2023): 0.05 for models up to 13B parameters, 0.1 above",
        "runs": {r: {} for r in RECIPES},
    }
    eval_model = generate = None
    for seed in args.seeds:
        plan = plan_steps(len(members), args.rows_per_step, args.max_steps, seed)
        for recipe in RECIPES:
            config = config_for(recipe, seed)
            folder = args.work / f"{recipe}_seed{seed}"
            result = train_recipe(config, features, members, plan, folder, tokenizer.pad_token_id,
                                  bf16_stream=recipe in BF16_STREAM)
            gc.collect()  # the run's model and Trainer, before the evaluation and the next run
            start = time.perf_counter()
            if eval_model is None:
                eval_model = load_adapter(config.model_id, folder, bnb_4bit_config())  # its adapter: "default"
                eval_fmt = qa_data.prompt_format(tokenizer, eval_model)
                budget = qa_eval.answer_length_budget(train_rows, tokenizer, eval_fmt)
                generate = {"max_new_tokens": budget["max_new_tokens"], "max_length": args.eval_max_length,
                            "fmt": eval_fmt}
                record["generation"] = generate | {"fmt": eval_fmt.style, "budget": budget, "decoding": "greedy",
                                                   "base": "4-bit NF4, float32 elsewhere, no autocast"}
            else:  # the same 4-bit base, this run's adapter
                eval_model.load_adapter(str(folder), adapter_name=f"{recipe}_seed{seed}")
                eval_model.set_adapter(f"{recipe}_seed{seed}")
            answers = qa_eval.generate_answers(eval_model, tokenizer, eval_rows, progress=False, **generate)
            scores = squad_scores(answers, [r["answers"]["text"] for r in eval_rows])
            result |= {"exact_match": scores["exact_match"], "f1": scores["f1"], "n": scores["n"],
                       "eval_seconds": time.perf_counter() - start, "answers": answers}
            record["runs"][recipe][str(seed)] = result
            print(json.dumps({"seed": seed, "recipe": recipe, "final_loss": round(final_window(result["losses"]), 3),
                              "em": round(scores["exact_match"], 1), "f1": round(scores["f1"], 1),
                              "train_s": round(result["train_seconds"]), "eval_s": round(result["eval_seconds"]),
                              "elapsed_min": round((time.time() - started) / 60, 1)}), flush=True)
    record["references"] = [r["answers"]["text"] for r in eval_rows]
    record["summary"] = summarize(record["runs"])
    record["total_minutes"] = (time.time() - started) / 60
    record_path = args.out / RECORD
    record_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    write_report(record, args.out)
    summary = record["summary"]
    print(json.dumps({"verdict": summary["verdict"], **{c: v["verdict"] for c, v in summary["comparisons"].items()},
                      **{r: {m: round(v[m]["mean"], 3) for m in METRICS} for r, v in summary["recipes"].items()}},
                     indent=1))


if __name__ == "__main__":
    main()
