"""utils.experiments.sweep: the grid, skipping, failure handling, re-runs that keep earlier results, the up-front
input checks and the combined table, on a tiny notebook."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import nbformat
import pytest

from utils.cli import sweep as sweep_cli
from utils.errors import InputError
from utils.experiments import scores
from utils.experiments import sweep as S
from utils.paths import REPO_ROOT

TINY_SOURCE = '''
from utils.paths import save_results

if FAIL_RANK in LORA_RANKS:
    raise ValueError(f"rank {FAIL_RANK} was told to fail")
rows = [{"variant": "all-linear", "rank": r, "seed": s, "accuracy": 0.5 + 0.01 * r + 0.001 * s,
         "macro_f1": 0.4 + 0.01 * r, "trainable_params": 100 * r} for r in LORA_RANKS for s in SEEDS]
save_results("tiny", {"runs": rows, "baseline": {"accuracy": 0.2}})
'''


@pytest.fixture
def tiny_notebook(tmp_path) -> Path:
    """A two-cell notebook shaped like notebook 03: a `parameters` cell, then save_results("tiny", ...)."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("LORA_RANKS = [1]  # ranks\nSEEDS = [0]  # seeds\nFAIL_RANK = None  # fail")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(TINY_SOURCE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def fake_runner(calls: list):
    """Executes the tiny notebook's logic in-process (no kernel), as papermill would with these parameters."""

    def run(notebook: Path, run_dir: Path, parameters: dict):
        calls.append(parameters)
        env = {"LORA_RANKS": [1], "SEEDS": [0], "FAIL_RANK": None, **parameters}
        if env["FAIL_RANK"] in env["LORA_RANKS"]:
            raise RuntimeError(f"rank {env['FAIL_RANK']} was told to fail")
        rows = [{"variant": "all-linear", "rank": r, "seed": s, "accuracy": 0.5 + 0.01 * r + 0.001 * s,
                 "macro_f1": 0.4, "trainable_params": 100 * r} for r in env["LORA_RANKS"] for s in env["SEEDS"]]
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "tiny.json").write_text(json.dumps({"runs": rows}))
        return run_dir / "executed.ipynb"

    return run


# --- the grid and the command line -------------------------------------------------------------


def test_grid_is_a_cartesian_product_with_fixed_parameters():
    points = S.expand_grid({"LORA_RANKS": [[4], [8]], "SEEDS": [[0], [1], [2]]}, {"EPOCHS": 2})
    assert len(points) == 6 and points[0] == {"EPOCHS": 2, "LORA_RANKS": [4], "SEEDS": [0]}
    assert points[-1] == {"EPOCHS": 2, "LORA_RANKS": [8], "SEEDS": [2]}
    assert S.run_id(points[0]) == "EPOCHS-2_LORA_RANKS-4_SEEDS-0"
    assert S.run_id({"DATA": "data/x y.csv"}) == "DATA-data-x-y.csv"


def test_ranks_shorthand_and_parameters_from_the_command_line(tiny_notebook):
    args, points = sweep_cli.parse_args([str(tiny_notebook), "--ranks", "4", "8", "-p", "SEEDS", "[0, 1]",
                                 "--grid", "LR", "1e-3", "3e-3"])
    assert points == [{"SEEDS": [0, 1], "LR": 0.001, "LORA_RANKS": [4]},
                      {"SEEDS": [0, 1], "LR": 0.001, "LORA_RANKS": [8]},
                      {"SEEDS": [0, 1], "LR": 0.003, "LORA_RANKS": [4]},
                      {"SEEDS": [0, 1], "LR": 0.003, "LORA_RANKS": [8]}]
    assert not args.force
    help_text = sweep_cli.build_parser().format_help()  # --help documents what a re-run keeps
    assert "keeps every earlier result" in help_text and "runs/<run>.old-<YYYYmmdd-HHMMSS>/" in help_text


def test_missing_notebook_is_a_clear_error(tmp_path):
    # was FileNotFoundError; every bad input is now the one InputError (a ValueError)
    with pytest.raises(InputError, match="no notebook at"):
        S.run_sweep(tmp_path / "nope.ipynb", [{}], tmp_path)


# --- running: skip, force, failures -------------------------------------------------------------


def test_sweep_skips_finished_runs_keeps_going_after_a_failure_and_combines(tiny_notebook, tmp_path):
    calls: list = []
    points = S.expand_grid({"LORA_RANKS": [[1], [2], [4]]}, {"SEEDS": [0, 1], "FAIL_RANK": 2})
    result = S.run_sweep(tiny_notebook, points, tmp_path / "out", runner=fake_runner(calls))
    assert len(calls) == 3 and len(result.executed) == 2 and list(result.failed) == [S.run_id(points[1])]
    assert "told to fail" in result.failed[S.run_id(points[1])]
    assert (tmp_path / "out" / "runs" / S.run_id(points[1]) / "error.txt").is_file()
    # 2 finished runs x 2 seeds
    with open(result.files["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["rank"], r["seed"]) for r in rows] == [("1", "0"), ("1", "1"), ("4", "0"), ("4", "1")]
    assert rows[0]["param_LORA_RANKS"] == "[1]" and rows[0]["run"] == S.run_id(points[0])
    summary = scores.summarise(result.rows)
    assert [(e["rank"], e["n_seeds"]) for e in summary] == [(1, 2), (4, 2)]
    assert summary[1]["accuracy_mean"] == pytest.approx(0.5405) and summary[1]["accuracy_std"] == pytest.approx(
        0.000707107, rel=1e-5)
    assert result.files["plot"].stat().st_size > 10_000
    # second call: the finished runs are skipped, the failed one is tried again
    calls.clear()
    again = S.run_sweep(tiny_notebook, points, tmp_path / "out", runner=fake_runner(calls))
    assert len(calls) == 1 and again.skipped == [S.run_id(points[0]), S.run_id(points[2])]
    assert len(again.rows) == 4
    # --force re-runs a finished run, but keeps its old folder aside instead of deleting it
    calls.clear()
    forced = S.run_sweep(tiny_notebook, points[:1], tmp_path / "out", force=True, runner=fake_runner(calls))
    assert calls == [points[0]]
    runs = tmp_path / "out" / "runs"
    aside = forced.replaced[S.run_id(points[0])]
    assert aside.parent == runs and aside.name.startswith(S.run_id(points[0]) + ".old-")
    assert json.loads((aside / "tiny.json").read_text())["runs"][0]["rank"] == 1
    assert json.loads((aside / S.RUN_FILE).read_text())["status"] == "finished"
    assert (runs / S.run_id(points[0]) / "tiny.json").is_file()
    # the table: the replaced run once (its new copy, not the one set aside) and the other finished run
    assert [(r["run"], r["seed"]) for r in forced.rows] == [(S.run_id(points[2]), 0), (S.run_id(points[2]), 1),
                                                          (S.run_id(points[0]), 0), (S.run_id(points[0]), 1)]


def test_a_rerun_with_another_grid_keeps_the_earlier_results(tiny_notebook, tmp_path):
    calls: list = []
    out = tmp_path / "out"
    first = S.run_sweep(tiny_notebook, S.expand_grid({"LORA_RANKS": [[1], [2]]}, {"SEEDS": [0, 1]}), out,
                        runner=fake_runner(calls))
    plot = first.files["plot"].read_bytes()
    second = S.run_sweep(tiny_notebook, S.expand_grid({"LORA_RANKS": [[4], [8]]}, {"SEEDS": [0, 1]}), out,
                         runner=fake_runner(calls))
    assert [p["LORA_RANKS"] for p in calls] == [[1], [2], [4], [8]]  # nothing re-run
    assert second.earlier == first.executed and second.executed == [S.run_id({"LORA_RANKS": [r], "SEEDS": [0, 1]})
                                                                    for r in (4, 8)]
    with open(out / "sweep_results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["rank"], r["seed"]) for r in rows] == [(str(r), str(s)) for r in (1, 2, 4, 8) for s in (0, 1)]
    assert [r["param_LORA_RANKS"] for r in rows[::2]] == ["[1]", "[2]", "[4]", "[8]"]
    assert [r["rank"] for r in json.loads((out / "sweep_results.json").read_text())["rows"]] == [1, 1, 2, 2, 4, 4, 8, 8]
    with open(out / "sweep_summary.csv") as handle:
        assert [(e["rank"], e["n_seeds"]) for e in csv.DictReader(handle)] == [(str(r), "2") for r in (1, 2, 4, 8)]
    assert (out / "sweep_plot.png").read_bytes() != plot  # redrawn with all four ranks


def test_a_run_that_failed_after_saving_results_is_never_in_the_table(tiny_notebook, tmp_path):
    """Its results may be half-made: it is listed as failed, tried again on the next sweep, and a summary and
    plot that no longer have rows behind them are removed, not left stale."""
    calls: list = []

    def saves_then_fails(notebook: Path, run_dir: Path, parameters: dict):
        fake_runner(calls)(notebook, run_dir, parameters)
        raise AssertionError("an assert after save_results failed")

    out = tmp_path / "out"
    point = {"LORA_RANKS": [2], "SEEDS": [0]}
    first = S.run_sweep(tiny_notebook, [point], out, runner=saves_then_fails)
    assert first.rows == [] and "assert after save_results" in first.failed[S.run_id(point)]
    assert json.loads((out / "sweep_results.json").read_text()) == {"rows": [], "failed": first.failed}
    assert "summary" not in first.files and not (out / "sweep_plot.png").exists()
    again = S.run_sweep(tiny_notebook, [point], out, runner=fake_runner(calls))  # retried, not skipped
    assert again.executed == [S.run_id(point)] and len(calls) == 2 and len(again.rows) == 1
    assert (out / "sweep_plot.png").is_file() and not (out / "runs" / S.run_id(point) / "error.txt").exists()
    # forced again and failing: the old results are kept aside, the table is empty, summary and plot removed
    forced = S.run_sweep(tiny_notebook, [point], out, force=True, runner=saves_then_fails)
    assert forced.rows == [] and list(forced.failed) == [S.run_id(point)]
    assert not (out / "sweep_summary.csv").exists() and not (out / "sweep_plot.png").exists()
    assert (forced.replaced[S.run_id(point)] / "tiny.json").is_file()


# --- bad input: one error type, a message that names the problem, before the first run ---------------------


@pytest.mark.parametrize("grid,fixed,match", [
    ({"LORA_RANKS": []}, {}, "grid parameter LORA_RANKS: no values"),
    ({"SEEDS": [[0], [1], [0]]}, {}, "the value [0] is given twice"),
    ({"SEEDS": [[0]]}, {"SEEDS": [1]}, "given both as a grid"),
    ({"lora_ranks": [[4]]}, {}, "UPPER_CASE"),
    ({"LORA_RANKS": "[4]"}, {}, "its values must be a list"),
])
def test_bad_grids_are_input_errors(grid, fixed, match):
    with pytest.raises(InputError, match=re.escape(match)):
        S.expand_grid(grid, fixed)


def _other_notebook(tmp_path: Path, name: str, text: str | None = None, parameters: bool = True,
                    cell: str = "LORA_RANKS = [1]") -> Path:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
        return path
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cell)]
    if parameters:
        nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)
    return path


def _finished_run_of_another_notebook(out: Path) -> None:
    run = out / "runs" / "LORA_RANKS-1"
    run.mkdir(parents=True)
    (run / "other.json").write_text("{}")
    (run / S.RUN_FILE).write_text(json.dumps({"notebook": "other.ipynb", "results_name": "other",
                                              "parameters": {"LORA_RANKS": [1]}, "status": "finished"}))


BAD_SWEEPS = {  # name: (changes to the good call, setup(tmp_path), what the message must name)
    "missing notebook": ({"notebook": "nope.ipynb"}, None, "no notebook at"),
    "not a notebook file": ({"notebook": "notes.txt"}, lambda t: _other_notebook(t, "notes.txt", "x"),
                            "not an .ipynb file"),
    "unreadable notebook": ({"notebook": "broken.ipynb"}, lambda t: _other_notebook(t, "broken.ipynb", "{nope"),
                            "cannot be read as a notebook"),
    "no parameters cell": ({"notebook": "plain.ipynb"}, lambda t: _other_notebook(t, "plain.ipynb", None, False),
                           "plain.ipynb: it has no cell tagged 'parameters'"),
    "parameters cell not Python": ({"notebook": "typo.ipynb"}, lambda t: _other_notebook(t, "typo.ipynb", None, True,
                                                                                    "LORA_RANKS = [1"),
                                   "typo.ipynb: its parameters cell is not valid Python ("),
    "no points": ({"points": []}, None, "no runs to do"),
    "unknown parameter in the last point": (
        {"points": [{"LORA_RANKS": [1]}, {"LORA_RANKS": [2]}, {"LORA_RANK": 4}]}, None,
        "tiny.ipynb has no parameter(s) ['LORA_RANK']; its parameters are: LORA_RANKS, SEEDS, FAIL_RANK"),
    "lower-case name": ({"points": [{"seeds": [0]}]}, None, "UPPER_CASE"),
    "rank zero": ({"points": [{"LORA_RANKS": [4]}, {"LORA_RANKS": [0]}]}, None,
                  "LORA_RANKS = [0]: LoRA ranks are positive integers"),
    "rank not a list": ({"points": [{"LORA_RANKS": 4}]}, None,
                        "tiny.ipynb sets LORA_RANKS to a list ([1]), not a number. Fix: give a list (e.g. [4])"),
    "not a literal": ({"points": [{"SEEDS": [object()]}]}, None, "(type object) is not a value papermill can pass"),
    "repeated point": ({"points": [{"LORA_RANKS": [4]}, {"LORA_RANKS": [8]}, {"LORA_RANKS": [4]}]}, None,
                       "grid points 1 and 3: the same parameters twice"),
    "points sharing a run folder": ({"points": [{"SEEDS": [0, 1]}, {"SEEDS": ["0", "1"]}]}, None,
                                    "grid points 1 and 2: different values that share one run folder name (SEEDS-0-1)"),
    "wrong results name": ({"results_name": "tiny_results"}, None, "tiny.ipynb saves its results as 'tiny'"),
    "results name with a slash": ({"results_name": "../tiny"}, None, "results name '../tiny': not a file name"),
    "output is a file": ({"output_dir": "taken"}, lambda t: (t / "taken").write_text("x"), "is a file, not a folder"),
    "output cannot be created": ({"output_dir": "taken/sweep"}, lambda t: (t / "taken").write_text("x"),
                                 "cannot create or write to it"),
    "output of another notebook": ({}, lambda t: _finished_run_of_another_notebook(t / "out"),
                                   "holds finished runs of other.ipynb"),
}


@pytest.mark.parametrize("case", list(BAD_SWEEPS))
def test_each_bad_input_is_an_input_error_before_the_first_run(tiny_notebook, tmp_path, case):
    changes, setup, match = BAD_SWEEPS[case]
    if setup is not None:
        setup(tmp_path)
    call = {"notebook": tiny_notebook, "points": [{"LORA_RANKS": [1]}, {"LORA_RANKS": [2]}],
            "output_dir": tmp_path / "out", **changes}
    for key in ("notebook", "output_dir"):
        if isinstance(call[key], str):
            call[key] = tmp_path / call[key]
    calls: list = []
    with pytest.raises(InputError, match=re.escape(match)) as caught:
        S.run_sweep(**call, runner=fake_runner(calls))
    assert calls == [] and "Fix: " in str(caught.value)


def test_a_finished_run_with_other_parameters_under_the_same_folder_name_is_refused(tiny_notebook, tmp_path):
    # a parameter of no known meaning (seeds are checked as seeds: ["0", "1"] would be refused as strings first)
    nb = nbformat.read(tiny_notebook, as_version=4)
    nb.cells[0].source += "\nTAG = None  # free text"
    nbformat.write(nb, tiny_notebook)
    calls: list = []
    S.run_sweep(tiny_notebook, [{"TAG": [0, 1]}], tmp_path, runner=fake_runner(calls))
    with pytest.raises(InputError, match=re.escape("runs/TAG-0-1 holds a finished run with parameters "
                                                   "{'TAG': [0, 1]}, not {'TAG': ['0', '1']}")):
        S.run_sweep(tiny_notebook, [{"TAG": ["0", "1"]}], tmp_path, runner=fake_runner(calls))
    assert len(calls) == 1


@pytest.mark.parametrize("argv,match", [
    (["--ranks", "0", "4"], "--ranks: ranks must be positive integers, got [0]"),
    (["--ranks", "4", "4"], "grid parameter LORA_RANKS: the value [4] is given twice"),
    (["--grid", "lora_ranks", "[4]"], "UPPER_CASE"),
    (["--grid", "LORA_RANKS"], "--grid LORA_RANKS: no values given"),
    (["--grid", "LORA_RANKS", "4", "8"], "sets LORA_RANKS to a list"),
    (["--grid", "LORA_RANK", "[4]"], "has no parameter(s) ['LORA_RANK']"),
    (["--grid", "SEEDS", "[0]", "--grid", "SEEDS", "[1]"], "--grid SEEDS: given twice"),
    (["--ranks", "4", "-p", "SEEDS", "[0]", "-p", "SEEDS", "[1]"], "-p SEEDS: given twice"),
    (["--ranks", "4", "--grid", "LORA_RANKS", "[8]"], "not both"),
    (["--grid", "SEEDS", "[0]", "-p", "SEEDS", "[1]"], "choose one"),
    (["--ranks", "4", "--results-name", "other"], "saves its results as 'tiny'"),
    (["--ranks", "4", "--output", "FILE"], "is a file, not a folder"),
])
def test_bad_command_lines_exit_2_with_the_message_and_run_nothing(tiny_notebook, tmp_path, monkeypatch, capsys,
                                                                  argv, match):
    # was: argparse's SystemExit from parse_args; now InputError, which main prints and turns into exit code 2
    calls: list = []
    monkeypatch.setattr(S, "_default_runner", fake_runner(calls))
    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / a) if a == "FILE" else a for a in argv]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "out")]
    assert sweep_cli.main([str(tiny_notebook), *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and err.startswith("python -m utils.cli.sweep: error: ") and "Traceback" not in err
    assert calls == []


def test_the_command_line_refuses_a_missing_notebook(tmp_path, capsys):
    assert sweep_cli.main([str(tmp_path / "nope.ipynb"), "--ranks", "4", "--output", str(tmp_path / "out")]) == 2
    assert "no notebook at" in capsys.readouterr().err


def test_the_course_notebooks_parameters_and_results_names_are_understood(tmp_path):
    """The checks read the real parameters cells (defaults like ``[1, 8, 64] if SMOKE else [...]``) and the name each
    notebook saves its results under (04 saves "04_qa_training", not its file stem), without running anything."""
    notebooks = REPO_ROOT / "notebooks"
    plan = S.check_sweep(notebooks / "03_lora_rank_ablation.ipynb", S.expand_grid(
        {"LORA_RANKS": [[4], [8]]}, {"SEEDS": [0], "EPOCHS": 1, "LR": 1e-3, "DATA": "data/x.csv"}), tmp_path / "a")
    assert plan.results_name == "03_lora_rank_ablation" and len(plan.ids) == 2
    plan = S.check_sweep(notebooks / "04_phi2_qlora_training.ipynb", [{"LORA_RANK": 16, "MAX_STEPS": 5}], tmp_path / "b")
    assert plan.results_name == "04_qa_training"
    with pytest.raises(InputError, match=re.escape("parameter EPOCHS = 'two': 03_lora_rank_ablation.ipynb sets EPOCHS "
                                                   "to a number (2 if SMOKE else 1), not a string")):
        S.check_sweep(notebooks / "03_lora_rank_ablation.ipynb", [{"EPOCHS": "two"}], tmp_path / "c")


def test_real_papermill_run_through_the_command_line(tiny_notebook, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = sweep_cli.main([str(tiny_notebook), "--ranks", "2", "8", "-p", "FAIL_RANK", "8", "-p", "SEEDS", "[0, 1]",
                   "--output", str(out), "--results-name", "tiny"])
    printed = capsys.readouterr()
    assert code == 1 and "1 run(s) executed" in printed.out and "rank 8 was told to fail" in printed.err
    executed = out / "runs" / "FAIL_RANK-8_LORA_RANKS-2_SEEDS-0-1" / "notebooks" / "tiny.ipynb"
    assert executed.is_file()
    assert "LORA_RANKS = [2]" in "".join(c.source for c in nbformat.read(executed, as_version=4).cells)
    table = json.loads((out / "sweep_results.json").read_text())
    assert [r["rank"] for r in table["rows"]] == [2, 2] and list(table["failed"]) == ["FAIL_RANK-8_LORA_RANKS-8_SEEDS-0-1"]
    assert (out / "sweep_plot.png").is_file() and (out / "sweep_summary.csv").is_file()


@pytest.mark.parametrize("argv,match", [
    # checked as the notebook's settings: notebook 03's LR as a QA learning rate (torch refused it minutes into the run)
    (["-p", "LR", "-1.0"], "parameter LR = -1.0: learning_rate must be > 0, got -1.0 (LR is checked as the QA setting "
                           "learning_rate). Fix: set it to a value that fits (peak learning rate)"),
    (["-p", "LR", "-1e-4"], "parameter LR = -0.0001: learning_rate must be > 0"),  # a negative number is a value
    (["--grid", "LR", "1e-3", "0"], "parameter LR = 0: learning_rate must be > 0, got 0"),
    (["-p", "EPOCHS", "0"], "parameter EPOCHS = 0: EPOCHS (passes over the training data) must be a positive number"),
    (["-p", "SEEDS", "[0, -1]"], "parameter SEEDS = [0, -1]: seed must be in [0, 2**32 - 1] (numpy's seeds), got -1"),
    # an unparsable literal is not taken for a string
    (["--grid", "LORA_RANKS", "[4", "[8]"], "--grid LORA_RANKS '[4': it looks like a Python literal (a list, number or "
                                            "quoted string) but is not valid Python ('[' was never closed). Fix: write"),
    (["-p", "LR", "1e-3.5"], "-p LR '1e-3.5': it looks like a Python literal"),
])
def test_values_the_notebook_would_refuse_are_refused_before_anything_runs(tmp_path, monkeypatch, capsys, argv, match):
    calls: list = []
    monkeypatch.setattr(S, "_default_runner", fake_runner(calls))
    notebook = _other_notebook(tmp_path, "ablation.ipynb", cell="LORA_RANKS = [1]\nSEEDS = [0]\nLR = 1e-3\nEPOCHS = 2")
    out = tmp_path / "out"
    assert sweep_cli.main([str(notebook), "--ranks", "4", *argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert match in err and err.startswith("python -m utils.cli.sweep: error: ") and "Traceback" not in err, err
    assert calls == [] and not out.exists()  # nothing ran, no folder made


def test_a_qa_notebook_s_values_are_resolved_as_it_resolves_them(tmp_path):
    """Notebook 04 reads its settings with QAConfig.from_namespace: each point is resolved that way up front (the
    constants, SETTINGS, the preset), so a value it would refuse in its settings cell stops the sweep at once."""
    notebooks = REPO_ROOT / "notebooks"
    nb04 = notebooks / "04_phi2_qlora_training.ipynb"
    with pytest.raises(InputError, match=re.escape("grid point 2 {'LEARNING_RATE': -0.0001} of 04_phi2_qlora_training.ipynb: "
                                                   "LEARNING_RATE (--learning-rate): learning_rate must be > 0, got -0.0001")):
        S.check_sweep(nb04, [{"LEARNING_RATE": 1e-3}, {"LEARNING_RATE": -1e-4}], tmp_path / "a")
    with pytest.raises(InputError, match=re.escape("BATCH_SIZE (--batch-size): batch_size must be a positive integer, got 0")):
        S.check_sweep(nb04, [{"SETTINGS": {"batch_size": 0}}], tmp_path / "b")
    with pytest.raises(InputError, match=re.escape("LOGGING_STEPS (--logging-steps): logging_steps=4 is more than max_steps=2")):
        S.check_sweep(nb04, [{"MAX_STEPS": 2, "SETTINGS": {"logging_steps": 4}}], tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")
    assert len(S.check_sweep(nb04, [{"MAX_STEPS": 4}, {"MAX_STEPS": 8}], tmp_path / "d").ids) == 2
