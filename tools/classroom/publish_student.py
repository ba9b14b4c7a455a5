"""Push a release's student folder to the repository students clone (a repository or branch of its own).

    python -m tools.classroom publish OUT/student --push-to git@github.com:TEACHER/qlora-assignments.git [--branch main]

The student folder becomes one new commit on ``--branch`` of ``--push-to`` (on top of what the branch holds: a
normal push, never a forced one), so the branch holds the student notebooks, their public tests and the course code
and nothing else: no instructor notebook, answer key or test of the course. Give the same repository and branch as
``release --repo/--branch``, so that the notebooks' Colab cells clone it. The push refuses a folder that is not a
student release or that holds a solution (:func:`tools.classroom.release.leaked_solutions`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from utils.errors import input_error
from utils.notebooks import course_notebooks


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def publish(student: Path, push_to: str, branch: str = "main", message: str = "Release the assignments") -> str:
    """Commit ``student`` on ``branch`` of ``push_to`` and push; returns the new commit's hash."""
    from tools.classroom.release import leaked_solutions

    if not (student / "notebooks").is_dir() or not (student / "publish.json").is_file():
        raise input_error(str(student), "is not a student release (notebooks/ and publish.json)",
                          "give OUT/student of `python -m tools.classroom release OUT`")
    leaks = leaked_solutions(student, course_notebooks())
    if leaks:
        raise input_error(str(student), "holds solutions: " + "; ".join(leaks[:5]), "build the release again")
    with tempfile.TemporaryDirectory(prefix="publish-") as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(student, repo, ignore=shutil.ignore_patterns(".git", "__pycache__", ".ipynb_checkpoints"))
        for args in (["init", "-q"], ["config", "user.name", "qlora-course"], ["config", "user.email", "course@localhost"]):
            _git(args, repo)
        fetched = _git(["fetch", "-q", "--depth", "1", push_to, branch], repo)
        if fetched.returncode == 0:
            _git(["reset", "-q", "--soft", "FETCH_HEAD"], repo)  # the new commit goes on top of the branch
        elif "couldn't find remote ref" not in fetched.stderr and "not our ref" not in fetched.stderr:
            raise input_error(f"--push-to {push_to}", f"could not be read: {fetched.stderr.strip()[:300]}",
                              "check the URL and your access to it")
        _git(["add", "-A"], repo)
        done = _git(["commit", "-q", "--allow-empty", "-m", message], repo)
        if done.returncode != 0:
            raise RuntimeError(f"git commit failed: {done.stderr.strip()}")
        pushed = _git(["push", "-q", push_to, f"HEAD:refs/heads/{branch}"], repo)
        if pushed.returncode != 0:
            raise input_error(f"--push-to {push_to}", f"refused the push: {pushed.stderr.strip()[:300]}",
                              "check your access to it, or that nobody pushed to the branch meanwhile")
        return _git(["rev-parse", "HEAD"], repo).stdout.strip()
