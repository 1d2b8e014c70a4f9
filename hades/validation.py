"""Validation: score the ES mean itself with fresh inits as a run goes, and keep the best one.

The ES mean of a small population wanders: a dataset that scores well with the inits of one
generation can train badly from others. Validation trains fresh policies with the run's recipe on
the mean and evaluates them; the run's output is then the best-scoring mean, not the last. It
does not change the search, so a run can turn it on when resumed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from hades.envs import get_env_spec
from hades.evaluate import EvalProtocol

# Validation draws its inits from here up, far from the seeds a final evaluation or train-from uses
# (0, 1, ...), so the dataset a run selects is scored afterwards on inits that did not select it.
VALIDATION_FIRST_SEED = 1_000_000


@dataclass(frozen=True)
class Validation:
    """Score the ES mean with ``seeds`` fresh inits every ``every`` generations and keep the best one.

    The inits train with the run's recipe and are evaluated under ``protocol`` (the standard one
    by default).
    """

    every: int
    seeds: int = 8
    protocol: EvalProtocol = field(default_factory=EvalProtocol)
    first_seed: int = VALIDATION_FIRST_SEED

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"validation needs a period of at least 1 generation, got {self.every}")
        if self.seeds < 1:
            raise ValueError(f"validation needs at least 1 seed, got {self.seeds}")
        if self.first_seed < 0:
            raise ValueError(f"validation seeds must be non-negative, got {self.first_seed}")

    def to_dict(self) -> dict:
        return {"every": self.every, "seeds": self.seeds, "first_seed": self.first_seed,
                "protocol": self.protocol.to_dict()}

    def same_scores_as(self, other: dict | None) -> bool:
        """Whether scores recorded under ``other`` (a :meth:`to_dict`) compare with this one's."""
        mine = self.to_dict()
        return other is not None and all(other.get(key) == mine[key] for key in ("seeds", "first_seed", "protocol"))

    def due(self, before: int, generation: int, last: int) -> bool:
        """Whether a chunk that went from generation ``before`` to ``generation`` (of ``last``) ends with a validation."""
        return generation // self.every > before // self.every or generation == last


def make_validate(config, validation: Validation, obs_mean, obs_var) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``validate(states, actions) -> returns`` of fresh inits trained on a dataset: compiled once, on this process.

    The inits train with the run's recipe and each of its architectures (``config.architectures``:
    a run that distils for several scores the mean on all of them, as its fitness does), so the
    returns are ``seeds`` per architecture, in that order. The statistics and the seeds' keys are
    arguments of the compiled program, not constants in it, so runs of the same shapes share one
    program (and the persistent compilation cache finds it).
    """
    if hasattr(config, "make_task_validate"):  # a task of its own (hades.imagetask, hades.neuroevolution)
        return config.make_task_validate(validation, obs_mean, obs_var)
    from dataclasses import replace

    import jax
    import jax.numpy as jnp

    from hades.trainfrom import make_train_and_evaluate_arrays, seed_keys

    spec = get_env_spec(config.env)
    runs = [make_train_and_evaluate_arrays(spec, replace(config.recipe, arch=arch), validation.protocol,
                                           config.normalization, config.backend) for arch in config.architectures]
    device = jax.local_devices()[0]
    keys = jax.device_put(seed_keys(range(validation.first_seed, validation.first_seed + validation.seeds)), device)
    stats = jax.device_put((np.asarray(obs_mean, np.float32), np.asarray(obs_var, np.float32)), device)
    compiled = jax.jit(lambda states, targets, mean, var, keys: jnp.concatenate(
        [run(states, targets, mean, var, keys)[1]["mean_return"] for run in runs]))

    def validate(states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return np.asarray(compiled(*jax.device_put((states, actions), device), *stats, keys))

    return validate


@dataclass
class ValidationLog:
    """The scores of a run so far (the rows of validation.csv) and the best-scoring ES mean.

    ``best`` holds the generation, mean and std of the best row, and the ES mean's ``arrays``.
    """

    settings: Validation
    history: list[dict] = field(default_factory=list)
    best: dict | None = None

    def add(self, generation: int, returns: np.ndarray, arrays: dict, seconds: float | None = None) -> dict:
        """Record the ``returns`` the ES mean (``arrays``) of ``generation`` scored in ``seconds``; the row written."""
        row = {"generation": generation, "mean": round(float(returns.mean()), 3), "std": round(float(returns.std()), 3),
               "min": round(float(returns.min()), 3), "max": round(float(returns.max()), 3)}
        if seconds is not None:
            row["seconds"] = round(float(seconds), 3)
        self.history.append(row)
        if self.best is None or row["mean"] > self.best["mean"]:
            self.best = {"generation": generation, "mean": row["mean"], "std": row["std"], "arrays": arrays}
        return row

    def scored(self, generation: int) -> bool:
        return any(row["generation"] == generation for row in self.history)

    def record(self) -> dict:
        """What a checkpoint keeps (the best's arrays go beside it: :attr:`best_arrays`)."""
        best = None if self.best is None else {k: v for k, v in self.best.items() if k != "arrays"}
        return {"settings": self.settings.to_dict(), "history": self.history, "best": best}

    @property
    def best_arrays(self) -> dict | None:
        return None if self.best is None else self.best["arrays"]

    def selected(self) -> dict:
        """The card's account of the kept mean (``method.selected``)."""
        settings, best = self.settings, self.best
        last = settings.first_seed + settings.seeds - 1
        return {"generation": best["generation"], "validation_mean": best["mean"],
                "validation_std": best["std"], "validations": len(self.history),
                "seeds": f"{settings.first_seed}-{last}", "protocol": settings.protocol.to_dict()}

    @classmethod
    def resumed(cls, settings: Validation, checkpoint) -> ValidationLog:
        """The log a resumed run goes on with: the checkpoint's, when its scores compare with ``settings``."""
        record = checkpoint.validation()
        if record is None:
            return cls(settings)
        if not settings.same_scores_as(record.get("settings")):
            warnings.warn("the checkpoint's validation used other seeds or another protocol; "
                          "validation starts over from this generation", stacklevel=4)
            return cls(settings)
        best = record.get("best")
        if best is not None:
            best = {**best, "arrays": checkpoint.best_arrays()}
        return cls(settings, record["history"], best)
