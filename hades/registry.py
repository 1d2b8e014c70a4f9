"""The bundled catalogue and the resolver every command uses to turn an identifier into files.

The catalogue is ``registry/index.json`` (shipped in the wheel as ``hades/_registry``; the
environment variable ``HADES_REGISTRY`` points at another catalogue folder): a JSON list of
entries ``{name, version, sha256, env, pairs, return: {mean, std, protocol}, license, path}`` and,
optionally, ``method`` (``hades-r``, ``hades-f``, ...) and ``source`` (where the entry comes from),
``path`` being the dataset folder relative to the catalogue folder. Names are ``NAME`` (ours) or
``NAMESPACE/NAME`` (see :data:`hades.ids.CATALOGUE_NAMESPACES`). Bundled datasets need no
network and no store: they are checked against the sha256 in the index and used in place.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hades.errors import ChecksumError, FormatError, NotFoundError
from hades.files import DATASET_FILE
from hades.formats import SHA256_PATTERN
from hades.ids import DatasetId, check_catalogue_name, check_part, parse_id, split_catalogue_name

if TYPE_CHECKING:  # pragma: no cover
    from hades.dataset import Dataset

REGISTRY_ENV = "HADES_REGISTRY"
INDEX_FILE = "index.json"


def format_score(mean: float, std: float, metric: str = "return") -> str:
    """``mean ± std`` as listings show it: a return to one decimal, a test accuracy in percent."""
    if metric == "test_accuracy":
        return f"{mean:.1%} ± {std:.1%}"
    return f"{mean:.1f} ± {std:.1f}"


@dataclass(frozen=True)
class Evaluation:
    """The published score of a dataset and how it was measured: a mean return, or an image dataset's test accuracy."""

    mean: float
    std: float
    protocol: str
    metric: str = "return"

    def __str__(self) -> str:
        return format_score(self.mean, self.std, self.metric)

    def to_dict(self) -> dict:
        row = {"mean": self.mean, "std": self.std, "protocol": self.protocol}
        if self.metric != "return":
            row["metric"] = self.metric
        return row


@dataclass(frozen=True)
class Entry:
    """One bundled dataset."""

    name: str
    version: str
    sha256: str
    env: str
    pairs: int
    evaluation: Evaluation | None
    license: str
    path: str  # relative to the catalogue folder
    folder: Path  # absolute location of the dataset folder
    method: str | None = None
    source: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def namespace(self) -> str:
        """"" for our own entries, else the namespace the name starts with (``iclr2024``)."""
        return split_catalogue_name(self.name)[0]

    def to_dict(self) -> dict:
        evaluation = None if self.evaluation is None else self.evaluation.to_dict()
        row = {"name": self.name, "version": self.version, "sha256": self.sha256, "env": self.env,
               "pairs": self.pairs, "return": evaluation, "license": self.license, "path": self.path}
        for key in ("method", "source"):
            if getattr(self, key) is not None:
                row[key] = getattr(self, key)
        return row


def catalogue_dir() -> Path:
    """``$HADES_REGISTRY`` when set, else the catalogue bundled with this installation."""
    value = os.environ.get(REGISTRY_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    from hades._resources import resource_dir

    return resource_dir("registry")


def load_catalogue(folder: Path | None = None) -> tuple[Entry, ...]:
    """Read and validate ``index.json``; a broken index is one clear :class:`FormatError`."""
    folder = Path(folder) if folder is not None else catalogue_dir()
    index = folder / INDEX_FILE
    try:
        raw = json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if os.environ.get(REGISTRY_ENV, "").strip():
            raise NotFoundError(f"{REGISTRY_ENV}={folder} holds no {INDEX_FILE}; point it at a catalogue folder") from None
        raise NotFoundError(f"the bundled catalogue {index} is missing; reinstall hades-zoo") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{index} is not valid JSON ({exc}); fix or reinstall the catalogue") from None
    if not isinstance(raw, list):
        raise FormatError(f"{index} must hold a JSON list of entries, found {type(raw).__name__}")
    entries = []
    seen = set()
    for position, item in enumerate(raw):
        entry = _parse_entry(item, position, folder, index)
        if (entry.name, entry.version) in seen:
            raise FormatError(f"{index}: {entry.id} is listed twice; keep one entry per name and version")
        seen.add((entry.name, entry.version))
        entries.append(entry)
    return tuple(entries)


def _parse_entry(item, position: int, folder: Path, index: Path) -> Entry:
    where = f"{index}: entry {position}"
    if not isinstance(item, dict):
        raise FormatError(f"{where} is not a JSON object")
    where += f" ({item.get('name')!r})" if "name" in item else ""
    missing = [key for key in ("name", "version", "sha256", "env", "pairs", "license", "path") if key not in item]
    if missing:
        raise FormatError(f"{where} lacks {', '.join(missing)}")
    name, version = str(item["name"]), str(item["version"])
    try:
        check_catalogue_name(name, name)
        check_part(version, "version", version)
    except Exception as exc:
        raise FormatError(f"{where}: {exc}") from None
    sha256 = str(item["sha256"]).lower()
    if not SHA256_PATTERN.fullmatch(sha256):
        raise FormatError(f"{where}: sha256 must be 64 hex digits")
    pairs = item["pairs"]
    if not isinstance(pairs, int) or isinstance(pairs, bool) or pairs < 1:
        raise FormatError(f"{where}: pairs must be a positive integer")
    rel = str(item["path"])
    rel_path = Path(rel)
    if rel_path.is_absolute() or ".." in rel_path.parts or not rel.strip():
        raise FormatError(f"{where}: path must be relative to the catalogue folder, without '..'")
    evaluation = None
    ret = item.get("return")
    if ret is not None:
        try:
            evaluation = Evaluation(float(ret["mean"]), float(ret["std"]), str(ret["protocol"]),
                                    str(ret.get("metric") or "return"))
        except (TypeError, KeyError, ValueError):
            raise FormatError(f"{where}: return must be {{mean, std, protocol}} or null") from None
    optional = {key: str(item[key]) for key in ("method", "source") if item.get(key) is not None}
    return Entry(name, version, sha256, str(item["env"]), pairs, evaluation, str(item["license"]), rel,
                 folder / rel_path, **optional)


def _version_key(version: str) -> tuple:
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.-]", version))


def find_entry(name: str, version: str | None = None, entries: tuple[Entry, ...] | None = None) -> Entry:
    """The entry called ``name`` (case-insensitive), at ``version`` or the newest one."""
    entries = load_catalogue() if entries is None else entries
    matches = [entry for entry in entries if entry.name.lower() == name.lower()]
    if not matches:
        raise NotFoundError(_unknown_name_message(name, entries))
    if version is None:
        return max(matches, key=lambda entry: _version_key(entry.version))
    for entry in matches:
        if entry.version == version:
            return entry
    versions = ", ".join(sorted((entry.version for entry in matches), key=_version_key))
    raise NotFoundError(f"{name} has no version {version!r}; available versions: {versions}")


def select_entries(entries: tuple[Entry, ...], *, env: str | None = None, namespace: str | None = None,
                   method: str | None = None) -> list[Entry]:
    """The entries of one env, namespace (``"ours"`` or ``""``: no namespace) and method; None matches all."""
    from hades.ids import CATALOGUE_NAMESPACES

    if namespace is not None:
        namespace = "" if namespace.strip().lower() in ("", "ours") else namespace.strip().rstrip("/")
        if namespace and namespace not in CATALOGUE_NAMESPACES:
            known = ", ".join(["ours", *sorted(CATALOGUE_NAMESPACES)])
            raise NotFoundError(f"{namespace!r} is not a catalogue namespace (known: {known})")
    if method is not None:
        from hades.distillation import METHODS

        known_methods = {*METHODS, *((entry.method or "").lower() for entry in entries)}
        if method.lower() not in known_methods:
            raise NotFoundError(f"{method!r} is not a method of any catalogue entry "
                                f"(known: {', '.join(sorted(m for m in known_methods if m))})")
    selected = []
    for entry in entries:
        if env is not None and entry.env.lower() != env.lower():
            continue
        if namespace is not None and entry.namespace != namespace:
            continue
        if method is not None and (entry.method or "").lower() != method.lower():
            continue
        selected.append(entry)
    return selected


def _unknown_name_message(name: str, entries: tuple[Entry, ...]) -> str:
    names = sorted({entry.name for entry in entries})
    if not names:
        return (f"{name!r} is not in the catalogue, which is empty; use a Hub id "
                "(hf://ORG/NAME), a directory hub (file:///PATH/ORG/NAME) or a local path")
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    namespace = split_catalogue_name(name)[0]
    shown = [entry for entry in names if split_catalogue_name(entry)[0] == namespace]
    if namespace:
        return f"{name!r} is not in the catalogue: {hint}{len(shown)} entries in {namespace}/"
    others = sorted({split_catalogue_name(entry)[0] for entry in names} - {""})
    more = f"; namespaces: {', '.join(others)}" if others else ""
    return f"{name!r} is not in the catalogue: {hint}available: {', '.join(shown) or 'none'}{more}"


def check_bundled(entry: Entry) -> Path:
    """A bundled dataset folder, after checking its bytes against the index."""
    from hades.store import file_sha256

    data_path = entry.folder / DATASET_FILE
    if not data_path.is_file():
        raise NotFoundError(f"the catalogue lists {entry.id} at {entry.folder}, but {data_path.name} is not there; "
                            "reinstall hades-zoo or fix the catalogue")
    actual = file_sha256(data_path)
    if actual != entry.sha256:
        raise ChecksumError(
            f"bundled dataset {entry.id} fails verification: sha256 is {actual[:12]}..., the catalogue says "
            f"{entry.sha256[:12]}...; reinstall hades-zoo"
        )
    return entry.folder


def card_summary(card: dict) -> dict:
    """What listings show from a card's front matter: kind, env, pairs, evaluation, license, sha256."""
    section = card.get("hades") if isinstance(card.get("hades"), dict) else {}
    env = section.get("env")
    env_id = env.get("id") if isinstance(env, dict) else (env if isinstance(env, str) else None)
    pairs = section.get("pairs")
    return {
        "kind": section.get("kind"),
        "name": section.get("name") or card.get("pretty_name"),
        "env": env_id,
        "pairs": pairs if isinstance(pairs, int) else None,
        "evaluation": evaluation_from_card(section.get("evaluation")),
        "license": card.get("license") or section.get("license"),
        "sha256": section.get("sha256"),
        "normalization": section.get("normalization"),
    }


def evaluation_from_card(evaluation) -> Evaluation | None:
    """The ``evaluation`` section of a card (mean, std, protocol) as an :class:`Evaluation`."""
    if not isinstance(evaluation, dict):
        return None
    try:
        mean, std = float(evaluation["mean"]), float(evaluation.get("std", 0.0))
    except (KeyError, TypeError, ValueError):
        return None
    metric = "test_accuracy" if evaluation.get("metric") == "test_accuracy" else "return"
    return Evaluation(mean, std, protocol_text(evaluation.get("protocol")), metric)


def protocol_text(protocol) -> str:
    """One line saying how a return was measured."""
    if isinstance(protocol, dict):
        if "test_images" in protocol:
            return f"{protocol.get('inits', '?')} inits, test accuracy on {protocol['test_images']} images"
        parts = []
        if "num_envs" in protocol and "num_steps" in protocol:
            parts.append(f"{protocol['num_envs']} envs x {protocol['num_steps']} steps")
        elif "num_episodes" in protocol:
            parts.append(f"{protocol['num_episodes']} episodes")
        if "greedy" in protocol:
            parts.append("greedy actions" if protocol["greedy"] else "sampled actions")
        return ", ".join(parts) or ", ".join(f"{key}={value}" for key, value in sorted(protocol.items()))
    return "" if protocol is None else str(protocol)


def resolve(identifier: str, *, force: bool = False, progress: bool = False) -> Path:
    """A verified local folder (or file) for any identifier, pulling into the store when needed.

    ``force`` downloads a hub revision again even when the store holds it; ``progress`` shows a
    progress display for downloads.
    """
    return resolve_id(parse_id(identifier), force=force, progress=progress)


def resolve_id(did: DatasetId, *, force: bool = False, progress: bool = False) -> Path:
    if did.kind == "path":
        path = Path(did.path).expanduser()
        if not os.path.lexists(path):  # os.path never raises (a name too long, a loop): it says False
            raise NotFoundError(f"{did.path} does not exist; give a dataset folder, a .safetensors file or a catalogue name")
        from hades.store import verify_path

        verify_path(path)
        return path
    if did.kind == "catalogue":
        entries = load_catalogue()
        try:
            entry = find_entry(did.name, did.revision, entries)
        except NotFoundError:
            if did.revision is None and os.path.lexists(did.name):
                return resolve_id(DatasetId("path", path=did.name))
            raise
        return check_bundled(entry)
    from hades import hub

    return hub.pull(did, force=force, progress=progress)


def open_dataset(identifier: str) -> "Dataset":
    """Resolve an identifier and load the dataset it names (fully validated)."""
    from hades.dataset import Dataset
    from hades.store import POLICY_FILE

    path = resolve(identifier)
    if path.is_dir() and (path / POLICY_FILE).is_file() and not (path / DATASET_FILE).is_file():
        raise FormatError(f"{identifier} is a trained policy, not a dataset")
    return Dataset.load(path)
