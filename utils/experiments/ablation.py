"""The rank ablation of notebook 03: one QLoRA classifier per (variant, rank, seed), trained and scored.

:func:`ablation_configs` lays out the grid (ranks, alpha and rsLoRA variants, target sets at an equal parameter
budget from :func:`equal_budget_ranks`), :func:`check_targets_exist` fails fast on a wrong target name (before
a long sweep), :func:`run_ablation` trains and scores each configuration with :mod:`utils.classification` and
flags runs that diverged or stalled (:func:`failed_to_train`); :mod:`utils.experiments.scores` summarises and plots
its rows, ``utils.experiments.sweep`` re-runs the notebook over larger grids.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from utils.models.adapters import ALL_LINEAR, check_lora_args


def ablation_configs(ranks: Iterable[int], seeds: Iterable[int], alpha_per_rank: float = 2.0,
                     fixed_alpha: float = 16.0, rslora_alpha: float | None = None,
                     variant_ranks: Iterable[int] = (), target_runs: dict[str, tuple[list[str], int]] | None = None,
                     variant_seeds: Iterable[int] | None = None) -> list[dict]:
    """The runs of a rank ablation, each a dict ``variant, rank, alpha, use_rslora, targets, seed``.

    Main line: every rank x seed on all linear layers with ``alpha = alpha_per_rank * r`` (the scaling
    ``alpha / r`` is the same at every rank). At those ``variant_ranks`` that are also in ``ranks``
    (x ``variant_seeds``, default ``seeds``):

    - ``fixed alpha``: ``alpha = fixed_alpha`` (scaling ``fixed_alpha / r`` shrinks as r grows);
    - ``rsLoRA`` (if ``rslora_alpha``): scaling ``rslora_alpha / sqrt(r)``;

    each left out at a rank where its scaling equals the main line's, which would repeat that run.

    ``target_runs`` maps a name to ``(target modules, rank)``: LoRA on those layers only, at that rank and
    ``alpha = alpha_per_rank * rank``, over ``variant_seeds`` (:func:`equal_budget_ranks` picks the ranks that
    give every set the same number of trainable parameters).

    Raises:
        ValueError: a rank that is not a positive integer, an alpha <= 0, no ranks or no seeds.
    """
    ranks, seeds = list(ranks), list(seeds)
    if not ranks:
        raise ValueError("ranks is empty: give at least one LoRA rank, e.g. [4, 8].")
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed, e.g. [0].")
    for r in ranks:
        check_lora_args(r, 1.0)
    for alpha in (alpha_per_rank, fixed_alpha) + ((rslora_alpha,) if rslora_alpha is not None else ()):
        check_lora_args(1, alpha)
    variant_seeds = seeds if variant_seeds is None else list(variant_seeds)

    def run(variant: str, rank: int, alpha: float, seed: int, targets: list[str] | str = ALL_LINEAR,
            use_rslora: bool = False) -> dict:
        return {"variant": variant, "rank": rank, "alpha": alpha, "use_rslora": use_rslora, "targets": targets,
                "seed": seed}

    main = f"all linear, alpha={alpha_per_rank:g}r"
    configs = [run(main, r, alpha_per_rank * r, s) for r in dict.fromkeys(ranks) for s in dict.fromkeys(seeds)]
    for r in [r for r in dict.fromkeys(variant_ranks) if r in ranks]:
        main_scaling = alpha_per_rank  # (alpha_per_rank * r) / r
        for s in dict.fromkeys(variant_seeds):
            if not math.isclose(fixed_alpha / r, main_scaling):  # else it is the main line's run again
                configs.append(run(f"all linear, alpha={fixed_alpha:g}", r, fixed_alpha, s))
            if rslora_alpha is not None and not math.isclose(rslora_alpha / math.sqrt(r), main_scaling):
                configs.append(run(f"all linear, rsLoRA alpha={rslora_alpha:g}", r, rslora_alpha, s, use_rslora=True))
    for name, (targets, r) in (target_runs or {}).items():
        check_lora_args(r, 1.0)
        targets = targets if isinstance(targets, str) else list(targets)
        configs += [run(name, r, alpha_per_rank * r, s, targets) for s in dict.fromkeys(variant_seeds)]
    return configs


def lora_parameters_per_rank(model_id: str, target_modules: str | Iterable[str]) -> int:
    """Trainable LoRA parameters that one unit of rank adds on ``target_modules`` of ``model_id``:
    ``sum(in + out)`` over the targeted linear layers (the model's skeleton on the ``meta`` device: no weights)."""
    from peft import LoraConfig, get_peft_model

    from utils.classification import head_name

    skeleton = _skeleton(model_id)
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    config = LoraConfig(r=1, lora_alpha=1, target_modules=targets, task_type="SEQ_CLS",
                        modules_to_save=[head_name(skeleton)])  # as load_classifier adds it: the head trains in full
    peft_model = get_peft_model(skeleton, config)
    return sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)


def equal_budget_ranks(model_id: str, target_sets: dict[str, list[str] | str], budget: int) -> dict[str, int]:
    """For each target set, the rank whose LoRA parameters come closest to ``budget`` (at least rank 1).

    E.g. ``budget`` = what all linear layers train at rank 8; attention-only and MLP-only runs then get
    larger ranks and the same number of trainable parameters, so that only *where* the adapters sit differs.
    """
    return {name: max(1, round(budget / lora_parameters_per_rank(model_id, targets)))
            for name, targets in target_sets.items()}


def _skeleton(model_id: str):  # noqa: ANN202
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from utils.models import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path(model_id))
    with init_empty_weights():
        return AutoModelForSequenceClassification.from_config(config)


def loss_fall(loss_history: list[float], window: int = 3) -> float:
    """How far a loss curve fell, as a share of where it started: ``1 - mean(last window) / mean(first window)``
    of its logged losses (``window`` at most half the curve); ``nan`` for an empty curve or a non-finite loss."""
    if not loss_history or not all(math.isfinite(x) for x in loss_history):
        return math.nan
    window = max(1, min(window, len(loss_history) // 2 or 1))
    first, last = loss_history[:window], loss_history[-window:]
    return 1 - (sum(last) / len(last)) / (sum(first) / len(first))


def failed_to_train(loss_history: list[float], window: int = 3, min_drop: float = 0.1) -> bool:
    """True if a run diverged or stalled: a non-finite loss, or a :func:`loss_fall` under ``min_drop`` (a tenth).

    Why a tenth: a new classifier head starts at the loss of a uniform guess over the classes, and a run that learns
    falls well below it; a run that does not ends near where it started, or above (notebook 03's failed runs swing
    around the guess). Such a run measures a learning rate that does not suit its configuration, not the
    configuration: report it, do not rank it (notebook 03 prints every run's fall next to the threshold)."""
    fall = loss_fall(loss_history, window)
    return math.isnan(fall) or fall < min_drop


def late_share(curve: list[float], window: int = 4) -> float:
    """Share of a loss curve's fall (start to end, each a mean over ``window`` logged steps) that comes after its
    first two thirds: near 0 when the curve has flattened, near 1 when it is still falling at the end."""
    import statistics

    third = 2 * len(curve) // 3 - window // 2
    start, two_thirds, end = (statistics.fmean(curve[:window]), statistics.fmean(curve[third:third + window]),
                              statistics.fmean(curve[-window:]))
    return (two_thirds - end) / (start - end)


def check_targets_exist(model_id: str, target_modules: str | Iterable[str]) -> None:
    """Raise ValueError (listing the linear layers that exist) if a target matches no layer of ``model_id``.

    Builds the model's skeleton on the ``meta`` device (no weights loaded), so it costs a second,
    not a model load: run it before a long sweep instead of failing halfway through.
    """
    from utils.models.adapters import check_target_modules

    check_target_modules(_skeleton(model_id), target_modules if isinstance(target_modules, str) else list(target_modules))


def run_ablation(configs: list[dict], model_id: str, dataset, *, epochs: float, lr: float,  # noqa: ANN001
                 batch_size: int, max_length: int, output_dir, method: str = "qlora") -> list[dict]:
    """Train and score one classifier per config with :mod:`utils.classification` (QLoRA by default).

    Each run: ``load_classifier(model_id, ..., method, rank, alpha, target_modules, seed)`` then
    ``train_and_evaluate`` (same data, budget and optimizer for all). Adapters are saved under
    ``output_dir/<variant>-r<rank>-s<seed>``.

    Returns:
        one row per config: the config plus ``accuracy``, ``macro_f1``, ``trainable_params``,
        ``total_params``, ``adapter_bytes`` (on disk), ``seconds`` (training wall time),
        ``peak_bytes`` and ``model_bytes`` (see ``RunResult``), ``loss_history`` (the logged training losses)
        and ``failed`` (:func:`failed_to_train`: diverged or stalled; such a run is reported, not ranked).
    """
    import gc
    from pathlib import Path

    from utils import classification as C
    from utils.progress import progress_bar

    names = C.label_names(dataset)
    id2label = dict(enumerate(names))
    for targets in {json.dumps(cfg["targets"]) for cfg in configs}:  # fail now, not after an hour of runs
        check_targets_exist(model_id, json.loads(targets))
    rows = []
    for cfg in progress_bar(configs, desc="ablation runs"):
        model, tokenizer = C.load_classifier(model_id, len(names), method, rank=cfg["rank"], alpha=cfg["alpha"],
                                             target_modules=cfg["targets"], use_rslora=cfg.get("use_rslora", False),
                                             seed=cfg["seed"], id2label=id2label)
        slug = "".join(ch if ch.isalnum() else "-" for ch in cfg["variant"])
        result = C.train_and_evaluate(model, tokenizer, dataset, epochs=epochs, lr=lr, batch_size=batch_size,
                                      max_length=max_length, seed=cfg["seed"],
                                      output_dir=Path(output_dir) / f"{slug}-r{cfg['rank']}-s{cfg['seed']}")
        rows.append({**cfg, "targets": cfg["targets"] if isinstance(cfg["targets"], str) else "+".join(cfg["targets"]),
                     "accuracy": result.accuracy, "macro_f1": result.macro_f1,
                     "trainable_params": result.trainable_params, "total_params": result.total_params,
                     "adapter_bytes": result.adapter_bytes, "seconds": result.seconds,
                     "peak_bytes": result.peak_bytes, "model_bytes": getattr(result, "model_bytes", None),
                     "loss_history": result.loss_history, "failed": failed_to_train(result.loss_history)})
        del model, tokenizer
        gc.collect()
    return rows
