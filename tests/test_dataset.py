"""Format v1: datasets saved as folders or bare files, stable bytes, the card, parquet and the
Hugging Face ``datasets`` view, and one precise error for every kind of bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_breakout_dataset, make_hopper_dataset

import hades
from hades.errors import (
    CardError, ChecksumError, FormatError, HadesError, ShapeError, UnknownEnvError, VersionError,
)
from hades.formats import canonical_json, read_card, sha256_file, tensors_to_bytes


def _header(path: Path) -> dict:
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length])


def _front_matter(card: Path) -> dict:
    text = card.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _write_raw(path: Path, tensors: dict, meta: dict) -> Path:
    path.write_bytes(tensors_to_bytes(tensors, meta))
    return path


def _assert_one_line(exc: BaseException, *fragments: str) -> None:
    message = str(exc)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def _constant_dataset(seed: int = 3):
    rng = np.random.default_rng(seed)
    return hades.Dataset(rng.normal(size=(5, 11)), rng.normal(size=(5, 3)), "hopper", "constant",
                         rng.normal(size=11), rng.uniform(0.5, 2.0, size=11), info={"license": "mit"})


# -- round trips ---------------------------------------------------------------------------------

def test_folder_roundtrip(tmp_path, tiny_dataset):
    folder = tiny_dataset.save(tmp_path / "ds")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "dataset.safetensors"]
    loaded = hades.Dataset.load(folder)
    np.testing.assert_array_equal(loaded.states, tiny_dataset.states)
    np.testing.assert_array_equal(loaded.actions, tiny_dataset.actions)
    assert (loaded.env, loaded.normalization, loaded.pairs) == ("hopper", "none", 4)
    assert loaded.states.dtype == np.float32 and loaded.actions.dtype == np.float32
    assert loaded.obs_mean is None and loaded.obs_var is None
    assert loaded.info["license"] == "apache-2.0" and loaded.info["name"] == "hopper test 0"
    assert loaded.recipe == tiny_dataset.recipe
    assert loaded.sha256 == tiny_dataset.sha256 == sha256_file(folder / "dataset.safetensors")


def test_bare_file_roundtrip_with_constant_normalisation(tmp_path):
    dataset = _constant_dataset()
    path = dataset.save(tmp_path / "hop.safetensors")
    assert path.is_file() and list(tmp_path.iterdir()) == [path]
    loaded = hades.Dataset.load(path)
    assert loaded.normalization == "constant"
    np.testing.assert_array_equal(loaded.obs_mean, dataset.obs_mean)
    np.testing.assert_array_equal(loaded.obs_var, dataset.obs_var)
    np.testing.assert_array_equal(loaded.states, dataset.states)
    assert set(_header(path)) == {"__metadata__", "states", "actions", "obs_mean", "obs_var"}
    assert loaded.sha256 == dataset.sha256 == sha256_file(path)
    # a bare file checked against a known checksum
    assert hades.Dataset.load(path, expected_sha256=dataset.sha256).pairs == 5


def test_saved_bytes_are_stable(tmp_path, tiny_dataset):
    first = tiny_dataset.save(tmp_path / "a") / "dataset.safetensors"
    second = make_hopper_dataset(seed=0).save(tmp_path / "b") / "dataset.safetensors"
    assert first.read_bytes() == second.read_bytes()
    assert hashlib.sha256(first.read_bytes()).hexdigest() == tiny_dataset.sha256
    # loading and saving again changes nothing either
    again = hades.Dataset.load(first.parent).save(tmp_path / "c") / "dataset.safetensors"
    assert sha256_file(again) == tiny_dataset.sha256
    assert (tmp_path / "a" / "README.md").read_text() == (tmp_path / "c" / "README.md").read_text()
    metadata = _header(first)["__metadata__"]
    assert list(metadata) == ["hades"]
    meta = json.loads(metadata["hades"])
    assert metadata["hades"] == canonical_json(meta)
    assert meta["format_version"] == 1 and meta["kind"] == "dataset" and meta["env"]["id"] == "hopper"


def test_overwriting_a_folder_replaces_it_whole(tmp_path, tiny_dataset):
    target = tmp_path / "ds"
    make_hopper_dataset(seed=5, pairs=7).save(target, parquet=True)
    tiny_dataset.save(target)
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "dataset.safetensors"]
    assert hades.Dataset.load(target).pairs == 4
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_discrete_dataset_with_integer_labels(tmp_path, tiny_discrete_dataset):
    dataset = tiny_discrete_dataset
    assert dataset.env == "Breakout-MinAtar" and dataset.env_spec.discrete
    assert dataset.states.shape == (6, 400) and dataset.actions.dtype == np.int32
    assert dataset.actions.tolist() == [0, 0, 1, 1, 2, 2]
    assert dataset.recipe.loss == "cross_entropy" and dataset.recipe.arch.activation == "relu"
    folder = dataset.save(tmp_path / "breakout")
    loaded = hades.Dataset.load(folder)
    assert loaded.actions.dtype == np.int32 and loaded.actions.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(loaded.states, dataset.states)
    meta = _front_matter(folder / "README.md")["hades"]
    assert meta["env"]["action_type"] == "discrete" and meta["env"]["obs_shape"] == [10, 10, 4]
    assert meta["env"]["action_dim"] == 3 and meta["env"]["obs_dim"] == 400
    assert [row["action"] for row in dataset.preview_rows()] == ["0", "0", "1", "1", "2", "2"]


def test_env_name_is_case_insensitive_and_canonical(tiny_dataset):
    dataset = hades.Dataset(tiny_dataset.states, tiny_dataset.actions, "HOPPER")
    assert dataset.env == "hopper" and dataset.sha256 == hades.Dataset(tiny_dataset.states, tiny_dataset.actions, "hopper").sha256


# -- the card ------------------------------------------------------------------------------------

def test_card_renders_and_reloads(tmp_path):
    dataset = _constant_dataset()
    folder = dataset.save(tmp_path / "ds")
    front = _front_matter(folder / "README.md")
    assert front["hades"]["sha256"] == sha256_file(folder / "dataset.safetensors") == dataset.sha256
    assert front["license"] == "mit" and "hades" in front["tags"] and "hopper" in front["tags"]
    assert front["hades"]["normalization"] == "constant" and front["hades"]["pairs"] == 5
    assert front["hades"]["recipe"]["arch"]["hidden"] == [512, 512]
    section, data = read_card(folder)
    assert section == front["hades"] and data["license"] == "mit"
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(folder / "README.md")
    assert card.data.to_dict()["hades"]["sha256"] == dataset.sha256
    assert "# " in card.text and "constant" in card.text and "hopper" in card.text
    # the card's evaluation section travels back into the loaded dataset
    evaluation = {"mean": 1745.0, "std": 3.0, "returns": [1742.0, 1748.0], "protocol": {"num_envs": 4}}
    folder2 = dataset.replace(info={**dataset.info, "evaluation": evaluation}).save(tmp_path / "ds2")
    assert hades.Dataset.load(folder2).info["evaluation"] == evaluation


def test_to_hf(tiny_dataset, tiny_discrete_dataset):
    import datasets

    hf = tiny_dataset.to_hf()
    assert hf.column_names == ["state", "action", "env", "normalization", "obs_mean", "obs_var"] and len(hf) == 4
    np.testing.assert_allclose(np.asarray(hf["state"], np.float32), tiny_dataset.states)
    np.testing.assert_allclose(np.asarray(hf["action"], np.float32), tiny_dataset.actions)
    assert hf["env"] == ["hopper"] * 4 and hf["normalization"] == ["none"] * 4 and hf["obs_mean"] == [None] * 4
    vector = hf.features["state"]
    assert isinstance(vector, (datasets.Sequence, datasets.List)) and vector.length == 11
    assert vector.feature == datasets.Value("float32") and hf.features["action"].length == 3
    assert hf.features["action"].feature == datasets.Value("float32")
    assert hf.with_format("numpy")[:]["state"].dtype == np.float32
    labels = tiny_discrete_dataset.to_hf()
    assert labels["action"] == [0, 0, 1, 1, 2, 2]
    assert isinstance(labels.features["action"], datasets.ClassLabel)
    assert labels.features["action"].names == ["noop", "left", "right"]
    assert len(labels[0]["state"]) == 400 and labels.features["state"].length == 400


def test_to_hf_carries_the_statistics_to_undo_the_normalisation():
    dataset = _constant_dataset()
    hf = dataset.to_hf()
    assert set(hf["normalization"]) == {"constant"} and "constant" in hf.info.description
    mean, var = np.asarray(hf["obs_mean"][0], np.float32), np.asarray(hf["obs_var"][0], np.float32)
    np.testing.assert_array_equal(mean, dataset.obs_mean)
    np.testing.assert_array_equal(var, dataset.obs_var)
    raw = np.asarray(hf["state"], np.float32) * np.sqrt(var + 1e-8) + mean
    np.testing.assert_allclose((raw - dataset.obs_mean) / np.sqrt(dataset.obs_var + 1e-8), dataset.states, rtol=1e-5, atol=1e-5)


def test_card_front_matter_for_the_hub(tmp_path, tiny_discrete_dataset):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(_constant_dataset().save(tmp_path / "ds") / "README.md")
    assert card.data.task_categories == ["reinforcement-learning", "robotics"]
    assert card.data.size_categories == ["n<1K"] and card.data.source_datasets == ["original"]
    minatar = DatasetCard.load(tiny_discrete_dataset.save(tmp_path / "minatar") / "README.md")
    assert minatar.data.task_categories == ["reinforcement-learning"]
    from hades.provenance import provenance

    converted = tiny_discrete_dataset.replace(info={**tiny_discrete_dataset.info, "provenance": provenance(
        converted_by="hades convert", source_repository="FLAIROx/behaviour-distillation")})
    card = DatasetCard.load(converted.save(tmp_path / "converted") / "README.md")
    assert card.data.source_datasets == ["https://github.com/FLAIROx/behaviour-distillation"]


def test_parquet_mirror(tmp_path, tiny_dataset):
    import datasets

    folder = tiny_dataset.save(tmp_path / "ds", parquet=True)
    parquet = folder / "data" / "train.parquet"
    assert parquet.is_file()
    table = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(tmp_path / "cache"))
    assert len(table) == 4
    np.testing.assert_allclose(np.asarray(table["state"], np.float32), tiny_dataset.states)
    np.testing.assert_allclose(np.asarray(table["action"], np.float32), tiny_dataset.actions)
    front = _front_matter(folder / "README.md")
    assert front["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train.parquet"}]}]
    # the parquet mirror does not change the checksummed file
    assert front["hades"]["sha256"] == tiny_dataset.sha256
    assert hades.Dataset.load(folder).pairs == 4


# -- bad files -----------------------------------------------------------------------------------

def test_truncated_file(tmp_path, tiny_dataset):
    data = tiny_dataset.to_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    for cut, name in ((len(data) // 2, "half.safetensors"), (header_end + 10, "body.safetensors"), (5, "tiny.safetensors")):
        path = tmp_path / name
        path.write_bytes(data[:cut])
        with pytest.raises(FormatError) as info:
            hades.Dataset.load(path)
        _assert_one_line(info.value, str(path))
        assert "truncated or corrupt" in str(info.value) or "not a safetensors file" in str(info.value)
    with pytest.raises(FormatError, match="not a safetensors file"):
        hades.Dataset.load(tmp_path / "tiny.safetensors")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(FormatError) as info:
        hades.Dataset.load(path)
    _assert_one_line(info.value, "truncated or corrupt", "re-download or re-create")
    # a valid 8-byte length followed by garbage that is not JSON
    path.write_bytes((16).to_bytes(8, "little") + b"\xff" * 16 + b"\0" * 8)
    with pytest.raises(FormatError, match="truncated or corrupt"):
        hades.Dataset.load(path)


def test_safetensors_not_written_by_hades(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"states": np.zeros((4, 11), np.float32), "actions": np.zeros((4, 3), np.float32)}, str(path))
    with pytest.raises(FormatError) as info:
        hades.Dataset.load(path)
    _assert_one_line(info.value, "not written by hades")


def test_wrong_shapes_for_the_env(tmp_path, tiny_dataset):
    meta = tiny_dataset.metadata()
    path = _write_raw(tmp_path / "states.safetensors", {"states": np.zeros((4, 10), np.float32), "actions": tiny_dataset.actions}, meta)
    with pytest.raises(ShapeError) as info:
        hades.Dataset.load(path)
    _assert_one_line(info.value, str(path), "[4, 10]", "hopper needs [D, 11]")
    path = _write_raw(tmp_path / "actions.safetensors", {"states": tiny_dataset.states, "actions": np.zeros((4, 2), np.float32)}, meta)
    with pytest.raises(ShapeError, match=r"hopper needs \[4, 3\]"):
        hades.Dataset.load(path)
    with pytest.raises(ShapeError, match=r"obs_mean has shape \[3\]"):
        hades.Dataset(tiny_dataset.states, tiny_dataset.actions, "hopper", "constant", np.zeros(3), np.ones(3))
    with pytest.raises(ShapeError, match="D >= 1"):
        hades.Dataset(np.zeros((0, 11), np.float32), np.zeros((0, 3), np.float32), "hopper")
    with pytest.raises(ShapeError, match=r"needs \[6\]"):
        hades.Dataset(np.zeros((6, 400), np.float32), np.zeros((6, 3), np.int32), "Breakout-MinAtar")
    assert issubclass(ShapeError, ValueError) and issubclass(ShapeError, HadesError)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(tmp_path, tiny_dataset, bad):
    states = tiny_dataset.states.copy()
    states[1, 2] = bad
    path = _write_raw(tmp_path / "bad.safetensors", {"states": states, "actions": tiny_dataset.actions}, tiny_dataset.metadata())
    with pytest.raises(FormatError) as info:
        hades.Dataset.load(path)
    _assert_one_line(info.value, str(path), "states holds 1 NaN or infinite value(s)")
    actions = tiny_dataset.actions.copy()
    actions[:, 0] = bad
    with pytest.raises(FormatError, match="actions holds 4 NaN or infinite"):
        hades.Dataset(tiny_dataset.states, actions, "hopper")
    with pytest.raises(FormatError, match="obs_var holds 1 NaN or infinite"):
        hades.Dataset(tiny_dataset.states, tiny_dataset.actions, "hopper", "constant", np.zeros(11),
                      np.array([1.0] * 10 + [bad]))


def test_unknown_env(tmp_path, tiny_dataset):
    meta = tiny_dataset.metadata()
    meta["env"]["id"] = "hoppr"
    path = _write_raw(tmp_path / "env.safetensors", {"states": tiny_dataset.states, "actions": tiny_dataset.actions}, meta)
    with pytest.raises(UnknownEnvError) as info:
        hades.Dataset.load(path)
    _assert_one_line(info.value, "unknown environment 'hoppr'", "did you mean 'hopper'?")
    assert isinstance(info.value, LookupError)
    with pytest.raises(UnknownEnvError, match="known environments are"):
        hades.Dataset(tiny_dataset.states, tiny_dataset.actions, "cartpole")


def test_unknown_format_version(tmp_path, tiny_dataset):
    meta = tiny_dataset.metadata()
    meta["format_version"] = 2
    path = _write_raw(tmp_path / "v2.safetensors", {"states": tiny_dataset.states, "actions": tiny_dataset.actions}, meta)
    with pytest.raises(VersionError) as info:
        hades.Dataset.load(path)
    _assert_one_line(info.value, str(path), "format version 2", "reads version 1", "upgrade hades-zoo")
    # a folder whose card announces another version is refused before anything else is read
    folder = tiny_dataset.save(tmp_path / "ds")
    card = folder / "README.md"
    card.write_text(card.read_text().replace("  format_version: 1\n", "  format_version: 2\n", 1))
    with pytest.raises(VersionError, match="format version 2"):
        hades.Dataset.load(folder)
    del meta["format_version"]
    path = _write_raw(tmp_path / "none.safetensors", {"states": tiny_dataset.states, "actions": tiny_dataset.actions}, meta)
    with pytest.raises(VersionError, match="format version None"):
        hades.Dataset.load(path)


def test_malformed_card(tmp_path, tiny_dataset):
    folder = tiny_dataset.save(tmp_path / "ds")
    card = folder / "README.md"
    original = card.read_text()
    card.write_text(original.replace("  kind: dataset\n", "  kind: [dataset\n", 1))
    with pytest.raises(CardError) as info:
        hades.Dataset.load(folder)
    _assert_one_line(info.value, "malformed YAML front matter")
    card.write_text("---\nlicense: apache-2.0\ntags:\n- hades\n---\n\n# a card without the section\n")
    with pytest.raises(CardError) as info:
        hades.Dataset.load(folder)
    _assert_one_line(info.value, "no 'hades' section")
    card.write_text("# just prose\n")
    with pytest.raises(CardError, match="no YAML front matter"):
        hades.Dataset.load(folder)
    card.unlink()
    with pytest.raises(CardError, match="has no card README.md"):
        hades.Dataset.load(folder)
    assert issubclass(CardError, FormatError)


def test_folder_without_data_file(tmp_path, tiny_dataset):
    folder = tiny_dataset.save(tmp_path / "ds")
    (folder / "dataset.safetensors").unlink()
    with pytest.raises(FormatError, match="holds no dataset.safetensors"):
        hades.Dataset.load(folder)


def test_checksum_mismatch(tmp_path, tiny_dataset):
    folder = tiny_dataset.save(tmp_path / "ds")
    path = folder / "dataset.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # still parses: only a float's last bit changed
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as info:
        hades.Dataset.load(folder)
    _assert_one_line(info.value, str(path), "fails verification", tiny_dataset.sha256[:12], "pull it again")
    # the same bytes load as a bare file: only the recorded checksum catches the change
    assert hades.Dataset.load(path).pairs == 4
    with pytest.raises(ChecksumError):
        hades.Dataset.load(path, expected_sha256=tiny_dataset.sha256)


def test_wrong_dtype(tmp_path, tiny_dataset, tiny_discrete_dataset):
    with pytest.raises(FormatError) as info:
        hades.Dataset(tiny_dataset.states, tiny_dataset.actions.astype(np.int32), "hopper")
    _assert_one_line(info.value, "actions must be floating point", "int32")
    with pytest.raises(FormatError, match="states must be floating point"):
        hades.Dataset(tiny_dataset.states.astype(np.int64), tiny_dataset.actions, "hopper")
    with pytest.raises(FormatError, match="integer labels"):
        hades.Dataset(tiny_discrete_dataset.states, tiny_discrete_dataset.actions.astype(np.float32), "Breakout-MinAtar")
    meta = tiny_dataset.metadata()
    path = _write_raw(tmp_path / "f64.safetensors", {"states": tiny_dataset.states.astype(np.float64), "actions": tiny_dataset.actions}, meta)
    with pytest.raises(FormatError) as info:
        hades.Dataset.load(path)
    _assert_one_line(info.value, str(path), "states is float64", "float32")
    path = _write_raw(tmp_path / "int.safetensors", {"states": tiny_dataset.states, "actions": tiny_dataset.actions.astype(np.int32)}, meta)
    with pytest.raises(FormatError, match="actions must be floating point"):
        hades.Dataset.load(path)


@pytest.mark.parametrize("labels, found", [([0, 1, 3], "0..3"), ([-1, 0, 2], "-1..2")])
def test_labels_out_of_range(labels, found):
    with pytest.raises(ShapeError) as info:
        hades.Dataset(np.zeros((3, 400), np.float32), np.array(labels), "Breakout-MinAtar")
    _assert_one_line(info.value, "labels must lie in 0..2 for Breakout-MinAtar", f"found {found}")


def test_labels_out_of_range_in_a_file(tmp_path, tiny_discrete_dataset):
    labels = tiny_discrete_dataset.actions.copy()
    labels[-1] = 5
    path = _write_raw(tmp_path / "labels.safetensors", {"states": tiny_discrete_dataset.states, "actions": labels},
                      tiny_discrete_dataset.metadata())
    with pytest.raises(ShapeError, match=f"{path}: labels must lie in 0..2"):
        hades.Dataset.load(path)


def test_constant_normalisation_needs_its_statistics(tmp_path, tiny_dataset):
    with pytest.raises(FormatError) as info:
        hades.Dataset(tiny_dataset.states, tiny_dataset.actions, "hopper", "constant")
    _assert_one_line(info.value, "constant normalisation needs obs_mean")
    with pytest.raises(FormatError, match="needs obs_var"):
        hades.Dataset(tiny_dataset.states, tiny_dataset.actions, "hopper", "constant", obs_mean=np.zeros(11))
    meta = tiny_dataset.metadata()
    meta["normalization"] = "constant"
    path = _write_raw(tmp_path / "nostats.safetensors", {"states": tiny_dataset.states, "actions": tiny_dataset.actions}, meta)
    with pytest.raises(FormatError, match=f"{path}: constant normalisation needs obs_mean"):
        hades.Dataset.load(path)
    with pytest.raises(FormatError, match="negative"):
        hades.Dataset(tiny_dataset.states, tiny_dataset.actions, "hopper", "constant", np.zeros(11), -np.ones(11))
    with pytest.raises(FormatError, match="normalization must be one of"):
        hades.Dataset(tiny_dataset.states, tiny_dataset.actions, "hopper", "batch")


def test_missing_path(tmp_path):
    from hades.errors import NotFoundError

    with pytest.raises(NotFoundError, match="does not exist"):
        hades.Dataset.load(tmp_path / "nothing.safetensors")


def test_a_policy_file_is_not_a_dataset(tmp_path, tiny_dataset):
    path = _write_raw(tmp_path / "policy.safetensors", {"states": tiny_dataset.states, "actions": tiny_dataset.actions},
                      {**tiny_dataset.metadata(), "kind": "policy"})
    with pytest.raises(FormatError, match="holds a 'policy', not a dataset"):
        hades.Dataset.load(path)
