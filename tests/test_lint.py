"""ruff over the package, the tests and the notebooks."""

from __future__ import annotations

import subprocess
import sys

from utils.paths import REPO_ROOT


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
