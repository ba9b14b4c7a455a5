"""Re-run a notebook over a grid of parameters with papermill, and collect its results in one table.

    python -m utils.cli.sweep notebooks/03_lora_rank_ablation.ipynb --ranks 4 8
    python -m utils.cli.sweep notebooks/03_lora_rank_ablation.ipynb --grid LORA_RANKS '[4]' '[8, 16]' \\
        --grid SEEDS '[0]' '[1]' -p EPOCHS 3 --output outputs/sweep_r4_r8

Each grid point is one papermill run of the notebook, with the point's values (plus every
``-p NAME VALUE``) injected into its ``parameters`` cell; several ``--grid`` options multiply.
``--ranks 4 8`` is shorthand for ``--grid LORA_RANKS '[4]' '[8]'``. Values are Python literals.

Output folder (``--output``, default ``outputs/sweep``)::

    runs/<run-id>/notebooks/<notebook>.ipynb   the executed notebook (figures, tables, asserts)
    runs/<run-id>/<results>.json               what the notebook saved (utils.report.save_results)
    sweep_results.csv / sweep_results.json     every row of every run, with the run's parameters
    sweep_summary.csv                          mean, std and count over seeds per configuration
    sweep_plot.png                             score vs rank (log axis), mean +- std over seeds

A run whose results JSON already exists is skipped (``--force`` re-runs it). A failed run is
reported and the others go on; the command exits 1 at the end if any run failed.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
import re
import statistics
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_METRICS = ("accuracy", "macro_f1")
# columns that tell configurations apart (a row's "configuration" = these, minus the seed)
CONFIG_KEYS = ("variant", "rank", "alpha", "targets")


# ----------------------------------------------------------------------------------------------
# grid
# ----------------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
        raise ValueError(f"parameter names are the notebook's UPPER_CASE constants (e.g. LORA_RANKS), got {name!r}.")
    return name


def expand_grid(grid: dict[str, Sequence[Any]], fixed: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every combination of the grid's values (cartesian product, in order), each with ``fixed`` added.

    >>> expand_grid({"LORA_RANKS": [[4], [8]], "SEEDS": [[0], [1]]}, {"EPOCHS": 2})[1]
    {'EPOCHS': 2, 'LORA_RANKS': [4], 'SEEDS': [1]}
    """
    fixed = dict(fixed or {})
    for name in list(grid) + list(fixed):
        _check_name(name)
    overlap = sorted(set(grid) & set(fixed))
    if overlap:
        raise ValueError(f"{overlap} given both as a grid and as a fixed parameter (-p); choose one.")
    empty = [name for name, values in grid.items() if not values]
    if empty:
        raise ValueError(f"grid parameter(s) {empty} have no values; give at least one, e.g. --grid LORA_RANKS '[4]'.")
    names = list(grid)
    return [{**fixed, **dict(zip(names, combo, strict=True))} for combo in itertools.product(*grid.values())]


def run_id(parameters: dict[str, Any]) -> str:
    """A readable, file-system-safe folder name for one run, e.g. ``EPOCHS-2_LORA_RANKS-4``."""
    if not parameters:
        return "defaults"
    parts = []
    for name in sorted(parameters):
        value = json.dumps(parameters[name], sort_keys=True) if not isinstance(parameters[name], str) \
            else parameters[name]
        value = re.sub(r"[^A-Za-z0-9.+-]+", "-", value).strip("-") or "x"
        parts.append(f"{name}-{value}")
    name = "_".join(parts)
    return name if len(name) <= 120 else name[:100] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]


# ----------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: the runs executed, skipped and failed (run-id -> message), and the table."""

    output_dir: Path
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def _default_runner(notebook: Path, output_dir: Path, parameters: dict[str, Any]) -> Path:
    from utils.notebooks import run_notebook

    previous = os.environ.get("QLORA_OUTPUT_DIR")
    try:
        return run_notebook(notebook, output_dir, parameters)
    finally:  # run_notebook points the process at the run's folder; put it back
        if previous is None:
            os.environ.pop("QLORA_OUTPUT_DIR", None)
        else:
            os.environ["QLORA_OUTPUT_DIR"] = previous


def rows_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows a notebook saved: its ``"runs"`` list if it has one, else its scalar fields as one row."""
    runs = results.get("runs")
    if isinstance(runs, list) and all(isinstance(r, dict) for r in runs):
        return [dict(r) for r in runs]
    return [{k: v for k, v in results.items() if isinstance(v, (int, float, str, bool)) or v is None}]


def run_sweep(notebook: str | Path, points: list[dict[str, Any]], output_dir: str | Path,
              results_name: str | None = None, force: bool = False,
              runner: Callable[[Path, Path, dict[str, Any]], Path] | None = None,
              progress: Callable[[str], None] | None = None) -> SweepResult:
    """Execute ``notebook`` once per parameter point, then combine, summarise and plot.

    Args:
        notebook: the ``.ipynb`` to run (it must save ``<results_name>.json`` with utils.report).
        points: one parameters dict per run (see :func:`expand_grid`).
        output_dir: the sweep's folder (layout in the module docstring).
        results_name: the name the notebook passes to ``save_results`` (default: its file stem).
        force: re-run points whose results already exist.
        runner: ``(notebook, run_dir, parameters) -> executed path``; papermill by default.
        progress: called with one line per run (e.g. ``print``).

    Returns:
        :class:`SweepResult`; a failing run is recorded in ``failed`` and does not stop the others.
    """
    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"no notebook at {notebook}; e.g. notebooks/03_lora_rank_ablation.ipynb")
    if not points:
        raise ValueError("no runs to do: give at least one grid point.")
    out = Path(output_dir).resolve()
    results_name = results_name or notebook.stem
    runner = runner or _default_runner
    say = progress or (lambda line: None)
    sweep = SweepResult(output_dir=out)
    ids = [run_id(p) for p in points]
    if len(set(ids)) != len(ids):
        raise ValueError("two grid points give the same run; remove the duplicate values.")
    for i, (rid, parameters) in enumerate(zip(ids, points, strict=True), start=1):
        run_dir = out / "runs" / rid
        results_file = run_dir / f"{results_name}.json"
        if results_file.is_file() and not force:
            sweep.skipped.append(rid)
            say(f"[{i}/{len(points)}] {rid}: results exist, skipped (--force re-runs)")
            continue
        results_file.unlink(missing_ok=True)  # a stale file must not pass for this run's results
        say(f"[{i}/{len(points)}] {rid}: running ...")
        try:
            runner(notebook, run_dir, parameters)
            if not results_file.is_file():
                raise FileNotFoundError(f"the notebook ran but wrote no {results_file.name} "
                                        f"(does it call save_results({results_name!r}, ...)?)")
            sweep.executed.append(rid)
            say(f"[{i}/{len(points)}] {rid}: done")
        except Exception as err:  # noqa: BLE001 - a failed run must not lose the finished ones
            message = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
            sweep.failed[rid] = message
            (run_dir / "error.txt").parent.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.txt").write_text("".join(traceback.format_exception(err)))
            say(f"[{i}/{len(points)}] {rid}: FAILED ({message}); see {run_dir / 'error.txt'}")
    baseline = None
    for rid, parameters in zip(ids, points, strict=True):
        results_file = out / "runs" / rid / f"{results_name}.json"
        if rid in sweep.failed or not results_file.is_file():
            continue
        results = json.loads(results_file.read_text())
        if isinstance(results.get("baseline"), dict) and baseline is None:
            baseline = results["baseline"].get(DEFAULT_METRICS[0])
        for row in rows_of(results):
            sweep.rows.append({"run": rid, **{f"param_{k}": _cell(v) for k, v in parameters.items()}, **row})
    sweep.files = write_outputs(sweep.rows, out, failed=sweep.failed, baseline=baseline)
    return sweep


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)


# ----------------------------------------------------------------------------------------------
# tables and plots (also used by notebook 03)
# ----------------------------------------------------------------------------------------------


def config_key(row: dict[str, Any], keys: Iterable[str] = CONFIG_KEYS) -> tuple:
    return tuple(_cell(row.get(k)) for k in keys)


def summarise(rows: list[dict[str, Any]], metrics: Sequence[str] = DEFAULT_METRICS,
              keys: Sequence[str] = CONFIG_KEYS) -> list[dict[str, Any]]:
    """Mean, sample std (0 for one seed) and count of each metric per configuration (rows differing only by seed).

    Returns one dict per configuration, sorted by variant then rank: the ``keys`` columns,
    ``n_seeds``, ``<metric>_mean``, ``<metric>_std``, plus ``trainable_params`` and ``adapter_bytes``
    (equal across seeds) when present.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(config_key(row, keys), []).append(row)
    table = []
    for key, members in groups.items():
        entry = dict(zip(keys, key, strict=True))
        entry["n_seeds"] = len(members)
        for metric in metrics:
            values = [float(m[metric]) for m in members if m.get(metric) is not None]
            entry[f"{metric}_mean"] = statistics.fmean(values) if values else math.nan
            entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        for extra in ("trainable_params", "adapter_bytes", "seconds", "peak_bytes"):
            values = [m[extra] for m in members if m.get(extra) is not None]
            if values:
                entry[extra] = values[0] if extra in ("trainable_params", "adapter_bytes") else statistics.fmean(values)
        table.append(entry)
    return sorted(table, key=lambda e: (str(e.get("variant")), e.get("rank") if isinstance(e.get("rank"), (int, float))
                                        else math.inf))


def plot_scores(rows: list[dict[str, Any]], x: str = "rank", metric: str = "accuracy",
                baseline: float | None = None, ax=None, title: str | None = None):
    """Mean +- std (over seeds) of ``metric`` against ``x`` on a log axis, one line per variant; dots are seeds.

    Args:
        x: ``"rank"``, ``"trainable_params"`` or another numeric column :func:`summarise` keeps.
        baseline: drawn as a dashed line (e.g. the majority-class accuracy).
    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4))
    variants = sorted({str(r.get("variant", "")) for r in rows})
    for i, variant in enumerate(variants):
        mine = [r for r in rows if str(r.get("variant", "")) == variant and r.get(x) is not None]
        summary = sorted((e for e in summarise(mine) if e.get(x) is not None), key=lambda e: e[x])
        xs = [e[x] for e in summary]
        means = [e[f"{metric}_mean"] for e in summary]
        stds = [e[f"{metric}_std"] for e in summary]
        color = f"C{i}"
        ax.errorbar(xs, means, yerr=stds, fmt="o-", color=color, capsize=3, label=variant or None)
        ax.scatter([r[x] for r in mine], [r[metric] for r in mine], s=10, color=color, alpha=0.35)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", label=f"majority class ({baseline:.2f})")
    ax.set_xscale("log")
    ranks = sorted({r[x] for r in rows if r.get(x) is not None})
    if x == "rank" and ranks:
        ax.set_xticks(ranks, [str(r) for r in ranks])
        ax.minorticks_off()
    ax.set_xlabel({"rank": "LoRA rank r (log scale)",
                   "trainable_params": "trainable parameters (log scale)"}.get(x, f"{x} (log scale)"))
    ax.set_ylabel(f"test {metric.replace('_', '-')}")
    ax.set_title(title or f"{metric.replace('_', '-')} vs {x.replace('_', ' ')} (mean +- std over seeds)")
    ax.legend(fontsize=8)
    return ax


def write_outputs(rows: list[dict[str, Any]], output_dir: Path, failed: dict[str, str] | None = None,
                  baseline: float | None = None) -> dict[str, Path]:
    """Write the combined table (CSV + JSON), the per-configuration summary and the comparison plot.

    ``baseline``: an accuracy drawn as a dashed line (notebook 03 saves its majority-class baseline).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": output_dir / "sweep_results.json", "csv": output_dir / "sweep_results.csv"}
    files["json"].write_text(json.dumps({"rows": rows, "failed": failed or {}}, indent=2, default=str) + "\n")
    _write_csv(files["csv"], rows)
    if rows:
        files["summary"] = output_dir / "sweep_summary.csv"
        _write_csv(files["summary"], summarise(rows))
        numeric = [r for r in rows if isinstance(r.get("rank"), (int, float))
                   and isinstance(r.get(DEFAULT_METRICS[0]), (int, float))]
        if numeric:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
            plot_scores(numeric, "rank", "accuracy", baseline=baseline, ax=axes[0])
            if all(isinstance(r.get("trainable_params"), (int, float)) for r in numeric):
                plot_scores(numeric, "trainable_params", "accuracy", baseline=baseline, ax=axes[1])
            else:
                plot_scores(numeric, "rank", "macro_f1", ax=axes[1])
            fig.suptitle(f"Sweep: {len({r['run'] for r in rows})} run(s), {len(rows)} trained model(s)")
            fig.tight_layout()
            files["plot"] = output_dir / "sweep_plot.png"
            fig.savefig(files["plot"], dpi=110)
            plt.close(fig)
    return files


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
