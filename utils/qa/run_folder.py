"""A QA training run's folder: what a run writes there, and the checks that nothing in it is lost.

A finished run's folder holds the LoRA adapter (``adapter_config.json``, ``adapter_model.safetensors``), the
tokenizer and ``training_params.json`` (:func:`save_adapter`, :data:`RESULT_FILES`); while it trains, the Trainer's
checkpoints go to ``<folder>/checkpoints`` (:data:`CHECKPOINTS`; notebook 04 keeps them in a folder of their own)
with the settings they are written with (:func:`start_run`). :func:`check_output_dir` runs before anything is
loaded: an earlier run's results are overwritten only when asked, and a resumed run continues the same settings.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
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
RESUMABLE_CHANGES = ("max_steps", "logging_steps", "save_steps", "offload_checkpoints")  # a resumed run may change these


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


def checkpoints_in(folder: str | Path) -> list[Path]:
    """The ``checkpoint-<step>`` folders (with their ``trainer_state.json``) in ``folder``, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    steps = [(int(p.name.split("-", 1)[1]), p) for p in folder.glob("checkpoint-*")
             if p.name.split("-", 1)[1].isdigit() and (p / "trainer_state.json").is_file()]
    return [p for _, p in sorted(steps)]


def last_checkpoint(folder: str | Path) -> Path | None:
    """The newest ``checkpoint-<step>`` folder (with its ``trainer_state.json``) in ``folder``, or None."""
    found = checkpoints_in(folder)
    return found[-1] if found else None


def checkpoint_step(checkpoint: str | Path) -> int:
    """The optimizer step a ``checkpoint-<step>`` folder was written at."""
    return int(Path(checkpoint).name.split("-", 1)[1])


def check_checkpoint(checkpoint: str | Path) -> None:
    """Check that a checkpoint the Trainer would resume from is whole, before anything is loaded: its
    ``trainer_state.json`` is JSON, every ``torch.save`` file in it (``optimizer.pt``, ``scheduler.pt``, the random
    states ``rng_state*.pth``, ``training_args.bin``...) is a complete archive whose contents match their checksums,
    and its adapter is whole (:func:`utils.models.adapters.check_adapter`). An interrupted write (a full disk, a
    runtime lost while saving) leaves such a file cut off; torch would fail on it only after the model is loaded.

    Raises:
        InputError: naming the checkpoint and the damaged file; the fix: delete that checkpoint folder (--resume then
            continues from the one before, if any) or start over with --overwrite.
    """
    from utils.models.adapters import ADAPTER_WEIGHTS, check_adapter

    checkpoint = Path(checkpoint)
    earlier = [p for p in checkpoints_in(checkpoint.parent) if p != checkpoint]
    fix = (f"delete that checkpoint folder (rm -r {checkpoint}); --resume then continues from "
           + (f"the one before, {earlier[-1].name}" if earlier else "the start (there is no earlier checkpoint)")
           + ", or start the run over with --overwrite (overwrite=True; notebook 04: RESUME = False)")

    def damaged(name: str, why: str) -> InputError:
        return input_error(f"--resume: checkpoint {checkpoint}", f"{name} is damaged: {why}", fix)

    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise damaged("trainer_state.json", f"it is not valid JSON ({err})") from None
    for path in sorted(checkpoint.iterdir()):
        if path.suffix not in (".pt", ".pth", ".bin") or not path.is_file():
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            size = path.stat().st_size
            raise damaged(path.name, f"it is truncated or not a file torch.save wrote ({size:,} bytes)") from None
        if bad is not None:
            raise damaged(path.name, f"its part {bad} does not match its checksum") from None
    if (checkpoint / ADAPTER_WEIGHTS).exists():
        try:
            check_adapter(checkpoint)
        except InputError as err:
            raise damaged("its adapter", str(err).split(". Fix: ")[0]) from None


def _check_writable(out: Path, flag: str = "--output-dir") -> None:
    """Check that ``out`` is a folder, or can be created, and can be written to, without creating it (a run that
    fails a later check leaves nothing behind): a temporary folder is made and removed in ``out``, or where it does
    not exist yet, in its nearest existing parent. Raises InputError saying why not."""
    if out.exists() and not out.is_dir():
        raise input_error(f"{flag} {out}", "it is a file, not a folder",
                          "choose a folder (it is created if missing), e.g. outputs/phi-2-qa-adapter")
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise NotADirectoryError(20, f"{parent} is a file, not a folder")
        with tempfile.TemporaryDirectory(dir=parent):
            pass
    except OSError as err:
        raise input_error(f"{flag} {out}", f"it cannot be created or written to ({err.strerror or err})",
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
            be created or written to (checked without creating them: a run refused here leaves no folder behind);
            with ``resume``, no checkpoint in ``checkpoints``, one written with other settings (only max_steps,
            logging_steps and save_steps may change), a run already at or past ``config.max_steps`` (the Trainer
            would take one more step at learning rate 0 and the record would say max_steps), or a damaged
            checkpoint (:func:`check_checkpoint`).
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
    _check_writable(checkpoints, "--output-dir" if checkpoints == out / CHECKPOINTS else "checkpoints (CHECKPOINT_DIR)")
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
        step = checkpoint_step(checkpoint)
        if config.max_steps <= step:
            raise input_error("--resume", f"the run in {checkpoints} is already at step {step} (its newest "
                              f"checkpoint, {checkpoint.name}), and max_steps={config.max_steps} would train it no "
                              "further (the Trainer would take one more step at learning rate 0, and the adapter "
                              f"would be recorded as a run of {config.max_steps} steps)",
                              f"to train it further, resume with a larger --max-steps (notebook 04: MAX_STEPS), e.g. "
                              f"--max-steps {2 * step}; to train a new run of {config.max_steps} steps, drop --resume "
                              "and pass --overwrite (notebook 04: RESUME = False) or another --output-dir")
        check_checkpoint(checkpoint)
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
