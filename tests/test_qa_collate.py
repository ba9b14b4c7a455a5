"""utils.qa.collate on a tiny Phi: packed rows (laid end to end, rounded up, or of a fixed length) and padded batches
give each example's own loss, and token_budget counts what the batching gives the model."""

from __future__ import annotations

import math

import pytest
import tolerances as T
import torch
from tiny_qa import lora_model, one_by_one_loss
from transformers import AutoModelForCausalLM, DataCollatorWithFlattening

from utils.errors import InputError
from utils.qa import collate
from utils.qa.config import QAConfig


def test_packed_and_padded_losses_equal_each_example_alone(base, features):
    """The packed row (position ids restarting at 0, as training feeds it) and a padded batch (attention mask) give
    the loss of each example run alone. All forwards run with use_cache=False, as training does (make_trainer):
    with a KV cache transformers ignores the packing and lets the examples attend to each other. The reference is
    computed another way (one example at a time, no mask), and the KV-cache mistake is shown to fail against it,
    so the comparison cannot pass with a mask that is wrong the same way on both sides."""
    model = AutoModelForCausalLM.from_pretrained(base[0]).eval()
    assert model.config.use_cache  # Phi's default: the forwards below must switch it off themselves
    reference = one_by_one_loss(model, features[:4])
    packed = collate.sample_batch(features, 4)
    padded = collate.PaddedCollator(pad_token_id=0)(features[:4])
    assert packed["input_ids"].shape[0] == 1 and (packed["position_ids"] == 0).sum() == 4
    with torch.no_grad():
        packed_loss = model(**packed, use_cache=False).loss
        padded_loss = model(**padded, use_cache=False).loss
        cached_loss = model(**packed, use_cache=True).loss  # the blind spot: examples see their neighbours
    tol = T.loss_tolerance(model, reference, packed["input_ids"].shape[1])
    T.assert_within(packed_loss, reference, tol, what="packed (no KV cache) vs one by one")
    T.assert_within(padded_loss, reference, tol, what="padded (no KV cache) vs one by one")
    # measured: packed and padded equal the reference exactly; the cached loss is ~10 tolerances off (3e-3 of 7.4)
    assert abs(cached_loss - reference) > 3 * tol, "with a KV cache the packing should leak, and be caught"


def test_padded_collator_pads_to_max_length_and_masks_padding(features):
    batch = collate.PaddedCollator(pad_token_id=7, max_length=128)(features[:3])
    n = len(features[0]["input_ids"])
    assert batch["input_ids"].shape == (3, 128) and batch["input_ids"][0, n:].eq(7).all()
    assert batch["labels"][0, n:].eq(-100).all() and batch["attention_mask"][0].sum() == n
    assert collate.PaddedCollator(7)(features[:3])["input_ids"].shape[1] == max(len(f["input_ids"]) for f in features[:3])
    with pytest.raises(ValueError, match="more than max_length=8"):
        collate.PaddedCollator(7, max_length=8)(features[:1])


def test_round_up_packed_pads_the_row_without_changing_the_loss(base, features):
    """The padding block appended to a packed row changes no loss. Compared with each example alone
    (:func:`one_by_one_loss`), not only with the packed row: both rows go through the same packed-attention path,
    so a mask wrong on both would agree with itself."""
    model = AutoModelForCausalLM.from_pretrained(base[0]).eval()
    packed = collate.sample_batch(features, 3)
    rounded = collate.RoundUpPacked(DataCollatorWithFlattening(), 256, pad_token_id=0)(features[:3])
    assert rounded["input_ids"].shape[1] % 256 == 0 and rounded["input_ids"].shape[1] > packed["input_ids"].shape[1]
    reference = one_by_one_loss(model, features[:3])
    tol = T.loss_tolerance(model, reference, rounded["input_ids"].shape[1])
    with torch.no_grad():
        T.assert_within(model(**rounded, use_cache=False).loss, reference, tol, what="rounded-up vs one by one")
        T.assert_within(model(**packed, use_cache=False).loss, reference, tol, what="packed vs one by one")


def test_rows_of_fixed_length_hold_every_example_once_and_give_the_one_by_one_loss(base, features):
    """pack_rows: static (rows, row_length) batches; each example intact, in one row, attending only to itself (the
    loss over the rows equals each example's alone; GradedHeadLoss's equality on the same rows: test_qa_loss.py)."""
    L = 2 * max(len(f["input_ids"]) for f in features) + 16  # two examples and some filler per row
    rows = collate.pack_rows(features, L, pad_token_id=0)
    assert all(len(r[k]) == L for r in rows for k in ("input_ids", "labels", "position_ids"))
    assert sum(r["real_tokens"] for r in rows) == sum(len(f["input_ids"]) for f in features)
    lengths = sorted(len(f["input_ids"]) for f in features)
    assert len(rows) < len(features) and len(rows) >= math.ceil(sum(lengths) / L)  # several examples per row
    for r in rows:  # every example starts at position 0 and is one of ours, labels included
        starts = [i for i, p in enumerate(r["position_ids"]) if p == 0] + [L]
        pieces = [(r["input_ids"][a:b], r["labels"][a:b]) for a, b in zip(starts, starts[1:], strict=False)]
        real = [p for p in pieces if any(t != -100 for t in p[1])]
        assert all(any(p == (f["input_ids"], f["labels"]) for f in features) for p in real)
    batch = collate.RowsCollator()(rows)
    assert batch["input_ids"].shape == (len(rows), L)
    model = lora_model(base[0])
    with torch.no_grad():
        loss = model(**batch, use_cache=False).loss
    T.assert_within(loss, one_by_one_loss(model, features), T.loss_tolerance(model, loss, len(rows) * L),
                    what="rows of a fixed length vs one by one")
    with pytest.raises(InputError, match="more than row_length=10"):
        collate.pack_rows(features, 10, pad_token_id=0)


@pytest.mark.parametrize("row_length,pack_multiple", [(0, 256), (0, 1), (256, 256)])
def test_token_budget_counts_what_the_batching_gives_the_model(features, row_length, pack_multiple):
    """token_budget (notebook 04's packing-vs-padding sentence) counts the tokens the run's own collator produces, and
    padding by hand: each pass of batch_size examples to its longest, every example to max_length."""
    config = QAConfig.resolve("smoke", max_length=128, batch_size=3, row_length=row_length, pack_multiple=pack_multiple)
    budget = collate.token_budget(config, features, pad_token_id=0)
    lengths = [len(f["input_ids"]) for f in features]
    items, collator, _ = collate.batching(config, features, 0)
    per_pass = [collator(items[i:i + config.batch_size]) for i in range(0, len(items), config.batch_size)]
    assert budget["this run"] == sum(b["input_ids"].numel() for b in per_pass)
    passes = [lengths[i:i + 3] for i in range(0, len(lengths), 3)]
    assert budget["padded to the longest"] == sum(len(p) * max(p) for p in passes)
    assert budget["padded to max_length"] == 128 * len(lengths) and budget["real"] == sum(lengths)
    if not row_length and pack_multiple == 1:
        assert budget["this run"] == budget["real"]  # packing with nothing added: the real tokens only
