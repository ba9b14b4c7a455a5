"""A trained QA adapter as one GGUF file for llama.cpp, Ollama and LM Studio, checked by reloading it.

    python -m utils.cli.export outputs/phi-2-qa-adapter --out outputs/gguf               # q8_0 (8.5 bits/weight)
    python -m utils.cli.export outputs/phi-2-qa-adapter --out outputs/gguf --quant f16
    ollama create phi2-qa -f outputs/gguf/phi-2-qa-adapter.q8_0.Modelfile && ollama run phi2-qa

(``outputs/<model name>-qa-adapter`` is where notebook 04 saves the adapter of that base model:
``utils.qa.storage.default_adapter_dir``; the smoke profile's is ``outputs/SmolLM2-135M-Instruct-qa-adapter``.)

It loads the base model that the adapter's training_params.json names (or --base) unquantized (float32 on a CPU,
float16 on a GPU), applies the adapter with peft and merges it in (utils.evaluation.qa.merge_adapter), writes
<name>.<quant>.gguf and an Ollama Modelfile that prompts as the adapter was trained (utils.export.export_gguf), then
checks the file against the merged model (utils.export.verify_gguf) and prints one JSON line. A file already there
is refused (a usage error) unless you pass --overwrite. The exit status is 1 if the check fails.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from utils.cli import make_parser
from utils.errors import InputError, input_error

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
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip the reload check")
    return parser


def _base_id(adapter_dir: Path, base: str | None) -> str:
    """``--base``, else the model id in the adapter's training_params.json."""
    if base:
        return base
    from utils.qa.config import PARAMS_FILE
    from utils.qa.run_folder import read_training_params

    if not (adapter_dir / PARAMS_FILE).is_file():
        raise input_error(str(adapter_dir), f"it has no {PARAMS_FILE} naming the base model", "pass --base MODEL_ID")
    return read_training_params(adapter_dir)[0].model_id


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
    except InputError as err:
        parser.error(str(err))

    import torch

    from utils.evaluation.qa import merge_adapter
    from utils.export import export_gguf, verify_gguf
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
        result["verify"] = verify_gguf(result["gguf"], merged, [ids], tokenizer)
    print(json.dumps(result), flush=True)
    if args.verify and not result["verify"]["ok"]:
        raise SystemExit(f"{result['gguf']} did not pass the check against the merged model: {result['verify']}")
    return result


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
