"""What every exercise check shares: the failure type and the safe call of the learner's function.

A checker takes the learner's function (or answer), compares it with a reference on small, seeded inputs
and raises :class:`CheckFailed` with an explanation, or returns a short message on success. Checkers
never print; the check cell shows the returned message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


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


def _inputs() -> list[torch.Tensor]:
    """The seeded tensors the quantization checks (notebooks 01, 02) try: small Gaussian weights, a hand-made
    block with a tie, and a heavy-tailed one (cubed Gaussian)."""
    g = torch.Generator().manual_seed(0)
    return [torch.randn(256, generator=g) * 0.02, torch.tensor([0.7, -0.36, 0.1, 0.0, -0.7]),
            torch.randn(1000, generator=g).pow(3)]


class Choice:
    """A "why" question answered by choosing a letter: each option is a statement; the checker names the right one
    only once it is chosen, and answers a wrong choice with a hint that points back to the lesson."""

    def __init__(self, question: str, options: dict[str, str], correct: str, explanation: str, hint: str) -> None:
        if correct not in options:
            raise ValueError(f"the correct option {correct!r} is not among {sorted(options)}")
        self.question, self.options, self.correct = question, options, correct
        self.explanation, self.hint = explanation, hint

    def _repr_markdown_(self) -> str:  # a notebook shows the question and its options
        return f"**{self.question}**\n\n" + "\n".join(f"- ({k}) {v}" for k, v in sorted(self.options.items()))

    def check(self, answer: Any) -> str:
        """✓ and the explanation for the right letter; :class:`CheckFailed` with a hint otherwise."""
        letters = ", ".join(f'"{k}"' for k in sorted(self.options))
        if answer is None:
            raise CheckFailed(f"not answered yet: set the answer to one of {letters}.")
        key = str(answer).strip().lower().strip("()")
        if key not in self.options:
            raise CheckFailed(f"{answer!r} is not one of the options {letters}.")
        if key != self.correct:
            raise CheckFailed(f"not ({key}): {self.options[key]!r} does not answer it. Hint: {self.hint}")
        return f"✓ ({key}) {self.explanation}"
