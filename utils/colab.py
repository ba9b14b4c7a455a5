"""The Google Colab set-up every notebook's first cell calls: install what Colab lacks, at the tested versions.

Standard library only (it runs before anything is installed). Colab keeps its own torch, numpy and pandas;
of the packages the lessons depend on (:func:`utils.lock.colab_requirements`), :func:`setup` installs only
those that are missing or whose installed release is not compatible with ``requirements-lock.txt`` (another
major or minor version), then compares what it got with the tested versions and prints one warning line per
difference. ``QLORA_COLAB_DRY_RUN=1`` prints the pip commands instead of running them (the tests use it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

from utils.lock import COLAB_NODEPS, COURSE_PACKAGES, colab_requirements, locked_versions

# what a version other than the tested one may break, per package the version check compares
MAY_BREAK = {
    "transformers": "model loading, the Trainer's arguments and prompt templates (04-06)",
    "peft": "the LoRA layers, adapter saving and merging (03-06)",
    "bitsandbytes": "the 4-bit layers and the byte-level checks against them (01-04)",
    "accelerate": "device placement and training (03-06)",
    "datasets": "loading and mapping the training data (04-06)",
}


def installed_version(package: str) -> str | None:
    """The installed version of distribution ``package`` (local label dropped), or None."""
    try:
        return metadata.version(package).split("+", 1)[0]
    except metadata.PackageNotFoundError:
        return None


def compatible(installed: str | None, tested: str) -> bool:
    """Whether ``installed`` is the tested release line: same major and minor version (a patch release only
    fixes bugs); a missing package is not."""
    return installed is not None and installed.split(".")[:2] == tested.split("+", 1)[0].split(".")[:2]


def missing_requirements(requirements: list[str]) -> list[str]:
    """The ``name==version`` pins whose package is not installed, or installed at an incompatible version."""
    return [pin for pin in requirements if not compatible(installed_version(pin.split("==")[0]), pin.split("==")[1])]


def _pip(args: list[str], dry_run: bool) -> None:
    command = [sys.executable, "-m", "pip", "install", "-q", *args]
    if dry_run:
        print("dry run, would run:", " ".join(command), flush=True)
    else:
        subprocess.run(command, check=True)


def version_report(packages: tuple[str, ...] = COURSE_PACKAGES) -> list[str]:
    """One line per course package whose installed version is not the tested one (what may break, how to
    pin), then torch's version: Colab's own, kept on purpose."""
    tested = locked_versions()
    lines = []
    for package in packages:
        want = tested[package]
        got = installed_version(package)
        if got != want.split("+", 1)[0]:
            lines.append(f"WARNING: {package} {got or 'not installed'} is installed, the course was tested with "
                         f"{want}: {MAY_BREAK.get(package, 'the lessons using it')} may fail or differ. Pin it with "
                         f"`!pip install {package}=={want}`, then Runtime > Restart session.")
    torch = installed_version("torch")
    lines.append(f"torch {torch or 'not installed'} (Colab's own, kept on purpose; the course was tested with "
                 f"{tested.get('torch', '?')})")
    return lines


def setup(dry_run: bool | None = None) -> list[str]:
    """Install what this runtime lacks of the course's packages, at their tested versions, then print the
    version check; returns the pins it installed (or, dry run, would have).

    Args:
        dry_run: print the pip commands instead of running them; default ``$QLORA_COLAB_DRY_RUN == "1"``.

    Raises:
        subprocess.CalledProcessError: pip failed (its output above says why; re-run the cell, or
            Runtime > Restart session and run it again).
    """
    if dry_run is None:
        dry_run = os.environ.get("QLORA_COLAB_DRY_RUN") == "1"
    requirements = missing_requirements(colab_requirements())
    nodeps = missing_requirements(colab_requirements(packages=COLAB_NODEPS))
    if requirements:
        _pip(requirements, dry_run)
    if nodeps:
        _pip(["--no-deps", *nodeps], dry_run)
    installed = requirements + nodeps
    print(f"Colab set-up: installed {', '.join(installed)}" if installed else
          "Colab set-up: every package the course needs is already installed", flush=True)
    for line in version_report():
        print(line, flush=True)
    return installed
