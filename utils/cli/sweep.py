"""Re-run a notebook over a grid of parameters and collect its results (see :mod:`utils.experiments.sweep`).

    python -m utils.cli.sweep notebooks/03_lora_rank_ablation.ipynb --ranks 4 8
    python -m utils.cli.sweep notebooks/03_lora_rank_ablation.ipynb --grid LORA_RANKS '[4]' '[8, 16]' \\
        --grid SEEDS '[0]' '[1]' -p EPOCHS 3 --output outputs/sweep_r4_r8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from utils.cli import add_parameter_option, make_parser, parse_value
from utils.experiments.sweep import _check_name, expand_grid, run_sweep
from utils.report import REPO_ROOT


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("utils.cli.sweep", __doc__)
    parser.add_argument("notebook", type=Path, help="the notebook to run, e.g. notebooks/03_lora_rank_ablation.ipynb")
    parser.add_argument("--ranks", nargs="+", type=int, metavar="R",
                        help="one run per rank: shorthand for --grid LORA_RANKS '[R1]' '[R2]' ...")
    parser.add_argument("--grid", nargs="+", action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a parameter and the values to sweep (Python literals); repeat to multiply grids")
    add_parameter_option(parser, "a parameter fixed for every run, e.g. -p EPOCHS 3")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "outputs" / "sweep", help="sweep folder")
    parser.add_argument("--results-name", default=None,
                        help="name the notebook gives save_results (default: the notebook's file stem)")
    parser.add_argument("--force", action="store_true", help="re-run points whose results already exist")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[dict[str, Any]]]:
    """Parse the command line into its options and the list of parameter points."""
    parser = build_parser()
    args = parser.parse_args(argv)
    grid: dict[str, list[Any]] = {}
    try:
        for entry in args.grid:
            if len(entry) < 2:
                parser.error(f"--grid {entry[0]} needs at least one value, e.g. --grid {entry[0]} '[4]' '[8]'")
            grid[_check_name(entry[0])] = [parse_value(v) for v in entry[1:]]
        if args.ranks:
            if "LORA_RANKS" in grid:
                parser.error("give the ranks either with --ranks or with --grid LORA_RANKS, not both")
            bad = [r for r in args.ranks if r <= 0]
            if bad:
                parser.error(f"--ranks must be positive integers, got {bad}")
            grid["LORA_RANKS"] = [[r] for r in args.ranks]
        fixed = {_check_name(name): parse_value(value) for name, value in args.parameter}
        points = expand_grid(grid, fixed)
    except ValueError as err:
        parser.error(str(err))
    return args, points


def main(argv: list[str] | None = None) -> int:
    args, points = parse_args(argv)
    result = run_sweep(args.notebook, points, args.output, results_name=args.results_name, force=args.force,
                       progress=lambda line: print(line, flush=True))
    print(f"\n{len(result.executed)} run(s) executed, {len(result.skipped)} skipped, {len(result.failed)} failed; "
          f"{len(result.rows)} row(s) in the table")
    for kind, path in result.files.items():
        print(f"  {kind:8s} {path}")
    if result.failed:
        print("failed runs:", file=sys.stderr)
        for rid, message in result.failed.items():
            print(f"  {rid}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
