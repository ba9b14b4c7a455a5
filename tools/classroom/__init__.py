"""Classroom assignments with otter-grader: release without solutions, grade in a sandbox, export a gradebook.

    python -m tools.classroom release OUT --repo https://github.com/TEACHER/qlora-assignments [--branch main]
    python -m tools.classroom publish OUT/student --push-to URL_OR_PATH [--branch main]
    python -m tools.classroom grade SUBMISSIONS --release OUT --out GRADES_DIR [--due ...] [--late-penalty ...]
    python -m tools.classroom export GRADES_DIR --format canvas|gradescope [--roster ROSTER.csv] --out FILE.csv

See the README's "Classroom use" for the whole round, and :mod:`tools.classroom.grade` for what the sandbox defends.
"""
