"""Notebook 04's QLoRA training as a command, for long runs, rank sweeps and several GPUs.

    python -m utils.cli.finetune --output-dir outputs/phi2-qa-adapter             # one GPU (or CPU in smoke)
    python -m utils.cli.finetune --preset assignment --lora-rank 8 --output-dir ...
    accelerate launch --num_processes 2 -m utils.cli.finetune --output-dir ...    # data-parallel on 2 GPUs

It runs the same code as the notebook (``utils.qa``, ``utils.models``). Every setting of
:class:`utils.qa.config.QAConfig` is a flag (``lora_rank`` -> ``--lora-rank``); a flag you leave out takes
the preset's value, else the profile's default, exactly as a notebook parameter left at None does.
Under ``accelerate launch`` each process loads its own 4-bit copy on its own GPU, trains on its share
of every batch, and gradients are averaged (DDP); ``--batch-size`` is per process. The main process
saves the adapter and ``training_params.json`` (the settings, and the run's world size, steps, time and
losses), which notebook 05 reads.

Nothing is lost: an --output-dir that holds an earlier run's adapter or checkpoints is refused (a usage error)
unless you pass --overwrite (start again there) or --resume (continue that run from its newest checkpoint,
with the same settings but for --max-steps, --logging-steps and --save-steps):

    python -m utils.cli.finetune --output-dir outputs/run1 --resume          # after an interruption
    python -m utils.cli.finetune --output-dir outputs/run1 --resume --max-steps 200   # train it further
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing
from typing import Any

from utils.cli import make_parser, value_argument
from utils.errors import InputError
from utils.qa.config import PRESETS, QAConfig
from utils.run_mode import get_profile


def _flag_type(hint: Any) -> dict[str, Any]:
    """argparse keywords for a QAConfig field's type: lists take several values, the rest one literal."""
    if typing.get_origin(hint) is tuple:
        return {"nargs": "+", "metavar": "NAME"}
    if hint is bool:
        return {"type": value_argument, "metavar": "True|False"}
    return {"type": value_argument if hint in (int, float) or typing.get_origin(hint) is dict else str}


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from :class:`QAConfig`'s fields (default None: "not set"), plus the run's own."""
    parser = make_parser("utils.cli.finetune", __doc__)
    parser.add_argument("--preset", default="course", choices=PRESETS, help="settings preset (default: course)")
    group = parser.add_argument_group("QA settings (left out: the preset's value, else the profile's default)")
    hints = typing.get_type_hints(QAConfig)
    for f in dataclasses.fields(QAConfig):
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, help=f.metadata["help"],
                           **_flag_type(hints[f.name]))
    parser.add_argument("--output-dir", required=True, help="where the adapter (and checkpoints/) go")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in it")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run's adapter and checkpoints there (refused without this)")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, QAConfig]:
    """The command line as ``(args, config)``; a setting the config rejects, or an output folder that cannot be
    used (an earlier run's results without --overwrite or --resume, a file, not writable:
    :func:`utils.qa.run_folder.check_output_dir`), is a usage error naming it (exit status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    explicit = {name: getattr(args, name) for name in QAConfig.field_names()}
    try:
        config = QAConfig.resolve(get_profile(), args.preset, **explicit)
        from utils.qa.run_folder import check_output_dir

        check_output_dir(args.output_dir, config, resume=args.resume, overwrite=args.overwrite)
    except InputError as err:
        parser.error(str(err))
    return args, config


def main(argv: list[str] | None = None) -> dict:
    """Train (see the module's docstring); bad input exits with a usage error, without a traceback."""
    args, config = parse_args(argv)
    import torch

    from utils.qa import training

    try:
        run = training.train_qa(config, args.output_dir, resume=args.resume, overwrite=args.overwrite,
                                profile=get_profile(), preset=args.preset)
    except InputError as err:  # found once the tokenizer is there (max_length), or the folder changed meanwhile
        build_parser().error(str(err))
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps({k: v for k, v in run.items() if k != "losses"}), flush=True)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return run


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
