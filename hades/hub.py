"""Pushing to and pulling from hubs: the Hugging Face Hub (``hf://``) and directory hubs (``file://``).

Datasets live in dataset repositories, trained policies in model repositories. Every hub is a
:class:`HubBackend` (:class:`hades.hfhub.HFHub`, :class:`hades.dirhub.DirHub`): the functions here
check what they are given, verify what is pushed and hand the backend of the id's kind the files
and whether to show progress (:mod:`hades.hubprogress`). Whatever the backend, a push lands whole
or not at all, and a pull is verified before it enters the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hades import store
from hades.debris import scratch_dir
from hades.errors import SpecError, NotFoundError
from hades.files import LEGACY_VALIDATION_CSV, PARQUET_FILE, VALIDATION_CSV
from hades.ids import DatasetId, check_revision, format_id, is_commit, parse_hub_root, parse_id


@dataclass(frozen=True)
class PushResult:
    """Where a push landed: ``id`` pins the new commit; ``tag_id`` names it by tag."""

    id: str
    commit: str
    kind: str
    tag_id: str | None = None
    url: str | None = None


def files_to_push(folder: Path) -> dict[str, Path]:
    """Every regular file under ``folder`` except hidden ones (store records, caches)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        files[rel.as_posix()] = path
    return files


def hub_names(files: dict[str, Path]) -> dict[str, Path]:
    """The names files take in a pushed revision: an older run's ``validation.csv`` goes as
    ``scores.csv``, since the Hub would take a file named after a split keyword for a split."""
    files = dict(files)
    legacy = files.pop(LEGACY_VALIDATION_CSV, None)
    if legacy is not None:
        files.setdefault(VALIDATION_CSV, legacy)
    return files


@dataclass(frozen=True)
class RemoteEntry:
    """One dataset on a hub, as ``hades list --hub`` shows it."""

    id: str
    env: str | None
    pairs: int | None
    evaluation: object | None  # hades.registry.Evaluation
    license: str | None

    def to_dict(self) -> dict:
        evaluation = self.evaluation
        ret = None if evaluation is None else evaluation.to_dict()
        return {"id": self.id, "env": self.env, "pairs": self.pairs, "return": ret, "license": self.license}


class HubBackend(Protocol):
    """What a kind of hub does: bring a revision into the store, land a push whole, list what it holds."""

    kind: str

    def pull(self, did: DatasetId, force: bool, progress: bool) -> Path:
        """The verified store folder of the revision ``did`` names (downloaded unless held, or ``force``)."""

    def push(self, did: DatasetId, verified: store.Verified, files: dict[str, Path], *, tag: str | None,
             private: bool, message: str | None, progress: bool) -> PushResult:
        """Land ``files`` (hub name -> local path) as one new revision of ``did``, tagged ``tag``."""

    def list(self, root: str) -> list[RemoteEntry]:
        """The hades datasets under ``root`` (a Hub author, a directory hub's folder)."""


def backend(kind: str) -> HubBackend:
    """The backend of a hub kind (``hf`` or ``dir``)."""
    if kind == "hf":
        from hades.hfhub import HFHub

        return HFHub()
    if kind == "dir":
        from hades.dirhub import DirHub

        return DirHub()
    raise SpecError(f"no hub of kind {kind!r}; hubs are hf:// and file://")


# -- pull -----------------------------------------------------------------------------------------

def pull(did: DatasetId | str, *, force: bool = False, progress: bool = False) -> Path:
    """Bring one hub revision into the store (unless there already) and return its verified folder."""
    did = parse_id(did) if isinstance(did, str) else did
    if did.kind not in ("hf", "dir"):
        raise SpecError(f"{format_id(did)} is not a hub id; pull takes hf://ORG/NAME or file:///PATH/ORG/NAME")
    return backend(did.kind).pull(did, force, progress)


# -- push -----------------------------------------------------------------------------------------

def push(folder: str | Path, target: str | DatasetId, *, private: bool = False, tag: str | None = None,
         message: str | None = None, progress: bool = False) -> PushResult:
    """Push a verified dataset or policy folder to a hub as one commit, optionally tagged.

    A dataset goes with its parquet mirror (``data/train.parquet``), written from the verified
    tensors in the current layout whatever the folder holds. ``progress`` shows a status line
    while the revision is uploaded or copied."""
    did = parse_id(target) if isinstance(target, str) else target
    if did.kind not in ("hf", "dir"):
        raise SpecError(f"cannot push to {format_id(did)!r}: give --to hf://ORG/NAME or file:///PATH/ORG/NAME")
    if did.revision is not None:
        raise SpecError(f"a push target takes no @REVISION ({format_id(did)}): pushes go to main; name the revision with --tag")
    if tag is not None:
        check_revision(tag)
        if "/" in tag or is_commit(tag):
            raise SpecError(f"tag {tag!r} must be one word (letters, digits, '.', '_', '-'), not a path or a commit id")
    folder = Path(folder)
    if not folder.is_dir():
        if not folder.exists():
            raise NotFoundError(f"{folder} does not exist")
        raise SpecError(f"{folder} is a file; push a folder (save the dataset with Dataset.save(folder))")
    verified = store.verify_path(folder)
    files = hub_names(files_to_push(folder))
    with scratch_dir("hades-push-") as extra:
        if verified.kind == "dataset":  # the parquet mirror is made afresh from the verified tensors
            from hades.dataset import Dataset

            parquet = Path(extra) / PARQUET_FILE
            Dataset.load(folder).write_parquet(parquet)
            files[PARQUET_FILE] = parquet
        return backend(did.kind).push(did, verified, files, tag=tag, private=private, message=message,
                                      progress=progress)


# -- listing --------------------------------------------------------------------------------------

def list_remote(where: str) -> list[RemoteEntry]:
    """The hades datasets of a Hub author (``ORG``, ``hf://ORG``) or of a directory hub (``file:///PATH``)."""
    kind, value = parse_hub_root(where)
    return backend(kind).list(value)
