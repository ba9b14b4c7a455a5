"""Library messages the course silences: each by its exact text, each with the reason a learner need not act.

Everything else a library prints stays visible (``tests`` fail a notebook cell that prints a warning outside
``utils.notebooks.ALLOWED_STDERR``). :func:`quiet_known_messages` runs when ``utils`` is imported.
"""

from __future__ import annotations

import logging
import warnings

# (category, regular expression matched against the start of the message, why it is safe to hide)
KNOWN_MESSAGES: list[tuple[type[Warning], str, str]] = [
    (FutureWarning, r"`(is_gradient_checkpointing|gradient_checkpointing_enable|gradient_checkpointing_disable|"
                    r"gradient_checkpointing_kwargs|gradient_checkpointing)` is deprecated and will be removed in v6",
     "transformers 5 renamed gradient checkpointing to activation checkpointing; the course uses the new names "
     "(utils.models.loading.set_activation_checkpointing), peft 0.21 still calls the old ones"),
    (UserWarning, r"Paged optimizers are not supported on CPU\. Falling back to non-paged",
     "on a CPU there is no GPU memory to page; notebook 04 section 4 says so where it introduces paged AdamW"),
]


# (logger name, start of the logged message, why it is safe to hide)
KNOWN_LOG_MESSAGES: list[tuple[str, str, str]] = [
    ("papermill.translators", "Unable to parse line",
     "papermill parses a parameters cell only to warn about unknown names, and cannot parse a line with two '=' "
     "(SMOKE = PROFILE == \"smoke\"); utils.notebooks.check_parameters rejects unknown names before any run"),
]


class _DropMessage(logging.Filter):
    """Drops the records whose message starts with ``prefix``; keeps all others."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def quiet_known_messages() -> None:
    """Install one ``ignore`` filter per entry of :data:`KNOWN_MESSAGES` and one logging filter per entry of
    :data:`KNOWN_LOG_MESSAGES` (idempotent)."""
    for category, pattern, _why in KNOWN_MESSAGES:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name, prefix, _why in KNOWN_LOG_MESSAGES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropMessage(prefix))
