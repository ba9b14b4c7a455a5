"""Progress a learner can read, live and in a saved notebook: text bars that finish, one per long task.

:func:`progress_bar` is a plain-text tqdm bar on stdout. A ``tqdm.auto`` bar in a notebook is an ipywidget,
and a saved (papermill, nbval, GitHub) notebook keeps only its first frame, "0%", forever; text bars are
redrawn with carriage returns, which every notebook viewer and terminal resolves to the last frame.

What a learner sees while a ``transformers.Trainer`` runs: one such bar, nothing else.

By default a Trainer in a notebook draws an HTML table that grows by a row per logged step (its
``NotebookProgressCallback``), and with ``disable_tqdm`` it prints every log dict instead (``PrinterCallback``).
A cell that trains eleven runs then prints eleven tables. The course keeps the losses in the trainer's
``state.log_history`` (and plots them), and shows at most one bar per training: :func:`quiet`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.std import tqdm
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

# transformers' notebook table is NotebookProgressCallback (transformers.utils.notebook, which needs IPython: matched
# by name, so a machine without IPython, such as the GPU benchmark's, can import this module)
_NOISY = ("NotebookProgressCallback", ProgressCallback.__name__, PrinterCallback.__name__)


FINAL_ONLY_ENV = "QLORA_PROGRESS"  # "final": each bar prints one line when it closes, nothing while it runs


def final_only() -> bool:
    """Whether bars print only their final line (``$QLORA_PROGRESS == "final"``): set where nobody watches the bar
    live and its frames would be saved, i.e. notebooks executed by ``python -m utils.cli.course`` (papermill) and
    under the test suite (nbval). Interactive use (Colab, Jupyter, a terminal) keeps live bars."""
    return os.environ.get(FINAL_ONLY_ENV, "") == "final"


class _CourseBar(tqdm):
    """A text tqdm bar that stays silent while another course bar is open: a loop inside a loop (the training steps
    of each run of a sweep, the runs of each size of a curve) shows the outer bar only, so a finished cell keeps one
    line per loop it ran, not one per inner task. With :func:`final_only` it prints that line once, at the end."""

    open_bars = 0  # course bars drawn and not yet closed, in this process

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if _CourseBar.open_bars:
            kwargs["disable"] = True
        self._final_only = final_only()
        if self._final_only:
            kwargs["delay"] = float("inf")  # never drawn while running; close() writes the final line
        super().__init__(*args, **kwargs)
        self._counted = not self.disable
        if self._counted:
            _CourseBar.open_bars += 1

    def close(self) -> None:
        if getattr(self, "_counted", False):
            self._counted = False
            _CourseBar.open_bars -= 1
            if self._final_only and self.leave is not False:
                self._ema_dt = lambda: None  # the overall rate, as tqdm's own final frame shows
                self.fp.write(f"{self}\n")
                self.fp.flush()
        super().close()


def progress_bar(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` as plain text on stdout (see the module docstring), redrawn at most once a second;
    silent (``disable``) while another bar of this function is open, so nested loops show their outer bar only."""
    return _CourseBar(iterable, **({"file": sys.stdout, "ncols": 100, "mininterval": 1.0} | kwargs))


class StepBar(TrainerCallback):
    """One tqdm bar over the optimizer steps, the latest logged loss as its postfix, closed when training ends."""

    def __init__(self, desc: str = "training") -> None:
        self.desc = desc
        self.bar: Any = None

    def on_train_begin(self, args, state, control, **kwargs) -> None:  # noqa: ANN001
        self.bar = progress_bar(total=state.max_steps, initial=state.global_step, desc=self.desc, unit="step")

    def on_step_end(self, args, state, control, **kwargs) -> None:  # noqa: ANN001
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:  # noqa: ANN001
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=not final_only())  # final-only: no frame now

    def on_train_end(self, args, state, control, **kwargs) -> None:  # noqa: ANN001
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def quiet(trainer: Trainer, bar: bool = True, desc: str = "training") -> Trainer:
    """Remove the Trainer's own progress table, bar and log printer; add one :class:`StepBar` if ``bar``.

    Use ``bar=False`` where a cell trains many runs and shows one bar over the runs itself.
    Returns the same trainer.
    """
    for callback in [c for c in trainer.callback_handler.callbacks if type(c).__name__ in _NOISY]:
        trainer.remove_callback(callback)
    if bar:
        trainer.add_callback(StepBar(desc))
    return trainer


def quiet_weight_loading_bars() -> None:
    """Switch off transformers' "Loading weights" bar (``from_pretrained``, transformers >= 5): a load from local
    files takes seconds, and inside a loop over runs it would print one bar per run. Download bars (huggingface_hub's,
    for the full profile's first Phi-2 download) are not affected. Uses ``transformers.utils.logging.set_tqdm_hook``;
    older transformers keep their bars."""
    from transformers.utils import logging as hf_logging

    if not hasattr(hf_logging, "set_tqdm_hook"):
        return

    def hook(factory: Any, args: tuple, kwargs: dict) -> Any:
        if kwargs.get("desc") == "Loading weights":
            kwargs = {**kwargs, "disable": True}
        return factory(*args, **kwargs)

    hf_logging.set_tqdm_hook(hook)


@contextmanager
def no_library_bars() -> Iterator[None]:
    """Inside: no progress bars from datasets (e.g. "Map", "Generating train split") or transformers (e.g. "Writing
    model shards"), for short steps inside a lesson; afterwards each is back as it was. transformers' GGUF loader
    draws its bar with ``tqdm.auto`` directly, so it is given :func:`progress_bar` instead while inside."""
    import datasets
    import transformers.modeling_gguf_pytorch_utils as gguf_loading
    from transformers.utils import logging as hf_logging

    datasets_on, transformers_on = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    gguf_bar = getattr(gguf_loading, "tqdm", None)
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    if gguf_bar is not None:
        gguf_loading.tqdm = lambda *args, **kwargs: progress_bar(*args, **{**kwargs, "disable": True})
    try:
        yield
    finally:
        if gguf_bar is not None:
            gguf_loading.tqdm = gguf_bar
        if datasets_on:
            datasets.enable_progress_bars()
        if transformers_on:
            hf_logging.enable_progress_bar()

