"""utils.lessons.quant against bitsandbytes' CPU implementation and hand-computed cases."""

from __future__ import annotations

import math

import bitsandbytes.functional as bnbF
import pytest
import torch

from utils.lessons import quant as Q

BLOCKSIZES = [32, 64, 128, 256, 512, 1024, 2048, 4096]


def _bnb(x: torch.Tensor, method: str, blocksize: int, double_quant: bool = False):
    packed, state = bnbF.quantize_4bit(x, blocksize=blocksize, quant_type=method,
                                       compress_statistics=double_quant)
    return packed.reshape(-1), state


# --- the level tables -------------------------------------------------------------------------


def test_nf4_levels_derived_from_normal_quantiles_equal_bitsandbytes_table():
    ours = Q.nf4_levels()
    assert torch.equal(ours, bnbF.get_4bit_type("nf4", device="cpu"))
    assert ours[7] == 0 and ours[0] == -1 and ours[-1] == 1 and ours.numel() == 16
    # the paper's unrounded offset moves levels by at most one float32 rounding step
    exact = Q.nf4_levels(Q.NF4_OFFSET_EXACT)
    assert 0 < (exact - ours).abs().max() <= 3e-7


def test_nf4_levels_split_a_normal_distribution_into_near_equal_mass_bins():
    # the bins between midpoints should each hold roughly 1/16 of N(0,1) mass (scaled to level 1)
    lv = Q.nf4_levels().double() * torch.special.ndtri(torch.tensor(Q.NF4_OFFSET, dtype=torch.float64))
    edges = (lv[1:] + lv[:-1]) / 2
    cdf = torch.special.ndtr(edges)
    mass = torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), cdf, torch.ones(1, dtype=torch.float64)]))
    assert mass.min() > 0.035 and mass.max() < 0.09  # uniform would be 0.0625


def test_fp4_and_int4_tables_match_hand_computed_values():
    assert torch.equal(Q.fp4_levels(), bnbF.get_4bit_type("fp4", device="cpu"))
    assert Q.fp4_levels()[3] == 1.0 and Q.fp4_levels()[1] == pytest.approx(0.0625 / 12)
    assert torch.allclose(Q.int4_levels(), torch.tensor([7, 6, 5, 4, 3, 2, 1, 0, 0, -1, -2, -3, -4, -5, -6, -7]) / 7)


def test_dynamic_map_equals_bitsandbytes():
    assert torch.equal(Q.dynamic_map(), bnbF.create_dynamic_map())


def test_dynamic_map_is_strictly_increasing():
    # notebook 01 reads neighbouring 8-bit codes as neighbouring values (its double-quantization near-tie check)
    table = Q.dynamic_map()
    assert table.numel() == 256 and (table[1:] > table[:-1]).all()


# --- codes and dequantized values equal bitsandbytes ------------------------------------------


@pytest.mark.parametrize("method", ["nf4", "fp4"])
@pytest.mark.parametrize("blocksize", BLOCKSIZES)
def test_random_weights_bit_exact_with_bitsandbytes(method, blocksize, generator):
    x = torch.randn(48, blocksize, generator=generator) * 0.02
    x[3, 5] = 0.5  # an outlier
    packed, state = _bnb(x, method, blocksize)
    ours = Q.quantize_4bit(x, method, blocksize)
    assert torch.equal(Q.pack_4bit(ours.codes), packed)
    assert torch.equal(ours.scale, state.absmax)
    assert torch.equal(Q.dequantize_4bit(ours), bnbF.dequantize_4bit(packed, state).reshape(x.shape))


@pytest.mark.parametrize("method", ["nf4", "fp4"])
@pytest.mark.parametrize("blocksize", [64, 256, 4096])
def test_real_weights_and_ragged_last_block_bit_exact(method, blocksize, minilm_weights):
    # every MiniLM matrix, flattened; 384*1536 etc. plus 13 extra values -> a short last block
    for name in ("encoder.layer.0.attention.self.query.weight", "encoder.layer.5.intermediate.dense.weight"):
        w = torch.cat([minilm_weights[name].reshape(-1), minilm_weights[name].reshape(-1)[:13]])
        packed, state = _bnb(w, method, blocksize)
        ours = Q.quantize_4bit(w, method, blocksize)
        # odd length: the last byte's low nibble is padding (bitsandbytes fills it with the code of
        # 0.0), so compare codes, not the pad
        assert torch.equal(Q.unpack_4bit(packed, w.numel()), ours.codes), name
        assert torch.equal(ours.scale, state.absmax)
        assert torch.equal(Q.dequantize_4bit(ours), bnbF.dequantize_4bit(packed, state).reshape(-1))


def test_half_precision_input_is_quantized_like_bitsandbytes(generator):
    x = (torch.randn(64, 64, generator=generator) * 0.02).to(torch.bfloat16)
    packed, state = _bnb(x, "nf4", 64)
    ours = Q.quantize_4bit(x, "nf4", 64)
    assert torch.equal(Q.pack_4bit(ours.codes), packed)
    assert Q.dequantize_4bit(ours).dtype == torch.bfloat16


# --- double quantization ----------------------------------------------------------------------


@pytest.mark.parametrize("blocksize", [64, 256])
def test_double_quantization_matches_bitsandbytes(blocksize, minilm_weights):
    w = minilm_weights["embeddings.word_embeddings.weight"]  # 30522 x 384: hundreds of DQ blocks
    packed, state = _bnb(w, "nf4", blocksize, double_quant=True)
    ours = Q.quantize_4bit(w, "nf4", blocksize)
    dq = Q.double_quantize(ours.scale)
    assert torch.equal(dq.offset, state.offset)
    assert torch.equal(dq.absmax2, state.state2.absmax)
    # bitsandbytes' CPU kernel finds the 8-bit code with an approximate (SIMD) binary search that
    # may pick a neighbouring code for a value close to a boundary or to zero; we take the exact
    # nearest code. Bound, asserted: under 0.5% of codes differ; where they do, ours is never
    # farther from the value than theirs, and theirs is at most 5e-5 farther than ours (in units of
    # the second-level absmax: 0.005% of that block's range, a near-tie).
    differ = dq.codes != state.absmax
    assert differ.float().mean() < 0.005
    code = Q.dynamic_map()
    centred = ours.scale - dq.offset
    scaled = (centred / dq.absmax2.repeat_interleave(256)[: centred.numel()])[differ]
    d_ours = (scaled - code[dq.codes[differ].long()]).abs()
    d_bnb = (scaled - code[state.absmax[differ].long()]).abs()
    assert (d_ours <= d_bnb).all() and (d_bnb - d_ours < 5e-5).all()
    # where the codes agree, the recovered absmax and the weights are bit-identical
    recovered = Q.double_dequantize(dq)
    reference = bnbF.dequantize_blockwise(state.absmax, state.state2) + state.offset
    same = ~differ
    assert torch.equal(recovered[same], reference[same])
    assert (recovered - ours.scale).abs().max() < 0.01 * ours.scale.max()


# --- packing and memory arithmetic ------------------------------------------------------------


def test_pack_unpack_round_trip_and_nibble_order():
    codes = torch.tensor([1, 2, 15, 0, 7], dtype=torch.uint8)
    packed = Q.pack_4bit(codes)
    assert packed.tolist() == [0x12, 0xF0, 0x70]
    assert torch.equal(Q.unpack_4bit(packed, 5), codes)


def test_bits_per_parameter_formula():
    assert Q.bits_per_parameter(64) == 4.5
    assert Q.bits_per_parameter(64, double_quant=True) == pytest.approx(4.127, abs=5e-4)
    assert Q.bits_per_parameter(32, method="int4_asym") == 4 + 40 / 32


@pytest.mark.parametrize("blocksize,double_quant", [(64, False), (64, True), (128, True), (256, False)])
def test_bits_per_parameter_equals_what_bitsandbytes_stores(blocksize, double_quant, generator):
    n = blocksize * 256 * 4  # whole blocks at both levels
    x = torch.randn(n, generator=generator)
    packed, state = _bnb(x, "nf4", blocksize, double_quant)
    stored_bits = 8 * (packed.numel() * packed.element_size() + state.absmax.numel() * state.absmax.element_size())
    if double_quant:
        stored_bits += 8 * state.state2.absmax.numel() * state.state2.absmax.element_size()
    assert stored_bits / n == pytest.approx(Q.bits_per_parameter(blocksize, double_quant), rel=1e-12)


# --- the integer quantizers, by hand ----------------------------------------------------------


def test_symmetric_int4_by_hand():
    x = torch.tensor([0.7, -0.35, 0.1, 0.0])
    q = Q.quantize_4bit(x, "int4", blocksize=4)
    assert q.scale.item() == pytest.approx(0.7)
    assert torch.allclose(Q.dequantize_4bit(q), torch.tensor([0.7, -0.4, 0.1, 0.0]))  # -0.35/0.7*7 = -3.5: a tie, to the lower level


def test_asymmetric_int4_by_hand_uses_the_full_range():
    x = torch.tensor([0.0, 1.5, 3.0, 1.0])
    q = Q.quantize_4bit(x, "int4_asym", blocksize=4)
    assert q.scale.item() == pytest.approx(0.2) and q.zero_point.item() == 0
    assert q.codes.tolist() == [0, 8, 15, 5]
    assert torch.allclose(Q.dequantize_4bit(q), torch.tensor([0.0, 1.6, 3.0, 1.0]))


def test_asymmetric_int4_beats_symmetric_on_one_sided_data(generator):
    x = torch.rand(4096, generator=generator)  # all positive: symmetric wastes half its grid
    sym = Q.quant_error(x, Q.fake_quantize(x, "int4", 64))["mse"]
    asym = Q.quant_error(x, Q.fake_quantize(x, "int4_asym", 64))["mse"]
    assert asym < sym / 2


def test_nf4_error_is_below_int4_on_gaussian_weights(generator):
    x = torch.randn(256, 256, generator=generator)
    errs = {m: Q.quant_error(x, Q.fake_quantize(x, m, 64))["mse"] for m in Q.METHODS}
    assert errs["nf4"] < errs["int4"] and errs["nf4"] < errs["fp4"]


def test_quant_error_by_hand():
    e = Q.quant_error(torch.tensor([1.0, -1.0]), torch.tensor([0.9, -1.0]))
    assert e["mse"] == pytest.approx(0.005) and e["max_abs"] == pytest.approx(0.1)
    assert e["sqnr_db"] == pytest.approx(10 * math.log10(1 / 0.005))


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("blocksize", [0, -64, 64.0, "64", True])
def test_bad_blocksize_is_a_clear_error(blocksize):
    with pytest.raises(ValueError, match="blocksize must be a positive integer"):
        Q.quantize_4bit(torch.randn(128), "nf4", blocksize)


def test_integer_tensor_is_a_clear_error():
    with pytest.raises(TypeError, match=r"floating-point tensor.*x\.float\(\)"):
        Q.quantize_4bit(torch.arange(128), "nf4", 64)


def test_empty_tensor_and_nan_and_unknown_method_are_clear_errors():
    with pytest.raises(ValueError, match="empty tensor"):
        Q.quantize_4bit(torch.empty(0), "nf4", 64)
    with pytest.raises(ValueError, match="NaN or inf"):
        Q.quantize_4bit(torch.tensor([1.0, float("nan")]), "nf4", 64)
    with pytest.raises(ValueError, match="unknown method 'int3'"):
        Q.quantize_4bit(torch.randn(8), "int3", 64)


def test_error_sweep_rows_and_bits(generator):
    x = torch.randn(4096, generator=generator)
    rows = Q.error_sweep(x, ["nf4", "int4_asym"], [64, 256])
    assert [(r["method"], r["blocksize"]) for r in rows] == [("nf4", 64), ("nf4", 256), ("int4_asym", 64), ("int4_asym", 256)]
    assert rows[0]["bits"] == 4.5 and rows[2]["bits"] == 4 + 40 / 64
    assert rows[0]["mse"] == Q.quant_error(x, Q.fake_quantize(x, "nf4", 64))["mse"]


@pytest.mark.parametrize("source", ["gaussian", "minilm", "ragged-range"])
def test_q4_1_is_bit_exact_with_the_gguf_package(source, minilm_weights, generator):
    """Our Q4_1 against gguf's own quantizer and dequantizer (llama.cpp's reference, in numpy): the same
    codes, float16 constants and reconstruction, to the bit."""
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    x = {"gaussian": torch.randn(64, 256, generator=generator) * 0.02,
         "minilm": minilm_weights["encoder.layer.0.attention.self.query.weight"][:128],
         "ragged-range": torch.cat([torch.zeros(32), torch.full((32,), 3.0), torch.randn(192, generator=generator)])
         .reshape(8, 32)}[source]
    ours = Q.quantize_q4_1(x)
    packed = quantize(x.numpy(), GGMLQuantizationType.Q4_1)  # (rows, 20 bytes per block)
    blocks = packed.reshape(-1, 20)
    assert np.array_equal(blocks[:, 0:2].copy().view(np.float16).ravel(), ours.step.numpy())
    assert np.array_equal(blocks[:, 2:4].copy().view(np.float16).ravel(), ours.minimum.numpy())
    low, high = blocks[:, 4:] & 0x0F, blocks[:, 4:] >> 4  # first half of a block in the low nibbles
    assert np.array_equal(np.concatenate([low, high], axis=1).ravel(), ours.codes.numpy())
    expected = torch.from_numpy(dequantize(packed, GGMLQuantizationType.Q4_1)).reshape(x.shape)
    assert torch.equal(Q.dequantize_q4_1(ours), expected)
    assert Q.Q4_1_BITS == 5.0


def test_q4_1_refuses_partial_blocks():
    with pytest.raises(ValueError, match="multiple of 32 values, got 40"):
        Q.quantize_q4_1(torch.zeros(40))


def test_int4_asym_refuses_a_range_that_overflows_float32_instead_of_returning_nan():
    x = torch.tensor([3e38, -3e38, 1.0])  # finite, but max - min is inf: the step was inf, every value NaN
    with pytest.raises(ValueError, match=r"int4_asym: a block's range max - min overflows float32"):
        Q.fake_quantize(x, "int4_asym", 64)
    assert torch.equal(Q.fake_quantize(x, "nf4", 64)[:2], x[:2])  # absmax methods reach +-absmax exactly


def test_q4_1_refuses_constants_that_do_not_fit_float16_instead_of_returning_inf():
    x = torch.cat([torch.full((16,), 1e6), torch.zeros(16)])  # step 66,667 > 65,504: stored as inf
    with pytest.raises(ValueError, match=r"Q4_1 stores each block's minimum and step .* as float16, whose largest "
                                         r"value is 65504"):
        Q.quantize_q4_1(x)
    with pytest.raises(ValueError, match="float16"):
        Q.quantize_q4_1(torch.full((32,), -7e4))  # the minimum itself


def test_unpack_refuses_a_count_the_bytes_do_not_hold():
    packed = Q.pack_4bit(torch.arange(5, dtype=torch.uint8))  # 3 bytes: 5 or 6 codes
    assert torch.equal(Q.unpack_4bit(packed, 6)[:5], torch.arange(5, dtype=torch.uint8))
    for n in (10, 4, -1, 5.0, True):  # 10 returned 6 codes, 4 or -1 silently dropped some
        with pytest.raises(ValueError, match=r"n must be the number of packed codes, 5 or 6 for 3 bytes"):
            Q.unpack_4bit(packed, n)
    with pytest.raises(TypeError, match="packed must be the uint8 tensor pack_4bit returns"):
        Q.unpack_4bit(packed.int(), 5)
    with pytest.raises(TypeError, match="codes must be a uint8 tensor, got list"):
        Q.pack_4bit([1, 2])


def test_other_helpers_refuse_wrong_arguments_clearly():
    q = Q.quantize_4bit(torch.randn(100), "nf4", 64)  # 2 blocks
    with pytest.raises(TypeError, match="expected the Quantized4bit that quantize_4bit returns, got str"):
        Q.dequantize_4bit("q")
    with pytest.raises(ValueError, match=r"scale must be a tensor with one value per block \(2\), got \(3,\)"):
        Q.dequantize_4bit(q, torch.ones(3))
    with pytest.raises(ValueError, match="empty tensor"):
        Q.quant_error(torch.empty(0), torch.empty(0))
    with pytest.raises(TypeError, match="x_hat must be a torch.Tensor, got list"):
        Q.quant_error(torch.ones(2), [1.0, 1.0])
    with pytest.raises(ValueError, match=r"methods must be a list of method names, e\.g\. \['nf4'\], got 'nf4'"):
        Q.error_sweep(torch.randn(8), "nf4", [64])  # a string was read as the methods 'n', 'f', '4'
    with pytest.raises(ValueError, match=r"blocksizes must be a list of block sizes, e\.g\. \[64\], got 64"):
        Q.error_sweep(torch.randn(8), ["nf4"], 64)
    with pytest.raises(ValueError, match="blocksize must be a positive integer"):
        Q.error_sweep(torch.randn(8), ["nf4"], [64, 0])
