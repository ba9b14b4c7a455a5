"""The answer-only loss: the LM head runs only where the next token is graded (an answer token).

Only the answer tokens carry a loss (labels ``-100`` elsewhere, :data:`utils.qa.data.IGNORE_INDEX`), yet a causal
LM computes ``(tokens, vocab)`` logits at every position. Two ways to skip the rest, each a collator wrapper paired
with a ``compute_loss_func`` for ``Trainer`` (:func:`utils.qa.training.make_trainer` picks one) and each equal to the
model's own loss (tested in tests/test_qa_loss.py): one row per pass (:class:`AnswerLogitsCollator` +
:func:`answer_logits_loss`), several rows per pass (:class:`GradedHeadCollator` + :class:`GradedHeadLoss`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from utils.qa.data import IGNORE_INDEX


def graded_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions ``p`` (int64, shape ``(k,)``) whose next token ``p + 1`` is graded in any row of
    ``labels`` (int64, ``(batch, seq)``, ``-100`` where not graded): where the LM head must run."""
    return (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().flatten()


class AnswerLogitsCollator:
    """Wraps a collator and adds ``logits_to_keep`` (:func:`graded_positions`) to each batch.

    The model then computes logits only at those positions (``logits_to_keep`` is a standard argument
    of transformers' causal LMs): for QA, the answer is ~10% of the tokens, so the head's matrix
    product and the ``(tokens, vocab)`` logits (51,200 floats per token for Phi-2) shrink ~10x.
    Use with :func:`answer_logits_loss`.
    """

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        batch = dict(self.collator(features))
        batch["logits_to_keep"] = graded_positions(batch["labels"])
        return batch


def answer_logits_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    """Next-token cross-entropy from logits kept at :func:`graded_positions` (``outputs.logits``:
    ``(batch, k, vocab)``). Equal to the model's own loss: summed over graded tokens and divided by
    ``num_items_in_batch`` (the Trainer's count over all accumulated micro-batches) or, if None, by
    this batch's count. A ``compute_loss_func`` for ``Trainer``."""
    keep = graded_positions(labels)
    targets = labels[:, keep + 1]
    total = F.cross_entropy(outputs.logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                            reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


class GradedHeadLoss:
    """The LM head at graded positions only, for batches of several rows (:func:`utils.qa.collate.pack_rows`).

    ``logits_to_keep`` (:class:`AnswerLogitsCollator`) selects the same positions in every row, so with many
    rows it would keep the union of their answer positions. Instead, a forward hook keeps the decoder's last
    hidden state (``(rows, row_length, hidden)``), the model's own head runs on one position per row
    (:class:`GradedHeadCollator` asks for ``logits_to_keep=1``), and this loss runs the head on exactly the
    graded positions of every row (``(k, hidden)`` -> ``(k, vocab)``). Summed cross-entropy over those
    positions divided by ``num_items_in_batch`` (or this batch's count): the model's own loss (tested).
    A ``compute_loss_func`` for ``Trainer``; the forward still goes through the (possibly wrapped) model.
    """

    def __init__(self, model: torch.nn.Module):
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.head = inner.get_output_embeddings()
        self.hidden: torch.Tensor | None = None
        self.handle = inner.get_decoder().register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def __call__(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        hidden, self.hidden = self.hidden, None
        if hidden is None:
            raise RuntimeError("GradedHeadLoss: no hidden state was kept; was the model's decoder run?")
        graded = labels[:, 1:] != IGNORE_INDEX
        # the Trainer calls the loss outside the forward's autocast: run the head in its weights' dtype
        logits = self.head(hidden[:, :-1][graded].to(self.head.weight.dtype))
        total = F.cross_entropy(logits.float(), labels[:, 1:][graded], reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else graded.sum()
        return total / torch.as_tensor(count, device=total.device).clamp(min=1)


class GradedHeadCollator:
    """Wraps a collator and asks the model for the logits of one position per row (``logits_to_keep=1``): the
    loss is :class:`GradedHeadLoss`'s, from the hidden states."""

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, Any]:
        return {**self.collator(features), "logits_to_keep": 1}
