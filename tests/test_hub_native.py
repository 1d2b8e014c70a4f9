"""What Hub tools see: `datasets.load_dataset` on a pushed dataset, split detection of a folder
without a `configs` block, and a pushed policy's model card as huggingface_hub parses it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import make_breakout_dataset

import hades
from hades.files import FITNESS_CSV, LEGACY_VALIDATION_CSV, PARQUET_FILE, VALIDATION_CSV

LOAD_DATASET = """
import json, sys
import datasets
datasets.disable_progress_bars()
loaded = datasets.load_dataset(sys.argv[1])
train = loaded["train"]
features = train.features
print(json.dumps({
    "splits": sorted(loaded), "rows": train.num_rows, "columns": train.column_names,
    "state": [features["state"].feature.dtype, features["state"].length],
    "action": [features["action"].feature.dtype, features["action"].length],
    "dtype": str(train.with_format("numpy")[:]["state"].dtype),
    "env": train[0]["env"], "normalization": train[0]["normalization"],
    "obs_mean": train[0]["obs_mean"], "obs_var": train[0]["obs_var"], "states": train[:]["state"],
}))
"""


def _constant_dataset(pairs: int = 5) -> hades.Dataset:
    rng = np.random.default_rng(11)
    return hades.Dataset(rng.normal(size=(pairs, 11)), rng.normal(size=(pairs, 3)), "hopper", "constant",
                         rng.normal(size=11), rng.uniform(0.5, 2.0, size=11), info={"name": "hub native"})


def _run_folder(tmp_path: Path, dataset: hades.Dataset, scores_name: str) -> Path:
    """A run's folder as hub users may find it: card without `configs`, the parquet, the run's CSV files."""
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    (scratch / FITNESS_CSV).write_text("generation,mean\n1,2.0\n2,3.0\n")
    (scratch / scores_name).write_text("generation,mean,std,min,max\n2,3.0,0.1,2.9,3.1\n")
    folder = dataset.save(tmp_path / "run", parquet=False,
                          extra_files={FITNESS_CSV: scratch / FITNESS_CSV, scores_name: scratch / scores_name})
    dataset.write_parquet(folder / PARQUET_FILE)
    assert "configs:" not in (folder / "README.md").read_text()
    return folder


def test_load_dataset_through_the_hub_gives_float32_features_and_the_statistics(hub_server, hades_env, tmp_path):
    dataset = _constant_dataset()
    hades.push(dataset, "hf://datasets/org/native")
    proc = subprocess.run([sys.executable, "-c", LOAD_DATASET, "org/native"], env=hades_env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["splits"] == ["train"] and found["rows"] == 5
    assert found["columns"] == ["state", "action", "env", "normalization", "obs_mean", "obs_var"]
    assert found["state"] == ["float32", 11] and found["action"] == ["float32", 3] and found["dtype"] == "float32"
    assert found["env"] == "hopper" and found["normalization"] == "constant"
    np.testing.assert_array_equal(np.asarray(found["obs_mean"], np.float32), dataset.obs_mean)
    np.testing.assert_array_equal(np.asarray(found["obs_var"], np.float32), dataset.obs_var)
    np.testing.assert_array_equal(np.asarray(found["states"], np.float32), dataset.states)


def test_a_folder_without_configs_has_one_train_split_beside_the_run_csv_files(tmp_path):
    import datasets

    folder = _run_folder(tmp_path, _constant_dataset(), VALIDATION_CSV)
    builder = datasets.load_dataset_builder(str(folder), cache_dir=str(tmp_path / "cache"))
    assert list(builder.config.data_files) == ["train"]
    assert [Path(path).name for path in builder.config.data_files["train"]] == ["train.parquet"]
    builder.download_and_prepare()
    train = builder.as_dataset(split="train")
    assert train.num_rows == 5 and train.features["state"].length == 11


def test_an_older_runs_validation_csv_is_pushed_as_scores_csv(hub_server, hades_env, tmp_path):
    folder = _run_folder(tmp_path, _constant_dataset(), LEGACY_VALIDATION_CSV)
    result = hades.push(folder, "hf://datasets/org/older-run")
    files = hub_server.state.repos[("dataset", "org/older-run")].commits[result.commit].files
    assert VALIDATION_CSV in files and LEGACY_VALIDATION_CSV not in files and FITNESS_CSV in files
    assert (folder / LEGACY_VALIDATION_CSV).is_file()  # the local folder is left as it was
    proc = subprocess.run([sys.executable, "-c", LOAD_DATASET, "org/older-run"], env=hades_env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["splits"] == ["train"]


def test_a_pushed_policy_card_parses_into_eval_results(hub_server, tmp_path):
    from huggingface_hub import ModelCard
    from test_cli_json import run_json

    data = make_breakout_dataset(seed=2)
    hades.push(data, "hf://datasets/org/breakout-data", tag="v1")
    report = run_json(["train-from", "hf://datasets/org/breakout-data@v1", "--arch", "8:relu", "--steps", "10",
                       "--seeds", "2", "--envs", "2", "--eval-steps", "60", "--save", tmp_path / "policies",
                       "--video", tmp_path / "rollout.gif", "--json"])
    assert report["video"] == str(tmp_path / "rollout.gif") and report["video_mp4"] == str(tmp_path / "rollout.mp4")
    assert (tmp_path / "rollout.mp4").read_bytes()[4:8] == b"ftyp"
    first = tmp_path / "policies" / "seed0"
    assert sorted(p.name for p in first.iterdir()) == ["README.md", "policy.safetensors", "replay.gif", "replay.mp4"]
    assert sorted(p.name for p in (tmp_path / "policies" / "seed1").iterdir()) == ["README.md", "policy.safetensors"]
    pushed = run_json(["push", first, "--to", "hf://models/org/breakout-policy", "--json"])
    files = hub_server.state.repos[("model", "org/breakout-policy")].commits[pushed["commit"]].files
    assert {"replay.gif", "replay.mp4"} <= set(files)
    card = ModelCard(files["README.md"].decode("utf-8"))
    (result,) = card.data.eval_results
    assert (result.task_type, result.dataset_type, result.dataset_name) == ("reinforcement-learning",) + ("Breakout-MinAtar",) * 2
    assert result.metric_type == "mean_reward" and result.metric_name == "mean_reward"
    mean, std = (float(part) for part in result.metric_value.split(" +/- "))
    assert abs(mean - report["returns"][0]) < 0.01 and abs(std - report["episode_stds"][0]) < 0.01
    assert card.data.datasets == ["org/breakout-data"] and card.data.library_name == "hades-zoo"
    section = card.data.to_dict()["hades"]
    assert section["dataset"] == {"name": "hf://datasets/org/breakout-data@v1", "sha256": data.sha256, "pairs": data.pairs}
    assert "replay.mp4" in card.text and "replay.gif" in card.text
    policy = hades.load(f"hf://models/org/breakout-policy@{pushed['commit']}")
    assert isinstance(policy, hades.Policy) and policy.env == "Breakout-MinAtar"


def test_a_push_writes_the_parquet_mirror_afresh(hub_server, tmp_path):
    import io

    import datasets
    import pyarrow.parquet as pq

    dataset = _constant_dataset()
    folder = dataset.save(tmp_path / "ds", parquet=True)
    datasets.Dataset.from_dict({"state": dataset.states.tolist()}).to_parquet(str(folder / PARQUET_FILE))  # stale
    result = hades.push(folder, "hf://datasets/org/fresh")
    data = hub_server.state.repos[("dataset", "org/fresh")].commits[result.commit].files[PARQUET_FILE]
    table = pq.read_table(io.BytesIO(data))
    assert table.column_names == ["state", "action", "env", "normalization", "obs_mean", "obs_var"]
    np.testing.assert_array_equal(np.asarray(table.column("state").to_pylist(), np.float32), dataset.states)
