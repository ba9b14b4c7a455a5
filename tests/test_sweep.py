"""utils.experiments.sweep: the grid, skipping, failure handling and the combined table, on a tiny notebook."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nbformat
import pytest

from utils.cli import sweep as sweep_cli
from utils.experiments import sweep as S

TINY_SOURCE = '''
from utils.report import save_results

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


@pytest.mark.parametrize("argv,match", [(["--ranks", "0", "4"], "positive integers"),
                                        (["--grid", "lora_ranks", "[4]"], "UPPER_CASE"),
                                        (["--grid", "LORA_RANKS"], "at least one value"),
                                        (["--ranks", "4", "--grid", "LORA_RANKS", "[8]"], "not both"),
                                        (["--grid", "SEEDS", "[0]", "-p", "SEEDS", "[1]"], "choose one")])
def test_bad_command_lines_are_clear_errors(tiny_notebook, argv, match, capsys):
    with pytest.raises(SystemExit):
        sweep_cli.parse_args([str(tiny_notebook), *argv])
    assert match in capsys.readouterr().err


def test_missing_notebook_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebook at"):
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
    summary = S.summarise(result.rows)
    assert [(e["rank"], e["n_seeds"]) for e in summary] == [(1, 2), (4, 2)]
    assert summary[1]["accuracy_mean"] == pytest.approx(0.5405) and summary[1]["accuracy_std"] == pytest.approx(
        0.000707107, rel=1e-5)
    assert result.files["plot"].stat().st_size > 10_000
    # second call: the finished runs are skipped, the failed one is tried again
    calls.clear()
    again = S.run_sweep(tiny_notebook, points, tmp_path / "out", runner=fake_runner(calls))
    assert len(calls) == 1 and again.skipped == [S.run_id(points[0]), S.run_id(points[2])]
    assert len(again.rows) == 4
    calls.clear()
    S.run_sweep(tiny_notebook, points[:1], tmp_path / "out", force=True, runner=fake_runner(calls))
    assert calls == [points[0]]


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
