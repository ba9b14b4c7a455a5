"""utils.models.rotary: RoPE applied in place gives transformers' attention numbers, forward to the bit.

The rotation against transformers' ``apply_rotary_pos_emb`` (full and partial, random shapes: hypothesis), its
gradient against autograd's (float64 gradcheck), and whole tiny models (Phi-2's architecture with its partial
rotation, Llama's with a full one and grouped keys) patched against unpatched: the query and key reaching the attention
function equal to the bit, logits and gradients to rounding, in float32 and under bf16 autocast; generation with a cache
unchanged (the fallback).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from utils.models import rotary, tiny_phi
from utils.paths import REPO_ROOT
from utils.qa.data import qa_texts

DATA = [REPO_ROOT / "data/qa/train.json", REPO_ROOT / "data/qa/validation.json"]


def _cos_sin(batch: int, seq: int, rot: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin ``(batch, seq, rot)`` as transformers' rotary embedding builds them (frequencies repeated)."""
    g = torch.Generator().manual_seed(seed)
    position = torch.randint(0, 4096, (batch, seq, 1), generator=g).double()
    freqs = position / 10000 ** (torch.arange(0, rot, 2, dtype=torch.double) / rot)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), seq=st.integers(1, 9), heads=st.integers(1, 4), half=st.integers(1, 8),
       extra=st.integers(0, 3), bf16=st.booleans(), seed=st.integers(0, 2**16))
def test_the_rotation_equals_transformers_to_the_bit(batch, seq, heads, half, extra, bf16, seed):
    dtype = torch.bfloat16 if bf16 else torch.float32
    rot, head_dim = 2 * half, 2 * half + 2 * extra
    x = torch.randn(batch, seq, heads, head_dim, generator=torch.Generator().manual_seed(seed)).to(dtype)
    cos, sin = _cos_sin(batch, seq, rot, dtype, seed)
    q = x.transpose(1, 2)  # transformers' (batch, heads, seq, head_dim) view
    rotated, _ = apply_rotary_pos_emb(q[..., :rot], q[..., :rot], cos, sin)
    expected = torch.cat((rotated, q[..., rot:]), dim=-1).transpose(1, 2)
    out = rotary.RotateInPlace.apply(x.clone(), cos, sin)
    assert torch.equal(out, expected)


def test_the_backward_is_the_rotation_by_minus_the_angle():
    x = torch.randn(2, 5, 3, 10, dtype=torch.double, requires_grad=True)
    cos, sin = _cos_sin(2, 5, 6, torch.double, 0)
    assert torch.autograd.gradcheck(lambda t: rotary.RotateInPlace.apply(t.clone(), cos, sin), (x,))


def test_it_refuses_a_tensor_something_saved():
    """In place is safe only when nothing kept the projection's output for backward: autograd checks it."""
    x = torch.randn(1, 4, 2, 8, requires_grad=True)
    y = x * 1.0
    z = y.sin()  # sin saves y
    rotary.RotateInPlace.apply(y, *_cos_sin(1, 4, 8, torch.float32, 1))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def _tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", qa_texts(*DATA), seed=0,
                                      vocab_size=256, hidden_size=64, intermediate_size=128)
    phi = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    phi.config.resid_pdrop = 0.0  # dropout would draw other masks in the second run
    for layer in phi.model.layers:
        layer.resid_dropout.p = 0.0
    return {"phi": phi, "llama": _tiny_llama()}


def _run(model, ids, position_ids, bf16, monkeypatch):
    """Logits, gradients, and the query and key each layer hands the attention function."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward as attention
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    seen = []

    def spy(module, query, key, *args, **kwargs):
        seen.append((query.detach().clone(), key.detach().clone()))
        return attention(module, query, key, *args, **kwargs)

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS, "sdpa", spy)
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(input_ids=ids, labels=ids, position_ids=position_ids, use_cache=False)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach().float(), grads, seen


@pytest.mark.parametrize("name", ["phi", "llama"])
@pytest.mark.parametrize("bf16", [False, True])
def test_a_patched_model_computes_transformers_numbers(models, name, bf16, monkeypatch):
    model = models[name]
    model.config._attn_implementation = "sdpa"
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(3))
    position_ids = torch.arange(24).repeat(2, 1)
    position_ids[1, 9:] -= 9  # two examples packed in the second row
    logits_ref, grads_ref, seen_ref = _run(model, ids, position_ids, bf16, monkeypatch)
    changed = rotary.rope_in_place(model)
    try:
        assert len(changed) == model.config.num_hidden_layers
        logits, grads, seen = _run(model, ids, position_ids, bf16, monkeypatch)
    finally:
        rotary.undo_rope_in_place(changed)
    assert all("forward" not in vars(m) for m in changed)
    assert len(seen) == len(seen_ref) == model.config.num_hidden_layers
    for (q, k), (q_ref, k_ref) in zip(seen, seen_ref, strict=True):  # what attention receives: transformers' values to the bit
        assert torch.equal(q, q_ref.to(q.dtype)) and torch.equal(k, k_ref.to(k.dtype))
        assert q.dtype == q_ref.dtype or bf16  # bf16: ours rounds once where autocast would round transformers'
    # The attention kernel may block the computation differently for the (batch, seq, heads, dim) layout it now
    # reads: float32 rounding (~100 ulps of the largest value), or one bf16 rounding (2^-8) carried through
    rel = 0.05 if bf16 else 1e-5
    assert torch.allclose(logits, logits_ref, rtol=0, atol=rel * logits_ref.abs().max().item())
    for n, g in grads.items():  # the backward rounds in another order too
        assert torch.allclose(g, grads_ref[n], rtol=0, atol=rel * grads_ref[n].abs().max().item() + 1e-12), n


def test_generation_with_a_cache_falls_back_to_transformers(models):
    model = models["llama"].eval()
    ids = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(4))
    expected = model.generate(ids, max_new_tokens=5, do_sample=False)
    changed = rotary.rope_in_place(model)
    try:
        assert torch.equal(model.generate(ids, max_new_tokens=5, do_sample=False), expected)
    finally:
        rotary.undo_rope_in_place(changed)
        model.train()
