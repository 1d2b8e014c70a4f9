"""The checkpoint format: its marker and version, checkpoints from before the marker, and files that are not ours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flax import serialization

from hades.checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, checkpoint_file, load_checkpoint, read_history,
                              read_validation, save_checkpoint)
from hades.distillation import preset
from hades.errors import CheckpointError, MissingCheckpointError, SettingsMismatchError
from hades.runner import Distiller

HISTORY = [{"generation": 1, "mean": 1.5, "max": 2.0, "min": 1.0, "sigma": 0.03, "episodes": 4, "env_steps": 100,
            "seconds": 0.5}]


@pytest.fixture
def config():
    return preset("cpu", "hopper", 4)


def _state() -> dict:
    return {"mean": np.arange(6, dtype=np.float32), "count": np.asarray(3, np.int32)}


def _write(out: Path, payload) -> Path:
    path = checkpoint_file(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(serialization.msgpack_serialize(payload))
    return path


def test_a_checkpoint_is_marked_with_its_format_and_reads_back(tmp_path, config):
    record = {"settings": {"seeds": 2}, "history": [{"generation": 1, "mean": 3.0}], "best": {"generation": 1}}
    best = {"states": np.ones((4, 11), np.float32)}
    path = save_checkpoint(tmp_path, config, HISTORY, np.zeros(11), np.ones(11), _state(), record, best)
    assert path == tmp_path / "checkpoint" / "state.msgpack"
    raw = serialization.msgpack_restore(path.read_bytes())
    assert (raw["format"], raw["format_version"]) == (CHECKPOINT_FORMAT, CHECKPOINT_VERSION) == ("hades-checkpoint", 1)

    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.version == 1 and checkpoint.fingerprint == config.fingerprint()
    checkpoint.check_settings(config.fingerprint())
    with pytest.raises(SettingsMismatchError, match="other settings"):
        checkpoint.check_settings(preset("cpu", "hopper", 4, seed=1).fingerprint())
    assert checkpoint.history() == read_history(tmp_path) == HISTORY
    assert checkpoint.validation() == read_validation(tmp_path) == record
    assert np.array_equal(checkpoint.best_arrays()["states"], best["states"])
    mean, var = checkpoint.obs_stats()
    assert np.array_equal(mean, np.zeros(11)) and np.array_equal(var, np.ones(11))
    state = checkpoint.restore_state({"mean": np.zeros(6, np.float32), "count": np.asarray(0, np.int32)})
    assert np.array_equal(state["mean"], _state()["mean"]) and int(state["count"]) == 3
    assert Distiller(config, tmp_path).plan()["checkpoint"]["matches"]


def test_a_checkpoint_from_before_the_marker_reads_as_version_1(tmp_path, config):
    save_checkpoint(tmp_path, config, HISTORY, np.zeros(11), np.ones(11), _state())
    payload = serialization.msgpack_restore(checkpoint_file(tmp_path).read_bytes())
    del payload["format"], payload["format_version"]
    _write(tmp_path, payload)
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.version == 1 and checkpoint.history() == HISTORY and checkpoint.validation() is None
    plan = Distiller(config, tmp_path).plan()
    assert plan["action"] == "resume" and plan["checkpoint"]["generations"] == 1


@pytest.mark.parametrize("payload, detail", [
    ({"weights": [1, 2, 3]}, "it has no fingerprint, history, state"),
    ([1, 2, 3], "it holds a list"),
    ("a string", "it holds a str"),
    ({"format": "safetensors", "fingerprint": "x", "history": "[]", "state": {}}, "its format is 'safetensors'"),
    ({"format": CHECKPOINT_FORMAT, "format_version": "one", "fingerprint": "x", "history": "[]", "state": {}},
     "its format version is 'one'"),
], ids=["other-map", "list", "string", "other-format", "bad-version"])
def test_a_foreign_msgpack_file_is_not_a_hades_checkpoint(tmp_path, config, payload, detail):
    path = _write(tmp_path, payload)
    with pytest.raises(CheckpointError, match="is not a hades checkpoint") as caught:
        load_checkpoint(tmp_path)
    assert str(path) in str(caught.value) and detail in str(caught.value)
    with pytest.raises(CheckpointError, match="is not a hades checkpoint"):
        read_history(tmp_path)
    plan = Distiller(config, tmp_path).plan()
    assert plan["action"] == "refuse" and "is not a hades checkpoint" in plan["reason"]


def test_a_checkpoint_from_a_newer_release_asks_for_an_upgrade(tmp_path, config):
    save_checkpoint(tmp_path, config, HISTORY, np.zeros(11), np.ones(11), _state())
    payload = serialization.msgpack_restore(checkpoint_file(tmp_path).read_bytes())
    payload["format_version"] = CHECKPOINT_VERSION + 1
    del payload["state"]  # a later format may lay its parts out otherwise: the version is checked first
    _write(tmp_path, payload)
    with pytest.raises(CheckpointError, match="written by a newer hades-zoo") as caught:
        load_checkpoint(tmp_path)
    assert "upgrade hades-zoo" in str(caught.value) and f"format {CHECKPOINT_VERSION + 1}" in str(caught.value)


def test_damaged_parts_and_missing_files_name_the_checkpoint(tmp_path, config):
    with pytest.raises(MissingCheckpointError, match="no checkpoint at") as missing:
        read_validation(tmp_path)
    assert isinstance(missing.value, FileNotFoundError) and "--" not in str(missing.value)
    path = _write(tmp_path, {"fingerprint": "x", "history": json.dumps({"not": "a list"}), "state": {},
                             "validation": "{broken"})
    checkpoint = load_checkpoint(tmp_path)
    for part in (checkpoint.history, checkpoint.validation, checkpoint.obs_stats, checkpoint.best_arrays):
        with pytest.raises(CheckpointError, match="is unreadable") as caught:
            part()
        assert str(path) in str(caught.value)
    path.write_bytes(b"\x00not msgpack")
    with pytest.raises(CheckpointError, match="is unreadable"):
        load_checkpoint(tmp_path)
