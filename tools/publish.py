"""Where the course is published: the one owner of the repository URL and branch the notebooks point at.

``publish.json`` (repository root) holds ``{"repo": "https://github.com/OWNER/NAME", "branch": "main"}``.
Every notebook's Colab cell (its first code cell) and every "Open in Colab" badge are rendered from it, so
they cannot drift apart; ``tests/test_colab.py`` checks that the committed notebooks equal the rendering.

A fork runs, once, and commits what it changed::

    python -m tools.editions publish                    # repo from `git remote get-url origin`, current branch
    python -m tools.editions publish --repo https://github.com/OWNER/NAME --branch main

That rewrites ``publish.json``, every notebook's Colab cell and the README's badges (instructor edition, in
``notebooks/``). A classroom release (``python -m tools.classroom release``) renders its own Colab cells and badges
for the students' repository.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from utils.errors import input_error

REPO_ROOT = Path(__file__).resolve().parent.parent
PUBLISH_FILE = REPO_ROOT / "publish.json"
COLAB_MARKER = 'if "google.colab" in sys.modules:'
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
_GITHUB = re.compile(r"^(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)"
                     r"(?P<owner>[\w.-]+)/(?P<name>[\w.-]+?)(?:\.git)?/?$")
# a badge's link: ...](https://colab.research.google.com/github/OWNER/NAME/blob/BRANCH/PATH.ipynb)
_BADGE_LINK = re.compile(r"\]\(https://colab\.research\.google\.com/github/[^)\s]+?/(?P<file>[^/)\s]+\.ipynb)\)")


def github_url(url: str) -> str:
    """``https://github.com/OWNER/NAME`` for a GitHub https or ssh URL (with or without ``.git``).

    Raises:
        InputError: not a GitHub repository URL (Colab opens notebooks from GitHub only); names it and the fix.
    """
    match = _GITHUB.match(url.strip())
    if not match:
        raise input_error(f"repository URL {url!r}", "it is not a GitHub repository (Colab opens notebooks "
                          "from github.com only)", "pass --repo https://github.com/OWNER/NAME of your public "
                          "fork, or set it with `git remote add origin https://github.com/OWNER/NAME`")
    return f"https://github.com/{match['owner']}/{match['name']}"


def load(path: Path = PUBLISH_FILE) -> dict[str, str]:
    """``{"repo": ..., "branch": ...}`` from ``publish.json``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data.get("repo"), str) or not isinstance(data.get("branch"), str):
        raise input_error(str(path), 'it needs {"repo": "https://github.com/OWNER/NAME", "branch": "main"}',
                          "run `python -m tools.editions publish` to rewrite it")
    return {"repo": data["repo"], "branch": data["branch"]}


def clone_dir_name(repo: str) -> str:
    """The folder a clone of ``repo`` goes to: the repository's name (``qlora-course``)."""
    return repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or "qlora-course"


def colab_cell(repo: str, branch: str) -> str:
    """The source of every notebook's first code cell: on Colab only, clone the course and call
    :func:`utils.colab.setup`. ``$QLORA_COLAB_DIR`` (default ``/content``) is where the clone goes."""
    return f'''import os
import subprocess
import sys

{COLAB_MARKER}  # Colab only: clone the course (publish.json), install what Colab lacks
    REPO, BRANCH = "{repo}", "{branch}"
    COURSE = os.path.join(os.environ.get("QLORA_COLAB_DIR", "/content"), "{clone_dir_name(repo)}")
    if not os.path.isdir(COURSE):  # a re-run of this cell keeps the first clone
        try:
            subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", BRANCH, REPO, COURSE], check=True)
        except subprocess.CalledProcessError:
            raise RuntimeError(f"could not clone {{REPO}} (branch {{BRANCH}}); see git's message above. Check that "
                               "the repository is public and the branch exists; in a fork, run `python -m "
                               "tools.editions publish` once and commit, so this cell clones the fork.") from None
    sys.path.insert(0, COURSE)
    from utils.colab import setup

    setup()  # installs what Colab lacks at requirements-lock.txt's versions (never torch); warns on a mismatch
'''.rstrip("\n")


def badge_url(repo: str, branch: str, path: str) -> str:
    """The Colab URL that opens ``path`` (relative to the repository root) of a GitHub repository."""
    return f"https://colab.research.google.com/github/{github_url(repo).removeprefix('https://github.com/')}" \
           f"/blob/{branch}/{path}"


def badge(repo: str, branch: str, path: str) -> str:
    """``[![Open in Colab](...)](badge_url)``: the Markdown of one badge."""
    return f"[![Open in Colab]({BADGE_SVG})]({badge_url(repo, branch, path)})"


def rewrite_badges(text: str, repo: str, branch: str, folder: str = "notebooks") -> str:
    """``text`` with every Colab badge link pointing at ``folder/<its notebook>`` of ``repo`` at ``branch``."""
    return _BADGE_LINK.sub(lambda m: "](" + badge_url(repo, branch, f"{folder}/{m['file']}") + ")", text)


def _cell_lines(source: str) -> list[str]:
    return source.splitlines(keepends=True)


def rewrite_notebook(path: Path, repo: str, branch: str) -> bool:
    """Set the first code cell of notebook ``path`` (it must be the Colab cell) to :func:`colab_cell`;
    returns whether the file changed. The JSON is written as Jupyter does (indent 1), cell ids kept."""
    text = Path(path).read_text(encoding="utf-8")
    nb = json.loads(text)
    code = next((c for c in nb["cells"] if c["cell_type"] == "code"), None)
    if code is None or COLAB_MARKER not in "".join(code["source"]):
        raise input_error(str(path), f"its first code cell is not the Colab set-up (no `{COLAB_MARKER}`)",
                          "restore the cell from git, then publish again")
    code["source"] = _cell_lines(colab_cell(repo, branch))
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        Path(path).write_text(new, encoding="utf-8")
    return new != text


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def publish(repo: str, branch: str, root: Path = REPO_ROOT) -> list[Path]:
    """Point ``root``'s publish.json, every notebook's Colab cell and the README's badges at ``repo``/``branch``;
    returns the files it changed (none on a second run)."""
    repo = github_url(repo)
    if not branch or any(ch.isspace() for ch in branch) or '"' in branch:
        raise input_error(f"branch {branch!r}", "it is empty or holds a space or a quote",
                          "pass --branch NAME of a branch that exists in the repository")
    root = Path(root)
    changed = []
    if _write_if_changed(root / "publish.json", json.dumps({"repo": repo, "branch": branch}, indent=1) + "\n"):
        changed.append(root / "publish.json")
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if rewrite_notebook(path, repo, branch):
            changed.append(path)
    readme = root / "README.md"
    if readme.is_file() and _write_if_changed(readme, rewrite_badges(readme.read_text(encoding="utf-8"), repo, branch)):
        changed.append(readme)
    return changed


def _git(args: list[str], root: Path) -> str | None:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None


def default_repo(root: Path = REPO_ROOT) -> str:
    """``git remote get-url origin`` as ``https://github.com/OWNER/NAME``.

    Raises:
        InputError: no ``origin`` remote, or it is not on GitHub.
    """
    url = _git(["remote", "get-url", "origin"], root)
    if url is None:
        raise input_error(f"{root}", "this clone has no remote `origin` to publish",
                          "pass --repo https://github.com/OWNER/NAME (your public fork)")
    return github_url(url)


def default_branch(root: Path = REPO_ROOT) -> str:
    """The branch checked out in ``root`` (``main`` when detached or unknown)."""
    branch = _git(["symbolic-ref", "--short", "HEAD"], root)
    return branch or "main"
