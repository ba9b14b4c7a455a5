"""The profile is chosen in one place and `full` refuses to run without a GPU."""

from __future__ import annotations

import pytest
import torch

from utils import profile


def test_explicit_smoke_and_auto(monkeypatch):
    monkeypatch.setenv(profile.ENV_VAR, "smoke")
    assert profile.get_profile() == "smoke"
    monkeypatch.setenv(profile.ENV_VAR, "auto")
    assert profile.get_profile() == ("full" if torch.cuda.is_available() else "smoke")
    monkeypatch.delenv(profile.ENV_VAR)
    assert profile.get_profile() == ("full" if torch.cuda.is_available() else "smoke")


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="not a profile"):
        profile.get_profile("fast")


def test_full_without_gpu_stops_with_instructions(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU.*QLORA_PROFILE=smoke"):
        profile.get_profile("full")


def test_environment_report_names_versions_and_device():
    report = profile.environment_report()
    assert report["torch"] == torch.__version__.split("+")[0] or report["torch"].startswith(torch.__version__[:4])
    assert report["device"].startswith(("cpu", "cuda")) and report["profile"] in profile.PROFILES
