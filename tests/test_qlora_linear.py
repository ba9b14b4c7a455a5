"""utils.models.qlora_linear: the 4-bit + LoRA layer as one autograd function computes peft's function and gradients.

On a tiny Phi (Phi-2's architecture, Phi-2's six LoRA targets, biases included) with bitsandbytes 4-bit NF4 weights
on the CPU: the logits, the loss and every LoRA gradient of the fused layers against peft's own forward, in float32
(the smoke profile's path) and under bf16 autocast (the GPU's path, here on the CPU's bf16 kernels); and a
layer-level check with the input's gradient. The GPU run of the same comparison is in benchmarks/ (recorded).
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from utils.models import qlora_linear, tiny_phi
from utils.paths import REPO_ROOT
from utils.qa.data import qa_texts

DATA = [REPO_ROOT / "data/qa/train.json", REPO_ROOT / "data/qa/validation.json"]
TARGETS = ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from utils.models import bnb_4bit_config, load_model
    from utils.models.adapters import add_lora

    folder = tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", qa_texts(*DATA), seed=0,
                                      vocab_size=512, hidden_size=64, intermediate_size=256)
    peft_model = add_lora(load_model(folder, AutoModelForCausalLM, bnb_4bit_config(dtype=torch.float32),
                                     dtype=torch.float32), 4, 8, TARGETS, task_type="CAUSAL_LM")
    generator = torch.Generator().manual_seed(2)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # B starts at zero; give the adapter path something to add
            p.data = torch.randn(p.shape, generator=generator) * 0.05
    return peft_model


def _run(model, ids, dtype):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = model(input_ids=ids, labels=ids, use_cache=False)
    out.loss.backward()
    return out.logits.detach().float(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_the_fused_layers_compute_pefts_function_and_gradients(model, monkeypatch):
    ids = torch.randint(0, 512, (2, 32), generator=torch.Generator().manual_seed(1))
    reference = {dtype: _run(model, ids, dtype) for dtype in (torch.float32, torch.bfloat16)}
    calls = []
    apply = qlora_linear.QLoRALinearFunction.apply
    monkeypatch.setattr(qlora_linear.QLoRALinearFunction, "apply", lambda *a: calls.append(1) or apply(*a))
    layers = qlora_linear.fuse_qlora_linears(model)
    try:
        assert len(layers) == len(TARGETS) * model.config.num_hidden_layers
        assert all(qlora_linear.plain_case(m) == "default" for m in layers)
        # float32: products regrouped and sums rounded once (<= a few ulps per layer output), carried through the
        # tiny model: 1e-5 of the largest value is ~100 float32 ulps. bf16: the same with bf16's 2^-8 for 2^-24 (the
        # bound tests/test_forward_patches.py uses for one bf16 rounding carried through the model)
        for dtype, rel in ((torch.float32, 1e-5), (torch.bfloat16, 0.05)):
            (ref_logits, ref_grads), (logits, grads) = reference[dtype], _run(model, ids, dtype)
            torch.testing.assert_close(logits, ref_logits, rtol=0, atol=rel * ref_logits.abs().max().item())
            assert grads.keys() == ref_grads.keys() and len(grads) == 2 * len(layers)
            for name, g in grads.items():
                torch.testing.assert_close(g, ref_grads[name], rtol=0, atol=rel * ref_grads[name].abs().max().item())
        assert len(calls) == 2 * len(layers)  # every layer took the fused path, in both runs
        with model.disable_adapter(), torch.no_grad():  # a disabled adapter goes to peft's own forward
            assert torch.equal(model(input_ids=ids, use_cache=False).logits,
                               model.get_base_model()(input_ids=ids, use_cache=False).logits)
    finally:
        qlora_linear.unfuse_qlora_linears(layers)
    assert torch.equal(_run(model, ids, torch.float32)[0], reference[torch.float32][0])  # peft's forward is back


def test_one_layer_input_gradient_against_a_float64_reference(model):
    """fc1 of the first layer alone: output and the gradients of x, A and B against the same function written out in
    float64 from the dequantized weight (what both paths compute): float32 agrees to 1e-6 of the largest value
    (products of 64 to 256 terms, each rounding <= 2^-24 relative)."""
    from bitsandbytes import functional as bnb_f

    layer = model.get_base_model().model.layers[0].mlp.fc1
    w = bnb_f.dequantize_4bit(layer.base_layer.weight.data, layer.base_layer.weight.quant_state).double()
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    s = layer.scaling["default"]
    x = torch.randn(3, 5, w.shape[1], generator=torch.Generator().manual_seed(7), requires_grad=True)
    g = torch.randn(3, 5, w.shape[0], generator=torch.Generator().manual_seed(8))

    y = qlora_linear.QLoRALinearFunction.apply(x, layer.base_layer.weight, layer.base_layer.bias, a, b, s, torch.float32)
    dx, da, db = torch.autograd.grad(y, (x, a, b), g)

    x64, a64, b64 = (t.detach().double().requires_grad_() for t in (x, a, b))
    y64 = x64 @ w.T + layer.base_layer.bias.double() + s * (x64 @ a64.T) @ b64.T
    refs = (y64, *torch.autograd.grad(y64, (x64, a64, b64), g.double()))
    for got, ref in zip((y, dx, da, db), refs, strict=True):
        assert got.dtype == torch.float32 and got.shape == ref.shape
        torch.testing.assert_close(got.double(), ref.detach(), rtol=0, atol=1e-6 * ref.abs().max().item())


def test_other_cases_stay_with_peft(model):
    """Dropout or a second active adapter: not the plain case, so peft's forward runs (bit for bit)."""
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    saved = layer.lora_dropout["default"]
    try:
        layer.lora_dropout["default"] = torch.nn.Dropout(0.1)
        assert qlora_linear.plain_case(layer) is None
    finally:
        layer.lora_dropout["default"] = saved
    assert qlora_linear.plain_case(layer) == "default"
    layers = qlora_linear.fuse_qlora_linears(model)
    try:
        x = torch.randn(2, 4, layer.in_features, generator=torch.Generator().manual_seed(3))
        with torch.no_grad(), model.disable_adapter():
            assert torch.equal(layer(x), layer.base_layer(x))
    finally:
        qlora_linear.unfuse_qlora_linears(layers)
