"""Build and verify the student edition of the notebooks (see :mod:`utils.exercises.editions`).

    python -m utils.cli.editions build  outputs/student          # write the student edition
    python -m utils.cli.editions verify outputs/student          # and check it (also run by the tests)
"""

from __future__ import annotations

from pathlib import Path

from utils.cli import make_parser
from utils.exercises.editions import build, verify
from utils.notebooks import course_notebooks


def main(argv: list[str] | None = None) -> None:
    parser = make_parser("utils.cli.editions", __doc__)
    parser.add_argument("action", choices=["build", "verify"], help="build: write; verify: build and check")
    parser.add_argument("out_dir", type=Path, help="folder for the student edition")
    parser.add_argument("notebooks", nargs="*", help="number prefixes (default: every notebook with exercises)")
    args = parser.parse_args(argv)
    written = build(args.out_dir, course_notebooks(args.notebooks) if args.notebooks else None)
    for path in written:
        line = f"{path}"
        if args.action == "verify":
            result = verify(path)
            line += (f": {result['failed_as_expected']}/{result['checks']} checks fail on the empty exercises, "
                     f"{result['passed_with_solution']}/{result['checks']} pass with the solutions")
        print(line, flush=True)


if __name__ == "__main__":
    main()
