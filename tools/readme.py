"""The README's measured figures, generated: never typed by hand.

A block of the README between ``<!-- begin: NAME -->`` and ``<!-- end: NAME -->`` is rendered from committed
records in ``results/``, and says which file and date each figure comes from:

- ``smoke_course.json``: the key figures of one ``./run.sh course`` in the smoke profile (each notebook's time,
  notebooks 01 and 02's quantization figures, 03's ablation, 04's loss, 05's held-out F1 over seeds and its
  forgetting check, 06's comparison of methods), with date, commit and CPU, written by
  ``python -m tools.readme record`` from that run's output folder;
- ``suite_runs.jsonl``: one line per measured ``./run.sh test`` (commit, date, CPU, tests passed, seconds),
  appended by ``python -m tools.readme suite --seconds S --passed N``;
- GPU runs of a Phi-2-shaped model with random weights (``benchmarks/``): ``gpu_phi2_shaped.json``,
  ``gpu_phi2_shaped_notebooks.json``, the table of ``gpu_notebooks_h100.md``, ``train_speed.jsonl`` (run 3),
  ``train_speed_run2.jsonl``, ``train_speed_run4.jsonl``, the profiler tables of ``train_speed_profile.txt``
  (run 2), and ``train_qa_scaling.json`` with the two runs it names (``train_qa_1gpu.json``, ``train_qa_2gpu.json``).

One function per block renders it from plain dicts; :func:`load_records` reads every record (a missing file or
key is an error naming it and the command that writes it again). ``python -m tools.readme render`` rewrites
the blocks; ``tests/test_readme.py`` fails when a block differs from what its record renders, and when a
measured-looking number is typed into the README outside the blocks.

As a command:
Keep the README's measured figures generated (above).

    ./run.sh course && python -m tools.readme record    # results/smoke_course.json from the run in outputs/
    python -m tools.readme suite --seconds 409 --passed 483 [--note "emulated, no avx512_bf16"]
    python -m tools.readme render                       # rewrite README.md's generated blocks
    python -m tools.readme check                        # exit 1 if README.md is not what the records give

``render`` and ``check`` read every record the blocks quote (``tools.readme.load_records``: the smoke course run,
the suite runs and the committed GPU runs); a missing file or key stops them with the command that writes it.
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

from tools import troubleshooting
from utils.cli import make_parser
from utils.paths import REPO_ROOT, RESULTS_DIR, committed_result

README = REPO_ROOT / "README.md"
COURSE_RECORD = RESULTS_DIR / "smoke_course.json"
SUITE_RECORD = RESULTS_DIR / "suite_runs.jsonl"
BLOCK = re.compile(r"(<!-- begin: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)

ON_GPU = " (on a CUDA GPU; see the file's header for the machine)"
REGENERATE = {  # results/ file -> the command that writes it again
    "smoke_course.json": "./run.sh course && python -m tools.readme record",
    "suite_runs.jsonl": "python -m tools.readme suite --seconds S --passed N",
    "gpu_phi2_shaped.json": "python benchmarks/phi2_shaped_gpu.py" + ON_GPU,
    "gpu_phi2_shaped_notebooks.json": "python benchmarks/notebooks_on_gpu.py --t4" + ON_GPU,
    "gpu_notebooks_h100.md": "python benchmarks/notebooks_on_gpu.py --t4" + ON_GPU,
    "train_speed.jsonl": "python benchmarks/train_speed.py" + ON_GPU,
    "train_speed_run2.jsonl": "python benchmarks/train_speed.py --out results/train_speed_run2" + ON_GPU,
    "train_speed_run4.jsonl": "python benchmarks/train_speed.py --out results/train_speed_run4" + ON_GPU,
    "train_speed_profile.txt": "python benchmarks/train_speed.py --only course_profiled" + ON_GPU,
    "train_speed_squad_runA.jsonl": "python benchmarks/train_speed.py --out results/train_speed_squad_runA" + ON_GPU,
    "train_speed_squad_runE.jsonl": "python benchmarks/train_speed.py --out results/train_speed_squad_runE" + ON_GPU,
    "train_speed_squad_runF.jsonl": "python benchmarks/train_speed.py --out results/train_speed_squad_runF" + ON_GPU,
    "train_speed_toy_runE.jsonl": "python benchmarks/train_speed.py --data toy --out results/train_speed_toy_runE" + ON_GPU,
    "train_speed_squad_profile_cold_fp16.txt": "python benchmarks/train_speed.py --only cold_fp16_profiled" + ON_GPU,
    "2026-12-06_qa_real_smollm2/record.json": "python benchmarks/qa_real_data.py --out results/<date>_qa_real_smollm2",
    "2026-12-06_sentiment_curve/record.json": "the command in its README (python benchmarks/classification_curve.py)",
    "train_qa_scaling.json": "the command in its 'regenerate' field",
    "train_qa_1gpu.json": "the command in train_qa_scaling.json's 'regenerate' field",
    "train_qa_2gpu.json": "the command in train_qa_scaling.json's 'regenerate' field",
}


class MissingFigure(LookupError):
    """A record lacks a key a block needs."""


class Record(dict):
    """A committed record: a missing key is an error that names the file, the key and the command that rewrites it."""

    def __init__(self, data: dict[str, Any], source: str, path: tuple[str, ...] = ()):
        super().__init__(data)
        self.source, self.path = source, path

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            where = "/".join((*self.path, str(key)))
            raise MissingFigure(f"results/{self.source} has no {where!r}: write it again with "
                                f"{REGENERATE.get(self.source, 'the command that wrote it')}")
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
        raise FileNotFoundError(f"{path} is missing: write it again with {REGENERATE.get(name, 'the command that wrote it')}")
    return path.read_text()


def _json(name: str) -> Record:
    """results/<name>, a JSON file (dated or not: a dated record is read with :func:`_dated`)."""
    return Record(json.loads(_text(name)), name)


def _dated(name: str) -> Record:
    """results/<name> (.json, or a benchmark's .jsonl) with its date, by ``utils.paths.committed_result``."""
    _text(name)
    try:
        folder_record = name.endswith("/record.json")  # a run kept as results/<date>_<name>/record.json
        return Record(committed_result(name.split("/")[0] if folder_record else Path(name).stem), name)
    except ValueError as e:
        raise ValueError(f"{e} (or write it again with {REGENERATE.get(name, 'the command that wrote it')})") from e


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
        raise ValueError(f"results/{name} needs a 'Date: YYYY-MM-DD' line and a table: write it again with {REGENERATE[name]}")
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


def profile_table(name: str = "train_speed_profile.txt") -> Record:
    """torch.profiler's tables in results/<name>: the configuration, its steps, the wall seconds (``None`` in
    profiles written before the script recorded them), the self CPU and CUDA totals (s), and per operation (its
    name, as printed, possibly cut) its columns as printed."""
    text = _text(name)
    head = re.match(r"(\S+): (\d+) steps(?: in ([\d.]+) s wall)?", text)
    totals = dict(re.findall(r"Self (CPU|CUDA) time total: (\S+)", text))
    if not head or set(totals) != {"CPU", "CUDA"}:
        raise ValueError(f"results/{name} is not a profile written by benchmarks/train_speed.py: write it again with "
                         f"{REGENERATE[name]}")
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
        raise MissingFigure(f"results/{getattr(profile, 'source', 'train_speed_profile.txt')} has no {name!r} for an "
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
    """Every record the README's blocks are rendered from."""
    course = _json("smoke_course.json")
    suite = [json.loads(line) for line in _text("suite_runs.jsonl").splitlines() if line.strip()]
    phi2 = _dated("gpu_phi2_shaped.json")
    scaling = _dated("train_qa_scaling.json")
    return {"course": course, "suite": suite, "phi2": phi2,
            "phi2_notebooks": _dated("gpu_phi2_shaped_notebooks.json"),
            "notebooks_h100": markdown_table("gpu_notebooks_h100.md"),
            "speed": {run: _dated(f"train_speed{suffix}.jsonl") for run, suffix in (("2", "_run2"), ("3", ""), ("4", "_run4"))},
            "squad": {run: _dated(f"train_speed_squad_run{run}.jsonl") for run in "AEF"},
            "toy": _dated("train_speed_toy_runE.jsonl"),
            "squad_profiles": {name: _text(f"train_speed_squad_profile_{name}.txt")
                               for name in ("before", "course")},
            "profile": profile_table(),
            "scaling": scaling, "scaling_runs": {int(n): _json(f) for n, f in scaling["runs"].items()},
            "estimate": worst_case_estimate(phi2["data"]["answer_token_share"]),
            "qa_real": _dated("2026-12-06_qa_real_smollm2/record.json"),
            "curve": _dated("2026-12-06_sentiment_curve/record.json")}


# --- the blocks -----------------------------------------------------------------------------------------------

def _cpu(run: dict[str, Any]) -> str:
    return f"{run['cores']} cores, " + ("with" if run["avx512_bf16"] else "without") + " `avx512_bf16`"


def _source(name: str, record: dict[str, Any]) -> str:
    return f"`results/{name}`, {record['measured']}"


def _random(text: str) -> str:
    """"random weights" where the record says its model had them."""
    return "random weights" if "random" in text.lower() else "the weights named in the file"


def _span(values: list[int]) -> str:
    return f"{values[0]}–{values[-1]}" if len(values) > 1 else str(values[0])


def render_course_times(course: dict[str, Any]) -> str:
    t = course["notebook_seconds"]
    return ("CPU times (smoke, measured): " + ", ".join(f"{n} {s:.0f} s" for n, s in sorted(t.items()))
            + f"; {sum(t.values()) / 60:.1f} min in all, from `./run.sh course` on {course['date']} "
            f"(commit {course['commit']}, {_cpu(course)}{'; ' + course['note'] if course.get('note') else ''}).\n")


def render_gpu_memory(phi2: dict[str, Any], notebooks: dict[str, Any], worst: dict[str, Any]) -> str:
    """The course map's memory column: each notebook's GPU memory in the full profile, with where it comes from."""
    w16, w4 = phi2["build_and_load_4bit"]["storage_bf16_gib"], phi2["build_and_load_4bit"]["storage_4bit_gib"]
    generate, merged = phi2["evaluation"]["tuned_4bit"]["peak_gib"], phi2["evaluation"]["merged_bf16"]["peak_gib"]
    peak = _number(column(notebooks, "bf16", "peak GiB, measured"))
    bench, nb = _source("gpu_phi2_shaped.json", phi2), _source("gpu_notebooks_h100.md", notebooks)
    rows = [("01", f"{w16 + w4:.1f} GiB: Phi-2 in 16 bit ({w16:.1f} GiB) plus a 4-bit copy ({w4:.1f} GiB)", bench),
            ("02", f"Phi-2 in 16 bit ({w16:.1f} GiB) plus perplexity batches (not measured)", bench),
            ("03", f"not measured; one 4-bit Phi-2 classifier at a time ({w4:.1f} GiB of 4-bit weights, plus training)",
             bench),
            ("04", f"{peak:.2f} GiB, notebook 04's measured peak (before rows of a fixed length); `utils.memory.estimate` "
                   f"predicts {worst['gib']:.1f} GiB for today's default pass of {worst['batch']} rows of "
                   f"{worst['row_length']} tokens in bf16", nb + "; the estimate is computed when the README is rendered"),
            ("05", f"{generate:.1f} GiB for 4-bit + adapter generation, {merged:.1f} GiB with the merged 16-bit copy", bench),
            ("06", f"not measured; LoRA on the 16-bit base holds {w16:.1f} GiB of weights", bench)]
    device = phi2["environment"]["device"].removeprefix("cuda: ").split(",")[0]
    return (f"GPU memory in the full profile, measured on an {device} with a Phi-2-shaped model with "
            f"{_random(phi2['note'])} (memory depends on shapes, not values):\n\n"
            "| # | GPU memory, full profile | from |\n|---|---|---|\n"
            + "".join(f"| {n} | {text} | {src} |\n" for n, text, src in rows))


def render_smoke_quantization(course: dict[str, Any]) -> str:
    """Notebooks 01 and 02's figures in the smoke profile."""
    q1, q2 = course["quantization"]["01"], course["quantization"]["02"]
    ratio, entropy, bits = q1["outlier_error_ratio"], q1["code_entropy_bits"], q1["bits_per_weight"]
    sizes, err = q2["block_sizes"], q2["output_rel_error"]
    asym = {w: b for w, b in q2["asym_int4_below_nf4_at"].items() if b}
    asym_sizes = sorted(set(sum(asym.values(), [])))
    q41 = q2["q4_1_vs_nf4"]["Q4_1 (block 32)"]
    same = next(k for k, v in q2["q4_1_vs_nf4"].items() if k.startswith("NF4") and v["bits per weight"] == q41["bits per weight"])
    nf4_same = q2["q4_1_vs_nf4"][same]["SQNR gaussian (dB)"]
    ppl = list(q2["requantizing_perplexity"].values())
    again, nf4_again = q2["requantized"]["Q4_1 again"], q2["requantized"]["NF4 (block 64)"]
    return (
        f"From `./run.sh course` ({course['date']}, commit {course['commit']}, {_cpu(course)}); the JSON files in "
        "`outputs/` hold every figure of a run.\n\n"
        f"- 01 (`{q1['layer']}`): with one absmax per tensor, {q1['share_on_3_central_levels']:.0%} of a real layer's "
        f"weights land on the 3 levels nearest zero; one planted outlier raises the per-tensor int4 error "
        f"{ratio['per_tensor']:.1f}x but the block-wise error only {ratio['blockwise']:.2f}x; NF4 codes carry "
        f"{entropy['nf4']:.2f} bits of entropy on real weights against int4's {entropy['int4']:.2f}; our packed bytes "
        + ("equal" if q1["packed_bytes_equal_bitsandbytes"] else "differ from")
        + f" bitsandbytes' for all {q1['packed_bytes']:,} bytes of the layer; a real bitsandbytes quant state stores "
        f"{bits['measured_double_quant']:.3f} bits per weight with double quantization, "
        + ("exactly" if bits["measured_double_quant"] == bits["formula_double_quant"] else "not")
        + " the formula 4 + 8/64 + 32/(64·256).\n"
        "- 02: NF4's MSE is below symmetric int4's and FP4's "
        + ("at every" if q2["nf4_below_symmetric_everywhere"] else "not at every")
        + f" block size from {sizes[0]} to {sizes[-1]} on all {len(q2['inputs'])} inputs ({', '.join(q2['inputs'])}; "
        f"Gaussian weights at block {q2['blocksize']}: {q2['gaussian_int4_over_nf4_mse']:.2f}x lower than int4); "
        + (f"asymmetric int4 edges NF4 only at block {_span(asym_sizes)} ("
           + "; ".join(f"{w}: {', '.join(map(str, b))}" for w, b in asym.items()) + ")"
           + (", where it stores more bits per weight" if q2["asym_int4_stores_more_bits_there"] else "")
           if asym else "asymmetric int4 never beats NF4")
        + f"; with every linear layer 4-bit, MiniLM's final hidden states move by {err['nf4']:.0%} (relative error) "
        f"under NF4, {err['int4']:.0%} under int4 and {err['fp4']:.0%} under FP4. GGUF's Q4_1 (SmolLM2's format, "
        f"written out on the page and bit-exact with the `gguf` package) keeps {q41['SQNR gaussian (dB)']:.1f} dB SQNR "
        f"on Gaussian weights at {q41['bits per weight']:g} bits per weight, NF4 with the same storage "
        f"({same.removeprefix('NF4 ').strip('()')}) "
        f"{nf4_same:.1f} dB"
        + (": NF4 wins against symmetric grids, not against an asymmetric one with a float16 minimum"
           if q41["SQNR gaussian (dB)"] > nf4_same else "")
        + ". Re-quantizing SmolLM2's Q4_1 weights with Q4_1 is "
        + ("exact" if again["mse"] == 0 else f"not exact (SQNR {again['sqnr_db']:.1f} dB)")
        + f"; with NF4 it adds a second {nf4_again['sqnr_db']:.1f} dB error and the perplexity on the course text "
        f"{'rises' if ppl[1] > ppl[0] else 'falls'} {ppl[0]:.1f} → {ppl[1]:.1f}.\n")


def render_smoke_ablation(course: dict[str, Any]) -> str:
    a = course["ablation"]
    parts = [f"{name}: " + (f"{c['mean']:.2f} ± {c['std']:.2f}" if c["mean"] is not None else "no seed trained")
             + (f" ({c['failed']} of {c['seeds']} seeds failed)" if c["failed"] else "") for name, c in a["configs"].items()]
    seeds = {c["seeds"] for c in a["configs"].values()}
    over = f"{seeds.pop()} seeds" if len(seeds) == 1 else "its seeds"
    return (f"Smoke finding (MiniLM, {a['train_size']} training tickets, every configuration over {over}; accuracy, "
            f"majority baseline {a['baseline']:.2f}): " + "; ".join(parts) + ". Across the main line's ranks the gap is "
            + ("larger than" if a["rank_matters"] else "within") + " the seed spread. At an equal parameter budget: "
            + "; ".join(f"{k}, {v}" for k, v in a["placement"].items()) + ".\n")


def render_smoke_figures(course: dict[str, Any]) -> str:
    from utils.evaluation.seeds import gap_words

    train, ev = course["qa_training"], course["qa_evaluation"]
    sets = []
    for name, s in ev["sets"].items():
        z, f, t = s["zero-shot base"], s["few-shot base"], s["tuned"]
        verdict = ev["verdicts"][name]
        sets.append(f"on {s['questions']} {'held-out' if name == 'course-qa' else 'real'} **{name}** questions F1 is "
                    f"{z['mean']:.1f} zero-shot, {f['mean']:.1f} ± {f['std']:.1f} few-shot ({ev['few_shot']} worked examples) "
                    f"and {t['mean']:.1f} ± {t['std']:.1f} tuned over {t['seeds']} seeds: the examples "
                    + gap_words(verdict["prompt"], f["mean"] - z["mean"], "raise the base model's F1", "lower it",
                              "change it")
                    + ", and against the few-shot base fine-tuning "
                    + gap_words(verdict["tuning"], t["mean"] - f["mean"], "raises F1", "lowers F1", "changes F1"))
    tuning, nf4 = ev["forgetting"]["tuning"], ev["forgetting"]["nf4"]
    return (f"From `./run.sh course` ({course['date']}, commit {course['commit']}, {_cpu(course)}): the answer loss "
            f"falls {train['first_loss']:.2f} → {train['last_loss']:.2f} in {train['train_seconds']:.0f} s of training "
            f"({train['steps']} logged steps); " + "; ".join(sets) + ". On "
            f"{ev['forgetting']['passages']} Wikipedia paragraphs the adapter changes perplexity by "
            f"{tuning['ratio'] - 1:+.1%} (95% interval over passages {tuning['low'] - 1:+.1%} to {tuning['high'] - 1:+.1%}); "
            f"NF4 storage alone by {nf4['ratio'] - 1:+.1%} ({nf4['low'] - 1:+.1%} to {nf4['high'] - 1:+.1%}).\n")


def render_qa_real_data(run: dict[str, Any]) -> str:
    """The committed QLoRA run on Disfl-QA's real passages (benchmarks/qa_real_data.py), three ways over seeds."""
    from utils.evaluation.qa import three_way_verdicts
    from utils.evaluation.seeds import gap_words

    f1, em = run["summary"]["f1"], run["summary"]["exact_match"]
    verdicts = three_way_verdicts(f1)
    z, f, t = f1["zero-shot base"], f1["few-shot base"], f1["tuned"]
    settings = run["settings"]
    passes = settings["max_steps"] * settings["batch_size"] / run["train_questions"]
    def cell(v: dict[str, Any]) -> str:
        return f"{v['mean']:.1f}" + (f" ± {v['std']:.1f}" if v["seeds"] > 1 else "")

    cells = " | ".join(f"{cell(em[w])} / {cell(f1[w])}" for w in ("zero-shot base", "few-shot base", "tuned"))
    return (f"QLoRA on real text (`results/2026-12-06_qa_real_smollm2/`, {run['measured']}, {_cpu(run['machine'])}, "
            f"`python benchmarks/qa_real_data.py`): SmolLM2-135M-Instruct trained with notebook 04's recipe on all "
            f"{run['train_questions']} Disfl-QA training questions ({settings['max_steps']} steps of "
            f"{settings['batch_size']}, {passes:.2f} passes), {len(run['seeds'])} seeds, scored on all "
            f"{run['eval_questions']} validation questions (other passages, no training answer).\n\n"
            "| | zero-shot base | few-shot base | tuned |\n|---|---|---|---|\n"
            f"| EM / F1 (mean ± seed std) | {cells} |\n\n"
            f"{run['few_shot']} worked examples "
            + gap_words(verdicts["prompt"], f["mean"] - z["mean"],
                        "raise the base model's F1", "lower it", "change it")
            + "; against the few-shot base, fine-tuning "
            + gap_words(verdicts["tuning"], t["mean"] - f["mean"],
                        "raises F1", "lowers F1", "changes F1") + ".\n")


def render_gpu_qa(phi2: dict[str, Any], notebooks04: dict[str, Any], table: dict[str, Any]) -> str:
    """Notebooks 04 and 05's memory levers and run on the GPU."""
    load, saving = phi2["build_and_load_4bit"], phi2["lora_and_memory_savings"]
    run = notebooks04["04_bf16"]
    act = run["activations"]
    steps, examples = map(int, re.search(r"(\d+) steps of (\d+)", next(c for c in table["columns"]
                                                                         if c.startswith("training"))).groups())
    device = phi2["environment"]["device"].removeprefix("cuda: ").split(",")[0]
    return (f"On the lent {device}, a Phi-2-*shaped* model with {_random(phi2['note'])} "
            f"({_source('gpu_phi2_shaped.json', phi2)}; speed and memory only, quality needs real Phi-2 from the Hub): "
            f"weights {load['storage_bf16_gib']:.2f} → {load['storage_4bit_gib']:.2f} GiB in 4-bit, optimizer state "
            f"{saving['adamw32_state_mib']:.0f} → {saving['adamw8bit_state_mib']:.0f} MiB with paged 8-bit AdamW; in "
            f"notebook 04 ({_source('gpu_phi2_shaped_notebooks.json', notebooks04)}) the activations of a "
            f"{run['packed_vs_padded_tokens'][0]}-token batch take {act['saved activations MiB (plain)'] / 1024:.2f} → "
            f"{act['with checkpointing MiB'] / 1024:.2f} GiB with checkpointing. Notebooks 04 and 05 ran end to end in "
            f"the full profile with {examples} examples per pass (before packed rows were rounded up), in bf16 and with "
            f"a T4's fp16 ({_source('gpu_notebooks_h100.md', table)}, {_random(table['text'])}): {steps} steps in "
            f"{_number(column(table, 'bf16', 'training')):.0f} s ({_number(column(table, 'bf16', 's per step')):.2f} s "
            f"per step), peak {_number(column(table, 'bf16', 'peak GiB, measured')):.2f} GiB against "
            f"{_number(column(table, 'bf16', 'peak GiB, `utils')):.2f} GiB predicted.\n")


def render_multi_gpu(scaling: dict[str, Any], runs: dict[int, dict[str, Any]]) -> str:
    """Data-parallel training: examples/s on 1 and on N GPUs (``train_qa_scaling.json`` names the runs)."""
    rate = {n: r["steps"] * r["batch_size"] * r["world_size"] / r["seconds"] for n, r in runs.items()}
    n = max(runs)
    speedup = rate[n] / rate[1]
    r = runs[n]
    return (f"On {n} {scaling['gpu']} GPUs (`results/train_qa_{{1,{n}}}gpu.json`, {scaling['measured']}, date and GPU "
            f"from `results/train_qa_scaling.json`; {'random-weight ' if scaling['random_weights'] else ''}Phi-2 shape, "
            f"`{r['dataset']}`, {r['steps']} steps of {r['batch_size']} examples per GPU, warm-up included): 1 GPU "
            f"{rate[1]:.1f} examples/s, {n} GPUs {rate[n]:.1f} examples/s, **{speedup:.2f}× ({speedup / n:.0%} scaling "
            "efficiency)**.\n")


SPEED_ROWS = {  # the README's rows of each run: configuration -> its name (format fields: the row's settings)
    "3": [("naive", "naive baseline"), ("packed_8x2", "packed, {batch} per pass × {accum} (previous default)"),
          ("packed_16", "packed, {batch} per pass"), ("answer_logits_16", "+ LM head on answer positions only"),
          ("course", "+ {batch} per pass"), ("course_fused_adamw", "same, fused 32-bit AdamW"),
          ("course_64", "same, {batch} per pass"), ("no_checkpointing", "same, no gradient checkpointing"),
          ("t4_fp16_15gib", "same in fp16 under a {memory_cap_gib:.0f} GiB cap (T4-shaped check)")],
    "4": [("naive", "naive baseline"), ("course", "{batch} per pass (as above)"),
          ("course_no_cudnn", "same, PyTorch's memory-efficient attention instead of cuDNN's"),
          ("course_round256", "same, rows padded to a multiple of {round_to} tokens: notebook 04's default")],
}
NOTEBOOK_DEFAULT = ("4", "course_round256")  # the run and row measuring notebook 04's full-profile configuration


def _speed_table(run: dict[str, Any], rows: list[tuple[str, str]], first: str, bold: str = "") -> str:
    naive = run["runs"]["naive"]["effective_tokens_per_s"]
    lines = [f"| {first} | effective tokens/s | vs naive | step (s) | peak GiB | predicted GiB | MFU |",
             "|---|---|---|---|---|---|---|"]
    for config, label in rows:
        r = run["runs"][config]
        # the estimator predicts the course's recipe; TRL's own trainer and loss are not it
        predicted = f"{r['estimate_gib']:.2f}" if r.get("trainer", "hf") == "hf" else "(not ours)"
        cells = [label.format(**r), f"{r['effective_tokens_per_s']:,.0f}", f"{r['effective_tokens_per_s'] / naive:.2f}×",
                 f"{r['median_step_s']:.2f}", f"{r['peak_gib']:.2f}", predicted, f"{r['mfu']:.0%}"]
        if config == bold:
            cells = [f"**{c}**" if i in (0, 1, 2, 4) else c for i, c in enumerate(cells)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


BASELINE_ROWS = [  # what a user would do instead, timed in the same run as the course's default
    ("naive", "naive baseline: each example padded to 512, {batch} per pass × {accum}"),
    ("pad_longest", "padded to the batch's longest example"),
    ("trl_packed", "TRL `SFTTrainer`, `packing=True` (padding-free, {batch} × {row_length}-token rows)")]
SQUAD_ROWS = {  # the README's rows of the SQuAD-length runs
    "A": [*BASELINE_ROWS,
          ("before", "notebook 04 before: {batch} examples in one packed row, answer-only logits"),
          ("before+gelu", "+ one-kernel tanh-GELU"),
          ("before+gelu+cast", "+ 16-bit norm outputs (no fp32 layer internals)"),
          ("before+gelu+cast+d0", "+ LoRA dropout 0"),
          ("rows_1024x8", "+ rows of {row_length} tokens, {batch} per pass (fixed shape)"),
          ("rows_1024x16", "same, {batch} rows per pass"),
          ("rows_512x32", "rows of {row_length}, {batch} per pass")],
    "F": [*BASELINE_ROWS,
          ("course", "notebook 04's default: {batch} rows of {row_length} tokens per pass, fused kernels, 16-bit residual"),
          ("course_peft_lora", "same with peft's own LoRA forward (the default before run F)"),
          ("course_fp16", "notebook 04's default in fp16, the T4 path (own process)"),
          ("t4_fp16_15gib", "same under a {memory_cap_gib:.0f} GiB cap, the T4-shaped check (own process)")],
    "E": [("naive", "naive baseline"),
          ("course", "notebook 04's default then (peft's LoRA forward)"),
          ("course_liger_ln", "same with Liger's LayerNorm kernel"),
          ("course_compile", "same + `torch.compile` (own process)"),
          ("course_torchao_nf4", "same with torchao's NF4 tensor instead of bitsandbytes (second call)")],
}


def _kernel_shares(profile_text: str) -> dict[str, float]:
    """The per-kernel-class shares of GPU time in a profile written by benchmarks/train_speed.py."""
    shares = {m.group(1): float(m.group(2)) / 100
              for m in re.finditer(r"^\| ([^|]+?) \| [\d.]+ \| (\d+)% \|$", profile_text, flags=re.M)}
    if not shares:
        raise MissingFigure("a train_speed_squad_profile_*.txt has no kernel-class table")
    return shares


TOY_ROWS = [*BASELINE_ROWS,
            ("course", "notebook 04's default: {batch} rows of {row_length} tokens per pass")]


def render_train_speed_toy(toy: dict[str, Any]) -> str:
    """Today's default on the course's short toy examples, with the same run's baselines."""
    meta, runs, tps = toy["environment"], toy["runs"], _rates(toy)
    return (f"**On the course's short toy examples**, the default of run E (before LoRA was added in one pass) "
            f"against the same baselines, one process "
            f"([`results/train_speed_toy_runE.md`](results/train_speed_toy_runE.md); {meta['gpu']}, {toy['measured']}, "
            f"random weights, the versions above; data: {meta['lengths']}):\n\n"
            + _speed_table(toy, TOY_ROWS, "configuration", bold="course")
            + f"\nWith examples this short, padding to 512 wastes {runs['naive']['padding_share']:.0%} of the naive "
            f"baseline's work; the default runs at {tps['course'] / tps['naive']:.1f}× naive and "
            f"{tps['course'] / tps['pad_longest']:.1f}× pad_longest ({runs['course']['mfu']:.0%} MFU; "
            f"{runs['course']['padding_share']:.0%} of its rows is filler; the naive baseline again at the process's end: "
            f"{tps['naive_last'] / tps['naive']:.2f}×).\n")


def _slow_steps(row: dict[str, Any]) -> int:
    """Timed steps of a result row that took over 1.5x its median (``step_s`` lists warm-up steps first)."""
    timed = row["step_s"][row["warmup_steps"]:]
    return sum(t > 1.5 * statistics.median(timed) for t in timed)


def _steps(row: dict[str, Any]) -> str:
    """A row's warm-up step times, e.g. '3.2 and 3.1'."""
    return " and ".join(f"{t:.1f}" for t in row["step_s"][:row["warmup_steps"]])


def _pairs(tps: dict[str, float], pairs: list[tuple[str, str]]) -> list[float]:
    """Relative gain of the second configuration of each pair over the first (pairs timed back to back)."""
    return [tps[b] / tps[a] - 1 for a, b in pairs]


def _rates(run: dict[str, Any]) -> dict[str, float]:
    """Effective tokens/s of each configuration of a benchmark run that has timings."""
    return {name: r["effective_tokens_per_s"] for name, r in run["runs"].items() if "effective_tokens_per_s" in r}


def _squad_default(f: dict[str, Any], e: dict[str, Any]) -> str:
    """Run F: notebook 04's default and the baselines in one process, and the LoRA lever's A/B pairs."""
    meta, tps, tps_e = f["environment"], _rates(f), _rates(e)
    course, naive, t4 = f["runs"]["course"], f["runs"]["naive"], f["runs"]["t4_fp16_15gib"]
    lean = _pairs(tps, [("course_peft_lora", "course"), ("course_peft_lora_again", "course_again")])
    if min(lean) <= 0:
        raise MissingFigure(f"results/train_speed_squad_runF.jsonl no longer shows LoRA in one pass winning: {lean}")
    return (f"**At SQuAD's lengths** ({meta['gpu']}, {f['measured']}, random weights; torch {meta['torch']}, "
            f"transformers {meta['transformers']}, peft {meta['peft']}, bitsandbytes {meta['bitsandbytes']}, "
            f"trl {meta['trl']}, liger-kernel {meta['liger_kernel']}, torchao {meta['torchao']}; data: {meta['lengths']}, "
            f"the course's examples lengthened with its own paragraphs to a log-normal of mean "
            f"{meta['distribution']['mean']:.0f} tokens, `benchmarks/lengths.py` says where that comes from; "
            f"{meta['steps']} timed steps after {meta['warmup']} warm-up; N = {meta['matmul_params'] / 1e9:.2f} B, peak "
            f"{meta['peak_tflops']:.0f} TFLOP/s). Run F ([`results/train_speed_squad_runF.md`](results/"
            "train_speed_squad_runF.md)), notebook 04's default and the baselines a user would pick instead, one after "
            "another in one process:\n\n"
            + _speed_table(f, SQUAD_ROWS["F"], "configuration", bold="course")
            + f"\nNotebook 04's full configuration reaches **{course['mfu']:.0%} MFU, "
            f"{tps['course'] / tps['naive']:.1f}× the naive baseline and {tps['course'] / tps['pad_longest']:.1f}× "
            f"pad_longest, at {course['peak_gib']:.2f} vs {naive['peak_gib']:.2f} GiB**, measured in one process. The "
            f"naive baseline drifts: run again at the process's end it ran {tps['naive_last'] / tps['naive']:.2f}× its "
            f"first speed ({tps['course'] / tps['naive_last']:.1f}× against that), and in run E the default was "
            f"{tps_e['course'] / tps_e['naive']:.1f}× naive and {tps_e['course'] / tps_e['pad_longest']:.1f}× "
            "pad_longest. Adding LoRA's output in one pass (`kernels.lean_lora_4bit`, part of `FUSED_KERNELS`) beat "
            f"peft's own forward in both back-to-back pairs ({min(lean):+.1%} and {max(lean):+.1%}). In fp16 the course "
            f"keeps the residual stream in float32 (fp16's range is too small for Phi-2's): {t4['peak_gib']:.2f} GiB "
            f"under the {t4['memory_cap_gib']:.0f} GiB cap, predicted {t4['estimate_gib']:.2f}.\n\n")


def _squad_tried(e: dict[str, Any]) -> str:
    """Run E: the levers measured and not kept (Liger's LayerNorm, torch.compile, torchao), and Unsloth."""
    tps_e, unsloth = _rates(e), e["runs"]["unsloth"]
    liger = _pairs(tps_e, [("course", "course_liger_ln"), ("ab_course_1", "ab_liger_ln_1"), ("ab_course_2", "ab_liger_ln_2")])
    second_call = statistics.mean(tps_e[x] for x in ("ab_course_1", "ab_course_2"))  # the default in Unsloth's call
    if min(liger) <= 0 or tps_e["course_compile"] >= tps_e["course"]:
        raise MissingFigure(f"results/train_speed_squad_runE.jsonl no longer shows what the README says of Liger ({liger}) "
                            "or torch.compile")
    return (f"Tried and not kept (run E, [`results/train_speed_squad_runE.md`](results/train_speed_squad_runE.md), "
            f"{e['measured']}, before the LoRA lever; rows marked *second call* ran on the machine lent again, their "
            "ratios against the first call's naive baseline):\n\n"
            + _speed_table(e, SQUAD_ROWS["E"], "configuration")
            + f"\n**Liger's LayerNorm** won in each of {len(liger)} back-to-back pairs ({min(liger):+.1%} to "
            f"{max(liger):+.1%}, mean {statistics.mean(liger):+.1%}) but needs Triton on a GPU, so the CPU profile that "
            "CI runs could not run the same code, and it would add a dependency pinned against Colab's own torch; it "
            f"stays a benchmark row (`course_liger_ln`). **`torch.compile`** on the fixed-shape rows: "
            f"{tps_e['course_compile'] / tps_e['course']:.2f}× the default. **torchao's NF4** in place of bitsandbytes: "
            f"{tps_e['course_torchao_nf4'] / second_call:.2f}× (against the default in its call). **Unsloth** "
            f"({unsloth['versions']['unsloth']}, with transformers {unsloth['versions']['transformers']}, which it pins; "
            f"second call) ran the same rows at {unsloth['effective_tokens_per_s']:,.0f} tokens/s ({unsloth['mfu']:.0%} "
            f"MFU, {unsloth['peak_gib']:.2f} GiB): {unsloth['effective_tokens_per_s'] / second_call:.2f}× that call's "
            "default, which did not yet add LoRA in one pass.\n\n")


def _squad_fp16(e: dict[str, Any], f: dict[str, Any]) -> str:
    """The fp16 slowdown of the toy-data runs: run E's cold-process rows, their profile, and run F's fp16 row."""
    tps_e, tps = _rates(e), _rates(f)
    cold = {name: e["runs"][name] for name in ("cold_bf16", "cold_fp16", "cold_fp16_no_cudnn")}
    slow = {name: _slow_steps(r) for name, r in cold.items()}
    if not (slow["cold_fp16"] > 0 and slow["cold_bf16"] == slow["cold_fp16_no_cudnn"] == 0):
        raise MissingFigure(f"results/train_speed_squad_runE.jsonl no longer shows only cold fp16 with slow steps: {slow}")
    cold_profile = profile_table("train_speed_squad_profile_cold_fp16.txt")
    wall = cold_profile["wall_s"]
    fwd, bwd = "aten::_cudnn_attention_forward", "aten::_cudnn_attention_backward"
    cudnn_host = op(cold_profile, fwd, "Self CPU") + op(cold_profile, bwd, "Self CPU")
    return ("**The fp16 slowdown of the toy-data runs** (their T4-shaped rows, below) came from cuDNN's attention "
            "planning for shapes it had not seen. Those rows ran first in a fresh process on packed rows whose length "
            "changed every step; repeated in run E (`cold_*`, each first in its own process), fp16's warm-up steps took "
            f"{_steps(cold['cold_fp16'])} s against bf16's {_steps(cold['cold_bf16'])} s, and of the timed steps: bf16 "
            f"{tps_e['cold_bf16']:,.0f} tokens/s with {slow['cold_bf16']} slow steps (over 1.5× the median), fp16 "
            f"{tps_e['cold_fp16']:,.0f} with {slow['cold_fp16']} of {len(cold['cold_fp16']['step_s']) - cold['cold_fp16']['warmup_steps']}, "
            f"fp16 without cuDNN's attention {tps_e['cold_fp16_no_cudnn']:,.0f} with {slow['cold_fp16_no_cudnn']} (no slow "
            f"steps, but each step {cold['cold_fp16_no_cudnn']['median_step_s'] / cold['cold_fp16']['median_step_s']:.2f}× "
            f"as long). Profiled (`results/train_speed_squad_profile_cold_fp16.txt`), cuDNN's attention took "
            f"{cudnn_host:.1f} s of host time in {wall:.1f} s ({cudnn_host / wall:.0%}), "
            f"{op(cold_profile, fwd, 'CPU time avg') * 1e3:.1f} ms per forward call and "
            f"{op(cold_profile, bwd, 'CPU time avg') * 1e3:.1f} ms per backward. Why fp16's plans cost more than bf16's "
            "happens inside cuDNN and was not pinned down. The course's rows have one shape, planned once: in fp16 the "
            f"default runs at {tps['course_fp16'] / tps['course']:.2f}× its bf16 speed (run F).\n\n")


def _squad_levers(a: dict[str, Any], profiles: dict[str, str]) -> str:
    """Run A, the levers one at a time, and where the default's GPU time goes."""
    shares, before_shares = _kernel_shares(profiles["course"]), _kernel_shares(profiles["before"])
    return (f"Run A ([`results/train_speed_squad_runA.md`](results/train_speed_squad_runA.md), {a['measured']}, same "
            "machine type, data and versions), the levers one at a time, each against the baselines of the same run:\n\n"
            + _speed_table(a, SQUAD_ROWS["A"], "configuration")
            + f"\nWhere the GPU time goes in the default (`results/train_speed_squad_profile_course.txt`, run F, under "
            f"torch.profiler): matrix products {shares['matrix products (GEMM)']:.0%}, elementwise kernels "
            f"{shares['elementwise']:.0%}, copies and dtype casts {shares['copies and dtype casts']:.0%}, attention "
            f"{shares['attention']:.0%}, optimizer {shares['optimizer']:.0%}, 4-bit dequantization "
            f"{shares['4-bit dequantize (bitsandbytes)']:.0%}; before the levers (`..._profile_before.txt`) attention "
            f"took {before_shares['attention']:.0%} and matrix products {before_shares['matrix products (GEMM)']:.0%}.\n")


def render_train_speed_squad(squad: dict[str, dict[str, Any]], profiles: dict[str, str]) -> str:
    """The realistic-length runs: notebook 04's final default against the baselines a user would pick (run F), what
    was tried and not kept and the fp16 slowdown (run E), the levers one at a time (run A). Each finding stated
    here is checked on the records first (:class:`MissingFigure` if a record no longer shows it)."""
    a, e, f = squad["A"], squad["E"], squad["F"]
    return _squad_default(f, e) + _squad_tried(e) + _squad_fp16(e, f) + _squad_levers(a, profiles)


def render_train_speed(speed: dict[str, dict[str, Any]]) -> str:
    """Run 3's table, with the machine and the benchmark's settings."""
    run = speed["3"]
    meta = run["environment"]
    return (f"From [`results/train_speed.md`](results/train_speed.md) (its records: `results/train_speed.jsonl`; run 3, "
            f"{meta['gpu']}, {run['measured']}, {'random weights, ' if meta['random_weights'] else ''}{meta['steps']} "
            f"timed steps after {meta['warmup']} warm-up; the course's QA examples: {meta['lengths']}; "
            f"N = {meta['matmul_params'] / 1e9:.2f} B, peak {meta['peak_tflops']:.0f} TFLOP/s):\n\n"
            + _speed_table(run, SPEED_ROWS["3"], "configuration"))


def render_train_speed_run4(speed: dict[str, dict[str, Any]], profile: dict[str, Any]) -> str:
    """The cuDNN finding of the profile, run 4's table and what notebook 04's default gains."""
    run, run2 = speed["4"], speed["2"]
    if profile["config"] not in run2["runs"]:
        raise MissingFigure(f"results/train_speed_profile.txt profiles {profile['config']!r}, not a row of run 2")
    forward = op(profile, "aten::_cudnn_attention_forward", "CPU time avg")
    backward = op(profile, "aten::_cudnn_attention_backward", "CPU time avg")
    default, naive = run["runs"][NOTEBOOK_DEFAULT[1]], run["runs"]["naive"]
    return (f"A profile of the \"+ {run2['runs'][profile['config']]['batch']} per pass\" step "
            f"(`results/train_speed_profile.txt`: `{profile['config']}` of run 2, {run2['measured']}) showed "
            f"{forward * 1e3:.1f} ms of CPU time in every cuDNN attention forward call and {backward * 1e3:.1f} ms in "
            "every backward: cuDNN plans per batch shape, and a packed row has a new length every step. Run 4 "
            f"([`results/train_speed_run4.md`](results/train_speed_run4.md), {run['environment']['gpu']}, "
            f"{run['measured']}, again with the naive baseline in the same run) tested two fixes:\n\n"
            + _speed_table(run, SPEED_ROWS["4"], "configuration (run 4)", bold=NOTEBOOK_DEFAULT[1])
            + f"\nNotebook 04's full configuration therefore runs at **"
            f"{default['effective_tokens_per_s'] / naive['effective_tokens_per_s']:.1f}× the naive baseline's effective "
            f"tokens/s with {default['peak_gib'] / naive['peak_gib']:.0%} of its peak memory** ({default['peak_gib']:.2f} vs "
            f"{naive['peak_gib']:.2f} GiB), measured in one run.\n")


def render_train_speed_findings(speed: dict[str, dict[str, Any]], profile: dict[str, Any], phi2: dict[str, Any],
                                notebooks: dict[str, Any]) -> str:
    """What the benchmark shows, each figure from a row of runs 2-4 or the profile."""
    r2, r3, r4 = (speed[k]["runs"] for k in ("2", "3", "4"))
    naive = r3["naive"]

    def vs(row: dict[str, Any], base: dict[str, Any] = naive) -> float:
        return row["effective_tokens_per_s"] / base["effective_tokens_per_s"]

    p8, course, c64 = r3["packed_8x2"], r3["course"], r3["course_64"]
    p16, logits16 = r3["packed_16"], r3["answer_logits_16"]
    fused3_faster = r3["course_fused_adamw"]["effective_tokens_per_s"] > course["effective_tokens_per_s"]
    fused2_faster = r2["course"]["effective_tokens_per_s"] > r2["course_paged_8bit"]["effective_tokens_per_s"]
    if r2["course"]["optimizer"] != "adamw_torch_fused" or r3["course_fused_adamw"]["optimizer"] != "adamw_torch_fused":
        raise MissingFigure("the optimizer rows of results/train_speed{,_run2}.jsonl are not the fused-AdamW ones")
    faster = {True: "faster", False: "slower"}
    nockpt, t4, default = r3["no_checkpointing"], r3["t4_fp16_15gib"], r4[NOTEBOOK_DEFAULT[1]]
    compiled, eager = r2["compile"], r2["eager_attention"]
    cuda, cpu = profile["cuda_total_s"], profile["cpu_total_s"]
    elementwise = sum(op(profile, name, "Self CUDA %") for name in ("aten::mul", "aten::add", "aten::add_"))
    padded_to = naive["processed_tokens_per_step"] / (naive["batch"] * naive["accum"])
    mean_tokens = re.search(r"mean (\d+)", speed["3"]["environment"]["lengths"])
    if mean_tokens is None:
        raise MissingFigure("results/train_speed.jsonl's meta line has no 'mean N' in 'lengths'")
    noise = ("The optimizer is within that noise: fused 32-bit AdamW was " + faster[fused3_faster] + " than paged "
             "8-bit AdamW in run 3 and " + faster[fused2_faster] + " in run 2 (`results/train_speed_run2.md`), so"
             if fused3_faster != fused2_faster else
             f"Fused 32-bit AdamW was {faster[fused3_faster]} than paged 8-bit AdamW in runs 2 and 3; even so,")
    return "\n".join([
        "- **Fuller passes are the main lever.** A pass through the model's layers has a large fixed cost (thousands "
        "of small kernels, dequantizing every 4-bit weight, three times with checkpointing), so packing alone, with "
        f"{p8['real_tokens_per_step'] / p8['accum']:,.0f} real tokens per pass, is *"
        f"{'slower' if vs(p8) < 1 else 'faster'}* than padding to {padded_to:.0f} ({vs(p8):.2f}×); {course['batch']} "
        f"packed examples per pass ({course['real_tokens_per_step']:,.0f} tokens) run at {vs(course):.2f}× the "
        f"baseline with {course['peak_gib'] / naive['peak_gib']:.0%} of its memory ({vs(default, r4['naive']):.2f}× once "
        f"rows are rounded, run 4). Larger passes keep paying ({c64['batch']} per pass: {vs(c64):.2f}×) but change "
        "the effective batch.",
        "- **Logits only where graded.** The LM head maps every position to a score per vocabulary entry; only the "
        f"answer tokens, {phi2['data']['answer_token_share']:.1%} of the course's tokens "
        f"({_source('gpu_phi2_shaped.json', phi2)}), are graded. Computing those alone (`logits_to_keep`, same loss; "
        f"tested) saves {p16['peak_gib'] - logits16['peak_gib']:.2f} GiB and "
        f"{p16['median_step_s'] - logits16['median_step_s']:.2f} s per step at {logits16['batch']} per pass. Liger's "
        "fused linear cross-entropy was not tried: its patches do not cover Phi, and this removes most of the head's "
        "work without a kernel.",
        "- **Step times vary between processes and runs.** The naive baseline's step took "
        + ", ".join(f"{speed[k]['runs']['naive']['median_step_s']:.2f}" for k in ("2", "3"))
        + f" and {r4['naive']['median_step_s']:.2f} s in runs 2, 3 and 4; repeated at the end of its process it ran at "
        + ", ".join(f"{vs(speed[k]['runs']['naive_last'], speed[k]['runs']['naive']):.2f}×" for k in ("2", "3"))
        + f" and {vs(r4['naive_last'], r4['naive']):.2f}× its first speed. {noise} the default stays the QLoRA "
        f"paper's paged 8-bit AdamW, which holds {r3['course_fused_adamw']['peak_gib'] - course['peak_gib']:.2f} GiB less.",
        f"- **Gradient checkpointing** costs {1 - nockpt['median_step_s'] / course['median_step_s']:.0%} of the step "
        f"time here and saves {nockpt['peak_gib'] - course['peak_gib']:.1f} GiB; without it the step "
        f"({nockpt['peak_gib']:.1f} GiB) would {'not ' if nockpt['peak_gib'] > t4['memory_cap_gib'] else ''}fit under "
        f"the T4-shaped rows' {t4['memory_cap_gib']:.0f} GiB cap. `torch.compile` ({compiled['median_step_s']:.2f} s "
        f"per step vs {r2['course']['median_step_s']:.2f} s uncompiled, run 2) and eager attention "
        f"({eager['median_step_s']:.2f} s, {eager['peak_gib']:.1f} GiB, run 2) "
        + ("did not help" if min(compiled["median_step_s"], eager["median_step_s"]) > r2["course"]["median_step_s"]
           else "were tried")
        + f". In the profiled step the GPU's kernels ran {cuda:.1f} s against {cpu:.1f} s of CPU time ({cuda / cpu:.0%}); "
        f"the largest shares of GPU time go to dtype copies (`aten::copy_`, {op(profile, 'aten::copy_', 'Self CUDA %'):.0%}) "
        f"and elementwise products and sums (`aten::mul`, `aten::add`, `aten::add_`: {elementwise:.0%}), while 4-bit "
        f"dequantization takes {op(profile, 'void kDequantizeBlockwise', 'Self CUDA %'):.1%}. MFU stays at or below "
        f"{max(r['mfu'] for r in r3.values()):.0%}: this recipe is limited by overheads, not by the GPU's matrix units.",
        f"- **T4-shaped check:** {t4['batch']} packed examples per pass in fp16 under a {t4['memory_cap_gib']:.0f} GiB "
        f"memory cap train with a {t4['peak_gib']:.2f} GiB peak (run 3; {default['peak_gib']:.2f} GiB with rows "
        f"rounded, in bf16, run 4), and notebook 04 ran in T4-emulated fp16 with "
        f"{_number(column(notebooks, 'fp16 (T4-emulated)', 'peak GiB, measured')):.2f} GiB "
        f"({_source('gpu_notebooks_h100.md', notebooks)}, before the rounding).",
        f"- **The ratio depends on the data's lengths.** The course's QA examples are short (mean {mean_tokens.group(1)} "
        f"tokens), so the baseline's padding to {padded_to:.0f} wastes {naive['padding_share']:.0%} of its work.",
    ]) + "\n"


def render_smoke_classification(course: dict[str, Any]) -> str:
    """Notebook 06's live slice in the smoke profile (a smoke check, not evidence: the curve below is)."""
    c = course["classification"]
    scores = ", ".join(f"{name} {m['mean']:.2f} ± {m['std']:.2f}"
                       + (f" ({m['seeds']} seeds)" if m["seeds"] != c["seeds"] else "") for name, m in c["methods"].items())
    return (f"Smoke slice (`./run.sh course`, {course['date']}, commit {course['commit']}: {c['data']}, "
            f"{c['train_rows']} training sentences, {c['epochs']} epochs, {c['seeds']} seeds; macro-F1 mean ± std): "
            f"{scores}; TF-IDF + logistic regression {c['tfidf_macro_f1']:.2f}, majority class "
            f"{c['baseline_macro_f1']:.2f}. The best, `{c['best']}`, {c['verdict']} TF-IDF on this slice, a smoke check "
            "of a few dozen rows and steps; the evidence is the measured curve above.\n")


def render_classification_curve(run: dict[str, Any]) -> str:
    """The committed learning curve of notebook 06 (benchmarks/classification_curve.py): macro-F1 by method and
    training-set size against TF-IDF, where fine-tuning overtakes it, what the record still lacks."""
    summary = run["summary"]
    sizes = sorted({r["n_train"] for r in summary})
    labels = list(dict.fromkeys(r["label"] for r in summary))
    cell = {(r["label"], r["n_train"]): r for r in summary}

    def score(r: dict[str, Any]) -> str:
        spread = r["macro_f1_std"]
        return f"{r['macro_f1']:.3f}" + (f" ± {spread:.3f}" if r["seeds"] > 1 else f" ({r['seeds']} seed)")

    head = "| method | " + " | ".join(f"{n:,} rows" for n in sizes) + " | trainable parameters |\n"
    rows = "".join(f"| {label} | " + " | ".join(score(cell[label, n]) if (label, n) in cell else "–" for n in sizes)
                   + f" | {cell[label, sizes[0]]['trainable_params']:,} |\n" for label in labels)
    tfidf = "| TF-IDF + logistic regression | " + " | ".join(
        f"{run['baselines'][str(n)]['tfidf']['macro_f1']:.3f}" for n in sizes) + " | – |\n"
    cross = run["crossover"]
    points = "; ".join(f"at {p['n_train']:,} rows `{p['best']}` {p['verdict']} it by {p['gap']:+.3f} "
                       f"({p['seconds']:.0f} s of GPU training per run against TF-IDF's {p['tfidf_seconds']:.1f} s on "
                       "a CPU)" for p in cross["points"])
    first = cross["first_beats"]
    missing = "; ".join(f"`{m['label']}` at {m['n_train']:,} rows ran {m['seeds_run']} of {m['seeds']} seeds"
                        for m in run["missing"])
    from utils.experiments.learning_curve import out_of_domain_rows

    ood = run.get("out_of_domain") or {}
    ood_text = "; ".join(
        f"on {ood[domain]['rows']:,} {domain} sentences TF-IDF reaches {ood[domain]['tfidf']['macro_f1']:.3f}, "
        + ", ".join(f"`{r['method']}` {r['macro_f1']:.3f} ± {r['macro_f1_std']:.3f} ({r['verdict']} it)"
                    for r in out_of_domain_rows(ood) if r["set"] == domain)
        for domain in ood)
    again = run.get("out_of_domain_models") or {}
    again_text = "; ".join(f"`{name}`'s seed{'s' if len(v['macro_f1']) > 1 else ''} "
                           f"{', '.join(str(s) for s in v.get('seeds', []))} trained again ({v['device']}) with the "
                           f"logged settings, in domain {sum(v['macro_f1']) / len(v['macro_f1']):.3f} against "
                           f"{sum(v['logged_macro_f1']) / len(v['logged_macro_f1']):.3f} logged"
                           for name, v in again.items())
    return (f"The learning curve (`results/2026-12-06_sentiment_curve/`, {run['measured']}, "
            f"{', '.join(run['run_devices'])}; its README has the command and versions): macro-F1 on the "
            f"{run['data']['test']} test sentences, mean ± std over {len(run['settings']['seeds'])} seeds, the learning "
            "rate chosen on validation at the smallest size and the epoch at every size.\n\n"
            + head + "|---|" + "---|" * len(sizes) + "---|\n" + rows + tfidf + "\n"
            + ("Fine-tuning beats TF-IDF " + (f"from {first:,} labelled sentences on" if first else "at no size")
               + f" (the best method with two or more seeds, the gap against twice its seed spread): {points}.")
            + (f" Not in the record yet: {missing}." if missing else "")
            + (f"\n\nOut of domain, the best two methods by validation, trained on all the movie sentences (mean ± "
               f"std over seeds{'; ' + again_text if again_text else ''}): {ood_text}." if ood
               else " The out-of-domain test is not in the record yet.") + "\n")


def render_suite_runs(suite_runs: list[dict[str, Any]]) -> str:
    return ("| date | commit | CPU | `./run.sh test` |\n|---|---|---|---|\n" + "".join(
        f"| {r['date']} | {r['commit']} | {_cpu(r)}{' ' + r['note'] if r.get('note') else ''} | "
        f"{r['passed']} passed in {r['seconds']:.0f} s |\n" for r in suite_runs))


def render_blocks(records: dict[str, Any]) -> dict[str, str]:
    """The text of every generated block, from the records (:func:`load_records`)."""
    course, speed, profile = records["course"], records["speed"], records["profile"]
    return {
        "gpu-memory": render_gpu_memory(records["phi2"], records["notebooks_h100"], records["estimate"]),
        "course-times": render_course_times(course),
        "smoke-quantization": render_smoke_quantization(course),
        "smoke-ablation": render_smoke_ablation(course),
        "smoke-figures": render_smoke_figures(course),
        "qa-real-data": render_qa_real_data(records["qa_real"]),
        "gpu-qa": render_gpu_qa(records["phi2"], records["phi2_notebooks"], records["notebooks_h100"]),
        "multi-gpu": render_multi_gpu(records["scaling"], records["scaling_runs"]),
        "train-speed-squad": render_train_speed_squad(records["squad"], records["squad_profiles"]),
        "train-speed-toy": render_train_speed_toy(records["toy"]),
        "train-speed": render_train_speed(speed),
        "train-speed-run4": render_train_speed_run4(speed, profile),
        "train-speed-findings": render_train_speed_findings(speed, profile, records["phi2"], records["notebooks_h100"]),
        "smoke-classification": render_smoke_classification(course),
        "classification-curve": render_classification_curve(records["curve"]),
        "suite-runs": render_suite_runs(records["suite"]),
        "troubleshooting": troubleshooting.table(),  # each case run now: the messages as the code writes them
    }


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
    suite = sub.add_parser("suite", help="append one measured ./run.sh test to results/suite_runs.jsonl")
    suite.add_argument("--seconds", type=float, required=True, help="the suite's wall time (run.sh prints it)")
    suite.add_argument("--passed", type=int, required=True, help="tests passed")
    suite.add_argument("--note", default="", help="anything else about the machine, e.g. an emulated CPU")
    suite.add_argument("--commit", help="the commit measured (default: HEAD)")
    suite.add_argument("--without-avx512-bf16", action="store_true",
                       help="the run emulated a CPU without avx512_bf16 (README: Tests)")
    sub.add_parser("render", help="rewrite README.md's generated blocks from results/")
    sub.add_parser("check", help="exit 1 if README.md's generated blocks differ from what results/ gives")
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
        text = README.read_text()
        new = render(text, render_blocks(load_records()))
        if args.command == "render":
            README.write_text(new)
            print(f"rendered {len(block_names(new))} blocks into {README}")
        elif new != text:
            raise SystemExit("README.md's generated blocks are out of date: python -m tools.readme render")


if __name__ == "__main__":
    main()
