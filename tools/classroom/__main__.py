"""``python -m tools.classroom``: release, publish, grade and export (see :mod:`tools.classroom`)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from tools import classroom
from utils.cli import make_parser
from utils.errors import InputError
from utils.notebooks import course_notebooks


def _time(text: str) -> datetime:
    from tools.classroom.grade import _parse_time

    try:
        return _parse_time(text, "--due")
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _number(low: float, kind: type = float):
    """An argparse type: a number of ``kind`` at least ``low``, else a message that says so."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is below {low:g}")
        return value
    return parse


def parser():
    p = make_parser("tools.classroom", classroom.__doc__)
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("release", help="build the student release and the autograder (otter assign)")
    r.add_argument("out", type=Path, help="a new folder: OUT/student, OUT/autograder")
    r.add_argument("notebooks", nargs="*", help="number prefixes, e.g. 01 03 (default: every notebook with exercises)")
    r.add_argument("--repo", required=True, help="the GitHub repository students clone: https://github.com/OWNER/NAME")
    r.add_argument("--branch", default="main", help="its branch (default: main)")
    u = sub.add_parser("publish", help="push OUT/student as a commit to the students' repository")
    u.add_argument("student", type=Path, help="OUT/student")
    u.add_argument("--push-to", required=True, help="a git URL (or path) you can push to")
    u.add_argument("--branch", default="main")
    g = sub.add_parser("grade", help="grade the submissions in a sandbox")
    g.add_argument("submissions", type=Path)
    g.add_argument("--release", type=Path, required=True, help="the folder `release` wrote")
    g.add_argument("--out", type=Path, required=True, help="a folder for the grades")
    g.add_argument("--due", type=_time, help="the deadline, ISO 8601 with its offset: 2026-12-01T23:59+01:00")
    g.add_argument("--late-penalty", type=_number(0), default=0.0, help="percent off per started day late (default 0)")
    g.add_argument("--times", type=Path, help="CSV student,submitted_at (where there is no timestamp.txt)")
    g.add_argument("--sandbox", choices=("bwrap", "process"), help="default: bwrap where installed (see README)")
    g.add_argument("--time-limit", type=_number(1), default=300.0, help="seconds per cell and per test (default 300)")
    g.add_argument("--jobs", type=_number(1, int), default=1, help="submissions graded at once (default 1)")
    g.add_argument("--overwrite", action="store_true", help="replace grades already in --out")
    e = sub.add_parser("export", help="write the totals for a gradebook")
    e.add_argument("grades", type=Path, help="the --out folder of grade")
    e.add_argument("--format", required=True, choices=("canvas", "gradescope", "plain"))
    e.add_argument("--roster", type=Path, help="the roster CSV exported from Canvas or Gradescope")
    e.add_argument("--assignment", help="Canvas: the assignment's column name")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--overwrite", action="store_true")
    e.add_argument("--unmarked-as-zero", action="store_true", help="count manual answers without a score as 0")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.action == "release":
            from tools.classroom.release import build_release

            made = build_release(args.out, args.repo, args.branch,
                                 course_notebooks(args.notebooks) if args.notebooks else None)
            print(f"student release: {made['student']} (commit it to {args.repo}, branch {args.branch}: "
                  f"python -m tools.classroom publish {made['student']} --push-to ...)\n"
                  f"autograder: {made['autograder']} (keep it private)")
        elif args.action == "publish":
            from tools.classroom.publish_student import publish

            print(f"pushed {publish(args.student, args.push_to, args.branch)} to {args.push_to} ({args.branch})")
        elif args.action == "grade":
            from tools.classroom.grade import grade, read_times

            def progress(result) -> None:
                note = f" ({result.note})" if result.note else ""
                print(f"{result.submission.student}/{result.submission.notebook}: {result.score:g} of "
                      f"{result.possible:g}{note}", flush=True)

            from tools.classroom import sandbox

            if (args.sandbox or sandbox.default_mode()) == "process":
                print("warning: --sandbox process: each notebook runs as you, and can read and change your files "
                      "(keys, grades, this checkout). Use it for practice rounds, never for marks (README).",
                      file=sys.stderr)
            results, skipped = grade(args.submissions, args.release, args.out, args.due, args.late_penalty,
                                     args.sandbox, args.time_limit, args.jobs, args.overwrite, read_times(args.times),
                                     progress)
            for line in skipped:
                print(f"skipped {line}", file=sys.stderr)
            print(f"graded {len(results)} notebooks: {args.out}/totals.csv, questions.csv, summary.csv, feedback/")
        else:
            from tools.classroom.gradebook import export

            n = export(args.grades, args.format, args.out, args.roster, args.assignment, args.overwrite,
                       args.unmarked_as_zero)
            print(f"wrote {args.out}: {n} students")
    except InputError as err:
        print(f"python -m tools.classroom {args.action}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
