"""utils.qa.run_folder: the adapter saved with its settings and loaded back exactly, a clear error where there is
none, and nothing an earlier run wrote lost (overwrite, resume, checkpoints kept apart)."""

from __future__ import annotations

import re

import pytest
import torch
from tiny_qa import lora_model

from utils.models import bnb_4bit_config
from utils.models.adapters import load_adapter
from utils.qa import collate, run_folder
from utils.qa.config import QAConfig, read_params


def test_adapter_save_then_load_gives_identical_logits(base, features, tmp_path):
    model = lora_model(base[0]).eval()
    config = QAConfig.resolve("smoke", model_id=str(base[0]), lora_rank=4, lora_alpha=8)
    run_folder.save_adapter(model, base[1], tmp_path / "adapter", config, {"steps": 0})
    assert run_folder.read_training_params(tmp_path / "adapter") == (config, {"steps": 0})
    reloaded = load_adapter(base[0], tmp_path / "adapter", bnb_4bit_config())
    batch = collate.sample_batch(features, 3)
    batch.pop("labels")
    with torch.no_grad():
        assert torch.equal(model(**batch, use_cache=False).logits, reloaded(**batch, use_cache=False).logits)


def test_missing_adapter_tells_to_run_notebook_04(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebook 04"):
        run_folder.read_training_params(tmp_path / "nothing-here")


def test_overwrite_clears_the_earlier_runs_checkpoints_and_a_resume_compares_the_recorded_settings(tmp_path):
    """--overwrite: the old checkpoints go before the new run writes its own (the Trainer's rotation keeps the highest
    step numbers: an old checkpoint-100 would outlive the new run's and be what a later --resume picks up). The
    settings recorded next to the checkpoints are what --resume is checked against. Also notebook 04's layout, with
    the checkpoints in a folder of their own (``checkpoints=``)."""
    config = QAConfig.resolve("smoke")
    old = tmp_path / "run" / run_folder.CHECKPOINTS / "checkpoint-100"
    old.mkdir(parents=True)
    (old / "trainer_state.json").write_text("{}")
    with pytest.raises(run_folder.OutputExistsError, match=r"\(checkpoints/checkpoint-100\)"):
        run_folder.check_output_dir(tmp_path / "run", config)
    assert run_folder.check_output_dir(tmp_path / "run", config, resume=True) == old  # no settings recorded: old run
    assert run_folder.check_output_dir(tmp_path / "run", config, overwrite=True) is None
    run_folder.start_run(tmp_path / "run" / run_folder.CHECKPOINTS, config, overwrite=True, profile="smoke")
    assert not old.exists() and run_folder.last_checkpoint(tmp_path / "run" / run_folder.CHECKPOINTS) is None
    assert read_params(tmp_path / "run" / run_folder.CHECKPOINTS) == (config, {"profile": "smoke",
                                                                           "state": "checkpoints of this run"})
    apart = tmp_path / "ckpt" / "checkpoint-4"
    apart.mkdir(parents=True)
    (apart / "trainer_state.json").write_text("{}")
    with pytest.raises(run_folder.OutputExistsError, match=re.escape(f"earlier run ({apart})")):
        run_folder.check_output_dir(tmp_path / "adapter", config, checkpoints=tmp_path / "ckpt")
    assert run_folder.check_output_dir(tmp_path / "adapter", config, checkpoints=tmp_path / "ckpt", resume=True) == apart
