"""The course notebooks: finding them in order, checking the parameters they take, executing one with papermill.

Used by ``python -m utils.cli.course`` (the README's "run the course" command), the sweep and the student
edition. Executed notebooks go to ``<output>/notebooks/``; each notebook writes its key figures as
``<output>/<notebook>.json`` (see :mod:`utils.paths`).
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any

from utils.paths import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def course_notebooks(selection: list[str] | None = None) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in order, optionally filtered by number prefix."""
    notebooks = sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if selection:
        unknown = [s for s in selection if not any(p.name.startswith(s) for p in notebooks)]
        if unknown:
            names = ", ".join(p.name for p in notebooks)
            raise SystemExit(f"no notebook starts with {unknown}; the course has: {names}")
        notebooks = [p for p in notebooks if any(p.name.startswith(s) for s in selection)]
    return notebooks


class NoParametersCell(ValueError):
    """The notebook has no cell tagged ``parameters`` (raised by :func:`parameters_cell`)."""


def parameters_cell(notebook: Path) -> tuple[str, dict[str, ast.expr]]:
    """The one reader of a notebook's cell tagged ``parameters``: its source, and the expression each top-level
    assignment gives its name, in order (``NAME = ...`` or ``NAME: type = ...``; the runner checks names against it,
    the sweep checks the cell is there and reads the defaults' kinds from it).

    Raises:
        NoParametersCell: the notebook has no such cell (a ``ValueError``).
        ValueError: the cell is not valid Python.
    """
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise NoParametersCell(f"{notebook.name} has no cell tagged 'parameters'.")
    source = cells[0].source
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ValueError(f"{notebook.name}: its parameters cell is not valid Python ({err.msg}, line {err.lineno}).") from None
    assigned = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            assigned[node.target.id] = node.value
    return source, assigned


def notebook_parameters(notebook: Path) -> list[str]:
    """Names assigned in the notebook's cell tagged ``parameters`` (:func:`parameters_cell`)."""
    return list(parameters_cell(notebook)[1])


def check_parameters(notebook: Path, parameters: dict[str, Any]) -> None:
    """Reject parameters the notebook does not define (papermill would only warn and ignore them)."""
    known = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"{notebook.name} has no parameter(s) {unknown}; its parameters are: {', '.join(known)}")


def kernel_config(socket_dir: str | Path | None = None) -> Any:
    """Kernel settings for executing notebooks: local IPC sockets on POSIX systems instead of TCP, which also
    silences ipykernel's "Kernel is running over TCP without encryption" warning, printed once per notebook.

    The sockets are files named ``<socket_dir>/kernel-<n>``; jupyter_client's default puts them in the working
    directory, where two runs at once (two course runs, a sweep and a test on two pytest workers) take the same
    names and fail with "Invalid Signature". So every run passes a folder of its own (``run_notebook`` does).
    """
    from traitlets.config import Config

    if os.name != "posix":
        return Config()
    settings = {"transport": "ipc"} | ({"ip": str(Path(socket_dir) / "kernel")} if socket_dir is not None else {})
    return Config({"KernelManager": settings})


def run_notebook(notebook: Path, output_dir: Path, parameters: dict[str, Any] | None = None,
                 output_name: str | None = None) -> Path:
    """Execute one notebook with papermill (its kernel on sockets of its own); returns the path of the executed copy."""
    import tempfile

    import papermill

    check_parameters(notebook, parameters or {})
    output_dir = Path(output_dir).resolve()
    executed = output_dir / "notebooks" / (output_name or notebook.name)
    executed.parent.mkdir(parents=True, exist_ok=True)
    os.environ["QLORA_OUTPUT_DIR"] = str(output_dir)
    os.environ.setdefault("QLORA_PROGRESS", "final")  # the kernel's bars print one final line each (utils.progress)
    with tempfile.TemporaryDirectory(prefix="qlora-kernel-") as sockets:  # short path: sockets allow ~100 bytes
        papermill.execute_notebook(
            str(notebook), str(executed), parameters=parameters or {}, cwd=str(notebook.parent),
            progress_bar=False, config=kernel_config(sockets),
        )
    return executed


# ----------------------------------------------------------------------------------------------
# Output a learner should not have to read past (checked on every executed cell by conftest.py)
# ----------------------------------------------------------------------------------------------

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"  # a tqdm.auto/ipywidgets bar: frozen when saved
TRAINER_TABLE_MARKERS = ("Training Loss", "<progress")  # transformers' NotebookProgressCallback HTML

# stderr lines a learner may see, each a message they can act on or one the notebook explains where it
# appears: (pattern, why it is allowed). Everything else on stderr is noise and fails the cell.
ALLOWED_STDERR: list[tuple[str, str]] = []


def output_noise(outputs: list[dict[str, Any]]) -> list[str]:
    """What in one cell's outputs (nbformat output dicts) is noise: Trainer progress tables, widget progress bars
    (their saved state is their first frame: "0%" forever) and stderr lines not in :data:`ALLOWED_STDERR`.
    Returns one short description per problem (empty: the cell is quiet)."""
    problems = []
    for out in outputs:
        data = out.get("data", {})  # nbformat outputs are dicts (NotebookNode)
        if WIDGET_MIME in data:
            problems.append(f"a widget (tqdm.auto progress bar?): {str(data.get('text/plain', ''))[:80]!r}")
        html = str(data.get("text/html", ""))
        if any(marker in html for marker in TRAINER_TABLE_MARKERS):
            problems.append("a Trainer progress table (use utils.progress.quiet(trainer))")
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            for line in out.get("text", "").split("\n"):  # not splitlines(): it also splits at "\r"
                line = line.rsplit("\r", 1)[-1].strip()  # what a terminal or notebook shows after carriage returns
                if line and not any(re.search(pattern, line) for pattern, _ in ALLOWED_STDERR):
                    problems.append(f"stderr: {line[:160]}")
    return problems
