"""The run profile, chosen in exactly one place: the ``QLORA_PROFILE`` environment variable.

``smoke``  CPU, offline, minutes: small models and the project's own data (what CI runs).
``full``   a CUDA GPU and the Hugging Face Hub: real Phi-2 and real datasets.

Unset (or ``auto``), the profile is ``full`` when a CUDA GPU is visible and ``smoke`` otherwise.
Asking for ``full`` on a machine without a GPU is an error: it would crawl for days on the CPU.
Notebooks read the profile once, in their ``parameters`` cell, and derive every default from it.
"""

from __future__ import annotations

import os
import platform
import warnings
from importlib import metadata

import torch

from utils.lock import untested_versions

ENV_VAR = "QLORA_PROFILE"
PROFILES = ("smoke", "full")


def get_profile(value: str | None = None) -> str:
    """Return ``"smoke"`` or ``"full"``.

    Args:
        value: the requested profile; ``None`` reads ``$QLORA_PROFILE`` (default ``"auto"``).

    Raises:
        ValueError: the value is not ``smoke``, ``full`` or ``auto``.
        RuntimeError: ``full`` was asked for but no CUDA GPU is visible.
    """
    raw = os.environ.get(ENV_VAR, "auto") if value is None else value
    requested = raw.strip().lower() or "auto"
    if requested == "auto":
        return "full" if torch.cuda.is_available() else "smoke"
    if requested not in PROFILES:
        raise ValueError(
            f"{ENV_VAR}={raw!r} is not a profile. Use one of {PROFILES} or 'auto' "
            f"(e.g. `export {ENV_VAR}=smoke`)."
        )
    if requested == "full" and not torch.cuda.is_available():
        raise RuntimeError(
            f"{ENV_VAR}=full needs a CUDA GPU (4-bit Phi-2 training on a CPU would take days) but "
            "torch sees none. On Colab choose Runtime > Change runtime type > T4 GPU; elsewhere "
            f"check `nvidia-smi` and your CUDA build of torch, or run `{ENV_VAR}=smoke` to execute "
            "the course on the CPU with small models."
        )
    return requested


def environment_report() -> dict[str, str]:
    """Versions of the libraries the course depends on, and the device notebooks will use.

    Warns (once, naming each package) where an installed version is not the one in ``requirements-lock.txt``:
    the lessons' numbers and assertions were checked with the locked versions only. torch is reported but
    not compared: Colab keeps its own build on purpose.
    """
    report = {"python": platform.python_version()}
    for package in ("torch", "transformers", "peft", "bitsandbytes", "datasets", "accelerate"):
        try:
            report[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            report[package] = "not installed"
    differ = untested_versions()
    report["tested versions"] = "yes" if not differ else "no: " + ", ".join(
        f"{p} {installed} (tested {tested})" for p, (installed, tested) in differ.items())
    if differ:
        warnings.warn(f"Not the versions this course was tested with: {report['tested versions']}. Lessons may "
                      "fail or show other numbers; `./run.sh course` (or the Colab set-up cell) installs the "
                      "tested ones from requirements-lock.txt.", stacklevel=2)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        report["device"] = f"cuda: {props.name}, {props.total_memory / 2**30:.1f} GiB"
        report["bf16"] = str(torch.cuda.is_bf16_supported())
    else:
        report["device"] = f"cpu: {os.cpu_count()} cores"
    report["profile"] = get_profile()
    return report
