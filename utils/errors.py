"""The one error type the course raises for bad input: a file, a row, a field, a setting or a path a user gave.

Every public entry point (data loaders, config and target checks, the memory estimator, the sweep, training,
grading and export commands) checks what it is given *before* it spends time, and raises :class:`InputError`
with a message in three parts: where (the file and row, the field or the setting), what was expected, and how
to fix it. :func:`input_error` builds that message, so they all read the same way.

``InputError`` is a ``ValueError``: code that catches ``ValueError`` (and ``ConfigError``, a subclass) keeps
working.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user; the message says where, what was expected and how to fix it."""


def input_error(where: str, problem: str, fix: str) -> InputError:
    """``InputError("<where>: <problem>. Fix: <fix>")``, e.g.
    ``input_error("data/tickets.csv, row 7", "the label is empty", "fill it in or drop the row")``."""
    return InputError(f"{where}: {problem.rstrip('.')}. Fix: {fix.rstrip('.')}.")
