"""Library messages the course silences: each by its exact text, each with the reason a learner need not act.

Everything else a library prints stays visible (``tests`` fail a notebook cell that prints a warning outside
``utils.notebooks.ALLOWED_STDERR``). :func:`quiet_known_messages` runs when ``utils`` is imported.
"""

from __future__ import annotations

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


def quiet_known_messages() -> None:
    """Install one ``ignore`` filter per entry of :data:`KNOWN_MESSAGES` (idempotent)."""
    for category, pattern, _why in KNOWN_MESSAGES:
        warnings.filterwarnings("ignore", message=pattern, category=category)
