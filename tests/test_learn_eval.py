"""Supervised learning on a dataset, evaluation in the env under a protocol, and train-from."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from conftest import make_breakout_dataset, make_hopper_dataset, tiny_recipe

from hades.envs import get_env_spec
from hades.evaluate import EvalProtocol, make_act, make_evaluate, normalize_running
from hades.learn import LOSSES, Recipe, make_loss, make_train, paper_recipe
from hades.policy import PolicySpec, make_network
from hades.trainfrom import train_from


def _fit(dataset, recipe: Recipe, seed: int = 0):
    """Train once; return (network, initial params, trained params, final loss reported by train)."""
    import jax
    import jax.numpy as jnp

    spec = dataset.env_spec
    network = make_network(recipe.arch, spec.action_dim, spec.discrete)
    key = jax.random.PRNGKey(seed)
    initial = jax.jit(network.init)(key, jnp.zeros((spec.obs_dim,), jnp.float32))
    train = jax.jit(make_train(recipe, spec.obs_dim, spec.action_dim, spec.discrete))
    params, final_loss = train(key, dataset.states, dataset.actions)
    return network, initial, params, float(final_loss)


# -- learning ------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["gaussian_nll", "mse"])
def test_training_lowers_the_loss_and_fits_the_targets(loss):
    dataset = make_hopper_dataset(seed=1)
    recipe = Recipe(PolicySpec((32, 32)), loss, 5e-3, 200, 0.5)
    network, initial, params, final_loss = _fit(dataset, recipe)
    loss_fn = make_loss(network, loss)
    before = float(loss_fn(initial, dataset.states, dataset.actions))
    after = float(loss_fn(params, dataset.states, dataset.actions))
    # train() initialises from its key exactly like network.init: the same starting point
    assert before > 1.0
    assert after < before - 1.0
    assert math.isclose(final_loss, after, abs_tol=0.1)
    mean, log_std = network.apply(params, dataset.states)
    initial_mean, _ = network.apply(initial, dataset.states)
    assert np.abs(np.asarray(initial_mean) - dataset.actions).max() > 0.5
    assert np.abs(np.asarray(mean) - dataset.actions).max() < 0.05
    if loss == "gaussian_nll":  # the state-independent log-std is learned: the targets are fitted, so it shrinks
        assert (np.asarray(log_std) < -0.5).all()
        np.testing.assert_allclose(log_std[0], log_std[-1])
    else:  # MSE ignores the log-std
        np.testing.assert_array_equal(log_std, 0)


def test_cross_entropy_learns_the_labels():
    dataset = make_breakout_dataset(seed=1)
    recipe = tiny_recipe(discrete=True)
    network, initial, params, final_loss = _fit(dataset, recipe)
    loss_fn = make_loss(network, "cross_entropy")
    before = float(loss_fn(initial, dataset.states, dataset.actions))
    after = float(loss_fn(params, dataset.states, dataset.actions))
    assert math.isclose(before, math.log(3), rel_tol=0.05)  # a near-uniform head at init
    assert after < 0.05 and final_loss < 0.05
    assert np.asarray(network.apply(params, dataset.states)).argmax(-1).tolist() == dataset.actions.tolist()


def test_training_is_deterministic_per_key():
    import jax

    dataset = make_hopper_dataset(seed=2)
    train = jax.jit(make_train(tiny_recipe(), 11, 3, False))
    kernel = lambda key: np.asarray(train(jax.random.PRNGKey(key), dataset.states, dataset.actions)[0]["params"]["Dense_0"]["kernel"])  # noqa: E731
    first, again, other = kernel(3), kernel(3), kernel(4)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_recipe_validation():
    assert Recipe() == Recipe(PolicySpec((512, 512), "tanh"), "gaussian_nll", 5e-3, 200, 0.5, 1e-5)
    with pytest.raises(ValueError, match="loss must be one of gaussian_nll, mse, cross_entropy"):
        Recipe(loss="huber")
    with pytest.raises(ValueError, match="lr must be positive"):
        Recipe(lr=0.0)
    with pytest.raises(ValueError, match="lr must be positive"):
        Recipe(lr=-1e-3)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        Recipe(steps=0)
    with pytest.raises(ValueError, match="max_grad_norm must be positive or None"):
        Recipe(max_grad_norm=0.0)
    assert Recipe(max_grad_norm=None).max_grad_norm is None
    assert set(LOSSES) == {"gaussian_nll", "mse", "cross_entropy"}


def test_recipe_dict_roundtrip():
    recipe = Recipe(PolicySpec((64, 32), "relu", "lecun"), "mse", 1e-3, 50, None, 1e-8)
    data = recipe.to_dict()
    assert data["arch"] == {"hidden": [64, 32], "activation": "relu", "init": "lecun"}
    assert json.loads(json.dumps(data)) == data
    assert Recipe.from_dict(data) == recipe


def test_paper_recipes():
    hopper = paper_recipe("hopper", False)
    assert hopper == Recipe(PolicySpec((512, 512), "tanh", "orthogonal"), "gaussian_nll", 5e-3, 200, 0.5, 1e-5)
    assert paper_recipe("inverted_double_pendulum", False).steps == 200
    assert paper_recipe("walker2d", False).steps == 400 and paper_recipe("halfcheetah", False).steps == 400
    minatar = paper_recipe("Breakout-MinAtar", True)
    assert minatar == Recipe(PolicySpec((512, 512), "relu"), "cross_entropy", 0.03, 64, None)
    assert make_hopper_dataset().recipe == hopper


def test_loss_must_fit_the_action_type():
    with pytest.raises(ValueError, match="does not fit continuous actions"):
        make_train(tiny_recipe(discrete=True), 11, 3, discrete=False)
    with pytest.raises(ValueError, match="does not fit discrete actions"):
        make_train(tiny_recipe(), 400, 3, discrete=True)


# -- running normalisation -------------------------------------------------------------------------

def test_normalize_running_matches_numpy_on_a_stream():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=3.0, scale=2.0, size=(4, 5)).astype(np.float32) for _ in range(25)]
    stats = (jnp.zeros(5), jnp.ones(5), jnp.asarray(1e-4))
    update = jax.jit(normalize_running)
    prior = 1e-4
    for index, batch in enumerate(batches):
        stats, normalised = update(stats, jnp.asarray(batch))
        seen = np.concatenate(batches[: index + 1]).astype(np.float64)
        count = len(seen) + prior
        # the statistics pool a pseudo-sample of weight 1e-4 at mean 0, variance 1 with the stream
        mean = seen.sum(0) / count
        var = (prior * (1.0 + mean**2) + np.square(seen - mean).sum(0)) / count
        np.testing.assert_allclose(stats[0], mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stats[1], var, rtol=1e-4, atol=1e-5)
        assert math.isclose(float(stats[2]), count, rel_tol=1e-6)
        # the batch is normalised with the statistics that already include it
        np.testing.assert_allclose(normalised, (batch - mean) / np.sqrt(var + 1e-8), rtol=1e-3, atol=1e-4)
    everything = np.concatenate(batches).astype(np.float64)
    np.testing.assert_allclose(stats[0], everything.mean(0), rtol=1e-4)
    np.testing.assert_allclose(stats[1], everything.var(0), rtol=1e-3)


def test_normalize_running_first_batch_is_dominated_by_the_data():
    import jax.numpy as jnp

    obs = jnp.asarray([[1.0, 10.0], [3.0, 30.0]])
    (mean, var, count), normalised = normalize_running((jnp.zeros(2), jnp.ones(2), jnp.asarray(1e-4)), obs)
    np.testing.assert_allclose(mean, [2.0, 20.0], rtol=1e-3)
    np.testing.assert_allclose(var, [1.0, 100.0], rtol=1e-3)
    np.testing.assert_allclose(normalised, [[-1.0, -1.0], [1.0, 1.0]], rtol=1e-3)


# -- acting and evaluating ---------------------------------------------------------------------------

def test_greedy_and_sampled_continuous_actions():
    import jax
    import jax.numpy as jnp

    spec, arch = get_env_spec("hopper"), PolicySpec((16,))
    network = make_network(arch, 3, False)
    params = network.init(jax.random.PRNGKey(0), jnp.zeros(11))
    params["params"]["log_std"] = jnp.log(jnp.asarray([0.5, 1.0, 2.0]))
    obs = jax.random.normal(jax.random.PRNGKey(1), (2, 11))
    mean, _ = network.apply(params, obs)
    greedy = jax.jit(make_act(spec, arch, greedy=True))
    sampled = jax.jit(jax.vmap(make_act(spec, arch, greedy=False), in_axes=(None, None, 0)))
    np.testing.assert_allclose(greedy(params, obs, jax.random.PRNGKey(5)), mean, rtol=1e-6)
    np.testing.assert_array_equal(greedy(params, obs, jax.random.PRNGKey(5)), greedy(params, obs, jax.random.PRNGKey(6)))
    draws = np.asarray(sampled(params, obs, jax.random.split(jax.random.PRNGKey(7), 4000)))
    assert draws.shape == (4000, 2, 3)
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.12)
    np.testing.assert_allclose(draws.std(0), np.broadcast_to([0.5, 1.0, 2.0], (2, 3)), rtol=0.06)


def test_greedy_and_sampled_discrete_actions():
    import jax
    import jax.numpy as jnp

    spec, arch = get_env_spec("Breakout-MinAtar"), PolicySpec((8,), "relu")
    network = make_network(arch, 3, True)
    params = network.init(jax.random.PRNGKey(0), jnp.zeros(400))
    params["params"]["Dense_1"]["bias"] = jnp.asarray([0.0, 1.0, -1.0])
    obs = jnp.zeros((1, 400))
    probs = np.asarray(jax.nn.softmax(network.apply(params, obs)))[0]
    greedy = jax.jit(make_act(spec, arch, greedy=True))
    keys = jax.random.split(jax.random.PRNGKey(3), 3000)
    assert {int(greedy(params, obs, key)[0]) for key in keys[:10]} == {1}
    sampled = jax.jit(jax.vmap(make_act(spec, arch, greedy=False), in_axes=(None, None, 0)))
    draws = np.asarray(sampled(params, obs, keys))[:, 0]
    frequencies = np.bincount(draws, minlength=3) / len(draws)
    np.testing.assert_allclose(frequencies, probs, atol=0.03)


def test_eval_protocol():
    protocol = EvalProtocol()
    assert (protocol.num_envs, protocol.num_steps, protocol.greedy, protocol.episode_length) == (4, 1024, False, None)
    assert protocol.to_dict() == {"num_envs": 4, "num_steps": 1024, "greedy": False, "episode_length": None}
    for bad, fragment in (({"num_envs": 0}, "num_envs"), ({"num_steps": 0}, "num_steps"), ({"episode_length": 0}, "episode_length")):
        with pytest.raises(ValueError, match=fragment):
            EvalProtocol(**bad)


def test_eval_protocol_for_episodes():
    hopper = get_env_spec("hopper")
    assert EvalProtocol.for_episodes(hopper, 8) == EvalProtocol(4, 2000, False, None)
    assert EvalProtocol.for_episodes(hopper, 5).num_steps == 2000  # ceil(5 / 4) episodes per env
    assert EvalProtocol.for_episodes(hopper, 4, num_envs=4).num_steps == 1000
    assert EvalProtocol.for_episodes(hopper, 3, num_envs=1, greedy=True) == EvalProtocol(1, 3000, True, None)
    assert EvalProtocol.for_episodes(hopper, 6, num_envs=2, episode_length=20) == EvalProtocol(2, 60, False, 20)
    assert EvalProtocol.for_episodes(get_env_spec("Freeway-MinAtar"), 2, num_envs=2).num_steps == 2500
    with pytest.raises(ValueError, match="num_episodes must be at least 1"):
        EvalProtocol.for_episodes(hopper, 0)


def _breakout_policy(seed: int = 0):
    dataset = make_breakout_dataset(seed=seed)
    _, _, params, _ = _fit(dataset, tiny_recipe(discrete=True))
    return dataset, params


@pytest.mark.parametrize("greedy", [False, True])
def test_evaluation_counts_short_episodes(greedy):
    import jax

    dataset, params = _breakout_policy()
    protocol = EvalProtocol(num_envs=2, num_steps=50, greedy=greedy, episode_length=20)
    evaluate = jax.jit(make_evaluate(dataset.env_spec, tiny_recipe(discrete=True).arch, protocol, "none"))
    obs_mean, obs_var = dataset.normalization_arrays()
    metrics = {name: float(value) for name, value in evaluate(params, jax.random.PRNGKey(0), obs_mean, obs_var).items()}
    # each env finishes at least two 20-step episodes in 50 steps
    assert metrics["episodes"] >= 4 and metrics["episodes"] == int(metrics["episodes"])
    assert math.isfinite(metrics["mean_return"]) and metrics["mean_return"] >= 0
    assert math.isclose(metrics["mean_return"], metrics["return_sum"] / metrics["episodes"], rel_tol=1e-6)
    # the spread of the completed episodes' returns: no wider than the largest possible return
    assert 0 <= metrics["return_std"] <= metrics["return_sum"] and math.isfinite(metrics["return_std"])
    again = evaluate(params, jax.random.PRNGKey(0), obs_mean, obs_var)
    assert float(again["mean_return"]) == metrics["mean_return"]


def test_evaluation_rejects_an_unknown_normalisation():
    with pytest.raises(ValueError, match="normalization must be one of"):
        make_evaluate(get_env_spec("Breakout-MinAtar"), PolicySpec((8,)), EvalProtocol(1, 5), "batch")


@pytest.mark.slow  # compiles the brax physics (20-60 s on 2 cores)
def test_hopper_evaluation_with_running_normalisation_counts_episodes():
    dataset = make_hopper_dataset(seed=4).replace(normalization="running")
    protocol = EvalProtocol(num_envs=2, num_steps=50, episode_length=20)
    result = train_from(dataset, tiny_recipe(), protocol, num_seeds=2)
    assert result.normalization == "running"
    assert np.isfinite(result.returns).all() and (result.episodes >= 4).all()
    assert result.returns[0] != result.returns[1]


# -- train-from ------------------------------------------------------------------------------------

def test_train_from_is_per_seed_whatever_the_chunking():
    dataset = make_breakout_dataset(seed=2)
    recipe = tiny_recipe(discrete=True)
    protocol = EvalProtocol(num_envs=2, num_steps=100)
    calls = []
    one = train_from(dataset, recipe, protocol, num_seeds=3, chunk_size=1, keep_params=True,
                     progress=lambda *args: calls.append(args))
    two = train_from(dataset, recipe, protocol, num_seeds=3, chunk_size=2, keep_params=True)  # last chunk padded
    assert one.seeds == two.seeds == (0, 1, 2)
    assert one.returns.shape == one.episodes.shape == one.final_losses.shape == (3,)
    np.testing.assert_allclose(one.returns, two.returns, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(one.episodes, two.episodes)
    np.testing.assert_allclose(one.final_losses, two.final_losses, rtol=1e-4)
    kernel = lambda result: np.asarray(result.params["params"]["Dense_0"]["kernel"])  # noqa: E731
    assert kernel(one).shape == (3, 400, 16)
    np.testing.assert_allclose(kernel(one), kernel(two), rtol=1e-5, atol=1e-6)
    # different seeds are different policies
    assert not np.allclose(kernel(one)[0], kernel(one)[1])
    assert len(set(one.final_losses.tolist())) == 3
    assert len(set(one.episodes.tolist()) | set(one.returns.round(6).tolist())) > 1
    assert np.isfinite(one.returns).all() and (one.episodes > 0).all()
    assert calls[0] == ("compile", 0, 3) and calls[1:] == [("run", 1, 3), ("run", 2, 3), ("run", 3, 3)]
    assert set(one.timings) == {"compile_s", "run_s"}
    report = one.to_dict()
    assert json.loads(json.dumps(report)) == report
    assert report["seeds"] == [0, 1, 2] and len(report["returns"]) == 3 and report["env"] == "Breakout-MinAtar"
    assert math.isclose(report["mean"], float(np.mean(one.returns)), abs_tol=1e-3)
    assert report["recipe"] == recipe.to_dict() and report["protocol"] == protocol.to_dict()
    # the first seed shifts the whole range
    shifted = train_from(dataset, recipe, protocol, num_seeds=1, first_seed=2)
    assert shifted.seeds == (2,)
    np.testing.assert_allclose(shifted.returns, one.returns[2:], rtol=1e-4, atol=1e-6)


def test_train_from_defaults_to_the_datasets_recipe_and_the_standard_protocol():
    dataset = make_breakout_dataset().replace(info={"recipe": tiny_recipe(discrete=True, hidden=(8,)).to_dict()})
    assert dataset.recipe.arch.hidden == (8,)
    with pytest.raises(ValueError, match="num_seeds must be at least 1"):
        train_from(dataset, num_seeds=0)
    short = dataclasses.replace(dataset.recipe, steps=5)
    result = train_from(dataset.replace(info={"recipe": short.to_dict()}), protocol=EvalProtocol(1, 20), num_seeds=1)
    assert result.recipe == short and result.params is None


def test_freeze_normalization_pools_what_the_policies_saw(tmp_path):
    """Breakout observations are 0/1 grids, so the pooled variance of each cell must be m(1 - m)."""
    from hades.dataset import Dataset
    from hades.trainfrom import freeze_normalization, make_train_and_evaluate, measure_obs_stats, seed_keys

    recipe = tiny_recipe(discrete=True, hidden=(8,))
    dataset = make_breakout_dataset(seed=3).replace(normalization="running", info={"recipe": recipe.to_dict()})
    protocol = EvalProtocol(num_envs=2, num_steps=40)
    mean, var = measure_obs_stats(dataset, num_seeds=3, first_seed=7, protocol=protocol)
    assert mean.shape == var.shape == (400,) and mean.dtype == np.float32
    # each seed ended with its own statistics; the pooled mean is their average
    _, metrics, _ = make_train_and_evaluate(dataset, recipe, protocol)(seed_keys([7, 8, 9]))
    per_seed = np.asarray(metrics["obs_mean"])
    assert not np.allclose(per_seed[0], per_seed[1])
    np.testing.assert_allclose(mean, per_seed.mean(0), atol=1e-5)
    assert 0 < mean.max() <= 1 and mean.min() >= 0
    np.testing.assert_allclose(var, mean * (1 - mean), atol=1e-3)

    frozen = freeze_normalization(dataset, num_seeds=3, first_seed=7, protocol=protocol)
    assert frozen.normalization == "constant"
    np.testing.assert_array_equal(frozen.obs_mean, mean)
    np.testing.assert_array_equal(frozen.states, dataset.states)
    np.testing.assert_array_equal(frozen.actions, dataset.actions)
    changed = frozen.info["normalization_changed"]
    assert changed == {"from": "running", "from_sha256": dataset.sha256, "seeds": [7, 9],
                       "protocol": protocol.to_dict()}
    frozen.save(tmp_path / "frozen")
    loaded = Dataset.load(tmp_path / "frozen")
    np.testing.assert_array_equal(loaded.obs_var, var)
    card = (tmp_path / "frozen" / "README.md").read_text()
    assert f"evolved with `running` normalisation (the dataset with sha256 `{dataset.sha256}`)" in card
    assert "seeds 7-9" in card

    with pytest.raises(ValueError, match="needs a dataset with running normalisation"):
        measure_obs_stats(frozen)
    with pytest.raises(ValueError, match="num_seeds must be at least 1"):
        measure_obs_stats(dataset, num_seeds=0)
