"""utils.evaluation.quantized on small real and hand-built models."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import PhiConfig, PhiForCausalLM

from utils.evaluation import quantized as QM
from utils.lessons.quant import fake_quantize


class _CharTokenizer:
    """Maps each character to its byte value: enough to drive a tiny causal LM."""

    def __call__(self, text, return_tensors="pt", **_):
        class Out:
            input_ids = torch.tensor([[min(ord(c), 63) for c in text]])
        return Out()


@pytest.fixture
def tiny_phi():
    torch.manual_seed(0)
    cfg = PhiConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=128)
    return PhiForCausalLM(cfg).eval()


def test_fake_quantized_swaps_weights_and_restores_them(tiny_phi):
    name, weight = next(iter(QM.linear_weights(tiny_phi).items()))
    original = weight.detach().clone()
    with QM.fake_quantized(tiny_phi, "nf4", 64):
        assert torch.equal(weight, fake_quantize(original, "nf4", 64))
    assert torch.equal(weight, original)
    assert "lm_head" not in QM.linear_weights(tiny_phi)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tiny_phi):
    with torch.no_grad():  # zero output head: every token gets probability 1/64
        tiny_phi.lm_head.weight.zero_()
        tiny_phi.lm_head.bias.zero_()
    ppl = QM.perplexity(tiny_phi, _CharTokenizer(), "abcdefghij" * 30, max_length=64, stride=32)
    assert ppl == pytest.approx(64, rel=1e-4)


def test_perplexity_windows_score_every_token_once(tiny_phi):
    text = "the quick brown fox jumps over the lazy dog " * 3
    one_window = QM.perplexity(tiny_phi, _CharTokenizer(), text, max_length=512, stride=512)
    ids = _CharTokenizer()(text).input_ids
    with torch.no_grad():
        expected = math.exp(float(tiny_phi(ids, labels=ids).loss))
    assert one_window == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        QM.perplexity(tiny_phi, _CharTokenizer(), "  ")


def test_output_agreement_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, -2.0]])
    agree = QM.output_agreement(a, b)
    assert agree["cosine"] == pytest.approx(0.0)
    assert agree["rel_error"] == pytest.approx(4 / math.sqrt(5))


def test_layer_errors_rank_nf4_above_int4_on_real_minilm():
    from utils.models import MINILM_ID, load_model

    rows = QM.layer_errors(load_model(MINILM_ID), ["nf4", "int4"], 64)
    by = {(r["layer"], r["method"]): r for r in rows}
    layers = {r["layer"] for r in rows}
    assert len(layers) == 6 * 6 + 1  # 6 blocks x (q, k, v, attn out, ffn in, ffn out) + pooler
    better = sum(by[(la, "nf4")]["sqnr_db"] > by[(la, "int4")]["sqnr_db"] for la in layers)
    assert better == len(layers)


def test_sample_linear_weights_takes_contiguous_chunks(tiny_phi):
    sample = QM.sample_linear_weights(tiny_phi, n=256, chunk=64, seed=1)
    assert sample.shape == (256,) and sample.dtype == torch.float32
    flats = [w.detach().reshape(-1) for w in QM.linear_weights(tiny_phi).values()]
    for piece in sample.split(64):  # every chunk is a run of consecutive weights of one layer
        assert any(any(torch.equal(piece, f[s:s + 64]) for s in range(f.numel() - 63)) for f in flats)


def test_saved_tensor_bytes_by_hand():
    from utils.memory import saved_tensor_bytes

    w = torch.nn.Parameter(torch.randn(8, 4))
    x = torch.randn(3, 8, requires_grad=True)
    # x @ w saves x (3x8 floats) and w (8x4 floats) for backward
    _, with_params = saved_tensor_bytes(lambda: x @ w)
    _, without = saved_tensor_bytes(lambda: x @ w, include_parameters=False)
    assert with_params == (3 * 8 + 8 * 4) * 4 and without == 3 * 8 * 4
