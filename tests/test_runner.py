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


def test_two_notebooks_run_at_once_from_one_folder_each_on_its_own_kernel_sockets(tmp_path):
    """Two papermill runs at the same time (two course runs; a sweep and a test on two pytest workers) used to
    bind the same IPC socket files in the notebook's folder and fail with "Invalid Signature". Also: a parameter
    passed to a notebook whose parameters cell has a line papermill cannot parse prints nothing about it."""
    import json
    import subprocess
    import sys

    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "NAME = 'x'  # run name\nLONG = NAME == 'x'  # two '=': papermill cannot parse it",
              "outputs": [], "execution_count": None, "id": "p"},
             {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "id": "w",
              "source": "import time\ntime.sleep(2)\nopen(f'{NAME}.txt', 'w').write(NAME)"}]
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text(json.dumps({"cells": cells, "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                    "display_name": "Python 3"}}, "nbformat": 4, "nbformat_minor": 5}))
    run = ("import sys; from pathlib import Path; from utils.notebooks import run_notebook; "
           "run_notebook(Path(sys.argv[1]), Path(sys.argv[2]), {'NAME': sys.argv[3]})")
    procs = [subprocess.Popen([sys.executable, "-c", run, str(notebook), str(tmp_path / name), name],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for name in ("a", "b")]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "Invalid Signature" not in "".join(outputs)
    assert "Unable to parse line" not in "".join(outputs)  # papermill's parser warning, silenced (utils.quiet)
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["a.txt", "b.txt"]  # both ran in the notebook's folder


def test_every_notebook_has_a_place_in_the_suites_schedule():
    """conftest.py starts notebooks in NOTEBOOK_ORDER (longest unit first); a new notebook must be placed there."""
    import importlib.util

    from utils.paths import REPO_ROOT

    spec = importlib.util.spec_from_file_location("root_conftest", REPO_ROOT / "conftest.py")
    root = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root)
    units = {root.unit_of_work(f"notebooks/{p.name}::Cell 0").rsplit("/", 1)[-1] for p in notebooks_lib.course_notebooks()}
    assert units == set(root.NOTEBOOK_ORDER), units ^ set(root.NOTEBOOK_ORDER)
