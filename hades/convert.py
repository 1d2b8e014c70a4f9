"""Import the result pickles of the original HaDES code (``data_final.pkl``) into format v1.

The files are read without running anything from them (:mod:`hades.resultpickle`). The distilled
dataset is the ES mean. Brax runs evolved ``{"states", "actions"}`` through a pytree reshaper,
which orders dict keys alphabetically: the flat mean is actions ``[D, act_dim]`` followed by
states ``[D, obs_dim]``. MinAtar runs evolved states only; their labels are fixed,
``D // n_actions`` per action in order, and a state left without a label is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hades.debris import scratch_dir
from hades.dataset import Dataset
from hades.envs import EnvSpec, get_env_spec
from hades.errors import FormatError, SpecError, UnknownEnvError
from hades.files import CARD_FILE, CONVERTED_FITNESS_COLUMNS, DATASET_FILE, FITNESS_CSV
from hades.learn import Recipe
from hades.policy import PolicySpec
from hades.resultpickle import PickledRecord, load_result_pickle

SOURCE_REPOSITORY = "FLAIROx/behaviour-distillation"
LICENSE = "apache-2.0"
# Every converted dataset carries the paper's citation and the license notice of the original files.
CITATION = """@inproceedings{lupu2024behaviour,
  title     = {Behaviour Distillation},
  author    = {Lupu, Andrei and Lu, Chris and Liesen, Jarek and Lange, Robert Tjarko and Foerster, Jakob},
  booktitle = {The Twelfth International Conference on Learning Representations (ICLR)},
  year      = {2024},
  eprint    = {2406.15042},
  archivePrefix = {arXiv}
}"""
LICENSE_NOTICE = (
    "The original result file is part of FLAIROx/behaviour-distillation, copyright the authors of "
    "Behaviour Distillation (Andrei Lupu, Chris Lu, Jarek Liesen, Robert Tjarko Lange, Jakob Foerster), "
    "licensed under the Apache License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0). "
    "This dataset is a derivative work: the same numbers in another file format, with this card added; "
    "it is distributed under the same license, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND."
)
_STRATEGY_NAMES = {"open_es": "OpenES", "snes": "SNES", "xnes": "xNES", "sep_cma_es": "Sep_CMA_ES",
                   "cma_es": "CMA_ES", "pgpe": "PGPE", "ars": "ARS", "simple_es": "SimpleES"}


# -- interpretation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Conversion:
    """A converted run: the dataset, the run's name, and its fitness curve (mean, max per generation)."""

    dataset: Dataset
    run_name: str
    source_sha256: str
    fitness_curve: np.ndarray | None = None

    def fitness_csv(self) -> str:
        lines = [",".join(CONVERTED_FITNESS_COLUMNS)]
        for generation, (mean, best) in enumerate(self.fitness_curve if self.fitness_curve is not None else []):
            lines.append(f"{generation},{mean:.9g},{best:.9g}")
        return "\n".join(lines) + "\n"


def convert_pickle(path: str | Path) -> Conversion:
    """Read a ``data_final.pkl`` of the original code as a :class:`~hades.Dataset` (nothing is written)."""
    from hades.paths import check_input
    from hades.provenance import provenance

    path = check_input(Path(path), "result file")
    content, source_sha = load_result_pickle(path)
    source = path.name
    if not isinstance(content, dict) or "state" not in content or "config" not in content:
        found = ", ".join(map(str, content)) if isinstance(content, dict) else type(content).__name__
        raise FormatError(f"{source} is not a HaDES result pickle: expected a dict with 'state' and 'config', found {found}")
    config, es_config = (value.fields if isinstance(value, PickledRecord) else value
                         for value in (content["config"], content.get("es_config") or {}))
    state = content["state"]
    if not isinstance(config, dict) or not isinstance(es_config, dict):
        raise FormatError(f"{source}: 'config' and 'es_config' must be dicts")
    if not isinstance(state, PickledRecord) or not isinstance(state.fields.get("mean"), np.ndarray):
        raise FormatError(f"{source}: 'state' is not an evosax strategy state with a 'mean' array")
    if "DATASET" in config and "ENV_NAME" not in config:  # a supervised run of distill_dataset.py: images
        from hades.convert_images import convert_image_run

        return convert_image_run(source, content, config, es_config, state, source_sha)
    if not isinstance(config.get("ENV_NAME"), str):
        raise FormatError(f"{source}: its config names no environment (ENV_NAME)")
    try:
        spec = get_env_spec(config["ENV_NAME"])
    except UnknownEnvError as exc:
        raise UnknownEnvError(f"{source}: {exc}") from None
    mean = state.fields["mean"]
    if mean.dtype.kind != "f" or mean.ndim != 1:
        raise FormatError(f"{source}: the ES mean is {mean.dtype} of shape {list(mean.shape)}, expected a flat float vector")
    pairs = _dataset_size(source, spec, mean.size, es_config)
    if spec.discrete:
        states, actions = _minatar_pairs(source, spec, mean, pairs, es_config)
    else:
        states, actions = _brax_pairs(spec, mean, pairs)
    normalization, obs_mean, obs_var = _normalization(source, config)
    method = _method(content, config, es_config, state)
    seed = _int_or_none(config.get("SEED"))
    run_name = f"{spec.name}-D{pairs}" + ("-hades-f" if method["name"] == "hades-f" else "") + (
        f"-seed{seed}" if seed is not None else "")
    info = {
        "backend": spec.default_backend,
        "name": f"{spec.name} {pairs} pairs ({method['name']}, ICLR 2024 result, seed {seed})",
        "description": (
            f"Converted by `hades convert` from the result file of run `{method['run'] or source}` published "
            f"by the authors of Behaviour Distillation (Lupu et al., ICLR 2024) in {SOURCE_REPOSITORY} "
            "under the Apache-2.0 license."
        ),
        "license": LICENSE,
        "license_notice": LICENSE_NOTICE,
        "citation": CITATION,
        "original": {"repository": SOURCE_REPOSITORY, "path": method["run"] and f"{method['run']}/data_final.pkl",
                     "sha256": source_sha},
        "method": method,
        "recipe": _recipe(source, spec, config).to_dict(),
        "provenance": provenance(seed, source=source, converted_by="hades convert", sha256_of_source=source_sha,
                                 source_repository=SOURCE_REPOSITORY),
    }
    try:
        dataset = Dataset(states, actions, spec.name, normalization, obs_mean, obs_var, info)
    except FormatError as exc:
        raise type(exc)(f"{source}: {exc}") from None
    return Conversion(dataset, run_name, source_sha, _fitness_curve(content))


def _dataset_size(source: str, spec: EnvSpec, size: int, es_config: dict) -> int:
    per_pair = spec.obs_dim + (0 if spec.discrete else spec.action_dim)
    pairs = _int_or_none(es_config.get("dataset_size"))
    if pairs is None:
        pairs = size // per_pair
    if pairs < 1 or size != pairs * per_pair:
        layout = f"{spec.obs_dim}" if spec.discrete else f"{spec.action_dim} + {spec.obs_dim}"
        raise FormatError(
            f"{source}: the ES mean has {size} values, which is not {pairs or 'D'} pairs x ({layout}) for "
            f"{spec.name}; the run used a layout hades cannot read"
        )
    return pairs


def _brax_pairs(spec: EnvSpec, mean: np.ndarray, pairs: int) -> tuple[np.ndarray, np.ndarray]:
    split = pairs * spec.action_dim
    actions = mean[:split].reshape(pairs, spec.action_dim)
    states = mean[split:].reshape(pairs, spec.obs_dim)
    return states, actions


def _minatar_pairs(source: str, spec: EnvSpec, mean: np.ndarray, pairs: int,
                   es_config: dict) -> tuple[np.ndarray, np.ndarray]:
    if es_config.get("learn_labels"):
        raise FormatError(f"{source}: the run learned its labels (learn_labels), which hades cannot read yet")
    per_action = pairs // spec.action_dim
    if per_action < 1:
        raise FormatError(f"{source}: {pairs} states are too few to give each of {spec.action_dim} actions a label")
    labels = np.repeat(np.arange(spec.action_dim, dtype=np.int32), per_action)
    states = mean.reshape(pairs, spec.obs_dim)[: labels.size]
    return states, labels


def _normalization(source: str, config: dict) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    if config.get("CONST_NORMALIZE_OBS"):
        stats = config.get("OBS_MEAN"), config.get("OBS_VAR")
        if not all(isinstance(value, np.ndarray) for value in stats):
            raise FormatError(f"{source}: CONST_NORMALIZE_OBS is set but OBS_MEAN/OBS_VAR are missing")
        return "constant", stats[0].reshape(-1), stats[1].reshape(-1)
    if config.get("NORMALIZE_OBS"):
        return "running", None, None
    return "none", None, None


def _recipe(source: str, spec: EnvSpec, config: dict) -> Recipe:
    try:
        width = int(config["WIDTH"])
        depth = int(config.get("FFWD_LAYERS", 2))
        arch = PolicySpec((width,) * depth, str(config["ACTIVATION"]), "orthogonal")
        if spec.discrete:
            if config.get("NET", "mlp") != "mlp":
                raise ValueError(f"network {config['NET']!r} is not an MLP")
            return Recipe(arch, "cross_entropy", float(config.get("LR", 0.03)), int(config["UPDATE_EPOCHS"]), None)
        clip = config.get("MAX_GRAD_NORM")
        return Recipe(arch, "gaussian_nll", float(config["LR"]), int(config["UPDATE_EPOCHS"]),
                      float(clip) if clip is not None else None, 1e-5)
    except KeyError as exc:
        raise FormatError(f"{source}: its config has no {exc.args[0]}, needed for the training recipe") from None
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{source}: its config gives a training recipe hades cannot express ({exc})") from None


def _method(content: dict, config: dict, es_config: dict, state: PickledRecord) -> dict:
    overfit = bool(config.get("OVERFIT"))
    module = state.source_class.rsplit(".", 1)[0].rsplit(".", 1)[-1]
    strategy = es_config.get("strategy") or _STRATEGY_NAMES.get(module, module)
    curve = _fitness_curve(content)
    fitness = content.get("fitness")
    final = float(curve[-1, 0]) if curve is not None else (
        float(np.mean(fitness)) if isinstance(fitness, np.ndarray) and fitness.size else None)
    folder = str(config.get("FOLDER") or "")
    run = folder[folder.find("results/"):].rstrip("/").replace("//", "/") if "results/" in folder else None
    run_config = {key: _jsonable(value) for key, value in config.items()
                  if key not in ("OBS_MEAN", "OBS_VAR", "FOLDER")}
    method = {
        "name": "hades-f" if overfit else "hades-r",
        "strategy": str(strategy),
        "source": f"{SOURCE_REPOSITORY} (ICLR 2024)",
        "run": run,
        "generations": _int_or_none(state.fields.get("gen_counter")),
        "final_fitness": final,
        "final_fitness_note": "population mean fitness of the last generation, as the run recorded it",
        "final_max_fitness": float(curve[-1, 1]) if curve is not None else None,
        "best_fitness": _float_or_none(state.fields.get("best_fitness")),
        "es_config": {key: _jsonable(value) for key, value in es_config.items()},
        "config": run_config,
    }
    if overfit:
        method["overfit_seed"] = _int_or_none(config.get("OVERFIT_SEED"))
    return method


def _fitness_curve(content: dict) -> np.ndarray | None:
    """[generations, 2]: population mean and max fitness per generation, when the run kept them."""
    try:
        mean = np.asarray(content.get("fitness_over_gen"), dtype=np.float64).reshape(-1)
        best = np.asarray(content.get("max_fitness_over_gen"), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    if mean.size == 0 or mean.shape != best.shape or not np.isfinite(mean).all():
        return None
    return np.stack([mean, best], axis=1)


def _jsonable(value: Any) -> Any:
    """Config values as JSON (the card's canonical JSON refuses NaN and non-JSON types)."""
    if isinstance(value, PickledRecord):
        value = value.fields
    if isinstance(value, np.ndarray):
        if value.size > 16:
            return f"array {list(value.shape)} {value.dtype}"
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        result = None if value is None else float(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None
    return result if result is not None and math.isfinite(result) else None


# -- writing -------------------------------------------------------------------------------------------
def convert(path: str | Path, out: str | Path | None = None) -> tuple[Conversion, Path]:
    """Convert a result pickle and save it as a dataset folder (default: ``./<run name>``), atomically."""
    conversion = convert_pickle(path)
    target = Path(out) if out is not None else Path.cwd() / conversion.run_name
    _check_target(target)
    with scratch_dir("hades-convert-") as scratch:
        extra = {}
        if conversion.fitness_curve is not None:
            curve = Path(scratch) / FITNESS_CSV
            curve.write_text(conversion.fitness_csv(), encoding="utf-8")
            extra[FITNESS_CSV] = curve
        conversion.dataset.save(target, extra_files=extra)
    return conversion, target


def _check_target(target: Path) -> None:
    """Saving replaces the target folder, so only an empty folder or an earlier dataset may be replaced."""
    if target.suffix == ".safetensors":
        raise SpecError(f"--out must be a folder, not a .safetensors file: {target}")
    if not target.exists():
        return
    if not target.is_dir():
        raise SpecError(f"{target} exists and is not a folder; choose another --out")
    entries = {entry.name for entry in target.iterdir()}
    if entries and not {DATASET_FILE, CARD_FILE} <= entries:
        raise SpecError(f"{target} exists and is not a hades dataset folder; choose another --out (it would be replaced)")
