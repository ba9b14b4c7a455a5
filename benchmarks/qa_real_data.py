"""QLoRA on real text: SmolLM2-135M-Instruct trained on Disfl-QA's real passages, scored three ways over seeds.

    python benchmarks/qa_real_data.py --out results/2026-12-06_qa_real_smollm2 [--max-steps 120] [--seeds 0 1 2]

For each seed: train notebook 04's recipe (smoke profile's model and settings, ``DATASET="disfl-qa"``: all its
training questions, ``--max-length`` tokens per example, ``--max-steps`` steps) with ``utils.qa.training``, then
score on every question of the validation split (passages, answers and three question types held out, see
data/disfl_qa/README.md) the same three ways as notebook 05 (``utils.evaluation.qa.score_three_ways``): the base
model zero-shot (the training prompt), the base model with ``--few-shot`` worked examples from the training split
(drawn with the seed), and the tuned model. Writes ``record.json`` (settings, versions, machine, every seed's
scores and the summary) into ``--out``; the folder's README.md is written by hand from it. An existing record is
never overwritten (pass a new ``--out``).

Runs on a CPU (the smoke model; about 30 minutes on 2 cores with the defaults) or a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from tools.readme import machine  # noqa: E402
from utils.evaluation import qa as qa_eval  # noqa: E402
from utils.models import bnb_4bit_config  # noqa: E402
from utils.models.adapters import load_adapter  # noqa: E402
from utils.qa import data as qa_data  # noqa: E402
from utils.qa import training  # noqa: E402
from utils.qa.config import QAConfig, qa_set_file  # noqa: E402
from utils.run_mode import environment_report  # noqa: E402

DATASET = "disfl-qa"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="new folder for record.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=120)
    parser.add_argument("--max-length", type=int, default=384, help="tokens per training example")
    parser.add_argument("--few-shot", type=int, default=3)
    parser.add_argument("--eval-max-length", type=int, default=512, help="prompt room at evaluation")
    parser.add_argument("--eval-size", type=int, default=0, help="validation questions scored (0: all)")
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "qa_real_data", help="adapters go here")
    args = parser.parse_args()
    record_path = args.out / "record.json"
    if record_path.exists():
        parser.error(f"{record_path} exists: nothing is overwritten; pass another --out")
    args.out.mkdir(parents=True, exist_ok=True)

    train_rows = qa_data.load_qa_split(qa_set_file(DATASET, "train"))
    eval_rows = qa_data.load_qa_split(qa_set_file(DATASET, "validation"), limit=args.eval_size or None)
    qa_data.check_no_overlap(train_rows, eval_rows, "train", "validation", same_context=True)
    qa_data.check_no_overlap(train_rows, eval_rows, "train", "validation", same_answer=True)
    record = {"measured": time.strftime("%Y-%m-%d"), "machine": machine(), "versions": environment_report(),
              "threads": torch.get_num_threads(), "dataset": DATASET, "train_questions": len(train_rows),
              "eval_questions": len(eval_rows), "few_shot": args.few_shot, "eval_max_length": args.eval_max_length,
              "seeds": {}, "command": " ".join(sys.argv)}
    model = tokenizer = None
    for seed in args.seeds:
        config = QAConfig.resolve("smoke", dataset=DATASET, train_size=0, max_length=args.max_length,
                                  max_steps=args.max_steps, logging_steps=min(10, args.max_steps), save_steps=args.max_steps, seed=seed)
        folder = args.work / f"seed{seed}"
        run, _ = training.ensure_trained(config, folder, quiet=True, profile="smoke")
        if model is None:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = load_adapter(config.model_id, folder, bnb_4bit_config())  # its adapter: "default"
            fmt = qa_data.prompt_format(tokenizer, model)
            budget = qa_eval.answer_length_budget(train_rows, tokenizer, fmt)
            generate = {"max_new_tokens": budget["max_new_tokens"], "max_length": args.eval_max_length, "fmt": fmt}
            record |= {"model_id": config.model_id, "settings": config.as_dict() | {"seed": "per run"},
                       "generation": generate | {"fmt": fmt.style, "budget": budget, "decoding": "greedy"}}
        else:  # the same 4-bit base, this seed's adapter
            model.load_adapter(str(folder), adapter_name=f"seed{seed}")
            model.set_adapter(f"seed{seed}")
        start = time.time()
        scored = qa_eval.score_three_ways(model, tokenizer, eval_rows, train_rows, seed, args.few_shot,
                                          zero_shot=seed == args.seeds[0], **generate)
        record["seeds"][str(seed)] = {"train_seconds": run.get("seconds"), "losses": run.get("losses"),
                                      "eval_seconds": time.time() - start,
                                      "scores": [{k: r[k] for k in ("way", "exact_match", "f1", "n")} for r in scored],
                                      "answers": {r["way"]: r["answers"] for r in scored}}
        print(json.dumps({"seed": seed, **{r["way"]: round(r["f1"], 1) for r in scored}}), flush=True)
    everything = [r | {"seed": int(s)} for s, v in record["seeds"].items() for r in v["scores"]]
    record["summary"] = {metric: qa_eval.summarize_ways(everything, metric) for metric in ("exact_match", "f1")}
    record["references"] = [r["answers"]["text"] for r in eval_rows]
    record_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(json.dumps(record["summary"], indent=1))


if __name__ == "__main__":
    main()
