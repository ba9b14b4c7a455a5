"""What an exercise tells the student to use exists where the student works: in the code the grader runs.

``python -m tools.classroom grade`` runs, for each submission, the notebook's set-up cells (those before the first ``## ``
heading) and then the student's ``## Exercises`` section, with the instructor's checks in place of the check cells
(tools/classroom/grade.py). The lesson's own cells in between never run, so an instruction that says "plant the outlier in the
middle of `W`" while `W` is made in section 1 sends a diligent student into a NameError under the grader.

Static, for every course notebook with exercises (read only): the names in an exercise's instructions (its
``### Exercise`` Markdown, in backticks, parsed as Python) that the lesson's cells define must also be defined by
the set-up cells or by the student-edition cells of the exercise section up to that exercise's last cell. Names of
the exercise's own function parameters, and the symbols of formulas (backticked spans that are not Python, such as
`y = x Wᵀ + s · x Aᵀ Bᵀ`), are not variables to look up. The open-ended "Further exercises" are not graded (they
change the lesson's parameters and re-run it), so they are left out.

Dynamic, for notebooks 01 and 02 (cheap: MiniLM and seconds of CPU): the graded context is rebuilt in this process
(set-up cells, then each exercise's cells with the instructor's solution), each instructor check must pass there,
and every backticked expression of the instructions that names only defined things is evaluated there, as a student
following the instructions would type it; plus the edits an instruction asks for (:data:`STUDENT_EDITS`).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from tools.editions import cell_tags, exercise_start, has_exercises, setup_end
from utils.notebooks import course_notebooks

NOTEBOOKS = [p for p in course_notebooks() if has_exercises(p)]
KERNEL_NAMES = {"display", "get_ipython"}  # what an IPython kernel defines without an import
SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")  # a Markdown code span
EXERCISE_HEADING = re.compile(r"^###\s+Exercise\s+(\d+)", re.M)

# Problems found in notebooks this test's author does not own: (notebook number, exercise number) -> why. Each is an
# expected failure until the notebook's owner fixes it; then remove its entry (the test then passes, strict).
KNOWN_PROBLEMS: dict[tuple[str, int], str] = {
}

# Edits an instruction asks the student to make to a given cell and run again: (notebook number, exercise number) ->
# [(the given cell's line, the student's version)].
STUDENT_EDITS: dict[tuple[str, int], list[tuple[str, str]]] = {
    ("01", 3): [("position = (W.shape[0] // 2, W.shape[1] // 2)", "position = (W.shape[0] - 1, 0)"),
                ("position = (W.shape[0] // 2, W.shape[1] // 2)", "position = (0, 70)")],
}


# ----------------------------------------------------------------------------------------------
# Reading a notebook's exercises
# ----------------------------------------------------------------------------------------------

@dataclass
class Exercise:
    """One ``### Exercise N`` of a notebook: its instructions and the cells of the exercise section up to its end."""

    notebook: str  # "01" ...
    number: int
    instructions: str  # its Markdown (exercise 1 also gets the section's introduction)
    cells: list = field(default_factory=list)  # its own code cells, in order (exercise, solution, check, given)
    before: list = field(default_factory=list)  # the code cells of the section before its own


def read_exercises(nb, notebook: str) -> list[Exercise]:
    """The numbered exercises of a notebook, in order (the open-ended "Further exercises" are not among them)."""
    section = nb.cells[exercise_start(nb):]
    found: list[Exercise] = []
    intro: list[str] = []
    current: Exercise | None = None
    seen: list = []
    for cell in section:
        if cell.cell_type == "markdown":
            heading = EXERCISE_HEADING.search(cell.source)
            if heading:
                text = cell.source[heading.start():]
                current = Exercise(notebook, int(heading.group(1)), "\n".join(intro + [text]), before=list(seen))
                intro = []
                found.append(current)
            elif cell.source.lstrip().startswith("###"):
                current = None  # further, ungraded exercises
            elif current is None and not found:
                intro.append(cell.source)  # the section's introduction: read before exercise 1
            elif current is not None:
                current.instructions += "\n" + cell.source
        elif cell.cell_type == "code":
            if current is not None:
                current.cells.append(cell)
            seen.append(cell)
    return found


def _targets(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def bound_names(sources: list[str]) -> set[str]:
    """Names bound at the top level of the cells (assignments, imports, defs, loop and with targets), not inside
    functions, classes or comprehensions."""
    names: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for st in statements:
            if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(st.name)
                continue
            if isinstance(st, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in st.names)
            elif isinstance(st, ast.Assign):
                for target in st.targets:
                    names.update(_targets(target) if not isinstance(target, (ast.Attribute, ast.Subscript)) else ())
            elif isinstance(st, (ast.AnnAssign, ast.AugAssign)) and isinstance(st.target, ast.Name):
                names.add(st.target.id)
            elif isinstance(st, (ast.For, ast.AsyncFor)):
                names.update(_targets(st.target))
            elif isinstance(st, (ast.With, ast.AsyncWith)):
                for item in st.items:
                    if item.optional_vars is not None:
                        names.update(_targets(item.optional_vars))
            elif isinstance(st, ast.Try):
                names.update(h.name for h in st.handlers if h.name)
            names.update(n.target.id for n in ast.walk(st) if isinstance(n, ast.NamedExpr))
            for block in ("body", "orelse", "finalbody"):
                visit(getattr(st, block, []) if isinstance(st, (ast.If, ast.For, ast.While, ast.With, ast.Try,
                                                                ast.AsyncFor, ast.AsyncWith)) else [])
            for handler in getattr(st, "handlers", []):
                visit(handler.body)

    for source in sources:
        visit(ast.parse(source).body)
    return names


def parameters(sources: list[str]) -> set[str]:
    """The parameter names of the functions the cells define (the exercise's own signature)."""
    found = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                found |= {arg.arg for arg in a.posonlyargs + a.args + a.kwonlyargs}
                found |= {arg.arg for arg in (a.vararg, a.kwarg) if arg}
    return found


def instruction_spans(text: str) -> tuple[list[tuple[str, ast.Expression]], set[str]]:
    """The backticked Python expressions of an instruction, and the symbols of its other spans (formulas, commands)."""
    expressions, notation = [], set()
    for span in SPAN.findall(text):
        try:
            expressions.append((span, ast.parse(span.strip(), mode="eval")))
        except SyntaxError:
            notation |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span))
    return expressions, notation


def used_names(tree: ast.Expression) -> set[str]:
    """Names an expression reads (minus those it binds itself: comprehension and lambda variables)."""
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.Lambda) for a in n.args.args}
    return read - bound


def _student_sources(cells: list) -> list[str]:
    """What the student edition runs of these cells under the grader: no solution, no check."""
    return [c.source for c in cells if not {"solution", "check"} & set(cell_tags(c))]


def graded_context(nb) -> set[str]:
    """Names the set-up cells define (plus Python's and the kernel's own)."""
    setup = [c.source for c in nb.cells[:setup_end(nb)] if c.cell_type == "code"]
    return bound_names(setup) | set(dir(builtins)) | KERNEL_NAMES


def lesson_names(nb) -> set[str]:
    """Names the lesson's cells define (between the set-up and the exercises): what the grader never runs."""
    return bound_names([c.source for c in nb.cells[setup_end(nb):exercise_start(nb)] if c.cell_type == "code"])


def instruction_problems(path: Path) -> dict[int, list[str]]:
    """{exercise number: names its instructions use that only the lesson defines}; empty when all is well."""
    nb = nbformat.read(str(path), as_version=4)
    context, lesson = graded_context(nb), lesson_names(nb)
    problems = {}
    for ex in read_exercises(nb, path.name[:2]):
        available = context | bound_names(_student_sources(ex.before + ex.cells))
        expressions, notation = instruction_spans(ex.instructions)
        own = parameters([c.source for c in ex.cells if "exercise" in cell_tags(c)])
        told = set().union(*(used_names(tree) for _, tree in expressions)) - own - notation
        missing = sorted(told & lesson - available)
        if missing:
            problems[ex.number] = missing
    return problems


# ----------------------------------------------------------------------------------------------
# Static: every notebook
# ----------------------------------------------------------------------------------------------

CASES = [(path, ex.number) for path in NOTEBOOKS
         for ex in read_exercises(nbformat.read(str(path), as_version=4), path.name[:2])]


def _case(path: Path, number: int):
    reason = KNOWN_PROBLEMS.get((path.name[:2], number))
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(path, number, id=f"{path.name[:2]}-exercise-{number}", marks=marks)


@pytest.mark.parametrize("path,number", [_case(p, n) for p, n in CASES])
def test_instructions_name_only_what_the_grader_defines(path, number):
    missing = instruction_problems(path).get(number)
    assert not missing, (f"{path.name}, exercise {number}: its instructions use {missing}, which only the lesson's "
                         "cells define; under `python -m tools.classroom grade` (set-up cells + the exercise section) they do not "
                         "exist. Define them in the exercise section (a given cell) or name something the set-up defines.")


def test_every_notebook_with_exercises_is_read():
    assert {p.name[:2] for p in NOTEBOOKS} >= {"01", "02", "03", "04", "05", "06"}
    assert all(n >= 2 for n in [sum(1 for p, _ in CASES if p == path) for path in NOTEBOOKS])


def test_a_lesson_variable_in_the_instructions_is_caught(tmp_path):
    """The failure this test exists for (notebook 01 before its fix): exercise 3 said "plant the outlier ... in the
    middle of `W`", with `W` made in section 1 only."""
    path = next(p for p in NOTEBOOKS if p.name.startswith("01_"))
    nb = nbformat.read(str(path), as_version=4)
    broken = copy.deepcopy(nb)
    broken.cells = [c for c in broken.cells if not (c.cell_type == "code" and not cell_tags(c)
                                                    and c.source.lstrip().startswith("W = "))]  # the given cell
    assert len(broken.cells) == len(nb.cells) - 1, "notebook 01's exercise 3 no longer loads W in a given cell"
    nbformat.write(broken, str(tmp_path / path.name))
    assert instruction_problems(tmp_path / path.name) == {3: ["W"]}
    assert 3 not in instruction_problems(path)


def test_spans_parameters_and_formulas_are_told_apart():
    expressions, notation = instruction_spans("use `quant.fake_quantize(real, \"nf4\", BLOCKSIZE)` and "
                                              "`y = x Wᵀ + s · x Aᵀ Bᵀ`, then `-p T_DOF 2.0`; ``code``")
    assert [span for span, _ in expressions] == ['quant.fake_quantize(real, "nf4", BLOCKSIZE)']
    assert used_names(expressions[0][1]) == {"quant", "real", "BLOCKSIZE"}
    assert {"W", "A", "B", "T_DOF"} <= notation
    assert bound_names(["import a.b as c\nfrom d import e\nx, (y, z) = 1, (2, 3)\nfor i in []: pass\n"
                        "def f(p): q = 1\nw = [k for k in []]"]) == {"c", "e", "x", "y", "z", "i", "f", "w"}
    assert parameters(["def f(a, b=1, *c, d, **e): pass"]) == {"a", "b", "c", "d", "e"}


# ----------------------------------------------------------------------------------------------
# Dynamic: notebooks 01 and 02, run as the grader runs them, with the instructor's solutions
# ----------------------------------------------------------------------------------------------

def _run(source: str, namespace: dict, where: str) -> None:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(source, where, "exec"), namespace)
    except Exception as err:
        raise AssertionError(f"{where} raised {type(err).__name__}: {err}\n{source}") from err


def follow_instructions(path: Path) -> int:
    """Run a notebook's exercises as the grader would, with the instructor's solutions, and what their instructions
    tell the student to type (see the module's docstring); AssertionError naming the cell or span that failed.
    Returns the number of checks that passed."""
    prefix = path.name[:2]
    nb = nbformat.read(str(path), as_version=4)
    namespace: dict = {"__name__": "__main__"}
    lesson = lesson_names(nb)
    for i, cell in enumerate(nb.cells[:setup_end(nb)]):
        if cell.cell_type == "code":
            _run(cell.source, namespace, f"{path.name} set-up cell {i}")
    checked, ran = 0, set()
    for ex in read_exercises(nb, prefix):
        for k, cell in enumerate([c for c in ex.before if c.id not in ran]):  # given cells before the exercise
            _run(cell.source, namespace, f"{path.name} exercise section, cell {k} before exercise {ex.number}")
        ran |= {c.id for c in ex.before + ex.cells}
        for k, cell in enumerate(ex.cells):
            where = f"{path.name} exercise {ex.number}, cell {k}"
            if "check" in cell_tags(cell):  # the grader's check: the checker module, the solution's namespace
                result = eval(compile(cell.source, where, "eval"), dict(namespace))
                assert str(result).startswith("✓"), (where, result)
                checked += 1
            else:
                _run(cell.source, namespace, where)
        expressions, _ = instruction_spans(ex.instructions)
        typeable = set(namespace) | set(dir(builtins)) | lesson  # defined here, or seen in the lesson
        solved = "\n".join(c.source for c in ex.cells if "solution" in cell_tags(c))
        for span, tree in expressions:
            if used_names(tree) <= typeable and span not in solved:  # what a student could type, not yet run
                try:
                    eval(compile(tree, f"{path.name} exercise {ex.number}: `{span}`", "eval"), dict(namespace))
                except Exception as err:
                    raise AssertionError(f"{path.name} exercise {ex.number}: `{span}` raised "
                                         f"{type(err).__name__}: {err}") from err
        for old, new in STUDENT_EDITS.get((prefix, ex.number), []):
            given = [c for c in ex.cells if old in c.source and not cell_tags(c)]
            assert given, f"{path.name} exercise {ex.number}: no given cell holds `{old}` for the student to edit"
            _run(given[0].source.replace(old, new), namespace, f"{path.name} exercise {ex.number}, edited: {new}")
    return checked


@pytest.mark.parametrize("prefix", ["01", "02"])
def test_following_the_instructions_works_in_the_graded_context(prefix, monkeypatch):
    monkeypatch.setenv("QLORA_PROFILE", "smoke")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = next(p for p in NOTEBOOKS if p.name.startswith(prefix + "_"))
    checks = sum("check" in cell_tags(c) for c in nbformat.read(str(path), as_version=4).cells)
    assert follow_instructions(path) == checks
