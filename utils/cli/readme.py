"""Keep the README's measured figures generated (see :mod:`utils.readme`).

    ./run.sh course && python -m utils.cli.readme record    # results/smoke_course.json from the run in outputs/
    python -m utils.cli.readme suite --seconds 409 --passed 483 [--note "emulated, no avx512_bf16"]
    python -m utils.cli.readme render                       # rewrite README.md's generated blocks
    python -m utils.cli.readme check                        # exit 1 if README.md is not what the records give

``render`` and ``check`` read every record the blocks quote (``utils.readme.load_records``: the smoke course run,
the suite runs and the committed GPU runs); a missing file or key stops them with the command that writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

from utils import readme
from utils.cli import make_parser
from utils.report import REPO_ROOT


def main(argv: list[str] | None = None) -> None:
    parser = make_parser("utils.cli.readme", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    record = sub.add_parser("record", help="record the key figures of a smoke course run")
    record.add_argument("--output", default=str(REPO_ROOT / "outputs"), help="the course run's output folder")
    suite = sub.add_parser("suite", help="append one measured ./run.sh test to results/suite_runs.jsonl")
    suite.add_argument("--seconds", type=float, required=True, help="the suite's wall time (run.sh prints it)")
    suite.add_argument("--passed", type=int, required=True, help="tests passed")
    suite.add_argument("--note", default="", help="anything else about the machine, e.g. an emulated CPU")
    suite.add_argument("--commit", help="the commit measured (default: HEAD)")
    suite.add_argument("--without-avx512-bf16", action="store_true",
                       help="the run emulated a CPU without avx512_bf16 (README: Tests)")
    sub.add_parser("render", help="rewrite README.md's generated blocks from results/")
    sub.add_parser("check", help="exit 1 if README.md's generated blocks differ from what results/ gives")
    args = parser.parse_args(argv)
    if args.command == "record":
        times_file = Path(args.output) / "course_times.json"
        if not times_file.is_file():
            raise SystemExit(f"{times_file} is missing: run the course first (./run.sh course).")
        times = json.loads(times_file.read_text())
        if len(times) < len(list((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))):
            raise SystemExit(f"{times_file} covers notebooks {sorted(times)} only: record a run of the whole course.")
        readme.COURSE_RECORD.write_text(json.dumps(readme.record_course(Path(args.output), times), indent=1) + "\n")
        print(f"wrote {readme.COURSE_RECORD}; now run: python -m utils.cli.readme render")
    elif args.command == "suite":
        if args.seconds <= 0 or args.passed <= 0:
            raise SystemExit("--seconds and --passed must be positive: copy them from ./run.sh test's last lines.")
        line = {**readme.machine(), "passed": args.passed, "seconds": args.seconds, "note": args.note}
        line["commit"] = args.commit or line["commit"]
        line["avx512_bf16"] = line["avx512_bf16"] and not args.without_avx512_bf16
        with readme.SUITE_RECORD.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"appended to {readme.SUITE_RECORD}; now run: python -m utils.cli.readme render")
    else:
        text = readme.README.read_text()
        new = readme.render(text, readme.render_blocks(readme.load_records()))
        if args.command == "render":
            readme.README.write_text(new)
            print(f"rendered {len(readme.block_names(new))} blocks into {readme.README}")
        elif new != text:
            raise SystemExit("README.md's generated blocks are out of date: python -m utils.cli.readme render")


if __name__ == "__main__":
    main()
