"""The evolution strategies HaDES searches with: evosax 0.3 algorithms, configured from a DistillConfig.

Every strategy searches the flat vector of the synthetic dataset
(:func:`hades.searchspace.search_dims` numbers) and minimises (the runner hands it negated
returns). A population left unsaid is :func:`default_population_size` of that. ``sigma`` is the
noise scale of OpenES, PGPE and SimpleES and the initial step size of the strategies that adapt
their own (SNES, xNES, CMA-ES, Sep-CMA-ES; xNES is started so that this holds for it too). The
fitness shapings:

- ``raw``, ``centered_rank``, ``standardize``: the returns as they are, as centred ranks in
  [-0.5, 0.5], or standardised;
- ``rank_weights``: the strategy's own rank weights (log-rank utilities for SNES/xNES, the
  recombination weights of CMA-ES and Sep-CMA-ES);
- ``softmax_rank``: softmax weights over ranks with ``temperature`` for SNES (the paper's MinAtar
  setting); for the other weighted strategies the same as ``rank_weights``.

OpenES can decay its learning rate and its sigma exponentially per generation down to a floor
(``es_lr_decay``/``es_lr_floor``, ``sigma_decay``/``sigma_floor``); CMA-ES and Sep-CMA-ES take
``sigma_floor`` as the least step size they adapt down to.
"""

from __future__ import annotations

import functools
import math

from hades.errors import SpecError

STRATEGIES = ("open_es", "snes", "pgpe", "simple_es", "sep_cma_es", "xnes", "cma_es")
SHAPINGS = ("raw", "centered_rank", "standardize", "softmax_rank", "rank_weights")
WEIGHT_SHAPINGS = ("softmax_rank", "rank_weights")  # shapings read from the strategy's rank weights
# evosax strategies whose update weights the population by its shaped fitness (rank weights by default),
# and the shapings they stay stable with (unbounded utilities blow their step sizes up).
UTILITY_STRATEGIES = ("snes", "xnes", "simple_es", "sep_cma_es", "cma_es")
UTILITY_SHAPINGS = {"snes": ("centered_rank", *WEIGHT_SHAPINGS), "xnes": ("centered_rank", *WEIGHT_SHAPINGS),
                    "simple_es": WEIGHT_SHAPINGS, "sep_cma_es": WEIGHT_SHAPINGS, "cma_es": WEIGHT_SHAPINGS}
SCHEDULED_STRATEGIES = ("open_es",)  # those that take learning-rate and sigma schedules
FLOORED_STRATEGIES = ("open_es", "cma_es", "sep_cma_es")  # those that take a sigma floor
# Full CMA-ES keeps an n x n covariance and decomposes it every generation: fine for a few hundred
# numbers (hopper, 4 pairs: 56), slow beyond; Sep-CMA-ES keeps its diagonal only.
FULL_COVARIANCE_MAX_DIMS = 400


def fits(strategy: str, shaping: str) -> bool:
    """Whether ``strategy`` works with fitness ``shaping`` (rank weights need a strategy that has them)."""
    if strategy in UTILITY_SHAPINGS:
        return shaping in UTILITY_SHAPINGS[strategy]
    return shaping not in WEIGHT_SHAPINGS


def strategy_defaults(strategy: str, discrete: bool) -> dict:
    """Shaping and sigma that suit ``strategy`` when a run picks it without saying them."""
    if strategy in ("open_es", "pgpe"):
        return {"fitness_shaping": "centered_rank", "sigma": 0.1 if discrete else 0.03}
    return {"fitness_shaping": "rank_weights", "sigma": 0.5 if discrete else 0.1}


def default_population_size(num_dims: int) -> int:
    """Hansen's default for CMA-ES, 4 + floor(3 ln n), rounded up to an even number (antithetic sampling)."""
    size = 4 + int(math.floor(3 * math.log(max(num_dims, 1))))
    return size + size % 2


def check_settings(config) -> list[tuple[bool, str]]:
    """The (ok, message) checks a DistillConfig runs on its strategy settings."""
    strategy = config.strategy
    allowed = UTILITY_SHAPINGS.get(strategy, SHAPINGS)
    scheduled = config.es_lr_decay != 1.0 or config.sigma_decay != 1.0
    return [
        (strategy in STRATEGIES, f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"),
        (config.fitness_shaping in SHAPINGS, f"fitness shaping must be one of {', '.join(SHAPINGS)}"),
        (config.fitness_shaping in allowed,
         f"{strategy} needs fitness shaping {' or '.join(allowed)}, got {config.fitness_shaping!r}"),
        (0 < config.es_lr_decay <= 1 and 0 < config.sigma_decay <= 1,
         "learning-rate and sigma decay rates must be in (0, 1]"),
        (config.es_lr_floor >= 0 and config.sigma_floor >= 0, "learning-rate and sigma floors must be non-negative"),
        (not scheduled or strategy in SCHEDULED_STRATEGIES,
         f"learning-rate and sigma schedules go with {', '.join(SCHEDULED_STRATEGIES)}, not {strategy}"),
        (config.sigma_floor == 0 or strategy in FLOORED_STRATEGIES,
         f"a sigma floor goes with {', '.join(FLOORED_STRATEGIES)}, not {strategy}"),
    ]


def _decaying(initial: float, decay: float, floor: float):
    """A per-generation exponential decay from ``initial`` down to ``floor`` (a constant when decay is 1)."""
    import optax

    if decay == 1.0:
        return None
    return optax.exponential_decay(initial, 1, decay, end_value=floor or None)


def _shaping_fn(config):
    from evosax.core import fitness_shaping as shaping

    shaping_fn = {
        "raw": shaping.identity_fitness_shaping_fn,
        "centered_rank": shaping.centered_rank_fitness_shaping_fn,
        "standardize": shaping.standardize_fitness_shaping_fn,
        "softmax_rank": shaping.weights_fitness_shaping_fn,
        "rank_weights": shaping.weights_fitness_shaping_fn,
    }[config.fitness_shaping]
    if config.strategy in UTILITY_STRATEGIES and config.fitness_shaping not in WEIGHT_SHAPINGS:
        # These strategies read the shaped fitness as utilities (higher is better), while the other
        # shapings keep evosax's minimising order (lower is better): flip it, or they climb the loss.
        minimising_shaping = shaping_fn

        def shaping_fn(population, fitness, state, params):
            return -minimising_shaping(population, fitness, state, params)
    return shaping_fn


def make_strategy(config):
    """The evosax 0.3 strategy and its params, configured as ``config`` (a DistillConfig) says."""
    import jax.numpy as jnp
    import optax
    from evosax import algorithms

    from hades.searchspace import solution_layout

    solution = {name: jnp.zeros(shape) for name, shape in solution_layout(config).items()}
    shaping_fn = _shaping_fn(config)
    size = config.population_size
    if config.strategy == "open_es":
        lr = _decaying(config.es_lr, config.es_lr_decay, config.es_lr_floor) or config.es_lr
        sigma = _decaying(config.sigma, config.sigma_decay, config.sigma_floor) or optax.constant_schedule(config.sigma)
        strategy = algorithms.Open_ES(
            size, solution, use_antithetic_sampling=True, optimizer=optax.adam(lr, b1=config.adam_beta1),
            std_schedule=sigma, fitness_shaping_fn=shaping_fn)
        params = strategy.default_params
    elif config.strategy == "snes":
        strategy = algorithms.SNES(size, solution, fitness_shaping_fn=shaping_fn)
        params = strategy.default_params.replace(std_init=jnp.asarray(config.sigma))
        if config.fitness_shaping == "softmax_rank":
            # Softmax over ranks (rank 0 = best, as evosax minimises), minus the mean as a baseline.
            ranks = jnp.arange(size) / (size - 1)
            weights = jnp.exp(-config.temperature * ranks)
            params = params.replace(weights=weights / weights.sum() - 1.0 / size)
    else:
        cls = {"pgpe": algorithms.PGPE, "simple_es": algorithms.SimpleES, "sep_cma_es": algorithms.Sep_CMA_ES,
               "cma_es": algorithms.CMA_ES, "xnes": _xnes_class()}[config.strategy]
        strategy = cls(size, solution, fitness_shaping_fn=shaping_fn)
        params = strategy.default_params
        if hasattr(params, "std_init"):
            params = params.replace(std_init=jnp.asarray(config.sigma))
        if config.sigma_floor:
            params = params.replace(std_min=config.sigma_floor)
    if config.fitness_shaping in WEIGHT_SHAPINGS and not hasattr(params, "weights"):
        raise SpecError(f"{config.fitness_shaping} shaping needs a strategy with rank weights "
                        f"(snes, xnes, cma_es, sep_cma_es), not {config.strategy}")
    return strategy, params


@functools.cache
def _xnes_class():
    from evosax.algorithms import xNES

    class ScaledXNES(xNES):
        """xNES whose first step is ``std_init``: evosax starts its shape matrix B at std_init x I
        too, which makes the first step std_init squared; here B starts at the identity."""

        def _init(self, key, params):
            import jax.numpy as jnp

            state = super()._init(key, params)
            return state.replace(B=jnp.eye(self.num_dims))

    return ScaledXNES
