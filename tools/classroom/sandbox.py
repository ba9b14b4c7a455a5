"""Run a command where a student's code cannot reach the course, the grades or other submissions.

Two modes (``--sandbox`` of the grader):

``bwrap`` (default where `bubblewrap <https://github.com/containers/bubblewrap>`_ is installed: Linux,
``apt install bubblewrap``): the command sees a file system made of the system's read-only folders (``/usr``,
``/etc`` ...), the Python environment (read-only), a read-only copy of the student release at ``/course`` and one
writable folder of its own at ``/submission``; a fresh ``/tmp``; no network; its own process tree, killed whole when the
command ends or the time limit is reached; an environment of :data:`KEPT_ENV` and the course's variables only. The
teacher's files (the course checkout with its solutions and answer keys, the grades, the other submissions) are not
in its file system at all.

``process`` (anywhere, weaker): the command runs in a temporary folder with a clean environment, in a session of its
own whose whole process group is killed at the end. It runs as the grader's user, so it *can* read any file that user
can (solutions and answer keys included, wherever they lie on disk), change any file that user can (the grades, and
the checkout's checkers, so that later submissions pass: tried and seen), and keep a process alive that left the group
with ``setsid``. Use it for practice rounds on notebooks you trust, never for marks.

The grades never depend on what the command writes except its record file (see :mod:`tools.classroom.codec`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from utils.errors import input_error

MODES = ("bwrap", "process")
KEPT_ENV = ("LANG", "LC_ALL", "TZ", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
COURSE_ENV = {"QLORA_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
              "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg",
              "QLORA_PROGRESS": "final", "PYTHONDONTWRITEBYTECODE": "1"}
SYSTEM_DIRS = ("/usr", "/etc", "/lib", "/lib64", "/bin", "/sbin", "/opt")


def default_mode() -> str:
    """``bwrap`` when bubblewrap is installed, else ``process``."""
    return "bwrap" if shutil.which("bwrap") else "process"


def check_mode(mode: str) -> str:
    """``mode`` if it can run here; InputError naming the fix otherwise."""
    if mode not in MODES:
        raise input_error(f"--sandbox {mode}", f"is not one of {', '.join(MODES)}",
                          "use bwrap for marks (Linux: apt install bubblewrap), process for a practice round")
    if mode == "bwrap" and not shutil.which("bwrap"):
        raise input_error("--sandbox bwrap", "needs bubblewrap (bwrap), which is not installed",
                          "install it (Debian/Ubuntu: sudo apt install bubblewrap), or grade "
                          "in otter's Docker mode (README, 'Classroom use'), or pass --sandbox process for a practice "
                          "round (not for marks)")
    return mode


@dataclass(frozen=True)
class Finished:
    """How a sandboxed command ended."""

    returncode: int | None  # None: killed at the time limit
    seconds: float
    output: str  # its stdout and stderr, the last 20,000 characters


def _environment(home: str, pythonpath: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
    env.update(COURSE_ENV, HOME=home, PYTHONPATH=pythonpath, QLORA_OUTPUT_DIR=f"{home}/outputs",
               PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin")
    return env


def _python_dirs() -> list[str]:
    """The folders the grader's Python needs (its environment and the interpreter it was made from), outermost."""
    dirs = {str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    dirs.add(str(Path(sys.executable).resolve().parent.parent))
    return sorted(d for d in dirs if not any(d != o and d.startswith(o + "/") for o in dirs))


def bwrap_command(command: list[str], course: Path, work: Path) -> list[str]:
    """The ``bwrap`` invocation of :func:`run` (bwrap mode): see the module's docstring."""
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    for d in SYSTEM_DIRS:
        args += ["--ro-bind-try", d, d]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # before the Python folders: one may be in /tmp
    for d in _python_dirs():
        args += ["--ro-bind", d, d]
    args += ["--ro-bind", str(course), "/course", "--bind", str(work), "/submission", "--chdir", "/submission"]
    for key, value in _environment("/submission", "/course").items():
        args += ["--setenv", key, value]
    return args + command


def run(command: list[str], course: Path, work: Path, seconds: float, mode: str) -> Finished:
    """Run ``command`` in ``mode`` (``course`` read-only at ``/course``, ``work`` writable at ``/submission``; in process
    mode the command sees the real paths, so pass paths under ``work``), stopping it after ``seconds``."""
    if mode == "bwrap":
        argv, cwd, env = bwrap_command(command, course, work), None, {"PATH": os.environ.get("PATH", "/usr/bin")}
    else:
        argv, cwd, env = command, str(work), _environment(str(work), str(course))
    start = time.monotonic()
    with tempfile.TemporaryFile() as log:  # outside the sandbox's reach
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # everything it started in its session
            except ProcessLookupError:
                pass
            proc.wait()
        log.seek(max(0, log.seek(0, 2) - 20_000))
        output = log.read().decode(errors="replace")
    return Finished(returncode, time.monotonic() - start, output)
