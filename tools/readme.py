"""README.md's and benchmarks/README.md's measured figures, generated from committed records: never typed by hand.

A block between ``<!-- begin: NAME -->`` and ``<!-- end: NAME -->`` in either file is the template
``tools/templates/NAME.md`` (Markdown, the words) filled with numbers from ``results/`` (the functions below compute
them; they hold no sentences). What a block states as a finding is checked on the records by
``tests/test_findings.py``; ``tests/test_readme.py`` fails when a block differs from what its records render and when a
measured-looking number is typed into README.md outside the blocks. The records:

- ``course_runs/smoke_course.json``: the key figures of one ``./run.sh course`` in the smoke profile, with date,
  commit and CPU, written by ``python -m tools.readme record`` from that run's output folder;
- ``course_runs/suite_runs.jsonl``: one line per measured ``./run.sh test``, appended by ``python -m tools.readme suite``;
- the benchmark runs, each a folder ``results/<date>_<name>/`` with its ``record.json(l)`` and README
  (``benchmarks/README.md`` lists them).

As a command:
Keep the measured figures of README.md and benchmarks/README.md generated (above).

    ./run.sh course && python -m tools.readme record    # results/course_runs/smoke_course.json from outputs/
    python -m tools.readme suite --seconds 409 --passed 483 [--note "emulated, no avx512_bf16"]
    python -m tools.readme render                       # rewrite the generated blocks of both files
    python -m tools.readme check                        # exit 1 if a block is not what the records give
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

import jinja2

from tools import troubleshooting
from utils.cli import make_parser
from utils.paths import REPO_ROOT, RESULTS_DIR, committed_result

README = REPO_ROOT / "README.md"
BENCHMARKS_README = REPO_ROOT / "benchmarks" / "README.md"
DOCUMENTS = (README, BENCHMARKS_README)  # the files with generated blocks
TEMPLATES = Path(__file__).parent / "templates"  # one Markdown template per block
COURSE_RECORD = RESULTS_DIR / "course_runs" / "smoke_course.json"
SUITE_RECORD = RESULTS_DIR / "course_runs" / "suite_runs.jsonl"
BLOCK = re.compile(r"(<!-- begin: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)

ON_GPU = " (on a CUDA GPU; see the file's header for the machine)"
REGENERATE = {  # results/ record -> the command that writes it again
    "course_runs/smoke_course.json": "./run.sh course && python -m tools.readme record",
    "course_runs/suite_runs.jsonl": "python -m tools.readme suite --seconds S --passed N",
    "2026-11-23_phi2_shaped_gpu/record.json": "python benchmarks/phi2_shaped_gpu.py" + ON_GPU,
    "2026-12-07_levers_gpu/record.json": "python benchmarks/levers_gpu.py --model <folder> --out <record.json>" + ON_GPU,
    "2026-11-23_notebooks_on_gpu/record.json": "python benchmarks/notebooks_on_gpu.py --t4" + ON_GPU,
    "2026-11-23_notebooks_on_gpu/README.md": "python benchmarks/notebooks_on_gpu.py --t4" + ON_GPU,
    "2026-11-23_multi_gpu/record.json": "the command in its 'regenerate' field",
    "2026-12-06_qa_real_smollm2/record.json": "python benchmarks/qa_real_data.py --out results/<date>_qa_real_smollm2",
    "2026-12-06_sentiment_curve/record.json": "the command in its README (python benchmarks/classification_curve.py)",
}
SPEED_RUN = "python benchmarks/train_speed.py --out results/<date>_train_speed_squad" + ON_GPU  # writes record.jsonl


def regenerate(name: str) -> str:
    """The command that writes results/<name> again."""
    return SPEED_RUN if "_train_speed_" in name else REGENERATE.get(name, "the command that wrote it")


class MissingFigure(ValueError):
    """A record lacks a key a block needs (not a LookupError, so that a template's lookup does not swallow it)."""


class Record(dict):
    """A committed record: a missing key is an error that names the file, the key and the command that rewrites it."""

    def __init__(self, data: dict[str, Any], source: str, path: tuple[str, ...] = ()):
        super().__init__(data)
        self.source, self.path = source, path

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            where = "/".join((*self.path, str(key)))
            raise MissingFigure(f"results/{self.source} has no {where!r}: write it again with {regenerate(self.source)}")
        value = super().__getitem__(key)
        return Record(value, self.source, (*self.path, str(key))) if isinstance(value, dict) else value


# --- recording a smoke course run ------------------------------------------------------------------------------

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

    qa_train = load("04_qa_training")
    if qa_train.get("profile") != "smoke":
        raise ValueError(f"the run in {output_dir} used the {qa_train.get('profile')!r} profile; the README's figures are smoke's.")
    qa_eval, ablation = load("05_qa_evaluation"), load("03_lora_rank_ablation")
    return {**machine(), "notebook_seconds": times,
            "qa_training": {"first_loss": qa_train["losses"][0], "last_loss": qa_train["losses"][-1],
                            "train_seconds": qa_train["train_seconds"], "steps": len(qa_train["losses"])},
            "qa_evaluation": {"few_shot": qa_eval["few_shot"], "sets": {
                                  name: {"questions": qa_eval["eval_sets"][name]["questions"], **qa_eval["summary"][name]["f1"]}
                                  for name in qa_eval["summary"]},
                              "verdicts": qa_eval["verdicts"],
                              "forgetting": {k: qa_eval["general_text_perplexity"][k] for k in ("passages", "tuning", "nf4")}},
            "ablation": _ablation_summary(ablation),
            "quantization": quantization_summary(load("01_quantization_visualized"), load("02_nf4_vs_int4")),
            "classification": classification_summary(load("06_classification"))}


def _ablation_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Notebook 03's runs, per configuration: accuracy mean and std over the seeds that trained, and how many failed."""
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


def quantization_summary(nb01: dict[str, Any], nb02: dict[str, Any]) -> dict[str, Any]:
    """What the README quotes of notebooks 01 and 02 (their output JSON files), the sweep reduced to its findings."""
    mse = {(r["weights"], r["method"], r["blocksize"]): r["mse"] for r in nb02["sweep"]}
    bits = {(r["method"], r["blocksize"]): r["bits"] for r in nb02["sweep"]}
    inputs = sorted({w for w, _, _ in mse})
    sizes = sorted({b for _, _, b in mse})
    asym_wins = {w: [b for b in sizes if mse[w, "int4_asym", b] < mse[w, "nf4", b]] for w in inputs}
    gaussian = nb02["gaussian_mse_at_blocksize"]
    requantized = nb02["requantizing_q4_1"]
    return {
        "01": {"model": nb01["model"], "layer": nb01["layer"],
               "share_on_3_central_levels": nb01["per_tensor_share_on_3_central_levels"],
               "outlier_error_ratio": nb01["outlier_mse_ratio"], "code_entropy_bits": nb01["code_entropy_bits"],
               "packed_bytes": math.prod(nb01["shape"]) // 2,
               "packed_bytes_equal_bitsandbytes": nb01["packed_bytes_equal_bitsandbytes"],
               "bits_per_weight": nb01["bits_per_weight"]},
        "02": {"model": nb02["model"], "inputs": inputs, "block_sizes": sizes,
               "nf4_below_symmetric_everywhere": all(mse[w, "nf4", b] < min(mse[w, "int4", b], mse[w, "fp4", b])
                                                     for w in inputs for b in sizes),
               "asym_int4_below_nf4_at": asym_wins,
               "asym_int4_stores_more_bits_there": all(bits["int4_asym", b] > bits["nf4", b]
                                                       for b in sum(asym_wins.values(), [])),
               "blocksize": nb02["blocksize"], "gaussian_int4_over_nf4_mse": gaussian["int4"] / gaussian["nf4"],
               "output_rel_error": {m: e["rel_error"] for m, e in nb02["output_effect"].items() if m != "float"},
               "q4_1_vs_nf4": nb02["q4_1_vs_nf4"], "requantizing_perplexity": requantized["perplexity"],
               "requantized": {name: {"mse": r["mse"], "sqnr_db": r["sqnr_db"]}
                               for name, r in requantized["requantized"].items()}},
    }


def classification_summary(nb06: dict[str, Any]) -> dict[str, Any]:
    """What the README quotes of notebook 06 (its output JSON file): the live slice's macro-F1 per method over the
    seeds and its verdict against TF-IDF."""
    return {"model": nb06["model"], "decoder": nb06["decoder"], "data": nb06["data"], "train_rows": nb06["train_rows"],
            "epochs": nb06["epochs"], "seeds": len(nb06["seeds"]), "best": nb06["best"], "verdict": nb06["verdict"],
            "baseline_macro_f1": nb06["majority_baseline"]["macro_f1"], "tfidf_macro_f1": nb06["tfidf_baseline"]["macro_f1"],
            "methods": {name: {"mean": m["macro_f1"], "std": m["macro_f1_std"], "trainable": m["trainable_params"],
                               "seeds": int(m["seeds"])} for name, m in nb06["methods"].items()}}


# --- reading the committed records ------------------------------------------------------------------------------

def _text(name: str) -> str:
    path = RESULTS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: write it again with {regenerate(name)}")
    return path.read_text()


def _json(name: str) -> Record:
    """results/<name>, a JSON file (dated or not: a dated record is read with :func:`_dated`)."""
    return Record(json.loads(_text(name)), name)


def _dated(name: str) -> Record:
    """results/<date>_<name>/record.json(l) with its date, by ``utils.paths.committed_result``."""
    _text(name)
    try:
        return Record(committed_result(name.split("/")[0]), name)
    except ValueError as e:
        raise ValueError(f"{e} (or write it again with {regenerate(name)})") from e


def _number(cell: str) -> float:
    match = re.search(r"-?\d[\d,]*(?:\.\d+)?", cell)
    if not match:
        raise ValueError(f"no number in table cell {cell!r}")
    return float(match.group().replace(",", ""))


def markdown_table(name: str) -> Record:
    """The first table of results/<name>: ``columns`` (header cells), ``rows`` (first cell -> {column: cell}), and
    ``measured`` from its ``Date: YYYY-MM-DD`` line; ``text`` is the whole file."""
    text = _text(name)
    date = re.search(r"Date: (\d{4}-\d{2}-\d{2})", text)
    lines = [line for line in text.splitlines() if line.startswith("|")]
    if not date or len(lines) < 3:
        raise ValueError(f"results/{name} needs a 'Date: YYYY-MM-DD' line and a table: write it again with {regenerate(name)}")
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return Record({"measured": date.group(1), "text": text, "columns": cells[0],
                   "rows": {row[0]: dict(zip(cells[0], row, strict=True)) for row in cells[2:]}}, name)


def column(table: dict[str, Any], row: str, prefix: str) -> str:
    """The cell of ``row`` in the first column whose header starts with ``prefix``."""
    name = next((c for c in table["columns"] if c.startswith(prefix)), None)
    if name is None:
        raise MissingFigure(f"results/{getattr(table, 'source', '?')} has no column starting with {prefix!r}")
    return table["rows"][row][name]


def _seconds(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)\s*(s|ms|us)", value.strip())
    if not match:
        raise ValueError(f"not a profiler time: {value!r}")
    return float(match.group(1)) * {"s": 1.0, "ms": 1e-3, "us": 1e-6}[match.group(2)]


def profile_table(name: str) -> Record:
    """torch.profiler's tables in results/<name>: the configuration, its steps, the wall seconds (``None`` in
    profiles written before the script recorded them), the self CPU and CUDA totals (s), and per operation (its
    name, as printed, possibly cut) its columns as printed."""
    text = _text(name)
    head = re.match(r"(\S+): (\d+) steps(?: in ([\d.]+) s wall)?", text)
    totals = dict(re.findall(r"Self (CPU|CUDA) time total: (\S+)", text))
    if not head or set(totals) != {"CPU", "CUDA"}:
        raise ValueError(f"results/{name} is not a profile written by benchmarks/train_speed.py: write it again with "
                         f"{regenerate(name)}")
    header: list[str] = []
    ops: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        parts = re.split(r"\s{2,}", line.strip())
        if parts[0] == "Name":
            header = parts
        elif header and len(parts) == len(header) and not parts[0].startswith("-"):
            ops.setdefault(parts[0], dict(zip(header, parts, strict=True)))
    return Record({"config": head.group(1), "steps": int(head.group(2)),
                   "wall_s": float(head.group(3)) if head.group(3) else None, "cpu_total_s": _seconds(totals["CPU"]),
                   "cuda_total_s": _seconds(totals["CUDA"]), "ops": ops}, name)


def op(profile: dict[str, Any], prefix: str, name: str) -> float:
    """Column ``name`` of the profiled operation whose name starts with ``prefix``: seconds, or a share for a %."""
    row = next((r for n, r in profile["ops"].items() if n.startswith(prefix)), None)
    if row is None or name not in row:
        raise MissingFigure(f"results/{getattr(profile, 'source', '2026-11-23_train_speed_toy_run2/profile_course_profiled.txt')} has no {name!r} for an "
                            f"operation {prefix!r}...")
    value = row[name]
    return float(value.rstrip("%")) / 100 if value.endswith("%") else _seconds(value)


def worst_case_estimate(answer_share: float) -> dict[str, Any]:
    """``utils.memory.estimate`` for the full profile's pass with every example at its maximum length (computed,
    not measured): what notebook 04 needs at most on a Phi-2-shaped model."""
    from utils.memory import full_profile_phi2

    predicted, shape = full_profile_phi2(answer_share)
    return {"batch": shape["batch"], "max_length": shape["max_length"], "row_length": shape["row_length"],
            "gib": predicted.gib}


def load_records() -> dict[str, Any]:
    """Every record the generated blocks are rendered from."""
    course = _json("course_runs/smoke_course.json")
    suite = [json.loads(line) for line in _text("course_runs/suite_runs.jsonl").splitlines() if line.strip()]
    phi2 = _dated("2026-11-23_phi2_shaped_gpu/record.json")
    scaling = _dated("2026-11-23_multi_gpu/record.json")
    return {"course": course, "suite": suite, "phi2": phi2,
            "phi2_notebooks": _dated("2026-11-23_notebooks_on_gpu/record.json"),
            "notebooks_h100": markdown_table("2026-11-23_notebooks_on_gpu/README.md"),
            "squad": {**{run: _dated(f"2026-11-30_train_speed_squad_run{run}/record.jsonl") for run in "AEF"},
                      **{run: _dated(f"2026-12-07_train_speed_squad_run{run}/record.jsonl") for run in "GHJLM"}},
            "levers_gpu": _dated("2026-12-07_levers_gpu/record.json"),
            "squad_profiles": {"course": _text("2026-11-30_train_speed_squad_runF/profile_course_profiled.txt"),
                               "before": _text("2026-11-30_train_speed_squad_runB/profile_before_profiled.txt")},
            "scaling": scaling,
            "scaling_runs": {int(n): _json(f) for n, f in scaling["runs"].items()},
            "estimate": worst_case_estimate(phi2["data"]["answer_token_share"]),
            "qa_real": _dated("2026-12-06_qa_real_smollm2/record.json"),
            "curve": _dated("2026-12-06_sentiment_curve/record.json")}


# --- the blocks: numbers from the records, words in tools/templates/<block>.md --------------------------------------

def _rates(run: dict[str, Any]) -> dict[str, float]:
    """Effective tokens/s of each configuration of a benchmark run that has timings."""
    return {name: r["effective_tokens_per_s"] for name, r in run["runs"].items() if "effective_tokens_per_s" in r}


def _pairs(tps: dict[str, float], pairs: list[tuple[str, str]]) -> list[float]:
    """Relative gain of the second configuration of each pair over the first (pairs timed back to back)."""
    return [tps[b] / tps[a] - 1 for a, b in pairs]


def slow_steps(row: dict[str, Any]) -> int:
    """Timed steps of a result row that took over 1.5x its median (``step_s`` lists warm-up steps first)."""
    timed = row["step_s"][row["warmup_steps"]:]
    return sum(t > 1.5 * statistics.median(timed) for t in timed)


def kernel_shares(profile_text: str) -> dict[str, float]:
    """The per-kernel-class shares of GPU time in a profile written by benchmarks/train_speed.py."""
    shares = {m.group(1): float(m.group(2)) / 100
              for m in re.finditer(r"^\| ([^|]+?) \| [\d.]+ \| (\d+)% \|$", profile_text, flags=re.M)}
    if not shares:
        raise MissingFigure("a train_speed profile_*.txt has no kernel-class table")
    return shares


def course_times(course: dict[str, Any]) -> dict[str, Any]:
    t = course["notebook_seconds"]
    return {"course": course, "times": sorted(t.items()), "total_min": sum(t.values()) / 60}


def gpu_memory(phi2: dict[str, Any], notebooks: dict[str, Any], worst: dict[str, Any]) -> dict[str, Any]:
    """The course map's memory column: each notebook's GPU memory in the full profile."""
    return {"phi2": phi2, "notebooks": notebooks, "worst": worst,
            "device": phi2["environment"]["device"].removeprefix("cuda: ").split(",")[0],
            "w16": phi2["build_and_load_4bit"]["storage_bf16_gib"], "w4": phi2["build_and_load_4bit"]["storage_4bit_gib"],
            "peak": _number(column(notebooks, "bf16", "peak GiB, measured")),
            "generate": phi2["evaluation"]["tuned_4bit"]["peak_gib"], "merged": phi2["evaluation"]["merged_bf16"]["peak_gib"]}


def smoke_quantization(course: dict[str, Any]) -> dict[str, Any]:
    """Notebooks 01 and 02's figures in the smoke profile."""
    q1, q2 = course["quantization"]["01"], course["quantization"]["02"]
    asym = {w: b for w, b in q2["asym_int4_below_nf4_at"].items() if b}
    q41 = q2["q4_1_vs_nf4"]["Q4_1 (block 32)"]
    same = next(k for k, v in q2["q4_1_vs_nf4"].items() if k.startswith("NF4") and v["bits per weight"] == q41["bits per weight"])
    return {"course": course, "q1": q1, "q2": q2, "asym": asym, "asym_sizes": sorted(set(sum(asym.values(), []))),
            "q41": q41, "same": same.removeprefix("NF4 ").strip("()"), "nf4_same": q2["q4_1_vs_nf4"][same]["SQNR gaussian (dB)"],
            "ppl": list(q2["requantizing_perplexity"].values()), "again": q2["requantized"]["Q4_1 again"],
            "nf4_again": q2["requantized"]["NF4 (block 64)"]}


def smoke_ablation(course: dict[str, Any]) -> dict[str, Any]:
    a = course["ablation"]
    return {"a": a, "seeds": sorted({c["seeds"] for c in a["configs"].values()})}


def smoke_figures(course: dict[str, Any]) -> dict[str, Any]:
    ev = course["qa_evaluation"]
    return {"course": course, "train": course["qa_training"], "ev": ev, "forgetting": ev["forgetting"],
            "sets": [{"name": name, "questions": s["questions"], "z": s["zero-shot base"], "f": s["few-shot base"],
                      "t": s["tuned"], "verdict": ev["verdicts"][name]} for name, s in ev["sets"].items()]}


def qa_real_data(run: dict[str, Any]) -> dict[str, Any]:
    """The committed QLoRA run on Disfl-QA's real passages (benchmarks/qa_real_data.py), three ways over seeds."""
    from utils.evaluation.qa import three_way_verdicts

    f1, settings = run["summary"]["f1"], run["settings"]
    return {"run": run, "f1": f1, "em": run["summary"]["exact_match"], "verdicts": three_way_verdicts(f1),
            "settings": settings, "passes": settings["max_steps"] * settings["batch_size"] / run["train_questions"],
            "ways": ("zero-shot base", "few-shot base", "tuned")}


def gpu_qa(phi2: dict[str, Any], notebooks04: dict[str, Any], table: dict[str, Any]) -> dict[str, Any]:
    """Notebooks 04 and 05's memory levers and run on the GPU."""
    steps, examples = map(int, re.search(r"(\d+) steps of (\d+)", next(c for c in table["columns"]
                                                                         if c.startswith("training"))).groups())
    return {"phi2": phi2, "notebooks04": notebooks04, "table": table, "run": notebooks04["04_bf16"],
            "device": phi2["environment"]["device"].removeprefix("cuda: ").split(",")[0], "steps": steps,
            "examples": examples, "seconds": _number(column(table, "bf16", "training")),
            "step_s": _number(column(table, "bf16", "s per step")),
            "peak": _number(column(table, "bf16", "peak GiB, measured")),
            "predicted": _number(column(table, "bf16", "peak GiB, `utils"))}


def multi_gpu(scaling: dict[str, Any], runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Data-parallel training: examples/s on 1 and on N GPUs (``2026-11-23_multi_gpu/record.json`` names the runs)."""
    rate = {n: r["steps"] * r["batch_size"] * r["world_size"] / r["seconds"] for n, r in runs.items()}
    n = max(runs)
    return {"scaling": scaling, "n": n, "rate": rate, "speedup": rate[n] / rate[1], "run": runs[n]}


def train_speed(squad: dict[str, dict[str, Any]], profiles: dict[str, str]) -> dict[str, Any]:
    """The realistic-length runs: notebook 04's default against the baselines a user would pick (run F), what was
    tried and not kept and the cold fp16 steps (run E), the levers one at a time (run A). The findings the template
    states are tested on the records in tests/test_findings.py."""
    a, e, f = squad["A"], squad["E"], squad["F"]
    tps, tps_e = _rates(f), _rates(e)
    cold = {name: e["runs"][name] for name in ("cold_bf16", "cold_fp16", "cold_fp16_no_cudnn")}
    cold_profile = profile_table("2026-11-30_train_speed_squad_runE/profile_cold_fp16_profiled.txt")
    fwd, bwd = "aten::_cudnn_attention_forward", "aten::_cudnn_attention_backward"
    return {"A": a, "E": e, "F": f, "meta": f["environment"], "tps": tps, "tps_e": tps_e,
            "lean": lean_lora_gains(f), "liger": liger_gains(e), "second_call": unsloth_call_default(e),
            "unsloth": e["runs"]["unsloth"], "cold": cold, "slow": {name: slow_steps(r) for name, r in cold.items()},
            "cudnn_host": op(cold_profile, fwd, "Self CPU") + op(cold_profile, bwd, "Self CPU"),
            "cold_wall": cold_profile["wall_s"], "cudnn_fwd_ms": op(cold_profile, fwd, "CPU time avg") * 1e3,
            "cudnn_bwd_ms": op(cold_profile, bwd, "CPU time avg") * 1e3,
            "shares": kernel_shares(profiles["course"]), "before_shares": kernel_shares(profiles["before"])}


def lean_lora_gains(f: dict[str, Any]) -> list[float]:
    """Run F: LoRA added in one pass against peft's own forward, in the two back-to-back pairs."""
    return _pairs(_rates(f), [("course_peft_lora", "course"), ("course_peft_lora_again", "course_again")])


def liger_gains(e: dict[str, Any]) -> list[float]:
    """Run E: Liger's LayerNorm against the default, in each back-to-back pair."""
    return _pairs(_rates(e), [("course", "course_liger_ln"), ("ab_course_1", "ab_liger_ln_1"),
                              ("ab_course_2", "ab_liger_ln_2")])


def fused_lora_gains(g: dict[str, Any], h: dict[str, Any]) -> list[float]:
    """Runs G and H: the 4-bit + LoRA layer as one autograd function against the one-pass addition (the previous
    default), in run G's two back-to-back pairs and run H's pair."""
    return [*_pairs(_rates(g), [("course", "course_fused"), ("course_b", "course_fused_b")]),
            *_pairs(_rates(h), [("course_lean", "course")])]


def unsloth_call_default(e: dict[str, Any]) -> float:
    """Run E: the default's tokens/s in the device call that also timed Unsloth (its two A/B rows' mean)."""
    tps = _rates(e)
    return statistics.mean(tps[x] for x in ("ab_course_1", "ab_course_2"))


def speed_levers(squad: dict[str, dict[str, Any]], phi2: dict[str, Any], notebooks04: dict[str, Any],
                 levers: dict[str, Any]) -> dict[str, Any]:
    """benchmarks/README.md's account of notebook 04's speed settings, each figure from the run that measured it
    (``levers``: the GPU check of issue 32's levers, results/2026-12-07_levers_gpu/record.json)."""
    a, e, f = (squad[k]["runs"] for k in "AEF")
    errors = [r["estimate_gib"] / r["peak_gib"] - 1 for r in f.values()
              if r.get("estimate_gib") and r.get("trainer") == "hf" and r.get("backend") == "bnb"]
    longest = int(re.search(r"max (\d+)", squad["A"]["environment"]["lengths"]).group(1))
    nb = notebooks04["04_bf16"]
    return {"A": a, "E": e, "F": f, "G": squad["G"]["runs"], "H": squad["H"]["runs"], "J": squad["J"]["runs"],
            "L": squad["L"]["runs"], "M": squad["M"]["runs"], "tps_a": _rates(squad["A"]), "tps_j": _rates(squad["J"]),
            "tps_l": _rates(squad["L"]), "tps_m": _rates(squad["M"]), "levers": levers,
            "tps_f": _rates(squad["F"]), "tps_h": _rates(squad["H"]), "lean": lean_lora_gains(squad["F"]),
            "fused": fused_lora_gains(squad["G"], squad["H"]), "longest": longest,
            "cross_pairs": math.floor(100 * (1 - longest / a["before"]["real_tokens_per_step"])),
            "unsloth_vs_default": e["unsloth"]["effective_tokens_per_s"] / unsloth_call_default(squad["E"]),
            "notebooks04": notebooks04, "load": phi2["build_and_load_4bit"], "activations": nb["activations"],
            "optimizer": nb["optimizer_memory"], "tokens": nb["packed_vs_padded_tokens"][0],
            "estimate_errors": (min(errors), max(errors))}


def smoke_classification(course: dict[str, Any]) -> dict[str, Any]:
    return {"course": course, "c": course["classification"]}


def classification_curve(run: dict[str, Any]) -> dict[str, Any]:
    """The committed learning curve of notebook 06 (benchmarks/classification_curve.py)."""
    from utils.experiments.learning_curve import out_of_domain_rows

    summary = run["summary"]
    ood = run.get("out_of_domain") or {}
    return {"run": run, "sizes": sorted({r["n_train"] for r in summary}),
            "labels": list(dict.fromkeys(r["label"] for r in summary)),
            "cell": {f"{r['label']}|{r['n_train']}": r for r in summary}, "cross": run["crossover"],
            "ood": ood, "ood_rows": out_of_domain_rows(ood) if ood else [],
            "again": run.get("out_of_domain_models") or {}}


def render_blocks(records: dict[str, Any]) -> dict[str, str]:
    """The text of every generated block of README.md and benchmarks/README.md, from the records
    (:func:`load_records`), each through its template ``tools/templates/<block>.md``."""
    course, squad = records["course"], records["squad"]
    values = {
        "gpu-memory": gpu_memory(records["phi2"], records["notebooks_h100"], records["estimate"]),
        "course-times": course_times(course),
        "smoke-quantization": smoke_quantization(course),
        "smoke-ablation": smoke_ablation(course),
        "smoke-figures": smoke_figures(course),
        "qa-real-data": qa_real_data(records["qa_real"]),
        "gpu-qa": gpu_qa(records["phi2"], records["phi2_notebooks"], records["notebooks_h100"]),
        "multi-gpu": multi_gpu(records["scaling"], records["scaling_runs"]),
        "train-speed": train_speed(squad, records["squad_profiles"]),
        "speed-levers": speed_levers(squad, records["phi2"], records["phi2_notebooks"], records["levers_gpu"]),
        "smoke-classification": smoke_classification(course),
        "classification-curve": classification_curve(records["curve"]),
        "suite-runs": {"runs": records["suite"]},
    }
    blocks = {name: template(name).render(**v) for name, v in values.items()}
    blocks["troubleshooting"] = troubleshooting.table()  # each case run now: the messages as the code writes them
    return blocks


def template(name: str) -> jinja2.Template:
    """``tools/templates/<name>.md``: Markdown with the record's numbers as ``{{ ... }}`` (``|f(spec)`` formats one)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["f"] = format
    return env.get_template(f"{name}.md")


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


def main(argv: list[str] | None = None) -> None:
    parser = make_parser("tools.readme", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    record = sub.add_parser("record", help="record the key figures of a smoke course run")
    record.add_argument("--output", default=str(REPO_ROOT / "outputs"), help="the course run's output folder")
    suite = sub.add_parser("suite", help="append one measured ./run.sh test to results/course_runs/suite_runs.jsonl")
    suite.add_argument("--seconds", type=float, required=True, help="the suite's wall time (run.sh prints it)")
    suite.add_argument("--passed", type=int, required=True, help="tests passed")
    suite.add_argument("--note", default="", help="anything else about the machine, e.g. an emulated CPU")
    suite.add_argument("--commit", help="the commit measured (default: HEAD)")
    suite.add_argument("--without-avx512-bf16", action="store_true",
                       help="the run emulated a CPU without avx512_bf16 (README: Tests)")
    sub.add_parser("render", help="rewrite the generated blocks of README.md and benchmarks/README.md from results/")
    sub.add_parser("check", help="exit 1 if a generated block differs from what results/ gives")
    args = parser.parse_args(argv)
    if args.command == "record":
        times_file = Path(args.output) / "course_times.json"
        if not times_file.is_file():
            raise SystemExit(f"{times_file} is missing: run the course first (./run.sh course).")
        times = json.loads(times_file.read_text())
        if len(times) < len(list((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))):
            raise SystemExit(f"{times_file} covers notebooks {sorted(times)} only: record a run of the whole course.")
        COURSE_RECORD.write_text(json.dumps(record_course(Path(args.output), times), indent=1) + "\n")
        print(f"wrote {COURSE_RECORD}; now run: python -m tools.readme render")
    elif args.command == "suite":
        if args.seconds <= 0 or args.passed <= 0:
            raise SystemExit("--seconds and --passed must be positive: copy them from ./run.sh test's last lines.")
        line = {**machine(), "passed": args.passed, "seconds": args.seconds, "note": args.note}
        line["commit"] = args.commit or line["commit"]
        line["avx512_bf16"] = line["avx512_bf16"] and not args.without_avx512_bf16
        with SUITE_RECORD.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"appended to {SUITE_RECORD}; now run: python -m tools.readme render")
    else:
        blocks = render_blocks(load_records())
        stale = []
        for document in DOCUMENTS:
            text = document.read_text()
            new = render(text, blocks)
            if args.command == "render":
                document.write_text(new)
                print(f"rendered {len(block_names(new))} blocks into {document.relative_to(REPO_ROOT)}")
            elif new != text:
                stale.append(str(document.relative_to(REPO_ROOT)))
        if stale:
            raise SystemExit(f"the generated blocks of {', '.join(stale)} are out of date: python -m tools.readme render")

if __name__ == "__main__":
    main()
