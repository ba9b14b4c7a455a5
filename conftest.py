"""How the suite is shared between pytest-xdist workers (``./run.sh test`` runs one per core).

Each test file and each notebook is one unit of work: a notebook's cells run in order in one kernel on one
worker, and a file's module-scoped fixtures are built once. Notebook 05 evaluates the adapter that notebook
04 trains, so the two form one unit, run by one worker in that order. Notebooks go first, the later
(longer-training) ones first, so that the workers finish close together.

(xdist's own ``--dist loadgroup`` cannot do this under pytest 9: it renames ``item._nodeid``, which pytest 9
no longer reads, so the groups are silently ignored; the scheduler below groups by file name instead.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_GROUPS = {  # notebook -> unit of work, for notebooks that read what another one wrote
    "04_phi2_qlora_training.ipynb": "notebooks 04+05",
    "05_phi2_qa_evaluation.ipynb": "notebooks 04+05",
}


def unit_of_work(nodeid: str) -> str:
    """The file of a test or notebook cell, or its shared group: what one worker runs from start to end."""
    file = nodeid.split("::", 1)[0]
    return SHARED_GROUPS.get(Path(file).name, file)


def _order(item: pytest.Item) -> tuple[int, int]:
    """Notebooks before unit tests, the unit holding the highest notebook number first; items of a unit, and
    the unit tests, keep their collection order (the sort is stable)."""
    path = Path(str(item.path))
    if path.suffix != ".ipynb":
        return (1, 0)
    unit = unit_of_work(item.nodeid)
    numbers = [int(name[:2]) for name, u in SHARED_GROUPS.items() if u == unit] or [int(path.name[:2])]
    return (0, -max(numbers))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_order)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: called only when xdist runs the suite (-n N)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN001, ANN201
    from xdist.scheduler import LoadScopeScheduling

    class UnitsOfWork(LoadScopeScheduling):
        """xdist's per-scope scheduler with :func:`unit_of_work` as the scope, in collection order."""

        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid)

    config.option.loadscopereorder = False  # keep _order's order (xdist would sort units by item count)
    return UnitsOfWork(config, log)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):  # noqa: ANN201
    """Fail a notebook cell whose output is noise (utils.notebooks.output_noise): a Trainer table, a widget
    progress bar, or a warning outside the allow-list. nbval keeps the cell's outputs in ``test_outputs``."""
    result = yield
    outputs = getattr(item, "test_outputs", None)
    if outputs:
        from utils.notebooks import output_noise

        problems = output_noise(outputs)
        if problems:
            raise AssertionError(f"{item.nodeid} printed noise:\n  " + "\n  ".join(problems))
    return result
