"""The README's measured figures, generated: never typed by hand.

A block of the README between ``<!-- begin: NAME -->`` and ``<!-- end: NAME -->`` is rendered from a committed
record in ``results/``:

- ``smoke_course.json``: the key figures of one ``./run.sh course`` in the smoke profile (each notebook's time,
  notebook 04's loss, notebook 05's held-out F1 over seeds and its forgetting check), with date, commit and CPU,
  written by ``python -m utils.cli.readme record`` from that run's output folder;
- ``suite_runs.jsonl``: one line per measured ``./run.sh test`` (commit, date, CPU, tests passed, seconds),
  appended by ``python -m utils.cli.readme suite --seconds S --passed N``.

``python -m utils.cli.readme render`` rewrites the blocks; ``tests/test_readme.py`` fails when a block differs
from what its record renders, so a figure in those blocks changes only with its measurement.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from utils.report import REPO_ROOT, RESULTS_DIR

README = REPO_ROOT / "README.md"
COURSE_RECORD = RESULTS_DIR / "smoke_course.json"
SUITE_RECORD = RESULTS_DIR / "suite_runs.jsonl"
BLOCK = re.compile(r"(<!-- begin: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)


def machine() -> dict[str, Any]:
    """Date, commit and CPU of this run: the context every recorded figure carries."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                 capture_output=True, text=True, check=True).stdout.strip()
        commit += " + uncommitted changes" if changed else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else []
    return {"date": datetime.date.today().isoformat(), "commit": commit, "cores": os.cpu_count(),
            "avx512_bf16": "avx512_bf16" in flags}


def record_course(output_dir: Path, times: dict[str, float]) -> dict[str, Any]:
    """The key figures of a smoke course run in ``output_dir`` (its notebooks' JSON files) and the notebook times."""
    def load(name: str) -> dict[str, Any]:
        path = Path(output_dir) / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run the whole course first (./run.sh course).")
        return json.loads(path.read_text())

    qa_train, qa_eval, ablation = load("04_qa_training"), load("05_qa_evaluation"), load("03_lora_rank_ablation")
    if qa_train.get("profile") != "smoke":
        raise ValueError(f"the run in {output_dir} used the {qa_train.get('profile')!r} profile; the README's figures are smoke's.")
    return {**machine(), "notebook_seconds": times,
            "qa_training": {"first_loss": qa_train["losses"][0], "last_loss": qa_train["losses"][-1],
                            "train_seconds": qa_train["train_seconds"], "steps": len(qa_train["losses"])},
            "qa_evaluation": {"questions": qa_eval["base"]["n"], "base_f1": qa_eval["base"]["f1"],
                              "gain": qa_eval["gain_over_seeds"], "seeds": len(qa_eval["seeds"]),
                              "general_text_change": qa_eval["general_text_perplexity"]["change"]},
            "ablation": _ablation_summary(ablation)}


def _ablation_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Notebook 03's runs, per configuration: accuracy mean and std over the seeds that trained, and how many failed."""
    import statistics

    configs: dict[str, dict[str, Any]] = {}
    for run in result["runs"]:
        entry = configs.setdefault(f"{run['variant']}, r={run['rank']}", {"accuracy": [], "failed": 0, "seeds": 0})
        entry["seeds"] += 1
        if run["failed"]:
            entry["failed"] += 1
        else:
            entry["accuracy"].append(run["accuracy"])
    return {"train_size": result["train_size"], "baseline": result["baseline"]["accuracy"],
            "placement": result["placement"], "rank_matters": result["rank_matters"],
            "configs": {name: {"mean": statistics.fmean(e["accuracy"]) if e["accuracy"] else None,
                               "std": statistics.stdev(e["accuracy"]) if len(e["accuracy"]) > 1 else 0.0,
                               "failed": e["failed"], "seeds": e["seeds"]} for name, e in configs.items()}}


def _cpu(run: dict[str, Any]) -> str:
    return f"{run['cores']} cores, " + ("with" if run["avx512_bf16"] else "without") + " `avx512_bf16`"


def render_blocks(course: dict[str, Any], suite_runs: list[dict[str, Any]]) -> dict[str, str]:
    """The text of every generated block, from the records."""
    t = course["notebook_seconds"]
    train, ev = course["qa_training"], course["qa_evaluation"]
    gain = ev["gain"]
    change = ev["general_text_change"]
    blocks = {
        "course-times": ("CPU times (smoke, measured): " + ", ".join(f"{n} {s:.0f} s" for n, s in sorted(t.items()))
                         + f"; {sum(t.values()) / 60:.1f} min in all, from `./run.sh course` on {course['date']} "
                         f"(commit {course['commit']}, {_cpu(course)}).\n"),
        "smoke-figures": (
            f"From `./run.sh course` ({course['date']}, commit {course['commit']}, {_cpu(course)}): the answer loss "
            f"falls {train['first_loss']:.2f} → {train['last_loss']:.2f} in {train['train_seconds']:.0f} s of training "
            f"({train['steps']} logged steps); on {ev['questions']} **held-out** questions F1 rises from "
            f"{ev['base_f1']:.1f} (the base model) to {gain['mean']:.1f} ± {gain['std']:.1f} over {ev['seeds']} training "
            f"seeds, a gain of {gain['gain_in_std']:.0f} seed standard deviations (a cell asserts more than 3, and that "
            f"every seed beats the base); the perplexity of general text (not QA) "
            f"{'rises' if change > 0 else 'falls'} {abs(change):.1%}, the price of the adapter outside its task.\n"),
        "smoke-ablation": _render_ablation(course["ablation"]),
        "suite-runs": ("| date | commit | CPU | `./run.sh test` |\n|---|---|---|---|\n" + "".join(
            f"| {r['date']} | {r['commit']} | {_cpu(r)}{' ' + r['note'] if r.get('note') else ''} | "
            f"{r['passed']} passed in {r['seconds']:.0f} s |\n" for r in suite_runs)),
    }
    return blocks


def _render_ablation(a: dict[str, Any]) -> str:
    parts = [f"{name}: " + (f"{c['mean']:.2f} ± {c['std']:.2f}" if c["mean"] is not None else "no seed trained")
             + (f" ({c['failed']} of {c['seeds']} seeds failed)" if c["failed"] else "") for name, c in a["configs"].items()]
    return (f"Smoke finding (MiniLM, {a['train_size']} training tickets, every configuration over its seeds; accuracy, "
            f"majority baseline {a['baseline']:.2f}): " + "; ".join(parts) + ". Across the main line's ranks the gap is "
            + ("larger than" if a["rank_matters"] else "within") + " the seed spread. At an equal parameter budget: "
            + "; ".join(f"{k}, {v}" for k, v in a["placement"].items()) + ".\n")


def load_records() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    course = json.loads(COURSE_RECORD.read_text())
    suite = [json.loads(line) for line in SUITE_RECORD.read_text().splitlines() if line.strip()]
    return course, suite


def render(text: str, blocks: dict[str, str]) -> str:
    """``text`` with every generated block replaced; an unknown block name is an error."""
    def body(match: re.Match) -> str:
        name = match.group("name")
        if name not in blocks:
            raise KeyError(f"README block {name!r} has no renderer; known: {sorted(blocks)}")
        return match.group(1) + blocks[name] + match.group(4)

    return BLOCK.sub(body, text)


def block_names(text: str) -> list[str]:
    return [m.group("name") for m in BLOCK.finditer(text)]
