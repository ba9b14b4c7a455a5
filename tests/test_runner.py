"""utils.notebooks: notebook discovery and parameter checking (running is covered by nbval)."""

from __future__ import annotations

import pytest

from utils import notebooks as notebooks_lib
from utils.cli import course


def test_notebooks_are_numbered_and_ordered():
    names = [p.name for p in notebooks_lib.course_notebooks()]
    assert names == sorted(names) and names[0].startswith("01_")
    assert [p.name for p in notebooks_lib.course_notebooks(["02"])] == ["02_nf4_vs_int4.ipynb"]
    with pytest.raises(SystemExit, match="no notebook starts with"):
        notebooks_lib.course_notebooks(["99"])


def test_parameters_are_read_from_the_tagged_cell():
    params = notebooks_lib.notebook_parameters(notebooks_lib.NOTEBOOK_DIR / "02_nf4_vs_int4.ipynb")
    assert params[:2] == ["PROFILE", "SMOKE"] and "BLOCK_SIZES" in params and "SEED" in params


def test_unknown_parameter_is_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['LAYERS'\].*BLOCKSIZE"):
        notebooks_lib.check_parameters(notebooks_lib.NOTEBOOK_DIR / "01_quantization_visualized.ipynb", {"LAYERS": 3})
    notebooks_lib.check_parameters(notebooks_lib.NOTEBOOK_DIR / "01_quantization_visualized.ipynb", {"LAYER": "x", "SEED": 1})


def test_cli_fails_before_running_anything_on_an_unknown_parameter(tmp_path):
    with pytest.raises(SystemExit, match="no parameter"):
        course.main(["01", "--output", str(tmp_path), "-p", "NOT_A_KNOB", "1"])
    assert not (tmp_path / "notebooks").exists()
