"""The environment catalogue and the batched, auto-resetting environments."""

from __future__ import annotations

import numpy as np
import pytest

from hades.envs import ENVS, EnvSpec, VecEnv, get_env_spec
from hades.errors import HadesError, SpecError, UnknownEnvError

BRAX = {"hopper": (11, 3), "walker2d": (17, 6), "halfcheetah": (17, 6), "ant": (27, 8), "humanoid": (244, 17),
        "humanoidstandup": (244, 17), "reacher": (11, 2), "inverted_double_pendulum": (8, 1)}
MINATAR = {"Asterix-MinAtar": (4, 5), "Breakout-MinAtar": (4, 3), "SpaceInvaders-MinAtar": (6, 4),
           "Freeway-MinAtar": (7, 3)}  # (channels, actions)


def test_catalogue_has_the_papers_envs_with_their_dims():
    assert set(ENVS) == set(BRAX) | set(MINATAR) | {"Pong-misc"}
    pong = get_env_spec("pong-misc")  # gymnax's grid Pong, the env of the paper's Pong D3 datasets
    assert (pong.library, pong.obs_shape, pong.obs_dim, pong.action_dim, pong.action_type, pong.episode_length) == (
        "gymnax", (30, 40, 3), 3600, 3, "discrete", 1000)
    for name, (obs, act) in BRAX.items():
        spec = get_env_spec(name)
        assert (spec.library, spec.obs_dim, spec.action_dim, spec.action_type) == ("brax", obs, act, "continuous")
        assert spec.episode_length == 1000 and spec.default_backend == "positional" and not spec.discrete
        assert spec.obs_shape == (obs,)
    for name, (channels, actions) in MINATAR.items():
        spec = get_env_spec(name)
        assert (spec.library, spec.action_type, spec.default_backend) == ("gymnax", "discrete", "gymnax")
        assert spec.obs_shape == (10, 10, channels) and spec.obs_dim == 100 * channels
        assert spec.action_dim == actions
        assert spec.episode_length == (2500 if name == "Freeway-MinAtar" else 1000)


@pytest.mark.parametrize("name", sorted(MINATAR))
def test_minatar_specs_match_gymnax(name):
    import gymnax

    env, params = gymnax.make(name)
    spec = get_env_spec(name)
    assert tuple(env.observation_space(params).shape) == spec.obs_shape
    assert env.num_actions == spec.action_dim


def test_lookup_is_case_insensitive():
    assert get_env_spec("HOPPER") is ENVS["hopper"]
    assert get_env_spec("breakout-minatar").name == "Breakout-MinAtar"
    assert get_env_spec("Inverted_Double_Pendulum").name == "inverted_double_pendulum"


@pytest.mark.parametrize("name, suggestion", [("hoper", "hopper"), ("walker", "walker2d"),
                                              ("Breakout-Minatar2", "Breakout-MinAtar")])
def test_unknown_env_suggests_the_closest(name, suggestion):
    with pytest.raises(UnknownEnvError) as info:
        get_env_spec(name)
    message = str(info.value)
    assert f"unknown environment {name!r}" in message and f"did you mean {suggestion!r}?" in message
    assert "known environments are hopper" in message and "\n" not in message
    assert isinstance(info.value, LookupError) and isinstance(info.value, HadesError)


def test_unknown_env_without_a_close_match():
    with pytest.raises(UnknownEnvError) as info:
        get_env_spec("zzzzzz")
    assert "did you mean" not in str(info.value) and "known environments are" in str(info.value)


def test_backends():
    hopper = get_env_spec("hopper")
    assert hopper.check_backend(None) == "positional"
    assert hopper.check_backend("generalized") == "generalized"
    with pytest.raises(SpecError) as info:
        hopper.check_backend("physx")
    assert "backend 'physx' is not available for hopper" in str(info.value) and "positional" in str(info.value)
    breakout = get_env_spec("Breakout-MinAtar")
    assert breakout.check_backend(None) == "gymnax"
    with pytest.raises(SpecError, match="choose one of gymnax"):
        breakout.check_backend("positional")
    with pytest.raises(SpecError):
        VecEnv(hopper, 2, backend="physx")


def test_env_spec_validates_itself():
    with pytest.raises(ValueError, match="library"):
        EnvSpec("x", "gym", 3, 1, "continuous", 10)
    with pytest.raises(ValueError, match="action_type"):
        EnvSpec("x", "brax", 3, 1, "box", 10)
    with pytest.raises(ValueError, match="does not hold"):
        EnvSpec("x", "gymnax", 10, 2, "discrete", 10, obs_shape=(3, 3))


def _rollout(env: VecEnv, actions, steps: int):
    """Reset, then step ``steps`` times with fixed actions, in one compiled program."""
    import jax

    def run(key):
        obs, state = env.reset(key)

        def body(state, step_key):
            obs, state, reward, done = env.step(step_key, state, actions)
            return state, (obs, reward, done)

        _, (obs_seq, rewards, dones) = jax.lax.scan(body, state, jax.random.split(key, steps))
        return obs, obs_seq, rewards, dones

    return [np.asarray(x) for x in jax.jit(run)(jax.random.PRNGKey(0))]


@pytest.mark.slow  # compiling the brax step takes 20-60 s on 2 cores
def test_hopper_reset_step_and_auto_reset():
    import jax.numpy as jnp

    env = VecEnv(get_env_spec("hopper"), 2, "positional", episode_length=5)
    assert (env.backend, env.episode_length, env.num_envs) == ("positional", 5, 2)
    obs, obs_seq, rewards, dones = _rollout(env, jnp.full((2, 3), 0.5), 12)
    assert obs.shape == (2, 11) and obs.dtype == np.float32
    assert obs_seq.shape == (12, 2, 11) and rewards.shape == (12, 2) and dones.shape == (12, 2)
    assert np.isfinite(obs_seq).all() and np.isfinite(rewards).all()
    assert dones.dtype == np.bool_
    # episodes of 5 steps: done on steps 5 and 10, and stepping continues after each
    assert dones[:, 0].tolist() == [False] * 4 + [True] + [False] * 4 + [True] + [False] * 2
    # brax resets to the first state: the step after a reset repeats the very first step
    np.testing.assert_allclose(obs_seq[5], obs_seq[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rewards[5], rewards[0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(obs_seq[1], obs_seq[0])


def test_breakout_reset_step_and_auto_reset():
    import jax.numpy as jnp

    env = VecEnv(get_env_spec("Breakout-MinAtar"), 3, episode_length=5)
    assert env.backend == "gymnax"
    obs, obs_seq, rewards, dones = _rollout(env, jnp.zeros((3,), jnp.int32), 12)
    assert obs.shape == (3, 400) and obs.dtype == np.float32
    assert set(np.unique(obs)) <= {0.0, 1.0} and obs.sum() > 0
    assert obs_seq.shape == (12, 3, 400) and rewards.shape == (12, 3) and dones.shape == (12, 3)
    # every env ends its 5-step episode on step 5 (or earlier if the ball is lost), then goes on
    assert dones[:5].any(axis=0).all()
    assert dones.sum(axis=0).min() >= 2
    assert (obs_seq.reshape(12, 3, 10, 10, 4).sum(axis=(2, 3)) > 0).all()


def test_breakout_full_length_episodes_do_not_end_early_by_truncation():
    import jax.numpy as jnp

    env = VecEnv(get_env_spec("Breakout-MinAtar"), 2)
    assert env.episode_length == 1000
    _, _, _, dones = _rollout(env, jnp.zeros((2,), jnp.int32), 5)
    assert not dones.any()
