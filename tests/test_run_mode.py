"""The profile is chosen in one place and `full` refuses to run without a GPU."""

from __future__ import annotations

import pytest
import torch

from utils import run_mode


def test_explicit_smoke_and_auto(monkeypatch):
    monkeypatch.setenv(run_mode.ENV_VAR, "smoke")
    assert run_mode.get_profile() == "smoke"
    monkeypatch.setenv(run_mode.ENV_VAR, "auto")
    assert run_mode.get_profile() == ("full" if torch.cuda.is_available() else "smoke")
    monkeypatch.delenv(run_mode.ENV_VAR)
    assert run_mode.get_profile() == ("full" if torch.cuda.is_available() else "smoke")


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="not a profile"):
        run_mode.get_profile("fast")


def test_full_without_gpu_stops_with_instructions(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU.*QLORA_PROFILE=smoke"):
        run_mode.get_profile("full")


def test_environment_report_names_versions_and_device():
    report = run_mode.environment_report()
    assert report["torch"] == torch.__version__.split("+")[0] or report["torch"].startswith(torch.__version__[:4])
    assert report["device"].startswith(("cpu", "cuda")) and report["profile"] in run_mode.PROFILES
