"""Low-level pieces of format v1 shared by datasets and policies: canonical JSON, safetensors
bytes with one metadata key, sha256, atomic writes and the card front matter."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


from hades.debris import clean_dead, owned_prefix
from hades.errors import CardError, ChecksumError, FormatError, NotFoundError, VersionError
from hades.files import CARD_FILE

FORMAT_VERSION = 1
METADATA_KEY = "hades"
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")  # a sha256 hex digest as cards and indexes write it


def canonical_json(data) -> str:
    """Sorted keys, no whitespace: the same data always gives the same bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in blocks; cheap to import (no numpy), as cached pulls call it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensors_to_bytes(tensors: dict[str, "np.ndarray"], meta: dict) -> bytes:
    import numpy as np

    from safetensors.numpy import save

    arrays = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    return save(arrays, metadata={METADATA_KEY: canonical_json(meta)})


def tensors_from_bytes(data: bytes, source: str) -> tuple[dict, dict]:
    """Parse safetensors bytes; every way they can be broken becomes one :class:`FormatError`."""
    from safetensors.numpy import load

    if len(data) < 8:
        raise FormatError(f"{source} is not a safetensors file (only {len(data)} bytes); re-download or re-create it")
    try:
        header_len = int.from_bytes(data[:8], "little")
        if header_len > len(data) - 8:
            raise ValueError("header longer than the file")
        header = json.loads(data[8 : 8 + header_len])
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types; all mean "corrupt"
        raise FormatError(
            f"{source} is truncated or corrupt ({type(exc).__name__}: {exc}); re-download or re-create it"
        ) from None
    meta_text = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if meta_text is None:
        raise FormatError(f"{source} has no '{METADATA_KEY}' metadata: it was not written by hades")
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{source}: its '{METADATA_KEY}' metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise FormatError(f"{source}: its '{METADATA_KEY}' metadata is not a JSON object")
    check_version(meta.get("format_version"), source)
    return tensors, meta


def check_version(found, source: str) -> None:
    if found != FORMAT_VERSION:
        raise VersionError(
            f"{source} has format version {found!r}, but this hades reads version {FORMAT_VERSION}; "
            "upgrade hades-zoo or re-export the file"
        )


def read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise FormatError(f"{path} is a folder, expected a .safetensors file") from None


def verify_checksum(data: bytes, expected: str | None, source: str) -> str:
    actual = sha256_bytes(data)
    if expected is not None and actual != expected:
        raise ChecksumError(
            f"{source} fails verification: sha256 is {actual[:12]}..., its card says {str(expected)[:12]}...; "
            "the file was modified or damaged, pull it again"
        )
    return actual


def read_card(folder: Path) -> tuple[dict, str]:
    """Return (the ``hades`` section of the card's front matter, the whole card data)."""
    from huggingface_hub import RepoCard

    path = Path(folder) / CARD_FILE
    if not path.is_file():
        if not Path(folder).exists():  # removed while being read (a store delete, say): gone, not malformed
            raise NotFoundError(f"{folder} does not exist (any more)")
        raise CardError(f"{folder} has no card {CARD_FILE}; re-create the folder with hades or pull it again")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        raise CardError(f"{path} has no YAML front matter; it is not a hades card")
    try:
        card = RepoCard(text, ignore_metadata_errors=False)
        data = card.data.to_dict()
    except Exception as exc:
        detail = " ".join(str(exc).split())  # YAML errors span several lines; the message is one
        raise CardError(f"{path} has malformed YAML front matter ({type(exc).__name__}: {detail})") from None
    section = data.get(METADATA_KEY)
    if not isinstance(section, dict):
        raise CardError(f"{path} has no '{METADATA_KEY}' section in its front matter; it is not a hades card")
    check_version(section.get("format_version"), str(path))
    return section, data


def check_card_matches(section: dict, meta: dict, source: str) -> None:
    """A card may say less than its tensor file's metadata, never something else: the checksum
    covers the file only, so a field edited in the card alone is caught here."""
    for key in sorted(section):
        if key in ("sha256", "format_version"):
            continue
        if key not in meta:
            raise CardError(f"{source}: the card's field {key!r} is not in the file's own metadata; "
                            "the card was edited: re-create it with hades or pull the dataset again")
        if _plain(section[key]) != _plain(meta[key]):
            raise CardError(f"{source}: the card's field {key!r} disagrees with the file's own metadata; "
                            "the card was edited: re-create it with hades or pull the dataset again")


def _plain(value) -> str:
    """JSON text of a value with sorted keys, so YAML's and JSON's spellings of the same data (dates,
    tuples, NaN) compare equal."""
    return json.dumps(json.loads(json.dumps(value, default=str)), sort_keys=True)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Write a folder under a temporary name next to ``target``; rename it into place only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_dead(target.parent, ".hades-")  # what killed writers left in this folder
    tmp = Path(tempfile.mkdtemp(prefix=owned_prefix(".hades-"), suffix=f".{target.name}.tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the folder keeps the usual permissions
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=owned_prefix(".hades-"), suffix=f".{target.name}.old", dir=target.parent))
            os.replace(target, old / "x")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_dead(path.parent, ".hades-")
    fd, tmp = tempfile.mkstemp(prefix=owned_prefix(".hades-"), suffix=f".{path.name}.tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_card(kind: str, card_data: dict, **template_vars) -> str:
    """Render ``cards/{kind}_card.md`` through huggingface_hub's card classes."""
    from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

    from hades._resources import resource_dir

    template = resource_dir("cards") / f"{kind}_card.md"
    if kind == "dataset":
        card = DatasetCard.from_template(DatasetCardData(**card_data), template_path=str(template), **template_vars)
    else:
        card = ModelCard.from_template(ModelCardData(**card_data), template_path=str(template), **template_vars)
    return str(card)
