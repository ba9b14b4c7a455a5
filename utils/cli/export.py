"""A trained QA adapter as one GGUF file for llama.cpp, Ollama and LM Studio, checked by reloading it.

    python -m utils.cli.export outputs/phi-2-qa-adapter --out outputs/gguf               # q8_0 (8.5 bits/weight)
    python -m utils.cli.export outputs/phi-2-qa-adapter --out outputs/gguf --quant f16
    ollama create phi2-qa -f outputs/gguf/phi-2-qa-adapter.q8_0.Modelfile && ollama run phi2-qa

(``outputs/<model name>-qa-adapter`` is where notebook 04 saves the adapter of that base model:
``utils.qa.storage.default_adapter_dir``; the smoke profile's is ``outputs/SmolLM2-135M-Instruct-qa-adapter``.)

It loads the base model that the adapter's training_params.json names (or --base) unquantized (float32 on a CPU,
float16 on a GPU), applies the adapter with peft and merges it in (utils.evaluation.qa.merge_adapter), writes
<name>.<quant>.gguf and an Ollama Modelfile that prompts as the adapter was trained (utils.export.export_gguf), then
checks the file in two ways and prints one JSON line:

* exactness (utils.export.verify_gguf): every weight is the merged weight's round trip through the file's type, the
  architecture keys, the tokenizer and the chat template are right (and for Llama files, the logits);
* the task (utils.export.task_check): the file's model and the merged model answer the same held-out questions
  (--questions of them, greedy, the answer budget the Modelfile sets); the file's F1 must stay within --margin F1
  points of the merged model's (default, utils.export.task_margin: one question's worth, 100 / questions, or twice
  the standard error of the per-question F1 change if larger: a smaller loss cannot be told apart from which
  questions happened to be asked). The questions are the validation split of the data the adapter was trained on (a Hub dataset's
  'validation' split; a local train.json's sibling validation.json) unless --eval-data names a file; a question
  whose passage and question training saw is refused. For Phi-2 files, which transformers cannot load, the file's
  model is the merged model carrying the file's decoded weights (utils.export.file_model says what that leaves out).

A file already there is refused (a usage error) unless you pass --overwrite. The exit status is 1 if either check
fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from utils.cli import make_parser
from utils.errors import InputError, input_error

QUESTIONS = 64  # held-out questions the task check asks: ~25 s on 2 CPU cores for SmolLM2, seconds on a GPU for Phi-2
SAMPLE = {"question": "Who founded Brindlemoor?",  # the prompt whose logits the check compares
          "context": "Brindlemoor is a small town on the river Oss. It was founded in 1342 by a miller named Edda Varn."}


def build_parser() -> argparse.ArgumentParser:
    from utils.export import DEFAULT_QUANT, QUANTS

    parser = make_parser("utils.cli.export", __doc__)
    parser.add_argument("adapter_dir", metavar="ADAPTER_DIR", help="the adapter folder notebook 04 or finetune wrote")
    parser.add_argument("--out", required=True, help="folder for the .gguf file and its Modelfile")
    parser.add_argument("--quant", default=DEFAULT_QUANT, choices=QUANTS,
                        help=f"file type (default: {DEFAULT_QUANT}: it kept the tuned answers where q4_0 lost some)")
    parser.add_argument("--base", default=None, help="base model id or folder (default: training_params.json's)")
    parser.add_argument("--name", default=None, help="file name stem (default: the adapter folder's name)")
    parser.add_argument("--overwrite", action="store_true", help="replace files of the same name in --out")
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip both checks")
    parser.add_argument("--eval-data", default=None, help="held-out questions for the task check: a SQuAD .json or "
                        ".jsonl file, or a Hub dataset id (its 'validation' split); default: the validation split of "
                        "the adapter's training data")
    parser.add_argument("--questions", type=int, default=QUESTIONS,
                        help=f"how many held-out questions the task check asks (default {QUESTIONS}; 0 skips it)")
    parser.add_argument("--margin", type=float, default=None,
                        help="F1 points the file may lose against the merged model (default: 100 / questions, or "
                        "twice the standard error of the per-question change if larger)")
    return parser


def _trained_on(adapter_dir: Path, eval_data: str | None) -> str | None:
    """The training data training_params.json records (None without one); an adapter trained on chat text
    (guanaco) has no reference answers to score, so it needs ``--eval-data``."""
    from utils.qa.config import PARAMS_FILE
    from utils.qa.run_folder import read_training_params

    if not (adapter_dir / PARAMS_FILE).is_file():
        return None
    config = read_training_params(adapter_dir)[0]
    if config.text_format != "squad" and not eval_data:
        raise input_error(str(adapter_dir), f"it was trained on {config.text_format} chat text ({config.dataset}), "
                          "which has no reference answers to score the file against",
                          "pass --eval-data FILE (SQuAD-style questions with answers), or --questions 0")
    return config.dataset


def _base_id(adapter_dir: Path, base: str | None) -> str:
    """``--base``, else the model id in the adapter's training_params.json."""
    if base:
        return base
    from utils.qa.config import PARAMS_FILE
    from utils.qa.run_folder import read_training_params

    if not (adapter_dir / PARAMS_FILE).is_file():
        raise input_error(str(adapter_dir), f"it has no {PARAMS_FILE} naming the base model", "pass --base MODEL_ID")
    return read_training_params(adapter_dir)[0].model_id


def held_out_source(dataset: str | None, eval_data: str | None) -> tuple[str, str]:
    """Where the task check's questions come from: ``(source, split)`` for :func:`utils.qa.data.load_or_stand_in`.

    ``--eval-data`` if given; else the held-out split of ``dataset`` (training_params.json's): a named offline set's
    or a Hub dataset's ``validation`` split, or a local training file's sibling named ``validation`` (or ``dev``,
    ``test``) with the same suffix.

    Raises:
        InputError: no held-out split can be told apart (naming ``--eval-data`` as the fix).
    """
    from utils.qa.config import QA_SETS

    if eval_data:
        return eval_data, "validation"
    if not dataset:
        raise input_error("--eval-data", "the adapter's training_params.json names no training data, so the held-out "
                          "questions are unknown", "pass --eval-data FILE (a SQuAD .json or .jsonl file)")
    path = Path(dataset)
    if dataset in QA_SETS or not (path.exists() or path.suffix):
        return dataset, "validation"  # a named offline set, or a Hub id
    for name in ("validation", "dev", "test"):
        sibling = path.with_name(name + path.suffix)
        if sibling.is_file() and sibling.resolve() != path.resolve():
            return str(sibling), "validation"
    raise input_error(str(dataset), "the adapter was trained on this file and no held-out file lies beside it "
                      "(validation / dev / test with the same suffix)",
                      "pass --eval-data FILE with questions training did not see (or --questions 0 to skip the task check)")


def held_out_rows(dataset: str | None, eval_data: str | None, questions: int) -> tuple[list[dict[str, Any]], str]:
    """Up to ``questions`` rows (a seeded subset) of the held-out source, and the source used; rows whose question
    and passage are in a local training file are refused (utils.qa.data.check_no_overlap)."""
    from utils.qa.data import check_no_overlap, load_or_stand_in, load_qa_split, sample_rows

    source, split = held_out_source(dataset, eval_data)
    rows, used = load_or_stand_in(source, split)
    if dataset and Path(dataset).is_file() and Path(dataset).suffix.lower() in (".json", ".jsonl"):
        check_no_overlap(load_qa_split(dataset), rows, f"the training data {dataset}", f"the held-out questions {used}")
    return sample_rows(rows, questions, seed=0), used


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Merge, export and check (see the module's docstring); bad input exits with a usage error, no traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    adapter_dir = Path(args.adapter_dir)
    name = args.name or adapter_dir.resolve().name
    try:
        from utils.export import check_free, output_paths

        if not (adapter_dir / "adapter_config.json").is_file():
            raise input_error(str(adapter_dir), "it has no adapter_config.json, so it is not a saved LoRA adapter",
                              "pass the folder notebook 04 (or python -m utils.cli.finetune) saved the adapter in")
        check_free(output_paths(args.out, name, args.quant), args.overwrite)  # before minutes of loading
        base = _base_id(adapter_dir, args.base)
        if args.questions < 0:
            raise input_error(f"--questions {args.questions}", "expected a number of questions >= 0",
                              "use e.g. --questions 32, or 0 to skip the task check")
        if args.margin is not None and not (math.isfinite(args.margin) and args.margin >= 0):
            raise input_error(f"--margin {args.margin}", "expected a number of F1 points >= 0", "use e.g. --margin 3")
        rows: list[dict[str, Any]] = []
        if args.verify and args.questions:  # the questions load (and leaks are refused) before minutes of loading
            rows, eval_source = held_out_rows(_trained_on(adapter_dir, args.eval_data), args.eval_data,
                                                 args.questions)
    except InputError as err:
        parser.error(str(err))

    import torch

    from utils.evaluation.qa import MAX_NEW_TOKENS, generate_answers, merge_adapter
    from utils.export import RELOADABLE, export_gguf, file_model, task_check, verify_gguf
    from utils.models import load_tokenizer
    from utils.qa.data import build_prompt, prompt_format

    has_tokenizer = (adapter_dir / "tokenizer_config.json").is_file()
    dtype = torch.float16 if torch.cuda.is_available() else torch.float32
    try:  # a missing base folder or a damaged adapter: our message, as a usage error
        tokenizer, _ = load_tokenizer(base, str(adapter_dir) if has_tokenizer else None)
        merged = merge_adapter(base, adapter_dir, dtype)
    except InputError as err:
        parser.error(str(err))
    fmt = prompt_format(tokenizer, merged)
    try:
        result = export_gguf(merged, tokenizer, args.out, args.quant, fmt, name=name, overwrite=args.overwrite)
    except InputError as err:
        parser.error(str(err))
    if args.verify:
        ids = tokenizer(build_prompt(SAMPLE["question"], SAMPLE["context"], fmt))["input_ids"]
        from_file = file_model(result["gguf"], merged)
        reloaded = from_file if result["architecture"] in RELOADABLE else None
        result["verify"] = verify_gguf(result["gguf"], merged, [ids], tokenizer, reloaded=reloaded)
        if rows:  # stdout holds the result's JSON line only: the progress goes to stderr
            answers = {}
            for which, model in (("merged model", merged), ("file's model", from_file)):
                print(f"task check: the {which} answers {len(rows)} held-out questions from {eval_source}",
                      file=sys.stderr, flush=True)
                answers[which] = generate_answers(model, tokenizer, rows, max_new_tokens=MAX_NEW_TOKENS, fmt=fmt,
                                                  progress=False)
            result["task"] = {"source": eval_source, **task_check(
                answers["file's model"], answers["merged model"], [r["answers"] for r in rows], args.margin)}
        del from_file, reloaded
    print(json.dumps(result), flush=True)
    failed = [k for k in ("verify", "task") if k in result and not result[k]["ok"]]
    if failed:
        raise SystemExit(f"{result['gguf']} did not pass the {' and the '.join(failed)} check against the merged "
                         f"model: {json.dumps({k: result[k] for k in failed})}")
    return result


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
