"""The course notebooks: finding them in order, checking the parameters they take, executing one with papermill.

Used by ``python -m utils.cli.course`` (the README's "run the course" command), the sweep and the student
edition. Executed notebooks go to ``<output>/notebooks/``; each notebook writes its key figures as
``<output>/<notebook>.json`` (see :mod:`utils.report`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from utils.report import REPO_ROOT

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


def notebook_parameters(notebook: Path) -> list[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ValueError(f"{notebook.name} has no cell tagged 'parameters'.")
    return re.findall(r"^([A-Za-z_]\w*)\s*=", cells[0].source, flags=re.M)


def check_parameters(notebook: Path, parameters: dict[str, Any]) -> None:
    """Reject parameters the notebook does not define (papermill would only warn and ignore them)."""
    known = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"{notebook.name} has no parameter(s) {unknown}; its parameters are: {', '.join(known)}")


def run_notebook(notebook: Path, output_dir: Path, parameters: dict[str, Any] | None = None,
                 output_name: str | None = None) -> Path:
    """Execute one notebook with papermill; returns the path of the executed copy."""
    import papermill

    check_parameters(notebook, parameters or {})
    output_dir = Path(output_dir).resolve()
    executed = output_dir / "notebooks" / (output_name or notebook.name)
    executed.parent.mkdir(parents=True, exist_ok=True)
    os.environ["QLORA_OUTPUT_DIR"] = str(output_dir)
    papermill.execute_notebook(
        str(notebook), str(executed), parameters=parameters or {}, cwd=str(notebook.parent),
        progress_bar=False,
    )
    return executed
