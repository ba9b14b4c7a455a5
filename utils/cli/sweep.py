"""Re-run a notebook over a grid of parameters and collect its results (see :mod:`utils.experiments.sweep`).

    python -m utils.cli.sweep notebooks/03_lora_rank_ablation.ipynb --ranks 4 8
    python -m utils.cli.sweep notebooks/03_lora_rank_ablation.ipynb --grid LORA_RANKS '[4]' '[8, 16]' \\
        --grid SEEDS '[0]' '[1]' -p EPOCHS 3 --output outputs/sweep_r4_r8

Re-running into the same --output keeps every earlier result:
  - a point whose run finished is skipped; --force re-runs it and keeps the old run folder
    as runs/<run>.old-<YYYYmmdd-HHMMSS>/ (nothing is deleted);
  - a failed or interrupted run is tried again;
  - sweep_results.csv/.json, sweep_summary.csv and sweep_plot.png cover every finished run in
    runs/ (earlier sweeps' and this one's), rebuilt each time from the same rows: never stale.
  For a separate table, give a new --output. One folder holds one notebook's sweeps.

Everything (notebook, parameter names and values, repeated points, the output folder) is checked
before the first run; a problem is printed with its fix and the command exits 2. It exits 1 if a
run failed (the others still run), else 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from utils.cli import add_parameter_option, make_parser, parse_value
from utils.errors import InputError, input_error
from utils.experiments.sweep import check_name, expand_grid, run_sweep
from utils.paths import REPO_ROOT


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("utils.cli.sweep", __doc__)
    parser.add_argument("notebook", type=Path, help="the notebook to run, e.g. notebooks/03_lora_rank_ablation.ipynb")
    parser.add_argument("--ranks", nargs="+", type=int, metavar="R",
                        help="one run per rank: shorthand for --grid LORA_RANKS '[R1]' '[R2]' ...")
    parser.add_argument("--grid", nargs="+", action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a parameter and the values to sweep (Python literals); repeat to multiply grids")
    add_parameter_option(parser, "a parameter fixed for every run, e.g. -p EPOCHS 3")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "outputs" / "sweep",
                        help="sweep folder; a re-run adds to it (default: outputs/sweep)")
    parser.add_argument("--results-name", default=None,
                        help="name the notebook gives save_results (default: the one it passes, else its file stem)")
    parser.add_argument("--force", action="store_true",
                        help="re-run points whose run finished; each old run folder is kept as runs/<run>.old-<time>/")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[dict[str, Any]]]:
    """Parse the command line into its options and the list of parameter points.

    Raises:
        InputError: a grid or parameter that is malformed (see :func:`main` for the exit code).
        SystemExit: argparse's own errors (an unknown option, a rank that is not an integer), exit code 2.
    """
    args = build_parser().parse_args(argv)
    grid: dict[str, list[Any]] = {}
    for entry in args.grid:
        name = check_name(entry[0])
        if len(entry) < 2:
            raise input_error(f"--grid {name}", "no values given",
                              f"give at least one value, e.g. --grid {name} '[4]' '[8]'")
        if name in grid:
            raise input_error(f"--grid {name}", "given twice", f"list all its values in one --grid {name}")
        grid[name] = [parse_value(v, f"--grid {name}") for v in entry[1:]]
    if args.ranks:
        if "LORA_RANKS" in grid:
            raise input_error("--ranks and --grid LORA_RANKS", "both set the ranks",
                              "give the ranks one way, not both: --ranks 4 8 or --grid LORA_RANKS '[4]' '[8]'")
        bad = [r for r in args.ranks if r <= 0]
        if bad:
            raise input_error("--ranks", f"ranks must be positive integers, got {bad}", "give e.g. --ranks 4 8 16")
        grid["LORA_RANKS"] = [[r] for r in args.ranks]
    fixed: dict[str, Any] = {}
    for name, value in args.parameter:
        if check_name(name) in fixed:
            raise input_error(f"-p {name}", "given twice", f"give it once, or sweep it: --grid {name} V1 V2")
        fixed[name] = parse_value(value, f"-p {name}")
    return args, expand_grid(grid, fixed)


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; 0 if every run finished, 1 if one failed, 2 for bad input (message on stderr)."""
    try:
        args, points = parse_args(argv)
        result = run_sweep(args.notebook, points, args.output, results_name=args.results_name, force=args.force,
                           progress=lambda line: print(line, flush=True))
    except InputError as err:
        print(f"python -m utils.cli.sweep: error: {err}", file=sys.stderr)
        return 2
    print(f"\n{len(result.executed)} run(s) executed, {len(result.skipped)} skipped, {len(result.failed)} failed; "
          f"{len(result.rows)} row(s) in the table"
          + (f" (with {len(result.earlier)} run(s) of earlier sweeps)" if result.earlier else ""))
    for rid, aside in result.replaced.items():
        print(f"  earlier results of {rid} kept in {aside}")
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
