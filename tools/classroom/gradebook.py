"""Totals a gradebook imports: Canvas's gradebook CSV, Gradescope's score upload, or a plain CSV.

    python -m tools.classroom export GRADES --format canvas --roster canvas_gradebook.csv --assignment "QLoRA 01" --out canvas_import.csv
    python -m tools.classroom export GRADES --format gradescope --roster gradescope_roster.csv --out gradescope.csv
    python -m tools.classroom export GRADES --format plain --out totals_per_student.csv

The score is the sum over the student's graded notebooks of ``totals.csv``'s raw score and the points you wrote into
``manual.csv``'s score column (the hand-marked answers), less the late penalty. A blank manual score is an error that
names it (``--unmarked-as-zero`` exports anyway). A student's folder name must match the roster's login, SIS id, email (or the part before its @) or name:

- **Canvas** (Grades → Export gives the roster): writes ``Student, ID, SIS User ID, SIS Login ID, Section`` and one
  column named ``--assignment`` (Canvas's Grades → Import reads it and creates or updates that assignment).
- **Gradescope** (the roster CSV of Course → Roster → Download): writes ``Name, Email, SID, Total Score``, which an
  assignment's "Upload scores" reads.

A roster student with no submission gets an empty score (not 0): the gradebook keeps what it had. A graded student
not in the roster is an error that names them, so that no grade is silently dropped.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from utils.errors import input_error
from utils.paths import write_text_atomic

FORMATS = ("canvas", "gradescope", "plain")
CANVAS_KEYS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
GRADESCOPE_KEYS = ("Name", "Email", "SID")


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def manual_scores(grades: Path, unmarked_as_zero: bool = False) -> dict[tuple[str, str], float]:
    """``{(student, notebook): points}`` the teacher wrote into ``GRADES/manual.csv``'s score column. InputError for
    a score that is not a number between 0 and the question's points, and for a blank one unless
    ``unmarked_as_zero``."""
    path = grades / "manual.csv"
    if not path.is_file():
        return {}
    scores: dict[tuple[str, str], float] = {}
    blank = []
    for line, row in enumerate(_rows(path), start=2):
        text = row.get("score", "").strip()
        if not text:
            blank.append(f"{row['student']}/{row['question']}")
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0 <= value <= float(row["possible"]):
            raise input_error(f"{path}, line {line} ({row['student']}, {row['question']})",
                              f"the score {text!r} is not a number from 0 to {row['possible']}", "correct it")
        key = (row["student"], row["notebook"])
        scores[key] = scores.get(key, 0.0) + value
    if blank and not unmarked_as_zero:
        raise input_error(str(path), f"{len(blank)} answer(s) have no score yet ({', '.join(blank[:5])}"
                          f"{' ...' if len(blank) > 5 else ''})",
                          "write each score into the score column, or pass --unmarked-as-zero to export anyway")
    return scores


def student_totals(grades: Path, unmarked_as_zero: bool = False) -> dict[str, tuple[float, float]]:
    """``{student: (score, possible)}`` over their notebooks: ``totals.csv``'s raw score plus the hand-marked points
    of ``manual.csv``, less the late penalty of ``totals.csv``."""
    path = grades / "totals.csv"
    if not path.is_file():
        raise input_error(str(grades), "has no totals.csv", "give the --out folder of `python -m tools.classroom grade`")
    manual = manual_scores(grades, unmarked_as_zero)
    manual_possible: dict[tuple[str, str], float] = {}
    for row in _rows(grades / "manual.csv") if (grades / "manual.csv").is_file() else []:
        key = (row["student"], row["notebook"])
        manual_possible[key] = manual_possible.get(key, 0.0) + float(row["possible"])
    totals: dict[str, tuple[float, float]] = {}
    for row in _rows(path):
        key = (row["student"], row["notebook"])
        raw = float(row["raw_score"]) + manual.get(key, 0.0)
        score = raw * (1 - float(row["penalty_percent"]) / 100)
        before = totals.get(row["student"], (0.0, 0.0))
        totals[row["student"]] = (before[0] + score, before[1] + float(row["possible"]) + manual_possible.get(key, 0.0))
    return totals


def _read_roster(path: Path | None, keys: tuple[str, ...], kind: str) -> list[dict[str, str]]:
    if path is None or not path.is_file():
        raise input_error(f"--roster {path}", "is not a file", f"export the roster from {kind} and give its CSV")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    missing = [k for k in keys if rows and k not in rows[0]] if rows else list(keys)
    if missing:
        raise input_error(f"--roster {path}", f"lacks the column(s) {missing} of a {kind} roster",
                          f"export it again from {kind} (its first columns are {', '.join(keys)})")
    # Canvas puts a "Points Possible" row (and sometimes a muted-assignments row) under the header
    return [r for r in rows if r.get(keys[0], "").strip() and "Points Possible" not in r.get(keys[0], "")]


def _names(row: dict[str, str]) -> set[str]:
    values = {v.strip().lower() for k, v in row.items() if k in CANVAS_KEYS + GRADESCOPE_KEYS and v and v.strip()}
    return values | {v.split("@", 1)[0] for v in values if "@" in v}


def _match(totals: dict[str, tuple[float, float]], roster: list[dict[str, str]], path: Path) -> dict[int, str]:
    """``{roster row index: student}``; InputError naming graded students the roster lacks or matches twice."""
    matched: dict[int, str] = {}
    for student in totals:
        rows = [i for i, r in enumerate(roster) if student.strip().lower() in _names(r)]
        if len(rows) != 1:
            problem = "is not in the roster" if not rows else f"matches {len(rows)} roster rows"
            raise input_error(f"--roster {path}", f"graded student {student!r} {problem}",
                              "name each student's folder by their login, SIS id or email as the roster has it")
        matched[rows[0]] = student
    return matched


def export(grades: Path, fmt: str, out: Path, roster: Path | None = None, assignment: str | None = None,
           overwrite: bool = False, unmarked_as_zero: bool = False) -> int:
    """Write the gradebook file; returns how many students got a score."""
    if fmt not in FORMATS:
        raise input_error(f"--format {fmt}", f"is not one of {', '.join(FORMATS)}", "choose one of them")
    if out.exists() and not overwrite:
        raise input_error(f"--out {out}", "exists already", "pass --overwrite to replace it, or give another name")
    totals = student_totals(grades, unmarked_as_zero)
    buffer = io.StringIO()
    if fmt == "plain":
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["student", "score", "possible"])
        writer.writerows([s, f"{round(v[0], 2):g}", f"{v[1]:g}"] for s, v in sorted(totals.items()))
    else:
        keys, kind = (CANVAS_KEYS, "Canvas") if fmt == "canvas" else (GRADESCOPE_KEYS, "Gradescope")
        if fmt == "canvas" and not assignment:
            raise input_error("--assignment", "is missing", "name the Canvas assignment column, e.g. \"QLoRA 01\"")
        rows = _read_roster(roster, keys, kind)
        matched = _match(totals, rows, roster)
        score_column = assignment if fmt == "canvas" else "Total Score"
        writer = csv.DictWriter(buffer, fieldnames=[*keys, score_column], lineterminator="\n")
        writer.writeheader()
        for i, row in enumerate(rows):
            score = f"{round(totals[matched[i]][0], 2):g}" if i in matched else ""
            writer.writerow({**{k: row.get(k, "") for k in keys}, score_column: score})
    write_text_atomic(out, buffer.getvalue())
    return len(totals)
