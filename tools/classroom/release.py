"""The classroom release: otter-grader's assignments built from the course's tagged notebooks.

The notebooks in ``notebooks/`` are the instructor edition. In each ``## Exercises`` section, an exercise is three
code cells, marked with cell tags: ``exercise`` (the student's starting point), ``solution`` (the answer) and
``check`` (``checks.check_<name>(<variable>)``, a checker of :mod:`utils.exercises`). :func:`otter_master` turns such a
notebook into otter-grader's *assign* format, where each exercise is a question with

- a **public test** (the checker on the inputs the student's notebook shows; ``grader.check("<name>")`` runs it at
  home, in Colab too), and
- a **hidden test** (the same checker with ``hidden=True``: other inputs, the student never sees them), or, for a
  multiple-choice question, the answer against ``answers/`` (the student edition has no answer key),

with points from :data:`POINTS`. ``otter assign`` (the library) then writes the student notebook (solutions removed,
``grader.check`` cells) and the autograder (public and hidden tests, otter's zip for Gradescope or ``otter grade``).
:func:`build_release` adds what a student's Colab clone needs around the student notebooks (``utils``, ``data``,
requirements; no instructor notebook, answer key, tool or test) and checks that no solution is left in it.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat

from tools import publish
from tools.editions import cell_tags, check_layout, exercise_start, has_exercises, setup_end
from utils.errors import input_error
from utils.lock import locked_versions
from utils.notebooks import course_notebooks
from utils.paths import REPO_ROOT

# Points per test: a function exercise's public test (the inputs the notebook shows) and hidden test (others); a
# value exercise has one test; a multiple-choice question's public test only says the answer is one of the options.
POINTS = {"function": {"public": 1, "hidden": 2}, "value": {"public": 2}, "choice": {"public": 0, "hidden": 1}}
MANUAL_FILE = "manual.json"  # autograder/<notebook>/manual.json: the questions the teacher marks by hand
CHECK_CALL = re.compile(r"^checks\.(?P<checker>check_\w+)\((?P<arg>[A-Za-z_]\w*)\)\s*$")
# What a student's clone holds besides the student notebooks (relative to the repository root)
STUDENT_FILES = ("utils", "data", "requirements.txt", "requirements-lock.txt", "requirements-nodeps.txt",
                 "pyproject.toml", "run.sh", ".gitignore")
CHECKS_DIR = "checks"  # the student release's public tests: checks/<notebook stem>/<question>.py
ANSWERS_DIR = "answers"  # the instructor edition's answer keys (multiple choice): never in the release


@dataclass(frozen=True)
class Question:
    """One exercise of a notebook, as otter sees it."""

    name: str  # the checker's name without ``check_``, e.g. ``absmax_int4``: otter's question name
    module: str  # ``nb01``: the checker module in :mod:`utils.exercises`
    checker: str  # ``check_absmax_int4``
    variable: str  # the name the check reads from the student's notebook, e.g. ``absmax_int4``
    kind: str  # "function", "value", "choice" (a key of :data:`POINTS`) or "manual" (the teacher marks it)
    exercise: str  # the exercise cell's source (the student's starting point)
    solution: str  # the solution cell's source (a manual question's: the model answer)
    manual_points: float = 0.0  # a manual question's points (its cell's metadata)


def questions(nb, name: str = "notebook") -> list[Question]:
    """The exercises of an instructor notebook, in order. Raises InputError naming the cell when an exercise's check
    cell is not ``checks.check_<name>(<variable>)``."""
    check_layout(nb, name)
    module = "nb" + name[:2]
    cells = nb.cells[exercise_start(nb):]
    found = []
    for i, cell in enumerate(cells):
        if "manual" in cell_tags(cell):
            found.append(Question(cell.metadata["question"], module, "", "", "manual", cell.source, cells[i + 1].source,
                                  float(cell.metadata["points"])))
            continue
        if "exercise" not in cell_tags(cell):
            continue
        solution, check = cells[i + 1], cells[i + 2]
        match = CHECK_CALL.match(check.source.strip())
        if match is None:
            raise input_error(f"{name}, check cell {check.get('id', '?')}",
                              f"{check.source.strip()[:80]!r} is not one call of a checker",
                              "write it as `checks.check_<name>(<variable>)`")
        kind = ("choice" if match["checker"].startswith("check_why_")
                else "function" if cell.source.lstrip().startswith("def ") else "value")
        found.append(Question(match["checker"].removeprefix("check_"), module, match["checker"], match["arg"], kind,
                              cell.source, solution.source))
    return found


def test_source(q: Question, hidden: bool) -> str:
    """One otter test case (exception-based) for ``q``: the checker, imported afresh from the course, on the
    student's ``q.variable``."""
    option = {"function": ", hidden=True", "choice": ", graded=True", "value": ""}[q.kind] if hidden else ""
    points = POINTS[q.kind]["hidden" if hidden else "public"]
    message = ('success_message: "your answer is one of the options; your teacher\'s grader checks whether it is '
               'the right one"\n' if q.kind == "choice" and not hidden else "")
    return (f'""" # BEGIN TEST CONFIG\npoints: {points}\nhidden: {str(hidden).lower()}\n{message}""" # END TEST CONFIG\n'
            f"def test_{'hidden' if hidden else 'public'}({q.variable}):\n"
            f"    from utils.exercises import {q.module}\n\n"
            f"    {q.module}.{q.checker}({q.variable}{option})")


def otter_init_cell(stem: str) -> str:
    """The student notebook's cell that makes ``grader`` (after the set-up, which puts the course on the path)."""
    version = locked_versions().get("otter-grader", "7.0.0")
    return (f"try:  # otter-grader runs the checks; Colab installs it here, at the tested version\n"
            f"    import otter\n"
            f"except ImportError:\n"
            f"    import subprocess\n    import sys\n\n"
            f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "otter-grader=={version}"], check=True)\n'
            f"    import otter\n"
            f"from utils.paths import REPO_ROOT\n\n"
            f'grader = otter.Notebook(tests_dir=str(REPO_ROOT / "{CHECKS_DIR}" / "{stem}"))')


def otter_master(nb, stem: str) -> nbformat.NotebookNode:
    """``nb`` (instructor edition) in otter's assign format: an assignment config, the set-up cells, an otter init
    cell, the lesson cells (tagged ``otter_ignore``: grading runs the set-up and the exercises only), and one question
    per exercise (its solution cell marked so that otter shows the exercise cell instead)."""
    qs = {q.exercise: q for q in questions(nb, stem) if q.kind != "manual"}
    manual = {q.exercise: q for q in questions(nb, stem) if q.kind == "manual"}
    raw = nbformat.v4.new_raw_cell
    config = {"name": stem, "init_cell": False, "check_all_cell": False, "export_cell": False, "run_tests": False,
              "tests": {"files": True, "ok_format": False}}
    master = nbformat.v4.new_notebook(metadata=copy.deepcopy(nb.metadata))
    master.cells.append(raw("# ASSIGNMENT CONFIG\n" + json.dumps(config)))  # JSON is YAML
    start, end = setup_end(nb), exercise_start(nb)
    master.cells += copy.deepcopy(nb.cells[:start])
    master.cells.append(nbformat.v4.new_code_cell(otter_init_cell(stem)))
    for cell in copy.deepcopy(nb.cells[start:end]):
        if cell.cell_type == "code":
            cell.metadata.setdefault("tags", []).append("otter_ignore")
        master.cells.append(cell)
    cells = nb.cells[end:]
    i = 0
    while i < len(cells):
        cell = copy.deepcopy(cells[i])
        if "manual" in cell_tags(cell):
            m = manual[cell.source]
            answer = nbformat.v4.new_markdown_cell(m.solution)
            master.cells += [raw(f"# BEGIN QUESTION\nname: {m.name}\nmanual: true\npoints: {m.manual_points:g}"),
                             raw("# BEGIN SOLUTION"), answer, raw("# END SOLUTION"), raw("# END QUESTION")]
            i += 2  # the answer cell (otter writes its own) and the model answer
            continue
        q = qs.get(cell.source) if "exercise" in cell_tags(cell) else None
        if q is None:
            master.cells.append(cell)
            i += 1
            continue
        if "'''" in q.exercise:
            raise ValueError(f"{stem}: exercise {q.name}'s cell contains ''' (otter's prompt markers need it free)")
        body = (f"''' # BEGIN PROMPT\n{q.exercise}\n''' # END PROMPT\n"
                f"# BEGIN SOLUTION NO PROMPT\n{q.solution}\n# END SOLUTION")
        tests = [test_source(q, False)] + ([test_source(q, True)] if "hidden" in POINTS[q.kind] else [])
        master.cells += [raw(f"# BEGIN QUESTION\nname: {q.name}"), raw("# BEGIN SOLUTION"),
                         nbformat.v4.new_code_cell(body), raw("# END SOLUTION"), raw("# BEGIN TESTS"),
                         *[nbformat.v4.new_code_cell(t) for t in tests], raw("# END TESTS"), raw("# END QUESTION")]
        i += 3  # the exercise, its solution and its check (otter writes grader.check in its place)
    return master


def assign(notebook: Path, out: Path) -> Path:
    """Run otter's assign on ``notebook``'s master; returns ``out`` holding ``student/`` and ``autograder/``."""
    import contextlib
    import io

    from otter.assign import main as otter_assign

    master_dir = out / "master"
    master_dir.mkdir(parents=True, exist_ok=True)
    master = master_dir / notebook.name
    nb = nbformat.read(str(notebook), as_version=4)
    nbformat.write(otter_master(nb, notebook.stem), str(master))
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            otter_assign(str(master), str(out), no_pdfs=True)
    except Exception as err:
        raise RuntimeError(f"otter assign failed on {notebook.name}: {err}\n{said.getvalue()[-2000:]}") from err
    return out


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))
    elif src.exists():
        shutil.copy2(src, dst)


def solution_blocks(notebooks: list[Path]) -> dict[str, str]:
    """``{notebook:exercise: solution source}`` of the instructor notebooks (what a release must not contain)."""
    return {f"{p.stem}:{q.name}": q.solution for p in notebooks
            for q in questions(nbformat.read(str(p), as_version=4), p.stem)}


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def leaked_solutions(folder: Path, notebooks: list[Path]) -> list[str]:
    """Files under ``folder`` that hold a solution cell's code or an answer key; ``[]`` for a clean release. A solution
    counts as found when its code (whitespace normalised) appears in a text file, notebooks' JSON decoded."""
    blocks = {k: _normalised(v) for k, v in solution_blocks(notebooks).items()}
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts):
        if path.parent.name == ANSWERS_DIR:
            found.append(f"{path.relative_to(folder)}: an answer key")
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if path.suffix == ".ipynb":
            text = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells)
        text = _normalised(text)
        found += [f"{path.relative_to(folder)}: the solution of {k}" for k, v in blocks.items() if v in text]
    return found


def build_release(out: Path, repo: str, branch: str, notebooks: list[Path] | None = None) -> dict[str, Path]:
    """Write the classroom release to ``out`` (which must not exist yet):

    - ``out/student``: the repository students clone (Colab cells and badges point at ``repo``/``branch``): the
      student notebooks in ``notebooks/``, their public tests in ``checks/``, ``utils``, ``data`` and requirements;
    - ``out/autograder/<notebook>/``: ``tests/`` (otter's public and hidden tests, with their points) and
      ``manual.json`` (the questions the teacher marks by hand);

    Returns ``{"student": ..., "autograder": ...}``. Raises InputError for an existing ``out`` or a non-GitHub
    ``repo``, RuntimeError when a solution is found in the student folder."""
    repo = publish.github_url(repo)
    if out.exists():
        raise input_error(str(out), "already exists (a release is written whole)",
                          "choose another folder, or delete this one")
    notebooks = notebooks or [p for p in course_notebooks() if has_exercises(p)]
    student, autograder, work = out / "student", out / "autograder", out / ".assign"
    (student / "notebooks").mkdir(parents=True)
    for name in STUDENT_FILES:
        _copy(REPO_ROOT / name, student / name)
    for notebook in notebooks:
        done = assign(notebook, work / notebook.stem)
        nb = nbformat.read(str(done / "student" / notebook.name), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and publish.COLAB_MARKER in cell.source:
                cell.source = publish.colab_cell(repo, branch)
        nb.metadata["edition"] = "student"
        nbformat.write(nb, str(student / "notebooks" / notebook.name))
        shutil.copytree(done / "student" / "tests", student / CHECKS_DIR / notebook.stem)
        (autograder / notebook.stem).mkdir(parents=True)
        shutil.copytree(done / "autograder" / "tests", autograder / notebook.stem / "tests")
        _write_manual(nb, notebook, autograder / notebook.stem / MANUAL_FILE)
    shutil.rmtree(work)
    (student / "publish.json").write_text(json.dumps({"repo": repo, "branch": branch}, indent=1) + "\n")
    written = sorted((student / "notebooks").glob("*.ipynb"))
    (student / "README.md").write_text(student_readme(written, repo, branch), encoding="utf-8")
    leaks = leaked_solutions(student, notebooks)
    if leaks:
        raise RuntimeError("the student release holds solutions: " + "; ".join(leaks))
    return {"student": student, "autograder": autograder}


def _write_manual(student_nb, notebook: Path, path: Path) -> None:
    """``manual.json``: each hand-marked question's name, points and *anchor* (the source of the cell before the
    student's answer cell, by which the grader finds the answer in a submission)."""
    manual = [q for q in questions(nbformat.read(str(notebook), as_version=4), notebook.stem) if q.kind == "manual"]
    answers = [i for i, c in enumerate(student_nb.cells)
               if c.cell_type == "markdown" and "otter_answer_cell" in c.metadata.get("tags", [])]
    if len(answers) != len(manual):
        raise RuntimeError(f"{notebook.name}: {len(manual)} manual questions but {len(answers)} answer cells")
    path.write_text(json.dumps([{"name": q.name, "points": q.manual_points, "anchor": student_nb.cells[i - 1].source,
                                 "prompt": student_nb.cells[i].source} for q, i in zip(manual, answers, strict=True)],
                               indent=1) + "\n", encoding="utf-8")


def student_readme(notebooks: list[Path], repo: str, branch: str) -> str:
    """The student release's README: one Colab badge per notebook, how to check and hand in."""
    rows = "\n".join(f"| {p.stem} | {publish.badge(repo, branch, f'notebooks/{p.name}')} |" for p in notebooks)
    return ("# QLoRA course: assignments\n\n"
            "Open a notebook in Colab (or clone this repository and run `./run.sh course`), work through it, and fill "
            "in each exercise. The cell after each exercise, `grader.check(...)`, runs its public test and says in "
            "words what is still wrong; your teacher's grader runs hidden tests too, on other inputs. Hand in the "
            "notebook file (Colab: File → Download → Download .ipynb).\n\n"
            f"| notebook | Colab |\n|---|---|\n{rows}\n")
