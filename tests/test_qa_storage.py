"""utils.qa.storage: keeping notebook 04's adapter on Google Drive or the Hub, and notebook 05 finding it again.

No mocks: Google Drive is a folder (a temporary ``content/drive`` with a ``MyDrive`` in it when "mounted", as
Colab's mount is); the Hub is read offline from a real Hugging Face cache built in a temporary folder, in the
layout ``huggingface_hub`` writes (``models--user--repo/{blobs,snapshots/<commit>,refs/main}``); an unreachable
Hub is a real connection to a closed local port. huggingface_hub reads ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``,
``HF_ENDPOINT`` and the token file's path once, at import: the tests set the environment variables and the
values the library already read.
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest
from huggingface_hub import constants
from safetensors.numpy import save_file

from utils.errors import InputError
from utils.qa import storage
from utils.qa.config import QAConfig, read_params, save_params

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # a snapshot's folder is named after its commit


def _adapter(folder, seed=0):
    """A saved adapter as notebook 04 leaves it: config, weights (safetensors) and training_params.json."""
    import numpy as np

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32, "peft_type": "LORA"}))
    save_file({"lora_A": np.random.default_rng(seed).standard_normal((4, 8)).astype(np.float32)},
              str(folder / "adapter_model.safetensors"))
    config = QAConfig.resolve("smoke").replace(seed=seed)
    save_params(folder, config, {"steps": 8})
    return folder, config


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("QLORA_OUTPUT_DIR", str(tmp_path / "outputs"))
    return tmp_path / "outputs"


@pytest.fixture
def drive(tmp_path, monkeypatch):
    """Colab's Drive mount point, not mounted yet: ``mount()`` creates MyDrive, as drive.mount does."""
    mount_point = tmp_path / "content" / "drive"
    monkeypatch.setattr(storage, "DRIVE_MOUNT", mount_point)
    my_drive = mount_point / "MyDrive"
    return SimpleNamespace(my_drive=my_drive, mount=lambda: my_drive.mkdir(parents=True, exist_ok=True))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline; ``add(repo_id, folder)`` caches ``folder`` as the repo's main."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    for name, value in (("HF_HUB_CACHE", str(cache)), ("HF_HUB_OFFLINE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def add(repo_id, folder, skip=()):
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        (repo / "blobs").mkdir(parents=True)
        snapshot = repo / "snapshots" / COMMIT
        snapshot.mkdir(parents=True)
        for path in folder.iterdir():
            if path.name in skip:
                continue
            blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
            blob.write_bytes(path.read_bytes())
            (snapshot / path.name).symlink_to(f"../../blobs/{blob.name}")  # as huggingface_hub links them
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(COMMIT)
        return snapshot

    add.cache = cache
    return add


def test_a_hub_id_is_read_from_the_cache_offline_and_its_seeds_train_into_the_output_folder(
        tmp_path, outputs, hub_cache, drive):
    adapter, config = _adapter(tmp_path / "trained")
    snapshot = hub_cache("your-name/phi2-qa-adapter", adapter)
    found = storage.find_adapter("your-name/phi2-qa-adapter")
    assert found == snapshot and _files(found) == _files(adapter)  # the same bytes, through the cache's links
    assert read_params(found) == (config, {"steps": 8})  # what notebook 05 reads next
    # notebook 05's extra seeds: into the output folder, never into the read-only cache
    assert storage.local_sibling(found, "-seed1") == outputs / "phi2-qa-adapter-seed1"

    hub_cache("your-name/partial", adapter, skip=("training_params.json",))
    with pytest.raises(InputError, match=r"Hub repo your-name/partial .*: it holds no training_params\.json"):
        storage.find_adapter("your-name/partial")


def test_the_default_folder_then_its_drive_copy_then_a_hub_id(tmp_path, outputs, hub_cache, drive):
    default = outputs / "phi2-qa-adapter"  # notebook 05's default ADAPTER, missing in a new runtime
    drive.mount()
    on_drive, _ = _adapter(drive.my_drive / "qlora-course" / "phi2-qa-adapter", seed=1)
    assert storage.find_adapter(default) == on_drive  # 2. the Drive copy, found without setting anything
    assert storage.local_sibling(on_drive, "-seed2") == outputs / "phi2-qa-adapter-seed2"  # not on Drive
    _adapter(default, seed=0)
    assert storage.find_adapter(default) == default  # 1. the local folder first
    assert storage.local_sibling(default, "-seed1") == outputs / "phi2-qa-adapter-seed1"  # beside it, as before

    elsewhere = tmp_path / "elsewhere" / "phi2-qa-adapter"
    snapshot = hub_cache("your-name/phi2-qa-adapter", on_drive)
    assert storage.find_adapter(elsewhere, drive_dir=tmp_path / "no-copy", hub_repo="your-name/phi2-qa-adapter") \
        == snapshot  # 3. the Hub, after the folder and the Drive copy named


def test_nothing_found_lists_every_place_looked_and_what_to_run_or_set(tmp_path, outputs, hub_cache, drive):
    default = outputs / "phi2-qa-adapter"
    with pytest.raises(storage.AdapterNotFoundError) as err:  # Drive not mounted, the repo not in the cache
        storage.find_adapter(default, hub_repo="your-name/phi2-qa-adapter")
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError) and message.startswith(f"ADAPTER = '{default}': ")
    copy = drive.my_drive / "qlora-course" / "phi2-qa-adapter"
    for looked in (f"folder {default}: no such folder", f"Drive copy {copy}: Google Drive is not mounted",
                   f"Hub repo your-name/phi2-qa-adapter: not in the Hugging Face cache ({hub_cache.cache}), "
                   "and HF_HUB_OFFLINE=1"):
        assert looked in message, (looked, message)
    for fix in (f"run notebook 04 first (it saves the adapter to {outputs / '<model name>-qa-adapter'})", f"or set ADAPTER = '{copy}'",
                "drive.mount(", "or ADAPTER = 'your-name/phi2-qa-adapter' (pushed with PUSH_TO_HUB)"):
        assert fix in message, (fix, message)

    with pytest.raises(storage.AdapterNotFoundError, match="Hub repo your-name/other: not in the Hugging Face cache"):
        storage.find_adapter("your-name/other")
    with pytest.raises(storage.AdapterNotFoundError, match=f"folder {copy}: Google Drive is not mounted"):
        storage.find_adapter(copy)  # a Drive path, Drive not mounted: said so, no other place tried

    adapter, _ = _adapter(tmp_path / "half")
    (adapter / "training_params.json").unlink()  # e.g. a copy interrupted by hand
    with pytest.raises(InputError, match=r"folder .*half: it holds no training_params\.json: it is not a complete"):
        storage.find_adapter(adapter)


def test_keeping_on_drive_copies_once_and_keeps_an_earlier_copy_aside(tmp_path, drive):
    adapter, _ = _adapter(tmp_path / "outputs" / "phi2-qa-adapter")
    kept = storage.keep_adapter(adapter, drive_dir=storage.AUTO)  # "auto", Drive not mounted: only here
    assert kept["drive"] is None and _files(adapter)
    assert "on this machine only (Google Drive is not mounted, PUSH_TO_HUB is off)" in storage.where_kept(kept)
    with pytest.raises(InputError, match=r"Google Drive is not mounted .*; the adapter stays in .*drive\.mount\("):
        storage.keep_adapter(adapter, drive_dir=drive.my_drive / "mine")

    drive.mount()
    kept = storage.keep_adapter(adapter, drive_dir=storage.AUTO)
    copy = drive.my_drive / "qlora-course" / "phi2-qa-adapter"
    assert kept["drive"] == str(copy) and _files(copy) == _files(adapter) and kept["drive_earlier"] is None
    assert storage.where_kept(kept) == f"The adapter is in {adapter} and on Google Drive in {copy}."
    assert storage.keep_adapter(adapter, drive_dir=storage.AUTO)["drive_unchanged"]  # a re-run: nothing new
    assert sorted(p.name for p in copy.parent.iterdir()) == ["phi2-qa-adapter"]

    first = _files(copy)
    retrained, _ = _adapter(tmp_path / "run2" / "phi2-qa-adapter", seed=1)  # another run, same folder name
    kept = storage.keep_adapter(retrained, drive_dir=storage.AUTO)
    earlier = drive.my_drive / "qlora-course" / kept["drive_earlier"].rsplit("/", 1)[-1]
    assert earlier.name.startswith("phi2-qa-adapter.old-") and _files(earlier) == first  # nothing lost
    assert _files(copy) == _files(retrained) != first
    assert f"(the earlier copy there is kept as {earlier.name})" in storage.where_kept(kept)
    assert sorted(p.name for p in copy.parent.iterdir()) == sorted(["phi2-qa-adapter", earlier.name])  # no leftovers

    with pytest.raises(InputError, match=r"adapter_model\.safetensors, training_params\.json missing"):
        storage.keep_adapter(tmp_path / "run2", drive_dir=storage.AUTO)  # not an adapter folder: refused


def test_pushing_while_offline_says_so_before_training_and_after_it_loses_nothing(tmp_path, hub_cache, drive):
    adapter, _ = _adapter(tmp_path / "outputs" / "phi2-qa-adapter")
    before = _files(adapter)
    with pytest.raises(InputError, match=r"the Hugging Face Hub is switched off in this process \(HF_HUB_OFFLINE=1\)"):
        storage.check_keep(storage.AUTO, "your-name/phi2-qa-adapter", push_to_hub=True)  # notebook 04, before training
    drive.mount()
    with pytest.raises(InputError) as err:
        storage.keep_adapter(adapter, drive_dir=storage.AUTO, hub_repo="your-name/phi2-qa-adapter")
    copy = drive.my_drive / "qlora-course" / "phi2-qa-adapter"
    assert f"the adapter stays in {adapter} and on Google Drive in {copy}" in str(err.value)
    assert "unset HF_HUB_OFFLINE" in str(err.value)
    assert _files(adapter) == before and _files(copy) == before  # the Drive copy was made first; nothing lost


def test_push_settings_a_missing_token_and_an_unreachable_hub_are_clear_errors(tmp_path, monkeypatch):
    adapter, _ = _adapter(tmp_path / "phi2-qa-adapter")
    assert storage.check_keep(None, "your-name/x", push_to_hub=False) == {"drive_dir": None, "hub_repo": None}
    with pytest.raises(InputError, match=r"PUSH_TO_HUB = True: HUB_REPO_ID is not set\. Fix: set HUB_REPO_ID = "):
        storage.check_keep(None, None, push_to_hub=True)
    with pytest.raises(InputError, match=r"HUB_REPO_ID = 'phi2-qa-adapter': a Hub repo id is"):
        storage.check_keep(None, "phi2-qa-adapter")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the Hub on, but no token anywhere
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    with pytest.raises(InputError, match=r"there is no Hugging Face token .*huggingface\.co/settings/tokens.*HF_TOKEN"):
        storage.check_keep(None, "your-name/x")

    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # a closed port: the connection is refused
    with pytest.raises(InputError, match=rf"could not be reached .*; the adapter stays in {adapter}\. Fix: check the"):
        storage.keep_adapter(adapter, hub_repo="your-name/x")
    assert (adapter / "training_params.json").is_file()
