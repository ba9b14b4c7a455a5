"""Notebook 06's comparison as a learning curve: every method, trained on more and more labelled rows, against
TF-IDF + logistic regression, with its settings chosen on a validation split.

The protocol (the same live in the notebook and in ``benchmarks/classification_curve.py``, whose committed
record the notebook plots):

1. :func:`curve_data` keeps one ``validation`` and one ``test`` split and takes *nested* stratified subsets of the
   training rows, one per size (the 100 rows are among the 1,000): a point differs from the next only by the
   rows added.
2. At each size every :class:`Method` trains once per learning rate of its grid and seed, for the same number of
   epochs (the same compute budget: every method sees the same rows, as often, in the same batches). After
   every epoch the run is scored on ``validation``; the best epoch is the one kept (``clf.train_and_evaluate``).
3. :func:`choose_settings` picks, per method and size, the learning rate with the best *mean validation*
   macro-F1 over seeds; only those runs' test scores are reported (:func:`summarize`). TF-IDF's ``C`` is chosen
   on the same validation split (``clf.tfidf_baseline``). The test split never chooses anything.
4. :func:`crossover` says at each size whether the best fine-tuned method beats TF-IDF by more than twice its
   seed spread (``utils.evaluation.seeds.verdict_against``), and where it first does.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from utils import classification as clf
from utils.errors import input_error
from utils.evaluation.seeds import compare_over_seeds, mean_std, seed_verdict, verdict_against
from utils.paths import move_aside
from utils.progress import progress_bar


@dataclass(frozen=True)
class Method:
    """One line of the curve: ``method`` (a ``clf.METHODS`` key) on ``model_id``, trained at each of ``lrs``."""

    label: str  # how tables and plots name it, e.g. "full" or "qlora · SmolLM2-135M-Instruct"
    model_id: str
    method: str
    lrs: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.method not in clf.METHODS:
            raise input_error(f"Method({self.label!r}).method={self.method!r}", f"is not one of {list(clf.METHODS)}",
                              "name one of those methods")
        if (not isinstance(self.lrs, tuple) or not self.lrs
                or any(isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf
                       for lr in self.lrs)):
            raise input_error(f"Method({self.label!r}).lrs={self.lrs!r}", "expected one or more positive learning "
                              "rates", "give e.g. lrs=(1e-4, 3e-4)")


def curve_data(data: datasets.DatasetDict, sizes: list[int], seed: int = 0) -> dict[int, datasets.DatasetDict]:
    """``{size: DatasetDict(train=<size nested rows>, validation, test)}`` from ``data`` (``train``,
    ``validation``, ``test``; see ``clf.hold_out_validation``). A size of 0 (or the train split's length) means
    all training rows.

    Raises:
        InputError: ``data`` has no validation split; a size that is negative, not a whole number, larger than the
            training split or smaller than the number of classes; sizes not in increasing order.
    """
    if not {"train", "validation", "test"} <= set(data):
        raise input_error("curve_data(data)", f"needs train, validation and test splits, got {list(data)}",
                          "split a validation set off with clf.hold_out_validation(data, size)")
    n_train = len(data["train"])
    resolved = [n_train if n == 0 else n for n in sizes]
    classes = len(set(data["train"]["label"]))
    for given, n in zip(sizes, resolved, strict=True):
        if isinstance(given, bool) or not isinstance(given, (int, np.integer)) or not classes <= n <= n_train:
            raise input_error(f"size {given!r}", f"must be a whole number from {classes} to the {n_train} training "
                              "rows (0: all of them)", "use sizes such as [100, 1000, 0]")
    if not resolved or resolved != sorted(set(resolved)):
        raise input_error(f"sizes={sizes!r}", "must be distinct and increasing (0, all rows, last)",
                          "list them from the smallest, e.g. [100, 1000, 0]")
    picked = clf.nested_subsets(list(data["train"]["label"]), resolved, seed)
    return {n: datasets.DatasetDict({"train": data["train"].select(picked[n]), "validation": data["validation"],
                                     "test": data["test"]}) for n in resolved}


def train_runs(data: datasets.DatasetDict, methods: list[Method], seeds: list[int], *, epochs: float,
               batch_size: int, max_length: int, run_root: str | Path, optimizer: str = "paged_adamw_8bit",
               rank: int = 8, alpha: float = 16, last_n: int = 2, desc: str = "runs",
               done: dict[tuple, dict] | None = None,
               on_run: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train every method at every learning rate of its grid with every seed on ``data`` (one curve point).

    Args:
        data: ``train``, ``validation`` and ``test``; the epoch kept is the best on ``validation``.
        methods, seeds: what runs; each run is saved in ``run_root/n<rows>/<label>_lr<lr>_seed<seed>`` (a new
            folder: one left there by a run that stopped before ``on_run`` logged it is renamed
            ``<name>.old-<time>``, never deleted).
        epochs, batch_size, max_length, optimizer: the budget every method shares.
        rank, alpha, last_n: LoRA's rank and alpha (``lora``/``qlora``) and ``last_n``'s block count.
        done: rows of earlier runs keyed by ``(label, lr, seed, n_train)``, returned as they are instead of
            training again (a resumed benchmark).
        on_run: called with each new run's row as soon as it is done (a benchmark logs it to disk).

    Returns:
        One row per run: ``label, model, method, lr, seed, n_train``, the test ``accuracy`` and ``macro_f1``,
        ``validation_macro_f1`` (of the kept epoch), ``best_epoch``, ``seconds`` (training, validation excluded),
        ``peak_bytes``, ``trainable_params``, ``model_bytes``, ``adapter_bytes`` and ``run_dir``.
    """
    names = clf.label_names(data)
    id2label = dict(enumerate(names))
    n_train = len(data["train"])
    jobs = [(m, lr, seed) for m in methods for lr in m.lrs for seed in seeds]
    rows = []
    for m, lr, seed in progress_bar(jobs, desc=desc):
        key = (m.label, float(lr), int(seed), n_train)
        if done and key in done:
            rows.append(done[key])
            continue
        model, tokenizer = clf.load_classifier(m.model_id, len(names), m.method, rank=rank, alpha=alpha,
                                               last_n=last_n, seed=seed, id2label=id2label)
        slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in m.label.replace(" · ", "_"))
        run_dir = Path(run_root) / f"n{n_train}" / f"{slug}_lr{lr:g}_seed{seed}"
        if run_dir.exists():  # a run that stopped before it was logged (``done`` has every finished one): kept aside
            move_aside(run_dir)
        result = clf.train_and_evaluate(model, tokenizer, data, epochs=epochs, lr=lr, batch_size=batch_size,
                                        max_length=max_length, seed=seed, output_dir=run_dir, optimizer=optimizer)
        rows.append({"label": m.label, "model": m.model_id, "method": m.method, "lr": float(lr), "seed": int(seed),
                     "n_train": n_train, "accuracy": result.accuracy, "macro_f1": result.macro_f1,
                     "validation_macro_f1": max(result.validation_history), "best_epoch": result.best_epoch,
                     "validation_history": result.validation_history, "seconds": result.seconds,
                     "peak_bytes": result.peak_bytes, "trainable_params": result.trainable_params,
                     "model_bytes": result.model_bytes, "adapter_bytes": result.adapter_bytes,
                     "run_dir": str(run_dir)})
        if on_run is not None:
            on_run(rows[-1])
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


def choose_settings(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs at each (method, size)'s chosen learning rate: the one with the best mean validation macro-F1
    over seeds (ties: the smaller rate). Test scores play no part."""
    groups: dict[tuple, dict[float, list[dict]]] = {}
    for row in runs:
        groups.setdefault((row["label"], row["n_train"]), {}).setdefault(row["lr"], []).append(row)
    chosen = []
    for by_lr in groups.values():
        lr = max(sorted(by_lr), key=lambda r: np.mean([x["validation_macro_f1"] for x in by_lr[r]]))
        chosen.extend(by_lr[lr])
    return chosen


def summarize(chosen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, size) of the chosen runs: mean and standard deviation over seeds of the test
    ``macro_f1`` and ``accuracy`` and of ``seconds``; the learning rate, ``seeds``, the largest ``peak_bytes``,
    ``trainable_params``, ``model_bytes`` and the mean kept epoch."""
    groups: dict[tuple, list[dict]] = {}
    for row in chosen:
        groups.setdefault((row["label"], row["n_train"]), []).append(row)
    out = []
    for (label, n), rows in groups.items():
        f1, f1_std = mean_std([r["macro_f1"] for r in rows])
        acc, acc_std = mean_std([r["accuracy"] for r in rows])
        sec, sec_std = mean_std([r["seconds"] for r in rows])
        out.append({"label": label, "model": rows[0]["model"], "method": rows[0]["method"], "n_train": n,
                    "lr": rows[0]["lr"], "seeds": len(rows), "macro_f1": f1, "macro_f1_std": f1_std,
                    "accuracy": acc, "accuracy_std": acc_std, "seconds": sec, "seconds_std": sec_std,
                    "validation_macro_f1": float(np.mean([r["validation_macro_f1"] for r in rows])),
                    "best_epoch": float(np.mean([r["best_epoch"] for r in rows])),
                    "peak_bytes": max(r["peak_bytes"] for r in rows),
                    "trainable_params": rows[0]["trainable_params"], "model_bytes": rows[0]["model_bytes"]})
    return out


def crossover(summary: list[dict[str, Any]], tfidf: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Where fine-tuning overtakes TF-IDF + logistic regression.

    Args:
        summary: :func:`summarize`'s rows.
        tfidf: ``{n_train: clf.tfidf_baseline(...)}`` for the same sizes.

    Returns:
        ``{"points": [...], "first_beats": n or None}``: per size (increasing) the best fine-tuned method by
        mean test macro-F1 among those run with 2 or more seeds (``left_out``: the others), its mean ± std,
        TF-IDF's score, the gap and the verdict (``"beats"``, ``"is level with"``, ``"falls short of"``: the gap
        against twice the seed spread; ``"not comparable"`` when no method has 2 seeds), the method's mean
        training seconds; ``first_beats`` is the smallest size from which on the best method beats TF-IDF at
        every larger size too.
    """
    points = []
    for n in sorted(tfidf):
        rows = [r for r in summary if r["n_train"] == n]
        if not rows:
            raise input_error(f"crossover: size {n}", "has a TF-IDF score but no fine-tuned runs",
                              "summarize the runs of every size first")
        spread = [r for r in rows if r["seeds"] >= 2]  # a single seed has no spread to judge a gap against
        best = max(spread or rows, key=lambda r: r["macro_f1"])
        std = best["macro_f1_std"]
        verdict = ("not comparable" if np.isnan(std) else verdict_against(best["macro_f1"], std, tfidf[n]["macro_f1"]))
        points.append({"n_train": n, "best": best["label"], "macro_f1": best["macro_f1"], "macro_f1_std": std,
                       "seeds": best["seeds"], "tfidf_macro_f1": tfidf[n]["macro_f1"],
                       "gap": best["macro_f1"] - tfidf[n]["macro_f1"], "verdict": verdict,
                       "seconds": best["seconds"], "tfidf_seconds": tfidf[n]["seconds"],
                       "left_out": sorted(r["label"] for r in rows if r["seeds"] < 2)})
    first = None
    for i in range(len(points)):
        if all(p["verdict"] == "beats" for p in points[i:]):
            first = points[i]["n_train"]
            break
    return {"points": points, "first_beats": first}


def method_verdicts(summary: list[dict[str, Any]], model: str, challengers: list[str],
                    incumbents: list[str]) -> list[dict[str, Any]]:
    """Each challenger method against each incumbent on the same ``model``, at every training size, by the seed rule
    (``utils.evaluation.seeds.seed_verdict``: a gap counts beyond twice the larger seed std). Notebook 06 asks the
    seed document's claim this way: do LoRA/QLoRA (challengers) beat full and last-N fine-tuning (incumbents)?

    Args:
        summary: :func:`summarize`'s rows (``label``, ``model``, ``n_train``, ``macro_f1``, ``macro_f1_std``).
    Returns:
        one row per (size, challenger, incumbent), sizes increasing: ``n_train``, ``challenger``, ``incumbent``,
        ``verdict`` (``"higher"``, ``"lower"``, ``"within seed noise"``, ``"not comparable"``: the challenger's
        macro-F1 against the incumbent's) and ``words`` (the same, as ``compare_over_seeds`` says it).
    Raises:
        InputError: a method has no row of ``model`` at some size.
    """
    rows = {(r["label"], r["n_train"]): r for r in summary if r["model"] == model}
    out = []
    for n in sorted({r["n_train"] for r in summary if r["model"] == model}):
        for a, b in [(c, i) for c in challengers for i in incumbents]:
            missing = [m for m in (a, b) if (m, n) not in rows]
            if missing:
                raise input_error(f"method_verdicts: {missing} at {n} rows", f"has no summary row of {model}",
                                  "name methods the curve ran on that model (its labels)")
            x, y = rows[(a, n)], rows[(b, n)]
            out.append({"n_train": n, "challenger": a, "incumbent": b,
                        "verdict": seed_verdict(x["macro_f1"], x["macro_f1_std"], y["macro_f1"], y["macro_f1_std"]),
                        "words": compare_over_seeds(a, x["macro_f1"], x["macro_f1_std"], b, y["macro_f1"],
                                                    y["macro_f1_std"])})
    return out


def out_of_domain_rows(ood: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A record's out-of-domain scores as rows: per set and method, its mean ± std macro-F1 over seeds, TF-IDF's
    on the same sentences and the verdict (``verdict_against``: the gap against twice the seed spread).

    Args:
        ood: ``{set: {"rows": n, "tfidf": {"macro_f1": ...}, method: {"macro_f1", "macro_f1_std", ...}}}``.
    """
    return [{"set": domain, "sentences": scores["rows"], "method": name, "macro_f1": v["macro_f1"],
             "macro_f1_std": v["macro_f1_std"], "tfidf_macro_f1": scores["tfidf"]["macro_f1"],
             "verdict": verdict_against(v["macro_f1"], v["macro_f1_std"], scores["tfidf"]["macro_f1"])}
            for domain, scores in ood.items() for name, v in scores.items() if name not in ("rows", "tfidf")]


def method_table(methods: list[Method]) -> list[dict[str, Any]]:
    """The methods as plain dicts (for a record)."""
    return [asdict(m) for m in methods]
