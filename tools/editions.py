"""The exercise section of the notebooks: its cell tags, their layout, and a check that every exercise works.

The notebooks in ``notebooks/`` are the **instructor edition**. Their ``## Exercises`` section holds,
for each exercise, three kinds of code cell, marked with cell tags:

``exercise``  the student's starting point, e.g. a function whose body is ``raise NotImplementedError``;
``solution``  the instructor's answer (redefines the same names);
``check``     calls a checker from :mod:`utils.exercises` (``nb01`` ... ``nb06``), which explains in plain words what is wrong.

A question the teacher marks by hand is a Markdown cell tagged ``manual`` (where the student writes; its metadata
``{"question": NAME, "points": P}``) followed by a Markdown ``solution`` cell (the model answer).

Classroom releases are built from these tags by otter-grader (:mod:`tools.classroom`). This module's command:

    python -m tools.editions verify [NN ...]                # every check fails on the empty exercise, passes on the solution
    python -m tools.editions publish [--repo URL] [--branch B]

``verify`` executes, for each notebook, the cells before the first heading (set-up, imports, parameters) and its
exercise section without the solutions, and requires every ``check`` cell to fail with
:class:`utils.exercises.common.CheckFailed` (the exercises are still empty); then it runs the instructor edition's
exercise section, in the same kernel, where every check must pass on the solution. (The test suite also executes
the instructor edition in full, under nbval.)

publish writes URL and branch (default: `git remote get-url origin` and the current branch) into publish.json,
every notebook's Colab cell (its first code cell) and the README's "Open in Colab" badges; a second run changes
nothing. A fork runs it once and commits the result. Colab opens notebooks from GitHub only: URL must be
https://github.com/OWNER/NAME (or its ssh form), public.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import nbformat

from utils.cli import make_parser
from utils.errors import InputError
from utils.notebooks import course_notebooks

EXERCISES_HEADING = "## Exercises"


def cell_tags(cell) -> list[str]:
    """A cell's tags (``exercise``, ``solution``, ``check``, ``parameters`` ...)."""
    return cell.get("metadata", {}).get("tags", [])


def exercise_start(nb) -> int:
    """Index of the markdown cell that opens the ``## Exercises`` section."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and EXERCISES_HEADING in cell.source:
            return i
    raise ValueError("the notebook has no '## Exercises' section")


def check_layout(nb, name: str = "notebook") -> None:
    """Raise ValueError unless exercise/solution/check cells sit in the exercise section, each
    solution directly follows an exercise cell, and every exercise is followed by a check."""
    start = exercise_start(nb)
    tagged = [(i, t) for i, c in enumerate(nb.cells) for t in cell_tags(c)
              if t in ("exercise", "solution", "check", "manual")]
    if not tagged:
        raise ValueError(f"{name}: no cells tagged 'exercise', 'solution' and 'check' in its exercise section")
    early = [i for i, _ in tagged if i < start]
    if early:
        raise ValueError(f"{name}: cells {early} are tagged exercise/solution/check before '{EXERCISES_HEADING}'")
    kinds = [t for _, t in tagged]
    for i, kind in enumerate(kinds):
        if kind == "solution" and (i == 0 or kinds[i - 1] not in ("exercise", "manual")):
            raise ValueError(f"{name}: a 'solution' cell must directly follow its 'exercise' (or 'manual') cell")
        if kind == "manual" and kinds[i + 1 : i + 2] != ["solution"]:
            raise ValueError(f"{name}: a 'manual' cell needs its model answer, a 'solution' cell, right after it")
        if kind == "exercise" and "check" not in kinds[i + 1 : i + 3]:
            raise ValueError(f"{name}: every 'exercise' needs a 'check' cell after its solution")


def student_edition(nb):
    """A copy of ``nb`` without its ``solution`` cells (outputs cleared)."""
    check_layout(nb)
    student = copy.deepcopy(nb)
    student.cells = [c for c in student.cells if "solution" not in cell_tags(c)]
    for cell in student.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    student.metadata["edition"] = "student"
    return student


def has_exercises(path: Path) -> bool:
    """Whether the notebook has cells tagged ``exercise``."""
    nb = nbformat.read(str(path), as_version=4)
    return any("exercise" in cell_tags(c) for c in nb.cells)


def build(out_dir: Path, notebooks: list[Path] | None = None) -> list[Path]:
    """Write each notebook (default: those with exercises) without its solution cells to ``out_dir`` (what
    :func:`verify_many` runs); returns the notebooks written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks or [p for p in course_notebooks() if has_exercises(p)]:
        nb = nbformat.read(str(path), as_version=4)
        check_layout(nb, path.name)
        target = out_dir / path.name
        nbformat.write(student_edition(nb), str(target))
        written.append(target)
    return written


def setup_end(nb) -> int:
    """Index of the notebook's first ``## `` heading: the cells before it are its set-up (Colab cell, imports,
    versions, parameters), which the exercise section needs."""
    return next(i for i, c in enumerate(nb.cells) if i > 0 and c.cell_type == "markdown"
                and c.source.lstrip().startswith("## "))


def _setup_and_exercises(path: Path) -> list:
    """A notebook's code and markdown cells before its first ``## `` heading, then its whole exercise section."""
    nb = nbformat.read(str(path), as_version=4)
    return nb.cells[:setup_end(nb)] + nb.cells[exercise_start(nb):]


def verify(student_path: Path, instructor_path: Path | None = None, timeout: int = 600) -> dict[str, int]:
    """Check one student notebook (see :func:`verify_many`); returns its counts."""
    return verify_many([student_path], [instructor_path] if instructor_path else None, timeout)[student_path.name]


def verify_many(student_paths: list[Path], instructor_paths: list[Path] | None = None,
                timeout: int = 1200) -> dict[str, dict[str, int]]:
    """Check student notebooks: each one's set-up and exercise cells run, and every check fails with
    CheckFailed (the exercises are empty); then the exercise section of its instructor edition (default: the
    course notebook of the same name) runs, where every check must pass on the solution.

    All notebooks run one after another in a single kernel, so the imports are paid once; each notebook's
    set-up cells run again first, so its own parameters and ``checks`` module are the ones in force.

    Returns:
        ``{notebook name: {"checks": n, "failed_as_expected": n, "passed_with_solution": n}}``; raises
        AssertionError naming the notebook and cell otherwise.
    """
    from nbclient import NotebookClient

    instructor_paths = instructor_paths or [next(p for p in course_notebooks() if p.name == s.name)
                                            for s in student_paths]
    parts, cells = [], []
    for student_path, instructor_path in zip(student_paths, instructor_paths, strict=True):
        student = _setup_and_exercises(student_path)
        instructor_nb = nbformat.read(str(instructor_path), as_version=4)
        instructor = instructor_nb.cells[exercise_start(instructor_nb):]
        parts.append((student_path.name, instructor_path.name, len(cells), len(student), len(instructor)))
        cells += copy.deepcopy(student + instructor)
    nb = nbformat.read(str(student_paths[0]), as_version=4)
    nb.cells = cells
    NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(student_paths[0].parent)}}).execute()
    ran = [(c, [o for o in c.get("outputs", []) if o.output_type == "error"]) for c in nb.cells]
    results = {}
    for name, instructor_name, start, n_student, n_instructor in parts:
        checks = failed = passed = 0
        for cell, errors in [r for r in ran[start:start + n_student] if r[0].cell_type == "code"]:
            if "check" in cell_tags(cell):
                checks += 1
                if errors and errors[0].ename == "CheckFailed":
                    failed += 1
                else:
                    raise AssertionError(f"{name}: a check passed or crashed on an empty exercise:\n{cell.source}\n"
                                         f"{errors[0].ename + ': ' + errors[0].evalue if errors else 'no error'}")
            elif errors:
                raise AssertionError(f"{name}: cell failed in the student edition:\n{cell.source}\n"
                                     f"{errors[0].ename}: {errors[0].evalue}")
        instructor_cells = ran[start + n_student:start + n_student + n_instructor]
        for cell, errors in [r for r in instructor_cells if r[0].cell_type == "code"]:
            if errors:
                raise AssertionError(f"{instructor_name}: with the solutions, this cell failed:\n{cell.source}\n"
                                     f"{errors[0].ename}: {errors[0].evalue}")
            passed += "check" in cell_tags(cell)
        results[name] = {"checks": checks, "failed_as_expected": failed, "passed_with_solution": passed}
    return results

def main(argv: list[str] | None = None) -> None:
    parser = make_parser("tools.editions", __doc__)
    parser.add_argument("action", choices=["verify", "publish"],
                        help="verify: check every exercise; publish: point Colab cells and badges at a repo")
    parser.add_argument("notebooks", nargs="*", help="verify: number prefixes (default: every notebook with exercises)")
    parser.add_argument("--repo", help="publish: https://github.com/OWNER/NAME (default: git remote origin)")
    parser.add_argument("--branch", help="publish: the branch Colab opens (default: the current branch)")
    args = parser.parse_args(argv)
    if args.action == "publish":
        from tools import publish

        try:
            repo = publish.github_url(args.repo) if args.repo else publish.default_repo()
            branch = args.branch or publish.default_branch()
            changed = publish.publish(repo, branch)
        except InputError as err:
            raise SystemExit(f"publish: {err}") from None
        print(f"published for {repo} (branch {branch}): "
              + (", ".join(str(p.relative_to(publish.REPO_ROOT)) for p in changed) or "nothing to change"))
        return
    with tempfile.TemporaryDirectory() as tmp:
        written = build(Path(tmp), course_notebooks(args.notebooks) if args.notebooks else None)
        for name, result in verify_many(written).items():
            print(f"{name}: {result['failed_as_expected']}/{result['checks']} checks fail on the empty exercises, "
                  f"{result['passed_with_solution']}/{result['checks']} pass with the solutions", flush=True)


if __name__ == "__main__":
    main()
