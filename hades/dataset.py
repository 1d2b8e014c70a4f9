"""``hades.Dataset``: a distilled dataset in format v1 (safetensors + a Hugging Face card).

A dataset is a folder holding ``dataset.safetensors`` and ``README.md`` (the card), or a bare
``.safetensors`` file. The safetensors metadata holds one key, ``hades``, whose value is canonical
JSON, so saving the same dataset always produces the same bytes and the same sha256.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hades.envs import NORMALIZATIONS, EnvSpec, env_library_versions, get_env_spec
from hades.errors import FormatError, ShapeError
from hades.files import CARD_FILE, DATASET_FILE, FITNESS_PLOT, PARQUET_FILE, STATES_PLOT
from hades.formats import (
    FORMAT_VERSION, atomic_dir, atomic_write_bytes, check_card_matches, read_bytes, read_card, render_card,
    tensors_from_bytes, tensors_to_bytes, verify_checksum,
)
from hades.metadata import check_env, check_fields, check_pairs


@dataclass(frozen=True, eq=False)
class Dataset:
    """States and actions (or labels), their normalisation, and what the card says about them.

    ``info`` holds the free-form card sections: ``method``, ``recipe``, ``evaluation``,
    ``provenance``, ``license``, ``name``, ``description``, ``backend``.
    """

    states: np.ndarray
    actions: np.ndarray
    env: str
    normalization: str = "none"
    obs_mean: np.ndarray | None = None
    obs_var: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        spec = get_env_spec(self.env)
        object.__setattr__(self, "env", spec.name)
        states = np.asarray(self.states)
        actions = np.asarray(self.actions)
        _check_dtype("states", states, floating=True)
        _check_dtype("actions", actions, floating=not spec.discrete)
        states = states.astype(np.float32)
        actions = actions.astype(np.int32 if spec.discrete else np.float32)
        if states.ndim != 2 or states.shape[1] != spec.obs_dim or states.shape[0] < 1:
            raise ShapeError(f"states have shape {list(states.shape)}, but {spec.name} needs [D, {spec.obs_dim}] with D >= 1")
        pairs = states.shape[0]
        if spec.discrete:
            if actions.shape != (pairs,):
                raise ShapeError(f"labels have shape {list(actions.shape)}, but {spec.name} needs [{pairs}] (one per state)")
            if actions.min() < 0 or actions.max() >= spec.action_dim:
                raise ShapeError(f"labels must lie in 0..{spec.action_dim - 1} for {spec.name}, found {int(actions.min())}..{int(actions.max())}")
        elif actions.shape != (pairs, spec.action_dim):
            raise ShapeError(f"actions have shape {list(actions.shape)}, but {spec.name} needs [{pairs}, {spec.action_dim}]")
        _check_finite("states", states)
        _check_finite("actions", actions)
        if self.normalization not in NORMALIZATIONS:
            raise FormatError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {self.normalization!r}")
        stats = {}
        for name in ("obs_mean", "obs_var"):
            value = getattr(self, name)
            if value is None:
                if self.normalization == "constant":
                    raise FormatError(f"constant normalisation needs {name}, which is missing")
                continue
            value = np.asarray(value, dtype=np.float32)
            if value.shape != (spec.obs_dim,):
                raise ShapeError(f"{name} has shape {list(value.shape)}, but {spec.name} needs [{spec.obs_dim}]")
            _check_finite(name, value)
            stats[name] = value
        if "obs_var" in stats and (stats["obs_var"] < 0).any():
            raise FormatError("obs_var has negative entries; a variance cannot be negative")
        object.__setattr__(self, "states", states)
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "obs_mean", stats.get("obs_mean"))
        object.__setattr__(self, "obs_var", stats.get("obs_var"))
        object.__setattr__(self, "info", copy.deepcopy(dict(self.info)))

    # -- derived -------------------------------------------------------------------------------
    @property
    def env_spec(self) -> EnvSpec:
        return get_env_spec(self.env)

    @property
    def pairs(self) -> int:
        return int(self.states.shape[0])

    @property
    def backend(self) -> str:
        return self.info.get("backend") or self.env_spec.default_backend

    @property
    def recipe(self):
        """The inner-loop recipe the dataset was made for (the default of ``train-from``)."""
        from hades.learn import Recipe, paper_recipe

        if self.info.get("recipe"):
            return Recipe.from_dict(self.info["recipe"])
        return paper_recipe(self.env, self.env_spec.discrete)

    def normalization_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, var) for constant normalisation; zeros and ones otherwise."""
        spec = self.env_spec
        mean = self.obs_mean if self.obs_mean is not None else np.zeros(spec.obs_dim, np.float32)
        var = self.obs_var if self.obs_var is not None else np.ones(spec.obs_dim, np.float32)
        return mean, var

    def derived_info(self) -> dict[str, Any]:
        """The card info a dataset made from this one inherits: all but its own evaluation and names."""
        return {key: value for key, value in self.info.items() if key not in ("evaluation", "name", "catalogue_name")}

    def replace(self, **changes) -> "Dataset":
        fields = {name: getattr(self, name) for name in
                  ("states", "actions", "env", "normalization", "obs_mean", "obs_var", "info")}
        fields.update(changes)
        return Dataset(**fields)

    # -- serialisation -----------------------------------------------------------------------------
    def metadata(self) -> dict:
        """Everything the card and the safetensors header say, except the checksum."""
        spec = self.env_spec
        env = {
            "id": spec.name, "library": spec.library, "backend": self.backend,
            "obs_dim": spec.obs_dim, "obs_shape": list(spec.obs_shape), "action_dim": spec.action_dim,
            "action_type": spec.action_type, "episode_length": spec.episode_length,
        }
        env["versions"] = self.info.get("env_versions") or env_library_versions(spec)
        meta = {"format_version": FORMAT_VERSION, "kind": "dataset", "env": env, "pairs": self.pairs,
                "normalization": self.normalization}
        for key, value in sorted(self.info.items()):
            if key not in ("backend", "env_versions"):
                meta[key] = value
        meta["recipe"] = self.recipe.to_dict()
        return meta

    def to_bytes(self) -> bytes:
        tensors = {"states": self.states, "actions": self.actions}
        if self.obs_mean is not None:
            tensors["obs_mean"] = self.obs_mean
        if self.obs_var is not None:
            tensors["obs_var"] = self.obs_var
        return tensors_to_bytes(tensors, self.metadata())

    @property
    def sha256(self) -> str:
        return verify_checksum(self.to_bytes(), None, "dataset")

    def save(self, path: str | Path, parquet: bool = False, extra_files: dict[str, Path] | None = None) -> Path:
        """Write a folder (or a bare file when ``path`` ends in ``.safetensors``), atomically."""
        path = Path(path)
        data = self.to_bytes()
        if path.suffix == ".safetensors":
            atomic_write_bytes(path, data)
            return path
        with atomic_dir(path) as tmp:
            (tmp / DATASET_FILE).write_bytes(data)
            sha256 = verify_checksum(data, None, "dataset")
            images = [name for name in (STATES_PLOT, FITNESS_PLOT) if name in (extra_files or {})]
            (tmp / CARD_FILE).write_text(self.card(sha256, parquet=parquet, images=images), encoding="utf-8")
            if parquet:
                self.write_parquet(tmp / PARQUET_FILE)
            for name, source in (extra_files or {}).items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(Path(source).read_bytes())
        return path

    def card(self, sha256: str, parquet: bool = False, images: list[str] | None = None) -> str:
        meta = self.metadata()
        meta["sha256"] = sha256
        license_id = str(self.info.get("license", "apache-2.0"))
        tags = ["hades", "behaviour-distillation", "reinforcement-learning", self.env]
        card_data = {"license": license_id, "tags": tags, "pretty_name": self.info.get("name") or f"{self.env} {self.pairs} pairs",
                     **self.hub_filters(), "hades": meta}
        if parquet:
            card_data["configs"] = [{"config_name": "default", "data_files": [{"split": "train", "path": PARQUET_FILE}]}]
        return render_card("dataset", card_data, meta=meta, rows=self.preview_rows(), has_parquet=parquet,
                           images=images or [])

    def hub_filters(self) -> dict:
        """The card keys the Hub's dataset filters read: task and size categories, where the pairs come from."""
        return {"task_categories": task_categories(self.env_spec), "size_categories": [size_category(self.pairs)],
                "source_datasets": self.source_datasets()}

    def preview_rows(self, limit: int = 8) -> list[dict]:
        rows = []
        for index in range(min(limit, self.pairs)):
            action = self.actions[index]
            rows.append({
                "index": index,
                "state": ", ".join(f"{x:.3f}" for x in self.states[index][:6]) + (" ..." if self.states.shape[1] > 6 else ""),
                "action": str(int(action)) if np.ndim(action) == 0 else ", ".join(f"{x:.3f}" for x in action),
            })
        return rows

    def write_parquet(self, path: Path) -> None:
        import datasets

        path.parent.mkdir(parents=True, exist_ok=True)
        datasets.disable_progress_bars()
        self.to_hf().to_parquet(str(path))

    def source_datasets(self) -> list[str]:
        """The card's ``source_datasets``: ``original`` for pairs made here, the authors' repository for converted ones."""
        provenance = self.info.get("provenance") if isinstance(self.info.get("provenance"), dict) else {}
        repository = provenance.get("source_repository")
        if provenance.get("converted_by") == "hades convert" and repository:
            return [f"https://github.com/{repository}"]
        return ["original"]

    def hf_features(self):
        """The ``datasets.Features`` of :meth:`to_hf` and ``data/train.parquet``: float32 vectors of
        fixed length, a ``ClassLabel`` for discrete actions, and the normalisation of every row."""
        import datasets

        spec = self.env_spec

        def vector(length: int):
            return datasets.Sequence(datasets.Value("float32"), length=length)

        if spec.discrete:
            from hades.render import MINATAR_ACTIONS

            names = MINATAR_ACTIONS.get(spec.name) or [str(index) for index in range(spec.action_dim)]
            action = datasets.ClassLabel(names=list(names))
        else:
            action = vector(spec.action_dim)
        return datasets.Features({
            "state": vector(spec.obs_dim), "action": action, "env": datasets.Value("string"),
            "normalization": datasets.Value("string"), "obs_mean": vector(spec.obs_dim), "obs_var": vector(spec.obs_dim),
        })

    def to_hf(self):
        """The pairs as a ``datasets.Dataset``, one row per pair.

        Columns: ``state`` and ``action`` (float32; discrete actions as a ``ClassLabel``), and with
        every row the ``env`` id, the ``normalization`` and, for constant normalisation, ``obs_mean``
        and ``obs_var`` (null otherwise), so a user of ``datasets.load_dataset`` can un-normalise:
        ``raw = state * sqrt(obs_var + 1e-8) + obs_mean``.
        """
        import datasets

        constant = self.normalization == "constant"
        rows = self.pairs
        columns = {
            "state": self.states.tolist(), "action": self.actions.tolist(), "env": [self.env] * rows,
            "normalization": [self.normalization] * rows,
            "obs_mean": [self.obs_mean.tolist() if constant else None] * rows,
            "obs_var": [self.obs_var.tolist() if constant else None] * rows,
        }
        name = self.info.get("name") or f"{self.env} {self.pairs} pairs"
        info = datasets.DatasetInfo(
            description=f"{name}: {self.pairs} behaviour-distillation pairs for {self.env} ({self.normalization} normalisation)",
            license=str(self.info.get("license", "apache-2.0")), features=self.hf_features())
        return datasets.Dataset.from_dict(columns, info=info)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "dataset", info: dict | None = None) -> "Dataset":
        return cls._from_parts(*tensors_from_bytes(data, source), source, info)

    @classmethod
    def _from_parts(cls, tensors: dict, meta: dict, source: str, info: dict | None = None) -> "Dataset":
        """The dataset parsed tensors and metadata describe, every field checked."""
        if meta.get("kind", "dataset") != "dataset":
            raise FormatError(f"{source} holds a {meta.get('kind')!r}, not a dataset")
        for name in ("states", "actions"):
            if name not in tensors:
                raise FormatError(f"{source} has no '{name}' tensor; it is not a hades dataset")
        for name, tensor in tensors.items():
            if tensor.dtype.kind == "f" and tensor.dtype != np.float32:
                raise FormatError(f"{source}: {name} is {tensor.dtype}, but format v1 stores float32; re-create the file with hades")
        check_env(meta, source)
        check_fields(meta, source)
        env = meta["env"]
        card_info = {key: value for key, value in meta.items()
                     if key not in ("format_version", "kind", "env", "pairs", "normalization", "sha256")}
        card_info["backend"] = env.get("backend")
        card_info["env_versions"] = env.get("versions")
        card_info.update(info or {})
        try:
            dataset = cls(tensors["states"], tensors["actions"], env["id"], meta.get("normalization", "none"),
                          tensors.get("obs_mean"), tensors.get("obs_var"), card_info)
        except FormatError as exc:
            raise type(exc)(f"{source}: {exc}") from None
        check_pairs(meta, dataset.pairs, source)
        return dataset

    @classmethod
    def load(cls, path: str | Path, expected_sha256: str | None = None) -> "Dataset":
        """Load and validate a dataset folder or bare file; a folder is checked against its card's sha256."""
        path = Path(path)
        if path.is_dir():
            data_path = path / DATASET_FILE
            if not data_path.is_file():
                raise FormatError(f"{path} holds no {DATASET_FILE}; it is not a hades dataset folder")
            section, _ = read_card(path)
            expected = expected_sha256 or section.get("sha256")
            data = read_bytes(data_path)
            verify_checksum(data, expected, str(data_path))
            tensors, meta = tensors_from_bytes(data, str(data_path))
            dataset = cls._from_parts(tensors, meta, str(data_path))
            check_card_matches(section, meta, str(path / CARD_FILE))
            return dataset
        data = read_bytes(path)
        verify_checksum(data, expected_sha256, str(path))
        return cls.from_bytes(data, str(path))


def task_categories(spec: EnvSpec) -> list[str]:
    """The Hub's task categories of a dataset for ``spec``: Brax bodies are robotics too."""
    categories = {"brax": ["reinforcement-learning", "robotics"], "images": ["image-classification"]}
    return categories.get(spec.library, ["reinforcement-learning"])


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` value for a dataset of ``rows`` rows."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return label
    return "n>1M"


def _check_dtype(name: str, array: np.ndarray, floating: bool) -> None:
    kind = array.dtype.kind
    if floating and kind != "f":
        raise FormatError(f"{name} must be floating point, got dtype {array.dtype}")
    if not floating and kind not in "iu":
        raise FormatError(f"{name} must be integer labels for a discrete-action env, got dtype {array.dtype}")


def _check_finite(name: str, array: np.ndarray) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise FormatError(f"{name} holds {bad} NaN or infinite value(s); the dataset is unusable")
