"""The course's commands, one module each (``python -m utils.cli.NAME``), and what they share.

``course``    execute the notebooks in order (``./run.sh course``)
``finetune``  notebook 04's QLoRA training as a command, for long runs, rank sweeps and several GPUs
``sweep``     re-run a notebook over a parameter grid
``export``    merge an adapter and write it as GGUF for llama.cpp / Ollama (with its check)

The maintainers' and teachers' commands (the README's figures, publishing, classroom releases and grading) are in the
``tools`` package beside ``utils``: ``python -m tools.readme``, ``tools.editions``, ``tools.classroom``.

This module holds the one argument-parser helper and the one value parser they all use.
"""

from __future__ import annotations

import argparse
import ast
import re
from typing import Any

from utils.errors import input_error

# a negative number as a value, not an option: -3, -1.5, .5e-3, -1e-4 (argparse's own pattern misses exponents, so
# "--learning-rate -1e-4" read "-1e-4" as an unknown option and said "expected one argument")
NEGATIVE_NUMBER = re.compile(r"^-(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$")
# what is meant as a Python literal: a list, tuple, dict or quoted string (by its first or last character), or a
# number (digits, a point, an exponent, a sign; e.g. "1e-3", "-.5", "1.2.3"), as opposed to a plain word or path
_LITERAL_LOOKING = re.compile(r"""^\s*(?:[\[({'"]|[-+]?\.?\d[\d._eE+-]*\s*$)|[\])}'"]\s*$""")


def make_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` named ``python -m <prog>`` whose help is the command's docstring, as written, that reads
    a negative number (``-1e-4``, ``-3``) after an option as its value (:data:`NEGATIVE_NUMBER`), so that the
    value's own check says what is wrong with it."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser._negative_number_matcher = NEGATIVE_NUMBER  # noqa: SLF001 - argparse's documented-in-source hook
    return parser


def parse_value(text: str, where: str) -> Any:
    """A command-line value as Python: a literal (``8``, ``2e-4``, ``[4, 8]``, ``True``, ``'all-linear'``),
    else the text itself as a string (``q_proj``, ``outputs/run1``).

    Args:
        where: the option the value came from, for the message (e.g. ``--grid LORA_RANKS``; ``""`` where the caller
            names it, as argparse does).

    Raises:
        InputError: ``text`` looks like a literal (a list, tuple, dict, quoted string or number:
            ``'[4'``, ``1.2.3``, ``[q_proj]``) but is not valid Python; the message gives the parse error. Taking it
            as a string would pass the typo on (``--grid LORA_RANKS '[4'`` was a run with LORA_RANKS = '[4').
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
        if not _LITERAL_LOOKING.search(text):
            return text
        reason = (f"{err.msg}" if isinstance(err, SyntaxError) else
                  "it holds a name or an expression; a string inside must be quoted, e.g. ['q_proj']")
        raise input_error(f"{where} {text!r}".strip(), f"it looks like a Python literal (a list, number or quoted "
                          f"string) but is not valid Python ({reason})", "write it as a Python literal, e.g. '[4]', "
                          "'[4, 8]', '2e-4' or \"'q_proj'\", in single quotes on the command line so that the shell "
                          "passes it whole; plain text (a name or a path) needs no quotes") from None


def value_argument(text: str) -> Any:
    """:func:`parse_value` as an argparse ``type``: an unparsable literal is argparse's usage error (exit status 2,
    ``argument --flag: ...``), with :func:`parse_value`'s message."""
    try:
        return parse_value(text, "")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_parameter_option(parser: argparse.ArgumentParser, help: str) -> None:  # noqa: A002
    """``-p NAME VALUE`` (repeatable): a notebook's parameters-cell constant and its value (:func:`parse_value`)."""
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help=help)
