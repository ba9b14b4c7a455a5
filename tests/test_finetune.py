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


def test_resume_trains_further_only_and_the_record_counts_every_leg(tiny, tmp_path, capsys):
    """A finished run at step 4 (checkpoints 2 and 4): --resume with --max-steps 4 or 2 is refused before anything
    loads (it used to train a 5th step at learning rate 0 and record max_steps 2 for 4 trained steps), and so is a
    checkpoint whose optimizer.pt was cut off (torch failed on it after the model loaded); --max-steps 6 trains steps
    5-6, and the record's seconds add up both legs (seconds_per_leg)."""
    out = tmp_path / "run"
    first = finetune.main([*_args(tiny, out, steps=4), "--save-steps", "2"])
    assert first["steps"] == 4 and first["seconds_per_leg"] == [first["seconds"]] and first["seconds"] > 0
    record = (out / "training_params.json").read_text()
    for steps in (4, 2):
        with pytest.raises(SystemExit) as exit_info:
            finetune.main([*_args(tiny, out, steps=steps), "--save-steps", "2", "--resume"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "Traceback" not in err, err
        assert (f"--resume: the run in {out / 'checkpoints'} is already at step 4 (its newest checkpoint, checkpoint-4), "
                f"and max_steps={steps} would train it no further") in err
        assert "Fix: to train it further, resume with a larger --max-steps (notebook 04: MAX_STEPS), e.g. --max-steps 8" in err
    assert (out / "training_params.json").read_text() == record  # nothing rewritten

    optimizer = out / "checkpoints/checkpoint-4/optimizer.pt"
    whole = optimizer.read_bytes()
    optimizer.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SystemExit):
        finetune.main([*_args(tiny, out, steps=6), "--save-steps", "2", "--resume"])
    err = capsys.readouterr().err
    assert (f"--resume: checkpoint {out / 'checkpoints/checkpoint-4'}: optimizer.pt is damaged: it is truncated or not "
            "a file torch.save wrote") in err
    assert "Fix: delete that checkpoint folder (rm -r" in err and "the one before, checkpoint-2" in err and "--overwrite" in err
    optimizer.write_bytes(whole)

    resumed = finetune.main([*_args(tiny, out, steps=6), "--save-steps", "2", "--resume"])
    config, saved = read_training_params(out)
    assert config.max_steps == 6 and saved["steps"] == resumed["steps"] == 6 and len(saved["losses"]) == 6
    legs = saved["seconds_per_leg"]
    assert len(legs) == 2 and all(leg > 0 for leg in legs) and saved["seconds"] == pytest.approx(sum(legs))
    assert legs[0] <= first["seconds"]  # the first leg as checkpoint-4 recorded it: up to that checkpoint


def test_a_dataset_json_holding_a_list_of_records_trains(tiny, tmp_path):
    """A .json file whose top level is a list of records (what the Hub's datasets export) is read as records, as a
    .jsonl file would be (it was refused with "name it .jsonl", which then failed on the list's first line)."""
    import json

    from utils.qa.data import load_qa_split, load_squad_json

    records = load_qa_split(DATA[0], limit=8)
    listed = tmp_path / "my_qa.json"
    listed.write_text(json.dumps(records, indent=1))
    args = _args(tiny, tmp_path / "adapter", steps=1)
    args[args.index("--dataset") + 1] = str(listed)
    run = finetune.main(args)
    assert run["steps"] == 1 and run["examples"]["examples"] == 8
    assert load_qa_split(listed) == records
    with pytest.raises(ValueError, match=r"my_qa\.json: is not SQuAD v1\.1 JSON: the top level is a list \(8 item\(s\)\).*"
                                         r"Fix: as a dataset \(DATASET / --dataset, load_qa_split\) a \.json list of records"):
        load_squad_json(listed)
    listed.write_text(json.dumps([records[0], "not a record"]))
    with pytest.raises(ValueError, match=r"my_qa\.json: item 1 of the list is a string, not a record with fields"):
        load_qa_split(listed)
