"""utils.models.offload: the offloaded checkpoint computes what torch's checkpoint computes.

On a tiny Phi with LoRA in training mode (residual dropout on, so the recomputation must draw the same masks): the
loss and every LoRA gradient equal torch's non-reentrant checkpoint to the bit, in float32 and under bf16 autocast
(the recomputation re-enters the forward pass's autocast), and the random stream continues as it would have; the
Trainer path installs it (OffloadCallback) and trains to the same losses; the offloader forgets checkpoints whose
graph was dropped. The copies to CPU memory act on a GPU only: tests/test_offload.py covers the CPU path (the same code
with the copy left out); benchmarks/levers_gpu.py checks the GPU path (recorded).
"""

from __future__ import annotations

import gc

import pytest
import torch
from transformers import AutoModelForCausalLM

from utils.models import offload, tiny_phi
from utils.models.adapters import add_lora
from utils.models.loading import set_activation_checkpointing
from utils.paths import REPO_ROOT
from utils.qa.data import qa_texts

DATA = [REPO_ROOT / "data/qa/train.json", REPO_ROOT / "data/qa/validation.json"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", qa_texts(*DATA), seed=0,
                                      vocab_size=256, hidden_size=64, intermediate_size=128)
    # Phi-2's residual dropout (0.1): the recomputation must reproduce the dropout masks
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, resid_pdrop=0.1)
    peft_model = add_lora(base, 4, 8, ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"], task_type="CAUSAL_LM")
    generator = torch.Generator().manual_seed(2)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=generator) * 0.05
    peft_model.train()
    return peft_model


def _step(model, bf16: bool):
    torch.manual_seed(5)
    ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(1))
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    after = torch.rand(1)  # where the random stream is after the step
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, after


@pytest.mark.parametrize("bf16", [False, True])
def test_the_offloaded_checkpoint_equals_torchs(model, bf16):
    inner = model.get_base_model()
    set_activation_checkpointing(inner, True)
    reference = _step(model, bf16)
    offloader = offload.offload_checkpoints(model)
    assert offloader is not None
    calls = []
    apply = offload.OffloadedCheckpoint.apply
    offload.OffloadedCheckpoint.apply = lambda *a: calls.append(1) or apply(*a)
    try:
        loss, grads, after = _step(model, bf16)
    finally:
        offload.OffloadedCheckpoint.apply = apply
        set_activation_checkpointing(inner, False)
    assert len(calls) == model.config.num_hidden_layers
    assert torch.equal(loss, reference[0])
    assert grads.keys() == reference[1].keys() and all(torch.equal(grads[n], reference[1][n]) for n in grads)
    assert torch.equal(after, reference[2])
    assert offloader.order == []  # every checkpoint was fetched back


def test_without_checkpointing_nothing_changes(model):
    set_activation_checkpointing(model.get_base_model(), False)
    assert offload.offload_checkpoints(model) is None


def test_a_dropped_graph_leaves_nothing_behind(model):
    inner = model.get_base_model()
    set_activation_checkpointing(inner, True)
    offloader = offload.offload_checkpoints(model)
    try:
        ids = torch.randint(0, 256, (1, 8), generator=torch.Generator().manual_seed(3))
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        assert len([r for r in offloader.order if r() is not None]) == model.config.num_hidden_layers
        del loss
        gc.collect()
        assert all(r() is None for r in offloader.order)
    finally:
        set_activation_checkpointing(inner, False)


def test_the_trainer_installs_it_and_trains_the_same(model, tmp_path):
    from utils.qa import training

    features = [{"input_ids": list(range(5 + i, 25 + i)), "labels": list(range(5 + i, 25 + i))} for i in range(8)]
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def train(offloaded: bool):
        for n, p in model.named_parameters():
            if n in start:
                p.data.copy_(start[n])
        args = training.training_arguments(tmp_path / str(offloaded), max_steps=3, batch_size=2, logging_steps=1,
                                           save_steps=100, precision="fp32", gradient_checkpointing=True)
        trainer = training.make_trainer(model, args, features, progress_bar=False,
                                        collator=training.DataCollatorWithFlattening(),
                                        offload_checkpoints=offloaded)
        trainer.train()
        used = [m._gradient_checkpointing_func for m in model.modules() if getattr(m, "gradient_checkpointing", 0)]
        return training.loss_history(trainer)[1], used

    plain, used_plain = train(False)
    offloaded, used = train(True)
    set_activation_checkpointing(model.get_base_model(), False)
    def ours(f):
        return getattr(f, "__qualname__", "").startswith("offloaded_checkpoint_function")

    assert used and all(ours(f) for f in used) and not any(ours(f) for f in used_plain)
    assert offloaded == plain
