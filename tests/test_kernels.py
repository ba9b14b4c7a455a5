"""utils.models.kernels on a tiny Phi: each lever computes what the plain model computes (bf16 autocast on the CPU)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.activations import NewGELUActivation

from utils.models import kernels, tiny_phi
from utils.qa import training
from utils.qa.config import QAConfig
from utils.report import REPO_ROOT

DATA = [REPO_ROOT / "data/qa/train.json", REPO_ROOT / "data/qa/validation.json"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", DATA, seed=0, vocab_size=512,
                                    hidden_size=64, intermediate_size=256)


def logits(model, ids, dtype=torch.bfloat16):
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        return model(input_ids=ids, use_cache=False).logits.float()


def test_the_fused_gelu_is_phi2s_gelu_new():
    x = torch.randn(4096, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4
    # float64: the same formula to rounding (~1e-16 relative); float32: within a few ulps of the values (|y| <~ 12)
    torch.testing.assert_close(kernels.FusedTanhGELU()(x), NewGELUActivation()(x), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(kernels.FusedTanhGELU()(x.float()), NewGELUActivation()(x.float()), rtol=0, atol=1e-5)


def test_each_lever_keeps_the_models_logits(folder):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.randint(0, 512, (2, 48), generator=torch.Generator().manual_seed(1))
    plain = logits(model, ids)
    swaps = kernels.use_fused_gelu(model)
    assert len(swaps) == model.config.num_hidden_layers
    # bf16 autocast runs the MLP activation on 16-bit values either way: one kernel or eight, within bf16 rounding
    # of the activation (2^-8 relative), carried through the rest of the tiny model
    torch.testing.assert_close(logits(model, ids), plain, rtol=0, atol=0.05 * plain.abs().max().item())
    fused = logits(model, ids)
    handles = kernels.norm_outputs_in(model, torch.bfloat16)
    assert len(handles) == model.config.num_hidden_layers
    # the linear layers after the norm cast its float32 output to bf16 themselves: casting once changes nothing
    assert torch.equal(logits(model, ids), fused)
    handles += kernels.residual_in(model, torch.bfloat16)
    with_residual = logits(model, ids)  # not the same function: the residual additions now round to bf16
    assert not torch.equal(with_residual, fused)
    torch.testing.assert_close(with_residual, fused, rtol=0, atol=0.05 * fused.abs().max().item())
    model.get_input_embeddings().weight.data = model.get_input_embeddings().weight.data.bfloat16().float()
    model.get_output_embeddings().weight.data = model.get_output_embeddings().weight.data.bfloat16().float()
    reference = logits(model, ids)  # the weights as a bf16 checkpoint holds them, stored in float32 (peft's upcast)
    model.requires_grad_(False)  # frozen, as in QLoRA (only frozen tensors are cast)
    assert len(kernels.embeddings_and_head_in(model, torch.bfloat16)) == 3  # embedding, head weight and bias
    assert torch.equal(logits(model, ids), reference)  # storing them in bf16 is exact
    for h in handles:
        h.remove()
    kernels.restore(swaps)
    assert all(type(m.mlp.activation_fn).__name__ == "NewGELUActivation" for m in model.model.layers)
    assert kernels.norm_outputs_in(model, torch.float32) == [] and kernels.residual_in(model, torch.float32) == []


def test_the_16bit_residual_acts_under_bf16_only():
    qa = QAConfig()
    assert training.residual_16bit(qa.replace(precision="bf16"))
    assert not training.residual_16bit(qa.replace(precision="fp16"))  # fp16's range: a T4 keeps float32
    assert not training.residual_16bit(qa.replace(precision="fp32"))
    assert not training.residual_16bit(qa.replace(precision="bf16", residual_16bit=False))
