"""The Colab cell, the set-up it calls, and publishing (tools.publish, `python -m tools.editions publish`).

The Colab cell runs for real in a subprocess: a stand-in ``google.colab`` module on PYTHONPATH, the clone
target in tmp_path ($QLORA_COLAB_DIR), the repository a ``file://`` bare clone of a snapshot of this working
tree (utils/ and the lock files as they are now, committed into a throw-away repository), pip dry-run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import publish
from utils import colab, lock
from utils.errors import InputError
from utils.notebooks import course_notebooks
from utils.paths import REPO_ROOT

FORK = "https://github.com/alice/qlora-fork"


def _first_code_cell(path: Path) -> str:
    return "".join(next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")["source"])


@pytest.fixture(scope="module")
def bare_repo(tmp_path_factory) -> Path:
    """A bare git repository, on branch main, holding this working tree's utils/ and lock files."""
    tmp = tmp_path_factory.mktemp("repo")
    src = tmp / "src"
    shutil.copytree(REPO_ROOT / "utils", src / "utils", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("requirements-lock.txt", "requirements-nodeps.txt", "publish.json"):
        shutil.copy(REPO_ROOT / name, src / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(src)], check=True)
    subprocess.run([*git, "-C", str(src), "add", "."], check=True)
    subprocess.run([*git, "-C", str(src), "commit", "-q", "-m", "snapshot"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(tmp / "course.git")], check=True)
    return tmp / "course.git"


def _run_colab_cell(cell: str, tmp_path: Path, after: str = "") -> subprocess.CompletedProcess:
    stub = tmp_path / "stub"
    (stub / "google" / "colab").mkdir(parents=True)
    (stub / "google" / "__init__.py").write_text("")
    (stub / "google" / "colab" / "__init__.py").write_text('"""Stand-in for Colab\'s module."""\n')
    env = {**os.environ, "PYTHONPATH": str(stub), "HOME": str(tmp_path / "home"),
           "QLORA_COLAB_DIR": str(tmp_path / "content"), "QLORA_COLAB_DRY_RUN": "1"}
    (tmp_path / "home").mkdir()
    code = "import google.colab  # noqa: F401  (Colab has imported it)\n" + cell + "\n" + after
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_colab_cell_clones_imports_utils_and_checks_versions(bare_repo, tmp_path):
    cell = publish.colab_cell(f"file://{bare_repo}", "main")
    assert "check=True" in cell and len(cell.splitlines()) <= 20
    after = "import utils\nprint('UTILS FROM', utils.__file__)\nexec(compile(CELL, 'rerun', 'exec'))\n"
    result = _run_colab_cell(f"CELL = {cell!r}\n" + cell, tmp_path, after)
    assert result.returncode == 0, result.stderr
    clone = tmp_path / "content" / "course"
    assert (clone / "utils" / "colab.py").is_file() and (clone / ".git").is_dir()
    assert f"UTILS FROM {clone / 'utils' / '__init__.py'}" in result.stdout, result.stdout
    # the version check's lines (torch's always; this venv holds the locked versions, so no warning)
    assert result.stdout.count("Colab set-up:") == 2 and result.stdout.count("torch ") == 2, result.stdout
    assert "Colab's own, kept on purpose" in result.stdout


def test_a_clone_that_fails_says_what_to_do(tmp_path):
    cell = publish.colab_cell(f"file://{tmp_path / 'no-such-repo.git'}", "main")
    result = _run_colab_cell(cell, tmp_path)
    assert result.returncode != 0
    assert "RuntimeError: could not clone" in result.stderr and "tools.editions publish" in result.stderr
    assert "CalledProcessError" not in result.stderr, result.stderr


def test_the_cell_does_nothing_outside_colab():
    result = subprocess.run([sys.executable, "-c", publish.colab_cell(FORK, "main")], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout, result.stderr


def _copy_course(tmp_path: Path) -> Path:
    root = tmp_path / "fork"
    (root / "notebooks").mkdir(parents=True)
    for path in course_notebooks():
        shutil.copy(path, root / "notebooks" / path.name)
    shutil.copy(REPO_ROOT / "README.md", root / "README.md")
    return root


def _generated_blocks(text: str) -> list[str]:
    return re.findall(r"<!-- begin: (\S+) -->.*?<!-- end: \1 -->", text, flags=re.S)


def test_publish_points_every_colab_cell_and_badge_at_the_fork_once(tmp_path):
    root = _copy_course(tmp_path)
    before = (root / "README.md").read_text()
    changed = publish.publish(FORK + ".git", "dev", root=root)
    assert root / "publish.json" in changed and root / "README.md" in changed
    assert publish.load(root / "publish.json") == {"repo": FORK, "branch": "dev"}
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        assert _first_code_cell(path) == publish.colab_cell(FORK, "dev"), path.name
        assert f'REPO, BRANCH = "{FORK}", "dev"' in _first_code_cell(path)
    readme = (root / "README.md").read_text()
    links = re.findall(r"\]\((https://colab\.research\.google\.com/github/[^)]+)\)", readme)
    assert len(links) == len(course_notebooks())
    assert all(link.startswith("https://colab.research.google.com/github/alice/qlora-fork/blob/dev/notebooks/")
               for link in links), links
    assert _generated_blocks(readme) == _generated_blocks(before)
    assert publish.publish(FORK, "dev", root=root) == []  # idempotent


def test_publish_takes_github_ssh_urls_and_rejects_others(tmp_path):
    assert publish.github_url("git@github.com:alice/qlora-fork.git") == FORK
    assert publish.github_url("ssh://git@github.com/alice/qlora-fork") == FORK
    with pytest.raises(InputError, match=r"'https://gitlab.com/a/b'.*Fix: pass --repo https://github.com/OWNER/NAME"):
        publish.github_url("https://gitlab.com/a/b")
    repo = tmp_path / "clone"
    subprocess.run(["git", "-c", "init.defaultBranch=course", "init", "-q", str(repo)], check=True)
    with pytest.raises(InputError, match="no remote `origin`"):
        publish.default_repo(repo)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", "git@github.com:alice/qlora-fork.git"],
                   check=True)
    assert publish.default_repo(repo) == FORK and publish.default_branch(repo) == "course"


def test_the_committed_notebooks_and_readme_are_published_from_publish_json():
    where = publish.load()
    for path in course_notebooks():
        assert _first_code_cell(path) == publish.colab_cell(where["repo"], where["branch"]), (
            f"{path.name}: its Colab cell differs from publish.json's; run `python -m tools.editions publish`")
    readme = (REPO_ROOT / "README.md").read_text()
    assert publish.rewrite_badges(readme, where["repo"], where["branch"]) == readme


def test_setup_installs_only_what_is_missing_or_incompatible_never_torch(monkeypatch, capsys):
    tested = lock.locked_versions()
    fake = {"transformers": "4.57.1", "peft": None, "bitsandbytes": tested["bitsandbytes"] + ".post1"}
    monkeypatch.setattr(colab, "installed_version",
                        lambda p: fake[p] if p in fake else tested.get(lock._normalise(p)))
    calls = []
    monkeypatch.setattr(colab.subprocess, "run", lambda cmd, check: calls.append(cmd))
    installed = colab.setup(dry_run=False)
    assert installed == [f"transformers=={tested['transformers']}", f"peft=={tested['peft']}"]
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", *installed]]
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("WARNING")]
    # after a real install the versions would match; here the fake still reports the old ones
    assert [w.split()[1] for w in warnings] == ["transformers", "peft", "bitsandbytes"]
    assert f"`!pip install transformers=={tested['transformers']}`" in warnings[0] and "may fail" in warnings[0]
    assert "torch" not in " ".join(calls[0]) and "Colab's own" in out


def test_setup_dry_run_prints_the_pip_command(monkeypatch, capsys):
    monkeypatch.setattr(colab, "installed_version", lambda p: None)
    monkeypatch.setattr(colab.subprocess, "run", lambda *a, **k: pytest.fail("ran pip in a dry run"))
    monkeypatch.setenv("QLORA_COLAB_DRY_RUN", "1")
    assert colab.setup() == lock.colab_requirements() + lock.colab_requirements(packages=lock.COLAB_NODEPS)
    out = capsys.readouterr().out
    assert out.count("dry run, would run:") == 2 and "--no-deps" in out
