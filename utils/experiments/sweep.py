"""Re-run a notebook over a grid of parameters with papermill, and collect its results in one table.

    python -m utils.cli.sweep notebooks/03_lora_rank_ablation.ipynb --ranks 4 8
    python -m utils.cli.sweep notebooks/03_lora_rank_ablation.ipynb --grid LORA_RANKS '[4]' '[8, 16]' \\
        --grid SEEDS '[0]' '[1]' -p EPOCHS 3 --output outputs/sweep_r4_r8

Each grid point is one papermill run of the notebook, with the point's values (plus every
``-p NAME VALUE``) injected into its ``parameters`` cell; several ``--grid`` options multiply.
``--ranks 4 8`` is shorthand for ``--grid LORA_RANKS '[4]' '[8]'``. Values are Python literals.

Output folder (``--output``, default ``outputs/sweep``)::

    runs/<run-id>/notebooks/<notebook>.ipynb   the executed notebook (figures, tables, asserts)
    runs/<run-id>/<results>.json               what the notebook saved (utils.paths.save_results)
    runs/<run-id>/sweep_run.json               the run's notebook, parameters, status and times
    runs/<run-id>/error.txt                    the traceback of a failed run
    runs/<run-id>.old-<time>/                  a finished run that --force replaced, kept as it was
    sweep_results.csv / sweep_results.json     every row of every finished run in runs/, with its parameters
    sweep_summary.csv                          mean, std and count over seeds per configuration (runs that
                                               diverged or stalled counted, not averaged)
    sweep_plot.png                             score vs rank (log axis), mean +- std over seeds

Re-running into the same folder never loses results:

* A point whose run already finished (its results JSON saved, no error) is skipped. ``--force`` re-runs it,
  but first moves the old run folder aside to ``runs/<run-id>.old-<YYYYmmdd-HHMMSS>/``; nothing is deleted.
* A failed or interrupted run is tried again; its leftovers (a results file it saved before failing,
  ``error.txt``) are removed first, so they never pass for results.
* The combined files cover *every* finished run in ``runs/``: those of earlier sweeps into this folder
  (oldest first), then this sweep's points in grid order. So a re-run with a different grid adds to the
  table instead of replacing it. ``sweep_summary.csv`` and ``sweep_plot.png`` are rebuilt from exactly the
  rows in ``sweep_results.csv`` every time (and removed when there is nothing to summarise or plot), so they
  are never stale. A failed run is listed under ``"failed"`` in ``sweep_results.json``, never in the rows.
  Folders set aside by ``--force`` are not in the table. For a separate table, give a new ``--output``.
* One folder holds one notebook's sweeps: a folder with finished runs of another notebook is refused.

Everything is checked before the first run starts (:func:`check_sweep`): the notebook (an ``.ipynb`` with a
``parameters`` cell, and the name it saves its results under), every parameter name of every point (against
the notebook's parameters cell), every value (a plain literal, of the kind the notebook's default is: a list
where the default is a list; ranks positive integers; what the notebook's settings check would refuse: notebook
04's points resolved as its ``QAConfig.from_namespace`` resolves them, elsewhere a learning rate, batch size, seed,
alpha or epoch count checked as the QA setting of that meaning), repeated points, and the output folder (a folder,
writable; created once the notebook and the values passed). A problem raises :class:`utils.errors.InputError`
naming it and its fix; the command line prints it and exits 2. A run that fails is reported and the others go
on; the command exits 1 at the end if any run failed.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import itertools
import json
import math
import os
import re
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from utils.errors import InputError, input_error
from utils.experiments.scores import DEFAULT_METRICS, cell_value, plot_scores, summarise
from utils.paths import move_aside, write_text_atomic

RUN_FILE = "sweep_run.json"  # in each run folder: notebook, results name, parameters, status, times
ASIDE = re.compile(r"\.old-\d{8}-\d{6}(?:-\d+)?$")  # a run folder --force moved aside
RANK_NAME = re.compile(r"(?:^|_)RANKS?$")  # parameters holding LoRA ranks: positive integers
# Parameters checked as the QA setting of the same meaning (utils.qa.config.setting_problem), every number in them (a
# list's items, a dict's values): notebooks 03 and 06 do not read QAConfig, and refuse such a value only when they
# train (a learning rate of -1.0: torch's "Invalid learning rate", minutes into the run)
SETTING_OF = (
    (re.compile(r"(?:^|_)(?:LR|LRS|LEARNING_RATES?)(?:_|$)"), "learning_rate"),
    (re.compile(r"^BATCH_SIZE$"), "batch_size"),
    (re.compile(r"^MAX_LENGTH$"), "max_length"),
    (re.compile(r"^MAX_STEPS$"), "max_steps"),
    (re.compile(r"(?:^|_)SEEDS?$"), "seed"),
    (re.compile(r"(?:^|_)(?:LORA_)?ALPHA(?:_PER_RANK)?$"), "lora_alpha"),
    (re.compile(r"^OPTIMIZER$"), "optimizer"),
)
EPOCHS_NAME = re.compile(r"(?:^|_)EPOCHS$")  # passes over the data: a positive number
QA_SETTINGS_CALL = "QAConfig.from_namespace("  # a notebook that reads its settings so (04): checked as it would


# ----------------------------------------------------------------------------------------------
# grid
# ----------------------------------------------------------------------------------------------


def check_name(name: Any) -> str:
    """``name`` if it is a parameters-cell constant (UPPER_CASE), else :class:`InputError`."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
        raise input_error(f"parameter {name!r}", "not a parameter name: the notebook's parameters are its "
                          "UPPER_CASE constants", "write the name as the notebook's parameters cell does, "
                          "e.g. LORA_RANKS")
    return name


def _canonical(value: Any) -> str:
    """One string per value, equal for equal values (lists and tuples alike), for finding repeats."""
    return json.dumps(value, sort_keys=True, default=repr)


def expand_grid(grid: dict[str, Sequence[Any]], fixed: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every combination of the grid's values (cartesian product, in order), each with ``fixed`` added.

    Raises :class:`InputError` for a name that is not UPPER_CASE, a name both in the grid and fixed, a grid
    parameter without values or with a repeated value.

    >>> expand_grid({"LORA_RANKS": [[4], [8]], "SEEDS": [[0], [1]]}, {"EPOCHS": 2})[1]
    {'EPOCHS': 2, 'LORA_RANKS': [4], 'SEEDS': [1]}
    """
    fixed = dict(fixed or {})
    for name in list(grid) + list(fixed):
        check_name(name)
    overlap = sorted(set(grid) & set(fixed))
    if overlap:
        raise input_error(f"parameter(s) {overlap}", "given both as a grid (--grid) and as a fixed parameter (-p)",
                          "choose one: --grid NAME V1 V2 to sweep it, -p NAME V to fix it")
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise input_error(f"grid parameter {name}", f"its values must be a list, got {values!r}",
                              f"give a list of values, e.g. {{{name!r}: [[4], [8]]}}")
        if not values:
            raise input_error(f"grid parameter {name}", "no values", f"give at least one, e.g. --grid {name} '[4]'")
        seen: set[str] = set()
        for value in values:
            if _canonical(value) in seen:
                raise input_error(f"grid parameter {name}", f"the value {value!r} is given twice",
                                  "give each value once")
            seen.add(_canonical(value))
    names = list(grid)
    return [{**fixed, **dict(zip(names, combo, strict=True))} for combo in itertools.product(*grid.values())]


def run_id(parameters: dict[str, Any]) -> str:
    """A readable, file-system-safe folder name for one run, e.g. ``EPOCHS-2_LORA_RANKS-4``."""
    if not parameters:
        return "defaults"
    parts = []
    for name in sorted(parameters):
        value = json.dumps(parameters[name], sort_keys=True) if not isinstance(parameters[name], str) \
            else parameters[name]
        value = re.sub(r"[^A-Za-z0-9.+-]+", "-", value).strip("-") or "x"
        parts.append(f"{name}-{value}")
    name = "_".join(parts)
    return name if len(name) <= 120 else name[:100] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]


# ----------------------------------------------------------------------------------------------
# up-front checks
# ----------------------------------------------------------------------------------------------


def _not_plain(value: Any) -> tuple[Any] | None:
    """``(part,)``: the first part of ``value`` papermill cannot write into a parameters cell as a Python literal
    (nor JSON record), e.g. an object in a list; None when all of it is plain."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    if isinstance(value, (list, tuple)):
        return next((bad for bad in map(_not_plain, value) if bad is not None), None)
    if isinstance(value, dict):
        for key, item in value.items():
            bad = (key,) if not isinstance(key, str) else _not_plain(item)
            if bad is not None:
                return bad
        return None
    return (value,)


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    return "dict" if isinstance(value, dict) else type(value).__name__


def _expr_kinds(node: ast.expr) -> set[str] | None:
    """The kinds of value a parameters-cell default can be (``{"list"}``, ``{"number", "None"}``), or None
    where the cell computes it in a way we do not follow (a function call, a variable)."""
    if isinstance(node, ast.Constant):
        return {_kind(node.value)}
    if isinstance(node, (ast.List, ast.Tuple, ast.ListComp)):
        return {"list"}
    if isinstance(node, (ast.Dict, ast.DictComp)):
        return {"dict"}
    if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                                           and node.func.id == "str"):
        return {"string"}
    if isinstance(node, ast.UnaryOp):
        return _expr_kinds(node.operand)
    if isinstance(node, ast.BinOp):
        left, right = _expr_kinds(node.left), _expr_kinds(node.right)
        return left if left is not None and left == right else None
    if isinstance(node, ast.IfExp):
        body, orelse = _expr_kinds(node.body), _expr_kinds(node.orelse)
        return body | orelse if body is not None and orelse is not None else None
    return None


def default_kinds(notebook: Path) -> dict[str, tuple[set[str], str]]:
    """For each parameter of the notebook whose default we can read: (the kinds it can be, its source text)."""
    from utils.notebooks import parameters_cell

    try:
        source, assigned = parameters_cell(notebook)
    except ValueError:  # no parameters cell, or not Python: nothing to read
        return {}
    kinds = {}
    for name, value in assigned.items():
        found = _expr_kinds(value)
        if found is not None:
            text = " ".join((ast.get_source_segment(source, value) or "").split())
            kinds[name] = (found, text if len(text) <= 60 else text[:57] + "...")
    return kinds


def saved_results_names(notebook: Path) -> list[str]:
    """The names the notebook passes to ``save_results("<name>", ...)`` as a literal, in order of appearance."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    names = re.findall(r"""save_results\(\s*(["'])([^"'\\]+)\1""", source)
    return list(dict.fromkeys(name for _, name in names))


def _check_notebook(notebook: Any) -> Path:
    if not isinstance(notebook, (str, os.PathLike)) or not str(notebook):
        raise input_error("notebook", f"expected a path to an .ipynb file, got {notebook!r}",
                          "give a notebook path, e.g. notebooks/03_lora_rank_ablation.ipynb")
    path = Path(notebook)
    if not path.exists():
        raise input_error("notebook", f"no notebook at {path}",
                          "check the path, e.g. notebooks/03_lora_rank_ablation.ipynb")
    if not path.is_file() or path.suffix != ".ipynb":
        raise input_error(f"notebook {path}", "not an .ipynb file",
                          "give a notebook file, e.g. notebooks/03_lora_rank_ablation.ipynb")
    import nbformat

    from utils.notebooks import NoParametersCell, parameters_cell

    try:
        nbformat.read(str(path), as_version=4)
    except Exception as err:  # noqa: BLE001 - nbformat raises several types for a file that is not a notebook
        first = (str(err).strip().splitlines() or [""])[0][:120]
        raise input_error(f"notebook {path}", f"cannot be read as a notebook ({type(err).__name__}: {first})",
                          "give a Jupyter notebook saved by Jupyter or nbformat") from err
    try:
        parameters_cell(path)
    except NoParametersCell:
        raise input_error(f"notebook {path}", "it has no cell tagged 'parameters', so papermill has "
                          "nowhere to put the sweep's values", "sweep a course notebook, or tag the cell of "
                          "UPPER_CASE constants 'parameters' (cell metadata tags)") from None
    except ValueError as err:  # the cell is not valid Python
        raise input_error(f"notebook {path}", str(err).removeprefix(f"{path.name}: "),
                          "correct that line of the cell tagged 'parameters'") from None
    return path


def _check_results_name(notebook: Path, results_name: Any) -> str:
    saved = saved_results_names(notebook)
    if results_name is None:
        if len(saved) == 1 or (saved and notebook.stem in saved):
            return saved[0] if len(saved) == 1 else notebook.stem
        if saved:
            raise input_error(f"notebook {notebook.name}", f"saves several results ({', '.join(saved)})",
                              "say which one to collect: --results-name NAME (results_name=NAME)")
        results_name = notebook.stem
    if not isinstance(results_name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", results_name):
        raise input_error(f"results name {results_name!r}", "not a file name",
                          "give the name the notebook passes to save_results, e.g. 03_lora_rank_ablation")
    if results_name == Path(RUN_FILE).stem:
        raise input_error(f"results name {results_name!r}", f"{RUN_FILE} is the sweep's own record of a run",
                          "rename the notebook's results")
    if saved and results_name not in saved:
        raise input_error(f"results name {results_name!r}",
                          f"{notebook.name} saves its results as {', '.join(repr(s) for s in saved)}",
                          f"pass --results-name {saved[0]} (or leave it out)")
    return results_name


def _check_points(notebook: Path, points: Any) -> list[dict[str, Any]]:
    from utils.notebooks import check_parameters

    if not isinstance(points, (list, tuple)):
        raise input_error("grid points", f"expected a list of parameter dicts, got {type(points).__name__}",
                          "build the points with expand_grid, e.g. expand_grid({'LORA_RANKS': [[4], [8]]})")
    if not points:
        raise input_error("grid points", "no runs to do (no points)",
                          "give at least one grid point, e.g. --ranks 4 8 or --grid LORA_RANKS '[4]' '[8]'")
    for i, point in enumerate(points, start=1):
        if not isinstance(point, dict):
            raise input_error(f"grid point {i}", f"expected a dict of parameters, got {point!r}",
                              "build the points with expand_grid")
        for name in point:
            check_name(name)
    names = {name: None for point in points for name in point}
    try:
        check_parameters(notebook, names)
    except ValueError as err:
        raise input_error("sweep parameters (--grid / -p)", str(err),
                          "fix the spelling, or add the constant to the notebook's parameters cell") from err
    kinds = default_kinds(notebook)
    for point in points:
        for name, value in point.items():
            where = f"parameter {name} = {value!r}"
            bad = _not_plain(value)
            if bad is not None:
                raise input_error(where, f"{bad[0]!r} (type {type(bad[0]).__name__}) is not a value papermill "
                                  "can pass",
                                  "give a Python literal: a number, string, True/False/None, or a list or dict "
                                  "of those")
            default, text = kinds.get(name, (None, ""))
            if default is not None and "None" not in default and _kind(value) not in default:
                want = " or ".join(sorted(default))
                example = f" (e.g. [{value!r}])" if "list" in default and _kind(value) != "list" else ""
                raise input_error(where, f"{notebook.name} sets {name} to a {want} ({text}), not a {_kind(value)}",
                                  f"give a {want}{example}")
            items = value if isinstance(value, (list, tuple)) else [value]
            if RANK_NAME.search(name) and value is not None and any(
                    isinstance(r, bool) or not isinstance(r, int) or r <= 0 for r in items):
                raise input_error(where, "LoRA ranks are positive integers",
                                  "give ranks such as 4, 8, 16 (--ranks 4 8 16)")
    seen: dict[str, int] = {}
    for i, point in enumerate(points, start=1):
        key = _canonical(point)
        if key in seen:
            raise input_error(f"grid points {seen[key]} and {i}", f"the same parameters twice ({point})",
                              "give each value once")
        seen[key] = i
    ids: dict[str, int] = {}
    for i, point in enumerate(points, start=1):
        rid = run_id(point)
        if rid in ids:
            raise input_error(f"grid points {ids[rid]} and {i}", f"different values that share one run folder "
                              f"name ({rid})", "give each parameter values of one kind (numbers or strings, "
                              "not both)")
        ids[rid] = i
    _check_settings(notebook, points)
    return [dict(point) for point in points]


def _leaves(value: Any) -> list[Any]:
    """The values inside ``value``: itself, or recursively a list's or tuple's items and a dict's values."""
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    return [value]


def _check_settings(notebook: Path, points: list[dict[str, Any]]) -> None:
    """Every value checked as the notebook would check it, so that a bad one is refused before the first run, not
    by the run that gets it: a notebook that resolves its settings with ``QAConfig.from_namespace`` (04) gets each
    point resolved the same way (:meth:`utils.qa.config.QAConfig.from_namespace`, its paths left to the run, which
    reads them from the notebook's folder); in the others, a parameter named like a QA setting (:data:`SETTING_OF`:
    ``LR``, ``LEARNING_RATES``, ``BATCH_SIZE``, ``SEEDS``, ...) is checked as that setting
    (:func:`utils.qa.config.setting_problem`), and ``EPOCHS`` as a positive number."""
    import nbformat

    from utils.notebooks import parameters_cell
    from utils.qa.config import QAConfig, setting_problem

    _, assigned = parameters_cell(notebook)
    code = "\n".join(c.source for c in nbformat.read(str(notebook), as_version=4).cells if c.cell_type == "code")
    if QA_SETTINGS_CALL in code:
        from utils.run_mode import get_profile

        defaults = {}
        for name, node in assigned.items():
            try:
                defaults[name] = ast.literal_eval(node)
            except (ValueError, SyntaxError, TypeError):
                pass
        for i, point in enumerate(points, start=1):
            namespace = {**defaults, **point}
            try:
                QAConfig.from_namespace(point.get("PROFILE", get_profile()), namespace.get("PRESET", "course"),
                                        namespace, paths=False)
            except InputError as err:
                raise InputError(f"grid point {i} {point} of {notebook.name}: {err}") from None
        return
    for point in points:
        for name, value in point.items():
            where = f"parameter {name} = {value!r}"
            field = next((f for pattern, f in SETTING_OF if pattern.search(name)), None)
            for leaf in _leaves(value):
                if leaf is None:
                    continue
                if field is not None:
                    problem = setting_problem(field, leaf)
                    if problem is not None:
                        raise input_error(where, f"{problem[0]} ({name} is checked as the QA setting {field})",
                                          problem[1])
                elif EPOCHS_NAME.search(name) and (isinstance(leaf, bool) or not isinstance(leaf, (int, float))
                                                   or not math.isfinite(leaf) or leaf <= 0):
                    raise input_error(where, f"{name} (passes over the training data) must be a positive number, "
                                      f"got {leaf!r}", "give e.g. 1, 2 or 0.5")


def _check_output(output_dir: Any) -> Path:
    if not isinstance(output_dir, (str, os.PathLike)) or not str(output_dir):
        raise input_error("--output", f"expected a folder path, got {output_dir!r}",
                          "give a folder, e.g. outputs/sweep_ranks")
    out = Path(output_dir).resolve()
    if out.exists() and not out.is_dir():
        raise input_error(f"--output {out}", "is a file, not a folder",
                          "give a folder path (new or earlier sweep's), e.g. outputs/sweep_ranks")
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise input_error(f"--output {out}", f"cannot create or write to it ({err.strerror or err})",
                          "choose a folder you can write to, e.g. outputs/sweep_ranks") from err
    return out


# ----------------------------------------------------------------------------------------------
# run folders
# ----------------------------------------------------------------------------------------------


@dataclass
class RunFolder:
    """One ``runs/<run-id>/`` folder of a sweep: what it records and whether it finished."""

    name: str
    path: Path
    record: dict[str, Any] | None  # its sweep_run.json; None for runs of sweeps from before that file
    results_file: Path
    finished: bool
    error: str | None = None  # why it failed, for a failed run

    @property
    def parameters(self) -> dict[str, Any]:
        return dict((self.record or {}).get("parameters") or {})

    @property
    def finished_at(self) -> str:
        """When it finished (ISO time), for ordering earlier runs; the results file's time for old runs."""
        if self.record and self.record.get("finished"):
            return str(self.record["finished"])
        stamp = self.results_file.stat().st_mtime if self.results_file.is_file() else 0
        return datetime.fromtimestamp(stamp).isoformat(timespec="microseconds")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def scan_runs(output_dir: str | Path, results_name: str) -> dict[str, RunFolder]:
    """Every run folder in ``<output_dir>/runs/`` (not those ``--force`` set aside), by name.

    A run is finished when its results JSON exists and its ``sweep_run.json`` says ``finished`` (for a run of
    an older sweep without that file: when there is no ``error.txt``).
    """
    runs = Path(output_dir) / "runs"
    found: dict[str, RunFolder] = {}
    if not runs.is_dir():
        return found
    for path in sorted(runs.iterdir()):
        if not path.is_dir() or ASIDE.search(path.name):
            continue
        record = _read_json(path / RUN_FILE)
        record = record if isinstance(record, dict) else None
        results_file = path / f"{(record or {}).get('results_name') or results_name}.json"
        if record is not None:
            finished = record.get("status") == "finished" and results_file.is_file()
        else:
            finished = results_file.is_file() and not (path / "error.txt").exists()
        error = None
        if not finished:
            if record is not None and record.get("status") == "failed":
                error = str(record.get("error") or "failed")
            elif (path / "error.txt").is_file():
                lines = [line for line in (path / "error.txt").read_text().splitlines() if line.strip()]
                error = lines[-1].strip() if lines else "failed"
        found[path.name] = RunFolder(path.name, path, record, results_file, finished, error)
    return found


# ----------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------


@dataclass
class SweepPlan:
    """A checked sweep (:func:`check_sweep`): what :func:`run_sweep` will run, and what the folder holds."""

    notebook: Path
    points: list[dict[str, Any]]
    ids: list[str]
    output_dir: Path
    results_name: str
    existing: dict[str, RunFolder]


def check_sweep(notebook: str | Path, points: list[dict[str, Any]], output_dir: str | Path,
                results_name: str | None = None, force: bool = False) -> SweepPlan:
    """Check everything about a sweep before any run starts; raise :class:`InputError` naming the problem.

    Checks, in order: the notebook (an ``.ipynb`` with a ``parameters`` cell), the results name (the one the
    notebook passes to ``save_results``; the default is that name when the notebook saves one, else its file
    stem), the points (at least one; every name a parameter of the notebook; every value a plain literal of
    the kind the notebook's default is; ranks positive integers; no point twice; every value as the notebook's settings
    check takes it, :func:`_check_settings`), and the output folder (not a
    file; created and written to as a test; holding no finished runs of another notebook, nor a finished run
    with other parameters under a run folder name of this sweep unless ``force``).
    """
    path = _check_notebook(notebook)
    results_name = _check_results_name(path, results_name)
    points = _check_points(path, points)
    ids = [run_id(p) for p in points]
    out = _check_output(output_dir)
    existing = scan_runs(out, results_name)
    for folder in existing.values():
        record = folder.record or {}
        other = (record.get("notebook"), record.get("results_name"))
        if folder.finished and folder.record is not None and other != (path.name, results_name):
            raise input_error(f"--output {out}", f"it holds finished runs of {other[0]} (results {other[1]!r}), "
                              f"e.g. runs/{folder.name}, and one folder holds one notebook's sweeps",
                              f"give this sweep of {path.name} its own --output folder")
    for rid, point in zip(ids, points, strict=True):
        folder = existing.get(rid)
        if (folder and folder.finished and folder.record is not None and not force
                and _canonical(folder.parameters) != _canonical(point)):
            raise input_error(f"--output {out}", f"runs/{rid} holds a finished run with parameters "
                              f"{folder.parameters}, not {point}", "pass --force to re-run it (the old folder is "
                              "kept aside), or give another --output")
    return SweepPlan(path, points, ids, out, results_name, existing)


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: the runs executed, skipped and failed (run-id -> message), and the table.

    ``earlier``: finished runs of earlier sweeps into the folder (not in this grid) whose rows are in the table
    too; ``replaced``: run-id -> where ``force`` moved its earlier finished folder.
    """

    output_dir: Path
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    earlier: list[str] = field(default_factory=list)
    replaced: dict[str, Path] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def _default_runner(notebook: Path, output_dir: Path, parameters: dict[str, Any]) -> Path:
    from utils.notebooks import run_notebook

    previous = os.environ.get("QLORA_OUTPUT_DIR")
    try:
        return run_notebook(notebook, output_dir, parameters)
    finally:  # run_notebook points the process at the run's folder; put it back
        if previous is None:
            os.environ.pop("QLORA_OUTPUT_DIR", None)
        else:
            os.environ["QLORA_OUTPUT_DIR"] = previous


def rows_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows a notebook saved: its ``"runs"`` list if it has one, else its scalar fields as one row."""
    runs = results.get("runs")
    if isinstance(runs, list) and all(isinstance(r, dict) for r in runs):
        return [dict(r) for r in runs]
    return [{k: v for k, v in results.items() if isinstance(v, (int, float, str, bool)) or v is None}]


def _now() -> str:
    return datetime.now().isoformat(timespec="microseconds")


def run_sweep(notebook: str | Path, points: list[dict[str, Any]], output_dir: str | Path,
              results_name: str | None = None, force: bool = False,
              runner: Callable[[Path, Path, dict[str, Any]], Path] | None = None,
              progress: Callable[[str], None] | None = None) -> SweepResult:
    """Execute ``notebook`` once per parameter point, then combine, summarise and plot every finished run.

    Args:
        notebook: the ``.ipynb`` to run (it must save ``<results_name>.json`` with utils.paths).
        points: one parameters dict per run (see :func:`expand_grid`).
        output_dir: the sweep's folder (layout and re-run rules in the module docstring).
        results_name: the name the notebook passes to ``save_results`` (default: the one its source passes,
            else its file stem).
        force: re-run points whose run finished; each old run folder is moved aside, not deleted.
        runner: ``(notebook, run_dir, parameters) -> executed path``; papermill by default.
        progress: called with one line per run (e.g. ``print``).

    Returns:
        :class:`SweepResult`; a failing run is recorded in ``failed`` and does not stop the others.

    Raises:
        InputError: before any run starts, for anything :func:`check_sweep` rejects.
    """
    plan = check_sweep(notebook, points, output_dir, results_name=results_name, force=force)
    out, results_name = plan.output_dir, plan.results_name
    runner = runner or _default_runner
    say = progress or (lambda line: None)
    sweep = SweepResult(output_dir=out)
    total = len(plan.points)
    for i, (rid, parameters) in enumerate(zip(plan.ids, plan.points, strict=True), start=1):
        run_dir = out / "runs" / rid
        results_file = run_dir / f"{results_name}.json"
        folder = plan.existing.get(rid)
        if folder is not None and folder.finished:
            if not force:
                sweep.skipped.append(rid)
                say(f"[{i}/{total}] {rid}: finished earlier, skipped (--force re-runs it)")
                continue
            sweep.replaced[rid] = move_aside(run_dir)
            say(f"[{i}/{total}] {rid}: earlier results kept in {sweep.replaced[rid]}")
        else:  # a failed or interrupted run's leftovers must not pass for this run's results
            results_file.unlink(missing_ok=True)
            (run_dir / "error.txt").unlink(missing_ok=True)
        record = {"run": rid, "notebook": plan.notebook.name, "results_name": results_name,
                  "parameters": parameters, "status": "running", "started": _now()}
        write_text_atomic(run_dir / RUN_FILE, json.dumps(record, indent=2) + "\n")
        say(f"[{i}/{total}] {rid}: running ...")
        try:
            runner(plan.notebook, run_dir, parameters)
            if not results_file.is_file():
                raise FileNotFoundError(f"the notebook ran but wrote no {results_file.name} "
                                        f"(does it call save_results({results_name!r}, ...)?)")
            record.update(status="finished", finished=_now())
            sweep.executed.append(rid)
            say(f"[{i}/{total}] {rid}: done")
        except Exception as err:  # noqa: BLE001 - a failed run must not lose the finished ones
            message = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
            sweep.failed[rid] = message
            record.update(status="failed", failed=_now(), error=message)
            (run_dir / "error.txt").write_text("".join(traceback.format_exception(err)))
            say(f"[{i}/{total}] {rid}: FAILED ({message}); see {run_dir / 'error.txt'}")
        write_text_atomic(run_dir / RUN_FILE, json.dumps(record, indent=2) + "\n")
    sweep.rows, failed, baseline, sweep.earlier = combine_runs(out, results_name, plan.ids)
    if sweep.earlier:
        say(f"the table also holds {len(sweep.earlier)} finished run(s) of earlier sweeps into {out}")
    sweep.files = write_outputs(sweep.rows, out, failed=failed, baseline=baseline)
    return sweep


def combine_runs(output_dir: str | Path, results_name: str, order: Sequence[str] = ()
                 ) -> tuple[list[dict[str, Any]], dict[str, str], float | None, list[str]]:
    """The rows of every finished run in ``<output_dir>/runs/``, each with ``run`` and ``param_<NAME>`` columns.

    Runs not in ``order`` (earlier sweeps') come first, oldest first, then those in ``order``, in that order.
    Returns ``(rows, failed, baseline, earlier)``: ``failed`` maps each failed run to its message, ``baseline``
    is the first run's saved ``baseline`` accuracy (or None), ``earlier`` the runs not in ``order``.
    """
    folders = scan_runs(output_dir, results_name)
    wanted = set(order)
    earlier = sorted((f for f in folders.values() if f.finished and f.name not in wanted),
                     key=lambda f: (f.finished_at, f.name))
    mine = [folders[rid] for rid in order if rid in folders and folders[rid].finished]
    failed = {f.name: f.error for f in folders.values() if not f.finished and f.error is not None}
    rows: list[dict[str, Any]] = []
    baseline = None
    for folder in earlier + mine:
        results = _read_json(folder.results_file)
        if not isinstance(results, dict):
            failed[folder.name] = f"unreadable results file {folder.results_file.name}"
            continue
        if isinstance(results.get("baseline"), dict) and baseline is None:
            baseline = results["baseline"].get(DEFAULT_METRICS[0])
        parameters = {f"param_{k}": cell_value(v) for k, v in folder.parameters.items()}
        for row in rows_of(results):
            rows.append({"run": folder.name, **parameters, **row})
    return rows, failed, baseline, [f.name for f in earlier if f.name not in failed]


# ----------------------------------------------------------------------------------------------
# the combined files (summaries and plots: utils.experiments.scores)
# ----------------------------------------------------------------------------------------------


def write_outputs(rows: list[dict[str, Any]], output_dir: Path, failed: dict[str, str] | None = None,
                  baseline: float | None = None) -> dict[str, Path]:
    """Write the combined table (CSV + JSON), the per-configuration summary and the comparison plot
    (:func:`utils.experiments.scores.summarise`, :func:`utils.experiments.scores.plot_scores`).

    The summary and the plot are made from ``rows``, exactly what the CSV holds; one that cannot be made
    (no rows; no numeric ``rank`` and ``accuracy`` to plot) is removed, so an earlier one never stays behind.
    Each file is written to a temporary sibling and renamed into place. ``baseline``: an accuracy drawn as a
    dashed line (notebook 03 saves its majority-class baseline).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": output_dir / "sweep_results.json", "csv": output_dir / "sweep_results.csv"}
    summary_file, plot_file = output_dir / "sweep_summary.csv", output_dir / "sweep_plot.png"
    write_text_atomic(files["json"], json.dumps({"rows": rows, "failed": failed or {}}, indent=2, default=str) + "\n")
    _write_csv(files["csv"], rows)
    numeric = [r for r in rows if isinstance(r.get("rank"), (int, float))
               and isinstance(r.get(DEFAULT_METRICS[0]), (int, float))]
    if rows:
        files["summary"] = summary_file
        _write_csv(summary_file, summarise(rows))
    else:
        summary_file.unlink(missing_ok=True)
    if not numeric:
        plot_file.unlink(missing_ok=True)
        return files
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    plot_scores(numeric, "rank", "accuracy", baseline=baseline, ax=axes[0])
    if all(isinstance(r.get("trainable_params"), (int, float)) for r in numeric):
        plot_scores(numeric, "trainable_params", "accuracy", baseline=baseline, ax=axes[1])
    else:
        plot_scores(numeric, "rank", "macro_f1", ax=axes[1])
    fig.suptitle(f"Sweep: {len({r['run'] for r in rows})} run(s), {len(rows)} trained model(s)")
    fig.tight_layout()
    staging = plot_file.with_name(f".{plot_file.name}.tmp")
    try:
        fig.savefig(staging, dpi=110, format="png")
        os.replace(staging, plot_file)
    finally:
        staging.unlink(missing_ok=True)
        plt.close(fig)
    files["plot"] = plot_file
    return files


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import io

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell_value(v) for k, v in row.items()})
    write_text_atomic(path, text.getvalue())
