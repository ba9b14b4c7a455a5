"""The Google Colab set-up every notebook's first cell calls: install what Colab lacks, at the tested versions.

Standard library only (it runs before anything is installed). Colab keeps its own torch, numpy and pandas;
the packages the lessons depend on are pinned to ``requirements-lock.txt`` (:func:`utils.lock.colab_requirements`).
"""

from __future__ import annotations

import subprocess
import sys

from utils.lock import COLAB_NODEPS, colab_requirements


def setup() -> list[str]:
    """``pip install`` the tested versions of the course's packages into this runtime; returns what it asked for.

    Raises:
        subprocess.CalledProcessError: pip failed (its output above says why; re-run the cell, or
            Runtime > Restart session and run it again).
    """
    requirements = colab_requirements()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *requirements], check=True)
    nodeps = colab_requirements(packages=COLAB_NODEPS)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *nodeps], check=True)
    return requirements + nodeps
