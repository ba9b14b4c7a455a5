"""utils.paths: build_folder_once (readers never see a half-built folder, concurrent builders do not collide), move_aside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from utils import paths
from utils.paths import build_folder_once


def _recipe_is(value: str):  # noqa: ANN202
    def is_current(path: Path) -> bool:
        marker = path / "recipe.json"
        return marker.is_file() and json.loads(marker.read_text()) == value
    return is_current


def _writer(value: str, calls: list[str]):  # noqa: ANN202
    def build(path: Path) -> None:
        calls.append(value)
        (path / "weights.bin").write_text(value)
        (path / "recipe.json").write_text(json.dumps(value))
    return build


def test_built_once_then_reused_and_an_outdated_folder_is_replaced_whole(tmp_path: Path) -> None:
    calls: list[str] = []
    folder = tmp_path / "model"
    assert build_folder_once(folder, _writer("v1", calls), _recipe_is("v1")) == folder
    build_folder_once(folder, _writer("v1", calls), _recipe_is("v1"))
    assert calls == ["v1"]
    (folder / "stale.txt").write_text("from v1")
    build_folder_once(folder, _writer("v2", calls), _recipe_is("v2"))
    assert calls == ["v1", "v2"] and (folder / "weights.bin").read_text() == "v2"
    assert not (folder / "stale.txt").exists()  # no mix of old and new files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging or old copies left


def test_an_interrupted_build_leaves_no_folder(tmp_path: Path) -> None:
    def crash(path: Path) -> None:
        (path / "weights.bin").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_folder_once(tmp_path / "model", crash, _recipe_is("v1"))
    assert list(tmp_path.iterdir()) == []


def test_when_another_process_finishes_first_its_copy_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / "model"

    def slow_build(path: Path) -> None:  # meanwhile "another process" completes the same folder
        _writer("v1", [])(path)
        folder.mkdir()
        (folder / "weights.bin").write_text("other process")
        (folder / "recipe.json").write_text(json.dumps("v1"))

    build_folder_once(folder, slow_build, _recipe_is("v1"))
    assert (folder / "weights.bin").read_text() == "other process"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_move_aside_keeps_the_earlier_run_under_a_new_name(tmp_path):
    run = tmp_path / "adapter"
    run.mkdir()
    (run / "adapter_config.json").write_text("{}")
    first = paths.move_aside(run)
    run.mkdir()
    second = paths.move_aside(run)  # the same second: a suffix, never an overwrite
    assert not run.exists() and first != second
    assert (first / "adapter_config.json").read_text() == "{}" and second.is_dir()
    assert first.name.startswith("adapter.old-") and second.parent == tmp_path
