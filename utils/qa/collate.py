"""Batching QA examples for training: packed rows instead of padding, and what each way costs in tokens.

An example is an encoded dict ``{"input_ids", "labels"}`` (lists of ints; labels ``-100`` on the prompt, see
:func:`utils.qa.data.encode_rows`). :func:`batching` picks the course's way from a
:class:`~utils.qa.config.QAConfig`: with ``row_length > 0`` the examples are packed in advance into rows of exactly
that many tokens (:func:`pack_rows`, stacked by :class:`RowsCollator`), with ``row_length == 0`` each pass's examples
are laid end to end in one row (``DataCollatorWithFlattening``) rounded up to a multiple of ``pack_multiple`` tokens
(:func:`packing_collator`). Either way ``position_ids`` restart at 0 for every example, and the attention mask built
from them keeps each example from attending to its neighbour (checked in tests/test_qa_collate.py against each
example alone); the only tokens that carry no example are a row's filler or rounding, which :func:`token_budget`
counts. :class:`PaddedCollator` is the naive alternative (pad every example to a fixed length), the speed
benchmark's baseline. Every batch holds int64 tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import DataCollatorWithFlattening

from utils.errors import input_error
from utils.qa.config import QAConfig
from utils.qa.data import IGNORE_INDEX


class PaddedCollator:
    """Right-pad every example to ``max_length`` (or, if None, to the longest in the batch).

    The naive way to batch: returns ``input_ids`` and ``labels`` (int64, shape ``(batch, width)``,
    labels ``-100`` on padding) and ``attention_mask``. Every pad token costs as much compute as a
    real one; the speed benchmark uses it as its baseline.
    """

    def __init__(self, pad_token_id: int, max_length: int | None = None):
        """Raises InputError unless ``max_length`` is None or a positive integer."""
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0):
            raise input_error("PaddedCollator max_length", f"must be a positive integer or None, got {max_length!r}",
                              "pass the max_length the examples were encoded with, or None (pad to the longest)")
        self.pad_token_id, self.max_length = pad_token_id, max_length

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        width = self.max_length or longest
        if longest > width:
            raise input_error("PaddedCollator", f"an example has {longest} tokens, more than max_length={width}",
                              "encode with a max_length no larger than the collator's")
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class RoundUpPacked:
    """Wraps the packing collator and pads each packed row to a multiple of ``multiple`` tokens.

    The padding is appended as one extra "example" (pad tokens, ``position_ids`` from 0, labels -100):
    it attends only to itself and carries no loss. Its purpose is fewer distinct batch shapes, so
    that kernels which plan per shape (cuDNN attention) can reuse their plans. Returns the wrapped
    collator's batch (``input_ids``, ``labels``, ``position_ids``: int64, ``(1, tokens)``), widened.
    """

    def __init__(self, collator: Any, multiple: int, pad_token_id: int):
        """Raises InputError unless ``multiple`` is a positive integer."""
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple <= 0:
            raise input_error("pack_multiple", f"multiple must be a positive integer, got {multiple!r}",
                              "pass e.g. 256 (QAConfig.pack_multiple), or 1 for no rounding")
        self.collator, self.multiple, self.pad_token_id = collator, multiple, pad_token_id

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        batch = dict(self.collator(features))
        extra = -batch["input_ids"].shape[1] % self.multiple
        if extra:
            fill = {"input_ids": torch.full((1, extra), self.pad_token_id), "labels": torch.full((1, extra), IGNORE_INDEX),
                    "position_ids": torch.arange(extra).unsqueeze(0)}
            for key, value in fill.items():
                batch[key] = torch.cat([batch[key], value.to(batch[key].dtype)], dim=1)
        return batch


def packing_collator(pad_token_id: int, multiple: int) -> RoundUpPacked:
    """The training collator: examples packed into one row (``DataCollatorWithFlattening``), the
    row rounded up to a multiple of ``multiple`` tokens (:class:`RoundUpPacked`; the course's value is
    ``QAConfig.pack_multiple``)."""
    return RoundUpPacked(DataCollatorWithFlattening(), multiple, pad_token_id)


def pack_members(lengths: Sequence[int], row_length: int) -> list[list[int]]:
    """Which examples :func:`pack_rows` puts in each row: best-fit decreasing (the longest example first, each into
    the fullest row it fits in, a stable sort), as lists of indices into ``lengths``, in row order and in each row's
    order. ``lengths``: tokens per example, each at most ``row_length``."""
    members: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fits = [r for r, space in enumerate(free) if space >= lengths[i]]
        if fits:
            best = min(fits, key=free.__getitem__)  # the fullest row it fits in
            members[best].append(i)
            free[best] -= lengths[i]
        else:
            members.append([i])
            free.append(row_length - lengths[i])
    return members


def pack_rows(features: Sequence[Mapping[str, list[int]]], row_length: int,
              pad_token_id: int) -> list[dict[str, list[int]]]:
    """Pack examples in advance into rows of exactly ``row_length`` tokens (best-fit decreasing), for a fixed
    token budget per pass: ``batch_size`` rows of ``row_length`` tokens, so every pass has the same shape
    (``(batch_size, row_length)``) and no example attends to another (``position_ids`` restart at 0 for each).

    Each row is ``{"input_ids", "labels", "position_ids", "real_tokens"}`` (lists of ``row_length``; the end
    of a row is filled with ``pad_token_id``, labels -100 and positions from 0: a separate "example" that attends
    only to itself and carries no loss). Rows come out in a deterministic order (the longest examples'
    rows first); the Trainer shuffles them.

    Raises:
        InputError: ``row_length`` is not a positive integer, or an example is longer than it.
    """
    if isinstance(row_length, bool) or not isinstance(row_length, int) or row_length <= 0:
        raise input_error("row_length", f"must be a positive integer, got {row_length!r}",
                          "pass e.g. 1024 (tokens per packed row)")
    longest = max((len(f["input_ids"]) for f in features), default=0)
    if longest > row_length:
        raise input_error("row_length", f"an example has {longest} tokens, more than row_length={row_length}",
                          "use a row_length at least the max_length the examples were encoded with")
    members = pack_members([len(f["input_ids"]) for f in features], row_length)
    rows = [[features[i] for i in m] for m in members]
    free = [row_length - sum(len(f["input_ids"]) for f in r) for r in rows]
    packed = []
    for members, space in zip(rows, free, strict=True):
        ids = [t for f in members for t in f["input_ids"]] + [pad_token_id] * space
        labels = [t for f in members for t in f["labels"]] + [IGNORE_INDEX] * space
        positions = [p for f in members for p in range(len(f["input_ids"]))] + list(range(space))
        packed.append({"input_ids": ids, "labels": labels, "position_ids": positions,
                       "real_tokens": row_length - space})
    return packed


class RowsCollator:
    """Stacks rows made by :func:`pack_rows` into ``input_ids``, ``labels`` and ``position_ids`` (int64,
    shape ``(rows, row_length)``); no attention mask: the restarting ``position_ids`` keep examples apart."""

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        return {key: torch.tensor([f[key] for f in features], dtype=torch.long)
                for key in ("input_ids", "labels", "position_ids")}


def batching(config: QAConfig, features: Sequence[Mapping[str, list[int]]],
             pad_token_id: int) -> tuple[list[dict[str, list[int]]], Any, bool]:
    """How ``config`` batches: ``(train items, collator, graded_head)`` for :func:`utils.qa.training.make_trainer`.

    ``row_length > 0``: the examples packed in advance into rows of that many tokens (:func:`pack_rows`),
    ``batch_size`` rows per pass (:class:`RowsCollator`), the LM head at each row's graded positions
    (``graded_head``, if ``answer_logits_only``: :class:`utils.qa.loss.GradedHeadLoss`). ``row_length == 0``: each
    pass's ``batch_size`` examples laid end to end in one row, rounded up to ``pack_multiple`` tokens
    (:func:`packing_collator`).
    """
    if config.row_length:
        return pack_rows(features, config.row_length, pad_token_id), RowsCollator(), config.answer_logits_only
    return list(features), packing_collator(pad_token_id, config.pack_multiple), False


def token_budget(config: QAConfig, features: Sequence[Mapping[str, list[int]]],
                 pad_token_id: int) -> dict[str, int]:
    """Tokens processed in one pass through ``features`` (in their order), by ``config``'s batching and by padding.

    Returns ``{"examples", "real"`` (the examples' own tokens), ``"this run"`` (what :func:`batching` gives the model:
    rows of ``row_length`` tokens, filler included, or each pass's ``batch_size`` examples in one row rounded up to a
    multiple of ``pack_multiple``; packing with nothing added would process the real tokens alone),
    ``"padded to the longest"`` (each pass of ``batch_size`` examples padded to its longest example, as a padding
    collator does) and ``"padded to max_length"`` (every example padded to ``max_length``)``}``. The Trainer draws
    the examples in a shuffled order, so its passes group them differently; the totals are per pass through the data
    in the given order.
    """
    lengths = [len(f["input_ids"]) for f in features]
    passes = [lengths[i:i + config.batch_size] for i in range(0, len(lengths), config.batch_size)]
    if config.row_length:
        this_run = len(pack_rows(features, config.row_length, pad_token_id)) * config.row_length
    else:
        this_run = sum(-(-sum(p) // config.pack_multiple) * config.pack_multiple for p in passes)
    return {"examples": len(lengths), "real": sum(lengths), "this run": this_run,
            "padded to the longest": sum(len(p) * max(p) for p in passes),
            "padded to max_length": len(lengths) * config.max_length}


def sample_batch(features: Sequence[Mapping[str, list[int]]], n: int = 4) -> dict[str, torch.Tensor]:
    """The first ``n`` features packed into one row as training packs them (``DataCollatorWithFlattening``:
    ``input_ids``, ``labels``, ``position_ids``, int64 ``(1, tokens)``), for memory measurements and guards."""
    return dict(DataCollatorWithFlattening()(list(features[:n])))
