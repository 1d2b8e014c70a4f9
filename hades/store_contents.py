"""What the local store holds, and removing it: the library behind ``hades store``.

Revisions are deleted by renaming them out of the store first (under the revision's install lock),
so a reader resolving the name afterwards finds it gone rather than half there, and a pull of the
same revision waits for the delete to finish.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hades.errors import SpecError, HadesError, NotFoundError
from hades.store import LOCK_TIMEOUT_S, StoreKey, entries, home, verify_path


@dataclass(frozen=True)
class StoredRevision:
    """One revision in the store: which hub it came from, its repository, commit, refs and size."""

    source: str
    repo_type: str
    repo: str
    commit: str
    refs: tuple[str, ...]
    bytes: int
    folder: Path

    def to_dict(self) -> dict:
        return {"source": self.source, "repo_type": self.repo_type, "repo": self.repo, "commit": self.commit,
                "refs": list(self.refs), "bytes": self.bytes, "folder": str(self.folder)}


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _refs(key: StoreKey) -> dict[str, list[str]]:
    """commit -> the branches and tags that pointed to it when last pulled."""
    from urllib.parse import unquote

    found: dict[str, list[str]] = {}
    folder = key.folder / "refs"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                try:
                    found.setdefault(path.read_text().strip(), []).append(unquote(path.name))
                except OSError:
                    continue
    return found


def held(repo: str | None = None) -> list[StoredRevision]:
    """Every stored revision (of ``repo``, ``ORG/NAME``, when given)."""
    if repo is not None:
        from hades.ids import check_part

        parts = repo.split("/")
        if len(parts) != 2:
            raise SpecError(f"malformed repository {repo!r}: expected ORG/NAME")
        for part, what in zip(parts, ("organisation", "name")):
            check_part(part, what, repo)
    revisions = []
    refs_of: dict[StoreKey, dict[str, list[str]]] = {}
    for key, commit, folder in entries():
        if repo is not None and key.repo.lower() != repo.lower():
            continue
        refs = refs_of.setdefault(key, _refs(key))
        revisions.append(StoredRevision(key.source, key.repo_type, key.repo, commit, tuple(refs.get(commit, ())),
                                        _size(folder), folder))
    return revisions


def delete(repo: str, revision: str | None = None) -> list[StoredRevision]:
    """Delete every stored revision of ``repo`` (``ORG/NAME``), or the one ``revision`` names (commit, branch, tag)."""
    from filelock import FileLock, Timeout

    matches = [item for item in held(repo)
               if revision is None or item.commit == revision or revision in item.refs]
    if not matches:
        what = f"{repo}@{revision}" if revision else repo
        raise NotFoundError(f"the store holds no {what}")
    for item in matches:
        key = StoreKey(item.source, item.repo_type, item.repo)
        try:
            with FileLock(str(key.lock_file(item.commit)), timeout=LOCK_TIMEOUT_S):
                trash = Path(tempfile.mkdtemp(prefix=".deleting-", dir=item.folder.parent))
                os.replace(item.folder, trash / "x")
                shutil.rmtree(trash, ignore_errors=True)
                for name in item.refs:
                    key.ref_file(name).unlink(missing_ok=True)
        except Timeout:
            raise HadesError(f"another hades process holds {key.lock_file(item.commit)}; try again when it is done") from None
        except FileNotFoundError:
            continue  # deleted by another process meanwhile
    return matches


@dataclass(frozen=True)
class Checked:
    revision: StoredRevision
    ok: bool
    problem: str | None = None

    def to_dict(self) -> dict:
        return {**self.revision.to_dict(), "ok": self.ok, "problem": self.problem}


def verify_all() -> list[Checked]:
    """Re-verify every stored revision (format, shapes, sha256); problems are reported, not raised."""
    results = []
    for item in held():
        try:
            verify_path(item.folder)
        except HadesError as exc:
            results.append(Checked(item, False, str(exc).splitlines()[0]))
        else:
            results.append(Checked(item, True))
    return results


def store_root() -> Path:
    return home() / "store"
