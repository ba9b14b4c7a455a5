"""Build and verify the student edition of the notebooks (see :mod:`utils.exercises.editions`), and publish
the course: point every Colab cell and badge at a repository (see :mod:`utils.publish`).

    python -m utils.cli.editions build  outputs/student          # write the student edition
    python -m utils.cli.editions verify outputs/student          # and check it (also run by the tests)
    python -m utils.cli.editions publish [--repo URL] [--branch B]

publish writes URL and branch (default: `git remote get-url origin` and the current branch) into publish.json,
every notebook's Colab cell (its first code cell) and the README's "Open in Colab" badges; a second run changes
nothing. A fork runs it once and commits the result. Colab opens notebooks from GitHub only: URL must be
https://github.com/OWNER/NAME (or its ssh form), public.

build also writes DIR/README.md with one badge per student notebook, for the edition published at DIR inside
the repository (DIR relative to the repository root, e.g. `build student`; commit DIR, and its badges open the
student notebooks). Pass --path-in-repo P when DIR is outside the repository and will be committed at P.
"""

from __future__ import annotations

from pathlib import Path

from utils.cli import make_parser
from utils.errors import InputError
from utils.exercises.editions import build, verify
from utils.notebooks import course_notebooks


def _path_in_repo(out_dir: Path, given: str | None) -> str:
    from utils.publish import REPO_ROOT

    if given:
        return given.strip("/")
    try:
        return out_dir.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return "student"  # outside the repository: badges assume it is committed as student/


def main(argv: list[str] | None = None) -> None:
    parser = make_parser("utils.cli.editions", __doc__)
    parser.add_argument("action", choices=["build", "verify", "publish"],
                        help="build: write; verify: build and check; publish: point Colab cells and badges at a repo")
    parser.add_argument("out_dir", type=Path, nargs="?", help="folder for the student edition (build, verify)")
    parser.add_argument("notebooks", nargs="*", help="number prefixes (default: every notebook with exercises)")
    parser.add_argument("--repo", help="publish: https://github.com/OWNER/NAME (default: git remote origin)")
    parser.add_argument("--branch", help="publish: the branch Colab opens (default: the current branch)")
    parser.add_argument("--path-in-repo", help="build: where DIR is committed, relative to the repository root")
    args = parser.parse_args(argv)
    if args.action == "publish":
        from utils import publish

        try:
            repo = publish.github_url(args.repo) if args.repo else publish.default_repo()
            branch = args.branch or publish.default_branch()
            changed = publish.publish(repo, branch)
        except InputError as err:
            raise SystemExit(f"publish: {err}") from None
        print(f"published for {repo} (branch {branch}): "
              + (", ".join(str(p.relative_to(publish.REPO_ROOT)) for p in changed) or "nothing to change"))
        return
    if args.out_dir is None:
        parser.error(f"{args.action} needs the student edition's folder, e.g. `{args.action} outputs/student`")
    written = build(args.out_dir, course_notebooks(args.notebooks) if args.notebooks else None,
                    path_in_repo=_path_in_repo(args.out_dir, args.path_in_repo))
    for path in written:
        line = f"{path}"
        if args.action == "verify":
            result = verify(path)
            line += (f": {result['failed_as_expected']}/{result['checks']} checks fail on the empty exercises, "
                     f"{result['passed_with_solution']}/{result['checks']} pass with the solutions")
        print(line, flush=True)


if __name__ == "__main__":
    main()
