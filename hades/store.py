"""The local store of pulled datasets and policies, under ``HADES_HOME``.

Layout (everything a reader may see is complete and verified)::

    HADES_HOME/store/SOURCE/{datasets,models}/ORG/NAME/snapshots/COMMIT/   one verified revision
    HADES_HOME/store/SOURCE/{datasets,models}/ORG/NAME/refs/REVISION       the commit a branch/tag had
    HADES_HOME/locks/*.lock                                                 one lock per revision

``SOURCE`` names the hub (``hf/HOST`` for a Hugging Face endpoint, ``dir/HASH`` for a directory
hub), so two hubs never share entries. A revision is written under a temporary name, verified, and
renamed into place while holding a file lock, so a killed download leaves nothing a reader can see
and concurrent pulls of one revision store it exactly once. Each entry records the sha256 of its
files when it was verified (``.hades-verified.json``); later uses re-hash the files against that
record and fall back to a full check when anything differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from hades.errors import FormatError, HadesError
from hades.files import CARD_FILE, DATASET_FILE, POLICY_FILE
from hades.formats import sha256_file

HOME_ENV = "HADES_HOME"
MARKER = ".hades-verified.json"
LOCK_TIMEOUT_S = 600.0


def home() -> Path:
    """``$HADES_HOME``, else the user cache folder (``~/.cache/hades`` on Linux)."""
    value = os.environ.get(HOME_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("hades"))


# -- verification ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verified:
    """What a successful check found: the kind of artefact and the facts worth printing."""

    path: Path
    kind: str  # "dataset" or "policy"
    sha256: str
    env: str | None = None
    pairs: int | None = None

    def summary(self) -> str:
        what = f"{self.kind}"
        if self.env:
            what += f", {self.env}"
        if self.pairs is not None:
            what += f", {self.pairs} pairs"
        return f"{what}, sha256 {self.sha256[:12]}"


def payload_file(folder: Path) -> tuple[str, Path]:
    """The kind of a folder and its tensor file: ``dataset.safetensors`` or ``policy.safetensors``."""
    folder = Path(folder)
    for kind, name in (("dataset", DATASET_FILE), ("policy", POLICY_FILE)):
        if (folder / name).is_file():
            return kind, folder / name
    raise FormatError(
        f"{folder} holds neither {DATASET_FILE} nor {POLICY_FILE}; it is not a hades dataset or policy folder"
    )


def verify_path(path: str | Path) -> Verified:
    """Full check of a dataset or policy folder (or bare ``.safetensors`` file): the sha256 recorded
    in the card, the format version, shapes against the env, dtypes and finite values."""
    from hades.paths import check_input

    path = check_input(path)
    if path.is_dir():
        kind, data_path = payload_file(path)
        if kind == "dataset":
            from hades.dataset import Dataset

            _recorded_sha256(path, data_path)
            dataset = Dataset.load(path)
            return Verified(path, kind, file_sha256(data_path), dataset.env, dataset.pairs)
        return _verify_policy_folder(path, data_path)
    from hades.formats import read_bytes, sha256_bytes, tensors_from_bytes

    data = read_bytes(path)
    _, meta = tensors_from_bytes(data, str(path))
    kind = meta.get("kind", "dataset")
    if kind == "dataset":
        from hades.dataset import Dataset

        dataset = Dataset.from_bytes(data, str(path))
        return Verified(path, kind, sha256_bytes(data), dataset.env, dataset.pairs)
    if kind != "policy":
        raise FormatError(f"{path} holds a {kind!r}; hades reads datasets and policies")
    _check_policy_bytes(data, str(path))
    return Verified(path, kind, sha256_bytes(data), _env_id(meta))


def _recorded_sha256(folder: Path, data_path: Path) -> tuple[str, dict]:
    """The card's ``hades.sha256``: a folder without one cannot be verified, so it is refused."""
    from hades.errors import CardError
    from hades.formats import read_card

    section, _ = read_card(folder)
    expected = section.get("sha256")
    if not isinstance(expected, str) or not expected:
        raise CardError(f"{folder / CARD_FILE} records no sha256 for {data_path.name}; re-create the folder with hades")
    return expected, section


def _verify_policy_folder(folder: Path, data_path: Path) -> Verified:
    from hades.formats import read_bytes, verify_checksum

    expected, section = _recorded_sha256(folder, data_path)
    data = read_bytes(data_path)
    actual = verify_checksum(data, expected, str(data_path))
    meta = _check_policy_bytes(data, str(data_path), section, str(folder / CARD_FILE))
    return Verified(folder, "policy", actual, _env_id(meta))


def _check_policy_bytes(data: bytes, source: str, section: dict | None = None, card_source: str = "") -> dict:
    """Check a policy file (and, given its card's ``hades`` section, the card against it)."""
    from hades.formats import check_card_matches, tensors_from_bytes
    from hades.metadata import check_policy

    tensors, meta = tensors_from_bytes(data, source)
    check_policy(tensors, meta, source)
    if section is not None:
        check_card_matches(section, meta, card_source)
    return meta


def _env_id(meta: dict) -> str | None:
    env = meta.get("env")
    return env.get("id") if isinstance(env, dict) else (env if isinstance(env, str) else None)


file_sha256 = sha256_file


def _file_digests(folder: Path) -> dict[str, str]:
    _, data_path = payload_file(folder)
    return {path.name: file_sha256(path) for path in (data_path, folder / CARD_FILE)}


def write_marker(folder: Path, verified: Verified) -> None:
    """Record what was verified, so later uses re-hash instead of re-parsing."""
    from hades.formats import atomic_write_bytes

    record = {"kind": verified.kind, "files": _file_digests(folder)}
    atomic_write_bytes(folder / MARKER, json.dumps(record, sort_keys=True).encode())


def check_entry(folder: Path) -> Path:
    """Re-check a store entry before use: re-hash its files against the record made when it was
    verified; on any difference run the full check (which names what is wrong)."""
    folder = Path(folder)
    try:
        record = json.loads((folder / MARKER).read_text())
        if record.get("files") == _file_digests(folder):
            return folder
    except (OSError, ValueError, FormatError, AttributeError):
        pass
    try:
        verified = verify_path(folder)
    except FormatError as exc:
        raise type(exc)(f"the stored copy is damaged: {exc}; run `hades pull --force` to download it again") from None
    try:
        write_marker(folder, verified)
    except OSError:
        pass  # a read-only store is still usable; it just re-checks in full next time
    return folder


# -- entries --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoreKey:
    """Where one hub repository lives in the store."""

    source: str  # "hf/HOST" or "dir/HASH": which hub it came from
    repo_type: str  # "dataset" or "model"
    repo: str  # "ORG/NAME", validated by hades.ids

    @property
    def folder(self) -> Path:
        return home() / "store" / self.source / f"{self.repo_type}s" / self.repo

    def snapshot(self, commit: str) -> Path:
        return self.folder / "snapshots" / commit

    def ref_file(self, revision: str) -> Path:
        return self.folder / "refs" / quote(revision, safe="")

    def lock_file(self, commit: str) -> Path:
        digest = hashlib.sha256(f"{self.source}|{self.repo_type}|{self.repo}|{commit}".encode()).hexdigest()[:32]
        return home() / "locks" / f"{digest}.lock"


def source_for_endpoint(endpoint: str) -> str:
    """``hf/HOST[_PORT]``: the store keeps the datasets of each Hub endpoint apart."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    host = (parts.hostname or "hub").lower()
    label = host + (f"_{parts.port}" if parts.port else "")
    label = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in label)
    if parts.path.strip("/"):
        label += "_" + hashlib.sha256(parts.path.encode()).hexdigest()[:8]
    return f"hf/{label}"


def source_for_dir(root: str) -> str:
    return "dir/" + hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:16]


def read_ref(key: StoreKey, revision: str) -> str | None:
    """The commit a branch or tag pointed to when it was last pulled (for offline use)."""
    try:
        commit = key.ref_file(revision).read_text().strip()
    except OSError:
        return None
    return commit or None


def write_ref(key: StoreKey, revision: str, commit: str) -> None:
    if revision == commit:
        return
    from hades.formats import atomic_write_bytes

    try:
        atomic_write_bytes(key.ref_file(revision), commit.encode())
    except OSError as exc:
        raise _unwritable(exc) from None


def cached(key: StoreKey, commit: str) -> Path | None:
    folder = key.snapshot(commit)
    return folder if folder.is_dir() else None


def install(key: StoreKey, commit: str, fill: Callable[[Path], None], force: bool = False) -> Path:
    """Store one revision: ``fill(tmp)`` writes its files into a temporary folder, which is verified
    and renamed into place. Holding the revision's lock makes concurrent installs store it once."""
    from filelock import FileLock, Timeout

    target = key.snapshot(commit)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        key.lock_file(commit).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(exc) from None
    lock = FileLock(str(key.lock_file(commit)), timeout=LOCK_TIMEOUT_S)
    try:
        with lock:
            if target.is_dir() and not force:
                return check_entry(target)
            _remove_leftovers(target)
            from hades.formats import atomic_dir

            with atomic_dir(target) as tmp:
                fill(tmp)
                shutil.rmtree(tmp / ".cache", ignore_errors=True)
                verified = verify_path(tmp)
                write_marker(tmp, verified)
            return target
    except Timeout:
        raise HadesError(
            f"another hades process has held the lock {key.lock_file(commit)} for over {LOCK_TIMEOUT_S:.0f} s; "
            "wait for it to finish, or delete the lock file if no hades process is running"
        ) from None
    except PermissionError as exc:
        raise _unwritable(exc) from None


def remove(key: StoreKey, commit: str) -> None:
    shutil.rmtree(key.snapshot(commit), ignore_errors=True)


def _remove_leftovers(target: Path) -> None:
    """Delete the temporary folders of earlier installs of this revision that were killed midway."""
    for pattern in (f".{target.name}.*.tmp", f".{target.name}.*.old"):
        for stale in target.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def entries() -> list[tuple[StoreKey, str, Path]]:
    """Every stored revision: (key, commit, folder)."""
    root = home() / "store"
    found = []
    for snapshots in sorted(root.glob("*/*/*/*/*/snapshots")):
        repo_folder = snapshots.parent
        parts = repo_folder.relative_to(root).parts
        key = StoreKey(f"{parts[0]}/{parts[1]}", parts[2][:-1], f"{parts[3]}/{parts[4]}")
        for snapshot in sorted(p for p in snapshots.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found.append((key, snapshot.name, snapshot))
    return found


def _unwritable(exc: OSError) -> HadesError:
    return HadesError(f"cannot write to the hades store at {home()} ({exc.strerror or exc}); "
                      f"set {HOME_ENV} to a writable folder")
