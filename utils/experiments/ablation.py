"""The rank ablation of notebook 03: one QLoRA classifier per (variant, rank, seed), trained and scored.

:func:`ablation_configs` lays out the grid, :func:`check_targets_exist` fails fast on a wrong target name
(before a long sweep), :func:`run_ablation` trains and scores each configuration with
:mod:`utils.classification`; ``utils.experiments.sweep`` re-runs the notebook over larger grids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from utils.models.adapters import ALL_LINEAR, check_lora_args


def ablation_configs(ranks: Iterable[int], seeds: Iterable[int], alpha_per_rank: float = 2.0,
                     fixed_alpha: float = 16.0, attention_modules: list[str] | None = None,
                     variant_ranks: Iterable[int] = (), variant_seeds: Iterable[int] | None = None
                     ) -> list[dict]:
    """The runs of a rank ablation, each a dict ``variant, rank, alpha, targets, seed``.

    Main line: every rank x seed on all linear layers with ``alpha = alpha_per_rank * r``. Two
    variants run at those ``variant_ranks`` that are also in ``ranks`` (x ``variant_seeds``):
    ``attention only`` (LoRA on ``attention_modules`` only) and ``fixed alpha`` (``alpha = fixed_alpha``;
    left out at a rank where ``fixed_alpha == alpha_per_rank * r``, which would repeat the main line).

    Raises:
        ValueError: a rank that is not a positive integer, alpha_per_rank/fixed_alpha <= 0, no seeds.
    """
    ranks, seeds = list(ranks), list(seeds)
    if not ranks:
        raise ValueError("ranks is empty: give at least one LoRA rank, e.g. [4, 8].")
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed, e.g. [0].")
    for r in ranks:
        check_lora_args(r, 1.0)
    check_lora_args(1, alpha_per_rank)
    check_lora_args(1, fixed_alpha)
    variant_seeds = seeds if variant_seeds is None else list(variant_seeds)
    main = f"all linear, alpha={alpha_per_rank:g}r"
    configs = [{"variant": main, "rank": r, "alpha": alpha_per_rank * r, "targets": ALL_LINEAR, "seed": s}
               for r in dict.fromkeys(ranks) for s in dict.fromkeys(seeds)]
    for r in [r for r in dict.fromkeys(variant_ranks) if r in ranks]:
        for s in dict.fromkeys(variant_seeds):
            if attention_modules:
                configs.append({"variant": f"attention only, alpha={alpha_per_rank:g}r", "rank": r,
                                "alpha": alpha_per_rank * r, "targets": list(attention_modules), "seed": s})
            if fixed_alpha != alpha_per_rank * r:  # else it is the main line's run again
                configs.append({"variant": f"all linear, alpha={fixed_alpha:g}", "rank": r, "alpha": fixed_alpha,
                                "targets": ALL_LINEAR, "seed": s})
    return configs


def check_targets_exist(model_id: str, target_modules: str | Iterable[str]) -> None:
    """Raise ValueError (listing the linear layers that exist) if a target matches no layer of ``model_id``.

    Builds the model's skeleton on the ``meta`` device (no weights loaded), so it costs a second,
    not a model load: run it before a long sweep instead of failing halfway through.
    """
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from utils.models import resolve_model_path
    from utils.models.adapters import check_target_modules

    config = AutoConfig.from_pretrained(resolve_model_path(model_id))
    with init_empty_weights():
        skeleton = AutoModelForSequenceClassification.from_config(config)
    check_target_modules(skeleton, target_modules if isinstance(target_modules, str) else list(target_modules))


def run_ablation(configs: list[dict], model_id: str, dataset, *, epochs: float, lr: float,  # noqa: ANN001
                 batch_size: int, max_length: int, output_dir, method: str = "qlora") -> list[dict]:
    """Train and score one classifier per config with :mod:`utils.classification` (QLoRA by default).

    Each run: ``load_classifier(model_id, ..., method, rank, alpha, target_modules, seed)`` then
    ``train_and_evaluate`` (same data, budget and optimizer for all). Adapters are saved under
    ``output_dir/<variant>-r<rank>-s<seed>``.

    Returns:
        one row per config: the config plus ``accuracy``, ``macro_f1``, ``trainable_params``,
        ``total_params``, ``adapter_bytes`` (on disk), ``seconds`` (training wall time),
        ``peak_bytes`` and ``model_bytes`` (see ``RunResult``).
    """
    import gc
    from pathlib import Path

    from tqdm.auto import tqdm

    from utils import classification as C

    names = C.label_names(dataset)
    id2label = dict(enumerate(names))
    for targets in {json.dumps(cfg["targets"]) for cfg in configs}:  # fail now, not after an hour of runs
        check_targets_exist(model_id, json.loads(targets))
    rows = []
    for cfg in tqdm(configs, desc="ablation runs"):
        model, tokenizer = C.load_classifier(model_id, len(names), method, rank=cfg["rank"], alpha=cfg["alpha"],
                                             target_modules=cfg["targets"], seed=cfg["seed"], id2label=id2label)
        slug = "".join(ch if ch.isalnum() else "-" for ch in cfg["variant"])
        result = C.train_and_evaluate(model, tokenizer, dataset, epochs=epochs, lr=lr, batch_size=batch_size,
                                      max_length=max_length, seed=cfg["seed"],
                                      output_dir=Path(output_dir) / f"{slug}-r{cfg['rank']}-s{cfg['seed']}")
        rows.append({**cfg, "targets": cfg["targets"] if isinstance(cfg["targets"], str) else "+".join(cfg["targets"]),
                     "accuracy": result.accuracy, "macro_f1": result.macro_f1,
                     "trainable_params": result.trainable_params, "total_params": result.total_params,
                     "adapter_bytes": result.adapter_bytes, "seconds": result.seconds,
                     "peak_bytes": result.peak_bytes, "model_bytes": getattr(result, "model_bytes", None)})
        del model, tokenizer
        gc.collect()
    return rows
