"""Directory hubs (``file:///PATH/ORG/NAME``): a folder laid out like a Hub, for sharing without one.

    ROOT/ORG/NAME/revisions/COMMIT/...   the files of one pushed revision
    ROOT/ORG/NAME/refs/main              the commit of the latest push (also one file per tag)

A folder ``ROOT/ORG/NAME`` that holds a dataset or policy directly also works, as its only
revision, whose commit is a hash of its files.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from urllib.parse import quote, unquote

from hades import store
from hades.errors import FormatError, HadesError, NotFoundError, SpecError
from hades.files import DATASET_FILE, POLICY_FILE
from hades.hub import PushResult, RemoteEntry, files_to_push
from hades.ids import DatasetId, check_part, format_id, is_commit


class DirHub:
    """Directory hubs as a hub backend (see :class:`hades.hub.HubBackend`). A revision is a folder
    copied in under a temporary name and renamed into place, then named by ``refs/main``."""

    kind = "dir"

    def pull(self, did: DatasetId, force: bool, progress: bool) -> Path:
        from hades.hubprogress import status

        with status(progress, f"copying {format_id(did)} into the store"):
            return pull_dir(did, force)

    def push(self, did: DatasetId, verified: store.Verified, files: dict[str, Path], *, tag: str | None,
             private: bool, message: str | None, progress: bool) -> PushResult:
        """``private`` and ``message`` mean nothing to a folder: its permissions and the card say it."""
        from hades.hubprogress import status

        with status(progress, f"pushing {verified.path} to {format_id(did)}"):
            return push_dir(did, verified, files, tag)

    def list(self, root: str) -> list[RemoteEntry]:
        return list_dir(Path(root))


def _dir_repo(did: DatasetId) -> Path:
    return Path(did.path) / did.org / did.repo_name


def _content_id(files: dict[str, Path]) -> str:
    """A commit id for a directory hub revision: a hash of the file names and their contents."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + store.file_sha256(files[name]).encode() + b"\n")
    return digest.hexdigest()[:40]


def _dir_refs(repo: Path) -> dict[str, str]:
    refs = {}
    folder = repo / "refs"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                refs[unquote(path.name)] = path.read_text().strip()
    return refs


def _dir_revision(did: DatasetId) -> tuple[str, Path]:
    """(commit, folder holding its files) of a directory hub revision."""
    repo = _dir_repo(did)
    target = format_id(did)
    if not repo.is_dir():
        raise NotFoundError(f"{target}: the directory hub {did.path} has no repository {did.name}")
    revision = did.revision or "main"
    if (repo / "revisions").is_dir():
        refs = _dir_refs(repo)
        commit = refs.get(revision)
        if commit is None and is_commit(revision) and (repo / "revisions" / revision).is_dir():
            commit = revision
        if commit is None or not is_commit(commit) or not (repo / "revisions" / commit).is_dir():
            known = ", ".join(refs) or "none"
            raise NotFoundError(f"{target}: no revision {revision!r} in the directory hub; refs there: {known}")
        return commit, repo / "revisions" / commit
    if did.revision not in (None, "main"):
        raise NotFoundError(f"{target}: {repo} holds one unversioned revision; drop the @{did.revision}")
    store.payload_file(repo)
    return _content_id(files_to_push(repo)), repo


def pull_dir(did: DatasetId, force: bool) -> Path:
    commit, source_folder = _dir_revision(did)
    kind, _ = store.payload_file(source_folder)
    key = store.StoreKey(store.source_for_dir(did.path), "dataset" if kind == "dataset" else "model", did.name)
    if not force and store.cached(key, commit):
        return store.check_entry(key.snapshot(commit))

    def fill(tmp: Path) -> None:
        for name, path in files_to_push(source_folder).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp / name)

    folder = store.install(key, commit, fill, force=force)
    store.write_ref(key, did.revision or "main", commit)
    return folder


def push_dir(did: DatasetId, verified: store.Verified, files: dict[str, Path], tag: str | None) -> PushResult:
    from filelock import FileLock

    from hades.formats import atomic_dir, atomic_write_bytes

    repo = _dir_repo(did)
    commit = _content_id(files)
    try:
        repo.mkdir(parents=True, exist_ok=True)
        with FileLock(str(repo / ".lock"), timeout=store.LOCK_TIMEOUT_S):
            if not (repo / "revisions").is_dir() and any(repo.glob("*.safetensors")):
                raise SpecError(f"{repo} holds an unversioned dataset; push to another name or move it away")
            refs = _dir_refs(repo)
            if tag is not None and tag in refs and refs[tag] != commit:
                raise SpecError(f"{format_id(did)} already has a tag {tag!r}; choose another tag")
            revision_folder = repo / "revisions" / commit
            if not revision_folder.is_dir():
                with atomic_dir(revision_folder) as tmp:
                    for name, path in files.items():
                        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(path, tmp / name)
            atomic_write_bytes(repo / "refs" / "main", commit.encode())
            if tag is not None:
                atomic_write_bytes(repo / "refs" / quote(tag, safe=""), commit.encode())
    except PermissionError as exc:
        raise HadesError(f"cannot write to the directory hub {did.path} ({exc.strerror}); check its permissions") from None
    pinned = did.with_revision(commit)
    tag_id = format_id(did.with_revision(tag)) if tag else None
    return PushResult(format_id(pinned), commit, verified.kind, tag_id, str(revision_folder))


def _looks_like_repo(folder: Path) -> bool:
    return (folder / "revisions").is_dir() or any((folder / name).is_file() for name in (DATASET_FILE, POLICY_FILE))


def list_dir(root: Path) -> list[RemoteEntry]:
    from hades.formats import read_card
    from hades.registry import card_summary

    if not root.is_dir():
        raise NotFoundError(f"the directory hub {root} does not exist")
    repos = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _looks_like_repo(child):
            repos.append((root.parent, root.name, child.name))
            continue
        for grandchild in sorted(p for p in child.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if _looks_like_repo(grandchild):
                repos.append((root, child.name, grandchild.name))
    found = []
    for hub_root, org, name in repos:
        try:
            check_part(org, "organisation", org)
            check_part(name, "repository name", name)
        except SpecError:
            continue
        did = DatasetId("dir", f"{org}/{name}", path=str(hub_root))
        try:
            _, folder = _dir_revision(did)
            _, card = read_card(folder)
        except (NotFoundError, FormatError):
            found.append(RemoteEntry(format_id(did), None, None, None, None))
            continue
        summary = card_summary(card)
        found.append(RemoteEntry(format_id(did), summary["env"], summary["pairs"], summary["evaluation"], summary["license"]))
    return found
