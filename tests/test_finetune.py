"""utils.cli.finetune: notebook 04's training as a command, in one process and data-parallel (torchrun/DDP)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from utils.cli import finetune
from utils.models import tiny_phi
from utils.models.architectures import ARCHITECTURES
from utils.paths import REPO_ROOT
from utils.qa.config import QAConfig
from utils.qa.data import qa_texts
from utils.qa.run_folder import read_training_params

DATA = [REPO_ROOT / "data/qa/train.json", REPO_ROOT / "data/qa/validation.json"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", qa_texts(*DATA), seed=0, vocab_size=512,
                                    hidden_size=64, intermediate_size=256)


def _args(model, out, steps=4):
    return ["--model-id", str(model), "--target-modules", *ARCHITECTURES["phi"].lora_targets,
            "--dataset", str(DATA[0]), "--train-size", "64", "--max-length", "128",
            "--max-steps", str(steps), "--batch-size", "4", "--learning-rate", "5e-3", "--output-dir", str(out)]


def test_every_setting_is_a_flag_with_its_help():
    parser = finetune.build_parser()
    flags = {a.dest: a for a in parser._actions}
    for name in QAConfig.field_names():
        assert name in flags and flags[name].default is None and flags[name].help, name
    assert flags["target_modules"].nargs == "+"


def test_one_process_trains_and_saves_the_adapter_for_notebook_05(tiny, tmp_path):
    run = finetune.main(_args(tiny, tmp_path / "adapter"))
    config, saved_run = read_training_params(tmp_path / "adapter")
    assert run["world_size"] == 1 and run["steps"] == 4 and saved_run["steps"] == 4
    assert config.model_id == str(tiny) and config.max_steps == 4 and config.lora_rank == QAConfig().lora_rank
    assert (tmp_path / "adapter/adapter_model.safetensors").stat().st_size > 0


def test_data_parallel_over_two_processes(tiny, tmp_path):
    """torchrun (what `accelerate launch --multi_gpu` runs) with 2 CPU processes: DDP over gloo."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    run = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "utils.cli.finetune",
                          *_args(tiny, tmp_path / "ddp", 6)],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    _, saved = read_training_params(tmp_path / "ddp")
    assert saved["world_size"] == 2 and saved["steps"] == 6
    assert saved["losses"] and all(loss == loss for loss in saved["losses"])  # logged, finite


def test_a_preset_fills_only_what_the_command_line_did_not_set(tmp_path):
    _, config = finetune.parse_args(["--preset", "assignment", "--lora-rank", "8", "--output-dir", str(tmp_path)])
    assert config.lora_rank == 8 and config.lora_alpha == 16 and config.max_steps == 500  # 8 yours, rest preset
    _, config = finetune.parse_args(["--target-modules", "q_proj", "fc2", "--answer-logits-only", "False",
                                     "--output-dir", str(tmp_path)])
    assert config.target_modules == ("q_proj", "fc2") and config.answer_logits_only is False


@pytest.mark.parametrize("argv,message", [
    (["--max-steps", "0"], "max_steps must be a positive integer, got 0"),
    (["--lora-rank", "0"], "lora_rank must be a positive integer, got 0"),
    (["--lora-rank", "8.5"], "lora_rank must be an integer, got 8.5"),
    (["--precision", "fp8"], "precision must be one of"),
    (["--preset", "mine"], "invalid choice: 'mine'"),
])
def test_bad_arguments_are_usage_errors_that_name_the_setting(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        finetune.parse_args([*argv, "--output-dir", str(tmp_path)])
    assert message in capsys.readouterr().err


def test_the_real_offline_set_is_a_dataset_choice_of_the_command(tiny, tmp_path):
    """--dataset disfl-qa trains on the real passages (data/disfl_qa/train.json), recorded as that file."""
    args = _args(tiny, tmp_path / "adapter", steps=1)
    args[args.index("--dataset") + 1] = "disfl-qa"
    args[args.index("--max-length") + 1] = "384"  # real passages are longer than the course's
    args[args.index("--train-size") + 1] = "8"
    finetune.main(args)
    config, run = read_training_params(tmp_path / "adapter")
    assert config.dataset == str(REPO_ROOT / "data/disfl_qa/train.json") and run["examples"]["examples"] == 8
