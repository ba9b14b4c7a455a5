"""Execute the course notebooks in order with papermill (the README's "run the course" command).

    python -m utils.cli.course                      # every notebook, profile from $QLORA_PROFILE
    python -m utils.cli.course 01 02 -p SEED 1      # some notebooks, with a parameter overridden

Executed notebooks go to ``<output>/notebooks/``; each notebook writes its key figures as
``<output>/<notebook>.json`` (see :mod:`utils.paths`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from utils.cli import add_parameter_option, make_parser, parse_value
from utils.errors import InputError
from utils.notebooks import check_parameters, course_notebooks, run_notebook
from utils.paths import REPO_ROOT


def main(argv: list[str] | None = None) -> None:
    parser = make_parser("utils.cli.course", __doc__)
    parser.add_argument("notebooks", nargs="*", help="number prefixes to run (default: all), e.g. 01 02")
    parser.add_argument("--output", default=str(REPO_ROOT / "outputs"), help="output folder")
    add_parameter_option(parser, "override a parameters-cell constant, e.g. -p LORA_RANK 16")
    args = parser.parse_args(argv)
    try:
        parameters = {name: parse_value(value, f"-p {name}") for name, value in args.parameter}
    except InputError as err:
        raise SystemExit(f"python -m utils.cli.course: {err}") from None
    notebooks = course_notebooks(args.notebooks)
    for notebook in notebooks:  # fail before running anything if a parameter is unknown
        try:
            check_parameters(notebook, parameters)
        except ValueError as err:
            raise SystemExit(str(err)) from None
    times = {}
    for notebook in notebooks:
        start = time.perf_counter()
        executed = run_notebook(notebook, Path(args.output), parameters)
        times[notebook.name[:2]] = time.perf_counter() - start
        print(f"{notebook.name}: {times[notebook.name[:2]]:.0f} s -> {executed}", flush=True)
    # the README's course map reads these (python -m tools.readme record); a partial run records its part
    (Path(args.output) / "course_times.json").write_text(json.dumps(times, indent=1) + "\n")


if __name__ == "__main__":
    main()
