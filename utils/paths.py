"""Where the course keeps what it writes and reads: the output folder, the model cache, and the key figures (one JSON
file per notebook in the output folder; committed records in ``results/``).

The folder is ``$QLORA_OUTPUT_DIR`` (default ``outputs/`` at the repository root); the course
runner sets it so that executed notebooks and their figures land side by side.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it over ``path``: an interruption leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", newline="") as file:
            file.write(text)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def output_dir() -> Path:
    """The output folder (created if missing)."""
    path = Path(os.environ.get("QLORA_OUTPUT_DIR", REPO_ROOT / "outputs"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_cache_dir() -> Path:
    """Where models the course builds itself are kept between runs (created if missing):
    ``$QLORA_CACHE_DIR``, default ``outputs/cache`` in the repository. Separate from :func:`output_dir` so
    that runs writing elsewhere (tests, sweeps) share one converted copy instead of converting again."""
    path = Path(os.environ.get("QLORA_CACHE_DIR", REPO_ROOT / "outputs" / "cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_folder_once(folder: str | Path, build: Callable[[Path], None], is_current: Callable[[Path], bool]) -> Path:
    """Return ``folder`` if ``is_current(folder)``; else ``build`` it in a temporary sibling and rename it into place.

    Readers never see a half-written folder: an interrupted build leaves only a hidden ``.<name>.*`` folder
    (removed on the next call's cleanup of its own), and two processes building at once (the test suite runs
    on two workers) each write their own copy; the first rename wins and the other copy is dropped. An
    outdated ``folder`` (``is_current`` false) is replaced whole, never mixed with new files.
    """
    folder = Path(folder)
    if is_current(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        build(staging)
        if is_current(folder):  # another process finished first: keep its copy
            return folder
        if folder.exists():  # outdated: move it aside, then drop it once the new copy is in place
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            folder.rename(old / folder.name)
        try:
            staging.rename(folder)
        except OSError:  # the other process's rename came first
            if not is_current(folder):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for old in folder.parent.glob(f".{folder.name}.old.*"):
            shutil.rmtree(old, ignore_errors=True)
    return folder


def move_aside(path: str | Path) -> Path:
    """Keep an earlier run's file or folder by renaming it to ``<name>.old-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``...
    if taken) next to it, so that a new run can use the name: nothing is deleted. Returns the new path."""
    from datetime import datetime

    path = Path(path)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target, n = path.with_name(f"{path.name}.old-{stamp}"), 2
    while target.exists():
        target, n = path.with_name(f"{path.name}.old-{stamp}-{n}"), n + 1
    path.rename(target)
    return target


def _plain(value: Any) -> Any:
    """Turn tensors, numpy numbers and non-finite floats into JSON-safe Python values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def save_results(name: str, results: dict[str, Any]) -> Path:
    """Write ``results`` to ``<output_dir>/<name>.json`` and return the path."""
    path = output_dir() / f"{name}.json"
    path.write_text(json.dumps(_plain(results), indent=2, sort_keys=True) + "\n")
    return path


RESULTS_DIR = REPO_ROOT / "results"  # measurements committed with the course (GPU runs), each with its date


def committed_result(name: str) -> dict[str, Any]:
    """A committed measurement, for prose that quotes a number measured elsewhere (a GPU run): the notebook
    formats it from here instead of typing it.

    ``results/<name>.json`` is returned as it is; it records ``"measured"`` (its date) and, where the run wrote
    it, ``"environment"`` (GPU and versions). ``results/<name>.jsonl`` (a benchmark: a ``meta`` line, then one
    line per configuration) becomes ``{"measured": meta["date"], "environment": meta, "runs": {config: row}}``.
    A run kept as a folder, ``results/<date>_<name>/`` (its README beside it), is read from its ``record.json``
    or, for a benchmark, its ``record.jsonl``.
    A file without its date is an error.
    """
    path, lines_path = RESULTS_DIR / f"{name}.json", RESULTS_DIR / f"{name}.jsonl"
    if (RESULTS_DIR / name).is_dir():  # a run kept as a folder: its record.json, or a benchmark's record.jsonl
        path, lines_path = RESULTS_DIR / name / "record.json", RESULTS_DIR / name / "record.jsonl"
    if not path.is_file() and lines_path.is_file():
        lines = [json.loads(line) for line in lines_path.read_text().splitlines() if line.strip()]
        meta = next((line["meta"] for line in lines if "meta" in line), {})
        result = {"environment": meta, "runs": {line["config"]: line for line in lines if "config" in line}}
        if "date" in meta:
            result["measured"] = meta["date"]
        path = lines_path
    elif path.is_file():
        result = json.loads(path.read_text())
    else:
        available = sorted([p.name for p in RESULTS_DIR.glob("*.json*")]
                           + [f"{p.parent.name}/" for p in RESULTS_DIR.glob("*/record.json*")])
        raise FileNotFoundError(f"no committed result {name}.json(l); results/ has: {available}")
    if "measured" not in result:
        raise ValueError(f"{path} has no date ('measured', or 'date' in its meta line): add when it was measured "
                         "(YYYY-MM-DD) before quoting it.")
    return result


def load_results(name: str) -> dict[str, Any]:
    """Read back what :func:`save_results` wrote."""
    return json.loads((output_dir() / f"{name}.json").read_text())
