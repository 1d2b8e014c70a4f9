"""Dataset states back to environment states: raw observations, and the Brax poses that produce them.

States are stored normalised; a picture needs the env's own observations, and a Brax picture the
joint positions behind them. Running statistics are not stored, so they are estimated from a
short random-action rollout.
"""

from __future__ import annotations

import functools

import numpy as np

from hades.dataset import Dataset
from hades.envs import NORM_EPS, EnvSpec
from hades.errors import SpecError

# Steps and envs of the random-action rollout that stands in for running statistics.
RUNNING_ESTIMATE_STEPS = 256
RUNNING_ESTIMATE_ENVS = 4

# How a Brax observation starts: the leading coordinates of q that it leaves out.
_ROOT_DROPPED = {"hopper": 1, "walker2d": 1, "halfcheetah": 1, "ant": 2, "humanoid": 2, "humanoidstandup": 2}
# Envs whose observation replaces q[1] (the root's slide along z) with the torso's height.
_HEIGHT_OBSERVED = ("hopper", "walker2d")
# Envs with a free root joint: q[3:7] is a quaternion.
_FREE_ROOT = ("ant", "humanoid", "humanoidstandup")
RENDERABLE_BRAX_ENVS = (*_ROOT_DROPPED, "reacher", "inverted_double_pendulum")


def raw_observations(dataset: Dataset) -> tuple[np.ndarray, str]:
    """The dataset's states in the env's own observation space, and a note on how they were obtained."""
    states = np.asarray(dataset.states, dtype=np.float64)
    if dataset.normalization == "constant":
        mean, var = dataset.normalization_arrays()
        return states * np.sqrt(np.asarray(var, np.float64) + NORM_EPS) + mean, ""
    if dataset.normalization == "running":
        mean, var = estimate_observation_stats(dataset.env_spec, dataset.backend)
        note = (f"running normalisation: statistics estimated from a {RUNNING_ESTIMATE_ENVS}x"
                f"{RUNNING_ESTIMATE_STEPS}-step random-action rollout")
        return states * np.sqrt(var + NORM_EPS) + mean, note
    return states, ""


def estimate_observation_stats(spec: EnvSpec, backend: str | None = None, steps: int = RUNNING_ESTIMATE_STEPS,
                               num_envs: int = RUNNING_ESTIMATE_ENVS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of observations along a random-action rollout (uniform actions).

    Computed once per process for each env, backend and rollout size (compiling the rollout
    dominates the cost).
    """
    mean, var = _estimate_observation_stats(spec.name, spec.check_backend(backend), steps, num_envs, seed)
    return mean.copy(), var.copy()


@functools.lru_cache(maxsize=None)
def _estimate_observation_stats(env_name: str, backend: str, steps: int, num_envs: int, seed: int):
    import jax
    import jax.numpy as jnp

    from hades.envs import VecEnv, get_env_spec

    spec = get_env_spec(env_name)
    env = VecEnv(spec, num_envs, backend)

    def sample_action(key):
        if spec.discrete:
            return jax.random.randint(key, (num_envs,), 0, spec.action_dim)
        return jax.random.uniform(key, (num_envs, spec.action_dim), minval=-1.0, maxval=1.0)

    @jax.jit
    def run(key):
        reset_key, key = jax.random.split(key)
        obs, state = env.reset(reset_key)

        def step(carry, step_key):
            state, obs = carry
            action_key, env_key = jax.random.split(step_key)
            next_obs, state, _, _ = env.step(env_key, state, sample_action(action_key))
            return (state, next_obs), obs

        _, seen = jax.lax.scan(step, (state, obs), jax.random.split(key, steps))
        seen = seen.reshape(-1, spec.obs_dim)
        return jnp.mean(seen, 0), jnp.var(seen, 0)

    mean, var = run(jax.random.PRNGKey(seed))
    return np.asarray(mean, np.float64), np.asarray(var, np.float64)


def drawn_dims(env_name: str, obs_dim: int, nq: int) -> str:
    """Which observation dims a pose picture shows (positions) and which it cannot (the rest)."""
    if env_name in _ROOT_DROPPED:
        shown = nq - _ROOT_DROPPED[env_name]
    elif env_name == "reacher":
        shown = 6  # joint angles as cos/sin, and the target's x, y
    elif env_name == "inverted_double_pendulum":
        shown = 5  # cart position, hinge angles as sin/cos
    else:
        return ""
    rest = f", not {shown}-{obs_dim - 1}" if shown < obs_dim else ""
    return f"drawn: obs dims 0-{shown - 1} (positions){rest}"


def brax_poses(env_name: str, obs: np.ndarray, mj_model) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions and velocities (q, qd) that produce raw observations ``obs`` [N, obs_dim].

    Coordinates an observation leaves out (the root's x, and y for 3-D bodies) are set to 0;
    velocities the observation does not hold are set to 0 (they do not change a picture).
    """
    if env_name not in RENDERABLE_BRAX_ENVS:
        raise SpecError(f"rendering is not supported for {env_name}")
    obs = np.asarray(obs, np.float64).reshape(len(obs), -1)
    nq, nv = int(mj_model.nq), int(mj_model.nv)
    count = len(obs)
    q = np.zeros((count, nq))
    qd = np.zeros((count, nv))
    if env_name in _ROOT_DROPPED:
        dropped = _ROOT_DROPPED[env_name]
        q[:, dropped:] = obs[:, : nq - dropped]
        qd[:] = obs[:, nq - dropped : nq - dropped + nv]
        if env_name in _HEIGHT_OBSERVED:
            q[:, 1] = obs[:, 0] - _torso_height(mj_model, q)
        if env_name in _FREE_ROOT:
            q[:, 3:7] = _unit_quaternions(q[:, 3:7])
    elif env_name == "reacher":
        # obs: cos(theta) [2], sin(theta) [2], target x, y, tip velocity [2], tip - target [3]
        q[:, 0:2] = np.arctan2(obs[:, 2:4], obs[:, 0:2])
        q[:, 2:4] = obs[:, 4:6]
    elif env_name == "inverted_double_pendulum":
        # obs: cart x, sin(hinges) [2], cos(hinges) [2], qd [3]
        q[:, 0] = obs[:, 0]
        q[:, 1:3] = np.arctan2(obs[:, 1:3], obs[:, 3:5])
        qd[:] = obs[:, 5:8]
    else:
        raise SpecError(f"rendering is not supported for {env_name}")
    return q, qd


def _torso_height(mj_model, q: np.ndarray) -> np.ndarray:
    """Height of the torso (the first body) for each pose with its root z slide at 0."""
    import mujoco

    data = mujoco.MjData(mj_model)
    heights = np.zeros(len(q))
    for index, pose in enumerate(q):
        data.qpos[:] = pose
        data.qpos[1] = 0.0
        mujoco.mj_kinematics(mj_model, data)
        heights[index] = data.xpos[1, 2]
    return heights


def _unit_quaternions(quats: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(quats, axis=-1, keepdims=True)
    identity = np.array([1.0, 0.0, 0.0, 0.0])
    return np.where(norms > 1e-6, quats / np.maximum(norms, 1e-6), identity)
