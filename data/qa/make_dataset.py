"""Write the course's own small QA set (SQuAD v1.1 format) from made-up facts: `python data/qa/make_dataset.py`.

Every place, person and number below is invented, so the set is free of copyright (CC0) and no
model can know the answers in advance: they can only come from the context. The script is
deterministic (seeded), so re-running it rewrites the same two files byte for byte.

The validation split is held out three ways, and :func:`build` asserts the last two every time it runs:

- its paragraphs (contexts) are not in training;
- **no validation answer is a training answer** (normalised as SQuAD scores answers): every word list
  below is cut into a training part and a validation part (:func:`part`), the numbers come from disjoint
  ranges (:data:`NUMBERS`), and names are built only from their split's first and last names, so a model
  cannot score by repeating an answer it was trained to give;
- **some question types are only asked in validation** (:data:`VALIDATION_ONLY`): "How many people live
  in {town}?", "What does the flag of {town} show?" and "Who studied under {teacher}?" ask about facts the
  paragraphs state but training never asks about.

Each question's id is ``<title>_<template name>`` (``town_brindlemoor_founder``, ``inventor_edda_varn_partner``);
:func:`template_of` reads the template back from it.
"""

from __future__ import annotations

import json
import math
import random
import string
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: the answer normalisation is the course's own
    sys.path.insert(0, str(ROOT))

from utils.evaluation.squad import normalize_answer  # noqa: E402

SEED = 2026
SPLITS = ("train", "validation")
VALID_SHARE = 0.25  # the validation part of every word list: its last quarter, rounded up
RECORDS = {"train": {"town": 16, "inventor": 16}, "validation": {"town": 4, "inventor": 4}}  # paragraphs

FIRST = ["Edda", "Tomas", "Ilse", "Marek", "Nadia", "Oren", "Pia", "Ruben", "Selma", "Timo", "Una", "Vera",
         "Wendel", "Yara", "Zeno", "Alma", "Bruno", "Cora", "Dario", "Elin", "Falk", "Greta", "Hugo", "Ines",
         "Jessa", "Korvin", "Lisbet", "Mavra"]
LAST = ["Varn", "Holt", "Brenn", "Castel", "Dorne", "Eske", "Fyle", "Garrow", "Hessel", "Ibbot", "Jarre",
        "Kell", "Lund", "Marrow", "Nolte", "Orrin", "Pell", "Quist", "Rook", "Sallow", "Ulverd", "Vosk",
        "Wimbrel", "Yelland"]
TOWNS = ["Brindlemoor", "Caskwell", "Dunmarrow", "Elderholm", "Fernwick", "Gallowmere", "Harrowdale",
         "Ivelstead", "Juniper Cross", "Kestrel Bay", "Larkmoss", "Mossgate", "Nettlefield", "Oakhollow",
         "Pebblestead", "Quillbury", "Ravenshelf", "Saltmarsh", "Thistlewood", "Underfell", "Vellbrook",
         "Wickenhay", "Yarnholt", "Zellmoor", "Amberfold", "Brackenhythe", "Cindervale", "Dapplewater"]
RIVERS = ["Oss", "Wend", "Tarra", "Lune", "Brisk", "Hollow", "Mere", "Sable", "Corran", "Ythe", "Quellin",
          "Daskel", "Virra", "Nimmer", "Harrowin", "Elsk"]
TRADES = ["clockmaker", "miller", "glassblower", "weaver", "cartographer", "beekeeper", "potter", "shipwright",
          "ropemaker", "tanner", "bellfounder", "chandler"]
GOODS = ["blue glass", "copper kettles", "wool blankets", "pear cider", "paper lanterns", "oak barrels",
         "salted fish", "silver buttons", "linen sails", "honey cakes", "plum jam", "tin whistles", "felt hats"]
COLOURS = ["green", "red", "yellow", "grey", "white", "violet", "orange", "black", "brown", "crimson"]
ANIMALS = ["heron", "otter", "fox", "owl", "stag", "hare", "crane", "badger", "lynx", "swan", "boar", "wren"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
INSTRUMENTS = ["brass telescope", "water clock", "printing press", "wind gauge", "sewing machine",
               "steam whistle", "rope bridge", "lighthouse lens", "diving bell", "spinning wheel", "music box",
               "rain gauge"]

# (low, high, step) per split; the four year ranges do not meet either, so no number is in both splits
NUMBERS = {"train": {"founded": (1100, 1549, 1), "built": (1650, 1799, 1), "prize": (30, 300, 10),
                     "people": (200, 4900, 100)},
           "validation": {"founded": (1550, 1649, 1), "built": (1800, 1890, 1), "prize": (310, 600, 10),
                          "people": (5000, 9500, 100)}}

TOWN_TEXT = ("{town} is a small town on the river {river}. It was founded in {year} by a {trade} named {founder}. "
             "Today about {people} people live there, and the town is known for its {goods}. Its flag shows "
             "{article} {colour} {animal}, and every {month} the town holds a market by the river.")
INVENTOR_TEXT = ("{name} was an inventor from {town}. As a young apprentice {first} studied under {teacher}. "
                 "In {year} {first} built a new {device}, which won a prize of {prize} gold coins. {first} later "
                 "worked with a friend called {partner}.")
# template name: (question, the facts whose words, in this order, are the answer span in the paragraph)
TEMPLATES = {
    "town": {"founder": ("Who founded {town}?", ("founder",)),
             "year": ("In which year was {town} founded?", ("year",)),
             "river": ("On which river is {town}?", ("river",)),
             "goods": ("What is {town} known for?", ("goods",)),
             "animal": ("Which animal is on the flag of {town}?", ("animal",)),
             "colour": ("What colour is the {animal} on the flag of {town}?", ("colour",)),
             "month": ("In which month is the market of {town} held?", ("month",)),
             "trade": ("What was the trade of the founder of {town}?", ("trade",)),
             "population": ("How many people live in {town}?", ("people",)),
             "flag": ("What does the flag of {town} show?", ("colour", "animal"))},
    "inventor": {"town": ("Where was {name} from?", ("town",)),
                 "teacher": ("Who taught {name}?", ("teacher",)),
                 "device": ("What did {name} build?", ("device",)),
                 "year": ("In which year did {name} build the {device}?", ("year",)),
                 "prize": ("How many gold coins did the {device} of {name} win?", ("prize",)),
                 "partner": ("Who did {name} later work with?", ("partner",)),
                 "student": ("Who studied under {teacher}?", ("name",))},
}
VALIDATION_ONLY = {"town_population", "town_flag", "inventor_student"}  # as template_of names them


def template_of(question_id: str) -> str:
    """The template a question was written from: the id's first word (record type) and last word (template
    name), e.g. ``inventor_edda_varn_year`` -> ``inventor_year`` (towns have a ``town_year`` of their own)."""
    words = question_id.split("_")
    return f"{words[0]}_{words[-1]}"


def part(words: list[str], split: str) -> list[str]:
    """The words of one split: the validation part is the list's last quarter (rounded up), training the rest."""
    cut = len(words) - math.ceil(len(words) * VALID_SHARE)
    return words[:cut] if split == "train" else words[cut:]


def number(rng: random.Random, split: str, kind: str) -> str:
    low, high, step = NUMBERS[split][kind]
    return str(rng.randrange(low, high + 1, step))


def fill(text: str, facts: dict[str, str]) -> tuple[str, dict[str, int]]:
    """``text`` with its fields filled in, and where each field's value starts (its first occurrence)."""
    out, where = "", {}
    for literal, field, _, _ in string.Formatter().parse(text):
        out += literal
        if field is not None:
            where.setdefault(field, len(out))
            out += facts[field]
    return out, where


def town_facts(rng: random.Random, split: str, town: str) -> dict[str, str]:
    colour = rng.choice(part(COLOURS, split))
    return {"town": town, "founder": f"{rng.choice(part(FIRST, split))} {rng.choice(part(LAST, split))}",
            "year": number(rng, split, "founded"), "river": rng.choice(part(RIVERS, split)),
            "trade": rng.choice(part(TRADES, split)), "goods": rng.choice(part(GOODS, split)),
            "colour": colour, "article": "an" if colour[0] in "aeiou" else "a",
            "animal": rng.choice(part(ANIMALS, split)), "month": rng.choice(part(MONTHS, split)),
            "people": number(rng, split, "people")}


def inventor_facts(rng: random.Random, split: str, name: str) -> dict[str, str]:
    first = name.split()[0]
    teachers = [f"{a} {b}" for a in part(FIRST, split) for b in part(LAST, split) if a != first]
    teacher = rng.choice(teachers)
    return {"name": name, "first": first, "town": rng.choice(part(TOWNS, split)), "teacher": teacher,
            "year": number(rng, split, "built"), "device": rng.choice(part(INSTRUMENTS, split)),
            "prize": number(rng, split, "prize"),
            "partner": rng.choice([a for a in part(FIRST, split) if a not in (first, teacher.split()[0])])}


def record(kind: str, facts: dict[str, str], split: str) -> dict:
    """One SQuAD article: the paragraph and its questions, each answer a span of the paragraph."""
    title = f"{kind}_{facts[kind if kind == 'town' else 'name']}"
    context, where = fill(TOWN_TEXT if kind == "town" else INVENTOR_TEXT, facts)
    qas = []
    for name, (question, answer_facts) in TEMPLATES[kind].items():
        qid = f"{title.replace(' ', '_').lower()}_{name}"
        if split == "train" and template_of(qid) in VALIDATION_ONLY:
            continue
        answer, start = " ".join(facts[f] for f in answer_facts), where[answer_facts[0]]
        assert context[start:start + len(answer)] == answer, (qid, answer, context)
        qas.append({"id": qid, "question": question.format(**facts),
                    "answers": [{"text": answer, "answer_start": start}]})
    return {"title": title, "paragraphs": [{"context": context, "qas": qas}]}


def answers(split: dict) -> set[str]:
    """The split's answers, normalised as SQuAD scores them."""
    return {normalize_answer(a["text"]) for art in split["data"] for p in art["paragraphs"]
            for q in p["qas"] for a in q["answers"]}


def templates(split: dict) -> set[str]:
    return {template_of(q["id"]) for art in split["data"] for p in art["paragraphs"] for q in p["qas"]}


def check_held_out(train: dict, validation: dict) -> None:
    """Assert the split's promises: no shared paragraph, no shared answer, validation-only question types."""
    contexts = [{p["context"] for art in s["data"] for p in art["paragraphs"]} for s in (train, validation)]
    assert not contexts[0] & contexts[1], "a validation paragraph is in training"
    shared = answers(train) & answers(validation)
    assert not shared, f"{len(shared)} validation answers are training answers too: {sorted(shared)[:10]}"
    only = templates(validation) - templates(train)
    assert only == VALIDATION_ONLY, f"validation-only templates are {sorted(only)}, not {sorted(VALIDATION_ONLY)}"


def build(seed: int = SEED) -> tuple[dict, dict]:
    """Return (train, validation) SQuAD v1.1 dictionaries, held out as the module docstring says (asserted)."""
    every = [normalize_answer(w) for ws in (FIRST, LAST, TOWNS, RIVERS, TRADES, GOODS, COLOURS, ANIMALS, MONTHS,
                                            INSTRUMENTS) for w in ws]
    repeated = sorted({w for w in every if every.count(w) > 1})
    assert not repeated, f"a word is in two lists (or twice in one), normalised: {repeated}"
    rng = random.Random(seed)
    out = {}
    for split in SPLITS:
        n = RECORDS[split]
        records = [record("town", town_facts(rng, split, t), split)
                   for t in rng.sample(part(TOWNS, split), n["town"])]
        people = [f"{a} {b}" for a in part(FIRST, split) for b in part(LAST, split)]
        records += [record("inventor", inventor_facts(rng, split, name), split)
                    for name in rng.sample(people, n["inventor"])]
        rng.shuffle(records)
        out[split] = {"version": "1.1", "data": records}
    check_held_out(out["train"], out["validation"])
    return out["train"], out["validation"]


def dumps(split: dict) -> str:
    """The file's text, exactly as written."""
    return json.dumps(split, indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    train, validation = build()
    for name, split in zip(SPLITS, (train, validation), strict=True):
        path = HERE / f"{name}.json"
        path.write_text(dumps(split))
        n = sum(len(p["qas"]) for a in split["data"] for p in a["paragraphs"])
        print(f"{path.name}: {len(split['data'])} contexts, {n} questions")
