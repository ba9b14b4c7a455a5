"""Grade a class's notebooks against a release's otter tests, each submission in a sandbox.

    python -m tools.classroom grade SUBMISSIONS --release OUT --out GRADES [--due 2026-12-01T23:59+01:00]
        [--late-penalty 10] [--sandbox bwrap|process] [--time-limit 300] [--jobs 2] [--overwrite]

SUBMISSIONS holds one folder per student (``ada/01_quantization_visualized.ipynb``, any depth below it), or files
named ``<student>__<notebook>.ipynb``. A file is matched to its notebook by name, as Colab and browsers rename
downloads too (``Copy of 01_quantization_visualized (2).ipynb``). The time a notebook was handed in is read from a
``timestamp.txt`` next to it (one ISO 8601 time, as nbgrader's ``collect`` writes), else from ``--times`` (a CSV of
``student,submitted_at``); without either, it is not counted late.

Each submission is graded in two steps (:mod:`tools.classroom.codec` says why):

1. **Sandbox** (:mod:`tools.classroom.sandbox`): a kernel runs the release's set-up cells, the student's
   ``## Exercises`` section (their ``grader.check`` cells left out) and the recorder, which writes the student's
   answers as JSON. ``--time-limit`` bounds each cell, and the whole run is killed after
   ``SETUP_SECONDS + 3 * time-limit``.
2. **Grader**: otter's tests of the release's autograder (public and hidden, with their points) run in this process
   against the recorded answers, with the answer keys of ``answers/``.

Writes into GRADES (refused if it holds grades already, unless ``--overwrite``), each file replaced atomically:
``questions.csv`` (student, notebook, question, score, possible, status, message), ``totals.csv`` (per student and
notebook: raw score, days late, penalty, score), ``summary.csv`` (per question across the class),
``feedback/<student>.md`` and ``executed/<student>/<notebook>.ipynb`` (what ran, for review).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import nbformat

from tools.classroom import codec, sandbox
from tools.editions import setup_end
from utils.errors import input_error
from utils.paths import write_text_atomic

SETUP_SECONDS = 300  # the release's set-up cells (imports, parameters): ~10 s on one core
DEFAULT_TIME_LIMIT = 300  # seconds per cell of the student's and per test the recorder runs
MAX_RECORD_BYTES = 50_000_000
MAX_MESSAGE = 400  # characters of a message in the CSV
MAX_FEEDBACK = 3000  # characters of one test's message in the feedback file
MAX_OUTPUT = 20_000  # characters kept of a cell's output in the executed notebook
FLAT_SEPARATOR = "__"
RUNNER = Path(__file__).with_name("run_notebook.py")
CHECK_CELL = re.compile(r"^\s*(grader\.check\(\s*[\"'][\w-]+[\"']\s*\)|checks\.check_\w+\(.*\))\s*$", re.S)
CSV_FIELDS = ("student", "notebook", "question", "score", "possible", "status", "message")
MANUAL_FIELDS = ("student", "notebook", "question", "possible", "score", "answer")
MAX_ANSWER = 5000  # characters of a free-text answer in manual.csv
TOTAL_FIELDS = ("student", "notebook", "submitted_at", "days_late", "raw_score", "penalty_percent", "score",
                "possible")


# ---------------------------------------------------------------------------------------------- submissions

@dataclass(frozen=True)
class Submission:
    """One student's notebook."""

    student: str
    notebook: str  # the release notebook's stem it answers, e.g. 01_quantization_visualized
    path: Path
    submitted_at: datetime | None = None


def notebook_for(filename: str, stems: Iterable[str]) -> str | None:
    """The release notebook a file name stands for, or None: exact stems, and the names Colab and browsers give a
    download or a copy ("Copy of NAME.ipynb", "NAME (2).ipynb", "NAME-ada.ipynb", "01.ipynb" when unique)."""
    name = re.sub(r"\.ipynb$", "", filename, flags=re.I).strip()
    name = re.sub(r"^(copy\s+of\s+)+", "", name, flags=re.I)
    name = re.sub(r"(\s*\(\d+\))+$", "", name).strip()
    stems = list(stems)
    for stem in stems:
        if name.lower() == stem.lower() or name.lower().startswith(stem.lower()):
            return stem
    number = re.match(r"^(\d\d)(?:\D|$)", name)
    candidates = [s for s in stems if number and s.startswith(number.group(1))]
    return candidates[0] if len(candidates) == 1 else None


def _parse_time(text: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace(" UTC", "+00:00").replace("Z", "+00:00"))
    except ValueError:
        raise input_error(where, f"{text.strip()[:40]!r} is not a time",
                          "write an ISO 8601 time with its offset, e.g. 2026-12-01T23:59:00+01:00") from None
    if value.tzinfo is None:
        raise input_error(where, f"{text.strip()!r} has no time zone",
                          "add the offset, e.g. 2026-12-01T23:59:00+01:00 (or Z for UTC)")
    return value


def read_times(path: Path | None) -> dict[str, datetime]:
    """``--times``: a CSV with columns ``student`` and ``submitted_at``."""
    if path is None:
        return {}
    if not path.is_file():
        raise input_error(f"--times {path}", "is not a file", "give a CSV with columns student,submitted_at")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    if not rows or not {"student", "submitted_at"} <= set(rows[0]):
        raise input_error(f"--times {path}", "needs the columns student and submitted_at",
                          "write a header row: student,submitted_at")
    return {r["student"]: _parse_time(r["submitted_at"], f"{path}, student {r['student']}") for r in rows}


def find_submissions(folder: Path, stems: list[str], times: dict[str, datetime] | None = None
                     ) -> tuple[list[Submission], list[str]]:
    """The submissions in ``folder`` and the files that were skipped, each with the reason. InputError if the folder
    is missing or holds no notebook, or a student handed in two files for one notebook."""
    if not folder.is_dir():
        raise input_error(f"submissions folder {folder}", "is not a folder",
                          "give the folder with one sub-folder per student, or <student>__<notebook>.ipynb files")
    times = times or {}
    found, skipped = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = sorted(p for p in entry.rglob("*.ipynb")
                           if p.is_file() and not any(part.startswith(".") for part in p.relative_to(entry).parts))
            pairs = [(entry.name, p) for p in files]
        elif entry.suffix.lower() == ".ipynb" and FLAT_SEPARATOR in entry.name:
            pairs = [(entry.name.split(FLAT_SEPARATOR, 1)[0], entry)]
        else:
            skipped.append(f"{entry.name}: not a student's folder nor <student>{FLAT_SEPARATOR}<notebook>.ipynb")
            continue
        for student, path in pairs:
            stem = notebook_for(path.name.split(FLAT_SEPARATOR, 1)[-1], stems)
            if stem is None:
                skipped.append(f"{path.relative_to(folder)}: its name matches none of the notebooks {stems}")
                continue
            stamp = next((p / "timestamp.txt" for p in [path.parent, *path.parents]
                          if (p / "timestamp.txt").is_file() and folder in p.parents), None)
            when = (_parse_time(stamp.read_text(encoding="utf-8"), str(stamp)) if stamp else times.get(student))
            found.append(Submission(student, stem, path, when))
    if not found:
        raise input_error(f"submissions folder {folder}", "holds no notebook of this release",
                          f"put each student's notebooks ({', '.join(stems)}) in a folder named for the student")
    seen: dict[tuple[str, str], Path] = {}
    for sub in found:
        if (sub.student, sub.notebook) in seen:
            raise input_error(str(sub.path), f"student {sub.student!r} handed in {sub.notebook} twice (also "
                              f"{seen[sub.student, sub.notebook]})", "keep the one to grade, move the other out")
        seen[sub.student, sub.notebook] = sub.path
    return sorted(found, key=lambda s: (s.student, s.notebook)), skipped


# ---------------------------------------------------------------------------------------------- one submission

@dataclass
class QuestionResult:
    """The grade of one question (all its test cases)."""

    question: str
    score: float
    possible: float
    status: str  # passed, partial, failed or error
    messages: list[str] = field(default_factory=list)  # what each failed test case said


@dataclass
class NotebookResult:
    submission: Submission
    questions: list[QuestionResult]
    note: str = ""  # why nothing could be graded, or what stopped the run
    manual: dict[str, tuple[str, float]] = field(default_factory=dict)  # hand-marked question -> (answer, points)

    @property
    def score(self) -> float:
        return sum(q.score for q in self.questions)

    @property
    def possible(self) -> float:
        return sum(q.possible for q in self.questions)


def compose(release_nb, submitted_nb, recorder: str) -> nbformat.NotebookNode:
    """The notebook the sandbox runs: the release's set-up cells, the submission's exercise section (without check
    cells and outputs), the recorder. ValueError when the submission has no exercise section."""
    start = next((i for i, c in enumerate(submitted_nb.cells)
                  if c.cell_type == "markdown" and "## Exercises" in c.source), None)
    if start is None:
        raise ValueError("the notebook has no '## Exercises' section: is it the right notebook?")
    cells = [nbformat.v4.new_code_cell(c.source, metadata={"grading": "setup"})
             for c in release_nb.cells[:setup_end(release_nb)] if c.cell_type == "code"]
    cells += [nbformat.v4.new_code_cell(c.source) if c.cell_type == "code" else nbformat.v4.new_markdown_cell(c.source)
              for c in submitted_nb.cells[start:]
              if c.cell_type in ("code", "markdown") and not (c.cell_type == "code" and CHECK_CELL.match(c.source))]
    cells.append(nbformat.v4.new_code_cell(recorder, metadata={"grading": "record"}))
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = cells
    return nb


def run_tests(tests_dir: Path, env: dict) -> list[QuestionResult]:
    """Otter's tests in ``tests_dir`` (one file per question) against ``env``, in this process."""
    import torch
    from otter.test_files.exception_test import ExceptionTestFile

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the sandbox's kernel, so inputs fingerprint alike
    results = []
    try:
        for path in sorted(tests_dir.glob("*.py")):
            test_file = ExceptionTestFile.from_file(str(path))
            test_file.run(dict(env))
            possible = float(sum(tc.points or 0 for tc in test_file.test_cases))
            score = float(sum(r.test_case.points or 0 for r in test_file.test_case_results if r.passed))
            failed = list(dict.fromkeys(_clean(r.message) for r in test_file.test_case_results if not r.passed))
            status = ("passed" if not failed else "partial" if score > 0 else "failed")
            results.append(QuestionResult(test_file.name, score, possible, status, failed))
    finally:
        torch.set_num_threads(threads)
    return results


def _clean(message: str) -> str:
    """An otter failure message reduced to what the check said (the checker's words, or the error)."""
    last = message.strip().splitlines()[-1] if message.strip() else message
    return re.sub(r"^(utils\.exercises\.common\.)?CheckFailed: ", "", last.strip())


def _errors_only(tests_dir: Path, why: str) -> list[QuestionResult]:
    """Every question of ``tests_dir`` as an error with no points, saying ``why`` (nothing could be graded)."""
    from otter.test_files.exception_test import ExceptionTestFile

    files = [ExceptionTestFile.from_file(str(p)) for p in sorted(tests_dir.glob("*.py"))]
    return [QuestionResult(f.name, 0.0, float(sum(tc.points or 0 for tc in f.test_cases)), "error", [why])
            for f in files]


def _truncate_outputs(nb) -> None:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out and len(out["text"]) > MAX_OUTPUT:
                out["text"] = out["text"][:MAX_OUTPUT] + "\n[... output cut by the grader]"
            if "data" in out:
                out["data"] = {k: (v[:MAX_OUTPUT] if isinstance(v, str) else v) for k, v in out["data"].items()
                               if k in ("text/plain", "image/png")}
            if "traceback" in out:
                out["traceback"] = [t[:MAX_OUTPUT] for t in out["traceback"][-10:]]


def manual_answers(submitted_nb, questions: list[dict]) -> dict[str, tuple[str, float]]:
    """The student's answer to each hand-marked question: the Markdown cell after the cell whose source is the
    question's anchor (otter's ``grader.check`` or prompt cell before it); "" where it is missing or unchanged."""
    sources = [c.source for c in submitted_nb.cells]
    answers = {}
    for q in questions:
        at = next((i for i, s in enumerate(sources) if s.strip() == q["anchor"].strip()), None)
        cell = submitted_nb.cells[at + 1] if at is not None and at + 1 < len(sources) else None
        text = cell.source.strip() if cell is not None and cell.cell_type == "markdown" else ""
        answers[q["name"]] = ("" if text == q["prompt"].strip() else text[:MAX_ANSWER], float(q["points"]))
    return answers


def grade_submission(sub: Submission, release: Path, course: Path, executed_dir: Path, mode: str,
                     time_limit: float) -> NotebookResult:
    """Grade one submission (see the module's docstring); never raises for a student's mistake."""
    result = _grade_code(sub, release, course, executed_dir, mode, time_limit)
    manual = release / "autograder" / sub.notebook / "manual.json"
    if manual.is_file():
        try:
            result.manual = manual_answers(nbformat.read(str(sub.path), as_version=4),
                                           json.loads(manual.read_text(encoding="utf-8")))
        except Exception:  # an unreadable notebook: its code questions say so already
            result.manual = {q["name"]: ("", float(q["points"]))
                             for q in json.loads(manual.read_text(encoding="utf-8"))}
    return result


def _grade_code(sub: Submission, release: Path, course: Path, executed_dir: Path, mode: str,
                time_limit: float) -> NotebookResult:
    tests_dir = release / "autograder" / sub.notebook / "tests"
    try:
        submitted = nbformat.read(str(sub.path), as_version=4)
        nb = compose(nbformat.read(str(release / "student" / "notebooks" / f"{sub.notebook}.ipynb"), as_version=4),
                     submitted, codec.recorder_source(f"/course/.grading/{sub.notebook}/tests"
                                                      if mode == "bwrap" else str(course / ".grading" / sub.notebook
                                                                                  / "tests"),
                                                      "record.json", int(time_limit)))
    except Exception as err:  # not a notebook, truncated JSON, no exercise section ...
        why = f"could not read the notebook: {type(err).__name__}: {str(err)[:300]}"
        return NotebookResult(sub, _errors_only(tests_dir, why), why)
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        work = Path(tmp)
        nbformat.write(nb, str(work / "submission.ipynb"))
        runner = "/course/.grading/run_notebook.py" if mode == "bwrap" else str(course / ".grading" / RUNNER.name)
        finished = sandbox.run([sys.executable, runner, "submission.ipynb", "executed.ipynb", str(time_limit),
                                str(SETUP_SECONDS)], course, work, SETUP_SECONDS + 3 * time_limit, mode)
        note = "" if finished.returncode == 0 else (
            "stopped at the time limit" if finished.returncode is None else f"the run ended with an error "
            f"(exit {finished.returncode}): {finished.output.strip().splitlines()[-1][:200] if finished.output.strip() else ''}")
        executed = work / "executed.ipynb"
        if executed.is_file() and executed.stat().st_size < 200_000_000:
            try:
                ran = nbformat.read(str(executed), as_version=4)
                _truncate_outputs(ran)
                target = executed_dir / _safe(sub.student) / f"{sub.notebook}.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                write_text_atomic(target, nbformat.writes(ran))
            except Exception:  # the student's outputs are for review only
                pass
        record_path = work / "record.json"
        if not record_path.is_file() or record_path.stat().st_size > MAX_RECORD_BYTES:
            why = note or "the notebook's answers could not be recorded"
            if record_path.is_file():
                why = f"the answers are too large to grade (over {MAX_RECORD_BYTES:,} bytes)"
            return NotebookResult(sub, _errors_only(tests_dir, why), why)
        try:
            env = codec.replay_env(json.loads(record_path.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as err:
            why = f"the recorded answers are malformed ({str(err)[:200]})"
            return NotebookResult(sub, _errors_only(tests_dir, why), why)
    return NotebookResult(sub, run_tests(tests_dir, env), note)


# ---------------------------------------------------------------------------------------------- the class

def _csv(fields: tuple[str, ...], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def days_late(submitted: datetime | None, due: datetime | None) -> int:
    """Whole days (each started day counts) after ``due``; 0 when on time or either is unknown."""
    if submitted is None or due is None or submitted <= due:
        return 0
    return math.ceil((submitted - due).total_seconds() / 86400)


def tables(results: list[NotebookResult], due: datetime | None, penalty_per_day: float,
           marked: dict[tuple[str, str, str, str], str] | None = None) -> dict[str, str]:
    """The CSV files' contents: ``questions.csv``, ``totals.csv``, ``summary.csv``, ``manual.csv`` (with the scores
    of ``marked``, ``{(student, notebook, question, answer): score}``, carried over where the answer is the same)."""
    rows, totals, per_question = [], [], {}
    for r in results:
        for q in r.questions:
            rows.append({"student": r.submission.student, "notebook": r.submission.notebook, "question": q.question,
                         "score": f"{q.score:g}", "possible": f"{q.possible:g}", "status": q.status,
                         "message": _short(" | ".join(q.messages), MAX_MESSAGE)})
            per_question.setdefault((r.submission.notebook, q.question), []).append(q)
        late = days_late(r.submission.submitted_at, due)
        penalty = min(100.0, late * penalty_per_day)
        totals.append({"student": r.submission.student, "notebook": r.submission.notebook,
                       "submitted_at": r.submission.submitted_at.isoformat() if r.submission.submitted_at else "",
                       "days_late": late, "raw_score": f"{r.score:g}", "penalty_percent": f"{penalty:g}",
                       "score": f"{round(r.score * (1 - penalty / 100), 2):g}", "possible": f"{r.possible:g}"})
    summary = [{"notebook": nb, "question": q, "students": len(qs),
                "passed": sum(x.status == "passed" for x in qs),
                "mean_score": f"{sum(x.score for x in qs) / len(qs):.2f}", "possible": f"{qs[0].possible:g}"}
               for (nb, q), qs in sorted(per_question.items())]
    manual = [{"student": r.submission.student, "notebook": r.submission.notebook, "question": q,
               "possible": f"{points:g}", "score": (marked or {}).get((r.submission.student, r.submission.notebook, q,
                                                                           text), ""), "answer": text}
              for r in results for q, (text, points) in r.manual.items()]
    return {"questions.csv": _csv(CSV_FIELDS, rows), "totals.csv": _csv(TOTAL_FIELDS, totals),
            "manual.csv": _csv(MANUAL_FIELDS, manual),
            "summary.csv": _csv(("notebook", "question", "students", "passed", "mean_score", "possible"), summary)}


def feedback(student: str, results: list[NotebookResult]) -> str:
    """One student's feedback: per notebook, the score and what each failed check said."""
    lines = [f"# Feedback for {student}", ""]
    for r in results:
        lines += [f"## {r.submission.notebook}: {r.score:g} of {r.possible:g} points", ""]
        if r.note:
            lines += [f"Note: {_short(r.note, MAX_FEEDBACK)}", ""]
        for q in r.questions:
            mark = {"passed": "✓", "partial": "½", "failed": "✗", "error": "!"}[q.status]
            lines.append(f"- {mark} **{q.question}** ({q.score:g}/{q.possible:g})")
            lines += [f"  - {_short(m, MAX_FEEDBACK)}" for m in q.messages]
        lines.append("")
    return "\n".join(lines)


def private_course(release: Path, into: Path) -> Path:
    """A read-only copy of the release's student folder, with the grading files the sandbox needs in ``.grading/``
    (the runner, and each notebook's tests: they call the checkers; the answer keys are not among them)."""
    course = into / "course"
    shutil.copytree(release / "student", course, ignore=shutil.ignore_patterns(".git"))
    grading = course / ".grading"
    grading.mkdir()
    shutil.copy2(RUNNER, grading / RUNNER.name)
    for tests in (release / "autograder").glob("*/tests"):
        shutil.copytree(tests, grading / tests.parent.name / "tests")
    for path in [course, *course.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return course


def _make_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def check_release(release: Path) -> list[str]:
    """The notebook stems of a release folder; InputError if it is not one."""
    stems = sorted(p.stem for p in (release / "student" / "notebooks").glob("*.ipynb")) \
        if (release / "student" / "notebooks").is_dir() else []
    if not stems or not (release / "autograder").is_dir():
        raise input_error(f"--release {release}", "is not a classroom release (student/notebooks/ and autograder/)",
                          "give the folder `python -m tools.classroom release OUT` wrote")
    return stems


def grade(submissions: Path, release: Path, out: Path, due: datetime | None = None, penalty_per_day: float = 0.0,
          mode: str | None = None, time_limit: float = DEFAULT_TIME_LIMIT, jobs: int = 1, overwrite: bool = False,
          times: dict[str, datetime] | None = None, progress=None) -> tuple[list[NotebookResult], list[str]]:
    """Grade every submission (see the module's docstring); returns the results and the skipped files."""
    mode = sandbox.check_mode(mode or sandbox.default_mode())
    stems = check_release(release)
    if (out / "questions.csv").exists() and not overwrite:
        raise input_error(f"--out {out}", "holds grades already (questions.csv)",
                          "pass --overwrite to replace them, or give another folder")
    subs, skipped = find_submissions(submissions, stems, times)
    if out.resolve() == submissions.resolve() or submissions.resolve() in out.resolve().parents:
        raise input_error(f"--out {out}", "is inside the submissions folder", "write the grades somewhere else")
    marked = _keep_marks(out / "manual.csv")
    results: list[NotebookResult] = []
    with tempfile.TemporaryDirectory(prefix="grading-course-") as tmp:
        course = private_course(release, Path(tmp))

        def one(sub: Submission) -> NotebookResult:
            result = grade_submission(sub, release, course, out / "executed", mode, time_limit)
            if progress:
                progress(result)
            return result

        try:
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                for result in pool.map(one, subs):
                    results.append(result)
                    for name, text in tables(results, due, penalty_per_day, marked).items():
                        write_text_atomic(out / name, text)
        finally:
            _make_writable(Path(tmp))
    by_student: dict[str, list[NotebookResult]] = {}
    for r in results:
        by_student.setdefault(r.submission.student, []).append(r)
    for student, rs in by_student.items():
        write_text_atomic(out / "feedback" / f"{_safe(student)}.md", feedback(student, rs))
    return results, skipped


def _keep_marks(path: Path) -> dict[tuple[str, str, str, str], str]:
    """The scores a teacher has written into an earlier ``manual.csv``, by (student, notebook, question, answer); the
    file itself is kept beside as ``manual.csv.<time>`` so that no mark is lost, whatever the new run finds."""
    if not path.is_file():
        return {}
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    marked = {(r["student"], r["notebook"], r["question"], r["answer"]): r["score"] for r in rows
              if r.get("score", "").strip()}
    if marked:
        shutil.copy2(path, path.with_name(f"manual.csv.{datetime.now().strftime('%Y%m%d-%H%M%S')}"))
    return marked


def _safe(name: str) -> str:
    return re.sub(r"[^\w.@-]+", "_", name).strip("._") or "student"
