"""How the suite is shared between pytest-xdist workers (``./run.sh test`` runs one per core).

Each test file and each notebook is one unit of work: a notebook's cells run in order in one kernel on one
worker, and a file's module-scoped fixtures are built once. Notebook 05 evaluates the adapter that notebook
04 trains, so the two form one unit, run by one worker in that order. Notebooks go first, in
:data:`NOTEBOOK_ORDER`, so that the workers finish close together.

(xdist's own ``--dist loadgroup`` cannot do this under pytest 9: it renames ``item._nodeid``, which pytest 9
no longer reads, so the groups are silently ignored; the scheduler below groups by file name instead.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# notebook kernels (nbval) inherit this: each progress bar prints its final line only, as in `./run.sh course`
os.environ.setdefault("QLORA_PROGRESS", "final")

SHARED_GROUPS = {  # notebook -> unit of work, for notebooks that read what another one wrote
    "04_phi2_qlora_training.ipynb": "notebooks 04+05",
    "05_phi2_qa_evaluation.ipynb": "notebooks 04+05",
}


def unit_of_work(nodeid: str) -> str:
    """The file of a test or notebook cell, or its shared group: what one worker runs from start to end."""
    file = nodeid.split("::", 1)[0]
    return SHARED_GROUPS.get(Path(file).name, file)


# The order units start in. xdist hands each worker two units at the start (the 1st and 3rd to one worker, the
# 2nd and 4th to the other), then one more whenever a worker has fewer than two left. So: the longest unit (04+05,
# about 40% of the notebook time) alone on one worker, with 02; 03 then 06 on the other. Notebook 04 converts
# SmolLM2 from its GGUF file in its first minute; 06 needs it too, and by the time 03 is done it is there
# (started together, both workers converted it: about 20 s of work done twice).
NOTEBOOK_ORDER = ["notebooks 04+05", "03_lora_rank_ablation.ipynb", "02_nf4_vs_int4.ipynb",
                  "06_custom_classification.ipynb", "01_quantization_visualized.ipynb"]


def _order(item: pytest.Item) -> tuple[int, int]:
    """Notebooks before unit tests, in :data:`NOTEBOOK_ORDER` (a notebook not listed after those); items of a
    unit, and the unit tests, keep their collection order (the sort is stable)."""
    path = Path(str(item.path))
    if path.suffix != ".ipynb":
        return (1, 0)
    unit = Path(unit_of_work(item.nodeid)).name
    return (0, NOTEBOOK_ORDER.index(unit) if unit in NOTEBOOK_ORDER else len(NOTEBOOK_ORDER))


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
