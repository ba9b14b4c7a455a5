"""Shared fixtures: seeded random tensors, real pretrained weights (all-MiniLM-L6-v2), and the tiny QA set-up of the
QA training tests (tests/tiny_qa.py)."""

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


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple:
    """``(folder, tokenizer)`` of the tiny seeded Phi of the QA training tests (``tiny_qa.tiny_base``)."""
    from tiny_qa import tiny_base

    return tiny_base(tmp_path_factory.mktemp("tiny") / "phi")


@pytest.fixture(scope="module")
def features(base) -> list[dict]:
    """The first training examples encoded by that Phi's tokenizer (``tiny_qa.encoded_examples``)."""
    from tiny_qa import encoded_examples

    return encoded_examples(base[1])
