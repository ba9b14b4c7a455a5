"""utils.progress: nested loops show their outer bar only, and a closed bar lets the next one draw."""

import io

import pytest

from utils.progress import progress_bar


def _bar_lines(text: str) -> list[str]:
    """The lines a notebook shows after resolving carriage returns."""
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n") if line.rsplit("\r", 1)[-1].strip()]


def test_inner_bars_are_silent_while_an_outer_bar_is_open(monkeypatch):
    monkeypatch.delenv("QLORA_PROGRESS", raising=False)  # live bars, as in Colab
    out = io.StringIO()
    for _ in progress_bar(range(3), desc="runs", file=out, mininterval=0):
        for _ in progress_bar(range(5), desc="steps", file=out, mininterval=0):
            pass
    lines = _bar_lines(out.getvalue())
    assert len(lines) == 1 and lines[0].startswith("runs: 100%") and "3/3" in lines[0]
    assert "steps" not in out.getvalue()


@pytest.mark.parametrize("mode", ["live", "final"])
def test_a_finished_bar_frees_the_next_loop_and_an_exception_closes_it(monkeypatch, mode):
    monkeypatch.setenv("QLORA_PROGRESS", mode)
    out = io.StringIO()
    try:
        for i in progress_bar(range(4), desc="first", file=out, mininterval=0):
            if i == 2:
                raise RuntimeError("stop")
    except RuntimeError:
        pass
    for _ in progress_bar(range(2), desc="second", file=out, mininterval=0):
        pass
    bar = progress_bar(total=2, desc="manual", file=out, mininterval=0)
    bar.update(2)
    bar.close()
    lines = _bar_lines(out.getvalue())
    assert [line.split(":")[0] for line in lines] == ["first", "second", "manual"]
    assert "2/4" in lines[0] and "2/2" in lines[1] and "2/2" in lines[2]


def test_final_only_prints_one_line_per_loop_when_it_ends(monkeypatch):
    """Executed notebooks (papermill, nbval) keep one line per loop: no frames while it runs."""
    monkeypatch.setenv("QLORA_PROGRESS", "final")
    out = io.StringIO()
    bar = progress_bar(range(3), desc="runs", file=out, mininterval=0)
    for _ in bar:
        assert out.getvalue() == ""  # nothing while running
        for _ in progress_bar(range(5), desc="steps", file=out, mininterval=0):
            pass
    assert "\r" not in out.getvalue() and out.getvalue().count("\n") == 1
    assert out.getvalue().startswith("runs: 100%") and "3/3" in out.getvalue()
