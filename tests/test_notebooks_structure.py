"""Every course notebook is committed clean and opens the same way (see README: notebook anatomy)."""

from __future__ import annotations

import re

import nbformat
import pytest

from utils.exercises.editions import check_layout
from utils.notebooks import course_notebooks

NOTEBOOKS = course_notebooks()


def test_the_course_has_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them (Kernel > Restart & Clear Output)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opens_with_title_colab_versions_and_parameters(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "papermill needs a kernelspec"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "What you will learn" in nb.cells[0].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert 'if "google.colab" in sys.modules:' in code[0].source, "first code cell must be the Colab set-up"
    assert "environment_report()" in code[1].source, "second code cell prints versions and device"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters` (papermill)"
    assignments = re.findall(r"^([A-Za-z_]\w*)\s*=", tagged[0].source, flags=re.M)
    assert assignments and all(name.isupper() for name in assignments), assignments
    for line in tagged[0].source.splitlines():
        if re.match(r"^[A-Z_0-9]+\s*=", line):
            assert "#" in line, f"parameter without a comment: {line!r}"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "## Summary" in text and "## Exercises" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ends_with_checked_exercises(path):
    """2-4 exercises, each with its solution and a check cell calling a checker of utils.exercises."""
    nb = nbformat.read(path, as_version=4)
    check_layout(nb, path.name)  # all in the exercise section, solution after exercise, a check after each
    kinds = [t for c in nb.cells for t in c.metadata.get("tags", []) if t in ("exercise", "solution", "check")]
    n = kinds.count("exercise")
    assert 2 <= n <= 4, f"{path.name}: {n} cells tagged 'exercise'; the course wants 2-4 checked exercises"
    assert kinds == ["exercise", "solution", "check"] * n, f"{path.name}: expected exercise, solution, check per exercise"
    checks = [c.source for c in nb.cells if "check" in c.metadata.get("tags", [])]
    assert all(re.search(r"\bchecks\.check_\w+\(", src) for src in checks), checks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_utils_is_imported_before_bitsandbytes(path):
    """`import utils` drops bitsandbytes' optional-kernel message only if it runs first (utils/bnb_cpu.py);
    its `noqa` keeps ruff's unused-import fix from deleting it."""
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    first = code[1].source.splitlines()[0]
    assert first.startswith("import utils  # noqa: F401"), first


@pytest.mark.parametrize("name", ["04_phi2_qlora_training", "05_phi2_qa_evaluation"])
def test_learning_checks_are_asserted_unless_a_benchmark_turns_them_off(name):
    path = next(p for p in NOTEBOOKS if p.stem == name)
    tagged = [c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    assert re.search(r"^QUALITY_ASSERTS = True\b", tagged[0].source, flags=re.M)
