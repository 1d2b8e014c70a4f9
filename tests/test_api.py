"""The package's public functions: ``import hades`` stays light, ``hades.evaluate`` and
``hades.publish`` are callable whichever of their modules were imported, and load, pull, push,
train_from and evaluate return typed results."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_breakout_dataset, make_hopper_dataset, tiny_recipe

import hades
from hades.errors import FormatError

HEAVY = ("jax", "jaxlib", "brax", "flax", "optax", "mujoco", "gymnax", "evosax")
PUBLIC = ("load", "pull", "push", "train_from", "evaluate", "distill", "publish")


def test_the_public_names_resolve_without_importing_jax():
    script = (
        "import json, sys\n"
        "import hades\n"
        f"found = {{name: callable(getattr(hades, name)) for name in {PUBLIC!r}}}\n"
        "for name in ('Dataset', 'Policy', 'PullResult', 'PushResult', 'TrainFromResult', 'PolicyEvaluation',"
        " 'DistillResult', 'PublishResult', 'EvalProtocol', 'Recipe'):\n"
        "    assert isinstance(getattr(hades, name), type), name\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps({'callable': found, 'heavy': heavy}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report == {"callable": {name: True for name in PUBLIC}, "heavy": []}


def test_evaluate_and_publish_stay_callable_after_their_modules_are_imported():
    import hades.evaluate
    import hades.publish as publish_module
    from hades import publish

    assert callable(hades.evaluate) and hades.evaluate.EvalProtocol is hades.EvalProtocol
    assert publish is publish_module and callable(publish) and hasattr(publish, "PublishError")
    assert set(PUBLIC) <= set(hades.__all__)


def test_load_pull_and_push_a_dataset_object(hub_server, tmp_path):
    dataset = make_hopper_dataset(8)
    pushed = hades.push(dataset, "hf://datasets/org/api-data", tag="v1")
    assert isinstance(pushed, hades.PushResult) and pushed.tag_id == "hf://datasets/org/api-data@v1"
    pulled = hades.pull("hf://datasets/org/api-data@v1")
    assert isinstance(pulled, hades.PullResult) and dataclasses.is_dataclass(pulled)
    assert (pulled.kind, pulled.sha256, pulled.env, pulled.pairs) == ("dataset", dataset.sha256, "hopper", 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pulled.kind = "policy"
    loaded = hades.load(pushed.id)
    assert isinstance(loaded, hades.Dataset) and loaded.sha256 == dataset.sha256
    assert hades.load(pulled.path / "dataset.safetensors").sha256 == dataset.sha256
    with pytest.raises(TypeError, match="takes a folder, a hades.Dataset or a hades.Policy"):
        hades.push(object(), "hf://datasets/org/api-data")


def test_train_from_evaluate_and_the_policies_it_keeps(hades_env, tmp_path):
    folder = make_breakout_dataset(seed=5).save(tmp_path / "dataset")
    protocol = hades.EvalProtocol(num_envs=2, num_steps=40)
    result = hades.train_from(str(folder), tiny_recipe(discrete=True, hidden=(8,), steps=5), arch="16:relu",
                              num_seeds=2, protocol=protocol, keep_params=True)
    assert isinstance(result, hades.TrainFromResult) and result.recipe.arch.hidden == (16,)
    assert result.source == str(folder) and len(result.episode_stds) == 2
    policies = result.policies()
    assert [policy.info["seed"] for policy in policies] == [0, 1]
    assert policies[0].info["dataset"]["name"] == str(folder)
    evaluation = hades.evaluate(policies[0], protocol, runs=2)
    assert isinstance(evaluation, hades.PolicyEvaluation) and len(evaluation.returns) == 2
    assert evaluation.mean == pytest.approx(np.mean(evaluation.returns))
    saved = policies[1].save(tmp_path / "policy")
    assert isinstance(hades.load(saved), hades.Policy)
    assert hades.evaluate(str(saved), protocol).to_dict()["protocol"] == protocol.to_dict()
    with pytest.raises(FormatError, match="is a dataset, not a policy"):
        hades.evaluate(str(folder), protocol)
    with pytest.raises(ValueError, match="keep_params=True"):
        hades.train_from(str(folder), tiny_recipe(discrete=True, steps=2), num_seeds=1, protocol=protocol).policy(0)
