"""Publish a dataset into a catalogue: the one way an entry enters it.

:func:`publish` takes a finished distillation run, a dataset (any identifier) or a result pickle
of the original code, measures it under the standard protocol (and on other architectures),
writes the entry's folder and adds it to ``index.json``. Published versions are immutable.

Nothing half-done is ever visible: the folder is written under a staging name inside the
catalogue and renamed into place, and the index is rewritten atomically afterwards, both under a
lock. A publish killed between the two leaves a folder the index does not list; the next publish
(of any entry) removes such debris, and the staging folders of dead processes, first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hades.dataset import Dataset
from hades.debris import alive
from hades.errors import FormatError, SpecError
from hades.evaluate import EvalProtocol
from hades.files import (
    COMMANDS_CSV, DATASET_FILE, FITNESS_CSV, FITNESS_PLOT, LEGACY_VALIDATION_CSV, STATES_PLOT, VALIDATION_CSV,
)
from hades.formats import atomic_write_bytes
from hades.ids import check_part, format_catalogue_name, split_catalogue_name
from hades.measure import TRANSFER_ARCHS, is_measured, measure, measure_steps, paper_comparison

# Files of a run or dataset folder that travel with the entry (when present and pictures are kept).
EXTRA_FILES = (FITNESS_CSV, FITNESS_PLOT, STATES_PLOT, VALIDATION_CSV, COMMANDS_CSV)
PICTURES = (FITNESS_PLOT, STATES_PLOT)
STAGING_PREFIX = ".publish-"


class PublishError(SpecError):
    """The entry cannot be published as asked (exists already, bad source, bad name)."""


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish` wrote: the entry's id, its folder and what it measured."""

    id: str
    name: str
    version: str
    sha256: str
    folder: Path
    evaluation: dict
    dataset: Dataset

    @property
    def architectures(self) -> list[dict]:
        return list(self.evaluation.get("architectures") or [])


Progress = Callable[[str, int, int], None]


def publish(source: str | Path, name: str, version: str, *, namespace: str | None = None,
            arch: str | None = None, freeze_stats: bool = False, seeds: int = 8,
            protocol: EvalProtocol | None = None, transfer: tuple[str, ...] | None = TRANSFER_ARCHS,
            catalogue: str | Path | None = None, description: str | None = None,
            pictures: bool = True, parquet: bool = True, progress: Progress | None = None,
            allow_unmeasured: bool = False) -> PublishResult:
    """Measure ``source`` and add it to the catalogue as ``[namespace/]name@version``.

    ``arch`` gives the card another recipe architecture (the pairs stay as evolved);
    ``freeze_stats`` turns running normalisation into constant statistics measured from the
    dataset's own policies. ``transfer`` lists the architectures of the transfer table (None or
    empty: no table). ``pictures``/``parquet``: ship the run's pictures and the parquet mirror
    (a converted entry can leave them out and render pictures on demand). ``allow_unmeasured``: an
    image dataset whose images this machine lacks is published with a card saying it was not measured.
    """
    from hades.policy import parse_arch

    full = _check_name(name, namespace)
    _check_version(version)
    if seeds < 1:
        raise PublishError(f"publishing needs at least 1 evaluation seed, got {seeds}")
    archs = [parse_arch(spec) for spec in (transfer or ())]
    recipe_arch = parse_arch(arch) if arch else None
    folder = _catalogue_folder(catalogue)
    _check_unpublished(folder, full, version)  # early, so no one measures for nothing; again under the lock
    dataset, extras = load_source(source)
    notify = progress or (lambda stage, done, total: None)
    done = 0
    if recipe_arch is not None:
        dataset = _with_recipe_arch(dataset, recipe_arch)
    total = int(freeze_stats) + measure_steps(dataset, archs)
    if freeze_stats:
        from hades.trainfrom import freeze_normalization

        notify("measuring constant statistics", done, total)
        dataset = freeze_normalization(dataset)
        done += 1
    evaluation = measure(dataset, seeds, protocol, archs, notify, done, total, allow_unmeasured=allow_unmeasured)
    info = {**dataset.derived_info(), "name": full, "catalogue_name": full, "evaluation": evaluation}
    if FITNESS_CSV in extras:  # a run folder: what it cost, from its own records
        from hades.cost import run_cost

        cost = run_cost(extras[FITNESS_CSV], extras.get(VALIDATION_CSV), dataset.info.get("method"))
        if cost is not None:
            info["cost"] = cost
    if description:
        info["description"] = description
    comparison = paper_comparison(dataset, evaluation)
    if comparison is not None:
        info["paper_comparison"] = comparison
    dataset = dataset.replace(info=info)
    keep = [name for name in extras if pictures or name not in PICTURES]
    folder.mkdir(parents=True, exist_ok=True)
    with _index_lock(folder):
        _check_unpublished(folder, full, version)
        entry_folder = _write_entry(folder, full, version, dataset, {name: extras[name] for name in keep}, parquet)
        sha256 = Dataset.load(entry_folder).sha256
        _add_to_index(folder, _index_row(full, version, sha256, dataset, evaluation))
    notify("published", total, total)
    return PublishResult(f"{full}@{version}", full, version, sha256, entry_folder, evaluation, dataset)


# -- sources ---------------------------------------------------------------------------------------
def load_source(source: str | Path) -> tuple[Dataset, dict[str, Path]]:
    """The dataset ``source`` names and the extra files (fitness.csv, pictures, ...) beside it.

    A result pickle (``.pkl``) is converted in memory; a run folder must hold the run's outputs.
    """
    from hades.checkpoint import checkpoint_file

    path = Path(str(source)).expanduser()
    if path.suffix == ".pkl":
        from hades.convert import convert_pickle
        from hades.paths import check_input

        check_input(path, "result file")

        return convert_pickle(path).dataset, {}
    if path.is_dir() and not (path / DATASET_FILE).exists():
        if checkpoint_file(path).exists():
            raise PublishError(f"{source} is a distillation run without outputs yet: finish the run first")
        raise PublishError(f"{source} is not a dataset folder (no {DATASET_FILE}) nor a finished run")
    from hades.registry import open_dataset

    try:
        dataset = open_dataset(str(source))
    except FormatError as exc:
        raise type(exc)(f"{source} is not a dataset: {exc}") from None
    extras = {}
    if path.is_dir():
        extras = {name: path / name for name in EXTRA_FILES if (path / name).is_file()}
        if VALIDATION_CSV not in extras and (path / LEGACY_VALIDATION_CSV).is_file():
            extras[VALIDATION_CSV] = path / LEGACY_VALIDATION_CSV  # an older run's scores, under today's name
    return dataset, extras


def _with_recipe_arch(dataset: Dataset, arch) -> Dataset:
    evolved_for = dataset.recipe
    info = dataset.derived_info()
    info["recipe"] = dataclasses.replace(evolved_for, arch=arch).to_dict()
    info["recipe_changed"] = {"evolved_for": evolved_for.to_dict(), "from_sha256": dataset.sha256}
    return dataset.replace(info=info)


# -- the catalogue ---------------------------------------------------------------------------------
def _check_name(name: str, namespace: str | None) -> str:
    if not isinstance(name, str) or "/" in name:
        raise PublishError(f"bad entry name {name!r}: give the namespace separately, the name itself has no '/'")
    try:
        return format_catalogue_name(name, namespace)
    except SpecError as exc:
        raise PublishError(str(exc)) from None


def _check_version(version: str) -> None:
    try:
        check_part(version, "version", version)
    except SpecError as exc:
        raise PublishError(str(exc)) from None


def _catalogue_folder(catalogue: str | Path | None) -> Path:
    if catalogue is None:
        from hades.registry import catalogue_dir

        catalogue = catalogue_dir()
    from hades.paths import check_output_folder

    return check_output_folder(Path(catalogue).expanduser(), "catalogue")  # created when the entry is written


class _index_lock:
    """One publisher at a time per catalogue; the lock file lives outside the catalogue (it ships in wheels)."""

    def __init__(self, folder: Path):
        from filelock import FileLock

        digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
        self._lock = FileLock(os.path.join(tempfile.gettempdir(), f"hades-catalogue-{digest}.lock"))
        self._folder = folder

    def __enter__(self):
        self._lock.acquire()
        try:
            clean_debris(self._folder)
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc):
        self._lock.release()


def _read_index(folder: Path) -> list[dict]:
    from hades.registry import INDEX_FILE, load_catalogue

    if not (folder / INDEX_FILE).exists():
        return []
    load_catalogue(folder)  # a broken index is refused before it is rewritten
    return json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))


def clean_debris(folder: Path) -> list[Path]:
    """Remove what killed publishes left: staging folders of dead processes, entry folders no index lists.

    Call with the catalogue's lock held. Returns what was removed.
    """
    removed = []
    for item in folder.glob(f"{STAGING_PREFIX}*"):
        pid = item.name[len(STAGING_PREFIX):].split("-")[0]
        if not pid.isdigit() or not alive(int(pid)):
            shutil.rmtree(item, ignore_errors=True)
            removed.append(item)
    listed = {Path(row["path"]) for row in _read_index(folder)}
    for marker in folder.glob("**/.published"):
        entry = marker.parent
        if entry.relative_to(folder) not in listed:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def add_hub_filters(entry: str | Path) -> bool:
    """Give the card of a published entry (a folder) the Hub filter keys its dataset calls for
    (:meth:`hades.dataset.Dataset.hub_filters`), for entries published before cards had them.
    Only the front matter's top level changes; the ``hades`` section and the text stay as they are.
    Returns whether the card changed."""
    from huggingface_hub import DatasetCard

    from hades.files import CARD_FILE

    entry = Path(entry)
    dataset = Dataset.load(entry)
    card = DatasetCard.load(entry / CARD_FILE)
    wanted = dataset.hub_filters()
    if all(getattr(card.data, key, None) == value for key, value in wanted.items()):
        return False
    for key, value in wanted.items():
        setattr(card.data, key, value)
    atomic_write_bytes(entry / CARD_FILE, str(card).encode("utf-8"))
    return True


def _check_unpublished(folder: Path, full: str, version: str) -> None:
    for row in _read_index(folder):
        if row["name"].lower() == full.lower() and row["version"] == version:
            raise PublishError(f"{full}@{version} is already published; published versions are immutable, "
                               "pick another version")
    if (folder / _entry_path(full, version)).exists():
        raise PublishError(f"{folder / _entry_path(full, version)} exists but the index does not list it; "
                           "move it away or pick another version")


def _entry_path(full: str, version: str) -> Path:
    namespace, name = split_catalogue_name(full)
    return Path(namespace, name, version) if namespace else Path(name, version)


def _write_entry(folder: Path, full: str, version: str, dataset: Dataset, extras: dict[str, Path],
                 parquet: bool) -> Path:
    target = folder / _entry_path(full, version)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=folder))
    try:
        staged = dataset.save(staging / "entry", parquet=parquet, extra_files=extras)
        # Marks a folder that publish wrote: one the index does not list is debris of a killed publish.
        (staged / ".published").write_text(f"{full}@{version}\n", encoding="utf-8")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _index_row(full: str, version: str, sha256: str, dataset: Dataset, evaluation: dict) -> dict:
    method = dataset.info.get("method") if isinstance(dataset.info.get("method"), dict) else {}
    provenance = dataset.info.get("provenance") if isinstance(dataset.info.get("provenance"), dict) else {}
    converted = provenance.get("converted_by") == "hades convert"
    source = (f"{provenance.get('source_repository')}: {method.get('run') or provenance.get('source')}"
              if converted else "hades distill")
    row = {
        "name": full, "version": version, "sha256": sha256, "env": dataset.env, "pairs": dataset.pairs,
        "return": _index_score(evaluation), "license": dataset.info.get("license", "apache-2.0"),
        "path": _entry_path(full, version).as_posix(), "source": source,
    }
    if method.get("name"):
        row["method"] = method["name"]
    return row


def _index_score(evaluation: dict) -> dict | None:
    """The index's one figure: the mean return, or an image dataset's test accuracy (null when unmeasured)."""
    if not is_measured(evaluation):
        return None
    protocol = evaluation["protocol"]
    if evaluation.get("metric") == "test_accuracy":
        from hades.registry import protocol_text

        return {"mean": evaluation["mean"], "std": evaluation["std"], "metric": "test_accuracy",
                "protocol": protocol_text(protocol)}
    return {"mean": evaluation["mean"], "std": evaluation["std"],
            "protocol": f"{len(evaluation['returns'])} inits x {protocol['num_envs']} envs x "
                        f"{protocol['num_steps']} steps, {'greedy' if protocol['greedy'] else 'sampled'} actions"}


def _add_to_index(folder: Path, row: dict) -> None:
    from hades.registry import INDEX_FILE

    index = [entry for entry in _read_index(folder) if (entry["name"], entry["version"]) != (row["name"], row["version"])]
    index.append(row)
    index.sort(key=lambda entry: (entry["name"], entry["version"]))
    atomic_write_bytes(folder / INDEX_FILE, (json.dumps(index, indent=1) + "\n").encode())
