"""Download a base model into the Hugging Face cache: `gpudoctor pull MODEL` and train's missing model.

huggingface_hub does the work (snapshot_download: its progress bars, HF_HOME/HF_HUB_CACHE, HF_TOKEN,
HF_HUB_OFFLINE, partial-file resume through Range requests); this module is the glue around it:
safetensors, config and tokenizer files only; the repo's real size (the hub's file list, less what
is cached) checked against free disk before a byte moves; every failure one line with its fix
(gated or private, not found, offline, too little disk); a dropped download retried a few times.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudoctor.errors import BadInput, ProblemFound
from gpudoctor.train.model import _first_line
from gpudoctor.types import GIB

# What a model folder needs (weights, config, tokenizer, chat template); never pickles (*.bin, *.pt, *.pth).
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
# Top-level files only (transformers loads from the root), and no duplicate single-file checkpoints.
IGNORE_PATTERNS = ["*/*", "consolidated*.safetensors"]
RETRIES = 2  # pull's own retries after huggingface_hub's in-call resumes give up
ASK_ABOVE = 1 * GIB  # train asks before a download bigger than this (unless --yes)


@dataclass(frozen=True)
class Pulled:
    """Where the model is, what this call fetched (bytes) and whether it was all cached already."""

    repo_id: str
    path: Path
    fetched_bytes: int
    was_cached: bool


@dataclass(frozen=True)
class Plan:
    """The hub's answer before any download: the commit, the files to fetch and their bytes still missing."""

    repo_id: str
    commit: str
    files: list[str]
    missing_bytes: int


def hub_id(name: str) -> str:
    """A profile id (mistral-7b) as its Hugging Face repo id, or the repo id itself (owner/name)."""
    from gpudoctor.train.model import looks_like_path

    if looks_like_path(name) or Path(name).expanduser().is_dir():
        raise BadInput(f"{name}: a local folder, nothing to download; pass it to --model as it is")
    repo = name
    try:
        from gpudoctor.profiles import load_model

        repo = load_model(name).hub_id or name
    except BadInput:
        pass
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise BadInput(f"{name}: not a known profile or a Hugging Face repo id (owner/name)")
    return repo


def cached(repo_id: str) -> Path | None:
    """The complete cached snapshot of `repo_id` (the files pull fetches), or None; never touches the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from gpudoctor.resources import hf_hub_cache

    try:
        return Path(snapshot_download(repo_id, cache_dir=hf_hub_cache(), local_files_only=True, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        return None


def plan(repo_id: str) -> Plan:
    """Ask the hub for the repo's files and sizes (one request); the bytes not yet in the cache."""
    from huggingface_hub import HfApi, get_token, try_to_load_from_cache
    from huggingface_hub.utils import filter_repo_objects

    from gpudoctor.resources import hf_hub_cache

    info = hub_call(repo_id, lambda: HfApi().model_info(repo_id, files_metadata=True, timeout=_timeout()))
    siblings = list(filter_repo_objects(info.siblings or [], allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS, key=lambda s: s.rfilename))
    if info.gated and get_token() is None:  # the hub lists a gated repo's files to anyone, but serves them only to accepted users
        raise ProblemFound(_locked(repo_id, f"is gated ({info.gated} approval) and you are not logged in"))
    if not any(s.rfilename.endswith(".safetensors") for s in siblings):
        raise BadInput(f"{repo_id}: the repo has no .safetensors weights at its top level; gpudoctor loads safetensors only")
    missing = 0
    for sibling in siblings:
        if not isinstance(try_to_load_from_cache(repo_id, sibling.rfilename, cache_dir=hf_hub_cache(), revision=info.sha), str):
            missing += (sibling.lfs.size if sibling.lfs else sibling.size) or 0
    return Plan(repo_id, str(info.sha), [s.rfilename for s in siblings], missing)


def free_bytes(folder: Path) -> int:
    """Free bytes on the disk holding `folder` (its nearest existing parent, when it is not made yet)."""
    path = folder
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_disk(repo_id: str, need: int, cache: Path) -> None:
    """ProblemFound (one line, the fix) when the cache's disk has less free space than `need` bytes."""
    free = free_bytes(cache)
    if need > free:
        raise ProblemFound(
            f"{repo_id}: needs {need / GIB:.2f} GiB in the Hugging Face cache {cache} but only {free / GIB:.2f} GiB are free there; "
            "free some space, or put the cache on a bigger disk: export HF_HUB_CACHE=/bigger/disk"
        )


def pull(name: str, *, say: Callable[[str], None], confirm: Callable[[Plan], bool] | None = None) -> Pulled:
    """Make `name` (a profile id or a repo id) a complete snapshot in the cache and return where it is.

    `confirm` (train's question) sees the plan before the download and may decline (ProblemFound).
    """
    from gpudoctor.resources import hf_hub_cache

    repo_id = hub_id(name)
    cache = hf_hub_cache()
    found = cached(repo_id)
    if found is not None:
        say(f"{repo_id}: already in the Hugging Face cache at {found}")
        return Pulled(repo_id, found, 0, True)
    _refuse_offline(repo_id, cache)
    wanted = plan(repo_id)
    check_disk(repo_id, wanted.missing_bytes, cache)
    if confirm is not None and not confirm(wanted):
        raise ProblemFound(
            f"{repo_id}: not in the Hugging Face cache and not downloaded ({wanted.missing_bytes / GIB:.1f} GiB); "
            f"pass --yes to download it, or run `gpudoctor pull {name}` first"
        )
    say(f"{repo_id}: downloading {wanted.missing_bytes / GIB:.2f} GiB ({len(wanted.files)} files: weights, config, tokenizer) into {cache}, commit {wanted.commit[:10]}")
    path = _download(wanted, cache, say)
    say(f"{repo_id}: in the Hugging Face cache at {path}")
    return Pulled(repo_id, path, wanted.missing_bytes, False)


def ensure_model(name: str, *, yes: bool, ask: Callable[[str], bool], say: Callable[[str], None]) -> None:
    """train's step before loading: a hub model (profile or repo id) not in the cache is pulled, after
    `ask` says yes when it is over ASK_ABOVE bytes (unless `yes`). Folders and bad names pass through
    untouched: resolve_model_dir says what is wrong with them."""
    from gpudoctor.train.model import looks_like_path

    if looks_like_path(name) or Path(name).expanduser().exists():
        return
    try:
        repo_id = hub_id(name)
    except BadInput:
        return
    if offline() or cached(repo_id) is not None:
        return  # offline: resolve_model_dir says it is not cached, and how to get it

    def confirm(wanted: Plan) -> bool:
        if yes or wanted.missing_bytes <= ASK_ABOVE:
            return True
        return ask(f"{repo_id} is not in the Hugging Face cache: download {wanted.missing_bytes / GIB:.1f} GiB now?")

    pull(name, say=say, confirm=confirm)


def _download(wanted: Plan, cache: Path, say: Callable[[str], None]) -> Path:
    """snapshot_download of the repo's main branch (so refs/main is written for later lookups), retried
    RETRIES times after a dropped connection or a server error; huggingface_hub resumes partial files itself."""
    from huggingface_hub import snapshot_download

    for attempt in range(RETRIES + 1):
        try:
            return Path(hub_call(wanted.repo_id, lambda: snapshot_download(
                wanted.repo_id, cache_dir=cache, allow_patterns=ALLOW_PATTERNS,  # by branch, so refs/main is written
                ignore_patterns=IGNORE_PATTERNS, etag_timeout=_timeout(),
            ), transient_ok=True))
        except _Transient as err:
            if attempt == RETRIES:
                raise ProblemFound(
                    f"{wanted.repo_id}: the download kept failing ({err}) after {RETRIES + 1} tries; "
                    f"run `gpudoctor pull {wanted.repo_id}` again to go on (finished files are kept)"
                ) from None
            say(f"{wanted.repo_id}: the download broke off ({err}); trying again ({attempt + 1} of {RETRIES}), finished files are kept")
    raise AssertionError("unreachable")  # pragma: no cover


class _Transient(Exception):
    """A connection that dropped or timed out, or a server error: worth another try."""


def hub_call(repo_id: str, call: Callable[[], Any], *, transient_ok: bool = False) -> Any:
    """Run a huggingface_hub call, its failures as one line: gated/private and unreachable exit 1, not found exit 2."""
    import httpx2
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return call()
    except GatedRepoError:
        raise ProblemFound(_locked(repo_id, "is gated")) from None
    except RepositoryNotFoundError as err:
        if _status(err) in (401, 403):
            raise ProblemFound(_locked(repo_id, "is private or gated, or does not exist")) from None
        raise BadInput(f"{repo_id}: no such model repo on the Hugging Face Hub; check the name (owner/name, as on https://huggingface.co/{repo_id})") from None
    except RevisionNotFoundError:
        raise BadInput(f"{repo_id}: the hub has no such revision of this repo") from None
    except HfHubHTTPError as err:
        status = _status(err)
        if status in (401, 403):
            raise ProblemFound(_locked(repo_id, f"the hub refused access ({status})")) from None
        if transient_ok and status is not None and status >= 500:
            raise _Transient(f"server error {status}") from None
        raise ProblemFound(f"{repo_id}: the Hugging Face Hub answered {status or 'an error'} ({_first_line(err)}); try again later") from None
    except (httpx2.TransportError, LocalEntryNotFoundError, OSError) as err:
        if getattr(err, "errno", None) == errno.ENOSPC:
            raise ProblemFound(f"{repo_id}: the disk filled up during the download; free some space, or export HF_HUB_CACHE=/bigger/disk") from None
        if isinstance(err, PermissionError):
            raise ProblemFound(f"{repo_id}: cannot write the Hugging Face cache ({_first_line(err)}); export HF_HUB_CACHE=/a/folder/you/can/write") from None
        if transient_ok:
            raise _Transient(_first_line(err)) from None
        raise ProblemFound(_unreachable(repo_id, err)) from None


def _locked(repo_id: str, why: str) -> str:
    return (
        f"{repo_id}: {why}; accept its licence at https://huggingface.co/{repo_id} with your account, then log in "
        "here with `hf auth login` (or export HF_TOKEN=<a read token>) and run the command again"
    )


def _unreachable(repo_id: str, err: BaseException) -> str:
    from huggingface_hub import constants

    return (
        f"{repo_id}: cannot reach the Hugging Face Hub at {constants.ENDPOINT} ({_first_line(err)}); "
        "check the connection or proxy, or download on a connected machine and copy the cache folder here"
    )


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as huggingface_hub read it at import, or as it is now."""
    import os

    from huggingface_hub import constants

    now = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.is_offline_mode() or now.strip().upper() in ("1", "ON", "YES", "TRUE")


def _refuse_offline(repo_id: str, cache: Path) -> None:
    if offline():
        raise ProblemFound(
            f"{repo_id}: not in the Hugging Face cache {cache} and HF_HUB_OFFLINE is set, so nothing can be downloaded; "
            "unset HF_HUB_OFFLINE on a connected machine, or copy the model's cache folder here"
        )


def _timeout() -> float:
    from huggingface_hub import constants

    return float(constants.HF_HUB_ETAG_TIMEOUT)


def _status(err: Any) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)
