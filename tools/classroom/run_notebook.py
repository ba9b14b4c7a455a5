"""Execute one composed submission notebook: runs inside the sandbox, so it imports nothing from the course.

    python run_notebook.py SUBMISSION.ipynb EXECUTED.ipynb SECONDS_PER_CELL SECONDS_PER_SETUP_CELL

Every cell runs (errors are kept in the outputs, as the student would see them); a cell over its limit is
interrupted and the next one runs, so the recorder (the last cell) still runs after an endless exercise. The release's
set-up cells (metadata ``grading: setup``: their imports take seconds) and the recorder (``grading: record``: it
bounds each test it runs itself) have the longer limit.
"""

import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

source, target, seconds, setup_seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
nb = nbformat.read(source, as_version=4)
client = NotebookClient(nb, timeout=seconds, allow_errors=True, interrupt_on_timeout=True, kernel_name="python3",
                        resources={"metadata": {"path": "."}},
                        timeout_func=lambda cell: setup_seconds if cell.metadata.get("grading") in ("setup", "record")
                        else seconds)
try:
    client.execute()
except DeadKernelError as err:  # the student's code ended the kernel: what ran so far is kept
    print(f"kernel died: {err}", file=sys.stderr)
nbformat.write(nb, target)
