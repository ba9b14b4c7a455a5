"""utils.qa.run_folder: the adapter saved with its settings and loaded back exactly, a clear error where there is
none, and nothing an earlier run wrote lost (overwrite, resume, checkpoints kept apart)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from tiny_qa import lora_model

from utils.errors import InputError
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
    config = QAConfig.resolve("smoke", max_steps=200)  # past the old run's step 100: a resume trains further
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


def _checkpoint(folder, step):
    """A checkpoint folder as the Trainer writes one: its state, and torch.save files (an optimizer, random states)."""
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    torch.save({"state": {0: torch.arange(4096.0)}}, checkpoint / "optimizer.pt")
    torch.save({"python": 1}, checkpoint / "rng_state.pth")
    return checkpoint


@pytest.mark.parametrize("damage,match", [
    (lambda c: (c / "optimizer.pt").write_bytes((c / "optimizer.pt").read_bytes()[:5000]),
     r"optimizer\.pt is damaged: it is truncated or not a file torch\.save wrote \(5,000 bytes\)"),
    (lambda c: (c / "rng_state.pth").write_bytes(b""), r"rng_state\.pth is damaged: it is truncated or not a file torch\.save wrote \(0 bytes\)"),
    (lambda c: (c / "optimizer.pt").write_bytes(_flip_a_byte((c / "optimizer.pt").read_bytes())),
     r"optimizer\.pt is damaged: its part .* does not match its checksum"),
    (lambda c: (c / "trainer_state.json").write_text('{"global_step": 4, "log_hi'),
     r"trainer_state\.json is damaged: it is not valid JSON \(Unterminated string.*\)"),
])
def test_a_damaged_last_checkpoint_is_refused_before_resuming(tmp_path, damage, match):
    """A checkpoint cut off while it was written (a full disk, a lost runtime) failed inside torch after the model had
    loaded; --resume (check_output_dir, which notebook 04's RESUME calls too) now names the checkpoint and the file,
    and says to delete that checkpoint (the one before is used) or start over."""
    config = QAConfig.resolve("smoke", max_steps=8)
    _checkpoint(tmp_path / "run/checkpoints", 2)
    last = _checkpoint(tmp_path / "run/checkpoints", 4)
    assert run_folder.check_output_dir(tmp_path / "run", config, resume=True) == last  # whole: resumed from it
    damage(last)
    with pytest.raises(InputError, match=rf"^--resume: checkpoint {re.escape(str(last))}: {match}\. Fix: delete that "
                                         rf"checkpoint folder \(rm -r {re.escape(str(last))}\); --resume then continues "
                                         r"from the one before, checkpoint-2, or start the run over with --overwrite"):
        run_folder.check_output_dir(tmp_path / "run", config, resume=True)
    shutil.rmtree(last)  # what the message says: the checkpoint before is used
    assert run_folder.check_output_dir(tmp_path / "run", config, resume=True).name == "checkpoint-2"


def _flip_a_byte(data: bytes) -> bytes:
    data = bytearray(data)
    data[len(data) // 2] ^= 0xFF  # inside the tensor's bytes: the archive stays readable, its checksum fails
    return bytes(data)


def test_resuming_a_run_to_a_step_it_has_passed_is_refused(tmp_path):
    """--resume with max_steps at or below the newest checkpoint's step (the run is already there): the Trainer took
    one more step at learning rate 0 and the record said max_steps for an adapter trained longer."""
    _checkpoint(tmp_path / "run/checkpoints", 12)
    for steps in (4, 12):
        with pytest.raises(InputError, match=rf"^--resume: the run in .*checkpoints is already at step 12 \(its newest "
                                             rf"checkpoint, checkpoint-12\), and max_steps={steps} would train it no "
                                             r"further.*Fix: to train it further, resume with a larger --max-steps"):
            run_folder.check_output_dir(tmp_path / "run", QAConfig.resolve("smoke", max_steps=steps), resume=True)
    assert run_folder.check_output_dir(tmp_path / "run", QAConfig.resolve("smoke", max_steps=13), resume=True)
