"""Multi-task zero-shot policies: the padded training set, the masked loss, `train-from --multitask`
on two tiny datasets of different envs, the saved policy and `hades eval` of it on each task."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from conftest import (
    assert_one_line_error, cli_env, make_breakout_dataset, make_hopper_dataset, run_cli, tiny_recipe,
)

import hades
from hades.errors import SpecError
from hades.formats import sha256_file
from hades.multitask import Task, TaskLayout, check_tasks, training_set

TINY = ["--steps", "20", "--seeds", "2", "--envs", "1", "--eval-steps", "50"]


def make_walker2d_dataset(seed: int = 0, pairs: int = 5):
    """A small random walker2d dataset (17-dim states, 6-dim actions), running normalisation."""
    rng = np.random.default_rng(seed)
    return hades.Dataset(rng.normal(size=(pairs, 17)).astype("float32"), rng.normal(size=(pairs, 6)).astype("float32"),
                         "walker2d", "running", info={"license": "apache-2.0", "name": f"walker2d test {seed}"})


def make_space_invaders_dataset(seed: int = 0, pairs: int = 8):
    """A small random SpaceInvaders-MinAtar dataset (600-dim states, labels 0..3)."""
    rng = np.random.default_rng(seed)
    return hades.Dataset(rng.uniform(size=(pairs, 600)).astype("float32"), np.arange(pairs, dtype=np.int32) % 4,
                         "SpaceInvaders-MinAtar", info={"license": "apache-2.0", "name": f"space invaders test {seed}"})


def _layout(*datasets) -> TaskLayout:
    return TaskLayout(tuple(Task.of(data) for data in datasets))


# -- the layout ---------------------------------------------------------------------------------------

def test_padded_training_set_has_the_documented_layout():
    hopper = make_hopper_dataset(seed=1).replace(normalization="constant", obs_mean=np.ones(11), obs_var=np.ones(11))
    walker = make_walker2d_dataset(seed=1)
    layout = _layout(hopper, walker)
    assert (layout.obs_padding, layout.input_dim, layout.head_dim) == (17, 19, 6)
    assert layout.to_dict()["indicator_offset"] == 17 and layout.to_dict()["indicator_size"] == 2
    states, (targets, mask, weights) = training_set([hopper, walker], layout)
    assert states.shape == (9, 19) and targets.shape == (9, 6) and mask.shape == (9, 6) and weights.shape == (9,)
    # hopper: its (already normalised) states, zeros up to 17, indicator (1, 0); actions padded with zeros
    np.testing.assert_array_equal(states[:4, :11], hopper.states)
    np.testing.assert_array_equal(states[:4, 11:17], 0)
    np.testing.assert_array_equal(states[:4, 17:], [[1, 0]] * 4)
    np.testing.assert_array_equal(targets[:4, :3], hopper.actions)
    np.testing.assert_array_equal(targets[:4, 3:], 0)
    assert mask[:4].tolist() == [[True] * 3 + [False] * 3] * 4
    # walker2d: nothing to pad, indicator (0, 1), every action dim real
    np.testing.assert_array_equal(states[4:, :17], walker.states)
    np.testing.assert_array_equal(states[4:, 17:], [[0, 1]] * 5)
    np.testing.assert_array_equal(targets[4:], walker.actions)
    assert mask[4:].all()
    # each task weighs the same: 1 / (T * D)
    np.testing.assert_allclose(weights, [1 / 8] * 4 + [1 / 10] * 5)
    assert math.isclose(float(weights.sum()), 1.0, rel_tol=1e-6)
    # the env-side padding is the same function
    import jax.numpy as jnp

    np.testing.assert_array_equal(np.asarray(layout.inputs(0)(jnp.asarray(hopper.states))), states[:4])
    # per-task normalisation is the dataset's own
    assert [task.normalization for task in layout.tasks] == ["constant", "running"]
    np.testing.assert_array_equal(layout.tasks[0].normalization_arrays()[0], np.ones(11))


@pytest.mark.parametrize("loss", ["gaussian_nll", "mse"])
def test_masked_loss_ignores_padded_action_targets(loss):
    import jax

    from hades.learn import make_masked_loss
    from hades.policy import PolicySpec, make_network

    hopper, walker = make_hopper_dataset(seed=2), make_walker2d_dataset(seed=2)
    layout = _layout(hopper, walker)
    states, (targets, mask, weights) = training_set([hopper, walker], layout)
    network = make_network(PolicySpec((16, 16)), layout.head_dim, False)
    params = network.init(jax.random.PRNGKey(0), states[0])
    loss_fn = jax.jit(make_masked_loss(network, loss))
    base = float(loss_fn(params, states, (targets, mask, weights)))
    changed = targets.copy()
    changed[:4, 3:] = 100.0  # hopper's padded action dims
    assert float(loss_fn(params, states, (changed, mask, weights))) == base
    changed[0, 0] += 1.0  # a real one
    assert float(loss_fn(params, states, (changed, mask, weights))) != base
    # the loss is the mean over tasks of each task's mean loss over its real dims
    mean, log_std = (np.asarray(out, np.float64) for out in network.apply(params, states))
    per_task = []
    for rows, data in ((slice(0, 4), hopper), (slice(4, 9), walker)):
        dim = data.actions.shape[1]
        error = np.square(mean[rows, :dim] - data.actions)
        if loss == "gaussian_nll":
            scale = log_std[rows, :dim]
            error = 0.5 * error * np.exp(-2 * scale) + scale + 0.5 * np.log(2 * np.pi)
        per_task.append(error.sum(-1).mean())
    assert math.isclose(base, float(np.mean(per_task)), rel_tol=1e-5)


def test_masked_cross_entropy_gives_padded_classes_no_probability():
    import jax
    import optax

    from hades.learn import make_masked_loss
    from hades.policy import PolicySpec, make_network

    breakout, invaders = make_breakout_dataset(seed=1), make_space_invaders_dataset(seed=1)
    layout = _layout(breakout, invaders)
    assert (layout.obs_padding, layout.input_dim, layout.head_dim) == (600, 602, 4)
    states, (labels, mask, weights) = training_set([breakout, invaders], layout)
    assert labels.dtype == np.int32 and mask[:6].tolist() == [[True, True, True, False]] * 6 and mask[6:].all()
    network = make_network(PolicySpec((8,), "relu"), layout.head_dim, True)
    params = network.init(jax.random.PRNGKey(1), states[0])
    logits = np.asarray(network.apply(params, states))
    expected = [float(optax.softmax_cross_entropy_with_integer_labels(logits[:6, :3], breakout.actions).mean()),
                float(optax.softmax_cross_entropy_with_integer_labels(logits[6:], invaders.actions).mean())]
    got = float(make_masked_loss(network, "cross_entropy")(params, states, (labels, mask, weights)))
    assert math.isclose(got, float(np.mean(expected)), rel_tol=1e-5)


def test_masked_training_fits_every_task():
    import jax

    from hades.learn import make_train
    from hades.policy import make_network

    hopper, walker = make_hopper_dataset(seed=3), make_walker2d_dataset(seed=3)
    layout = _layout(hopper, walker)
    states, targets = training_set([hopper, walker], layout)
    recipe = tiny_recipe(hidden=(64, 64), steps=300)
    params, _ = jax.jit(make_train(recipe, layout.input_dim, layout.head_dim, False, masked=True))(
        jax.random.PRNGKey(0), states, targets)
    mean, _ = make_network(recipe.arch, layout.head_dim, False).apply(params, states)
    mean = np.asarray(mean)
    assert np.abs(mean[:4, :3] - hopper.actions).max() < 0.1
    assert np.abs(mean[4:] - walker.actions).max() < 0.1


def test_a_single_task_policy_embedded_in_the_layout_acts_the_same():
    """Zero input rows for the padding and the indicator, zero extra head outputs: the multi-task
    evaluation of task 0 (padded inputs, first outputs) scores exactly what the single-task one does."""
    import jax

    from hades.evaluate import make_act
    from hades.multitask_policy import MultiTaskPolicy
    from hades.policy import make_network
    from hades.policy_io import Policy, evaluate_policy

    breakout, invaders = make_breakout_dataset(seed=2), make_space_invaders_dataset(seed=2)
    layout = _layout(breakout, invaders)
    recipe = tiny_recipe(discrete=True, hidden=(8,))
    single = jax.tree.map(np.asarray, make_network(recipe.arch, 3, True).init(jax.random.PRNGKey(4), np.zeros(400)))
    dense = single["params"]
    kernel = np.zeros((layout.input_dim, 8), np.float32)
    kernel[:400] = dense["Dense_0"]["kernel"]
    head, bias = np.zeros((8, layout.head_dim), np.float32), np.zeros(layout.head_dim, np.float32)
    head[:, :3], bias[:3] = dense["Dense_1"]["kernel"], dense["Dense_1"]["bias"]
    embedded = {"params": {"Dense_0": {"kernel": kernel, "bias": dense["Dense_0"]["bias"]},
                           "Dense_1": {"kernel": head, "bias": bias}}}
    obs = np.random.default_rng(0).uniform(size=(64, 400)).astype(np.float32)
    key = jax.random.PRNGKey(5)
    actions = make_act(breakout.env_spec, recipe.arch, False)(single, obs, key)
    assert len(set(np.asarray(actions).tolist())) == 3  # every action is drawn: the comparison means something
    embedded_act = make_act(breakout.env_spec, recipe.arch, False, layout.inputs(0), layout.head_dim)
    np.testing.assert_array_equal(embedded_act(embedded, obs, key), actions)
    protocol = hades.EvalProtocol(2, 60)
    expected = evaluate_policy(Policy(single, breakout.env, recipe), protocol, num_runs=2)
    got = MultiTaskPolicy(embedded, recipe, layout).evaluate(breakout.env, protocol, num_runs=2)
    assert got.returns == expected.returns and got.episodes == expected.episodes


def test_what_cannot_share_one_policy_is_refused():
    hopper = make_hopper_dataset()
    cases = {
        "one dataset": ([hopper], "two or more envs, got one"),
        "same env twice": ([hopper, make_hopper_dataset(seed=1)], "one dataset per env"),
        "continuous and discrete": ([hopper, make_breakout_dataset()], "one head cannot serve both"),
    }
    for name, (datasets, fragment) in cases.items():
        with pytest.raises(SpecError, match=fragment):
            check_tasks(datasets)
    with pytest.raises(SpecError, match="does not fit the discrete actions"):
        hades.train_multitask([make_breakout_dataset(), make_space_invaders_dataset()], tiny_recipe(),
                              hades.EvalProtocol(1, 5), num_seeds=1)


# -- train-from --multitask and eval, as a user runs them -------------------------------------------

PAIRS = {
    "discrete": (lambda: make_breakout_dataset(seed=5), lambda: make_space_invaders_dataset(seed=5), "relu"),
    # two fresh processes compile the brax physics of two envs twice each (minutes on 2 cores)
    "brax": (lambda: make_hopper_dataset(seed=5), lambda: make_walker2d_dataset(seed=5), "tanh"),
}


@pytest.mark.parametrize("kind", ["discrete", pytest.param("brax", marks=pytest.mark.slow)])
def test_train_from_multitask_save_and_eval(kind, tmp_path):
    make_first, make_second, activation = PAIRS[kind]
    first, second = make_first(), make_second()
    env = cli_env(tmp_path)
    folders = [first.save(tmp_path / "a"), second.save(tmp_path / "b")]
    out = tmp_path / "policies"
    proc = run_cli("train-from", *folders, "--multitask", *TINY, "--arch", f"16,16:{activation}", "--json", "--save", out, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    multi, single = report["multitask"], report["single_task"]
    assert multi["envs"] == [first.env, second.env] and multi["seeds"] == [0, 1]
    assert multi["recipe"]["arch"]["activation"] == activation and multi["recipe"]["steps"] == 20
    assert multi["protocol"] == {"num_envs": 1, "num_steps": 50, "greedy": False, "episode_length": None}
    for task, single_task, data, folder in zip(multi["tasks"], single, (first, second), folders):
        assert task["env"] == data.env and task["dataset"] == {"id": str(folder), "sha256": data.sha256,
                                                               "pairs": data.pairs}
        assert len(task["returns"]) == 2 and all(math.isfinite(r) for r in task["returns"])
        assert single_task["env"] == data.env and single_task["seeds"] == [0, 1] and len(single_task["returns"]) == 2
        assert single_task["recipe"] == multi["recipe"] and single_task["protocol"] == multi["protocol"]
    assert len(multi["final_losses"]) == 2
    assert report["saved"] == [str(out / "seed0"), str(out / "seed1")]

    # the saved policy: its card lists every task, its score and the baseline; it loads back whole
    folder = out / "seed0"
    card = (folder / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---\n", 2)[1])["hades"]
    assert meta["sha256"] == sha256_file(folder / "policy.safetensors") and meta["kind"] == "policy"
    assert [task["env"]["id"] for task in meta["tasks"]] == [first.env, second.env]
    assert meta["multitask"]["input_dim"] == max(first.env_spec.obs_dim, second.env_spec.obs_dim) + 2
    for index, task in enumerate(meta["tasks"]):
        assert math.isclose(task["evaluation"]["mean_return"], multi["tasks"][index]["returns"][0], abs_tol=1e-2)
        assert task["single_task"]["returns"] == pytest.approx(single[index]["returns"], abs=1e-2)
        assert f"`{task['env']['id']}`" in card
    loaded = hades.Policy.load(folder)
    assert isinstance(loaded, hades.MultiTaskPolicy) and loaded.envs == (first.env, second.env)
    assert loaded.info["seed"] == 0 and loaded.layout.to_dict() == _layout(first, second).to_dict()
    again = tmp_path / "again"
    loaded.save(again)
    assert sha256_file(again / "policy.safetensors") == sha256_file(folder / "policy.safetensors")

    # hades eval: every task by default, one with --env
    proc = run_cli("eval", folder, "--envs", "1", "--eval-steps", "50", "--runs", "2", "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    tasks = json.loads(proc.stdout)["tasks"]
    assert [task["env"] for task in tasks] == [first.env, second.env]
    for task in tasks:
        assert len(task["returns"]) == 2 and all(math.isfinite(r) for r in task["returns"])
        assert task["protocol"] == multi["protocol"]
    proc = run_cli("eval", folder, "--envs", "1", "--eval-steps", "50", "--env", second.env, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"on {second.env}: mean return" in proc.stdout and first.env not in proc.stdout
    assert_one_line_error(run_cli("eval", folder, "--env", "ant", env=env, cwd=tmp_path), "has no task ant")


def test_train_from_multitask_bad_input_fails_with_one_line(tmp_path):
    env = cli_env(tmp_path)
    hopper = str(make_hopper_dataset(seed=1).save(tmp_path / "hopper"))
    other_hopper = str(make_hopper_dataset(seed=2).save(tmp_path / "hopper2"))
    breakout = str(make_breakout_dataset().save(tmp_path / "breakout"))
    walker = str(make_walker2d_dataset().save(tmp_path / "walker"))
    cases = {
        "continuous and discrete": ([hopper, breakout, "--multitask"], "one head cannot serve both"),
        "one dataset": ([hopper, "--multitask"], "without --multitask"),
        "same env twice": ([hopper, other_hopper, "--multitask"], "one dataset per env"),
        "several without --multitask": ([hopper, walker], "give --multitask"),
        "video": ([hopper, walker, "--multitask", "--video", str(tmp_path / "v.gif")], "drop it with --multitask"),
        "discrete loss": ([hopper, walker, "--multitask", "--loss", "cross_entropy"], "does not fit the continuous"),
    }
    failures = []
    for name, (args, fragment) in cases.items():
        out = tmp_path / "out"
        proc = run_cli("train-from", *args, *TINY, "--json", "--save", out, env=env, cwd=tmp_path)
        try:
            assert_one_line_error(proc, fragment)
            assert not out.exists()
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)


def test_train_from_multitask_prints_a_table(tmp_path):
    env = cli_env(tmp_path)
    folders = [make_breakout_dataset(seed=6).save(tmp_path / "a"), make_space_invaders_dataset(seed=6).save(tmp_path / "b")]
    proc = run_cli("train-from", *folders, "--multitask", "--arch", "8:relu", "--steps", "5", "--seeds", "1", "--envs", "1",
                   "--eval-steps", "20", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for fragment in ("multi-task policy on", "8:relu:orthogonal", "1 envs x 20 steps", "Breakout-MinAtar",
                     "SpaceInvaders-MinAtar", "400/3", "600/4", "multi-task", "single-task",
                     "obs zero-padded to 600 + a 2-value task indicator = 602; head 4"):
        assert fragment in proc.stdout, (fragment, proc.stdout)
