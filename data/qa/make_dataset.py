"""Write the course's own small QA set (SQuAD v1.1 format) from made-up facts: `python data/qa/make_dataset.py`.

Every place, person and number below is invented, so the set is free of copyright (CC0) and no
model can know the answers in advance: they can only come from the context. The script is
deterministic (seeded), so re-running it rewrites the same two files byte for byte.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 2026

FIRST = ["Edda", "Tomas", "Ilse", "Marek", "Nadia", "Oren", "Pia", "Ruben", "Selma", "Timo", "Una", "Vera",
         "Wendel", "Yara", "Zeno", "Alma", "Bruno", "Cora", "Dario", "Elin", "Falk", "Greta", "Hugo", "Ines"]
LAST = ["Varn", "Holt", "Brenn", "Castel", "Dorne", "Eske", "Fyle", "Garrow", "Hessel", "Ibbot", "Jarre",
        "Kell", "Lund", "Marrow", "Nolte", "Orrin", "Pell", "Quist", "Rook", "Sallow"]
TOWNS = ["Brindlemoor", "Caskwell", "Dunmarrow", "Elderholm", "Fernwick", "Gallowmere", "Harrowdale",
         "Ivybridge", "Juniper Cross", "Kestrel Bay", "Larkspur", "Mossgate", "Nettlefield", "Oakhollow",
         "Pebblestead", "Quillbury", "Ravenshelf", "Saltmarsh", "Thistlewood", "Underfell"]
RIVERS = ["Oss", "Wend", "Tarra", "Lune", "Brisk", "Hollow", "Mere", "Sable", "Corran", "Ythe"]
TRADES = ["clockmaker", "miller", "glassblower", "weaver", "cartographer", "beekeeper", "potter", "shipwright"]
GOODS = ["blue glass", "copper kettles", "wool blankets", "pear cider", "paper lanterns", "oak barrels",
         "salted fish", "silver buttons", "linen sails", "honey cakes"]
COLOURS = ["green", "red", "yellow", "grey", "white", "violet", "orange", "black"]
ANIMALS = ["heron", "otter", "fox", "owl", "stag", "hare", "crane", "badger"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
INSTRUMENTS = ["brass telescope", "water clock", "printing press", "wind gauge", "sewing machine",
               "steam whistle", "rope bridge", "lighthouse lens"]


def town_record(rng: random.Random, town: str) -> tuple[str, list[tuple[str, str]]]:
    founder = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    year, river, trade = rng.randint(1100, 1790), rng.choice(RIVERS), rng.choice(TRADES)
    goods, colour, animal = rng.choice(GOODS), rng.choice(COLOURS), rng.choice(ANIMALS)
    month, people = rng.choice(MONTHS), rng.randint(2, 95) * 100
    context = (f"{town} is a small town on the river {river}. It was founded in {year} by a {trade} named "
               f"{founder}. Today about {people} people live there, and the town is known for its {goods}. "
               f"Its flag shows {'an' if colour[0] in 'aeiou' else 'a'} {colour} {animal}, and every {month} the town holds a market by the river.")
    qas = [(f"Who founded {town}?", founder),
           (f"In which year was {town} founded?", str(year)),
           (f"On which river is {town}?", river),
           (f"What is {town} known for?", goods),
           (f"Which animal is on the flag of {town}?", animal),
           (f"What colour is the {animal} on the flag of {town}?", colour),
           (f"In which month is the market of {town} held?", month),
           (f"What was the trade of the founder of {town}?", trade)]
    return context, qas


def inventor_record(rng: random.Random, name: str) -> tuple[str, list[tuple[str, str]]]:
    town, device, year = rng.choice(TOWNS), rng.choice(INSTRUMENTS), rng.randint(1650, 1890)
    teacher = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    prize, partner = rng.randint(3, 60) * 10, rng.choice(FIRST)
    context = (f"{name} was an inventor from {town}. As a young apprentice {name.split()[0]} studied under "
               f"{teacher}. In {year} {name.split()[0]} built a new {device}, which won a prize of {prize} "
               f"gold coins. {name.split()[0]} later worked with a friend called {partner}.")
    qas = [(f"Where was {name} from?", town),
           (f"Who taught {name}?", teacher),
           (f"What did {name} build?", device),
           (f"In which year did {name} build the {device}?", str(year)),
           (f"How many gold coins did the {device} of {name} win?", str(prize)),
           (f"Who did {name} later work with?", partner)]
    return context, qas


def build(seed: int = SEED) -> tuple[dict, dict]:
    """Return (train, validation) SQuAD v1.1 dictionaries; validation uses other contexts than train."""
    rng = random.Random(seed)
    records = [(f"town_{t}", *town_record(rng, t)) for t in TOWNS]
    people = sorted({f"{a} {b}" for a in FIRST for b in LAST})
    for name in rng.sample(people, 20):
        records.append((f"inventor_{name}", *inventor_record(rng, name)))
    rng.shuffle(records)
    splits = {"train": records[:32], "validation": records[32:]}
    out = {}
    for split, recs in splits.items():
        data = []
        for title, context, qas in recs:
            items = []
            for i, (question, answer) in enumerate(qas):
                start = context.index(answer)
                items.append({"id": f"{title.replace(' ', '_').lower()}_{i}", "question": question,
                              "answers": [{"text": answer, "answer_start": start}]})
            data.append({"title": title, "paragraphs": [{"context": context, "qas": items}]})
        out[split] = {"version": "1.1", "data": data}
    return out["train"], out["validation"]


if __name__ == "__main__":
    train, validation = build()
    for name, split in (("train", train), ("validation", validation)):
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(split, indent=1, ensure_ascii=False) + "\n")
        n = sum(len(p["qas"]) for a in split["data"] for p in a["paragraphs"])
        print(f"{path.name}: {len(split['data'])} contexts, {n} questions")
