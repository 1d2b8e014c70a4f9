"""`hades convert`: the original result pickles become format v1 datasets, and nothing in a pickle runs."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hades.convert import convert, convert_pickle, load_result_pickle
from hades.dataset import Dataset
from hades.errors import FormatError, SpecError, UnknownEnvError
from hades.learn import Recipe
from hades.policy import PolicySpec

REPO = Path(__file__).resolve().parents[1]

# result pickle -> the JSON published for the same run
RUNS = {
    "brax_distill_hopper_D4_seed0.pkl": "brax__distill__hopper__D4__seed0.json",
    "brax_distill_walker2d_D4_seed0.pkl": "brax__distill__walker2d__D4__seed0.json",
    "brax_no_virtual_batch_norm_distill_halfcheetah_D64_seed0.pkl":
        "brax__no_virtual_batch_norm__distill__halfcheetah__D64__seed0.json",
    "brax_no_virtual_batch_norm_overfit_hopper_D64_seed0.pkl":
        "brax__no_virtual_batch_norm__overfit__hopper__D64__seed0.json",
    "minatar_virtual_batch_norm_distill_Breakout-MinAtar_D16_greedy_actFalse_seed0.pkl":
        "minatar__virtual_batch_norm__distill__Breakout-MinAtar__D16__greedy_actFalse__seed0.json",
}
HOPPER_D4 = "brax_distill_hopper_D4_seed0.pkl"


def _pickle_path(reference_dir: Path, name: str) -> Path:
    return reference_dir / "iclr2024-pickles" / name


def _close(actual, expected) -> bool:
    expected = np.asarray(expected, dtype=np.float64)
    return actual.shape == expected.shape and np.allclose(actual, expected, rtol=1e-6, atol=1e-7)


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), HADES_DEBUG="0")
    return subprocess.run([sys.executable, "-m", "hades", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


# -- the five published runs -----------------------------------------------------------------------
@pytest.mark.reference
@pytest.mark.parametrize("pickle_name", sorted(RUNS))
def test_conversion_matches_published_json(reference_dir, tmp_path, pickle_name):
    published = json.loads((reference_dir / "iclr2024" / RUNS[pickle_name]).read_text())
    dataset = convert_pickle(_pickle_path(reference_dir, pickle_name)).dataset

    assert dataset.env == published["env"]
    assert dataset.backend == published["backend"]
    assert dataset.normalization == published["obs_normalization"]
    if "labels" in published:
        labels = np.asarray(published["labels"])
        assert dataset.actions.dtype == np.int32 and np.array_equal(dataset.actions, labels)
        # states without a label are unused, so they are dropped
        assert _close(dataset.states, np.asarray(published["states"])[: labels.size])
    else:
        assert dataset.pairs == published["pairs"]
        assert _close(dataset.states, published["states"])
        assert _close(dataset.actions, published["actions"])
    if published["obs_normalization"] == "constant":
        assert _close(dataset.obs_mean, published["obs_mean"])
        assert _close(dataset.obs_var, published["obs_var"])
    else:
        assert dataset.obs_mean is None and dataset.obs_var is None

    method = dataset.info["method"]
    assert method["name"] == published["method"]
    assert method["final_fitness"] == pytest.approx(published["final_population_mean_fitness"], abs=1e-3)
    assert method["es_config"]["popsize"] == published["es"]["popsize"]
    inner = published["inner"]
    assert method.get("overfit_seed") == inner["overfit_seed"]
    recipe = dataset.recipe
    assert recipe.arch.hidden == (inner["width"],) * inner["depth"]
    assert recipe.arch.activation == inner["activation"]
    assert (recipe.lr, recipe.steps) == (inner["lr"], inner["steps"])
    assert recipe.max_grad_norm == inner.get("max_grad_norm")

    provenance = dataset.info["provenance"]
    assert provenance["source"] == pickle_name
    assert provenance["converted_by"] == "hades convert"
    assert len(provenance["sha256_of_source"]) == 64 and "versions" in provenance
    assert dataset.info["license"] == "apache-2.0"


@pytest.mark.reference
@pytest.mark.parametrize("pickle_name", sorted(RUNS))
def test_converted_dataset_reloads_with_a_stable_checksum(reference_dir, tmp_path, pickle_name):
    source = _pickle_path(reference_dir, pickle_name)
    first, first_dir = convert(source, tmp_path / "first")
    second, second_dir = convert(source, tmp_path / "second")
    assert first.dataset.sha256 == second.dataset.sha256
    assert (first_dir / "dataset.safetensors").read_bytes() == (second_dir / "dataset.safetensors").read_bytes()

    loaded = Dataset.load(first_dir)  # checks the sha256 in the card
    assert loaded.sha256 == first.dataset.sha256
    assert np.array_equal(loaded.states, first.dataset.states)
    assert np.array_equal(loaded.actions, first.dataset.actions)
    assert loaded.normalization == first.dataset.normalization
    assert loaded.info["method"] == first.dataset.info["method"]
    curve = (first_dir / "fitness.csv").read_text().splitlines()
    assert curve[0] == "generation,mean_fitness,max_fitness" and len(curve) == 1 + 2000


@pytest.mark.reference
def test_hopper_d4_carries_constant_normalisation_and_its_recipe(reference_dir, tmp_path):
    _, folder = convert(_pickle_path(reference_dir, HOPPER_D4), tmp_path / "hopper")
    dataset = Dataset.load(folder)
    assert dataset.normalization == "constant"
    assert dataset.obs_mean.shape == dataset.obs_var.shape == (11,)
    assert dataset.recipe == Recipe(PolicySpec((512, 512), "tanh", "orthogonal"), "gaussian_nll",
                                    lr=0.005, steps=200, max_grad_norm=0.5, adam_eps=1e-5)
    assert dataset.info["method"]["name"] == "hades-r"
    assert dataset.info["method"]["strategy"] == "OpenES"


@pytest.mark.reference
def test_cli_converts_and_prints_a_summary(reference_dir, tmp_path):
    result = _run_cli("convert", str(_pickle_path(reference_dir, HOPPER_D4)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "hopper-D4-seed0"  # the default: named after the run, in the current folder
    dataset = Dataset.load(folder)
    for text in ("hopper", "constant", "hades-r", "1742.1", str(folder), dataset.sha256):
        assert text in result.stdout


# -- hostile and broken input ------------------------------------------------------------------------
class _Shell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


class _Popen:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return subprocess.Popen, (["touch", str(self.marker)],)


HOSTILE = {"os.system": (_Shell, os.system.__module__ + ".system"),
           "builtins.eval": (_Eval, "builtins.eval"),
           "subprocess.Popen": (_Popen, "subprocess.Popen")}


def _hostile_file(tmp_path: Path, kind: str) -> tuple[Path, Path, str]:
    marker = tmp_path / f"pwned-{kind}"
    cls, refused = HOSTILE[kind]
    # hidden where the real files keep their data, next to an ordinary config
    content = {"state": cls(marker), "config": {"ENV_NAME": "hopper"}}
    path = tmp_path / f"{kind}.pkl"
    path.write_bytes(pickle.dumps(content, protocol=4))
    return path, marker, refused


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_pickle_is_refused_without_running(tmp_path, kind):
    path, marker, refused = _hostile_file(tmp_path, kind)
    with pytest.raises(FormatError, match=f"references {refused},"):
        convert_pickle(path)
    assert not marker.exists()


def test_cli_refuses_hostile_pickle_in_one_line(tmp_path):
    path, marker, refused = _hostile_file(tmp_path, "os.system")
    out = tmp_path / "out"
    result = _run_cli("convert", str(path), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and refused in lines[0] and "Traceback" not in result.stderr
    assert not marker.exists()
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporary folder left


def test_object_arrays_are_refused_and_plain_arrays_rebuilt(tmp_path):
    plain = tmp_path / "plain.pkl"
    values = np.arange(6, dtype=">f8").reshape(2, 3)
    plain.write_bytes(pickle.dumps({"a": values, "b": np.float32(2.5), "c": np.asfortranarray(values)}, protocol=4))
    content, sha = load_result_pickle(plain)
    assert np.array_equal(content["a"], values) and np.array_equal(content["c"], values)
    assert content["b"] == 2.5 and len(sha) == 64

    hostile = tmp_path / "objects.pkl"
    hostile.write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}, protocol=4))
    with pytest.raises(FormatError, match="not a plain number type"):
        load_result_pickle(hostile)


@pytest.mark.reference
def test_truncated_pickle_is_reported(reference_dir, tmp_path):
    data = _pickle_path(reference_dir, HOPPER_D4).read_bytes()
    path = tmp_path / "data_final.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="is truncated"):
        convert_pickle(path)
    result = _run_cli("convert", str(path), cwd=tmp_path)
    assert result.returncode == 1 and "is truncated" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("data", [b"", b"state,config\n1,2\n", b"\x89PNG\r\n\x1a\n"], ids=["empty", "text", "png"])
def test_non_pickle_file_is_reported(tmp_path, data):
    path = tmp_path / "data_final.pkl"
    path.write_bytes(data)
    with pytest.raises(FormatError, match="is not a pickle file"):
        convert_pickle(path)


def test_pickle_of_something_else_is_reported(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    with pytest.raises(FormatError, match="not a HaDES result pickle"):
        convert_pickle(path)


@pytest.mark.reference
def test_unknown_env_is_reported(reference_dir, tmp_path):
    data = _pickle_path(reference_dir, HOPPER_D4).read_bytes()
    name = b"\x8c\x06hopper"  # the ENV_NAME string; same length keeps the pickle's framing valid
    assert data.count(name) == 1
    path = tmp_path / "data_final.pkl"
    path.write_bytes(data.replace(name, b"\x8c\x06pogoer"))
    with pytest.raises(UnknownEnvError, match="unknown environment 'pogoer'"):
        convert_pickle(path)


@pytest.mark.reference
def test_refuses_to_replace_a_folder_that_is_not_a_dataset(reference_dir, tmp_path):
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    with pytest.raises(SpecError, match="not a hades dataset folder"):
        convert(_pickle_path(reference_dir, HOPPER_D4), tmp_path)
    assert keep.read_text() == "mine"


@pytest.mark.parametrize("target", [b"numpy.core.multiarray\n_reconstruct\n", b"numpy\nndarray\n", b"evosax.x\nEvoState\n"],
                         ids=["function", "array-class", "record-class"])
def test_pickle_cannot_modify_the_stand_ins(tmp_path, target):
    # BUILD with a slot state does setattr(stand_in, "__call__", ...) on whatever the global resolved to
    opcodes = b"\x80\x04c" + target + b"N}\x8c\x08__call__)s\x86b."
    path = tmp_path / "tamper.pkl"
    path.write_bytes(opcodes)
    with pytest.raises(FormatError):
        load_result_pickle(path)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": np.ones(3, np.float32)}, protocol=4))
    assert np.array_equal(load_result_pickle(plain)[0]["a"], np.ones(3))
