"""utils.qa.loss on a tiny Phi: the LM head at the graded positions only gives the model's own loss and gradients,
with one row per pass (AnswerLogitsCollator + answer_logits_loss) and with several (GradedHeadLoss)."""

from __future__ import annotations

import pytest
import tolerances as T
import torch
from tiny_qa import lora_model, one_by_one_loss

from utils.qa import collate, loss


def test_graded_positions_by_hand():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 4, -100, -100, -100]])
    assert loss.graded_positions(labels).tolist() == [0, 1, 2]


@pytest.mark.parametrize("packed", [True, False])
def test_answer_only_logits_give_the_models_own_loss_and_gradients(base, features, packed):
    """Running the LM head on answer positions only changes nothing but the work done. Every forward runs with
    use_cache=False, as training does: with Phi's default KV cache the packed examples would attend to each other on
    both sides alike, and the comparison could not see it. The full-logits side is itself checked against each example
    alone (:func:`one_by_one_loss`)."""
    model = lora_model(base[0])
    batch_of = collate.sample_batch if packed else (lambda f, n: collate.PaddedCollator(0, 128)(f[:n]))
    batch = batch_of(features, 4)
    model(**batch, use_cache=False).loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    slim = loss.AnswerLogitsCollator(lambda f: batch_of(f, 4))(features)
    labels = slim.pop("labels")
    out = model(**slim, use_cache=False)
    assert out.logits.shape[1] == len(slim["logits_to_keep"]) < batch["input_ids"].shape[1] / 3
    value = loss.answer_logits_loss(out, labels)
    value.backward()
    tokens = batch["input_ids"].shape[1]
    with torch.no_grad():
        full = model(**batch, use_cache=False).loss
    T.assert_within(value, full, T.loss_tolerance(model, value, tokens), what="answer-logits loss")
    T.assert_within(full, one_by_one_loss(model, features[:4]), T.loss_tolerance(model, value, tokens),
                    what="full-logits loss vs one by one")
    for name, p in model.named_parameters():
        if p.requires_grad:  # the backward pass runs the chain again: twice the roundings, relative to the grad
            tol = 2**0.5 * T.loss_tolerance(model, reference[name].abs().max(), tokens)
            T.assert_within(p.grad, reference[name], tol, what=name)


def test_graded_head_loss_on_rows_gives_the_models_own_loss_and_gradients(base, features):
    """GradedHeadLoss (head at each row's graded positions only) on rows of pack_rows equals the model's own loss over
    the rows, gradients included, and each example's loss alone."""
    L = 2 * max(len(f["input_ids"]) for f in features) + 16  # two examples and some filler per row
    rows = collate.pack_rows(features, L, pad_token_id=0)
    batch = collate.RowsCollator()(rows)
    model = lora_model(base[0])
    model(**batch, use_cache=False).loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    loss_func = loss.GradedHeadLoss(model)
    slim = loss.GradedHeadCollator(collate.RowsCollator())(rows)
    labels = slim.pop("labels")
    out = model(**slim, use_cache=False)
    assert out.logits.shape[:2] == (len(rows), 1)  # the model's own head ran on one position per row
    value = loss_func(out, labels)
    value.backward()
    tokens = len(rows) * L
    T.assert_within(value, one_by_one_loss(model, features), T.loss_tolerance(model, value, tokens),
                    what="rows with the head at graded positions vs one by one")
    for name, p in model.named_parameters():
        if p.requires_grad:  # same rounding argument as in the answer-logits test above
            tol = 2**0.5 * T.loss_tolerance(model, reference[name].abs().max(), tokens)
            T.assert_within(p.grad, reference[name], tol, what=name)
    loss_func.handle.remove()
