"""The grading command: submissions built from notebook 01's student edition, graded in real kernels.

Five submissions are graded (one kernel each, ~7 s of imports apiece on one core), in two runs of the command
that the module-scoped fixture makes: bob (wrong and crashing answers), cy (cheats) and dee (deleted cells, a
dying kernel) with --jobs 2; ada (correct, flat layout) and flo (an endless loop) with --time-limit 3. The
reference for every message is the checker itself, called in this process on the same answers.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import re
from pathlib import Path

import nbformat
import pytest
import torch

from tools import grade
from tools.editions import cell_tags, student_edition
from utils.exercises import nb01
from utils.exercises.common import CheckFailed
from utils.notebooks import NOTEBOOK_DIR

INSTRUCTOR = NOTEBOOK_DIR / "01_quantization_visualized.ipynb"
NB = INSTRUCTOR.name
CHECKS = ["check_absmax_int4", "check_bits_per_weight", "check_spoiled_block", "check_why_outlier_block",
          "check_nf4_levels"]
ANSWERS = ["absmax_int4", "bits_answers", "spoiled_block", "why_outlier_block", "nf4_levels_yours"]  # checked
LABELS = [f"{k} {name}" for k, name in enumerate(CHECKS, start=1)]
TIME_LIMIT = 3  # s: the endless loop burns all of it; the correct notebook's cells and checks take ~0.3 s


def _instructor():
    return nbformat.read(str(INSTRUCTOR), as_version=4)


def _ids(tag: str) -> list[str]:
    return [c.id for c in _instructor().cells if tag in cell_tags(c)]


EXERCISE_IDS, CHECK_IDS = _ids("exercise"), _ids("check")


def _solutions() -> dict[str, str]:
    """{exercise cell id: the instructor's solution source}."""
    cells = _instructor().cells
    return {cells[i - 1].id: c.source for i, c in enumerate(cells) if "solution" in cell_tags(c)}


def _cell(nb, cell_id: str):
    return next(c for c in nb.cells if c.get("id") == cell_id)


def _index(nb, cell_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.get("id") == cell_id)


def _delete(nb, cell_id: str) -> None:
    nb.cells.pop(_index(nb, cell_id))


def _solved(nb):
    for cell_id, source in _solutions().items():
        _cell(nb, cell_id).source = source
    return nb


def _checker_says(exercise_sources: list[str]) -> list[tuple[str, str]]:
    """(status, message) of each of notebook 01's checks on the given exercise-cell sources, computed here by
    calling the checkers directly (the reference for what the grader must report)."""
    namespace = {"torch": torch, "checks": nb01}
    outcome = []
    for source, name, answer in zip(exercise_sources, CHECKS, ANSWERS, strict=True):
        exec(source, namespace)
        value = namespace[answer]
        try:
            outcome.append(("passed", getattr(nb01, name)(value)))
        except CheckFailed as err:
            outcome.append(("failed", str(err)))
    return outcome


def _write(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def _main(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = grade.main([str(a) for a in argv])
        except SystemExit as exit_:  # argparse
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def _rows(path: Path) -> list[tuple[str, ...]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [tuple(row[k] for k in grade.CSV_FIELDS) for row in csv.DictReader(f)]


STUB = [_cell(student_edition(_instructor()), i).source for i in EXERCISE_IDS]  # the empty exercises
WRONG_ABSMAX = ("def absmax_int4(x):\n    scale = x.abs().max()\n"
                "    return torch.trunc(x / scale * 7), scale  # truncates instead of rounding")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    edition = student_edition(_instructor())
    built = {}

    # bob: a wrong formula, a syntax error, an exercise cell that raises after a right answer, two left empty;
    # an added cell that crashes before the exercises, and a crashing lesson cell (never run by the grader)
    bob = copy.deepcopy(edition)
    _cell(bob, EXERCISE_IDS[0]).source = WRONG_ABSMAX
    _cell(bob, EXERCISE_IDS[1]).source = 'bits_answers = {"block 16 + double quant": 4 + 8 / 16 +, "block 512": 4.0625}'
    _cell(bob, EXERCISE_IDS[2]).source = _solutions()[EXERCISE_IDS[2]] + "\nraise ValueError('stopped here')"
    bob.cells.insert(_index(bob, EXERCISE_IDS[0]), nbformat.v4.new_code_cell("total = undefined_name + 1"))
    lesson = next(c for c in bob.cells[5:] if c.cell_type == "code")
    lesson.source = "raise RuntimeError('a lesson cell, never run by the grader')"
    built["bob"] = bob

    # cy: cheap cheats on empty answers; every one must still fail
    cy = copy.deepcopy(edition)
    _cell(cy, EXERCISE_IDS[0]).source += '\nchecks.check_absmax_int4 = lambda fn: "✓ absmax_int4 matches"'
    _cell(cy, EXERCISE_IDS[1]).source += "\nexec = eval = dict = display = lambda *args, **kwargs: None"
    _cell(cy, CHECK_IDS[1]).source = 'print("✓ both storage costs are right.")'
    _cell(cy, EXERCISE_IDS[2]).source += ("\nimport types\n"
                                          "checks = types.SimpleNamespace(check_spoiled_block=lambda fn: '✓',\n"
                                          "                               WHY_OUTLIER_BLOCK=checks.WHY_OUTLIER_BLOCK)")
    _cell(cy, CHECK_IDS[2]).source, _cell(cy, CHECK_IDS[2]).metadata["tags"] = "pass", []
    _cell(cy, EXERCISE_IDS[3]).source += ("\nimport utils.exercises.common as common\n"
                                          "common.Choice.check = lambda self, answer: '✓'\n"
                                          "common.CheckFailed = Warning")
    _cell(cy, EXERCISE_IDS[4]).source += "\nget_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)"
    _cell(cy, CHECK_IDS[4]).source = "checks.check_nf4_levels(quant.nf4_levels)  # the reference passes"
    built["cy"] = cy

    # dee: deleted cells (and the '## Exercises' heading); exercise 3's tag removed from a right answer; the
    # kernel dies in exercise 5
    dee = _solved(copy.deepcopy(edition))
    _cell(dee, EXERCISE_IDS[4]).source = "import os\nos._exit(1)"
    _delete(dee, next(c.id for c in dee.cells if "## Exercises" in c.source))
    _delete(dee, EXERCISE_IDS[0])  # its check remains: absmax_int4 is undefined
    _delete(dee, CHECK_IDS[1])  # a right answer whose check cell is gone: the grader's check still runs
    _cell(dee, EXERCISE_IDS[2]).metadata["tags"] = []
    _delete(dee, EXERCISE_IDS[3])
    _delete(dee, CHECK_IDS[3])  # nothing left of exercise 4
    built["dee"] = dee

    # flo: right answers, but exercise 2 never ends
    flo = _solved(copy.deepcopy(edition))
    _cell(flo, EXERCISE_IDS[1]).source = "while True: pass"
    built["flo"] = flo

    ada = _solved(copy.deepcopy(edition))
    built["ada"] = ada

    first, second = root / "first", root / "second"
    for student in ("bob", "cy", "dee"):
        _write(built[student], first / student / NB)
    _write(flo, second / "flo" / NB)
    _write(flo, second / "flo" / ".ipynb_checkpoints" / NB)  # Jupyter's autosave: skipped
    _write(ada, second / f"ada__{NB}")  # the flat layout
    _write(edition, second / "ada__99_bonus.ipynb")  # no such course notebook: a row, not a crash
    # an earlier grading of the second folder, replaced because of --overwrite
    (second / "out" / "feedback").mkdir(parents=True)
    (second / "out" / "grades.csv").write_text("old\n")
    (second / "out" / "feedback" / "ada.md").write_text("old\n")

    runs = {"first": _main(first, "--out", first / "out" / "grades.csv", "--jobs", 2),
            "second": _main(second, "--out", second / "out" / "grades.csv", "--time-limit", TIME_LIMIT,
                            "--overwrite")}
    return {"runs": runs, "built": built, "rows": _rows(first / "out" / "grades.csv") +
            _rows(second / "out" / "grades.csv"),
            "feedback": {s: (folder / "out" / "feedback" / f"{s}.md").read_text(encoding="utf-8")
                         for folder, students in ((first, ("bob", "cy", "dee")), (second, ("ada", "flo")))
                         for s in students}}


def _expected(graded) -> list[tuple[str, ...]]:
    """Every row the two runs must write: (student, notebook, exercise, status, message); a message that ends in
    '...' is compared up to there (an exception's text that names IPython's temporary file)."""
    flo, dee = graded["built"]["flo"], graded["built"]["dee"]
    empty = _checker_says(STUB)
    right = _checker_says([_solutions()[i] for i in EXERCISE_IDS])
    assert [s for s, _ in right] == ["passed"] * 5 and [s for s, _ in empty] == ["failed"] * 5  # the references
    wrong = _checker_says([WRONG_ABSMAX] + STUB[1:])[0]
    assert wrong[0] == "failed" and "come back wrong" in wrong[1]
    loop = f"time limit of {TIME_LIMIT} s reached in cell {_index(flo, EXERCISE_IDS[1]) + 1} (`while True: pass`)"
    rows = {
        "bob": [wrong, ("error", "the exercise cell raised SyntaxError: invalid syntax..."),
                ("error", "the exercise cell raised ValueError: stopped here"), empty[3], empty[4]],
        "cy": empty,
        "dee": [("error", "NameError: name 'absmax_int4' is not defined"), right[1], right[2],
                ("error", "neither its exercise cell nor its check cell is in the notebook (deleted, or their tags "
                          "and ids changed): copy them back from the student edition"),
                ("error", f"the kernel died in cell {_index(dee, EXERCISE_IDS[4]) + 1} (`import os`) (os._exit, a "
                          "crash, or out of memory?)")],
        "ada": right,
        "flo": [right[0]] + [("error", loop)] * 4,
    }
    expected = [(s, NB, label, *rows[s][k]) for s in ("bob", "cy", "dee") for k, label in enumerate(LABELS)]
    expected += [("ada", NB, label, *rows["ada"][k]) for k, label in enumerate(LABELS)]
    expected.append(("ada", "99_bonus.ipynb", "", "error", "99_bonus.ipynb is not a course notebook with exercises..."))
    expected += [("flo", NB, label, *rows["flo"][k]) for k, label in enumerate(LABELS)]
    return expected


def test_every_row_of_the_grades(graded):
    for run in graded["runs"].values():
        assert run[0] == 0, run
    expected = _expected(graded)
    assert [r[:4] for r in graded["rows"]] == [e[:4] for e in expected]
    for row, want in zip(graded["rows"], expected, strict=True):
        if want[4].endswith("..."):
            assert row[4].startswith(want[4][:-3]), (row, want)
        else:
            assert row[4] == want[4], (row, want)


def test_no_cheat_passes_and_no_ungraded_cell_shows(graded):
    """Redundant with the exact rows, but says what matters: cy passes nothing, and bob's lesson cell never ran."""
    assert {r[3] for r in graded["rows"] if r[0] == "cy"} == {"failed"}
    assert all("never run by the grader" not in text for text in graded["feedback"].values())


def test_feedback_files(graded):
    bob, feedback = graded["built"]["bob"], graded["feedback"]
    wrong = _checker_says([WRONG_ABSMAX] + STUB[1:])[0][1]
    added = next(i for i, c in enumerate(bob.cells) if c.source == "total = undefined_name + 1")
    assert feedback["bob"].startswith(f"# Feedback for bob\n\n## {NB}: 0 of 5 checks passed (3 failed, 2 errors)\n")
    assert f"- ✗ exercise 1 check_absmax_int4: **failed**: {wrong}\n" in feedback["bob"]
    assert "- ! exercise 3 check_spoiled_block: **error**: the exercise cell raised ValueError: stopped here" \
        in feedback["bob"]
    assert (f"The first error in your cells: cell {added + 1} (`total = undefined_name + 1`): NameError: name "
            "'undefined_name' is not defined") in feedback["bob"]
    assert f"## {NB}: 5 of 5 checks passed (0 failed, 0 errors)" in feedback["ada"]
    assert "## 99_bonus.ipynb: not graded: 99_bonus.ipynb is not a course notebook" in feedback["ada"]
    assert "old" not in feedback["ada"]  # the earlier file was replaced (--overwrite)
    assert f"## {NB}: 1 of 5 checks passed (0 failed, 4 errors)" in feedback["flo"]
    assert f"The first error in your cells: time limit of {TIME_LIMIT} s reached in cell" in feedback["flo"]
    assert "The first error in your cells: the kernel died in cell" in feedback["dee"]
    assert "first error" not in feedback["cy"]  # its cheats raise nothing


def test_one_progress_line_per_submission(graded):
    first, second = graded["runs"]["first"][1], graded["runs"]["second"][1]
    assert re.findall(r"^(\w+) (\S+): (.*?)(?: in \d+ s)?$", first, flags=re.M) == [
        ("bob", NB, "0 of 5 checks passed (3 failed, 2 errors)"),
        ("cy", NB, "0 of 5 checks passed (5 failed, 0 errors)"),
        ("dee", NB, "2 of 5 checks passed (0 failed, 3 errors)")]
    lines = second.splitlines()
    assert lines[0].startswith(f"ada {NB}: 5 of 5 checks passed (0 failed, 0 errors) in ")
    assert lines[1].startswith("ada 99_bonus.ipynb: not graded: 99_bonus.ipynb is not a course notebook")
    assert lines[2].startswith(f"flo {NB}: 1 of 5 checks passed (0 failed, 4 errors) in ")
    assert lines[3].startswith("3 notebook(s) of 2 student(s) graded: 6 of 10 checks passed")
    assert graded["runs"]["first"][2] == graded["runs"]["second"][2] == ""  # nothing on stderr


# ----------------------------------------------------------------------------------------------
# Where the checks go (no kernel)
# ----------------------------------------------------------------------------------------------

def _student_phase(nb) -> list[tuple[str, int | None]]:
    steps, missing = grade.plan(nb, grade.load_assignment(INSTRUCTOR))
    assert missing == {}
    return [(s.kind, s.number) for s in steps if s.kind != "setup"]


def test_checks_follow_their_exercises_without_cell_ids():
    """A front-end that drops the cell ids (nbformat 4.4): checks are found by their source, exercises by tag."""
    plain = [(kind, n) for kind, n in _student_phase(student_edition(_instructor())) if kind == "check" or n]
    assert plain == [(kind, k) for k in range(1, 6) for kind in ("student", "check")]
    nb = student_edition(_instructor())
    for cell in nb.cells:
        cell.pop("id", None)
    nb.nbformat_minor = 4
    assert [(k, n) for k, n in _student_phase(nb) if k == "check" or n] == plain


def test_a_check_cell_moved_above_its_exercise_runs_after_it():
    nb = student_edition(_instructor())
    check = nb.cells.pop(_index(nb, CHECK_IDS[0]))
    nb.cells.insert(_index(nb, EXERCISE_IDS[0]), check)
    phase = _student_phase(nb)
    assert phase[phase.index(("student", 1)) + 1] == ("check", 1)


def test_a_check_cell_the_student_added_never_runs():
    nb = student_edition(_instructor())
    nb.cells.append(nbformat.v4.new_code_cell("checks.check_nf4_levels(quant.nf4_levels)", metadata={"tags": ["check"]}))
    assert sum(kind == "check" for kind, _ in _student_phase(nb)) == 5
    steps, _ = grade.plan(nb, grade.load_assignment(INSTRUCTOR))
    assert not any("quant.nf4_levels)" in s.cell.source for s in steps)


# ----------------------------------------------------------------------------------------------
# Bad input to the command: exit status 2, a message, nothing written, no kernel started
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout,extra_args,message", [
    ({}, [], "holds no notebooks (*.ipynb)"),
    ({"ada/notes.ipynb": True}, [], "none of its notebooks (notes.ipynb) is a course notebook with exercises"),
    ({"ada/" + NB: True, "grades.csv": "old"}, [], "already exist(s) (an earlier grading?). Fix: pass --overwrite"),
    ({"ada/" + NB: True, "feedback/ada.md": "old"}, [], "already exist(s)"),
    ({NB: True}, [], "must be named <student>__<notebook>.ipynb"),
    ({"ada/" + NB: True, f"ada__{NB}": True}, [], "has handed in 01_quantization_visualized.ipynb twice"),
    ({"ada/" + NB: True}, ["--instructor-dir", "no-such-folder"], "no-such-folder: is not a folder"),
])
def test_bad_input_is_a_clear_error(tmp_path, layout, extra_args, message):
    subs = tmp_path / "subs"
    subs.mkdir()
    for name, content in layout.items():
        where = (tmp_path if name.startswith(("grades", "feedback")) else subs) / name
        if content is True:
            _write(student_edition(_instructor()), where)
        else:
            where.parent.mkdir(parents=True, exist_ok=True)
            where.write_text(content)
    args = [str(tmp_path / a) if a == "no-such-folder" else a for a in extra_args]
    code, out, err = _main(subs, "--out", tmp_path / "grades.csv", *args)
    assert code == 2 and message in err and out == "", (code, err)
    assert err.startswith("python -m tools.grade: error: ")
    if "grades.csv" in layout:
        assert (tmp_path / "grades.csv").read_text() == "old"  # never overwritten without --overwrite
    elif "feedback/ada.md" not in layout:
        assert not (tmp_path / "grades.csv").exists()


@pytest.mark.parametrize("option", [["--time-limit", "0"], ["--jobs", "0"]])
def test_a_limit_must_be_positive(tmp_path, option):
    code, _, err = _main(tmp_path, "--out", tmp_path / "g.csv", *option)
    assert code == 2 and f"argument {option[0]}: invalid positive" in err
