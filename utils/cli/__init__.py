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
from typing import Any


def make_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` named ``python -m <prog>`` whose help is the command's docstring, as written."""
    return argparse.ArgumentParser(prog=f"python -m {prog}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_value(text: str) -> Any:
    """A command-line value as Python: a literal (``8``, ``2e-4``, ``[4, 8]``, ``True``, ``'all-linear'``),
    else the text itself as a string (``q_proj``, ``outputs/run1``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def add_parameter_option(parser: argparse.ArgumentParser, help: str) -> None:  # noqa: A002
    """``-p NAME VALUE`` (repeatable): a notebook's parameters-cell constant and its value (:func:`parse_value`)."""
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help=help)
