"""Held-out EM/F1 of a QA adapter's GGUF exports, read back by transformers and run by a real llama.cpp.

    python benchmarks/gguf_quality.py ADAPTER [--quants f16 q8_0 q4_0] [--questions 48] [--out DIR]

For one trained adapter (notebook 04's folder; a Llama-architecture base, which transformers can read back): the
held-out questions of ``--eval-dataset``'s validation split (notebook 05's set; a seeded subset, none seen in training),
answered by

- the 4-bit base + adapter, as trained (what notebook 05 reports);
- the merged float32 model (what the export starts from);
- each GGUF export, read back by transformers (``utils.export.load_gguf``: its tensors dequantized);
- each GGUF export run by llama.cpp through node-llama-cpp 3.21.1 (``benchmarks/llama_cpp/answer.mjs``; install it
  with ``npm i -E node-llama-cpp@3.21.1`` in that folder, or pass ``--node-modules``): skipped with a note when
  node or the package is missing.

All decode greedily, with no repetition penalty, at most the answer budget notebook 05 measures, cut at the first
newline. Writes ``record.json`` and ``README.md`` into ``--out`` (default ``results/<today>_gguf_quality_<model>/``,
refused if it exists).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from utils.evaluation import qa as qa_eval  # noqa: E402
from utils.evaluation.squad import squad_scores  # noqa: E402
from utils.export import RELOADABLE, export_gguf, load_gguf  # noqa: E402
from utils.models import bnb_4bit_config  # noqa: E402
from utils.models.adapters import load_adapter  # noqa: E402
from utils.paths import REPO_ROOT  # noqa: E402
from utils.qa import collate, run_folder, training  # noqa: E402
from utils.qa import data as qa_data  # noqa: E402

RUNNER = Path(__file__).resolve().parent / "llama_cpp" / "answer.mjs"


def llama_cpp_answers(gguf: Path, prompts: list[str], max_tokens: int, node_modules: Path | None) -> dict | None:
    """llama.cpp's answers (``{"llama_cpp": version, "answers": [...]}``), or None where node or the package is
    missing."""
    folder = RUNNER.parent
    if node_modules is not None and not (folder / "node_modules").exists():
        (folder / "node_modules").symlink_to(node_modules.resolve())
    if shutil.which("node") is None or not (folder / "node_modules" / "node-llama-cpp").exists():
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(prompts, f)
    done = subprocess.run(["node", str(RUNNER), str(gguf), f.name, str(max_tokens)], capture_output=True, text=True,
                          cwd=folder, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"llama.cpp run failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapter", type=Path)
    parser.add_argument("--quants", nargs="+", default=["f16", "q8_0", "q4_0"])
    parser.add_argument("--eval-dataset", default="course-qa", help="held-out set (notebook 05's EVAL_DATASET)")
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--node-modules", type=Path, help="a node_modules folder holding node-llama-cpp 3.21.1")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    trained, _ = run_folder.read_training_params(args.adapter)
    name = Path(trained.model_id.rstrip("/")).name
    out = args.out or REPO_ROOT / "results" / f"{datetime.date.today()}_gguf_quality_{name.lower()}"
    if (out / "record.json").exists():
        raise SystemExit(f"{out}/record.json exists: a run is never overwritten; pass another --out")
    torch.manual_seed(args.seed)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.adapter)
    model = load_adapter(trained.model_id, args.adapter, bnb_4bit_config())
    fmt = qa_data.prompt_format(tokenizer, model)
    train_rows, _ = training.training_rows(trained)
    validation, _ = qa_data.load_or_stand_in(args.eval_dataset, "validation",
                                             {"question": "question", "context": "context", "answers": "answers"})
    kept, _ = qa_data.without_seen_answers(train_rows, validation)
    rows = qa_data.sample_rows(kept, args.questions, args.seed)
    qa_data.check_no_overlap(train_rows, rows, "training rows", "held-out rows", same_context=True)
    budget = qa_eval.answer_length_budget(train_rows, tokenizer, fmt)["max_new_tokens"]
    generate = dict(max_new_tokens=budget, max_length=trained.max_length, fmt=fmt, progress=False)
    references = [r["answers"]["text"] for r in rows]
    results: list[dict] = []

    def score(way: str, answers: list[str], seconds: float, **extra) -> None:
        s = squad_scores(answers, references)
        results.append({"way": way, "exact_match": s["exact_match"], "f1": s["f1"], "seconds": seconds,
                        "answers": answers, **extra})
        print(f"{way}: EM {s['exact_match']:.1f}, F1 {s['f1']:.1f} ({seconds:.0f} s)", flush=True)

    start = time.perf_counter()
    score("4-bit + adapter (transformers)", qa_eval.generate_answers(model, tokenizer, rows, **generate),
          time.perf_counter() - start)
    features, _ = qa_data.encode_rows(rows[:2], tokenizer, trained.max_length, fmt=fmt)
    merged, _ = qa_eval.merge_check(model, trained.model_id, args.adapter, collate.sample_batch(features, 2),
                                    torch.float32)
    start = time.perf_counter()
    score("merged float32 (transformers)", qa_eval.generate_answers(merged, tokenizer, rows, **generate),
          time.perf_counter() - start)
    prompts = [qa_data.build_prompt(r["question"], r["context"], fmt) for r in rows]
    llama_version = None
    with tempfile.TemporaryDirectory() as tmp:
        for quant in args.quants:
            files = export_gguf(merged, tokenizer, tmp, quant=quant, prompt_format=fmt, name="model", modelfile=False)
            if files["architecture"] in RELOADABLE:
                reloaded = load_gguf(files["gguf"])
                start = time.perf_counter()
                score(f"GGUF {quant} (transformers)", qa_eval.generate_answers(reloaded, tokenizer, rows, **generate),
                      time.perf_counter() - start, quant=quant, bits_per_weight=files["bits_per_weight"])
                del reloaded
            start = time.perf_counter()
            ran = llama_cpp_answers(Path(files["gguf"]), prompts, budget, args.node_modules)
            if ran is not None:
                llama_version = ran["llama_cpp"]
                score(f"GGUF {quant} (llama.cpp)", ran["answers"], time.perf_counter() - start, quant=quant,
                      bits_per_weight=files["bits_per_weight"])
    out.mkdir(parents=True, exist_ok=True)
    record = {"measured": str(datetime.date.today()), "adapter": str(args.adapter), "model": trained.model_id,
              "dataset": trained.dataset, "eval_dataset": args.eval_dataset, "questions": len(rows), "seed": args.seed, "max_new_tokens": budget,
              "decoding": "greedy, no repetition penalty, cut at the first newline",
              "versions": {"torch": torch.__version__, "llama_cpp": llama_version or "not run"},
              "command": "python benchmarks/gguf_quality.py " + " ".join(argv or sys.argv[1:]),
              "results": results}
    (out / "record.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"# GGUF exports of {name}'s QA adapter: held-out EM/F1", "",
             f"{len(rows)} held-out questions of `{args.eval_dataset}` (validation; none seen in training), greedy, "
             f"at most {budget} new tokens, cut at the first newline. Command: `{record['command']}`; torch "
             f"{torch.__version__}, llama.cpp via {llama_version or '(not run)'}; 2 CPU cores.", "",
             "| model | EM | F1 | seconds |", "|---|---|---|---|"]
    lines += [f"| {r['way']} | {r['exact_match']:.1f} | {r['f1']:.1f} | {r['seconds']:.0f} |" for r in results]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
