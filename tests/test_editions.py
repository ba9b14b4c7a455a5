"""Student editions: solutions removed, checks kept, and every check fails on the empty exercise."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tools import editions
from utils.notebooks import course_notebooks


def _nb(*cells):
    return new_notebook(cells=list(cells))


def _code(src, tag):
    return new_code_cell(src, metadata={"tags": [tag]})


def test_student_edition_drops_only_solutions():
    nb = _nb(new_markdown_cell("# T"), new_markdown_cell("## Exercises"), _code("def f(): raise NotImplementedError", "exercise"),
             _code("def f(): return 1", "solution"), _code("check(f)", "check"))
    student = editions.student_edition(nb)
    assert [c.metadata.get("tags", []) for c in student.cells[2:]] == [["exercise"], ["check"]]


@pytest.mark.parametrize("cells,match", [
    ([_code("x", "check"), new_markdown_cell("## Exercises"), _code("y", "exercise"), _code("c", "check")], "before"),
    ([new_markdown_cell("## Exercises"), _code("y", "solution"), _code("c", "check")], "directly follow"),
    ([new_markdown_cell("## Exercises"), _code("y", "exercise"), _code("z", "solution")], "needs a 'check'"),
    ([new_markdown_cell("## Summary")], "no '## Exercises' section"),
    ([new_markdown_cell("## Exercises"), _code("y", "exercise"), _code("z", "solution"), _code("c", "check"),
      new_markdown_cell("answer here", metadata={"tags": ["manual"]})], "model answer"),
])
def test_bad_layouts_are_rejected(cells, match):
    with pytest.raises(ValueError, match=match):
        editions.check_layout(_nb(*cells))


def test_every_notebook_with_exercises_builds_and_its_checks_fail_when_empty(tmp_path):
    with_exercises = [p for p in course_notebooks() if editions.has_exercises(p)]
    assert {p.name[:2] for p in with_exercises} >= {"01", "02", "03", "04", "05", "06"}
    students = editions.build(tmp_path, with_exercises)
    results = editions.verify_many(students)  # one kernel for all: the imports are paid once
    for path in students:
        result = results[path.name]
        assert result["checks"] >= 2 and result["failed_as_expected"] == result["checks"], path.name
        assert result["passed_with_solution"] == result["checks"], path.name
        student = nbformat.read(str(path), as_version=4)
        assert not any("solution" in c.metadata.get("tags", []) for c in student.cells)


def test_verify_fails_when_a_solution_does_not_pass_its_check(tmp_path):
    check = ("from utils.exercises.common import CheckFailed, _call\n"
             "if _call(f) != 1:\n    raise CheckFailed('f() should return 1')")
    instructor = _nb(new_markdown_cell("# T"), new_markdown_cell("## Exercises"),
                     _code("def f():\n    raise NotImplementedError", "exercise"),
                     _code("def f():\n    return 2", "solution"), _code(check, "check"))
    nbformat.write(instructor, str(tmp_path / "instructor.ipynb"))
    nbformat.write(editions.student_edition(instructor), str(tmp_path / "student.ipynb"))
    with pytest.raises(AssertionError, match="with the solutions, this cell failed"):
        editions.verify(tmp_path / "student.ipynb", instructor_path=tmp_path / "instructor.ipynb")
