"""Policy evaluation in the environment under a stated protocol: pure, jittable, vmappable.

The protocol is the paper's: ``num_envs`` auto-resetting envs stepped ``num_steps`` times with
sampled actions; the score is the mean undiscounted return over the episodes that completed.
When no episode completes (test-sized protocols), the mean return accumulated so far is used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from hades.envs import NORM_EPS, NORMALIZATIONS, EnvSpec, VecEnv
from hades.policy import PolicySpec


class ReturnStats:
    """``mean`` and ``std`` of a result's ``returns`` (one score per seed or per run)."""

    @property
    def mean(self) -> float:
        import numpy as np

        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        import numpy as np

        return float(np.std(self.returns))


@dataclass(frozen=True)
class EvalProtocol:
    """Envs, steps (or episodes) and action selection for one evaluation."""

    num_envs: int = 4
    num_steps: int = 1024
    greedy: bool = False
    episode_length: int | None = None  # None: the environment's own

    def __post_init__(self):
        from hades.limits import MAX_ENV_STEPS, MAX_ENVS, check_int

        check_int("num_envs", self.num_envs, 1, MAX_ENVS)
        check_int("num_steps", self.num_steps, 1, MAX_ENV_STEPS)
        if self.episode_length is not None:
            check_int("episode_length", self.episode_length, 1, MAX_ENV_STEPS)

    @classmethod
    def for_episodes(cls, spec: EnvSpec, num_episodes: int, num_envs: int = 4, greedy: bool = False,
                     episode_length: int | None = None) -> "EvalProtocol":
        """Enough steps that every env completes its share of ``num_episodes`` episodes."""
        if num_episodes < 1:
            raise ValueError(f"num_episodes must be at least 1, got {num_episodes}")
        length = episode_length or spec.episode_length
        steps = math.ceil(num_episodes / num_envs) * length
        return cls(num_envs, steps, greedy, episode_length)

    def to_dict(self) -> dict:
        return asdict(self)


def normalize_running(stats, obs):
    """Update running (mean, var, count) with a batch of observations, then normalise them.

    Statistics are shared by the batch of envs and start from (0, 1, 1e-4) at every evaluation.
    """
    import jax.numpy as jnp

    mean, var, count = stats
    batch_mean, batch_var, batch_count = obs.mean(0), obs.var(0), obs.shape[0]
    delta = batch_mean - mean
    total = count + batch_count
    mean = mean + delta * batch_count / total
    var = (var * count + batch_var * batch_count + jnp.square(delta) * count * batch_count / total) / total
    return (mean, var, total), (obs - mean) / jnp.sqrt(var + NORM_EPS)


def make_act(spec: EnvSpec, arch: PolicySpec, greedy: bool, inputs=None, head_dim: int | None = None):
    """``act(params, obs, key) -> action`` for a batch of normalised observations.

    A multi-task network sees ``inputs(obs)`` (padded, with its task indicator) and has a head of
    ``head_dim`` outputs, of which the env takes the first ``spec.action_dim``."""
    import jax
    import jax.numpy as jnp

    from hades.policy import make_network

    network = make_network(arch, head_dim or spec.action_dim, spec.discrete)
    prepare = inputs or (lambda obs: obs)
    real = spec.action_dim

    def act(params, obs, key):
        if spec.discrete:
            logits = network.apply(params, prepare(obs))[..., :real]
            return jnp.argmax(logits, -1) if greedy else jax.random.categorical(key, logits)
        mean, log_std = network.apply(params, prepare(obs))
        mean, log_std = mean[..., :real], log_std[..., :real]
        if greedy:
            return mean
        return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)

    return act


def make_evaluate(spec: EnvSpec, arch: PolicySpec, protocol: EvalProtocol, normalization: str,
                  backend: str | None = None, inputs=None, head_dim: int | None = None):
    """Return ``evaluate(params, key, obs_mean, obs_var) -> metrics`` (pure, jittable).

    ``inputs`` and ``head_dim``: a multi-task network's, as :func:`make_act` takes them (the
    observations are normalised first, with this env's own statistics).

    metrics: ``mean_return`` (the score), ``episodes`` (completed), ``return_sum`` (of completed
    episodes), ``return_std`` (the standard deviation of the completed episodes' returns; 0 when
    fewer than two completed); with running normalisation also ``obs_mean``/``obs_var``, the
    statistics the rollouts ended with (what the policy saw, so they can become a dataset's
    constant statistics). The
    ``obs_mean``/``obs_var`` arguments are used by constant normalisation and ignored otherwise.
    """
    import jax
    import jax.numpy as jnp

    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    env = VecEnv(spec, protocol.num_envs, backend, protocol.episode_length)
    act = make_act(spec, arch, protocol.greedy, inputs, head_dim)

    def normalize(stats, obs, obs_mean, obs_var):
        if normalization == "running":
            return normalize_running(stats, obs)
        if normalization == "constant":
            return stats, (obs - obs_mean) / jnp.sqrt(obs_var + NORM_EPS)
        return stats, obs

    def evaluate(params, key, obs_mean, obs_var):
        reset_key, key = jax.random.split(key)
        obs, env_state = env.reset(reset_key)
        stats = (jnp.zeros(spec.obs_dim), jnp.ones(spec.obs_dim), jnp.asarray(1e-4))
        stats, obs = normalize(stats, obs, obs_mean, obs_var)
        zeros = jnp.zeros(protocol.num_envs)

        def env_step(carry, step_key):
            env_state, obs, stats, running, return_sum, return_sq, episodes = carry
            act_key, env_key = jax.random.split(step_key)
            action = act(params, obs, act_key)
            obs, env_state, reward, done = env.step(env_key, env_state, action)
            stats, obs = normalize(stats, obs, obs_mean, obs_var)
            running = running + reward
            return_sum = return_sum + jnp.where(done, running, 0.0)
            return_sq = return_sq + jnp.where(done, jnp.square(running), 0.0)
            episodes = episodes + done
            running = jnp.where(done, 0.0, running)
            return (env_state, obs, stats, running, return_sum, return_sq, episodes), None

        carry = (env_state, obs, stats, zeros, zeros, zeros, zeros)
        carry, _ = jax.lax.scan(env_step, carry, jax.random.split(key, protocol.num_steps))
        _, _, stats, running, return_sum, return_sq, episodes = carry
        total_episodes = episodes.sum()
        completed = jnp.maximum(total_episodes, 1)
        mean_return = jnp.where(total_episodes > 0, return_sum.sum() / completed, running.mean())
        variance = return_sq.sum() / completed - jnp.square(return_sum.sum() / completed)
        return_std = jnp.where(total_episodes > 1, jnp.sqrt(jnp.maximum(variance, 0.0)), 0.0)
        metrics = {"mean_return": mean_return, "episodes": total_episodes, "return_sum": return_sum.sum(),
                   "return_std": return_std}
        if normalization == "running":
            metrics["obs_mean"], metrics["obs_var"] = stats[0], stats[1]
        return metrics

    return evaluate
