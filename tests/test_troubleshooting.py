"""The README's troubleshooting table: every case raises our InputError, from our code, with a message that
names the file or setting (tools/troubleshooting.py)."""

from __future__ import annotations

import pytest

from tools import troubleshooting


@pytest.mark.parametrize(("what", "case"), troubleshooting.CASES, ids=[what for what, _ in troubleshooting.CASES])
def test_each_case_is_an_input_error_that_says_where_and_how_to_fix(what, case):
    message = troubleshooting.run_case(case)
    assert "Fix:" in message, message
    assert "/tmp" not in message and "\n" not in message, message  # what the table shows


def test_a_case_that_raises_nothing_is_reported():
    with pytest.raises(AssertionError, match="raised no InputError"):
        troubleshooting.run_case(lambda folder: None)
