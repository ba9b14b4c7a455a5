"""4-bit quantizers written from scratch in plain torch, to be checked against bitsandbytes.

Every quantizer here is *block-wise*: the flattened tensor is cut into blocks of ``blocksize``
values and each block gets its own scale, so one outlier only spoils its own block.

Methods (``method=``):

``"nf4"``        NormalFloat4, QLoRA's data type: 16 levels at quantiles of N(0, 1), scaled by absmax.
``"fp4"``        bitsandbytes' 4-bit float (1 sign, 2 exponent, 1 mantissa bit), scaled by absmax.
``"int4"``       symmetric absmax integer grid k/7, k = -7..7 (bitsandbytes' ``int4`` table).
``"int4_asym"``  asymmetric min/max integer grid 0..15 with a per-block zero point.

And llama.cpp's GGUF **Q4_1** (:func:`quantize_q4_1`), the format SmolLM2 ships in: blocks of 32, codes 0..15
on a grid from each block's minimum in steps of (max - min) / 15, with the step and the minimum stored as
float16 (5 bits per weight); bit-exact with the ``gguf`` package's own quantizer (tests/test_quant.py).

Error bound (tested with hypothesis in tests/test_input_properties.py): a table method maps each value, scaled
by its block's absmax into [-1, 1], to the nearest of its 16 levels, so the reconstruction error of an element is
at most half the largest gap between adjacent levels times the block's absmax (NF4: 0.1519, FP4: 1/6, int4:
1/14 of the absmax); ``int4_asym`` at most half its step, (max - min) / 30 over the block's range widened to
include 0, and Q4_1 half its step (max - min) / 30 plus what storing its step and minimum in float16 costs. Rounding
in float32 (and in the output dtype) adds a few units in the last place; a block whose absmax is below 1e-38
(float32 subnormals) is scaled as if it were 1e-38, as bitsandbytes does, so its error is at most its absmax.
Values the format cannot hold are refused: NaN or inf, an ``int4_asym`` block whose range overflows float32, a
Q4_1 step or minimum beyond float16's 65504.

Codes are ``uint8`` values 0..15, one per element; :func:`pack_4bit` stores two per byte
(first element in the high nibble, as bitsandbytes does). :func:`double_quantize` compresses the
per-block float32 absmax constants to 8 bits, as QLoRA's double quantization does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

METHODS = ("nf4", "fp4", "int4", "int4_asym")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# QLoRA, appendix: the outermost quantile is 1 - delta with delta = (1/(2*15) + 1/(2*16)) / 2,
# so that the extreme levels sit between the quantiles of a 15- and a 16-bin split. bitsandbytes
# uses this number rounded to 7 decimals (0.9677083); so do we, which makes our levels bit-identical
# to its table (the unrounded 0.96770833... moves them by up to 3e-7, a float32 rounding step).
NF4_OFFSET_EXACT = 1.0 - 0.5 * (1 / 30 + 1 / 32)
NF4_OFFSET = round(NF4_OFFSET_EXACT, 7)


# ----------------------------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------------------------


def _check_blocksize(blocksize: int, name: str = "blocksize") -> int:
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize <= 0:
        raise ValueError(f"{name} must be a positive integer (e.g. 64), got {blocksize!r}.")
    return blocksize


def _check_tensor(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}.")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"4-bit quantization takes a floating-point tensor (float32, float16 or bfloat16), "
            f"got {x.dtype}. Convert it first, e.g. `x.float()`."
        )
    if x.numel() == 0:
        raise ValueError("cannot quantize an empty tensor (numel() == 0).")
    if not torch.isfinite(x).all():
        raise ValueError("the tensor holds NaN or inf values; 4-bit scaling needs finite numbers.")


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}.")
    return method


# ----------------------------------------------------------------------------------------------
# the 16 levels of each data type
# ----------------------------------------------------------------------------------------------


def nf4_levels(offset: float = NF4_OFFSET) -> torch.Tensor:
    """Derive the 16 NF4 levels from normal quantiles, as the QLoRA paper describes.

    8 positive levels are the N(0,1) quantiles at 8 evenly spaced probabilities from ``offset``
    down to 0.5 (exclusive), 7 negative ones likewise mirrored, plus an exact zero; all are divided
    by the largest so they span [-1, 1]. (One more positive than negative level keeps zero exact.)

    Returns:
        float32 tensor of shape (16,), sorted ascending; index = 4-bit code.
    """
    # probabilities in float32 (as the reference implementation), quantiles in float64
    p_pos = torch.linspace(offset, 0.5, 9, dtype=torch.float32)[:-1].double()
    p_neg = torch.linspace(offset, 0.5, 8, dtype=torch.float32)[:-1].double()
    positive = torch.special.ndtri(p_pos)
    negative = -torch.special.ndtri(p_neg)
    levels = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).float()
    levels = levels.sort().values
    return levels / levels.max()


def fp4_levels() -> torch.Tensor:
    """The 16 FP4 values in code order, normalised to [-1, 1] (bitsandbytes' definition).

    A code is ``s e1 e0 m``: sign, a 2-bit exponent field ``e`` and a 1-bit mantissa ``m``.
    Normal values (e > 0) are (1 + m/2) * 2**(4 - e), i.e. 8, 12, 4, 6, 2, 3 for the codes
    0b010..0b111; e == 0 is subnormal, m * 2**-4 (0 and 0.0625). Dividing by the largest (12)
    gives the table. Note the exponent field counts *down*: a larger e is a smaller number.

    Returns:
        float32 tensor of shape (16,); index = 4-bit code (8..15 are the negatives, 8 is -0).
    """
    values = []
    for sign in (1.0, -1.0):
        for bits in range(8):
            e, m = bits >> 1, bits & 1
            magnitude = m * 2.0**-4 if e == 0 else (1 + m / 2) * 2.0 ** (4 - e)
            values.append(sign * magnitude)
    table = torch.tensor(values, dtype=torch.float32)
    return table / table.abs().max()


def int4_levels() -> torch.Tensor:
    """Symmetric integer levels k/7 for k = 7..-7 (bitsandbytes' ``int4`` table, zero twice)."""
    table = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0, -0.0, -1, -2, -3, -4, -5, -6, -7], dtype=torch.float32)
    return table / 7


def levels(method: str) -> torch.Tensor:
    """The (16,) float32 level table of a table-based method (``nf4``, ``fp4``, ``int4``)."""
    _check_method(method)
    if method == "int4_asym":
        raise ValueError("int4_asym has no fixed table: its grid depends on each block's min and max.")
    return {"nf4": nf4_levels, "fp4": fp4_levels, "int4": int4_levels}[method]()


# ----------------------------------------------------------------------------------------------
# block-wise quantization
# ----------------------------------------------------------------------------------------------


@dataclass
class Quantized4bit:
    """A tensor stored in 4 bits.

    Attributes:
        codes:      uint8 (n,), one 4-bit code (0..15) per element of the flattened tensor.
        scale:      float32 (n_blocks,), the per-block absmax (table methods) or step size (asym).
        zero_point: uint8 (n_blocks,) for ``int4_asym``, else None.
        shape:      the original shape; ``dtype`` the original dtype.
        blocksize:  values per block; the last block may be shorter.
        method:     one of :data:`METHODS`.
    """

    codes: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor | None
    shape: torch.Size
    dtype: torch.dtype
    blocksize: int
    method: str

    @property
    def n_blocks(self) -> int:
        return self.scale.numel()


def _blocks(x: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, int]:
    """Flatten to float32 and cut into (n_blocks, blocksize), zero-padding the last block."""
    flat = x.reshape(-1).float()
    pad = (-flat.numel()) % blocksize
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    return flat.view(-1, blocksize), pad


def _nearest_level(scaled: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Index (uint8) of the nearest entry of ``table`` for each value; a tie goes to the lower level.

    Sorting the table and comparing against the midpoints between neighbours finds the nearest
    level with one binary search per value (no (n, len(table)) distance matrix).
    """
    table = table.to(scaled.device)
    order = torch.argsort(table, stable=True)
    sorted_levels = table[order]
    midpoints = (sorted_levels[:-1] + sorted_levels[1:]) / 2
    return order[torch.bucketize(scaled, midpoints)].to(torch.uint8)


def quantize_4bit(x: torch.Tensor, method: str = "nf4", blocksize: int = 64) -> Quantized4bit:
    """Quantize ``x`` block-wise to 4-bit codes.

    Args:
        x: float32/float16/bfloat16 tensor of any shape (computed in float32).
        method: one of :data:`METHODS`.
        blocksize: values per block, any positive integer.

    Returns:
        :class:`Quantized4bit` with ``codes`` uint8 (x.numel(),) and per-block float32 scales.
    """
    _check_method(method)
    _check_blocksize(blocksize)
    _check_tensor(x)
    blocks, pad = _blocks(x, blocksize)
    n = x.numel()
    if method == "int4_asym":
        if pad:  # padding zeros must not widen the last block's range
            last = x.reshape(-1)[-(blocksize - pad) :].float()
            lo_last, hi_last = last.min(), last.max()
        lo, hi = blocks.min(dim=1).values, blocks.max(dim=1).values
        if pad:
            lo[-1], hi[-1] = lo_last, hi_last
        lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))
        if not torch.isfinite(hi - lo).all():  # else the step is inf and every value comes back NaN
            raise ValueError("int4_asym: a block's range max - min overflows float32 (its values span more than "
                             "3.4e38); scale the tensor down first, or use an absmax method (nf4, fp4, int4).")
        scale = ((hi - lo) / 15).clamp(min=torch.finfo(torch.float32).tiny)
        zero_point = torch.round(-lo / scale).clamp(0, 15)
        q = torch.clamp(torch.round(blocks / scale[:, None]) + zero_point[:, None], 0, 15)
        return Quantized4bit(
            q.reshape(-1)[:n].to(torch.uint8), scale, zero_point.to(torch.uint8),
            x.shape, x.dtype, blocksize, method,
        )
    absmax = blocks.abs().max(dim=1).values
    scaled = torch.clamp(blocks * (1.0 / absmax.clamp(min=1e-38))[:, None], -1, 1)
    codes = _nearest_level(scaled.reshape(-1)[:n], levels(method))
    return Quantized4bit(codes, absmax, None, x.shape, x.dtype, blocksize, method)


def dequantize_4bit(q: Quantized4bit, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Rebuild the tensor: level (or integer) times its block's scale, in the original dtype.

    Args:
        q: the quantized tensor.
        scale: optional replacement for ``q.scale`` (e.g. absmax recovered by double dequantization).

    Returns:
        tensor of shape ``q.shape`` and dtype ``q.dtype``.

    Raises:
        TypeError: ``q`` is not a :class:`Quantized4bit`. ValueError: ``scale`` has not one value per block.
    """
    if not isinstance(q, Quantized4bit):
        raise TypeError(f"expected the Quantized4bit that quantize_4bit returns, got {type(q).__name__}.")
    if scale is not None and (not isinstance(scale, torch.Tensor) or scale.numel() != q.n_blocks):
        got = tuple(scale.shape) if isinstance(scale, torch.Tensor) else type(scale).__name__
        raise ValueError(f"scale must be a tensor with one value per block ({q.n_blocks}), got {got}.")
    scale = q.scale if scale is None else scale.reshape(-1)
    n = q.codes.numel()
    pad = (-n) % q.blocksize
    codes = torch.nn.functional.pad(q.codes, (0, pad)).view(-1, q.blocksize)
    if q.method == "int4_asym":
        values = (codes.float() - q.zero_point.float()[:, None]) * scale[:, None]
    else:
        values = levels(q.method).to(codes.device)[codes.long()] * scale[:, None]
    return values.reshape(-1)[:n].reshape(q.shape).to(q.dtype)


def fake_quantize(x: torch.Tensor, method: str = "nf4", blocksize: int = 64) -> torch.Tensor:
    """Quantize then dequantize: what the network computes with after 4-bit storage."""
    return dequantize_4bit(quantize_4bit(x, method, blocksize))


# ----------------------------------------------------------------------------------------------
# GGUF Q4_1 (llama.cpp): an asymmetric 4-bit code with float16 block constants
# ----------------------------------------------------------------------------------------------

Q4_1_BLOCK = 32  # llama.cpp's block size for Q4_1 (fixed by the format)
Q4_1_BITS = 4 + (16 + 16) / Q4_1_BLOCK  # the code, plus a float16 step and a float16 minimum per block: 5.0


@dataclass
class Q4_1:
    """A tensor in GGUF Q4_1: ``codes`` uint8 (n,) 0..15; ``step`` and ``minimum`` float16 (n_blocks,);
    ``shape`` the original shape. A weight is ``step * code + minimum``."""

    codes: torch.Tensor
    step: torch.Tensor
    minimum: torch.Tensor
    shape: torch.Size


def quantize_q4_1(x: torch.Tensor) -> Q4_1:
    """GGUF Q4_1 of ``x`` (any float tensor whose size is a multiple of 32), as llama.cpp and the ``gguf``
    package compute it: per block of 32, ``step = (max - min) / 15`` and ``code = trunc((x - min) / step + 0.5)``
    in float32 (the division as a multiplication by ``1 / step``, as they do), then step and min stored in float16.

    Raises:
        ValueError: the size is not a multiple of 32 (the format has no partial blocks); a block's minimum or step
            does not fit float16 (beyond 65504: it would be stored as inf and the weights come back inf or NaN).
    """
    _check_tensor(x)
    if x.numel() % Q4_1_BLOCK:
        raise ValueError(f"Q4_1 needs a multiple of {Q4_1_BLOCK} values, got {x.numel()}.")
    blocks = x.reshape(-1, Q4_1_BLOCK).float()
    low, high = blocks.min(dim=1, keepdim=True).values, blocks.max(dim=1, keepdim=True).values
    step = (high - low) / 15
    inverse = torch.where(step == 0, torch.zeros_like(step), 1 / step)
    codes = torch.trunc((blocks - low) * inverse + 0.5).clamp(0, 15).to(torch.uint8)
    step16, low16 = step.reshape(-1).half(), low.reshape(-1).half()
    if not (torch.isfinite(step16).all() and torch.isfinite(low16).all()):
        raise ValueError("Q4_1 stores each block's minimum and step ((max - min) / 15) as float16, whose largest value "
                         f"is 65504; this tensor needs up to {float(low.abs().max()):.3g} and "
                         f"{float(step.max()):.3g}. Scale it down first.")
    return Q4_1(codes.reshape(-1), step16, low16, x.shape)


def dequantize_q4_1(q: Q4_1) -> torch.Tensor:
    """float32 weights ``step * code + minimum`` (step and minimum widened from float16), in ``q.shape``."""
    blocks = q.codes.reshape(-1, Q4_1_BLOCK).float()
    return (q.step.float()[:, None] * blocks + q.minimum.float()[:, None]).reshape(q.shape)


# ----------------------------------------------------------------------------------------------
# packing: two codes per byte
# ----------------------------------------------------------------------------------------------


def pack_4bit(codes: torch.Tensor) -> torch.Tensor:
    """Pack uint8 codes 0..15 of shape (n,) into uint8 (ceil(n/2),): first code in the high nibble."""
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a uint8 tensor, got {type(codes).__name__}.")
    if codes.dtype != torch.uint8:
        raise TypeError(f"codes must be uint8, got {codes.dtype}.")
    if codes.numel() and int(codes.max()) > 15:
        raise ValueError("codes must be 4-bit values in 0..15.")
    flat = codes.reshape(-1)
    if flat.numel() % 2:
        flat = torch.nn.functional.pad(flat, (0, 1))
    return (flat[0::2] << 4) | flat[1::2]


def unpack_4bit(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_4bit`: uint8 (ceil(n/2),) -> uint8 codes (n,).

    Raises:
        TypeError: ``packed`` is not a uint8 tensor. ValueError: ``n`` is not a whole number from
            2 * packed.numel() - 1 to 2 * packed.numel() (the bytes hold that many codes; more would be invented,
            fewer silently dropped).
    """
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        got = packed.dtype if isinstance(packed, torch.Tensor) else type(packed).__name__
        raise TypeError(f"packed must be the uint8 tensor pack_4bit returns, got {got}.")
    if isinstance(n, bool) or not isinstance(n, int) or not max(0, 2 * packed.numel() - 1) <= n <= 2 * packed.numel():
        raise ValueError(f"n must be the number of packed codes, {max(0, 2 * packed.numel() - 1)} or "
                         f"{2 * packed.numel()} for {packed.numel()} bytes, got {n!r}.")
    flat = packed.reshape(-1)
    out = torch.empty(flat.numel() * 2, dtype=torch.uint8, device=flat.device)
    out[0::2], out[1::2] = flat >> 4, flat & 0x0F
    return out[:n]


# ----------------------------------------------------------------------------------------------
# double quantization of the per-block constants
# ----------------------------------------------------------------------------------------------


def dynamic_map(signed: bool = True, max_exponent_bits: int = 7, total_bits: int = 8) -> torch.Tensor:
    """The 8-bit "dynamic" data type (Dettmers, 2015) used for double quantization.

    Each value is a decimal exponent 10**-k (k = 6..0) times a mantissa taken from the midpoints of
    an even split of [0.1, 1]; the larger the exponent, the more mantissa steps it gets. Plus 0, 1.

    Returns:
        float32 tensor of shape (256,), sorted ascending, spanning [-1, 1].
    """
    data: list[float] = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        steps = 2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed else 2 ** (
            i + non_sign_bits - max_exponent_bits + 1) + 1
        bounds = torch.linspace(0.1, 1, steps, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        magnitude = 10 ** (-(max_exponent_bits - 1) + i)
        data += (magnitude * means).tolist()
        if signed:
            data += (-magnitude * means).tolist()
    extra = 2 ** (non_sign_bits - max_exponent_bits) - 1
    if extra > 0:
        bounds = torch.linspace(0.1, 1, extra + 1, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        data += (magnitude * means).tolist()
        if signed:
            data += (-magnitude * means).tolist()
    data += [0.0, 1.0]
    data += [0.0] * (2**total_bits - len(data))
    return torch.tensor(sorted(data), dtype=torch.float32)


@dataclass
class DoubleQuantized:
    """Per-block absmax constants stored in 8 bits.

    Attributes:
        codes:   uint8 (n_blocks,), indices into :func:`dynamic_map`.
        absmax2: float32 (ceil(n_blocks / blocksize),), one second-level scale per 256 constants.
        offset:  float32 scalar, the mean subtracted first (absmax values are all positive, so
                 centring them lets the signed 8-bit grid use its negative half).
        blocksize: constants per second-level block (bitsandbytes: 256).
    """

    codes: torch.Tensor
    absmax2: torch.Tensor
    offset: torch.Tensor
    blocksize: int


def double_quantize(absmax: torch.Tensor, blocksize: int = 256) -> DoubleQuantized:
    """Quantize float32 per-block constants (n_blocks,) to 8 bits, block-wise with ``blocksize``."""
    _check_blocksize(blocksize)
    _check_tensor(absmax)
    offset = absmax.float().mean()
    centred = absmax.float().reshape(-1) - offset
    blocks, _ = _blocks(centred, blocksize)
    absmax2 = blocks.abs().max(dim=1).values
    scaled = (blocks * (1.0 / absmax2.clamp(min=1e-38))[:, None]).reshape(-1)[: centred.numel()]
    codes = _nearest_level(scaled, dynamic_map())
    return DoubleQuantized(codes, absmax2, offset, blocksize)


def double_dequantize(dq: DoubleQuantized) -> torch.Tensor:
    """Recover the float32 per-block constants (n_blocks,) from their 8-bit form."""
    n = dq.codes.numel()
    pad = (-n) % dq.blocksize
    codes = torch.nn.functional.pad(dq.codes, (0, pad)).view(-1, dq.blocksize)
    values = dynamic_map().to(codes.device)[codes.long()] * dq.absmax2[:, None]
    return values.reshape(-1)[:n] + dq.offset


# ----------------------------------------------------------------------------------------------
# memory arithmetic and error metrics
# ----------------------------------------------------------------------------------------------


def bits_per_parameter(
    blocksize: int = 64, double_quant: bool = False, dq_blocksize: int = 256, method: str = "nf4"
) -> float:
    """Average storage bits per weight: 4 for the code plus the block constants' share.

    Table methods keep one float32 absmax per block (32/blocksize bits per weight); double
    quantization replaces it by an 8-bit code plus one float32 per ``dq_blocksize`` constants.
    ``int4_asym`` keeps a float32 step and a uint8 zero point per block. Fixed-size extras
    (the two 256-entry code tables, one float32 offset) do not grow with the tensor and are left out.

    >>> bits_per_parameter(64), round(bits_per_parameter(64, double_quant=True), 3)
    (4.5, 4.127)
    """
    _check_method(method)
    _check_blocksize(blocksize)
    _check_blocksize(dq_blocksize, "dq_blocksize")
    if method == "int4_asym":
        if double_quant:
            raise ValueError("double quantization is defined here for absmax methods only.")
        return 4 + (32 + 8) / blocksize
    if double_quant:
        return 4 + 8 / blocksize + 32 / (blocksize * dq_blocksize)
    return 4 + 32 / blocksize


def quant_error(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """Error of a reconstruction ``x_hat`` of ``x`` (same shape).

    Returns:
        ``mse`` mean squared error, ``max_abs`` largest absolute error, ``sqnr_db`` signal-to-
        quantization-noise ratio 10*log10(mean(x^2) / mse) in dB (higher is better).
    """
    for name, t in (("x", x), ("x_hat", x_hat)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}.")
    if x.shape != x_hat.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(x_hat.shape)}.")
    if x.numel() == 0:
        raise ValueError("cannot measure the error of an empty tensor (numel() == 0).")
    x, x_hat = x.double(), x_hat.double()
    mse = float(((x - x_hat) ** 2).mean())
    signal = float((x**2).mean())
    sqnr = math.inf if mse == 0 else 10 * math.log10(signal / mse)
    return {"mse": mse, "max_abs": float((x - x_hat).abs().max()), "sqnr_db": sqnr}


def error_sweep(x: torch.Tensor, methods: list[str], blocksizes: list[int]) -> list[dict]:
    """:func:`quant_error` of every (method, block size) on ``x``.

    Returns:
        one dict per combination: ``method``, ``blocksize``, ``bits`` (per weight, from
        :func:`bits_per_parameter`), ``mse``, ``max_abs``, ``sqnr_db``.
    """
    if isinstance(methods, str) or not isinstance(methods, Iterable):  # a string would be read letter by letter
        raise ValueError(f"methods must be a list of method names, e.g. ['nf4'], got {methods!r}.")
    if isinstance(blocksizes, str) or not isinstance(blocksizes, Iterable):
        raise ValueError(f"blocksizes must be a list of block sizes, e.g. [64], got {blocksizes!r}.")
    methods, blocksizes = list(methods), list(blocksizes)
    for method in methods:
        _check_method(method)
    for blocksize in blocksizes:
        _check_blocksize(blocksize)
    rows = []
    for method in methods:
        for blocksize in blocksizes:
            err = quant_error(x, fake_quantize(x, method, blocksize))
            rows.append({"method": method, "blocksize": blocksize,
                         "bits": bits_per_parameter(blocksize, method=method), **err})
    return rows
