"""utils.models.forward_patches on a tiny Phi: each lever computes what the plain model computes (bf16 autocast on the CPU)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.activations import NewGELUActivation

from utils.models import forward_patches, tiny_phi
from utils.paths import REPO_ROOT
from utils.qa import training
from utils.qa.config import QAConfig
from utils.qa.data import qa_texts

DATA = [REPO_ROOT / "data/qa/train.json", REPO_ROOT / "data/qa/validation.json"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", qa_texts(*DATA), seed=0, vocab_size=512,
                                    hidden_size=64, intermediate_size=256)


def logits(model, ids, dtype=torch.bfloat16):
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        return model(input_ids=ids, use_cache=False).logits.float()


def test_the_fused_gelu_is_phi2s_gelu_new():
    x = torch.randn(4096, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4
    # float64: the same formula to rounding (~1e-16 relative); float32: within a few ulps of the values (|y| <~ 12)
    torch.testing.assert_close(forward_patches.FusedTanhGELU()(x), NewGELUActivation()(x), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(forward_patches.FusedTanhGELU()(x.float()), NewGELUActivation()(x.float()), rtol=0, atol=1e-5)


def test_each_lever_keeps_the_models_logits(folder):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.randint(0, 512, (2, 48), generator=torch.Generator().manual_seed(1))
    plain = logits(model, ids)
    swaps = forward_patches.use_fused_gelu(model)
    assert len(swaps) == model.config.num_hidden_layers
    # bf16 autocast runs the MLP activation on 16-bit values either way: one kernel or eight, within bf16 rounding
    # of the activation (2^-8 relative), carried through the rest of the tiny model
    torch.testing.assert_close(logits(model, ids), plain, rtol=0, atol=0.05 * plain.abs().max().item())
    fused = logits(model, ids)
    handles = forward_patches.norm_outputs_in(model, torch.bfloat16)
    assert len(handles) == model.config.num_hidden_layers
    # the linear layers after the norm cast its float32 output to bf16 themselves: casting once changes nothing
    assert torch.equal(logits(model, ids), fused)
    handles += forward_patches.residual_in(model, torch.bfloat16)
    with_residual = logits(model, ids)  # not the same function: the residual additions now round to bf16
    assert not torch.equal(with_residual, fused)
    torch.testing.assert_close(with_residual, fused, rtol=0, atol=0.05 * fused.abs().max().item())
    model.get_input_embeddings().weight.data = model.get_input_embeddings().weight.data.bfloat16().float()
    model.get_output_embeddings().weight.data = model.get_output_embeddings().weight.data.bfloat16().float()
    reference = logits(model, ids)  # the weights as a bf16 checkpoint holds them, stored in float32 (peft's upcast)
    model.requires_grad_(False)  # frozen, as in QLoRA (only frozen tensors are cast)
    assert len(forward_patches.embeddings_and_head_in(model, torch.bfloat16)) == 3  # embedding, head weight and bias
    assert torch.equal(logits(model, ids), reference)  # storing them in bf16 is exact
    for h in handles:
        h.remove()
    forward_patches.restore(swaps)
    assert all(type(m.mlp.activation_fn).__name__ == "NewGELUActivation" for m in model.model.layers)
    assert forward_patches.norm_outputs_in(model, torch.float32) == [] and forward_patches.residual_in(model, torch.float32) == []


def test_the_16bit_residual_acts_under_bf16_only():
    qa = QAConfig()
    assert training.residual_16bit(qa.replace(precision="bf16"))
    assert not training.residual_16bit(qa.replace(precision="fp16"))  # fp16's range: a T4 keeps float32
    assert not training.residual_16bit(qa.replace(precision="fp32"))
    assert not training.residual_16bit(qa.replace(precision="bf16", residual_16bit=False))


def test_lean_lora_4bit_is_pefts_forward_in_one_addition(folder):
    """The LoRA layers over 4-bit bitsandbytes layers, peft's forward against lean_lora_4bit's: logits and LoRA
    gradients agree to rounding, in float32 (the smoke profile) and under bf16 autocast (the GPU's path)."""
    from utils.models import bnb_4bit_config, load_model
    from utils.models.adapters import add_lora

    targets = ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]
    model = add_lora(load_model(folder, AutoModelForCausalLM, bnb_4bit_config(dtype=torch.float32), dtype=torch.float32),
                     4, 8, targets, task_type="CAUSAL_LM")
    generator = torch.Generator().manual_seed(2)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; give the adapter path something to add
            p.data = torch.randn(p.shape, generator=generator) * 0.05
    ids = torch.randint(0, 512, (2, 32), generator=generator)

    def run(dtype):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = model(input_ids=ids, labels=ids, use_cache=False)
        out.loss.backward()
        return out.logits.detach().float(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    peft_runs = {dtype: run(dtype) for dtype in (torch.float32, torch.bfloat16)}
    layers = forward_patches.lean_lora_4bit(model)
    assert len(layers) == len(targets) * model.config.num_hidden_layers
    # float32: the sum rounds once instead of twice (<= 1 ulp per layer output), carried through the tiny model:
    # 1e-5 of the largest value is ~100 float32 ulps. bf16 autocast: the same, with bf16's 2^-8 instead of 2^-24
    # (the bound the logits test above uses for a bf16 rounding carried through the model).
    for dtype, rel in ((torch.float32, 1e-5), (torch.bfloat16, 0.05)):
        (ref_logits, ref_grads), (logits_, grads) = peft_runs[dtype], run(dtype)
        torch.testing.assert_close(logits_, ref_logits, rtol=0, atol=rel * ref_logits.abs().max().item())
        assert grads.keys() == ref_grads.keys() and len(grads) == 2 * len(layers)
        for name, g in grads.items():
            torch.testing.assert_close(g, ref_grads[name], rtol=0, atol=rel * ref_grads[name].abs().max().item())
    with model.disable_adapter():  # disabled adapters go to peft's own forward: the base model exactly
        lean_base = model(input_ids=ids, use_cache=False).logits
    forward_patches.undo_lean_lora_4bit(layers)
    assert torch.equal(run(torch.float32)[0], peft_runs[torch.float32][0])  # peft's forward is back, bit for bit
    with model.disable_adapter():
        assert torch.equal(model(input_ids=ids, use_cache=False).logits, lean_base)


def test_lean_lora_4bit_leaves_dora_to_peft(folder):
    """DoRA (a LoRA variant) is not a plain addition: lean_lora_4bit hands it to peft's forward, bit for bit."""
    from peft import LoraConfig, get_peft_model

    from utils.models import bnb_4bit_config, load_model

    base = load_model(folder, AutoModelForCausalLM, bnb_4bit_config(dtype=torch.float32), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["fc1"], use_dora=True))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.05
    ids = torch.randint(0, 512, (1, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        reference = model(input_ids=ids, use_cache=False).logits
        layers = forward_patches.lean_lora_4bit(model)
        assert len(layers) == model.config.num_hidden_layers
        assert torch.equal(model(input_ids=ids, use_cache=False).logits, reference)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_16bit_layer_norm_input_gives_autocasts_numbers_without_the_casts(seed):
    """norm_outputs_in on a frozen LayerNorm fed the 16-bit residual stream: PyTorch's bf16 layer norm (bf16 copies
    of the weights, outside autocast) equals autocast's float32 layer norm followed by a cast to bf16: the output to
    the bit (both compute in float32 and round once), the input's gradient to bf16 rounding."""
    g = torch.Generator().manual_seed(seed)
    holder = torch.nn.Module()
    holder.input_layernorm = torch.nn.LayerNorm(96)
    holder.requires_grad_(False)  # frozen, as in QLoRA
    with torch.no_grad():  # values a bf16 checkpoint holds, stored in float32 (peft's upcast)
        holder.input_layernorm.weight.copy_(torch.randn(96, generator=g).bfloat16())
        holder.input_layernorm.bias.copy_(torch.randn(96, generator=g).bfloat16())
    x = (torch.randn(3, 7, 96, generator=g) * 5 + 2).to(torch.bfloat16)
    grad = torch.randn(3, 7, 96, generator=g).to(torch.bfloat16)

    def run():
        leaf = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = holder.input_layernorm(leaf).to(torch.bfloat16)
        y.backward(grad)
        return y.detach(), leaf.grad

    reference = run()
    handles = forward_patches.norm_outputs_in(holder, torch.bfloat16)
    assert "forward" in vars(holder.input_layernorm)
    patched = run()
    for h in handles:
        h.remove()
    assert "forward" not in vars(holder.input_layernorm)
    assert patched[0].dtype == torch.bfloat16
    assert torch.equal(patched[0], reference[0])  # forward: to the bit
    # backward: PyTorch's 16-bit layer-norm backward rounds its intermediate products to bf16 where the float32 one
    # does not: within one bf16 rounding (2^-8) of the largest input gradient
    torch.testing.assert_close(patched[1].float(), reference[1].float(), rtol=0,
                               atol=2**-8 * reference[1].abs().max().item())


def test_a_layer_norm_with_inexact_or_trainable_weights_keeps_the_cast():
    """Weights bf16 cannot hold exactly, or weights being trained: the layer norm runs as before, its output cast."""
    for trainable, exact in ((False, False), (True, True)):
        holder = torch.nn.Module()
        holder.input_layernorm = torch.nn.LayerNorm(8)
        with torch.no_grad():
            holder.input_layernorm.weight.copy_(torch.full((8,), 1 + 2**-12 if not exact else 1.5))
        holder.requires_grad_(trainable)
        handles = forward_patches.norm_outputs_in(holder, torch.bfloat16)
        assert "forward" not in vars(holder.input_layernorm) and len(handles) == 1
        x = torch.randn(2, 8)
        assert holder.input_layernorm(x).dtype == torch.bfloat16
        handles[0].remove()


def test_an_rms_norm_keeps_the_cast():
    """Llama's RMSNorm (SmolLM2, the smoke profile's model) is not a LayerNorm: its output is cast, as before."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    handles = forward_patches.norm_outputs_in(model, torch.bfloat16)
    assert len(handles) == 2 and all("forward" not in vars(layer.input_layernorm) for layer in model.model.layers)
    assert model.model.layers[0].input_layernorm(torch.randn(1, 3, 32)).dtype == torch.bfloat16
    for h in handles:
        h.remove()
