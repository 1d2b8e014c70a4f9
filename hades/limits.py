"""The largest sizes hades accepts: far beyond any sensible run, small enough that a typo (an extra
zero or three) is refused at once instead of exhausting memory or running for ever."""

from __future__ import annotations

import math

MAX_SEED = 2**31 - 1  # seeds are 0..MAX_SEED
MAX_SEEDS = 4096  # fresh policy inits trained side by side
MAX_ENVS = 16_384  # parallel envs of one evaluation or rollout
MAX_ENV_STEPS = 10_000_000  # steps of one rollout
MAX_PAIRS = 100_000  # synthetic pairs of a dataset
MAX_POPULATION = 1_000_000
MAX_GENERATIONS = 10_000_000


def check_int(name: str, value, low: int, high: int) -> int:
    """``value`` as an int in ``low..high``, or a ValueError that names it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in {low}..{high}, got {value}")
    return value


def check_positive(name: str, value, allow_zero: bool = False) -> float:
    """A finite number above zero (or at least zero), or a ValueError that names it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'at least' if allow_zero else 'above'} 0, got {value}")
    return value


def check_seed(value, name: str = "seed") -> int:
    return check_int(name, value, 0, MAX_SEED)


def check_search_numbers(config) -> None:
    """A distillation's (or neuroevolution's) sizes within these limits and finite ES settings."""
    check_seed(config.seed)
    check_seed(config.fixed_init_seed, "fixed_init_seed")
    check_int("population size", config.population_size, 2, MAX_POPULATION)
    check_int("generations", config.num_generations, 1, MAX_GENERATIONS)
    check_int("inits", config.num_inits, 1, MAX_SEEDS)
    for name in ("sigma", "es_lr", "temperature"):
        check_positive(name, getattr(config, name))
    for name in ("es_lr_decay", "sigma_decay", "es_lr_floor", "sigma_floor", "adam_beta1"):
        check_positive(name, getattr(config, name), allow_zero=True)
