"""The README's troubleshooting table, generated: each bad input a user is likely to give, and the message
they get. Each case really runs (offline, in a temporary folder, in a second or less), so the table cannot
drift from the code: ``python -m tools.readme render`` writes it, ``tests/test_readme.py`` checks it, and
``tests/test_troubleshooting.py`` requires every case to raise :class:`utils.errors.InputError`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from utils.errors import InputError

SQUAD_ONE = {"data": [{"title": "t", "paragraphs": [{"context": "Ann came home.", "qas": [
    {"id": "q0", "question": "Who came home?", "answers": [{"text": "Ann", "answer_start": 0}]}]}]}]}


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _labelled(folder: Path, name: str, content: str | bytes) -> None:
    from utils import classification

    classification.load_labelled(_write(folder, name, content))


def _squad(folder: Path, data: dict) -> None:
    from utils.qa import data as qa_data

    qa_data.load_squad_json(_write(folder, "train.json", json.dumps(data)))


def _misplaced_answer(folder: Path) -> None:
    bad = json.loads(json.dumps(SQUAD_ONE))
    bad["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 4
    _squad(folder, bad)


def _missing_field(folder: Path) -> None:
    bad = json.loads(json.dumps(SQUAD_ONE))
    del bad["data"][0]["paragraphs"][0]["qas"][0]["answers"]
    _squad(folder, bad)


def _sweep_unknown_parameter(folder: Path) -> None:
    from utils.experiments.sweep import check_sweep
    from utils.notebooks import NOTEBOOK_DIR

    check_sweep(NOTEBOOK_DIR / "03_lora_rank_ablation.ipynb", [{"LORA_RANK": [4]}], folder / "sweep")


def _qa_setting(**setting: object) -> None:
    from utils.qa.config import QAConfig

    QAConfig.resolve("smoke", **setting)


def _train_over_earlier_run(folder: Path) -> None:
    from utils.qa import run_folder
    from utils.qa.config import QAConfig

    run = folder / "phi2-qa-adapter"
    run.mkdir()
    _write(run, "adapter_config.json", "{}")
    run_folder.check_output_dir(run, QAConfig.resolve("smoke"))


# (what the user did, a function that does it in a temporary folder and must raise InputError)
CASES: list[tuple[str, Callable[[Path], None]]] = [
    ("an empty CSV", lambda d: _labelled(d, "tickets.csv", "")),
    ("a CSV with a header and no rows", lambda d: _labelled(d, "tickets.csv", "text,label\n")),
    ("a CSV separated by ';'", lambda d: _labelled(d, "tickets.csv", "text;label\na;b\n")),
    ("a CSV saved as Latin-1", lambda d: _labelled(d, "tickets.csv", "text,label\ncaf\xe9,a\nb,b\n".encode("latin-1"))),
    ("a JSON Lines file with a broken line",
     lambda d: _labelled(d, "tickets.jsonl", '{"text": "a", "label": "x"}\n{"text": "b" "label": "y"}\n')),
    ("a class with one example (stratified split)",
     lambda d: _labelled(d, "tickets.csv", "text,label\n" + "".join(f"t{i},a\n" for i in range(6)) + "u,b\n")),
    ("a SQuAD file without a field", _missing_field),
    ("a SQuAD answer that is not at its answer_start", _misplaced_answer),
    ("a sweep parameter the notebook does not have", _sweep_unknown_parameter),
    ("LoRA target modules as one string", lambda d: _qa_setting(target_modules="q_proj")),
    ("LoRA rank 0", lambda d: _qa_setting(lora_rank=0)),
    ("training into the folder of an earlier run", _train_over_earlier_run),
]


def run_case(case: Callable[[Path], None]) -> str:
    """The message ``case`` raises, with its temporary folder left out of paths.

    Raises:
        AssertionError: the case raised nothing, or an error that is not an InputError.
    """
    with tempfile.TemporaryDirectory() as tmp:
        try:
            case(Path(tmp))
        except InputError as err:
            return str(err).replace(str(Path(tmp).resolve()) + "/", "").replace(tmp + "/", "")
    raise AssertionError(f"{case} raised no InputError")


def table() -> str:
    """The Markdown table: one row per case, the message as the user sees it."""
    rows = ["| you gave | the message you get |", "|---|---|"]
    for what, case in CASES:
        message = run_case(case).replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {what} | {message} |")
    return "\n".join(rows)
