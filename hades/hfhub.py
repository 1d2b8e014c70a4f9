"""The Hugging Face Hub backend (``hf://ORG/NAME``): pull, push and list through huggingface_hub.

A push is one commit holding every file, so no reader sees half a dataset. A pull resolves the
revision to a commit first, downloads that exact commit into a temporary folder, verifies it
against its card and renames it into the store. ``HF_ENDPOINT``, ``HF_TOKEN`` and
``HF_HUB_OFFLINE`` are read when a function runs, not when this module is imported. The token is
handed to ``huggingface_hub`` and never written anywhere.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hades import store
from hades.errors import AuthError, HadesError, HubError, NotFoundError, SpecError
from hades.hub import PushResult, RemoteEntry
from hades.hubhttp import configure, operation
from hades.ids import DatasetId, format_id, is_commit
from hades.redact import redact_urls

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = ("1", "true", "yes", "on")


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _token() -> str | None:
    return os.environ.get("HF_TOKEN", "").strip() or None


def _api():
    from huggingface_hub import HfApi, constants

    from hades import __version__

    constants.HF_HUB_OFFLINE = offline()  # the library read it at import; what counts is now
    configure()

    return HfApi(endpoint=endpoint(), token=_token(), library_name="hades-zoo", library_version=__version__)


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


@contextmanager
def hub_errors(target: str, revision: str | None = None, action: str = "reach") -> Iterator[None]:
    """Turn what ``huggingface_hub`` and its HTTP client raise into our errors, one line each."""
    import httpx2
    from huggingface_hub import errors as hf_errors

    where = redact_urls(endpoint())
    try:
        with operation():
            yield
    except HadesError:
        raise
    except hf_errors.OfflineModeIsEnabled:
        raise HubError(f"cannot {action} {target}: HF_HUB_OFFLINE is set; unset it to use the Hub") from None
    except hf_errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise AuthError(
                f"the Hub at {where} refused access to {target} (HTTP {status}): the repository is private, "
                "does not exist, or your token lacks permission; set HF_TOKEN to a token that can "
                f"{'write' if action == 'push to' else 'read'} it"
            ) from None
        if isinstance(exc, hf_errors.RevisionNotFoundError):
            raise NotFoundError(f"{target} has no revision {revision or 'main'!r}; check the branch, tag or commit") from None
        if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
            raise NotFoundError(f"{target}: a file listed by the Hub at {where} is missing there; push the folder again") from None
        if isinstance(exc, hf_errors.RepositoryNotFoundError) or status == 404:
            raise NotFoundError(
                f"{target} was not found on {where}; check the name (`hades list --hub ORG` lists an author's datasets)"
            ) from None
        detail = _first_line(getattr(exc, "server_message", "") or "") or _first_line(str(exc))
        raise HubError(f"the Hub at {where} failed to {action} {target} (HTTP {status}: {detail}); try again later") from None
    except hf_errors.LocalEntryNotFoundError as exc:
        raise HubError(f"cannot download {target} from {where}: {_first_line(str(exc))}") from None
    except (httpx2.TransportError, ConnectionError, TimeoutError) as exc:
        raise HubError(
            f"cannot {action} {target}: the Hub at {where} is unreachable ({type(exc).__name__}); check your network "
            "and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only local and bundled datasets"
        ) from None
    except ValueError as exc:
        raise HubError(f"the Hub at {where} sent an unexpected answer for {target}: {_first_line(str(exc))}") from None


class HFHub:
    """The Hugging Face Hub at :func:`endpoint` as a hub backend (see :class:`hades.hub.HubBackend`)."""

    kind = "hf"

    def pull(self, did: DatasetId, force: bool, progress: bool) -> Path:
        return _pull_hf(did, force, progress)

    def push(self, did: DatasetId, verified: store.Verified, files: dict[str, Path], *, tag: str | None,
             private: bool, message: str | None, progress: bool) -> PushResult:
        from hades.hubprogress import quiet_hf_bars, status

        with quiet_hf_bars(), status(progress, f"pushing {verified.path} to {format_id(did)}"):
            return _push_hf(did, verified, files, private, tag, message)

    def list(self, root: str) -> list[RemoteEntry]:
        return _list_hf(root)


def _pull_hf(did: DatasetId, force: bool, progress: bool) -> Path:
    keys = _hf_keys(did)
    revision = did.revision or "main"
    if not force and (did.pinned or offline()):
        found = _from_store(did, keys)
        if found is not None:
            return found
    if offline() and force:
        raise HubError(f"cannot download {format_id(did)} again while HF_HUB_OFFLINE is set; unset it, or drop --force")
    if offline():
        raise NotFoundError(
            f"{format_id(did)} is not in the local store and HF_HUB_OFFLINE is set; pull it once with network "
            "access (unset HF_HUB_OFFLINE), or use a bundled name or a local path"
        )
    api = _api()
    try:
        repo_type, commit = _resolve_commit(api, did, [key.repo_type for key in keys], revision)
    except HubError as exc:
        found = None if (force or type(exc) is not HubError) else _from_store(did, keys)
        if found is None:
            raise
        print(f"warning: {exc}; using the copy of {format_id(did)} pulled earlier", file=sys.stderr)
        return found
    key = next(key for key in keys if key.repo_type == repo_type)

    def fill(tmp: Path) -> None:
        from huggingface_hub import snapshot_download

        from hades.hubprogress import progress_class

        bars = progress_class(progress, format_id(did))
        try:
            with hub_errors(format_id(did), revision, "download"):
                snapshot_download(
                    did.name, repo_type=repo_type, revision=commit, local_dir=str(tmp),
                    cache_dir=str(tmp / ".cache" / "hf"), endpoint=endpoint(), token=_token(),
                    tqdm_class=bars, max_workers=4,
                )
        finally:
            bars.close_all()

    folder = store.install(key, commit, fill, force=force)
    store.write_ref(key, revision, commit)
    return folder


def _hf_keys(did: DatasetId) -> list[store.StoreKey]:
    source = store.source_for_endpoint(endpoint())
    repo_types = (did.repo_type,) if did.repo_type else ("dataset", "model")
    return [store.StoreKey(source, repo_type, did.name) for repo_type in repo_types]


def _from_store(did: DatasetId, keys: list[store.StoreKey]) -> Path | None:
    revision = did.revision or "main"
    for key in keys:
        commit = revision if is_commit(revision) else store.read_ref(key, revision)
        if commit and store.cached(key, commit):
            return store.check_entry(key.snapshot(commit))
    return None


def _resolve_commit(api, did: DatasetId, repo_types: list[str], revision: str) -> tuple[str, str]:
    """(repo type, commit) of a revision; without an explicit type, datasets first, then models."""
    from huggingface_hub import errors as hf_errors

    target = format_id(did)
    for position, repo_type in enumerate(repo_types):
        try:
            with hub_errors(target, revision):
                try:
                    info = api.repo_info(did.name, repo_type=repo_type, revision=revision)
                except hf_errors.RepositoryNotFoundError as exc:
                    status = exc.response.status_code if exc.response is not None else None
                    if position + 1 < len(repo_types) and status not in (401, 403):
                        continue
                    raise
        except NotFoundError:
            if len(repo_types) > 1 and position + 1 == len(repo_types):
                raise NotFoundError(
                    f"{target}: no dataset or model repository {did.name} on {endpoint()}; check the name "
                    "(`hades list --hub ORG` lists an author's datasets)"
                ) from None
            raise
        if not info.sha or not is_commit(info.sha):
            raise HubError(f"the Hub at {endpoint()} gave no commit for {target}@{revision}; try again later")
        return repo_type, info.sha
    raise NotFoundError(f"{target} was not found on {endpoint()}")


def _push_hf(did: DatasetId, verified: store.Verified, files: dict[str, Path], private: bool,
             tag: str | None, message: str | None) -> PushResult:
    from huggingface_hub import CommitOperationAdd

    repo_type = "dataset" if verified.kind == "dataset" else "model"
    if did.repo_type is not None and did.repo_type != repo_type:
        raise SpecError(f"{verified.path} is a {verified.kind}; push it to hf://{repo_type}s/{did.name}")
    if offline():
        raise HubError("cannot push while HF_HUB_OFFLINE is set; unset it to push")
    target = f"hf://{did.name}"
    api = _api()
    with hub_errors(target, action="push to"):
        api.create_repo(did.name, repo_type=repo_type, private=True if private else None, exist_ok=True)
        if tag is not None:
            refs = api.list_repo_refs(did.name, repo_type=repo_type)
            if any(ref.name == tag for ref in refs.tags):
                raise SpecError(f"{target} already has a tag {tag!r}; choose another tag")
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
        summary = message or f"Upload {verified.kind} ({verified.summary()}) with hades-zoo"
        info = api.create_commit(did.name, operations, commit_message=summary, repo_type=repo_type)
        commit = info.oid
        if tag is not None:
            api.create_tag(did.name, tag=tag, revision=commit, repo_type=repo_type)
    pinned = DatasetId("hf", did.name, commit, repo_type=did.repo_type)
    tag_id = format_id(pinned.with_revision(tag)) if tag else None
    return PushResult(format_id(pinned), commit, verified.kind, tag_id, str(info.commit_url))


def _list_hf(value: str) -> list[RemoteEntry]:
    if offline():
        raise HubError("cannot list a Hub author while HF_HUB_OFFLINE is set; unset it, or list the catalogue")
    from hades.registry import card_summary

    api = _api()
    found = []
    with hub_errors(f"the datasets of {value}", action="list"):
        for info in api.list_datasets(author=value, filter="hades", expand=["cardData"]):
            card = info.card_data.to_dict() if info.card_data is not None else {}
            summary = card_summary(card)
            found.append(RemoteEntry(f"hf://{info.id}", summary["env"], summary["pairs"], summary["evaluation"],
                                     summary["license"]))
    return sorted(found, key=lambda entry: entry.id)
