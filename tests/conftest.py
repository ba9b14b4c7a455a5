"""Shared fixtures: seeded random tensors and real pretrained weights (all-MiniLM-L6-v2)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def minilm_weights() -> dict[str, torch.Tensor]:
    """The 2-D weight matrices of the packaged all-MiniLM-L6-v2 (real pretrained values)."""
    from safetensors.torch import load_file

    from utils.models import MINILM_ID, resolve_model_path

    state = load_file(f"{resolve_model_path(MINILM_ID)}/model.safetensors")
    return {name: t.float() for name, t in state.items() if t.ndim == 2}


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)
