"""A QA training run's folder: what a run writes there, and the checks that nothing in it is lost.

A finished run's folder holds the LoRA adapter (``adapter_config.json``, ``adapter_model.safetensors``), the
tokenizer and ``training_params.json`` (:func:`save_adapter`, :data:`RESULT_FILES`); while it trains, the Trainer's
checkpoints go to ``<folder>/checkpoints`` (:data:`CHECKPOINTS`; notebook 04 keeps them in a folder of their own)
with the settings they are written with (:func:`start_run`). :func:`check_output_dir` runs before anything is
loaded: an earlier run's results are overwritten only when asked, and a resumed run continues the same settings.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.errors import InputError, input_error
from utils.qa.config import PARAMS_FILE, QAConfig, read_params, save_params

if TYPE_CHECKING:
    import torch


class OutputExistsError(InputError, FileExistsError):
    """An output folder holds results that a run would overwrite (or checkpoints it cannot continue from). An
    :class:`~utils.errors.InputError` and a ``FileExistsError``."""


CHECKPOINTS = "checkpoints"  # train_qa's Trainer checkpoints, under its output folder
RESULT_FILES = ("adapter_config.json", "adapter_model.safetensors", PARAMS_FILE)  # what save_adapter writes
RESUMABLE_CHANGES = ("max_steps", "logging_steps", "save_steps")  # settings a resumed run may change


def save_adapter(model: torch.nn.Module, tokenizer: Any, folder: str | Path, config: QAConfig,
                 run: Mapping[str, Any]) -> Path:
    """Save the LoRA adapter of ``model`` (a peft model: weights + ``adapter_config.json``), the tokenizer and
    ``training_params.json`` (the :class:`~utils.qa.config.QAConfig` it was trained with and ``run``: what the run
    measured) in ``folder``; returns it. :func:`utils.models.adapters.load_adapter` loads it back."""
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_params(folder, config, run)
    return folder


def read_training_params(folder: str | Path) -> tuple[QAConfig, dict[str, Any]]:
    """``(config, run)`` that notebook 04 or ``python -m utils.cli.finetune`` saved next to the adapter; a clear
    error if there is no adapter (see :func:`utils.qa.config.read_params`)."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"No trained adapter in {folder}: run notebook 04 (04_phi2_qlora_training.ipynb) or "
            "`python -m utils.cli.finetune --output-dir ...` first, with the same QLORA_OUTPUT_DIR, or set "
            "notebook 05's ADAPTER (the demo's --adapter) to the folder they wrote.")
    return read_params(folder)


def last_checkpoint(folder: str | Path) -> Path | None:
    """The newest ``checkpoint-<step>`` folder (with its ``trainer_state.json``) in ``folder``, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    steps = [(int(p.name.split("-", 1)[1]), p) for p in folder.glob("checkpoint-*")
             if p.name.split("-", 1)[1].isdigit() and (p / "trainer_state.json").is_file()]
    return max(steps)[1] if steps else None


def _check_writable(out: Path) -> None:
    """Create ``out`` (and its parents) and write a probe file there, or raise InputError saying why not."""
    if out.exists() and not out.is_dir():
        raise input_error(f"--output-dir {out}", "it is a file, not a folder",
                          "choose a folder (it is created if missing), e.g. outputs/phi-2-qa-adapter")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise input_error(f"--output-dir {out}", f"it cannot be created or written to ({err.strerror or err})",
                          "choose a folder you can write to (check that no part of the path is a file, and its "
                          "permissions)") from None


def check_output_dir(output_dir: str | Path, config: QAConfig, *, resume: bool = False, overwrite: bool = False,
                     checkpoints: str | Path | None = None) -> Path | None:
    """Check ``output_dir`` for a run of ``config`` before anything is loaded (and create it): nothing a run wrote
    there before is overwritten unless asked, and a resumed run continues the same settings.

    Args:
        checkpoints: the Trainer's checkpoint folder (default ``output_dir/checkpoints``, :func:`utils.qa.training.train_qa`'s; notebook
            04 keeps them apart, in ``CHECKPOINT_DIR``).

    Returns:
        the checkpoint to resume from (with ``resume``), else None.

    Raises:
        InputError: ``resume`` and ``overwrite`` both set; ``output_dir`` (or ``checkpoints``) is a file, or cannot
            be created or written to; with ``resume``, no checkpoint in ``checkpoints`` or one written with other
            settings (only max_steps, logging_steps and save_steps may change).
        OutputExistsError: without ``resume`` or ``overwrite``, ``output_dir`` holds an adapter or a
            training_params.json, or ``checkpoints`` a checkpoint, of an earlier run (an InputError and a
            FileExistsError).
    """
    out = Path(output_dir).expanduser()
    checkpoints = out / CHECKPOINTS if checkpoints is None else Path(checkpoints).expanduser()
    if not isinstance(resume, bool) or not isinstance(overwrite, bool):
        raise input_error("resume / overwrite", f"must be True or False, got {resume!r} and {overwrite!r}",
                          "pass booleans (--resume, --overwrite on the command line)")
    if resume and overwrite:
        raise input_error("--resume and --overwrite", "both were given: --resume continues the run in "
                          f"{out}, --overwrite starts it again", "pass one of them")
    _check_writable(out)
    _check_writable(checkpoints)
    checkpoint = last_checkpoint(checkpoints)
    if resume:
        if checkpoint is None:
            raise input_error("--resume", f"there is no checkpoint to resume from in {checkpoints}",
                              f"drop --resume to start a new run there (checkpoints are written every save_steps="
                              f"{config.save_steps} steps), or point --output-dir at the run to continue")
        for folder in (checkpoints, out):  # the settings the checkpoints were written with, else the adapter's
            if (folder / PARAMS_FILE).is_file():
                stored, _ = read_params(folder)
                differ = {k: [getattr(stored, k), getattr(config, k)] for k in QAConfig.field_names()
                          if k not in RESUMABLE_CHANGES and getattr(stored, k) != getattr(config, k)}
                if differ:
                    raise input_error("--resume", f"the checkpoints in {checkpoints} were written with other "
                                      f"settings (stored, given: {differ}); only {list(RESUMABLE_CHANGES)} may change "
                                      "when a run is resumed", f"resume with the stored settings "
                                      f"({folder / PARAMS_FILE}), or start a new run with --overwrite or another "
                                      "--output-dir")
                break
        return checkpoint
    earlier = [name for name in RESULT_FILES if (out / name).exists()]
    if checkpoint is not None:
        earlier.append(str(checkpoint.relative_to(out)) if checkpoint.is_relative_to(out) else str(checkpoint))
    if earlier and not overwrite:
        raise OutputExistsError(*input_error(
            f"--output-dir {out}", f"it holds the results of an earlier run ({', '.join(earlier)}), which this run "
            "would overwrite", "pass --overwrite (overwrite=True) to replace them, --resume (resume=True) to continue "
            "that run from its last checkpoint, or choose another --output-dir").args)
    return None


def start_run(checkpoints: str | Path, config: QAConfig, *, overwrite: bool = False, **run_info: Any) -> None:
    """What a run does once :func:`check_output_dir` let it start, in the main process only: with ``overwrite``
    delete the earlier run's checkpoints (else the Trainer's rotation, which keeps the highest step numbers, could
    keep the old run's and delete the new run's), then record ``config`` next to the checkpoints (the settings a
    later ``resume`` is compared with)."""
    checkpoints = Path(checkpoints)
    if overwrite and checkpoints.is_dir():
        shutil.rmtree(checkpoints)
    save_params(checkpoints, config, {**run_info, "state": "checkpoints of this run"})
