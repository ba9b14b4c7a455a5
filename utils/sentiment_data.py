"""Real labelled text for notebook 06: movie-review sentence polarity (and out-of-domain sentences) from
vaderSentiment's sdist, fetched by the course's own set-up.

The source distribution of ``vaderSentiment`` 3.3.2 on PyPI (MIT licence; the wheel does not hold the data)
carries ``additional_resources/hutto_ICWSM_2014.tar.gz``, a tar inside the tar with the human-rated sentences
of Hutto & Gilbert's VADER paper (ICWSM 2014). Each ``*_GroundTruth.txt`` member is UTF-8 text with CRLF line
ends, one sentence a line: ``id<TAB>mean rating<TAB>text``, the mean of independent human ratings from -4
(extremely negative) to +4 (extremely positive): 15 to 29 per movie sentence (median 18; the archive's README
says "a minimum of 20", its raw-ratings file shows fewer), 20 or more per sentence of the other sets.

- ``movies``: 10,605 Rotten Tomatoes review sentences (Pang & Lee's 2005 sentence polarity data);
- ``tweets``: 4,200 tweet-like texts; ``nyt``: 5,190 New York Times editorial sentences; ``amazon``: 3,708
  Amazon product-review sentences (out-of-domain test sets).

:func:`fetch_sdist` downloads the pinned sdist once with pip into the model cache and checks its sha256;
:func:`read_ratings` reads one domain's rows straight from the archives in memory; :func:`polarity_rows` turns
them into ``positive``/``negative`` examples; :func:`write_csv` saves those in the ``text,label`` layout
:func:`utils.classification.load_labelled` reads. ``data/movie_reviews/README.md`` has the counts and credits.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from utils.errors import input_error

PACKAGE = "vaderSentiment"
VERSION = "3.3.2"
SDIST_FILE = f"{PACKAGE}-{VERSION}.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"  # 2,466,783 bytes, from PyPI
CACHE_FOLDER = "vadersentiment"  # in utils.paths.model_cache_dir()
INNER_ARCHIVE = f"{PACKAGE}-{VERSION}/additional_resources/hutto_ICWSM_2014.tar.gz"
INNER_FOLDER = "hutto_ICWSM_2014"
DOMAIN_FILES = {  # domain -> member of the inner archive (in INNER_FOLDER)
    "movies": "movieReviewSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
}
ENCODING = "utf-8"  # all four files (checked: movies has é, ½, en dashes, ’; tweets £ and ñ; nyt and amazon are ASCII)
MARGIN = 0.5  # polarity_rows drops the sentences whose mean rating is within +-MARGIN of 0 (near-neutral)
RATING_RANGE = (-4.0, 4.0)


def pip_command(dest: Path, requirements: Path) -> list[str]:
    """The pip command that downloads the sdist into ``dest``: ``requirements`` pins the version and its sha256,
    so pip checks the file before it prepares the package's metadata (it runs its build backend)."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "--disable-pip-version-check",
            "--retries", "2", "-r", str(requirements), "-d", str(dest)]


def _run_pip(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run pip, capturing its output (the tests replace this function: they run offline)."""
    return subprocess.run(command, capture_output=True, text=True, check=False)


def file_sha256(path: Path) -> str:
    """The sha256 of the file, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(target: Path) -> None:
    """Download the sdist with pip, check its sha256 and move it to ``target`` (atomically: a rename in its folder)."""
    with tempfile.TemporaryDirectory(prefix=f".{CACHE_FOLDER}.", dir=target.parent) as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{PACKAGE}=={VERSION} --hash=sha256:{SDIST_SHA256}\n", encoding="utf-8")
        dest = Path(tmp) / "download"
        command = pip_command(dest, requirements)
        shown = f"pip download --no-deps --no-binary=:all: {PACKAGE}=={VERSION}"
        try:
            result = _run_pip(command)
        except OSError as err:  # the interpreter cannot be started: nothing to do with the network
            raise input_error(shown, f"could not run pip ({err})",
                              f"check that `{sys.executable} -m pip` works") from None
        downloaded = dest / SDIST_FILE
        if result.returncode != 0 or not downloaded.is_file():
            output = (result.stderr or result.stdout or "").strip().splitlines()
            errors = [line for line in output if line.startswith("ERROR")]
            said = " / ".join((errors or output)[-2:]) if output else "no output"
            if "DO NOT MATCH THE HASHES" in (result.stderr or ""):
                raise input_error(shown, f"pip found a {SDIST_FILE} whose sha256 is not the pinned {SDIST_SHA256} "
                                         f"(pip said: {said})",
                                  "check that pip's index (pip config list) serves PyPI's own file; do not change "
                                  "the pinned hash unless the new file has been reviewed")
            raise input_error(shown, f"the download failed (pip exit status {result.returncode}; pip said: {said}): "
                                     "this machine seems to be offline, or pip's package index is unreachable",
                              f"run this once on a machine with network access (the file is then cached), or copy "
                              f"{SDIST_FILE} (sha256 {SDIST_SHA256}, from https://pypi.org/project/{PACKAGE}/{VERSION}/"
                              f"#files) to {target}")
        got = file_sha256(downloaded)
        if got != SDIST_SHA256:
            raise input_error(f"{shown} ({SDIST_FILE}, not kept)",
                              f"the downloaded file's sha256 is {got}, not the pinned {SDIST_SHA256}",
                              "check that pip's index (pip config list) serves PyPI's own file; do not change the "
                              "pinned hash unless the new file has been reviewed")
        os.replace(downloaded, target)


def fetch_sdist(cache_dir: Path | None = None) -> Path:
    """The vaderSentiment 3.3.2 sdist, downloaded once with pip into ``cache_dir`` and checked against its sha256.

    Args:
        cache_dir: the folder that keeps it (created if missing); default ``utils.paths.model_cache_dir() /
            "vadersentiment"``, i.e. ``outputs/cache/vadersentiment`` unless ``$QLORA_CACHE_DIR`` is set.
    Returns:
        The path of ``vaderSentiment-3.3.2.tar.gz`` in the cache folder (verified: its sha256 is
        :data:`SDIST_SHA256`).
    Raises:
        InputError: the cached file's sha256 is not the pinned one (the message names the file and says to delete
            it); the download failed (the message says what was run, that the machine seems offline or pip's
            index unreachable, and where to copy the file instead); the downloaded file has another sha256
            (both hashes named).
    """
    if cache_dir is None:
        from utils.paths import model_cache_dir

        cache_dir = model_cache_dir() / CACHE_FOLDER
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / SDIST_FILE
    if not target.is_file():
        _download(target)
    got = _verified_sha256(str(target), *_stamp(target))
    if got != SDIST_SHA256:
        raise input_error(str(target), f"the cached file is corrupted or not the pinned release: its sha256 is {got}, "
                                       f"expected {SDIST_SHA256}",
                          "delete it; the next call downloads it again")
    return target


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=4)
def _verified_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of the file, computed once per process and file version (size and modification time)."""
    return file_sha256(Path(path))


@functools.lru_cache(maxsize=8)
def _member_text(sdist: str, size: int, mtime_ns: int, member: str) -> str:
    """The text of ``member`` of the inner archive of the sdist, read in memory (nothing is extracted to disk)."""
    with tarfile.open(sdist, "r:gz") as outer:
        try:
            inner_bytes = outer.extractfile(INNER_ARCHIVE)
        except KeyError:
            inner_bytes = None
        if inner_bytes is None:
            raise input_error(sdist, f"has no {INNER_ARCHIVE}", f"delete it and fetch {SDIST_FILE} again")
        inner_data = inner_bytes.read()
    with tarfile.open(fileobj=io.BytesIO(inner_data), mode="r:gz") as inner:
        name = f"{INNER_FOLDER}/{member}"
        try:
            raw_file = inner.extractfile(name)
        except KeyError:
            raw_file = None
        if raw_file is None:
            raise input_error(f"{sdist} ({INNER_ARCHIVE})", f"has no {name}", f"delete it and fetch {SDIST_FILE} again")
        raw = raw_file.read()
    try:
        return raw.decode(ENCODING)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise input_error(f"{sdist} ({name}), line {line}", f"is not {ENCODING} text ({err.reason})",
                          f"delete it and fetch {SDIST_FILE} again") from None


def _check_domain(domain: str) -> str:
    if domain not in DOMAIN_FILES:
        raise input_error(f"domain={domain!r}", f"is not one of the domains {', '.join(DOMAIN_FILES)}",
                          "pass domain='movies' (the training set) or 'tweets', 'nyt' or 'amazon' "
                          "(out-of-domain test sets)")
    return DOMAIN_FILES[domain]


def read_ratings(domain: str = "movies", *, cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """One domain's human-rated sentences, in file order, read from the sdist (fetched first if needed).

    Args:
        domain: ``"movies"``, ``"tweets"``, ``"nyt"`` or ``"amazon"``.
        cache_dir: the sdist's cache folder (see :func:`fetch_sdist`).
    Returns:
        One dict per line ``{"id": str, "score": float, "text": str}``: the file's id (``"17"``, ``"63_5"``),
        the mean human rating (-4 to +4) and the sentence exactly as the file holds it (without the line end;
        a few have leading or trailing spaces, some texts occur twice).
    Raises:
        InputError: an unknown domain (the domains are listed); anything :func:`fetch_sdist` raises; a line that
            is not ``id<TAB>score<TAB>text`` or a score outside -4..4 (only a damaged file has them).
    """
    member = _check_domain(domain)
    sdist = fetch_sdist(cache_dir)
    text = _member_text(str(sdist), *_stamp(sdist), member)
    rows = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        where = f"{sdist} ({INNER_FOLDER}/{member}), line {number}"
        fields = line.split("\t", 2)
        if len(fields) != 3:
            raise input_error(where, f"has {len(fields)} tab-separated field(s), expected 3 (id, score, text)",
                              f"delete {SDIST_FILE} and fetch it again")
        try:
            score = float(fields[1])
        except ValueError:
            score = float("nan")
        if not RATING_RANGE[0] <= score <= RATING_RANGE[1]:
            raise input_error(where, f"has the score {fields[1]!r}, not a number from -4 to 4",
                              f"delete {SDIST_FILE} and fetch it again")
        rows.append({"id": fields[0], "score": score, "text": fields[2]})
    return rows


def polarity_rows(domain: str = "movies", margin: float = MARGIN, *,
                  cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Sentiment-polarity examples of one domain: the clearly positive and clearly negative sentences.

    Each text is stripped of surrounding spaces. A text that occurs more than once (up to whitespace; the
    files repeat 2 movie sentences, 71 NYT and 10 Amazon ones, 84 extra copies in all) is kept once, at its
    first place, with the mean of its copies' scores: ``load_labelled`` refuses repeated texts (a leaking
    split). Then every sentence with
    ``|score| <= margin`` (near-neutral, or raters split) is dropped and the others are labelled by the sign.

    Args:
        domain: as in :func:`read_ratings`.
        margin: the half-width of the dropped band around 0, from 0 (drop only exact zeros) to below 4.
        cache_dir: the sdist's cache folder (see :func:`fetch_sdist`).
    Returns:
        ``{"text": str, "label": "positive" | "negative", "score": float}`` in file order (deterministic).
    Raises:
        InputError: a margin that is not a number in [0, 4); anything :func:`read_ratings` raises.
    """
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < RATING_RANGE[1]:
        raise input_error(f"margin={margin!r}", "expected a number from 0 to below 4 (the ratings run from -4 to 4)",
                          f"use e.g. margin={MARGIN}")
    merged: dict[str, tuple[str, list[float]]] = {}  # whitespace-normalised text -> (first text, scores)
    for row in read_ratings(domain, cache_dir=cache_dir):
        text = row["text"].strip()
        if text:
            merged.setdefault(" ".join(text.split()), (text, []))[1].append(row["score"])
    out = []
    for text, scores in merged.values():
        score = sum(scores) / len(scores)
        if abs(score) > margin:
            out.append({"text": text, "label": "positive" if score > 0 else "negative", "score": score})
    return out


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as a ``text,label`` CSV (UTF-8, a header line, quoted where needed, CRLF line ends like
    ``data/labelled/support_tickets.csv``) that :func:`utils.classification.load_labelled` reads. Other keys
    (``score``) are not written. An existing file is never overwritten.

    Returns:
        The path written.
    Raises:
        InputError: the file exists (it is left as it was); no rows; a row without a non-empty string text and
            label.
    """
    path = Path(path)
    if path.exists():
        raise input_error(str(path), "already exists; write_csv does not overwrite a file",
                          "delete or rename it first, or write to another path")
    if not rows:
        raise input_error(f"write_csv({str(path)!r})", "got no rows", "pass the rows of polarity_rows()")
    for i, row in enumerate(rows):
        for key in ("text", "label"):
            value = row.get(key) if isinstance(row, dict) else None
            if not isinstance(value, str) or not value.strip():
                raise input_error(f"write_csv({str(path)!r}), row {i}", f"has no {key} (a non-empty string): {row!r}",
                                  'give every row {"text": ..., "label": ...}')
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        f = open(path, "x", encoding="utf-8", newline="")  # "x": fails if the file appeared meanwhile
    except FileExistsError:
        raise input_error(str(path), "already exists; write_csv does not overwrite a file",
                          "delete or rename it first, or write to another path") from None
    try:
        with f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([row["text"], row["label"]] for row in rows)
    except BaseException:
        path.unlink(missing_ok=True)  # the file this call created, half-written
        raise
    return path


def polarity_csv(domain: str = "movies", margin: float = MARGIN, *, cache_dir: Path | None = None) -> Path:
    """The :func:`polarity_rows` of one domain as a ``text,label`` CSV in the cache folder, written once.

    The file (``<domain>_polarity_margin<margin>.csv`` beside the sdist) is what notebook 06 reads through
    :func:`utils.classification.load_labelled`, the same path as a learner's own CSV.

    Returns:
        The CSV's path. Raises: as :func:`polarity_rows`.
    """
    rows = polarity_rows(domain, margin, cache_dir=cache_dir)  # checks domain and margin, fetches the sdist
    if cache_dir is None:
        from utils.paths import model_cache_dir

        cache_dir = model_cache_dir() / CACHE_FOLDER
    path = Path(cache_dir) / f"{domain}_polarity_margin{margin:g}.csv"
    if not path.is_file():
        with tempfile.TemporaryDirectory(prefix=".csv.", dir=path.parent) as tmp:
            written = write_csv(Path(tmp) / path.name, rows)
            os.replace(written, path)  # atomic: a reader never sees half a file
    return path
