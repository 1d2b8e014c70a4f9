"""Import the result pickles of the original HaDES code (``data_final.pkl``) into format v1.

Those files hold whole evosax 0.1.4 strategy states saved with :mod:`pickle`, and plain unpickling
runs whatever a file names. :class:`ResultUnpickler` never imports anything: every global the file
references is looked up in a fixed allow-list of stand-ins (numpy array and dtype rebuilders, the
jax array rebuilder, inert records for evosax/flax classes, a few builtin containers), and any
other global is refused with a :class:`~hades.errors.FormatError` naming it. Arrays are rebuilt
from their raw bytes by :func:`numpy.frombuffer`, after checking dtype, shape and length, so no
numpy ``__setstate__`` ever sees data from the file.

The distilled dataset is the ES mean. Brax runs evolved ``{"states", "actions"}`` through a
pytree reshaper, which orders dict keys alphabetically: the flat mean is actions ``[D, act_dim]``
followed by states ``[D, obs_dim]``. MinAtar runs evolved states only; their labels are fixed,
``D // n_actions`` per action in order, and a state left without a label is dropped.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hades.dataset import Dataset
from hades.envs import EnvSpec, get_env_spec
from hades.errors import FormatError, HadesError, NotFoundError, SpecError, UnknownEnvError
from hades.files import CARD_FILE, CONVERTED_FITNESS_COLUMNS, DATASET_FILE, FITNESS_CSV
from hades.formats import sha256_bytes
from hades.learn import Recipe
from hades.policy import PolicySpec

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
# Array payloads may only be plain numbers: object arrays would let the file smuggle objects in.
_NUMERIC_KINDS = "biufc"
_RECORD_MODULES = ("evosax", "flax")
_CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
_STRATEGY_NAMES = {"open_es": "OpenES", "snes": "SNES", "xnes": "xNES", "sep_cma_es": "Sep_CMA_ES",
                   "cma_es": "CMA_ES", "pgpe": "PGPE", "ars": "ARS", "simple_es": "SimpleES"}


# -- stand-ins for the globals a result pickle may name -----------------------------------------------
class _Sealed(type):
    """Metaclass of the stand-in classes: the BUILD opcode can ``setattr`` on whatever the pickle names,
    so the classes it gets must refuse to be modified."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise FormatError(f"the pickle tries to set {name!r} on {cls.__name__}; refusing it")

    def __delattr__(cls, name: str) -> None:
        raise FormatError(f"the pickle tries to delete {name!r} from {cls.__name__}; refusing it")


class _StandIn:
    """A stand-in function, sealed like the classes (a plain function's attributes could be rebound)."""

    __slots__ = ("_function",)

    def __init__(self, function: Any) -> None:
        object.__setattr__(self, "_function", function)

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FormatError(f"the pickle tries to set {name!r} on a stand-in function; refusing it")


class PickledRecord(metaclass=_Sealed):
    """An instance of a class from the original code (an evosax state, a flax container), kept as data.

    Building one runs nothing: it only remembers the constructor arguments and the state the
    pickle gives it. :attr:`fields` is the attribute dict of a flax struct dataclass.
    """

    source_class = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "PickledRecord":
        record = object.__new__(cls)
        record.args, record.kwargs, record.state = args, kwargs, None
        return record

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    @property
    def fields(self) -> dict:
        if isinstance(self.state, dict):
            return self.state
        if isinstance(self.state, tuple) and self.state and isinstance(self.state[-1], dict):
            return self.state[-1]  # (dict state, slot state) from classes with __slots__
        if len(self.args) == 1 and isinstance(self.args[0], dict):
            return self.args[0]  # FrozenDict-like: rebuilt from one dict
        return dict(self.kwargs)

    def __repr__(self) -> str:
        return f"<{self.source_class} record: {', '.join(map(str, self.fields)) or 'no fields'}>"


class _DtypeStub(metaclass=_Sealed):
    """``numpy.dtype(...)`` as named in a pickle: numeric type codes only, byte order from its state."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = False) -> None:
        if not isinstance(spec, str):
            raise FormatError(f"an array dtype in the pickle is {type(spec).__name__}, not a type code")
        try:
            dtype = np.dtype(spec)
        except TypeError:
            raise FormatError(f"unknown array dtype {spec!r} in the pickle") from None
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise FormatError(f"array dtype {spec!r} in the pickle is not a plain number type; refusing it")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 5 or any(item is not None for item in state[2:5]):
            raise FormatError("an array dtype in the pickle has fields or sub-arrays; only plain numbers are read")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])
        elif state[1] not in ("|", "="):
            raise FormatError(f"an array dtype in the pickle has byte order {state[1]!r}")


class _ArrayStub(metaclass=_Sealed):
    """``numpy.ndarray`` as rebuilt by a pickle: filled from raw bytes once its state arrives."""

    def __init__(self, *args: Any) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        self.array = _array_from_state(state)


def _array_from_state(state: Any) -> np.ndarray:
    """Rebuild an array from ``ndarray.__reduce__``'s state, ``(version, shape, dtype, fortran, bytes)``."""
    if isinstance(state, tuple) and len(state) == 5:
        state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4:
        raise FormatError("an array in the pickle has a malformed state")
    shape, dtype, fortran, raw = state
    if not isinstance(dtype, _DtypeStub):
        raise FormatError("an array in the pickle has no plain number dtype")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise FormatError(f"an array in the pickle has the invalid shape {shape!r}")
    if not isinstance(raw, (bytes, bytearray)):
        raise FormatError("an array in the pickle stores its values as objects, not raw numbers; refusing it")
    expected = math.prod(shape) * dtype.dtype.itemsize
    if len(raw) != expected:
        raise FormatError(f"an array in the pickle of shape {list(shape)} holds {len(raw)} bytes, expected {expected}")
    flat = np.frombuffer(bytes(raw), dtype=dtype.dtype)
    array = flat.reshape(shape, order="F" if fortran else "C")
    return np.ascontiguousarray(array, dtype=dtype.dtype.newbyteorder("="))


def _reconstruct_ndarray(cls: Any, shape: Any, typecode: Any) -> _ArrayStub:
    """``numpy.core.multiarray._reconstruct``: an empty array of the plain ndarray class only."""
    if cls is not _ArrayStub:
        raise FormatError(f"the pickle rebuilds an array of class {getattr(cls, 'source_class', cls)!r}; only plain numpy arrays are read")
    return _ArrayStub()


def _numpy_scalar(dtype: Any, raw: Any = b"") -> Any:
    """``numpy.core.multiarray.scalar``: one number from its raw bytes."""
    if not isinstance(dtype, _DtypeStub) or not isinstance(raw, (bytes, bytearray)):
        raise FormatError("a numpy scalar in the pickle is not a plain number")
    if len(raw) != dtype.dtype.itemsize:
        raise FormatError("a numpy scalar in the pickle has the wrong number of bytes")
    return np.frombuffer(bytes(raw), dtype=dtype.dtype)[0].item()


def _reconstruct_jax_array(fun: Any, args: Any, arr_state: Any, aval_state: Any) -> np.ndarray:
    """``jax._src.array._reconstruct_array``: the numpy value of a pickled ``jax.Array``."""
    if fun is not _RECONSTRUCT_NDARRAY or not isinstance(args, tuple):
        raise FormatError("a jax array in the pickle is not rebuilt from a plain numpy array")
    stub = fun(*args)
    stub.__setstate__(arr_state)
    return stub.array


_RECONSTRUCT_NDARRAY = _StandIn(_reconstruct_ndarray)
_NUMPY_SCALAR = _StandIn(_numpy_scalar)
_FIXED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _ArrayStub,
    ("numpy", "dtype"): _DtypeStub,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT_NDARRAY,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT_NDARRAY,
    ("numpy.core.multiarray", "scalar"): _NUMPY_SCALAR,
    ("numpy._core.multiarray", "scalar"): _NUMPY_SCALAR,
    ("jax._src.array", "_reconstruct_array"): _StandIn(_reconstruct_jax_array),
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


def allowed_globals() -> list[str]:
    """The globals a result pickle may name (``evosax.*``/``flax.*`` classes become records)."""
    return sorted(f"{module}.{name}" for module, name in _FIXED_GLOBALS) + [
        f"{module}.*.<Class> (inert record)" for module in _RECORD_MODULES]


class ResultUnpickler(pickle.Unpickler):
    """An unpickler that resolves globals only from the allow-list and imports nothing."""

    def __init__(self, file: io.BufferedIOBase, source: str = "the pickle") -> None:
        super().__init__(file)
        self.source = source
        self._records: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _FIXED_GLOBALS.get((module, name))
        if found is not None:
            return found
        if module.split(".")[0] in _RECORD_MODULES and _CLASS_NAME.match(name):
            qualified = f"{module}.{name}"
            if qualified not in self._records:
                self._records[qualified] = _Sealed(name, (PickledRecord,), {"source_class": qualified})
            return self._records[qualified]
        raise FormatError(
            f"{self.source} references {module}.{name}, which hades refuses to load: a result pickle may "
            "only hold arrays, containers and evosax/flax state records, and nothing in it is ever run"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise FormatError(f"{self.source} uses pickle persistent ids, which a result pickle never needs; refusing it")


def _finish(value: Any, memo: dict[int, Any]) -> Any:
    """Swap array/dtype stand-ins for numpy values throughout the unpickled tree."""
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, _ArrayStub):
        if value.array is None:
            raise FormatError("an array in the pickle has no data")
        result: Any = value.array
    elif isinstance(value, _DtypeStub):
        result = value.dtype
    elif isinstance(value, dict):
        result = type(value)() if isinstance(value, collections.OrderedDict) else {}
        memo[key] = result
        for k, v in value.items():
            result[_finish(k, memo)] = _finish(v, memo)
        return result
    elif isinstance(value, list):
        result = []
        memo[key] = result
        result.extend(_finish(item, memo) for item in value)
        return result
    elif isinstance(value, tuple):
        result = tuple(_finish(item, memo) for item in value)
    elif isinstance(value, (set, frozenset)):
        result = type(value)(_finish(item, memo) for item in value)
    elif isinstance(value, PickledRecord):
        memo[key] = value
        value.args = _finish(value.args, memo)
        value.kwargs = _finish(value.kwargs, memo)
        value.state = _finish(value.state, memo)
        return value
    else:
        result = value
    memo[key] = result
    return result


def load_result_pickle(path: str | Path) -> tuple[Any, str]:
    """Unpickle a result file without running anything from it; return (its content, sha256 of its bytes)."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise FormatError(f"{path} is a folder; give the data_final.pkl file of a run")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(f"{path} cannot be read ({exc.strerror or exc})") from None
    source = path.name
    if len(data) < 2 or data[0] != pickle.PROTO[0]:
        raise FormatError(f"{source} is not a pickle file (no pickle protocol header); give the data_final.pkl of a run")
    try:
        content = ResultUnpickler(io.BytesIO(data), source).load()
        content = _finish(content, {})
    except HadesError as exc:
        if str(exc).startswith(source):
            raise
        raise type(exc)(f"{source}: {exc}") from None
    except (EOFError, pickle.UnpicklingError) as exc:
        if isinstance(exc, EOFError) or "truncated" in str(exc):
            raise FormatError(f"{source} is truncated ({len(data)} bytes); download the file again") from None
        raise FormatError(f"{source} is not a valid pickle ({exc}); give the data_final.pkl of a run") from None
    except RecursionError:
        raise FormatError(f"{source} is nested too deeply to be a result pickle") from None
    except (MemoryError, OverflowError):
        raise FormatError(f"{source} asks for more memory than a result pickle can need; refusing it") from None
    except Exception as exc:  # anything else the opcodes can provoke means the bytes are corrupt
        raise FormatError(f"{source} is corrupt ({type(exc).__name__}: {exc}); download the file again") from None
    return content, sha256_bytes(data)


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
    from hades.provenance import provenance

    path = Path(path)
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
    with tempfile.TemporaryDirectory(prefix="hades-convert-") as scratch:
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
