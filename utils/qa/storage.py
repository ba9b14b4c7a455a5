"""Keeping notebook 04's adapter where a later runtime finds it (Google Drive, the Hugging Face Hub), and finding it.

On Colab, notebooks 04 and 05 usually run in different runtimes: the free tier recycles its machines, and a new
one starts with an empty disk, so the adapter 04 saved under ``outputs/`` is gone when 05 starts. Two places
outlive a runtime:

- **Google Drive**, once mounted (``from google.colab import drive; drive.mount("/content/drive")``): it is a
  folder, ``/content/drive/MyDrive``. :func:`keep_adapter` copies the adapter folder there, by default to
  ``MyDrive/qlora-course/<the adapter folder's name>`` (:func:`drive_copy_path`). An earlier copy of another
  adapter is never overwritten: it is renamed ``<name>.old-<time>`` (:func:`utils.paths.move_aside`), as notebook
  04 does with an earlier run's folder. A copy that is already there, byte for byte, is left as it is.
- **The Hub**: :func:`keep_adapter` creates a (private, by default) model repo and uploads the folder with
  ``huggingface_hub``. The Hub keeps every upload as a commit, so a later upload never loses an earlier one.
  It needs a token with write access (the argument, ``$HF_TOKEN``, ``hf auth login``'s token file, or
  Colab's secret ``HF_TOKEN``: ``huggingface_hub.get_token`` reads them in that order after the argument).

:func:`find_adapter` is the way back: a local folder, a Drive folder or a Hub repo id becomes a local folder
holding the adapter and its ``training_params.json`` (a Hub repo is downloaded into the Hugging Face cache with
``snapshot_download``, which also works offline once cached). Notebook 05 reads that folder, and
:func:`local_sibling` gives it a local, writable place for what it trains next to it (its extra seeds), never
Drive or the Hugging Face cache.

Every failure is an :class:`~utils.errors.InputError` that says what to run or set, and, when keeping failed,
where the adapter still is: nothing is lost.
"""

from __future__ import annotations

import filecmp
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from utils.errors import InputError, input_error
from utils.paths import move_aside, output_dir
from utils.qa.run_folder import RESULT_FILES

ADAPTER_FILES = RESULT_FILES  # what a kept or found adapter folder must hold (what save_adapter writes)
DRIVE_MOUNT = Path("/content/drive")  # where Colab mounts Google Drive; the user's files are in <mount>/MyDrive
DRIVE_COURSE_FOLDER = "qlora-course"  # the course's folder in MyDrive, where copies go by default
AUTO = "auto"  # KEEP_ON_DRIVE = "auto": the course's Drive folder when Drive is mounted, else no Drive copy
MOUNT_COMMAND = f'from google.colab import drive; drive.mount("{DRIVE_MOUNT}")'
TOKEN_HELP = ("create a token with write access at https://huggingface.co/settings/tokens, then on Colab add it as "
              "the secret HF_TOKEN (the key icon in the left bar, with notebook access on), or set the environment "
              "variable HF_TOKEN, or run `hf auth login` once")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # user/name: the shape of a Hub repo id


class AdapterNotFoundError(InputError, FileNotFoundError):
    """No usable adapter where :func:`find_adapter` looked. An :class:`~utils.errors.InputError` and a
    ``FileNotFoundError``."""


def default_adapter_dir(model_id: str) -> Path:
    """Where notebook 04 saves its adapter unless told otherwise, and where notebook 05 looks for it:
    ``output_dir() / "<model name>-qa-adapter"``, named after the base model that trained it (the last part of a
    Hub id or folder path), e.g. ``phi-2-qa-adapter`` (full profile) or ``SmolLM2-135M-Instruct-qa-adapter``
    (smoke)."""
    name = re.sub(r"[^\w.-]+", "_", Path(str(model_id).rstrip("/")).name) or "model"
    return output_dir() / f"{name}-qa-adapter"


def my_drive() -> Path:
    """The user's files on a mounted Google Drive: ``<DRIVE_MOUNT>/MyDrive``."""
    return DRIVE_MOUNT / "MyDrive"


def drive_mounted() -> bool:
    """Whether Google Drive is mounted (its ``MyDrive`` folder is there)."""
    return my_drive().is_dir()


def on_drive(path: str | Path) -> bool:
    """Whether ``path`` is under the Drive mount point (whether or not Drive is mounted now)."""
    return Path(path).expanduser().absolute().is_relative_to(DRIVE_MOUNT)


def drive_copy_path(folder: str | Path) -> Path:
    """Where a folder's copy goes on Drive by default: ``MyDrive/qlora-course/<its name>``."""
    return my_drive() / DRIVE_COURSE_FOLDER / Path(folder).name


def looks_like_hub_id(source: str) -> bool:
    """Whether ``source`` has the shape of a Hub repo id, ``user/name`` (one slash, no leading ``.``, ``/``
    or ``~``). A relative path such as ``outputs/adapter`` has the same shape: :func:`find_adapter` tries it as a
    folder first."""
    return bool(_HUB_ID.match(source)) and ".." not in source


def _check_mounted(path: Path, setting: str, stays: str = "") -> None:
    if on_drive(path) and not drive_mounted():
        raise input_error(f"{setting} = {str(path)!r}", f"Google Drive is not mounted (there is no {my_drive()})"
                          + stays, f"run `{MOUNT_COMMAND}` in a cell first (Colab), or set {setting} to another "
                          "folder")


def _drive_target(drive_dir: str | Path | None, stays: str) -> Path | str | None:
    """``drive_dir`` checked: None, :data:`AUTO`, or a folder path (on Drive: Drive mounted)."""
    if drive_dir is None or drive_dir == AUTO:
        return drive_dir
    drive_dir = Path(drive_dir).expanduser()
    _check_mounted(drive_dir, "KEEP_ON_DRIVE", stays)
    if drive_dir.is_file():
        raise input_error(f"KEEP_ON_DRIVE = {str(drive_dir)!r}", "it is a file, not a folder" + stays,
                          f"set a folder (created if missing), e.g. {drive_copy_path('phi2-qa-adapter')}")
    return drive_dir


def _hub_target(hub_repo: str | None, push_to_hub: bool | None) -> str | None:
    """The repo id to upload to (None: no upload), its shape checked."""
    if push_to_hub is False:
        return None
    if push_to_hub and not hub_repo:
        raise input_error("PUSH_TO_HUB = True", "HUB_REPO_ID is not set", "set HUB_REPO_ID = "
                          "'your-name/phi2-qa-adapter' (your Hugging Face user name; the repo is created if missing)")
    if hub_repo is not None and (not isinstance(hub_repo, str) or not looks_like_hub_id(hub_repo)):
        raise input_error(f"HUB_REPO_ID = {hub_repo!r}", "a Hub repo id is '<user or organisation>/<name>'",
                          "set it like 'your-name/phi2-qa-adapter'")
    return hub_repo


def _check_hub_access(hub_repo: str, token: str | None, stays: str) -> None:
    """The Hub is on in this process and there is a token (whether it may write is known only when uploading)."""
    from huggingface_hub import constants, get_token

    if constants.is_offline_mode():
        raise input_error(f"HUB_REPO_ID = {hub_repo!r}", "the Hugging Face Hub is switched off in this process "
                          "(HF_HUB_OFFLINE=1), so nothing can be uploaded" + stays,
                          "unset HF_HUB_OFFLINE and restart the kernel, or set PUSH_TO_HUB = False (and keep the "
                          "adapter on Drive with KEEP_ON_DRIVE)")
    if not (token or get_token()):
        raise input_error(f"HUB_REPO_ID = {hub_repo!r}", "there is no Hugging Face token to upload with" + stays,
                          TOKEN_HELP)


def _stays(folder: str | Path | None, drive: str | None = None) -> str:
    """The end of a message that says where the adapter still is."""
    if folder is None:
        return ""
    return f"; the adapter stays in {folder}" + (f" and on Google Drive in {drive}" if drive else "")


def check_keep(drive_dir: str | Path | None = None, hub_repo: str | None = None, *, push_to_hub: bool | None = None,
               token: str | None = None) -> dict[str, Any]:
    """Check where an adapter is to be kept before anything is trained: notebook 04 calls it before training, so
    a wrong setting fails in seconds, not after the run.

    Args:
        drive_dir: a folder to copy the adapter to (on Drive: ``/content/drive/MyDrive/...``); :data:`AUTO` for
            :func:`drive_copy_path` when Drive is mounted (else no copy; decided when the adapter is kept, so
            Drive may be mounted during training); None for no copy.
        hub_repo: the Hub repo id (``user/name``) to upload to; None for no upload (with ``push_to_hub`` unset).
        push_to_hub: notebook 04's ``PUSH_TO_HUB``: False turns the upload off whatever ``hub_repo`` says, True
            requires ``hub_repo``; None (default) uploads when ``hub_repo`` is given.
        token: a Hub token; default ``huggingface_hub.get_token()`` (``$HF_TOKEN``, the login file, Colab's secret).

    Returns:
        ``{"drive_dir": ..., "hub_repo": ...}``: the arguments for :func:`keep_adapter` (``drive_dir`` may still
        be :data:`AUTO`).

    Raises:
        InputError: ``drive_dir`` is on Drive and Drive is not mounted, or is a file; ``push_to_hub`` without a
            ``hub_repo``; a ``hub_repo`` that is not ``user/name``; the Hub is off (``HF_HUB_OFFLINE=1``) or there
            is no token.
    """
    drive_dir = _drive_target(drive_dir, "")
    hub_repo = _hub_target(hub_repo, push_to_hub)
    if hub_repo is not None:
        _check_hub_access(hub_repo, token, "")
    return {"drive_dir": drive_dir, "hub_repo": hub_repo}


def missing_files(folder: str | Path) -> list[str]:
    """The names of :data:`ADAPTER_FILES` that ``folder`` lacks."""
    return [name for name in ADAPTER_FILES if not (Path(folder) / name).is_file()]


def same_files(a: str | Path, b: str | Path) -> bool:
    """Whether folders ``a`` and ``b`` hold the same files (relative names) with the same bytes."""
    a, b = Path(a), Path(b)
    if not (a.is_dir() and b.is_dir()):
        return False
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    if names != sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()):
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return not mismatch and not errors


def _copy_to(folder: Path, target: Path) -> dict[str, Any]:
    """Copy ``folder`` to ``target`` through a hidden sibling renamed into place (an interrupted copy never looks
    like an adapter, and a failed one leaves an earlier ``target`` where it was); an earlier, different ``target``
    is renamed aside just before."""
    if same_files(folder, target):
        return {"drive": str(target), "drive_unchanged": True}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.copying-", dir=target.parent))
    earlier = None
    try:
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        earlier = move_aside(target) if target.exists() else None
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"drive": str(target), "drive_earlier": str(earlier) if earlier else None}


def _push(folder: Path, hub_repo: str, token: str | None, private: bool, stays: str) -> dict[str, Any]:
    """Create ``hub_repo`` if missing and upload ``folder`` to it; a clear InputError when that fails."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    where = f"HUB_REPO_ID = {hub_repo!r}"
    try:
        api = HfApi(token=token)
        url = api.create_repo(hub_repo, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=hub_repo, folder_path=folder, commit_message=f"QLoRA adapter ({folder.name})")
    except OfflineModeIsEnabled:
        raise input_error(where, "the Hugging Face Hub is switched off in this process (HF_HUB_OFFLINE=1)" + stays,
                          "unset HF_HUB_OFFLINE, restart the kernel and run this cell again") from None
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise input_error(where, f"the Hub refused the upload (HTTP {status}: the token cannot write to this repo)"
                              + stays, f"use a token with write access to {hub_repo.split('/')[0]}: {TOKEN_HELP}; "
                              "then run this cell again") from None
        raise input_error(where, f"the Hub answered with an error ({err})" + stays,
                          "run this cell again later") from err
    except Exception as err:  # no connection, a timeout, a proxy: whatever the HTTP client raises
        raise input_error(where, f"the Hugging Face Hub could not be reached ({type(err).__name__}: {err})" + stays,
                          "check the internet connection (and HF_ENDPOINT, if set), then run this cell again") from err
    return {"hub": str(url), "hub_commit": commit.oid}


def keep_adapter(folder: str | Path, *, drive_dir: str | Path | None = None, hub_repo: str | None = None,
                 token: str | None = None, private: bool = True) -> dict[str, Any]:
    """Copy the adapter ``folder`` to Drive (or any folder) and/or upload it to the Hub, so that a later runtime
    finds it (:func:`find_adapter`). Both are off by default; the local folder is never changed.

    Args:
        folder: the adapter folder notebook 04 (or ``utils.cli.finetune``) saved.
        drive_dir: where to copy it: a folder (its parents are created; on Drive, Drive must be mounted), or
            :data:`AUTO`: :func:`drive_copy_path` if Drive is mounted, else nowhere. A different adapter already
            there is renamed ``<name>.old-<time>`` first; the same files, byte for byte, are left as they are.
        hub_repo: the Hub model repo ``user/name`` to create (if missing) and upload to; the Hub keeps earlier
            uploads as earlier commits.
        token: a Hub token with write access; default ``huggingface_hub.get_token()``.
        private: create the repo private (an existing repo keeps its visibility).

    Returns:
        ``{"local": folder, "drive": copy or None, "drive_earlier": where an earlier copy went or None,
        "drive_unchanged": True if the copy was already there, "drive_off": why there is no Drive copy,
        "hub": repo URL or None, "hub_commit": commit id or None}``; :func:`where_kept` puts it in one line.

    Raises:
        InputError: ``folder`` is not a saved adapter; what :func:`check_keep` raises (the Drive and repo settings
            are checked before anything is copied; the Hub's access after the Drive copy is made); the upload failed
            (the Hub could not be reached, or refused the token). Each message says where the adapter still is.
    """
    folder = Path(folder).expanduser()
    missing = missing_files(folder)
    if missing:
        raise input_error(str(folder), f"it is not a saved adapter ({', '.join(missing)} missing)",
                          "keep the folder notebook 04 saved (ADAPTER_DIR), after its save cell has run")
    drive = _drive_target(drive_dir, _stays(folder))  # both checked before either is done
    hub_repo = _hub_target(hub_repo, None)
    kept: dict[str, Any] = {"local": str(folder), "drive": None, "drive_earlier": None, "drive_unchanged": False,
                            "drive_off": None, "hub": None, "hub_commit": None}
    if drive == AUTO:
        drive = drive_copy_path(folder) if drive_mounted() else None
        kept["drive_off"] = None if drive else "Google Drive is not mounted"
    elif drive is None:
        kept["drive_off"] = "KEEP_ON_DRIVE is off"
    if drive is not None:
        kept |= _copy_to(folder, Path(drive))
    if hub_repo is not None:  # after the Drive copy: a Hub that cannot be reached does not stop it
        stays = _stays(folder, kept["drive"])
        _check_hub_access(hub_repo, token, stays)
        kept |= _push(folder, hub_repo, token, private, stays)
    return kept


def where_kept(kept: dict[str, Any]) -> str:
    """One line saying where :func:`keep_adapter` kept the adapter (and, if only here, how to keep it)."""
    parts = [f"The adapter is in {kept['local']}"]
    if kept.get("drive"):
        note = (" (already there)" if kept.get("drive_unchanged") else
                f" (the earlier copy there is kept as {Path(kept['drive_earlier']).name})" if kept.get("drive_earlier")
                else "")
        parts.append(f"on Google Drive in {kept['drive']}{note}")
    if kept.get("hub"):
        parts.append(f"on the Hub at {kept['hub']} (commit {kept['hub_commit'][:7]})")
    if len(parts) == 1:
        why = kept.get("drive_off") or "KEEP_ON_DRIVE is off"
        return (f"{parts[0]}, on this machine only ({why}, PUSH_TO_HUB is off): a new Colab runtime will not have "
                "it. To keep it for notebook 05, mount Google Drive or set PUSH_TO_HUB and HUB_REPO_ID.")
    return ", ".join(parts[:-1]) + " and " + parts[-1] + "."


def _hub_download(repo_id: str) -> tuple[Path | None, str]:
    """``(local snapshot folder, "")`` of a Hub repo, or ``(None, why not)``."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(snapshot_download(repo_id)), ""
    except HFValidationError as err:
        return None, f"not a valid Hub repo id ({err})"
    except (RepositoryNotFoundError, GatedRepoError):
        return None, "no such repo on the Hub, or a private one and no token with access to it (set HF_TOKEN)"
    except LocalEntryNotFoundError:
        if constants.is_offline_mode():
            return None, f"not in the Hugging Face cache ({constants.HF_HUB_CACHE}), and HF_HUB_OFFLINE=1"
        return None, "the Hub could not be reached and it is not in the Hugging Face cache"
    except (HfHubHTTPError, OSError) as err:
        return None, f"the Hub could not be reached ({type(err).__name__})"


def _complete(path: Path, where: str) -> Path:
    missing = missing_files(path)
    if missing:
        raise input_error(where, f"it holds no {missing[0]}" + (f" (nor {', '.join(missing[1:])})" if missing[1:] else "")
                          + ": it is not a complete adapter folder", "point ADAPTER at the whole folder notebook 04 "
                          "saved (its save cell writes adapter_config.json, the weights and training_params.json), or "
                          "run notebook 04 again")
    return path


def find_adapter(source: str | Path, *, drive_dir: str | Path | None = None, hub_repo: str | None = None) -> Path:
    """A local folder holding the adapter (:data:`ADAPTER_FILES`) that ``source`` names, for notebook 05.

    ``source`` is a local folder, a Drive folder, or a Hub repo id (``user/name``). Places are tried in this
    order, and the first that exists is used:

    1. ``source`` as a folder;
    2. when that is a local folder that does not exist (notebook 05's default, in a new runtime): its copy on
       Drive, ``drive_dir`` or else :func:`drive_copy_path` (if Drive is mounted), then ``hub_repo`` if given;
    3. ``source`` as a Hub repo id, when it has that shape: downloaded into the Hugging Face cache
       (``snapshot_download``; offline, ``HF_HUB_OFFLINE=1``, it is read from the cache).

    Raises:
        AdapterNotFoundError: nothing found; the message lists every place looked and what to run or set.
        InputError: a folder that exists (or a Hub snapshot) lacks one of :data:`ADAPTER_FILES` (named).
    """
    text = str(source).strip()
    if not text:
        raise input_error("ADAPTER = ''", "it is empty", "set the adapter's folder or Hub repo id")
    path = Path(text).expanduser()
    hub_like = looks_like_hub_id(text) and not path.exists()
    looked: list[str] = []

    def folder(candidate: Path, what: str) -> Path | None:
        if on_drive(candidate) and not drive_mounted():
            looked.append(f"{what} {candidate}: Google Drive is not mounted")
        elif candidate.is_dir():
            return _complete(candidate, f"{what} {candidate}")
        else:
            looked.append(f"{what} {candidate}: no such folder")
        return None

    def hub(repo_id: str) -> Path | None:
        snapshot, why = _hub_download(repo_id)
        if snapshot is None:
            looked.append(f"Hub repo {repo_id}: {why}")
            return None
        return _complete(snapshot, f"Hub repo {repo_id} ({snapshot})")

    found = folder(path, "folder")
    if found is None and not hub_like and not on_drive(path):
        if drive_dir is not None:
            found = folder(Path(drive_dir).expanduser(), "Drive copy")
        elif drive_mounted():
            found = folder(drive_copy_path(path), "Drive copy")
        else:
            looked.append(f"Drive copy {drive_copy_path(path)}: Google Drive is not mounted")
        if found is None and hub_repo:
            found = hub(hub_repo)
    if found is None and hub_like:
        found = hub(text)
    if found is not None:
        return found
    name = path.name if not hub_like else text.split("/")[-1]
    raise AdapterNotFoundError(*input_error(
        f"ADAPTER = {text!r}", "no trained adapter there; looked in: " + "; ".join(looked),
        f"run notebook 04 first (it saves the adapter to {output_dir() / '<model name>-qa-adapter'}), "
        f"or set ADAPTER = '{my_drive() / DRIVE_COURSE_FOLDER / name}' (where notebook 04 kept it with "
        f"KEEP_ON_DRIVE; mount Google Drive first: `{MOUNT_COMMAND}`), or ADAPTER = 'your-name/{name}' (pushed with "
        "PUSH_TO_HUB)").args)


def local_sibling(adapter_dir: str | Path, suffix: str) -> Path:
    """A local, writable path for something derived from an adapter (notebook 05's extra seeds: ``-seed1``):
    ``<adapter_dir><suffix>`` beside a local adapter folder; for a copy on Drive or a download in the Hugging
    Face cache, ``<output_dir>/<name><suffix>`` (``name``: the Drive folder's, or the Hub repo's), so that
    nothing is trained into Drive or the cache."""
    path = Path(adapter_dir)
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):  # the HF cache layout
        return output_dir() / f"{path.parent.parent.name.split('--')[-1]}{suffix}"
    if on_drive(path):
        return output_dir() / f"{path.name}{suffix}"
    return path.with_name(path.name + suffix)
