"""What every exercise check shares: the failure type and the safe call of the learner's function.

A checker takes the learner's function (or answer), compares it with a reference on small, seeded inputs
and raises :class:`CheckFailed` with an explanation, or returns a short message on success. Checkers
never print; the check cell shows the returned message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch

from utils.paths import REPO_ROOT


class CheckFailed(AssertionError):
    """The exercise's answer is not right yet; the message says why and what to look at."""


def _call(fn: Callable, *args: Any) -> Any:
    """Call the learner's function, turning 'not written yet' and crashes into plain messages."""
    name = getattr(fn, "__name__", "your function")
    try:
        return fn(*args)
    except NotImplementedError:
        raise CheckFailed(f"`{name}` is not written yet: replace `raise NotImplementedError` with your code.") from None
    except Exception as err:  # the learner's bug, reported in words
        raise CheckFailed(f"`{name}` raised {type(err).__name__}: {err}") from None


def _passed(message: str, hidden: bool) -> str:
    """The ✓ message, marked when it was the hidden inputs that passed (a grader's report tells the two apart)."""
    return message + (" (hidden inputs)" if hidden else "")


def _converted(convert: Callable[[Any], Any], value: Any, call: str, what: str, hidden: bool) -> Any:
    """``convert(value)``. On the hidden inputs a value it cannot convert (e.g. ``None`` from a branch without
    ``return``) fails the check in words; the public checks keep raising the conversion's own error, as before."""
    try:
        return convert(value)
    except (TypeError, ValueError):
        if not hidden:
            raise
        raise CheckFailed(f"{call}: got {value!r:.80}, not {what}. Does every branch of your function `return` "
                          "one?") from None


def _number(value: Any, call: str, hidden: bool) -> float:
    """``float(value)``, failing in words on the hidden inputs (see :func:`_converted`)."""
    return _converted(float, value, call, "a number", hidden)


def _int_list(value: Any, call: str, hidden: bool) -> list[int]:
    """``[int(v) for v in value]``, failing in words on the hidden inputs (see :func:`_converted`)."""
    return _converted(lambda values: [int(v) for v in values], value, call, "a list of whole numbers", hidden)


def _inputs() -> list[torch.Tensor]:
    """The seeded tensors the quantization checks (notebooks 01, 02) try: small Gaussian weights, a hand-made
    block with a tie, and a heavy-tailed one (cubed Gaussian)."""
    g = torch.Generator().manual_seed(0)
    return [torch.randn(256, generator=g) * 0.02, torch.tensor([0.7, -0.36, 0.1, 0.0, -0.7]),
            torch.randn(1000, generator=g).pow(3)]


ANSWERS_DIR = REPO_ROOT / "answers"  # the instructor edition's answer keys; a classroom release has none


def answer_key(module: str, name: str) -> dict[str, str] | None:
    """``{"correct": letter, "explanation": ...}`` of question ``name`` of checker module ``module`` (``nb01``), from
    ``answers/<module>.json``; None where the file is absent (a student release)."""
    path = ANSWERS_DIR / f"{module}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))[name]


class Choice:
    """A "why" question answered by choosing a letter: each option is a statement. The answer key is not in this
    module: it lies in ``answers/`` (:func:`answer_key`), which the instructor edition has and a classroom release
    does not. With the key, a check names the right option once it is chosen and answers a wrong choice with a hint
    that points back to the lesson; without it, it only checks that one option was chosen."""

    def __init__(self, module: str, name: str, question: str, options: dict[str, str], hint: str) -> None:
        self.module, self.name, self.question, self.options, self.hint = module, name, question, options, hint

    def _repr_markdown_(self) -> str:  # a notebook shows the question and its options
        return f"**{self.question}**\n\n" + "\n".join(f"- ({k}) {v}" for k, v in sorted(self.options.items()))

    def check(self, answer: Any, graded: bool = False) -> str:
        """✓ and the explanation for the right letter; :class:`CheckFailed` with a hint otherwise. Without the answer
        key, a valid letter is only recorded, unless ``graded`` (the teacher's grader), where a missing key is the
        grader's error (RuntimeError), not the student's."""
        letters = ", ".join(f'"{k}"' for k in sorted(self.options))
        if answer is None:
            raise CheckFailed(f"not answered yet: set the answer to one of {letters}.")
        key = str(answer).strip().lower().strip("()")
        if key not in self.options:
            raise CheckFailed(f"{str(answer)[:80]!r} is not one of the options {letters}.")
        solution = answer_key(self.module, self.name)
        if solution is None:
            if graded:
                raise RuntimeError(f"no answer key for {self.module}.{self.name}: grade from the course's checkout, "
                                   f"which has {ANSWERS_DIR.name}/{self.module}.json")
            return f"✓ ({key}) is one of the options; your teacher's grader checks whether it is the right one."
        if solution["correct"] not in self.options:
            raise ValueError(f"answers/{self.module}.json: {self.name}'s key {solution['correct']!r} is not an option")
        if key != solution["correct"]:
            raise CheckFailed(f"not ({key}): {self.options[key]!r} does not answer it. Hint: {self.hint}")
        return f"✓ ({key}) {solution['explanation']}"
