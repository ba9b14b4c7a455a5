"""utils.lessons.lora: our LoRA / QLoRA layers against peft and bitsandbytes on real MiniLM weights."""

from __future__ import annotations

import copy
import math

import bitsandbytes.functional as bnbF
import pytest
import tolerances as T
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModel

from utils.experiments import ablation
from utils.lessons import lora as L
from utils.models import MINILM_ID, adapters, bnb_4bit_config, load_model

QUERY = "encoder.layer.0.attention.self.query"
# The longest chain of products through one MiniLM layer (for tests/tolerances.chain_tolerance): q/k/v
# (384 inputs), scores (head dimension 32), attention over at most 12 tokens, attention output (384), MLP
# (384 -> 1536 -> 384). The QLoRA tests keep the first 2 of 6 layers; a backward pass runs the chain twice.
MINILM_LAYER_CHAIN = [384, 32, 12, 384, 384, 1536]


@pytest.fixture(scope="module")
def minilm() -> torch.nn.Module:
    """all-MiniLM-L6-v2 encoder in float32 (real pretrained weights), never modified by a test."""
    torch.manual_seed(0)
    return load_model(MINILM_ID, AutoModel, dtype=torch.float32)


def _randomise_lora(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every LoRA B (and A) random values, so the update is not zero and a mismatch would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _copy_all(peft_model: torch.nn.Module, ours: torch.nn.Module) -> int:
    """Copy A and B of every peft LoRA layer into the layer of the same name in ours; returns how many."""
    mine = L.lora_layers(ours)
    copied = 0
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            key = name.removeprefix("base_model.model.")
            L.copy_lora_weights(module, mine[key])
            copied += 1
    assert copied == len(mine) > 0
    return copied


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask}


# --- one layer: our LoRALinear == peft's lora.Linear, before and after merge --------------------


@pytest.mark.parametrize("use_rslora", [False, True])
def test_lora_layer_equals_peft_before_and_after_merge(minilm, use_rslora):
    base = minilm.get_submodule(QUERY)
    peft_model = get_peft_model(copy.deepcopy(torch.nn.ModuleDict({"query": base})),
                                LoraConfig(r=4, lora_alpha=8, target_modules=["query"], use_rslora=use_rslora))
    _randomise_lora(peft_model)
    peft_layer = peft_model.base_model.model["query"]
    ours = L.LoRALinear(copy.deepcopy(base), rank=4, alpha=8, use_rslora=use_rslora)
    L.copy_lora_weights(peft_layer, ours)
    assert ours.scaling == pytest.approx(peft_layer.scaling["default"]) == (8 / 2 if use_rslora else 8 / 4)
    x = torch.randn(5, 7, 384, generator=torch.Generator().manual_seed(1))
    w0 = base.weight.clone()
    # float32 rounding bounds (tests/tolerances.py): every comparison below is of two evaluations of the same
    # formula in another order; r + 3 roundings beyond the 384-term dot product cover the LoRA path (r
    # products, scaling, sum) or the merge, and the bias add
    magnitude = T.lora_weight_magnitude(w0, ours.lora_A, ours.lora_B, ours.scaling)
    out_bound = T.linear_bound(x, magnitude, base.bias, extra_roundings=4 + 3)
    weight_bound = 2 * T.gamma(4 + 2) * magnitude  # B @ A (r products), scaling, + W
    with torch.no_grad():
        y_peft, y_ours = peft_layer(x), ours(x)
        signal = (y_ours - base(x)).abs().max().item()
        assert signal > 1e-2  # the update really changes the output
        T.assert_within(y_ours, y_peft, out_bound, signal, "LoRA output vs peft")
        delta_bound = 2 * T.gamma(4 + 1) * ours.scaling * (ours.lora_B.abs() @ ours.lora_A.abs())
        T.assert_within(ours.delta_weight(), peft_layer.get_delta_weight("default"), delta_bound, what="delta W")
        peft_layer.merge()
        ours.merge()
        T.assert_within(ours.base.weight, peft_layer.base_layer.weight, weight_bound, what="merged weight vs peft")
        T.assert_within(ours(x), peft_layer(x), out_bound, signal, "merged output vs peft")
        T.assert_within(ours(x), y_ours, out_bound, signal, "merged vs unmerged output")
        ours.unmerge()
        T.assert_within(ours.base.weight, w0, weight_bound, what="unmerged weight vs the original")
        T.assert_within(ours(x), y_ours, out_bound, signal, "output after unmerge")
        T.assert_within(ours.merged_linear()(x), y_ours, out_bound, signal, "merged_linear() output")


def test_dropout_only_in_training_and_only_on_the_lora_path(minilm):
    layer = L.LoRALinear(copy.deepcopy(minilm.get_submodule(QUERY)), rank=2, alpha=4, dropout=0.5)
    _randomise_lora(layer)
    x = torch.randn(4, 384, generator=torch.Generator().manual_seed(0))
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    torch.manual_seed(0)
    a = layer(x)
    assert not torch.allclose(a, layer(x))  # a fresh dropout mask
    layer.lora_B.data.zero_()
    torch.testing.assert_close(layer(x), layer.base(x))  # no update -> dropout cannot reach the base


def test_b_starts_at_zero_so_the_wrapped_layer_starts_as_the_base(minilm):
    base = minilm.get_submodule(QUERY)
    layer = L.LoRALinear(copy.deepcopy(base), rank=8, alpha=16)
    x = torch.randn(3, 384)
    assert torch.equal(layer(x), base(x))
    assert layer.lora_A.abs().sum() > 0 and layer.lora_B.abs().sum() == 0


# --- whole model: same trainable counts and the same outputs as peft -------------------------


@pytest.mark.parametrize("targets", [["query", "value"], "all-linear"])
def test_inject_lora_matches_peft_counts_and_outputs(minilm, targets):
    peft_model = get_peft_model(copy.deepcopy(minilm), LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    _randomise_lora(peft_model)
    ours = L.inject_lora(copy.deepcopy(minilm), rank=8, alpha=16, target_modules=targets)
    n_layers = _copy_all(peft_model, ours)
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert adapters.count_parameters(ours) == {"trainable": trainable, "total": total}
    # hand count: q, v are 384x384 in 6 layers; all-linear adds k, attention out (384x384),
    # intermediate (384->1536), output (1536->384) and the pooler (384x384)
    expected = 6 * 2 * 8 * 768 if targets != "all-linear" else 6 * 8 * (4 * 768 + 2 * 1920) + 8 * 768
    assert trainable == expected and n_layers == (12 if targets != "all-linear" else 37)
    with torch.no_grad():
        y_peft = peft_model(**_inputs()).last_hidden_state
        y_ours = ours(**_inputs()).last_hidden_state
        signal = (y_peft - minilm(**_inputs()).last_hidden_state).abs().max().item()  # what LoRA changes
    tol = T.chain_tolerance(6 * MINILM_LAYER_CHAIN, y_peft.abs().max().item())
    T.assert_within(y_ours, y_peft, tol, signal, "6-layer LoRA model vs peft")


# --- QLoRA: our 4-bit layer == bitsandbytes Linear4bit + peft LoRA ----------------------------


@pytest.fixture(scope="module", params=[False, True], ids=["nf4", "nf4+double-quant"])
def qlora_pair(request, minilm):
    """(bitsandbytes + peft QLoRA model, our QLoRA model) with the same weights and the same A, B."""
    double_quant = request.param
    bnb_model = load_model(MINILM_ID, AutoModel, bnb_4bit_config(double_quant=double_quant, dtype=torch.float32),
                           dtype=torch.float32)
    fp32_model = copy.deepcopy(minilm)
    for model in (bnb_model, fp32_model):  # the first 2 of 6 layers (real weights) keep the test fast
        model.encoder.layer = model.encoder.layer[:2]
    peft_model = adapters.add_lora(bnb_model, rank=4, alpha=8, target_modules=["query", "value", "dense"])
    _randomise_lora(peft_model)
    ours = L.inject_lora(fp32_model, rank=4, alpha=8, target_modules=["query", "value", "dense"],
                         quantize=True, double_quant=double_quant)
    _copy_all(peft_model, ours)
    return double_quant, peft_model, ours


def test_our_4bit_weight_is_bitsandbytes_weight(qlora_pair):
    double_quant, peft_model, ours = qlora_pair
    bnb_weight = peft_model.base_model.model.get_submodule(QUERY).base_layer.weight
    reference = bnbF.dequantize_4bit(bnb_weight.data, bnb_weight.quant_state)
    mine = ours.get_submodule(QUERY).base.dequantized_weight()
    if double_quant:
        # bitsandbytes' CPU search may pick the neighbouring 8-bit code for an absmax constant near a
        # tie (see test_quant): then that block's 64 weights are scaled ~1% differently. Everything
        # else is bit-identical.
        rows_differ = (mine != reference).reshape(-1, 64).any(dim=1)
        assert rows_differ.float().mean() < 0.01
        ratio = mine.reshape(-1, 64)[rows_differ].abs().sum(1) / reference.reshape(-1, 64)[rows_differ].abs().sum(1)
        assert ((ratio - 1).abs() < 0.05).all()
    else:
        assert torch.equal(mine, reference)


def _with_bitsandbytes_scale_codes(peft_model, ours):
    """With double quantization, bitsandbytes' CPU search may store a neighbouring 8-bit code for an absmax
    near a tie (test above, and test_quant). Copy its codes into our layers, so that the two models hold
    identical 4-bit weights and any difference left in their outputs is rounding."""
    aligned = copy.deepcopy(ours)
    theirs = peft_model.base_model.model
    frozen = [(n, m) for n, m in aligned.named_modules() if isinstance(m, L.FrozenLinear4bit)]
    for name, layer in frozen:  # LoRA-wrapped ("<name>.base") and plain 4-bit layers (key, pooler) alike
        weight = theirs.get_submodule(name.removesuffix(".base") + (".base_layer" if name.endswith(".base")
                                                                       else "")).weight
        layer.absmax_codes.copy_(weight.quant_state.absmax)
        layer.absmax2.copy_(weight.quant_state.state2.absmax)
        layer.absmax_offset.copy_(weight.quant_state.offset)
        assert torch.equal(layer.dequantized_weight(), bnbF.dequantize_4bit(weight.data, weight.quant_state)), name
    assert len(frozen) == 2 * 6 + 1  # q, k, v, attention output, intermediate, output per layer; the pooler
    return aligned


def test_qlora_model_output_equals_bitsandbytes_peft(qlora_pair):
    double_quant, peft_model, ours = qlora_pair
    if double_quant:
        ours = _with_bitsandbytes_scale_codes(peft_model, ours)
    with torch.no_grad():
        y_bnb = peft_model(**_inputs()).last_hidden_state
        y_ours = ours(**_inputs()).last_hidden_state
        with peft_model.disable_adapter():
            signal = (y_bnb - peft_model(**_inputs()).last_hidden_state).abs().max().item()  # what LoRA changes
    # same 4-bit weights, same A and B, another order of operations: float32 rounding only
    tol = T.chain_tolerance(2 * MINILM_LAYER_CHAIN, y_bnb.abs().max().item())
    T.assert_within(y_ours, y_bnb, tol, signal, f"QLoRA output vs bitsandbytes + peft (double_quant={double_quant})")


def test_after_backward_only_a_and_b_have_gradients_equal_to_peft(qlora_pair):
    double_quant, peft_model, ours = qlora_pair
    if double_quant:
        ours = _with_bitsandbytes_scale_codes(peft_model, ours)
    for model in (peft_model, ours):
        model.zero_grad(set_to_none=True)
        out = model(**_inputs(1))
        (out.last_hidden_state.pow(2).mean() + out.pooler_output.pow(2).mean()).backward()
    with_grad = [n for n, p in ours.named_parameters() if p.grad is not None]
    assert with_grad and all(n.endswith(("lora_A", "lora_B")) for n in with_grad)
    assert len(with_grad) == 2 * len(L.lora_layers(ours))
    assert all(not p.requires_grad for n, p in ours.named_parameters() if "lora_" not in n)
    grads_peft = {n.removeprefix("base_model.model.").replace(".default.weight", ""): p.grad
                  for n, p in peft_model.named_parameters() if p.grad is not None}
    for name in with_grad:
        ref = grads_peft[name]
        # forward and backward through both layers (and the pooler, 384): twice the chain, rounding only;
        # the signal is the gradient itself (a wrong one would be off by its own size)
        tol = T.chain_tolerance(2 * (2 * MINILM_LAYER_CHAIN + [384]), ref.abs().max().item())
        T.assert_within(ours.get_parameter(name).grad, ref, tol, ref.abs().max().item(), name)


def test_dequantize_in_backward_gives_the_same_input_gradient_as_autograd(generator):
    linear = torch.nn.Linear(96, 40)
    layer = L.FrozenLinear4bit(linear)
    x = torch.randn(6, 96, generator=generator, requires_grad=True)
    layer(x).pow(2).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    torch.nn.functional.linear(x2, layer.dequantized_weight(), layer.bias).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_memory_of_4bit_base_and_adapters(minilm):
    layer = L.QLoRALinear(copy.deepcopy(minilm.get_submodule(QUERY)), rank=8, alpha=16)
    mem = L.memory_breakdown(layer)
    n = 384 * 384
    assert mem["base_stored"] == n // 2 + 4 * n // 64 + 4 * 384  # packed codes + fp32 absmax + fp32 bias
    assert mem["base_full_precision"] == 4 * n + 4 * 384
    assert mem["adapters"] == 4 * 8 * (384 + 384)
    dq = L.QLoRALinear(copy.deepcopy(minilm.get_submodule(QUERY)), rank=8, alpha=16, double_quant=True)
    assert L.memory_breakdown(dq)["base_stored"] < mem["base_stored"]


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [L.LoRALinear, L.QLoRALinear])
@pytest.mark.parametrize("rank,alpha,match", [(0, 16, "rank must be a positive integer"),
                                              (-2, 16, "rank must be a positive integer"),
                                              (4, 0, "alpha must be > 0"),
                                              (4, -1.0, "alpha must be > 0")])
def test_bad_rank_or_alpha(cls, rank, alpha, match):
    with pytest.raises(ValueError, match=match):
        cls(torch.nn.Linear(8, 8), rank=rank, alpha=alpha)


def test_bad_input_to_inject_and_layers(minilm):
    with pytest.raises(ValueError, match=r"\['q_proj'\] match no linear layer.*'query'"):
        L.inject_lora(copy.deepcopy(minilm), rank=4, alpha=8, target_modules=["q_proj"])
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        L.inject_lora(minilm, rank=0, alpha=8)
    with pytest.raises(TypeError, match="wraps an nn.Linear"):
        L.LoRALinear(torch.nn.Conv1d(4, 4, 1), rank=2, alpha=4)
    qlora = L.QLoRALinear(torch.nn.Linear(64, 8), rank=2, alpha=4)
    with pytest.raises(TypeError, match="stored in 4 bits"):
        qlora.merge()
    layer = L.LoRALinear(torch.nn.Linear(8, 8), rank=2, alpha=4)
    layer.merge()
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()


def test_parameter_count_formula():
    assert L.lora_parameter_count(2560, 2560, 8) == 8 * 5120
    assert L.lora_scaling(16, 32) == 2 and L.lora_scaling(16, 32, use_rslora=True) == 8


# --- the ablation's configuration and its bad input ---------------------------------------------


def test_ablation_configs_main_line_and_variants():
    configs = ablation.ablation_configs([1, 8, 64], seeds=[0, 1], alpha_per_rank=2, fixed_alpha=4, rslora_alpha=4,
                                        variant_ranks=[8, 32], target_runs={"MLP only": (["intermediate.dense"], 12)})
    main = [c for c in configs if c["variant"] == "all linear, alpha=2r"]
    assert [(c["rank"], c["alpha"], c["seed"]) for c in main] == [(1, 2, 0), (1, 2, 1), (8, 16, 0), (8, 16, 1),
                                                                   (64, 128, 0), (64, 128, 1)]
    variants = configs[len(main):]  # the alpha variants only at rank 8: 32 is not in the main line
    assert [(c["variant"], c["rank"], c["alpha"], c["use_rslora"], c["targets"], c["seed"]) for c in variants] == [
        ("all linear, alpha=4", 8, 4, False, "all-linear", 0), ("all linear, rsLoRA alpha=4", 8, 4, True, "all-linear", 0),
        ("all linear, alpha=4", 8, 4, False, "all-linear", 1), ("all linear, rsLoRA alpha=4", 8, 4, True, "all-linear", 1),
        ("MLP only", 12, 24, False, ["intermediate.dense"], 0), ("MLP only", 12, 24, False, ["intermediate.dense"], 1)]
    # fixed alpha 16 at rank 8 is alpha = 2r: the main line's run, not repeated
    same = ablation.ablation_configs([8], seeds=[0], fixed_alpha=16, variant_ranks=[8])
    assert [c["variant"] for c in same] == ["all linear, alpha=2r"]
    # rsLoRA with alpha 16 at rank 64 scales by 16 / 8 = 2 = (2 * 64) / 64: the main line's run again
    rs = ablation.ablation_configs([8, 64], seeds=[0], fixed_alpha=16, rslora_alpha=16, variant_ranks=[8, 64])
    assert [(c["variant"], c["rank"]) for c in rs[2:]] == [("all linear, rsLoRA alpha=16", 8), ("all linear, alpha=16", 64)]


def test_equal_budget_ranks_give_each_target_set_the_same_trainable_parameters():
    # MiniLM: 6 blocks; attention q, k, v, attention.output.dense are 384 x 384 (768 numbers per unit of rank),
    # the MLP 384 -> 1536 -> 384 (1920 each); "all-linear" also takes the 384 x 384 pooler
    attention = ["query", "key", "value", "attention.output.dense"]
    mlp = ["intermediate.dense", "layer.0.output.dense"]  # a dotted suffix picks the MLP's dense, not attention's
    assert ablation.lora_parameters_per_rank(MINILM_ID, attention) == 6 * 4 * 768
    assert ablation.lora_parameters_per_rank(MINILM_ID, mlp) == 6 * 1920 + 1920
    per_rank_all = ablation.lora_parameters_per_rank(MINILM_ID, "all-linear")
    assert per_rank_all == 6 * (4 * 768 + 2 * 1920) + 768
    ranks = ablation.equal_budget_ranks(MINILM_ID, {"attention": attention}, budget=8 * per_rank_all)
    assert ranks == {"attention": round(8 * per_rank_all / (6 * 4 * 768))}


def test_a_run_that_diverges_or_stalls_is_flagged():
    assert not ablation.failed_to_train([1.4, 1.2, 1.0, 0.7, 0.5, 0.4])
    assert ablation.failed_to_train([1.4, 1.3, 1.5, 2.0, 2.2, 2.1])  # diverged: ended above where it started
    assert ablation.failed_to_train([1.61, 1.66, 1.70, 1.64, 1.60, 1.59])  # stalled: fell less than 10%
    assert ablation.failed_to_train([1.4, float("nan"), 1.0])
    assert ablation.failed_to_train([])
    # the fall it judges: last 3 logged losses against the first 3, as a share of where the curve started
    assert ablation.loss_fall([2.0, 2.0, 2.0, 1.0, 1.0, 1.0]) == pytest.approx(0.5)
    assert ablation.loss_fall([1.0, 2.0]) == pytest.approx(-1.0)  # window capped at half the curve: it rose
    assert math.isnan(ablation.loss_fall([])) and math.isnan(ablation.loss_fall([1.0, float("inf")]))


@pytest.mark.parametrize("kwargs,match", [({"ranks": [4, 0]}, "rank must be a positive integer"),
                                          ({"ranks": [-1]}, "rank must be a positive integer"),
                                          ({"ranks": []}, "ranks is empty"),
                                          ({"seeds": []}, "seeds is empty"),
                                          ({"fixed_alpha": 0}, "alpha must be > 0"),
                                          ({"alpha_per_rank": -2}, "alpha must be > 0")])
def test_ablation_bad_rank_alpha_or_seeds(kwargs, match):
    args = {"ranks": [4], "seeds": [0], **kwargs}
    with pytest.raises(ValueError, match=match):
        ablation.ablation_configs(**args)


def test_a_target_module_that_matches_nothing_lists_the_layers_before_any_run():
    ablation.check_targets_exist(MINILM_ID, ["query", "key", "value"])
    ablation.check_targets_exist(MINILM_ID, "all-linear")
    with pytest.raises(ValueError, match=r"\['q_proj'\] match no linear layer.*'dense'.*'query'"):
        ablation.check_targets_exist(MINILM_ID, ["q_proj"])


def test_a_dataset_missing_its_text_or_label_column_is_a_clear_error(tmp_path):
    from utils.classification import load_labelled

    path = tmp_path / "tickets.csv"
    path.write_text("sentence,label\nmy parcel is late,delivery\nrefund please,billing\n")
    with pytest.raises(ValueError, match="text.*sentence"):
        load_labelled(path)
    with pytest.raises(ValueError, match="category.*sentence"):
        load_labelled(path, text_column="sentence", label_column="category")


def test_saved_tensors_4bit_layer_keeps_no_dequantized_weight(minilm):
    linear = copy.deepcopy(minilm.get_submodule("encoder.layer.0.intermediate.dense"))  # 1536 x 384
    ours = L.QLoRALinear(linear, rank=8, alpha=16)
    x = torch.randn(4, 10, 384, requires_grad=True)  # inside a network: earlier adapters need grad_x
    _, saved_ours = L.saved_tensor_bytes(lambda: ours(x))
    # naive: dequantize, then let autograd handle the matmul -> it keeps the fp32 weight for grad_x
    _, saved_naive = L.saved_tensor_bytes(
        lambda: torch.nn.functional.linear(x, ours.base.dequantized_weight(), ours.base.bias))
    weight_bytes = 1536 * 384 * 4
    assert saved_ours < weight_bytes / 4 and saved_naive >= weight_bytes


def test_late_share_is_the_part_of_a_loss_curves_fall_after_two_thirds():
    flat_end = [2.0] * 4 + [1.5] * 4 + [1.0] * 8 + [1.0] * 8  # fell early, then flat
    still_falling = [2.0 - 0.05 * i for i in range(24)]  # a straight line
    assert ablation.late_share(flat_end) == pytest.approx(0.0)
    # windows of 4: start 1.925 (steps 0-3), two thirds 1.225 (steps 14-17), end 0.925 (steps 20-23) -> 0.3 / 1.0
    assert ablation.late_share(still_falling) == pytest.approx(0.3, rel=1e-12)


def test_the_first_adam_step_moves_b_by_the_learning_rate_and_scales_with_s_not_with_the_gradient(minilm):
    """Adam's first step divides the gradient by its own size: every entry of B moves by about lr, so the update
    dW = s dB A is proportional to the scaling s (at one rank, the same A), whatever s does to the gradient."""
    base = minilm.get_submodule(QUERY)
    g = torch.Generator().manual_seed(0)
    x, grad_y = torch.randn(4, 6, 384, generator=g), torch.randn(4, 6, 384, generator=g)
    layer = L.LoRALinear(copy.deepcopy(base), rank=8, alpha=16)
    a_before = layer.lora_A.detach().clone()
    optimizer = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=1e-3)
    layer(x).backward(grad_y)
    optimizer.step()
    assert torch.equal(layer.lora_A, a_before)  # A's gradient is zero while B = 0
    assert torch.allclose(layer.lora_B.abs(), torch.full_like(layer.lora_B, 1e-3), rtol=1e-3)  # |g| >> eps here
    sizes = {alpha: L.first_adam_step(base, x, grad_y, 8, alpha, lr=1e-3) for alpha in (2, 16, 128)}
    assert sizes[16] / sizes[2] == pytest.approx(8, rel=1e-3) and sizes[128] / sizes[16] == pytest.approx(8, rel=1e-3)
    assert L.first_adam_step(base, x, grad_y, 64, 16, use_rslora=True) == pytest.approx(
        L.first_adam_step(base, x, grad_y, 64, 128), rel=1e-3)  # 16 / sqrt(64) = 128 / 64
    assert torch.equal(base.weight, minilm.get_submodule(QUERY).weight) and base.weight.requires_grad


def test_at_a_constant_scaling_the_first_step_grows_with_the_rank(minilm):
    """dW = s dB A sums r rank-one pieces of about the same size: more pieces, a larger step (about sqrt(r) for
    pieces at random angles, as here)."""
    base = minilm.get_submodule(QUERY)
    g = torch.Generator().manual_seed(1)
    x, grad_y = torch.randn(4, 6, 384, generator=g), torch.randn(4, 6, 384, generator=g)
    sizes = [L.first_adam_step(base, x, grad_y, r, 2 * r) for r in (1, 4, 16, 64)]
    assert sizes == sorted(sizes)
    assert 64**0.3 < sizes[-1] / sizes[0] < 64**0.7  # random directions: about 64**0.5 = 8


def test_layer_input_and_output_grad_is_what_autograd_sees(minilm):
    model = copy.deepcopy(minilm)
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])

    def loss_fn(m: torch.nn.Module) -> torch.Tensor:
        return m(input_ids=ids).last_hidden_state.pow(2).mean()

    x, grad_y = L.layer_input_and_output_grad(model, QUERY, loss_fn)
    assert x.shape == (1, 6, 384) and grad_y.shape == (1, 6, 384)
    assert all(p.grad is None for p in model.parameters())  # cleared afterwards
    # the layer's own weight gradient is grad_y^T x: compare with autograd's
    loss_fn(model).backward()
    want = model.get_submodule(QUERY).weight.grad
    assert torch.allclose(grad_y.reshape(-1, 384).T @ x.reshape(-1, 384), want, rtol=1e-4, atol=1e-8)
    with pytest.raises(ValueError, match="needs no gradient"):
        L.layer_input_and_output_grad(model.requires_grad_(False), QUERY, loss_fn)
