"""Grade students' notebooks: run each submission's exercises against the instructor's checks.

    python -m tools.grade SUBMISSIONS_DIR --out grades.csv [--feedback-dir DIR] [--time-limit SECONDS]
                          [--instructor-dir notebooks] [--jobs N] [--overwrite]

SUBMISSIONS_DIR holds one folder per student, with the student's notebooks in it (nbgrader's layout; below
the student's folder any depth is fine, e.g. submitted/<student>/<assignment>/01_....ipynb), and/or
notebooks named <student>__<notebook>.ipynb directly in it. A notebook is matched to the instructor's copy
by its file name (01_quantization_visualized.ipynb ...); one with any other name gets a row saying so.
Hidden files and folders (.ipynb_checkpoints) are skipped.

Each submission runs in a kernel of its own, in the smoke profile, offline, in a temporary folder:
  1. the instructor's set-up cells (those before the first '## ' heading: imports, versions, parameters);
  2. the student's exercise section, except the cells tagged 'check';
  3. the instructor's check of each exercise, in place of the student's check cell (found by its cell id,
     its source or its tag), or right after the student's exercise cell when that check cell is gone.
Before each check, the checker module and the course modules it compares against are imported afresh,
so a student's cell cannot have patched them, and a check counts as passed only when it reports so itself.

Each exercise gets a status: passed; failed (the check explains what is wrong); error (the exercise cell
raised, the check crashed, the cells are missing, the time limit or a dead kernel stopped the run).
--time-limit bounds the student's cells and checks together, per notebook; when it is reached, the kernel is
stopped and the checks not yet run are errors (the instructor's set-up has a limit of its own,
SETUP_TIME_LIMIT).

Writes --out (CSV: student, notebook, exercise, status, message; one row per student and exercise) and one
Markdown file per student, DIR/<student>.md (default DIR: feedback/ next to the CSV): k of n checks passed,
and what each failed check said. Existing files are kept unless --overwrite is given.
Exit status: 0 when grading completed (whatever the students' results), 2 for bad input.

Not defended (as in nbgrader and otter-grader, the student's code runs unsandboxed, with the grader's
rights): a cell that hooks IPython's cell execution (input or AST transformers, pre_run_cell events),
patches torch, numpy or builtins, or inspects the grader's stack frames can fake a result. Read the
submissions whose results look too good.
"""

from __future__ import annotations

import asyncio
import copy
import csv
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from tools.editions import cell_tags, check_layout, exercise_start, has_exercises, setup_end
from utils.errors import InputError, input_error
from utils.notebooks import NOTEBOOK_DIR, kernel_config
from utils.paths import REPO_ROOT

DEFAULT_TIME_LIMIT = 600  # seconds per notebook for the student's cells and the checks together
SETUP_TIME_LIMIT = 600  # seconds per notebook for the instructor's set-up cells (imports: ~7 s on one CPU core)
KERNEL_ENV = {"QLORA_PROFILE": "smoke", "HF_HUB_OFFLINE": "1"}  # every submission is graded on the smoke profile
STATUSES = ("passed", "failed", "error")
CSV_FIELDS = ("student", "notebook", "exercise", "status", "message")
FLAT_SEPARATOR = "__"  # SUBMISSIONS_DIR/<student>__<notebook>.ipynb
RESULT_MIME = "application/vnd.qlora-course.grade+json"  # how a check cell reports its result
LAYOUT = ("one folder per student (SUBMISSIONS_DIR/<student>/01_quantization_visualized.ipynb) or files named "
          "<student>__01_quantization_visualized.ipynb")


# ----------------------------------------------------------------------------------------------
# What is graded: the instructor's exercises, the students' submissions
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Exercise:
    """One graded check of an instructor notebook: its ``exercise`` cell and the ``check`` cell after it."""

    number: int  # 1, 2, ... in the notebook's order (an exercise with two questions has two numbers)
    name: str  # the checker function, e.g. check_absmax_int4
    exercise_id: str | None  # cell ids, shared by the student edition (built by copying the notebook)
    check_id: str | None
    check_source: str

    @property
    def label(self) -> str:
        """The CSV's exercise column, e.g. ``1 check_absmax_int4``."""
        return f"{self.number} {self.name}"


@dataclass(frozen=True)
class Assignment:
    """An instructor notebook as the grader uses it: its set-up cells, checker module and exercises."""

    path: Path
    setup: tuple  # the code cells before the first '## ' heading
    checker: str  # e.g. utils.exercises.nb01
    exercises: tuple[Exercise, ...]


def load_assignment(path: Path) -> Assignment:
    """Read an instructor notebook; ValueError if its exercise section is not laid out as the editions need."""
    nb = nbformat.read(str(path), as_version=4)
    check_layout(nb, path.name)
    setup = tuple(c for c in nb.cells[:setup_end(nb)] if c.cell_type == "code")
    found = re.search(r"from\s+utils\.exercises\s+import\s+(nb\d+)\s+as\s+checks", "\n".join(c.source for c in setup))
    if not found:
        raise ValueError(f"{path.name}: no set-up cell imports its checks as "
                         "`from utils.exercises import nbNN as checks`")
    section = nb.cells[exercise_start(nb):]
    exercise_cells = [c for c in section if "exercise" in cell_tags(c)]
    check_cells = [c for c in section if "check" in cell_tags(c)]
    if len(exercise_cells) != len(check_cells):
        raise ValueError(f"{path.name}: {len(exercise_cells)} exercise cells but {len(check_cells)} check cells")
    exercises = []
    for number, (ex, check) in enumerate(zip(exercise_cells, check_cells, strict=True), start=1):
        name = re.search(r"checks\.(\w+)\s*\(", check.source)
        exercises.append(Exercise(number, name.group(1) if name else f"check_{number}", ex.get("id"),
                                  check.get("id"), check.source))
    return Assignment(path, setup, f"utils.exercises.{found.group(1)}", tuple(exercises))


def instructor_notebooks(folder: Path = NOTEBOOK_DIR) -> dict[str, Path]:
    """The instructor's numbered notebooks with exercises, by file name; InputError if there are none."""
    if not folder.is_dir():
        raise input_error(f"--instructor-dir {folder}", "is not a folder",
                          "give the folder of the instructor edition, e.g. notebooks")
    found = {p.name: p for p in sorted(folder.glob("[0-9][0-9]_*.ipynb")) if has_exercises(p)}
    if not found:
        raise input_error(f"--instructor-dir {folder}", "holds no numbered notebook (NN_name.ipynb) with cells "
                          "tagged 'exercise'", "give the folder of the instructor edition, e.g. notebooks")
    return found


@dataclass(frozen=True)
class Submission:
    """One student's notebook."""

    student: str
    notebook: str  # its file name, which names the instructor notebook it answers
    path: Path


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_submissions(folder: Path) -> list[Submission]:
    """The notebooks in ``folder`` (see the module's docstring for the two layouts), sorted by student and
    notebook. InputError if the folder is missing or holds none, a notebook in it has no student name, or a
    student handed in two notebooks of one name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise input_error(f"submissions folder {folder}", "is not a folder", f"give the folder that holds {LAYOUT}")
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            notebooks = sorted(p for p in entry.rglob("*.ipynb") if p.is_file() and not _hidden(p, entry))
            found += [Submission(entry.name, p.name, p) for p in notebooks]
        elif entry.suffix == ".ipynb":
            student, separator, notebook = entry.name.partition(FLAT_SEPARATOR)
            if not (separator and student and notebook.endswith(".ipynb") and len(notebook) > len(".ipynb")):
                raise input_error(str(entry), "a notebook directly in the submissions folder must be named "
                                  f"<student>{FLAT_SEPARATOR}<notebook>.ipynb, so the grader knows whose it is",
                                  f"rename it (e.g. ada{FLAT_SEPARATOR}01_quantization_visualized.ipynb) or move "
                                  "it into a folder named for the student")
            found.append(Submission(student, notebook, entry))
    if not found:
        raise input_error(f"submissions folder {folder}", "holds no notebooks (*.ipynb)",
                          f"put the students' notebooks in it: {LAYOUT}")
    seen: dict[tuple[str, str], Path] = {}
    for sub in found:
        key = (sub.student, sub.notebook)
        if key in seen:
            raise input_error(str(sub.path), f"student {sub.student!r} has handed in {sub.notebook} twice (also "
                              f"{seen[key]})", "keep the one to grade and move the other out of the folder")
        seen[key] = sub.path
    return sorted(found, key=lambda s: (s.student, s.notebook))


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExerciseResult:
    """The grade of one exercise: status ``passed``, ``failed`` or ``error``, and the message to read."""

    exercise: Exercise
    status: str
    message: str


@dataclass
class NotebookResult:
    """One graded submission. ``problem`` says why it could not be graded at all (then ``exercises`` is empty);
    ``first_error`` is the first exception raised by a student cell; ``setup_error`` one raised by the
    instructor's set-up (the grading machine's fault, not the student's)."""

    submission: Submission
    exercises: list[ExerciseResult] = field(default_factory=list)
    problem: str | None = None
    first_error: str | None = None
    setup_error: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> int:
        return sum(r.status == "passed" for r in self.exercises)

    def summary(self) -> str:
        """One line, e.g. ``4 of 5 checks passed (1 failed, 0 errors)`` or ``not graded: ...``."""
        if self.problem:
            return f"not graded: {self.problem}"
        failed = sum(r.status == "failed" for r in self.exercises)
        errors = sum(r.status == "error" for r in self.exercises)
        return (f"{self.passed} of {len(self.exercises)} checks passed ({failed} failed, {errors} "
                f"error{'s' if errors != 1 else ''})")

    def rows(self) -> list[dict[str, str]]:
        """The CSV rows (:data:`CSV_FIELDS`): one per exercise, or one for a notebook that was not graded."""
        base = {"student": self.submission.student, "notebook": self.submission.notebook}
        if self.problem:
            return [base | {"exercise": "", "status": "error", "message": self.problem}]
        return [base | {"exercise": r.exercise.label, "status": r.status, "message": r.message}
                for r in self.exercises]


# ----------------------------------------------------------------------------------------------
# The cells one submission runs
# ----------------------------------------------------------------------------------------------

# The cell that runs one instructor check. It imports the checker afresh (after dropping every course module,
# utils.*, that a student cell may have patched), runs the instructor's check source in a copy of the student's
# namespace with `checks` bound to that module, and displays the outcome with a token the student's cells never
# saw: no token, no pass. Its names are looked up in a namespace of its own, not the student's (where `exec`,
# `dict` or `display` could have been redefined).
_CHECK_RUNNER = '''
import ast, importlib, sys
from IPython.display import display

for _name in [m for m in sys.modules if m.startswith("utils.")]:
    del sys.modules[_name]
result = {"token": token, "status": "error", "message": ""}
failure = ()  # CheckFailed, once the checker imports
try:
    checker = importlib.import_module(checker_name)
    failure = importlib.import_module("utils.exercises.common").CheckFailed
    scope = dict(namespace, checks=checker)
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<check>", "exec"), scope)
    value = eval(compile(ast.Expression(last.value), "<check>", "eval"), scope) if last else None
    result.update(status="passed", message="" if value is None else str(value))
except BaseException as err:
    try:
        failed = isinstance(err, failure)
        result.update(status="failed" if failed else "error",
                      message=str(err) if failed else f"{type(err).__name__}: {err}")
    except BaseException:
        result.update(status="error", message="the check raised an exception that cannot be shown")
display({mime: result}, raw=True)
'''


def _check_cell(exercise: Exercise, checker: str, token: str):
    source = ("import builtins as _grade_builtins\n"
              f"_grade_builtins.exec({_CHECK_RUNNER!r}, {{'__builtins__': _grade_builtins, 'token': {token!r}, "
              f"'checker_name': {checker!r}, 'source': {exercise.check_source!r}, 'mime': {RESULT_MIME!r}, "
              "'namespace': _grade_builtins.globals()})\n"
              "del _grade_builtins")
    return nbformat.v4.new_code_cell(source)


@dataclass
class _Step:
    """A cell to run: the instructor's set-up, a student cell, or the check of exercise ``number``."""

    kind: str  # "setup", "student" or "check"
    cell: nbformat.NotebookNode
    where: str  # for messages, e.g. "cell 30 (`def absmax_int4(x: torch.Tensor) -> tupl...`)"
    number: int | None = None  # student: the exercise whose 'exercise' cell this is; check: its exercise
    token: str | None = None


def _first_line(source: str) -> str:
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= 50 else line[:47] + "..."


def _find_exercise_cells(cells: list, exercises: tuple[Exercise, ...]) -> tuple[dict[int, int], dict[int, int]]:
    """Where each exercise's cells are in the student's exercise section (indices into ``cells``):
    ``({number: exercise cell}, {number: check cell})``. A cell is found by its id; a check cell also by its
    source (unchanged from the instructor's); failing that, by tag order, when the student's notebook has as
    many cells of that tag as the instructor's (a front-end that rewrote the ids)."""
    exercise_at: dict[int, int] = {}
    check_at: dict[int, int] = {}
    ids = {c.get("id"): i for i, c in enumerate(cells) if c.get("id")}
    for ex in exercises:
        if ex.exercise_id in ids:
            exercise_at[ex.number] = ids[ex.exercise_id]
        if ex.check_id in ids and ids[ex.check_id] not in exercise_at.values():
            check_at[ex.number] = ids[ex.check_id]
    used = set(exercise_at.values()) | set(check_at.values())
    for ex in exercises:
        if ex.number not in check_at:
            same = [i for i, c in enumerate(cells) if i not in used and c.source.strip() == ex.check_source.strip()]
            if same:
                check_at[ex.number] = same[0]
                used.add(same[0])
    for tag, found in (("exercise", exercise_at), ("check", check_at)):
        tagged = [i for i, c in enumerate(cells) if tag in cell_tags(c)]
        if len(tagged) == len(exercises):
            for ex, i in zip(exercises, tagged, strict=True):
                if ex.number not in found and i not in used:
                    found[ex.number] = i
                    used.add(i)
    return exercise_at, check_at


def plan(nb, assignment: Assignment) -> tuple[list[_Step], dict[int, str]]:
    """The cells to run for one student notebook, and the exercises that cannot be graded, with the reason
    (``{number: message}``: neither the exercise cell nor its check cell is in the notebook)."""
    steps = [_Step("setup", copy.deepcopy(c), f"the instructor's set-up cell {i} (`{_first_line(c.source)}`)")
             for i, c in enumerate(assignment.setup, start=1)]
    try:
        start = exercise_start(nb)
    except ValueError:  # heading deleted: the section starts at the first exercise or check cell found
        start = None
    everything = list(nb.cells)
    exercise_at, check_at = _find_exercise_cells(everything[start or 0:], assignment.exercises)
    if start is None:
        anchors = list(exercise_at.values()) + list(check_at.values())
        start = min(anchors) if anchors else len(everything)
        exercise_at, check_at = _find_exercise_cells(everything[start:], assignment.exercises)
    cells = everything[start:]
    # each check goes where the student's check cell was, unless that is above the exercise cell: then after it
    check_after: dict[int, list[Exercise]] = {}  # student cell index -> checks to run after it
    check_instead: dict[int, Exercise] = {}
    missing = {}
    for ex in assignment.exercises:
        at_exercise, at_check = exercise_at.get(ex.number), check_at.get(ex.number)
        if at_check is not None and (at_exercise is None or at_check > at_exercise):
            check_instead[at_check] = ex
        elif at_exercise is not None:
            check_after.setdefault(at_exercise, []).append(ex)
        else:
            missing[ex.number] = ("neither its exercise cell nor its check cell is in the notebook (deleted, or "
                                  "their tags and ids changed): copy them back from the student edition")
    numbers = {i: n for n, i in exercise_at.items()}

    def add_check(ex: Exercise) -> None:
        token = secrets.token_hex(16)
        steps.append(_Step("check", _check_cell(ex, assignment.checker, token), f"the check of exercise {ex.label}",
                           ex.number, token))

    for i, cell in enumerate(cells):
        if i in check_instead:
            add_check(check_instead[i])
            continue
        if cell.cell_type != "code" or "check" in cell_tags(cell):
            continue  # a check cell the student added or copied never runs: only the instructor's checks do
        runnable = nbformat.v4.new_code_cell(cell.source)
        steps.append(_Step("student", runnable, f"cell {start + i + 1} (`{_first_line(cell.source)}`)",
                           numbers.get(i)))
        for ex in check_after.get(i, []):
            add_check(ex)
    return steps, missing


# ----------------------------------------------------------------------------------------------
# Running a submission and reading the results
# ----------------------------------------------------------------------------------------------

async def _execute(steps: list[_Step], time_limit: float, workdir: Path) -> tuple[int, str | None]:
    """Run the steps' cells in one new kernel (sockets and working folder: ``workdir``), in order, their outputs
    written into the cells. Returns ``(steps run, why the run stopped early or None)``; the kernel is shut down
    at the end, and killed at once when a time limit is reached."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.v4.new_notebook(cells=[s.cell for s in steps])
    deadline = {"at": time.monotonic() + SETUP_TIME_LIMIT}
    client = NotebookClient(nb, allow_errors=True, kernel_name="python3", config=kernel_config(workdir),
                            resources={"metadata": {"path": str(workdir)}}, shutdown_kernel="immediate",
                            timeout_func=lambda cell: max(0.1, deadline["at"] - time.monotonic()))
    env = dict(os.environ) | KERNEL_ENV | {
        "QLORA_OUTPUT_DIR": str(workdir / "outputs"),  # what a student cell saves stays out of the course's outputs
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
    }
    ran, stopped, student_phase = 0, None, False
    try:
        async with client.async_setup_kernel(env=env):
            for i, step in enumerate(steps):
                if step.kind != "setup" and not student_phase:
                    student_phase = True
                    deadline["at"] = time.monotonic() + time_limit
                limit = time_limit if student_phase else SETUP_TIME_LIMIT
                if time.monotonic() >= deadline["at"]:
                    stopped = f"time limit of {limit:g} s reached before {step.where}"
                    break
                try:
                    await client.async_execute_cell(step.cell, i)
                except CellTimeoutError:
                    stopped = f"time limit of {limit:g} s reached in {step.where}"
                    break
                except DeadKernelError:
                    stopped = f"the kernel died in {step.where} (os._exit, a crash, or out of memory?)"
                    break
                ran = i + 1
    except Exception as err:  # the kernel did not start, or stopped answering
        stopped = stopped or f"the kernel stopped: {type(err).__name__}: {err}"
    return ran, stopped


def _run_async(coroutine):
    """Run a coroutine in an event loop of its own (in a helper thread when this one runs a loop: Jupyter).
    asyncio.run also cancels what nbclient leaves pending after a time limit."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as helper:
        return helper.submit(asyncio.run, coroutine).result()


def _errors(cell) -> list:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def _error_text(output) -> str:
    return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")


def _read_results(steps: list[_Step], ran: int, stopped: str | None, missing: dict[int, str],
                  assignment: Assignment) -> tuple[list[ExerciseResult], str | None, str | None]:
    """Each exercise's result from the cells' outputs; also the first student cell's error and the set-up's."""
    first_error = setup_error = None
    crashed: dict[int, str] = {}  # exercise number -> its exercise cell's error
    reported: dict[int, tuple[str, str]] = {}
    for step in steps[:ran]:
        errors = _errors(step.cell)
        if step.kind == "setup" and errors and setup_error is None:
            setup_error = f"{step.where}: {_error_text(errors[0])}"
        elif step.kind == "student" and errors:
            first_error = first_error or f"{step.where}: {_error_text(errors[0])}"
            if step.number is not None:
                crashed[step.number] = _error_text(errors[0])
        elif step.kind == "check":
            outcome = next((o["data"][RESULT_MIME] for o in step.cell.get("outputs", [])
                            if RESULT_MIME in o.get("data", {})
                            and o["data"][RESULT_MIME].get("token") == step.token), None)
            if outcome and outcome.get("status") in STATUSES:
                reported[step.number] = (outcome["status"], str(outcome.get("message", "")))
            elif errors:
                reported[step.number] = ("error", f"the check could not run: {_error_text(errors[0])}")
            else:
                reported[step.number] = ("error", "the check did not report a result (its output was suppressed)")
    if stopped and first_error is None and ran < len(steps) and steps[ran].kind == "student":
        first_error = stopped
    results = []
    for ex in assignment.exercises:
        if ex.number in missing:
            status, message = "error", missing[ex.number]
        elif ex.number in crashed:
            status, message = "error", f"the exercise cell raised {crashed[ex.number]}"
        elif ex.number in reported:
            status, message = reported[ex.number]
        else:
            status, message = "error", stopped or "the check did not run"
        results.append(ExerciseResult(ex, status, message))
    return results, first_error, setup_error


def grade_submission(submission: Submission, assignment: Assignment,
                     time_limit: float = DEFAULT_TIME_LIMIT) -> NotebookResult:
    """Grade one student notebook in a kernel of its own (see the module's docstring)."""
    started = time.monotonic()
    try:
        nb = nbformat.read(str(submission.path), as_version=4)
    except Exception as err:  # not JSON, not a notebook: that student's problem, not the batch's
        return NotebookResult(submission, problem=f"could not read the notebook ({type(err).__name__}: {err}); "
                              "ask for it again, saved from Jupyter or Colab as .ipynb")
    steps, missing = plan(nb, assignment)
    with tempfile.TemporaryDirectory(prefix="qlora-grade-") as workdir:  # short: socket paths allow ~100 bytes
        ran, stopped = _run_async(_execute(steps, time_limit, Path(workdir)))
    exercises, first_error, setup_error = _read_results(steps, ran, stopped, missing, assignment)
    return NotebookResult(submission, exercises, first_error=first_error, setup_error=setup_error,
                          seconds=time.monotonic() - started)


def grade(submissions: Iterable[Submission], instructor_dir: Path = NOTEBOOK_DIR,
          time_limit: float = DEFAULT_TIME_LIMIT, jobs: int = 1) -> Iterator[NotebookResult]:
    """Grade each submission (``jobs`` at a time, each in its own kernel); yields the results in the
    submissions' order. A notebook whose name is not one of ``instructor_dir``'s with exercises gets a result
    with a ``problem`` and no kernel."""
    if time_limit <= 0:
        raise input_error("--time-limit", f"{time_limit} is not a positive number of seconds", "give e.g. 600")
    if jobs < 1:
        raise input_error("--jobs", f"{jobs} is not a positive number of kernels", "give e.g. 1 or 4")
    known = instructor_notebooks(instructor_dir)
    submissions = list(submissions)
    assignments = {name: load_assignment(known[name]) for name in sorted({s.notebook for s in submissions})
                   if name in known}

    def one(sub: Submission) -> NotebookResult:
        if sub.notebook not in assignments:
            return NotebookResult(sub, problem=f"{sub.notebook} is not a course notebook with exercises (expected "
                                  f"one of: {', '.join(known)}); rename it to the name of the notebook it answers")
        return grade_submission(sub, assignments[sub.notebook], time_limit)

    if jobs == 1:
        yield from map(one, submissions)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            yield from pool.map(one, submissions)


# ----------------------------------------------------------------------------------------------
# Output files
# ----------------------------------------------------------------------------------------------

def feedback_markdown(student: str, results: list[NotebookResult]) -> str:
    """A student's feedback: per notebook, k of n checks passed, each exercise's status, and what the failed
    checks said."""
    lines = [f"# Feedback for {student}", ""]
    marks = {"passed": "✓", "failed": "✗", "error": "!"}
    for result in results:
        lines += [f"## {result.submission.notebook}: {result.summary()}", ""]
        for r in result.exercises:
            lines.append(f"- {marks[r.status]} exercise {r.exercise.label}: **{r.status}**"
                         + (f": {r.message}" if r.message and r.status != "passed" else ""))
        if result.first_error:
            lines += ["", f"The first error in your cells: {result.first_error}"]
        if result.setup_error:
            lines += ["", f"(The grader's own set-up failed, so these results may not be yours to fix: "
                      f"{result.setup_error}.)"]
        lines.append("")
    return "\n".join(lines)


def feedback_path(folder: Path, student: str) -> Path:
    """``folder/<student>.md``."""
    return Path(folder) / f"{student}.md"


def check_outputs(out: Path, feedback_dir: Path, students: Iterable[str], overwrite: bool) -> None:
    """InputError if the CSV or a student's feedback file exists already (unless ``overwrite``), or is a folder."""
    if Path(feedback_dir).exists() and not Path(feedback_dir).is_dir():
        raise input_error(f"--feedback-dir {feedback_dir}", "is a file", "give a folder for the feedback files")
    targets = [Path(out)] + [feedback_path(feedback_dir, s) for s in sorted(set(students))]
    folders = [p for p in targets if p.is_dir()]
    if folders:
        raise input_error(str(folders[0]), "is a folder", "give a file name for the grades, e.g. --out grades.csv")
    if overwrite:
        return
    existing = [p for p in targets if p.exists()]
    if existing:
        listed = ", ".join(str(p) for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise input_error(listed, "already exist(s) (an earlier grading?)",
                          "pass --overwrite to replace them, or choose another --out / --feedback-dir")


class GradesWriter:
    """The CSV, written row by row as submissions are graded (an interrupted run keeps what it graded)."""

    def __init__(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w", newline="", encoding="utf-8")  # closed by close()
        self._writer = csv.DictWriter(self._file, fieldnames=CSV_FIELDS)
        self._writer.writeheader()

    def write(self, result: NotebookResult) -> None:
        self._writer.writerows(result.rows())
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def write_feedback(results: list[NotebookResult], folder: Path) -> list[Path]:
    """One Markdown file per student (:func:`feedback_markdown`); returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    by_student: dict[str, list[NotebookResult]] = {}
    for result in results:
        by_student.setdefault(result.submission.student, []).append(result)
    written = []
    for student, theirs in sorted(by_student.items()):
        path = feedback_path(folder, student)
        path.write_text(feedback_markdown(student, theirs), encoding="utf-8")
        written.append(path)
    return written


# ----------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------

def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise ValueError(text)
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def main(argv: list[str] | None = None) -> int:
    """Grade (see the module's docstring); prints one line per submission; returns the exit status."""
    from utils.cli import make_parser

    parser = make_parser("tools.grade", __doc__)
    parser.add_argument("submissions", type=Path, help="the folder of submissions (layouts: see above)")
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write, e.g. grades.csv")
    parser.add_argument("--feedback-dir", type=Path, help="where <student>.md go (default: feedback/ next to --out)")
    parser.add_argument("--time-limit", type=_positive(float), default=DEFAULT_TIME_LIMIT,
                        help=f"seconds per notebook for the student's cells and checks (default {DEFAULT_TIME_LIMIT})")
    parser.add_argument("--instructor-dir", type=Path, default=NOTEBOOK_DIR,
                        help="the instructor edition's notebooks (default: the course's notebooks/)")
    parser.add_argument("--jobs", type=_positive(int), default=1, help="submissions graded at once (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out and feedback files")
    args = parser.parse_args(argv)
    feedback_dir = args.feedback_dir or args.out.parent / "feedback"
    try:
        submissions = find_submissions(args.submissions)
        known = instructor_notebooks(args.instructor_dir)
        if not any(s.notebook in known for s in submissions):
            names = sorted({s.notebook for s in submissions})
            raise input_error(f"submissions folder {args.submissions}", f"none of its notebooks ({', '.join(names[:5])}"
                              f"{' ...' if len(names) > 5 else ''}) is a course notebook with exercises",
                              f"name each as the notebook it answers: {', '.join(known)}")
        check_outputs(args.out, feedback_dir, [s.student for s in submissions], args.overwrite)
    except InputError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    results = []
    writer = GradesWriter(args.out)
    try:
        for result in grade(submissions, args.instructor_dir, args.time_limit, args.jobs):
            results.append(result)
            writer.write(result)
            sub = result.submission
            print(f"{sub.student} {sub.notebook}: {result.summary()}"
                  + (f" in {result.seconds:.0f} s" if not result.problem else ""), flush=True)
            if result.setup_error:
                print(f"  warning: the instructor's set-up failed ({result.setup_error}); check this machine",
                      file=sys.stderr, flush=True)
    finally:
        writer.close()
        feedback = write_feedback(results, feedback_dir)
    passed = sum(r.passed for r in results)
    total = sum(len(r.exercises) for r in results)
    print(f"{len(results)} notebook(s) of {len({r.submission.student for r in results})} student(s) graded: "
          f"{passed} of {total} checks passed; grades in {args.out}, feedback in {feedback_dir}/ "
          f"({len(feedback)} file(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
