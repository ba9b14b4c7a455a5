"""Classroom grading end to end: a release of every notebook, then notebook 01 submissions of each kind graded in the
sandbox (bubblewrap), with exact expected grades.

One module-scoped run of ``tools.classroom.grade`` grades 7 submissions (a kernel each, ~7 s of imports apiece on one
core; ``--jobs 2``; a 5 s time limit per cell and per test, which the endless submission uses up three times). The
attacks are written as a student would: they search the file system for the course, the answer keys and the grades,
patch what they find on disk and in memory, and leave a process behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import torch

from tools.classroom import gradebook, release
from tools.classroom.grade import MAX_FEEDBACK, MAX_MESSAGE, grade, notebook_for
from tools.editions import setup_end
from utils.errors import InputError
from utils.notebooks import NOTEBOOK_DIR, course_notebooks
from utils.paths import REPO_ROOT

NB = "01_quantization_visualized"
REPO = "https://github.com/teacher/qlora-assignments"
POINTS = {"absmax_int4": 3, "bits_per_weight": 2, "spoiled_block": 3, "why_outlier_block": 1, "nf4_levels": 3}
MANUAL_ANSWER = "The inner levels move toward zero; 0 and the two ends stay."
TIME_LIMIT = 5  # s per cell and per test (set-up cells excepted): dan uses it up 3 times; other cells take < 1 s
GRADES_CANARY = "TAMPERED"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """The release of every notebook with exercises."""
    return release.build_release(tmp_path_factory.mktemp("release") / "out", REPO, "main")


def _questions() -> dict[str, release.Question]:
    nb = nbformat.read(str(NOTEBOOK_DIR / f"{NB}.ipynb"), as_version=4)
    return {q.name: q for q in release.questions(nb, NB)}


def _submission(made: dict[str, Path], answers: dict[str, str], first: str = "") -> nbformat.NotebookNode:
    """The student notebook with the named exercises' cells replaced by ``answers`` (solution sources by default) and
    ``first`` as an extra cell at the top of the exercise section; with every exercise answered, the hand-marked
    question too."""
    nb = nbformat.read(str(made["student"] / "notebooks" / f"{NB}.ipynb"), as_version=4)
    if set(answers) == set(POINTS):
        answer_cell = next(c for c in nb.cells if c.cell_type == "markdown" and "otter_answer_cell" in
                           c.metadata.get("tags", []))
        answer_cell.source = MANUAL_ANSWER
    by_stub = {q.exercise: q for q in _questions().values() if q.kind != "manual"}
    for cell in nb.cells:
        q = by_stub.get(cell.source)
        if q is not None and q.name in answers:
            cell.source = answers[q.name] if answers[q.name] is not None else q.solution
    if first:
        start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Exercises" in c.source)
        nb.cells.insert(start + 1, nbformat.v4.new_code_cell(first))
    return nb


ALL = dict.fromkeys(POINTS)  # every exercise: the solution
WRONG_ABSMAX = "def absmax_int4(x):\n    s = x.abs().max()\n    return torch.trunc(x / s * 7), s\n"
ENDLESS_FUNCTION = "def spoiled_block(position, blocksize, shape):\n    while True:\n        pass\n"
HUGE = "def nf4_levels_yours():\n    raise ValueError('x' * 2_000_000)\n"
# A solution hard-coded to the public inputs: right there, wrong on the hidden ones.
OVERFIT = ("def spoiled_block(position, blocksize, shape):\n"
           "    return {((0, 0), 64): 0, ((0, 100), 64): 1, ((2, 5), 64): 12, ((191, 200), 128): 574}"
           ".get((tuple(position), blocksize), 0)\n")
SEARCH = '''import os
found = []
for top in ("/",):  # (the student's own notebook, in their working folder, left out)
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev", "usr", "site-packages", ".pyenv", ".venv")
                   and os.path.join(root, d) != os.getcwd()]
        for f in files:
            if f in ("nb01.json", "nb01.py", "questions.csv", "totals.csv") or f.endswith(".ipynb"):
                found.append(os.path.join(root, f))
'''
READ_SOLUTIONS = SEARCH + '''
import json
why_answer = None
solutions = []
for path in found:
    try:
        text = open(path).read()
    except OSError:
        continue
    if path.endswith("nb01.json"):
        why_answer = json.loads(text)["why_outlier_block"]["correct"]
    if "torch.round(x / scale * 7), scale" in text or '"solution"' in text:
        solutions.append(path)
print("FOUND", sorted(p for p in found if p.endswith("nb01.json")) + solutions)
'''
ON_DISK = SEARCH + '''
hacked = []
for path in [p for p in found if p.endswith(("nb01.py", ".csv"))]:
    try:
        with open(path, "a") as f:
            f.write("\\ncheck_absmax_int4 = check_spoiled_block = check_nf4_levels = lambda *a, **k: 'ok'\\n"
                    if path.endswith(".py") else "ada,01_quantization_visualized,absmax_int4,99,3,passed,TAMPERED\\n")
        hacked.append(path)
    except OSError:
        pass
print("HACKED", hacked, len(found))
'''
IN_MEMORY = '''import sys
import utils.exercises.nb01 as m
import utils.exercises.common as c
for name in dir(m):
    if name.startswith("check_"):
        setattr(m, name, lambda *a, **k: "✓")
c.CheckFailed = type("Nope", (Exception,), {})
import otter.test_files.exception_test as et
et.ExceptionTestFile.run = lambda self, env: setattr(self, "test_case_results", [])
sys.modules["utils.exercises.nb01"] = m
'''
LEFTOVER = "qlora-leftover-process"  # in the command line of the process gus leaves behind
GRADES_FILE = '''import os, subprocess, sys
code = """
import os, time
for _ in range(240):  # qlora-leftover-process: for two minutes, append a forged row to the grades
    time.sleep(0.5)
    for path in {paths!r}:
        try:
            with open(path, "a") as f:
                f.write("ada,01_quantization_visualized,absmax_int4,99,3,passed,TAMPERED\\\\n")
        except OSError:
            pass
"""
subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
'''
CRASH = "import os\nos._exit(3)\n"


def _kinds(grades_dir: Path) -> dict[str, tuple[str, dict[str, str], str]]:
    """{student: (file name, answers, first cell)}: the kinds of submission, several to a student where they do not
    interfere (each kernel costs seconds)."""
    paths = [str(grades_dir / n) for n in ("questions.csv", "totals.csv")]
    return {
        "ada": (f"{NB}.ipynb", ALL, ""),  # correct
        "bob": (f"{NB}.ipynb", {}, ""),  # empty: the student notebook as released
        # wrong, fitted to the public inputs, a 2 MB error message, under Colab's download name, 3 days late
        "cy": (f"Copy of {NB} (2).ipynb", {**ALL, "absmax_int4": WRONG_ABSMAX, "spoiled_block": OVERFIT,
                                             "nf4_levels": HUGE}, ""),
        "dan": (f"{NB}.ipynb", {**ALL, "spoiled_block": ENDLESS_FUNCTION}, "while True:\n    pass\n"),  # endless
        "eve": (f"{NB}.ipynb", {}, READ_SOLUTIONS + "why_outlier_block = why_answer\n" + ON_DISK),
        "gus": (f"{NB}.ipynb", {}, IN_MEMORY + GRADES_FILE.replace("{paths!r}", repr(paths))),
        "jon": (f"{NB}.ipynb", ALL, CRASH),  # the kernel dies
    }


# Exact grades per student and question (points earned).
FULL = dict(POINTS)
ZERO = dict.fromkeys(POINTS, 0)
EXPECTED = {
    "ada": FULL, "bob": ZERO, "dan": {**FULL, "spoiled_block": 0}, "eve": ZERO, "gus": ZERO, "jon": ZERO,
    # absmax wrong; spoiled_block's public test (1 point) passes, its hidden one (2) does not; nf4 raises
    "cy": {**FULL, "absmax_int4": 0, "spoiled_block": 1, "nf4_levels": 0},
}


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def graded(made, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("class")
    subs, out = root / "submissions", root / "grades"
    for student, (name, answers, first) in _kinds(out).items():
        (subs / student).mkdir(parents=True)
        nbformat.write(_submission(made, answers, first), str(subs / student / name))
    (subs / "cy" / "timestamp.txt").write_text("2026-12-03T10:00:00+00:00\n")  # 2 days and 10 h late: 3 days
    before = {"course": _digest(REPO_ROOT / "utils"), "release": _digest(made["student"])}
    checkers = {p: p.read_bytes() for p in (REPO_ROOT / "utils" / "exercises").glob("*.py")}
    try:
        results, skipped = grade(subs, made["student"].parent, out, due=_due(), penalty_per_day=10, mode="bwrap",
                                 time_limit=TIME_LIMIT, jobs=2)
    finally:  # were the sandbox broken, eve's attack would have changed this checkout: undo it (the test fails)
        for path, text in checkers.items():
            if path.read_bytes() != text:
                path.write_bytes(text)
    import time

    time.sleep(3)  # gus's process, were it alive, would have written to the grades meanwhile
    rows = list(csv.DictReader(io.StringIO((out / "questions.csv").read_text())))
    return {"rows": rows, "results": results, "skipped": skipped, "out": out, "before": before, "made": made,
            "totals": list(csv.DictReader(io.StringIO((out / "totals.csv").read_text())))}


def _due():
    from datetime import datetime

    return datetime.fromisoformat("2026-12-01T00:00:00+00:00")


def test_every_grade_is_exact(graded):
    got = {(r["student"], r["question"]): float(r["score"]) for r in graded["rows"]}
    expected = {(s, q): float(p) for s, qs in EXPECTED.items() for q, p in qs.items()}
    assert got == expected
    assert all(r["possible"] == str(POINTS[r["question"]]) for r in graded["rows"])
    assert not graded["skipped"]


def test_no_tampering_reaches_the_course_the_release_or_the_grades(graded):
    assert _digest(REPO_ROOT / "utils") == graded["before"]["course"]
    assert _digest(graded["made"]["student"]) == graded["before"]["release"]
    for name in ("questions.csv", "totals.csv", "summary.csv"):
        assert GRADES_CANARY not in (graded["out"] / name).read_text()
    assert "99" not in {r["score"] for r in graded["rows"]}


def test_no_process_outlives_its_sandbox(graded):
    alive = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            alive += [cmdline.parent.name] if LEFTOVER in cmdline.read_text(errors="replace") else []
        except OSError:
            pass
    assert alive == []


def _outputs(graded, student: str) -> str:
    nb = nbformat.read(str(graded["out"] / "executed" / student / f"{NB}.ipynb"), as_version=4)
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_the_solution_reader_finds_no_solution_and_the_disk_attack_writes_nothing(graded):
    assert "FOUND []" in _outputs(graded, "eve")
    assert "HACKED []" in _outputs(graded, "eve")


def test_messages_say_what_is_wrong_and_stay_short(graded):
    rows = {(r["student"], r["question"]): r for r in graded["rows"]}
    assert "not written yet" in rows["bob", "absmax_int4"]["message"]
    assert "nearest integer" in rows["cy", "absmax_int4"]["message"]
    assert rows["bob", "why_outlier_block"]["message"].startswith("not answered yet")
    assert "ValueError" in rows["cy", "nf4_levels"]["message"]
    assert max(len(r["message"]) for r in graded["rows"]) <= MAX_MESSAGE
    feedback = (graded["out"] / "feedback" / "cy.md").read_text()
    assert len(feedback) < 6 * (MAX_FEEDBACK + 200)
    assert rows["dan", "absmax_int4"]["status"] == "passed" and rows["dan", "spoiled_block"]["status"] == "failed"
    assert all(rows["jon", q]["status"] == "error" for q in POINTS)


def test_late_penalty_and_totals(graded):
    totals = {r["student"]: r for r in graded["totals"]}
    assert totals["cy"]["days_late"] == "3" and totals["cy"]["penalty_percent"] == "30"
    assert float(totals["cy"]["score"]) == pytest.approx(0.7 * (sum(POINTS.values()) - 3 - 2 - 3))
    assert totals["ada"]["score"] == "12" and totals["ada"]["days_late"] == "0"


def test_manual_answers_are_collected_and_their_marks_exported(graded, tmp_path):
    rows = list(csv.DictReader(io.StringIO((graded["out"] / "manual.csv").read_text())))
    answers = {r["student"]: r["answer"] for r in rows}
    assert answers["ada"] == MANUAL_ANSWER and answers["bob"] == "" and set(answers) == set(EXPECTED)
    assert {r["question"] for r in rows} == {"nf4_offset"} and {r["possible"] for r in rows} == {"2"}
    with pytest.raises(InputError, match=r"7 answer\(s\) have no score yet"):
        gradebook.export(graded["out"], "plain", tmp_path / "plain.csv")
    marked = tmp_path / "grades"
    shutil.copytree(graded["out"], marked)
    for r in rows:
        r["score"] = "2" if r["answer"] else "0"
    with open(marked / "manual.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    gradebook.export(marked, "plain", tmp_path / "plain.csv")
    plain = {r["student"]: r for r in csv.DictReader(io.StringIO((tmp_path / "plain.csv").read_text()))}
    assert plain["ada"]["score"] == "14" and plain["ada"]["possible"] == "14"  # 12 automatic + 2 by hand
    assert float(plain["cy"]["score"]) == pytest.approx(0.7 * (sum(POINTS.values()) - 8 + 2))  # the penalty too
    rows[0]["score"] = "3"
    with open(marked / "manual.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(InputError, match="line 2 .* is not a number from 0 to 2"):
        gradebook.export(marked, "plain", tmp_path / "plain2.csv")


def test_the_model_answer_of_the_manual_question_holds():
    """nb01's model answer: with offset 0.99 every level but -1, 0 and 1 moves toward zero."""
    from utils.lessons import quant

    before, after = quant.nf4_levels(), quant.nf4_levels(offset=0.99)
    fixed = (before.abs() == 1) | (before == 0)
    assert torch.equal(before[fixed], after[fixed])
    assert bool((after[~fixed].abs() < before[~fixed].abs()).all())


def test_gradebook_exports(graded, tmp_path):
    roster = tmp_path / "canvas.csv"
    roster.write_text("Student,ID,SIS User ID,SIS Login ID,Section,QLoRA 01\n"
                      "    Points Possible,,,,,12\n"
                      + "".join(f"Student {s},{i},{1000 + i},{s},A,\n" for i, s in enumerate(EXPECTED))
                      + "Zed Absent,99,1099,zed,A,\n")
    out = tmp_path / "import.csv"
    assert gradebook.export(graded["out"], "canvas", out, roster, "QLoRA 01", unmarked_as_zero=True) == len(EXPECTED)
    rows = {r["SIS Login ID"]: r for r in csv.DictReader(io.StringIO(out.read_text()))}
    assert rows["ada"]["QLoRA 01"] == "12" and rows["zed"]["QLoRA 01"] == ""
    with pytest.raises(InputError, match="exists already"):
        gradebook.export(graded["out"], "canvas", out, roster, "QLoRA 01", unmarked_as_zero=True)
    roster.write_text("Student,ID,SIS User ID,SIS Login ID,Section\nOnly Ada,1,1,ada,A\n")
    with pytest.raises(InputError, match="graded student 'bob' is not in the roster"):
        gradebook.export(graded["out"], "canvas", tmp_path / "x.csv", roster, "QLoRA 01", unmarked_as_zero=True)


def test_process_mode_grades_alike_in_a_clean_environment(made, tmp_path, monkeypatch):
    """--sandbox process (no bubblewrap): the same grades for a correct notebook, and the kernel does not see the
    grader's environment."""
    monkeypatch.setenv("QLORA_GRADER_ONLY", "secret")
    (tmp_path / "subs" / "ada").mkdir(parents=True)
    nb = _submission(made, ALL, 'import os\nprint("GRADER ENV", os.environ.get("QLORA_GRADER_ONLY"))\n')
    nbformat.write(nb, str(tmp_path / "subs" / "ada" / f"{NB}.ipynb"))
    results, _ = grade(tmp_path / "subs", made["student"].parent, tmp_path / "grades", mode="process",
                       time_limit=TIME_LIMIT)
    assert {q.question: q.score for q in results[0].questions} == FULL
    executed = nbformat.read(str(tmp_path / "grades" / "executed" / "ada" / f"{NB}.ipynb"), as_version=4)
    assert "GRADER ENV None" in "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))


def test_grading_again_into_the_same_folder_is_refused(graded, tmp_path):
    with pytest.raises(InputError, match="holds grades already"):
        grade(tmp_path, graded["made"]["student"].parent, graded["out"], mode="bwrap")


@pytest.mark.parametrize("name, expected", [
    (f"{NB}.ipynb", NB), (f"Copy of {NB}.ipynb", NB), (f"Copy of Copy of {NB} (3).ipynb", NB),
    ("01.ipynb", NB), ("01_quantization_visualized-ada.ipynb", NB), ("07_other.ipynb", None), ("notes.ipynb", None),
])
def test_file_names_colab_and_browsers_give(name, expected):
    assert notebook_for(name, [NB, "02_nf4_vs_int4"]) == expected


def test_the_release_holds_no_solution_and_the_student_branch_neither(made, tmp_path):
    notebooks = [p for p in course_notebooks() if release.has_exercises(p)]
    assert release.leaked_solutions(made["student"], notebooks) == []
    assert not (made["student"] / "answers").exists() and not (made["student"] / "tools").exists()
    leaky = tmp_path / "leaky"
    shutil.copytree(made["student"], leaky)
    (leaky / "notebooks" / "extra.py").write_text(_questions()["nf4_levels"].solution)
    assert release.leaked_solutions(leaky, notebooks) == [f"notebooks/extra.py: the solution of {NB}:nf4_levels"]
    # publish to a bare repository, clone it as Colab's cell does, and search the clone
    from tools.classroom.publish_student import publish

    bare = tmp_path / "students.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    publish(made["student"], str(bare), "main")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", "main", str(bare), str(clone)], check=True)
    assert release.leaked_solutions(clone, notebooks) == []
    assert json.loads((clone / "publish.json").read_text()) == {"repo": REPO, "branch": "main"}
    assert sorted(p.name for p in (clone / "notebooks").glob("*.ipynb")) == sorted(p.name for p in notebooks)


def test_every_exercise_has_a_hidden_test_or_is_a_value(made):
    for notebook in (p for p in course_notebooks() if release.has_exercises(p)):
        nb = nbformat.read(str(notebook), as_version=4)
        tests = made["student"].parent / "autograder" / notebook.stem / "tests"
        public = made["student"] / release.CHECKS_DIR / notebook.stem
        for q in release.questions(nb, notebook.stem):
            if q.kind == "manual":
                assert not (tests / f"{q.name}.py").exists()
                continue
            text = (tests / f"{q.name}.py").read_text()
            assert ("hidden=True" in text) == (q.kind != "value"), (notebook.name, q.name)
            assert "hidden=True" not in (public / f"{q.name}.py").read_text()


def test_student_notebook_checks_with_otter(made):
    nb = nbformat.read(str(made["student"] / "notebooks" / f"{NB}.ipynb"), as_version=4)
    sources = [c.source for c in nb.cells]
    assert sum(s.startswith('grader.check("') for s in sources) == len(POINTS)
    assert not any("checks.check_" in s for s in sources)
    assert nb.metadata["edition"] == "student" and REPO in sources[1]



def test_grader_check_at_home_says_in_words_what_is_wrong(made, tmp_path):
    """What a student runs: the release notebook's set-up and exercise cells, ``grader.check`` included, in a kernel
    of the student folder (as a Colab clone has it): the public tests pass on the solutions, and on a wrong answer
    say what the checker says."""
    from nbclient import NotebookClient

    nb = _submission(made, {**ALL, "absmax_int4": WRONG_ABSMAX})
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Exercises" in c.source)
    clone = nbformat.v4.new_code_cell(f"import sys\nsys.path.insert(0, {str(made['student'])!r})")  # as on Colab
    nb.cells = [clone] + nb.cells[:setup_end(nb)] + nb.cells[start:]
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    said = {c.source: "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                              for o in c.get("outputs", [])) for c in nb.cells if c.source.startswith("grader.check")}
    assert "nearest integer" in said['grader.check("absmax_int4")']
    for name in ("bits_per_weight", "spoiled_block", "nf4_levels"):
        assert "passed" in said[f'grader.check("{name}")'], said[f'grader.check("{name}")']
    assert "your teacher's grader checks" in said['grader.check("why_outlier_block")']  # the release has no key


@pytest.mark.parametrize("args, message", [
    (["grade", "SUBS", "--release", "NOWHERE", "--out", "OUT"], "is not a classroom release"),
    (["grade", "SUBS", "--release", "RELEASE", "--out", "OUT", "--due", "tomorrow"], "'tomorrow' is not a time"),
    (["grade", "SUBS", "--release", "RELEASE", "--out", "OUT", "--due", "2026-12-01T23:59"], "has no time zone"),
    (["grade", "SUBS", "--release", "RELEASE", "--out", "OUT", "--jobs", "0"], "0 is below 1"),
    (["grade", "SUBS", "--release", "RELEASE", "--out", "OUT", "--late-penalty", "-5"], "-5 is below 0"),
    (["grade", "EMPTY", "--release", "RELEASE", "--out", "OUT"], "holds no notebook of this release"),
    (["release", "RELEASE", "--repo", "https://gitlab.com/a/b"], "GitHub"),
    (["release", "RELEASE", "--repo", REPO], "already exists"),
    (["export", "OUT", "--format", "plain", "--out", "x.csv"], "has no totals.csv"),
    (["publish", "EMPTY", "--push-to", "x"], "is not a student release"),
])
def test_bad_input_is_a_clear_error(made, tmp_path, capsys, args, message):
    from tools.classroom.__main__ import main

    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "OUT").mkdir()
    (tmp_path / "EMPTY" / "notes.txt").write_text("not a notebook")
    names = {"SUBS": str(tmp_path / "EMPTY"), "EMPTY": str(tmp_path / "EMPTY"), "OUT": str(tmp_path / "OUT"),
             "NOWHERE": str(tmp_path / "nowhere"), "RELEASE": str(made["student"].parent)}
    try:
        code = main([names.get(a, a) for a in args])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_python_environment_under_tmp_stays_visible_in_the_sandbox(monkeypatch, tmp_path):
    """The sandbox's fresh /tmp is mounted before the Python folders, so a virtual environment in /tmp (a clone
    there) is still there for the kernel."""
    from tools.classroom import sandbox

    monkeypatch.setattr(sandbox, "_python_dirs", lambda: ["/tmp/clone/.venv"])
    args = sandbox.bwrap_command(["python"], tmp_path / "course", tmp_path / "work")
    assert args.index("/tmp") < args.index("/tmp/clone/.venv") and args[args.index("/tmp") - 1] == "--tmpfs"
