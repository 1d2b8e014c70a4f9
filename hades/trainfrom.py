"""Train many fresh policies on a dataset and evaluate them: the engine of ``hades train-from``.

Seeds are independent: seed ``s`` always draws the same init and the same evaluation noise,
whatever the chunking, so results are reproducible per seed. Chunks of seeds run vmapped in one
compiled program (compiled once; a short last chunk is padded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from hades.dataset import Dataset
from hades.evaluate import EvalProtocol, ReturnStats
from hades.learn import Recipe


@dataclass(frozen=True, eq=False)
class TrainFromResult(ReturnStats):
    """Per-seed returns of policies trained with one recipe and evaluated under one protocol."""

    env: str
    recipe: Recipe
    protocol: EvalProtocol
    normalization: str
    seeds: tuple[int, ...]
    returns: np.ndarray
    episodes: np.ndarray
    final_losses: np.ndarray
    params: Any = None  # the trained parameters, stacked over seeds (when kept)
    timings: dict[str, float] = field(default_factory=dict)
    episode_stds: np.ndarray | None = None  # per seed: the std of its completed episodes' returns
    dataset: Dataset | None = None  # what the policies were trained on
    source: str | None = None  # the identifier the dataset was opened by, when known

    def to_dict(self) -> dict:
        return {
            "env": self.env,
            "recipe": self.recipe.to_dict(),
            "protocol": self.protocol.to_dict(),
            "normalization": self.normalization,
            "seeds": list(self.seeds),
            "returns": [round(float(r), 3) for r in self.returns],
            "episodes": [int(e) for e in self.episodes],
            "final_losses": [round(float(l), 6) for l in self.final_losses],
            "mean": round(self.mean, 3),
            "std": round(self.std, 3),
            **({"episode_stds": [round(float(s), 3) for s in self.episode_stds]} if self.episode_stds is not None else {}),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }

    def policy(self, index: int = 0):
        """The trained policy of ``seeds[index]`` as a :class:`hades.policy_io.Policy`, ready to
        save, push or evaluate; needs ``keep_params=True`` when training."""
        import jax

        from hades.policy_io import Policy
        from hades.provenance import device_record, provenance

        if self.params is None or self.dataset is None:
            raise ValueError("this result kept no parameters: train with keep_params=True to get its policies")
        if not -len(self.seeds) <= index < len(self.seeds):
            raise IndexError(f"seed index {index} is out of range for {len(self.seeds)} seeds")
        data, seed = self.dataset, self.seeds[index]
        evaluation = {"protocol": self.protocol.to_dict(), "mean_return": float(self.returns[index]),
                      "episodes": int(self.episodes[index]), "device": device_record()}
        if self.episode_stds is not None:
            evaluation["std_return"] = float(self.episode_stds[index])
        info = {"backend": data.backend, "seed": seed,
                "dataset": {"name": self.source or data.info.get("name"), "sha256": data.sha256, "pairs": data.pairs},
                "evaluation": evaluation, "provenance": provenance(seed)}
        params = jax.tree.map(lambda x: np.asarray(x[index]), self.params)
        return Policy(params, data.env, self.recipe, data.normalization, data.obs_mean, data.obs_var, info)

    def policies(self) -> list:
        """Every trained policy, in the order of ``seeds`` (see :meth:`policy`)."""
        return [self.policy(index) for index in range(len(self.seeds))]


def make_train_and_evaluate_arrays(spec, recipe: Recipe, protocol: EvalProtocol, normalization: str,
                                   backend: str | None = None):
    """``run(states, targets, obs_mean, obs_var, keys) -> (params, metrics, final_losses)``: pure, jittable.

    The dataset is an argument, so one compiled program serves every dataset of the same shape
    (the runner validates the ES mean this way during a distillation).
    """
    import jax

    from hades.evaluate import make_evaluate
    from hades.learn import make_train

    train = make_train(recipe, spec.obs_dim, spec.action_dim, spec.discrete)
    evaluate = make_evaluate(spec, recipe.arch, protocol, normalization, backend)

    def run(states, targets, obs_mean, obs_var, keys):
        # Training runs seed after seed (lax.map): vmapping it over seeds hits a very slow path of
        # XLA:CPU for wide layers (bench/train_from.py measures it). Rollouts vmap well.
        params, final_loss = jax.lax.map(lambda key: train(jax.random.split(key)[0], states, targets), keys)
        metrics = jax.vmap(lambda p, key: evaluate(p, jax.random.split(key)[1], obs_mean, obs_var))(params, keys)
        return params, metrics, final_loss

    return run


def make_train_and_evaluate(dataset: Dataset, recipe: Recipe, protocol: EvalProtocol, backend: str | None = None):
    """``run(keys) -> (params, metrics, final_losses)`` for a batch of seeds: pure and jittable."""
    run_arrays = make_train_and_evaluate_arrays(dataset.env_spec, recipe, protocol, dataset.normalization,
                                                backend or dataset.backend)
    states, targets = dataset.states, dataset.actions
    obs_mean, obs_var = dataset.normalization_arrays()

    def run(keys):
        return run_arrays(states, targets, obs_mean, obs_var, keys)

    return run


def seed_keys(seeds):
    import jax
    import jax.numpy as jnp

    return jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, dtype=jnp.uint32))


def train_from(dataset: Dataset, recipe: Recipe | None = None, protocol: EvalProtocol | None = None,
               num_seeds: int = 8, first_seed: int = 0, chunk_size: int | None = None,
               backend: str | None = None, keep_params: bool = False,
               progress: Callable[[str, int, int], None] | None = None, source: str | None = None) -> TrainFromResult:
    """Train ``num_seeds`` fresh policies on ``dataset`` and evaluate each once.

    ``progress(stage, done, total)`` is called with stage ``"compile"`` then ``"run"``.
    ``source``: the identifier the dataset was opened by (the saved policies' cards name it).
    """
    import jax
    import jax.numpy as jnp

    if num_seeds < 1:
        raise ValueError(f"num_seeds must be at least 1, got {num_seeds}")
    recipe = recipe or dataset.recipe
    protocol = protocol or EvalProtocol()
    chunk = min(chunk_size or num_seeds, num_seeds)
    seeds = list(range(first_seed, first_seed + num_seeds))
    notify = progress or (lambda *args: None)

    run = make_train_and_evaluate(dataset, recipe, protocol, backend)
    batched = jax.jit(run)
    notify("compile", 0, num_seeds)
    start = time.perf_counter()
    compiled = batched.lower(seed_keys(seeds[:chunk])).compile()
    compile_seconds = time.perf_counter() - start

    outputs = []
    start = time.perf_counter()
    for begin in range(0, num_seeds, chunk):
        part = seeds[begin : begin + chunk]
        padded = part + [part[-1]] * (chunk - len(part))
        params, metrics, losses = compiled(seed_keys(padded))
        jax.block_until_ready(metrics)
        keep = len(part)
        outputs.append((jax.tree.map(lambda x: x[:keep], params) if keep_params else None,
                        np.asarray(metrics["mean_return"])[:keep], np.asarray(metrics["episodes"])[:keep],
                        np.asarray(losses)[:keep], np.asarray(metrics["return_std"])[:keep]))
        notify("run", begin + keep, num_seeds)
    run_seconds = time.perf_counter() - start

    params = None
    if keep_params:
        params = jax.tree.map(lambda *xs: jnp.concatenate(xs), *[out[0] for out in outputs])
    return TrainFromResult(
        env=dataset.env, recipe=recipe, protocol=protocol, normalization=dataset.normalization,
        seeds=tuple(seeds), returns=np.concatenate([out[1] for out in outputs]),
        episodes=np.concatenate([out[2] for out in outputs]),
        final_losses=np.concatenate([out[3] for out in outputs]), params=params,
        timings={"compile_s": compile_seconds, "run_s": run_seconds},
        episode_stds=np.concatenate([out[4] for out in outputs]), dataset=dataset, source=source,
    )


def standard_evaluation(dataset: Dataset, seeds: int = 8, protocol: EvalProtocol | None = None,
                        recipe: Recipe | None = None, first_seed: int = 0) -> dict:
    """The standard protocol as a card records it: fresh inits trained with the card's recipe, sampled actions,
    and the device it ran on (the returns repeat exactly on the same kind of machine)."""
    from hades.provenance import device_record

    result = train_from(dataset, recipe, num_seeds=seeds, protocol=protocol, first_seed=first_seed)
    return {"protocol": result.protocol.to_dict(), "returns": [round(float(r), 2) for r in result.returns],
            "episodes": [int(e) for e in result.episodes], "mean": round(result.mean, 2), "std": round(result.std, 2),
            "seeds": list(result.seeds), "device": device_record(),
            "summary": f"{seeds} fresh random inits trained with this card's recipe, each evaluated once."}


def fixed_init_evaluation(dataset: Dataset, init_seed: int, num_runs: int = 8, protocol: EvalProtocol | None = None,
                          legacy_prng: bool = False, first_eval_seed: int = 0) -> dict:
    """Score a HaDES-F dataset from the one init it was evolved for: that init trained once, evaluated ``num_runs`` times.

    The init is ``network.init(PRNGKey(init_seed), ...)``, as HaDES-F draws it. ``legacy_prng``
    draws it with jax's pre-0.5 random bits (``jax_threefry_partitionable`` off), which is how the
    original code's runs drew theirs; the parameters then match that init up to float rounding.
    """
    import jax

    from hades.evaluate import make_evaluate
    from hades.learn import make_train

    if num_runs < 1:
        raise ValueError(f"num_runs must be at least 1, got {num_runs}")
    recipe, protocol = dataset.recipe, protocol or EvalProtocol()
    spec = dataset.env_spec
    train = make_train(recipe, spec.obs_dim, spec.action_dim, spec.discrete)
    evaluate = make_evaluate(spec, recipe.arch, protocol, dataset.normalization, dataset.backend)
    obs_mean, obs_var = dataset.normalization_arrays()
    with jax.threefry_partitionable(not legacy_prng):
        params, _ = jax.jit(train)(jax.random.PRNGKey(init_seed), dataset.states, dataset.actions)
    seeds = list(range(first_eval_seed, first_eval_seed + num_runs))
    eval_keys = jax.vmap(lambda key: jax.random.split(key)[1])(seed_keys(seeds))
    metrics = jax.jit(jax.vmap(lambda key: evaluate(params, key, obs_mean, obs_var)))(eval_keys)
    returns = np.asarray(metrics["mean_return"], np.float64)
    return {"init_seed": int(init_seed), "legacy_prng": bool(legacy_prng), "protocol": protocol.to_dict(),
            "returns": [round(float(r), 2) for r in returns], "mean": round(float(returns.mean()), 2),
            "std": round(float(returns.std()), 2), "eval_seeds": seeds,
            "summary": f"the init drawn from seed {init_seed}, trained once with this card's recipe, "
                       f"evaluated {num_runs} times"}


# Seeds for measuring observation statistics: disjoint from the evaluation's (0, 1, ...) and from
# distillation's validation seeds (1_000_000, ...), so the frozen statistics are not fitted to the
# inits that later score the dataset.
STATS_FIRST_SEED = 2_000_000


def measure_obs_stats(dataset: Dataset, num_seeds: int = 16, first_seed: int = STATS_FIRST_SEED,
                      protocol: EvalProtocol | None = None, backend: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Observation (mean, var) that policies trained on a running-normalised dataset end their rollouts with.

    Each fresh init's rollouts end with running statistics of everything they saw; these are pooled
    (equal counts) into one mean and variance.
    """
    import jax

    if dataset.normalization != "running":
        raise ValueError(f"measuring statistics needs a dataset with running normalisation, not {dataset.normalization!r}")
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be at least 1, got {num_seeds}")
    run = make_train_and_evaluate(dataset, dataset.recipe, protocol or EvalProtocol(), backend)
    _, metrics, _ = jax.jit(run)(seed_keys(range(first_seed, first_seed + num_seeds)))
    means = np.asarray(metrics["obs_mean"], np.float64)
    variances = np.asarray(metrics["obs_var"], np.float64)
    mean = means.mean(0)
    var = (variances + np.square(means - mean)).mean(0)
    return mean.astype(np.float32), var.astype(np.float32)


def freeze_normalization(dataset: Dataset, num_seeds: int = 16, first_seed: int = STATS_FIRST_SEED,
                         protocol: EvalProtocol | None = None, backend: str | None = None) -> Dataset:
    """The same pairs with constant statistics measured by :func:`measure_obs_stats`.

    Why: running statistics restart at every evaluation, so early in a rollout the policy sees
    inputs scaled unlike the pairs; frozen statistics remove that warm-up, and a distillation with
    constant normalisation can start from the result. The card records where the numbers came from.
    """
    protocol = protocol or EvalProtocol()
    obs_mean, obs_var = measure_obs_stats(dataset, num_seeds, first_seed, protocol, backend)
    info = dataset.derived_info()
    info["normalization_changed"] = {
        "from": dataset.normalization, "from_sha256": dataset.sha256,
        "seeds": [first_seed, first_seed + num_seeds - 1], "protocol": protocol.to_dict(),
    }
    return dataset.replace(normalization="constant", obs_mean=obs_mean, obs_var=obs_var, info=info)
