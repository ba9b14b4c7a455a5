"""utils.train_qa: notebook 04's training as a command, in one process and data-parallel (torchrun/DDP)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from utils import tiny_phi, train_qa
from utils.report import REPO_ROOT

DATA = [REPO_ROOT / "data/qa/train.json", REPO_ROOT / "data/qa/validation.json"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", DATA, seed=0, vocab_size=512,
                                    hidden_size=64, intermediate_size=256)


def _args(model, out, steps=4):
    return ["--model", str(model), "--dataset", str(DATA[0]), "--train-size", "64", "--max-length", "128",
            "--steps", str(steps), "--batch-size", "4", "--learning-rate", "5e-3", "--output-dir", str(out)]


def test_one_process_trains_and_saves_the_adapter_for_notebook_05(tiny, tmp_path):
    summary = train_qa.main(_args(tiny, tmp_path / "adapter"))
    params = json.loads((tmp_path / "adapter/training_params.json").read_text())
    assert summary["world_size"] == 1 and summary["steps"] == 4
    assert params["rank"] == 16 and params["model_id"] == str(tiny)
    assert (tmp_path / "adapter/adapter_model.safetensors").stat().st_size > 0


def test_data_parallel_over_two_processes(tiny, tmp_path):
    """torchrun (what `accelerate launch --multi_gpu` runs) with 2 CPU processes: DDP over gloo."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    run = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "utils.train_qa", *_args(tiny, tmp_path / "ddp", 6)],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    params = json.loads((tmp_path / "ddp/training_params.json").read_text())
    assert params["world_size"] == 2 and params["steps"] == 6
    assert params["losses"] and all(loss == loss for loss in params["losses"])  # logged, finite


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_qa.parse_args(["--output-dir", str(tmp_path), "--steps", "0"])
    assert "--steps, --batch-size and --grad-accum must be positive" in capsys.readouterr().err
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        train_qa.main(["--output-dir", str(tmp_path), "--rank", "0", "--model", "unused"])
