"""The observation statistics a new distillation run compiles its program with.

A constant-normalised run fixes them once, at its start: from the dataset it warm-starts from
(whose states live in that dataset's normalised space), else estimated from random-action
rollouts. A resumed run takes them from its checkpoint instead (:mod:`hades.checkpoint`).
"""

from __future__ import annotations

import numpy as np

from hades.envs import get_env_spec


def estimate_obs_stats(config, num_steps: int = 1000, key_seed: int = 12345):
    """Constant normalisation needs statistics; estimate them from random-action rollouts."""
    import jax
    import jax.numpy as jnp

    from hades.envs import VecEnv

    spec = get_env_spec(config.env)
    env = VecEnv(spec, 8, config.backend)

    def rollout(key):
        obs, state = env.reset(key)

        def body(carry, step_key):
            obs, state = carry
            act_key, env_key = jax.random.split(step_key)
            if spec.discrete:
                action = jax.random.randint(act_key, (8,), 0, spec.action_dim)
            else:
                action = jax.random.uniform(act_key, (8, spec.action_dim), minval=-1, maxval=1)
            obs, state, _, _ = env.step(env_key, state, action)
            return (obs, state), obs

        _, trace = jax.lax.scan(body, (obs, state), jax.random.split(key, num_steps))
        return trace.reshape(-1, spec.obs_dim)

    trace = jax.jit(rollout)(jax.random.PRNGKey(key_seed))
    return np.asarray(jnp.mean(trace, 0), np.float32), np.asarray(jnp.var(trace, 0), np.float32)


def starting_obs_stats(config, start=None) -> tuple[np.ndarray, np.ndarray]:
    """``(obs_mean, obs_var)`` for a run of ``config`` that begins now (``start``: its warm-start dataset).

    Only constant normalisation uses them; the other modes get the identity. With several
    processes, process 0 estimates and every process uses its numbers.
    """
    import jax

    from hades.multihost import broadcast_arrays, envs_on_local_device, is_lead_process

    spec = get_env_spec(config.env)
    if config.normalization != "constant":
        return np.zeros(spec.obs_dim, np.float32), np.ones(spec.obs_dim, np.float32)
    if start is not None:
        return start.normalization_arrays()
    if jax.process_count() == 1:
        return estimate_obs_stats(config)
    if is_lead_process():
        with envs_on_local_device():
            stats = estimate_obs_stats(config)
    else:
        stats = np.zeros(spec.obs_dim, np.float32), np.zeros(spec.obs_dim, np.float32)
    return broadcast_arrays(stats)
