"""Reading the result pickles of the original HaDES code without running anything from them.

Those files hold whole evosax 0.1.4 strategy states saved with :mod:`pickle`, and plain unpickling
runs whatever a file names. :class:`ResultUnpickler` never imports anything: every global the file
references is looked up in a fixed allow-list of stand-ins (numpy array and dtype rebuilders, the
jax array rebuilder, inert records for evosax/flax classes, a few builtin containers), and any
other global is refused with a :class:`~hades.errors.FormatError` naming it. Arrays are rebuilt
from their raw bytes by :func:`numpy.frombuffer`, after checking dtype, shape and length, so no
numpy ``__setstate__`` ever sees data from the file.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from hades.errors import FormatError, HadesError, NotFoundError
from hades.formats import sha256_bytes

# Array payloads may only be plain numbers: object arrays would let the file smuggle objects in.
_NUMERIC_KINDS = "biufc"
_RECORD_MODULES = ("evosax", "flax")
_CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]*$")


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
