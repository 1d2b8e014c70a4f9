"""The checkpoint of a distillation run: ``OUT/checkpoint/state.msgpack``.

One msgpack map, written atomically after every chunk of generations, holding everything a resumed
run needs to end bit for bit where an uninterrupted one would: the ES state, the observation
statistics the program was compiled with, the fitness history, the validation record, the
restarts (runs that have had any) and the commands that ran it (the one that started it, then each
resumption with the generation it resumed at). It is
marked ``format: hades-checkpoint`` with a ``format_version``; checkpoints written before the
marker existed (they hold ``fingerprint``, ``history`` and ``state``) read as version 1.

Reading checks the outer shape at once and each part when it is asked for, so a report on the
history of a run does not depend on its ES state, and every failure names the file.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hades.errors import CheckpointError, MissingCheckpointError, SettingsMismatchError
from hades.files import CHECKPOINT_FILE
from hades.formats import atomic_write_bytes, canonical_json

CHECKPOINT_FORMAT = "hades-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = ("fingerprint", "history", "state")


def checkpoint_file(out: str | Path) -> Path:
    """Where the run writing to ``out`` keeps its checkpoint."""
    return Path(out) / CHECKPOINT_FILE


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's payload, read from ``path``: what made it, and accessors that check each part."""

    path: Path
    payload: dict

    @property
    def fingerprint(self) -> str:
        return self.payload["fingerprint"]

    @property
    def version(self) -> int:
        return self.payload.get("format_version", 1)

    def check_settings(self, fingerprint: str) -> None:
        """Refuse to resume under settings other than those that made the checkpoint."""
        if self.fingerprint != fingerprint:
            raise SettingsMismatchError(f"checkpoint {self.path} was made with other settings")

    def obs_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """The observation ``(mean, var)`` the run's program was compiled with."""
        with _unreadable(self.path):
            return np.asarray(self.payload["obs_mean"]), np.asarray(self.payload["obs_var"])

    def history(self) -> list[dict]:
        """The per-generation rows (mean, max, seconds, env_steps, ...) so far."""
        with _unreadable(self.path):
            history = json.loads(self.payload["history"])
            if not isinstance(history, list):
                raise ValueError("its history is not a list")
        return history

    def validation(self) -> dict | None:
        """The validation record (``settings``, ``history``, ``best``); None for a run without validation."""
        if "validation" not in self.payload:
            return None
        with _unreadable(self.path):
            record = json.loads(self.payload["validation"])
            if not isinstance(record.get("history"), list):
                raise ValueError("its validation history is not a list")
        return record

    def restarts(self) -> list[dict]:
        """The restarts of the run so far (generation, population from then on); [] for a run without any."""
        if "restarts" not in self.payload:
            return []
        with _unreadable(self.path):
            restarts = json.loads(self.payload["restarts"])
            if not isinstance(restarts, list):
                raise ValueError("its restarts are not a list")
        return restarts

    def commands(self) -> list[dict]:
        """The commands that ran the run so far (``generation``, ``command``), the starting one first;
        [] for a checkpoint written before they were recorded."""
        if "commands" not in self.payload:
            return []
        with _unreadable(self.path):
            commands = json.loads(self.payload["commands"])
            if not isinstance(commands, list) or not all(
                    isinstance(row, dict) and isinstance(row.get("command"), str)
                    and isinstance(row.get("generation"), int) for row in commands):
                raise ValueError("its commands are not a list of (generation, command)")
        return commands

    def best_arrays(self) -> dict:
        """The arrays of the best-validated ES mean (a record with a ``best`` has them)."""
        with _unreadable(self.path):
            return dict(self.payload["best_arrays"])

    def restore_state(self, template):
        """The ES state, in the structure of ``template`` (a state of the same program)."""
        from flax import serialization

        with _unreadable(self.path):
            return serialization.from_state_dict(template, self.payload["state"])


@contextlib.contextmanager
def _unreadable(path: Path):
    """Any failure inside the block becomes one CheckpointError naming the file."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from None


def restore_checkpoint(data: bytes, path: str | Path) -> Checkpoint:
    """The checkpoint in ``data`` (the bytes of ``path``), whatever settings made it."""
    from flax import serialization

    path = Path(path)
    with _unreadable(path):
        payload = serialization.msgpack_restore(data)
    foreign = f"{path} is not a hades checkpoint"
    if not isinstance(payload, dict):
        raise CheckpointError(f"{foreign} (it holds a {type(payload).__name__}, not a map); delete it to start over")
    marked = "format" in payload
    if marked and payload["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{foreign} (its format is {payload['format']!r}); delete it to start over")
    version = payload.get("format_version", 1)
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{foreign} (its format version is {version!r}); delete it to start over")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} was written by a newer hades-zoo (checkpoint format {version}, "
                              f"this one reads up to {CHECKPOINT_VERSION}); upgrade hades-zoo to resume it")
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"{foreign} (it has no {', '.join(missing)}); delete it to start over")
    return Checkpoint(path, payload)


def read_checkpoint_bytes(out: str | Path) -> bytes:
    """The checkpoint file of the run writing to ``out``, unparsed (MissingCheckpointError if there is none)."""
    path = checkpoint_file(out)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MissingCheckpointError(f"no checkpoint at {path}") from None


def load_checkpoint(out: str | Path) -> Checkpoint:
    """The checkpoint of the run writing to ``out`` (MissingCheckpointError if there is none)."""
    return restore_checkpoint(read_checkpoint_bytes(out), checkpoint_file(out))


def read_history(out: str | Path) -> list[dict]:
    """The fitness history of the run in ``out`` so far, from its checkpoint; for reports on running runs."""
    return load_checkpoint(out).history()


def read_validation(out: str | Path) -> dict | None:
    """The validation record (``settings``, ``history``, ``best``) of the run in ``out``; None without validation."""
    return load_checkpoint(out).validation()


def save_checkpoint(out: str | Path, config, history: list[dict], obs_mean, obs_var, state,
                    validation: dict | None = None, best_arrays: dict | None = None,
                    restarts: list[dict] | None = None, commands: list[dict] | None = None) -> Path:
    """Write the checkpoint of the run of ``config`` writing to ``out``, atomically.

    ``state``: the ES state (host arrays); ``validation``: the record :meth:`Checkpoint.validation`
    gives back (None: a run without validation), with ``best_arrays`` when it has a best;
    ``restarts``: what :meth:`Checkpoint.restarts` gives back (left out when there are none);
    ``commands``: what :meth:`Checkpoint.commands` gives back.
    """
    import jax
    from flax import serialization

    payload = {
        "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
        "fingerprint": config.fingerprint(),
        "config": canonical_json(config.to_dict()),
        "history": canonical_json(history),
        "obs_mean": np.asarray(obs_mean), "obs_var": np.asarray(obs_var),
        "state": jax.tree.map(np.asarray, serialization.to_state_dict(state)),
    }
    if validation is not None:
        payload["validation"] = canonical_json(validation)
        if best_arrays is not None:
            payload["best_arrays"] = {name: np.asarray(value) for name, value in best_arrays.items()}
    if restarts:
        payload["restarts"] = canonical_json(restarts)
    if commands:
        payload["commands"] = canonical_json(commands)
    path = checkpoint_file(out)
    atomic_write_bytes(path, serialization.msgpack_serialize(payload))
    return path
