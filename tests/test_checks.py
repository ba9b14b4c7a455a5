"""Every exercise checker passes the solution and fails a wrong answer with a helpful message."""

from __future__ import annotations

import pytest
import torch

from utils import checks, quant


def absmax_int4(x):
    scale = x.abs().max()
    return torch.round(x / scale * 7), scale


def test_absmax_int4():
    assert checks.check_absmax_int4(absmax_int4).startswith("✓")
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.check_absmax_int4(lambda x: (_ for _ in ()).throw(NotImplementedError))
    with pytest.raises(checks.CheckFailed, match="scale should be the largest magnitude"):
        checks.check_absmax_int4(lambda x: (torch.round(x / x.std()).clamp(-7, 7), x.std()))
    with pytest.raises(checks.CheckFailed, match="nearest integer"):
        checks.check_absmax_int4(lambda x: (torch.trunc(x / x.abs().max() * 7), x.abs().max()))


def test_bits_per_weight():
    assert checks.check_bits_per_weight({"block 32 + double quant": 4 + 8 / 32 + 32 / (32 * 256), "block 128": 4.25})
    with pytest.raises(checks.CheckFailed, match="fill in"):
        checks.check_bits_per_weight({"block 32 + double quant": None, "block 128": 4.25})
    with pytest.raises(checks.CheckFailed, match="one float32"):
        checks.check_bits_per_weight({"block 32 + double quant": 4.2539, "block 128": 4.125})


def test_spoiled_block():
    assert checks.check_spoiled_block(lambda rc, bs, shape: (rc[0] * shape[1] + rc[1]) // bs)
    with pytest.raises(checks.CheckFailed, match="row-major"):
        checks.check_spoiled_block(lambda rc, bs, shape: rc[1] // bs)


def test_nf4_levels():
    def mine():
        pos = torch.special.ndtri(torch.linspace(0.9677083, 0.5, 9)[:-1].double())
        neg = -torch.special.ndtri(torch.linspace(0.9677083, 0.5, 8)[:-1].double())
        levels = torch.cat([neg, torch.zeros(1, dtype=torch.float64), pos]).sort().values
        return (levels / levels.max()).float()

    assert "✓" in checks.check_nf4_levels(mine)
    with pytest.raises(checks.CheckFailed, match="exact zero"):
        checks.check_nf4_levels(lambda: torch.linspace(-1, 1, 16))
    with pytest.raises(checks.CheckFailed, match="16 levels"):
        checks.check_nf4_levels(lambda: torch.linspace(-1, 1, 15))


def test_sqnr_and_p999_and_choose_blocksize():
    assert checks.check_sqnr_db(lambda x, y: 10 * torch.log10((x**2).mean() / ((x - y) ** 2).mean()))
    with pytest.raises(checks.CheckFailed, match="log10"):
        checks.check_sqnr_db(lambda x, y: torch.log((x**2).mean() / ((x - y) ** 2).mean()))
    assert checks.check_p999_error(lambda x, y: torch.quantile((x - y).abs(), 0.999))
    with pytest.raises(checks.CheckFailed, match="0.999, not 99.9"):
        checks.check_p999_error(lambda x, y: (x - y).abs().max())

    def choose(rows, floor):
        ok = [r["blocksize"] for r in rows if r["method"] == "nf4" and r["sqnr_db"] >= floor]
        return max(ok) if ok else None

    assert checks.check_choose_blocksize(choose)
    with pytest.raises(checks.CheckFailed, match="Keep only NF4 rows"):
        checks.check_choose_blocksize(lambda rows, floor: min(r["blocksize"] for r in rows))


def test_check_inputs_avoid_rounding_ties():
    for x in checks._inputs():
        scaled = (x / x.abs().max() * 7).abs()
        assert not torch.any((scaled - scaled.floor() - 0.5).abs() < 1e-6), "a tie would make two answers right"
    assert quant.int4_levels().numel() == 16
