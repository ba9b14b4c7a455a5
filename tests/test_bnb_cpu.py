"""utils.bnb_cpu: 4-bit layers stay trainable after an eval pass on every CPU, and one log message is dropped.

The repacking that breaks training happens only where bitsandbytes sees ``avx512_bf16``. So that these
tests fail without the guard on *every* machine, the flag-CPU behaviour is switched on by hand:
``bitsandbytes.nn.modules.has_avx512bf16`` is made to return True while the model is built, exactly what
happens on such a CPU (each ``Linear4bit`` reads it once, in ``__init__``).
"""

from __future__ import annotations

import inspect
import logging

import bitsandbytes as bnb
import bitsandbytes.functional as bnbF
import pytest
import torch
from transformers import AutoModelForCausalLM, PhiConfig, PhiForCausalLM

from utils import bnb_cpu
from utils.models import bnb_4bit_config, load_model
from utils.models.adapters import add_lora

TARGETS = ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]
BF16_RELATIVE_ROUNDING = 2.0**-8  # bfloat16 keeps 8 significant bits: round-to-nearest moves a value <= 2^-8


@pytest.fixture(scope="module")
def phi_folder(tmp_path_factory):
    """A random 2-layer Phi (every linear layer's output size a multiple of 32, as the CPU layout needs)."""
    torch.manual_seed(0)
    config = PhiConfig(vocab_size=256, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=4, pad_token_id=0)
    folder = tmp_path_factory.mktemp("bnb_cpu") / "phi"
    PhiForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture
def as_on_an_avx512_bf16_cpu(monkeypatch):
    """Layers built inside this fixture behave as on a CPU with avx512_bf16, whatever this CPU is."""
    monkeypatch.setattr(bnb.nn.modules, "has_avx512bf16", lambda: True)


def linear_4bit(model: torch.nn.Module) -> list[bnb.nn.Linear4bit]:
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def test_after_load_and_an_eval_forward_no_layer_is_repacked_and_training_works(phi_folder,
                                                                                as_on_an_avx512_bf16_cpu):
    model = load_model(str(phi_folder), AutoModelForCausalLM, bnb_4bit_config(dtype=torch.float32),
                       dtype=torch.float32)
    layers = linear_4bit(model)
    assert len(layers) == 2 * 6  # q, k, v, dense, fc1, fc2 in each of the 2 layers; lm_head stays 16/32-bit
    assert not any(getattr(m, bnb_cpu.REPACK_FLAG) for m in layers)

    model = add_lora(model, 4, 8, TARGETS, task_type="CAUSAL_LM")
    x = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():  # what a "before" score or a generation does before training
        eval_logits = model(input_ids=x).logits
    assert sum(bnb_cpu.is_repacked(m) for m in layers) == 0

    model.train()
    out = model(input_ids=x, labels=x)
    out.loss.backward()  # raised "a view of a leaf Variable ..." in the repacked layout
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    # dropout is 0, so train and eval mode run the same computation: the same kernel path, the same numbers
    # (fp32 both times; only the summation order may differ, hence a few fp32 ulps of the logits' size)
    tol = 8 * torch.finfo(torch.float32).eps * eval_logits.abs().max().item()
    torch.testing.assert_close(out.logits.detach(), eval_logits, rtol=0, atol=tol)


@pytest.mark.parametrize("double_quant", [False, True], ids=["single-quant", "double-quant"])
def test_layers_repacked_before_the_guard_are_converted_back(phi_folder, as_on_an_avx512_bf16_cpu, double_quant):
    """A model loaded without the guard, then repacked as bitsandbytes' eval forward does: the guard undoes it
    (same 4-bit codes; every weight within what the scales' detour through bfloat16 can change) and warns."""
    config = bnb_4bit_config(double_quant=double_quant, dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(phi_folder, quantization_config=config, dtype=torch.float32,
                                                 device_map="cpu")
    layers = linear_4bit(model)
    assert all(getattr(m, bnb_cpu.REPACK_FLAG) for m in layers)  # as bitsandbytes sets it on such a CPU
    codes = [m.weight.data.clone() for m in layers]
    weights = [bnbF.dequantize_4bit(m.weight.data, m.weight.quant_state) for m in layers]
    scale_codes = [m.weight.quant_state.absmax.clone() for m in layers]
    for m in layers:  # what Linear4bit.forward does on such a CPU in eval mode without grad
        m.weight.data, _ = bnbF._convert_weight_packed_for_cpu(m.weight.data, m.weight.quant_state)
    assert all(bnb_cpu.is_repacked(m) for m in layers)

    with pytest.warns(UserWarning, match=f"{len(layers)} bitsandbytes Linear4bit layer"):
        bnb_cpu.keep_4bit_trainable(model)
    for m, code, w, scale in zip(layers, codes, weights, scale_codes, strict=True):
        assert not bnb_cpu.is_repacked(m) and not getattr(m, bnb_cpu.REPACK_FLAG)
        assert torch.equal(m.weight.data, code)  # the repacking only reorders the 4-bit codes
        restored = bnbF.dequantize_4bit(m.weight.data, m.weight.quant_state)
        state = m.weight.quant_state
        if not double_quant:
            # w = code value x block scale; only the scale changed, by bfloat16 rounding: |dw| <= 2^-8 |w|
            torch.testing.assert_close(restored, w, rtol=BF16_RELATIVE_ROUNDING, atol=0)
        else:
            # w = code value (|c| <= 1) x block scale s. The scales were rounded to bfloat16 (<= 2^-8 |s|), then
            # quantized again with the signed 8-bit dynamic code, in blocks of 256 scales minus their mean:
            # that rounding is at most half the code's widest gap times the block's largest |s - mean|
            # (state2.absmax). Float32 arithmetic adds a few ulps on top.
            assert state.nested and scale.dtype == state.absmax.dtype == torch.uint8
            scales = bnbF.dequantize_blockwise(state.absmax, state.state2) + state.offset
            gap = bnbF.create_dynamic_map(signed=True).sort().values.diff().max().item()
            bound = (BF16_RELATIVE_ROUNDING * scales.abs().max().item() + gap / 2 * state.state2.absmax.max().item()
                     + 4 * torch.finfo(torch.float32).eps * scales.abs().max().item())
            assert (restored - w).abs().max().item() <= bound


def test_a_model_without_4bit_layers_is_left_alone(phi_folder):
    model = load_model(str(phi_folder), AutoModelForCausalLM, dtype=torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert bnb_cpu.keep_4bit_trainable(model) is model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_only_the_optional_kernel_message_is_dropped(caplog):
    """``import utils`` filters bitsandbytes' one message about the optional kernel; other records pass."""
    import utils  # noqa: F401  (installs the filter)

    logger = logging.getLogger(bnb_cpu.OPTIONAL_KERNEL_LOGGER)
    with caplog.at_level(logging.WARNING, logger=bnb_cpu.OPTIONAL_KERNEL_LOGGER):
        logger.warning("%s: No module named 'kernels'. Please make sure ...", bnb_cpu.OPTIONAL_KERNEL_MESSAGE)
        logger.warning("some other bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["some other bitsandbytes warning"]


def test_the_filter_matches_what_bitsandbytes_logs():
    """If bitsandbytes renames the logger or rewords the message, the filter would silently stop working."""
    from bitsandbytes.backends.cpu import ops

    assert ops.logger.name == bnb_cpu.OPTIONAL_KERNEL_LOGGER
    assert bnb_cpu.OPTIONAL_KERNEL_MESSAGE in inspect.getsource(ops)
    assert hasattr(bnb.nn.Linear4bit(64, 64), bnb_cpu.REPACK_FLAG)
