"""The distillation runner: the only place with a Python loop, logging, checkpoints and files.

Generations run in jitted chunks of ``checkpoint_every``; after each chunk the ES state and the
fitness history are written atomically to ``OUT/checkpoint/``. ``resume`` reloads them and goes
on with the same compiled program, so an interrupted run ends bit for bit where an uninterrupted
one would.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from hades.dataset import Dataset
from hades.distill import DistillConfig, fixed_labels, make_generation
from hades.envs import get_env_spec
from hades.errors import CheckpointError, SpecError
from hades.formats import atomic_write_bytes, canonical_json

CHECKPOINT_DIR = "checkpoint"
CSV_COLUMNS = ("generation", "mean", "max", "min", "sigma", "episodes", "env_steps", "seconds")


@dataclass
class Progress:
    generation: int
    total: int
    mean: float
    best: float


def configure_devices(num_devices: int | None = None) -> None:
    """Expose one XLA CPU device per core (must run before jax is imported)."""
    import sys

    if "jax" in sys.modules:
        return
    count = num_devices or os.cpu_count() or 1
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def make_mesh(config: DistillConfig, num_devices: int | None = None):
    import jax

    devices = jax.devices()[: num_devices or None]
    usable = len(devices)
    while usable > 1 and config.population_size % usable:
        usable -= 1
    if usable <= 1:
        return None
    auto = (jax.sharding.AxisType.Auto,)
    return jax.make_mesh((usable,), ("population",), axis_types=auto, devices=devices[:usable])


def estimate_obs_stats(config: DistillConfig, num_steps: int = 1000, key_seed: int = 12345):
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


class Distiller:
    """Runs (or resumes) one distillation into ``out``."""

    def __init__(self, config: DistillConfig, out: str | Path, checkpoint_every: int = 10,
                 num_devices: int | None = None, final_eval_seeds: int = 8):
        self.config = config
        self.out = Path(out)
        self.checkpoint_every = max(1, checkpoint_every)
        self.num_devices = num_devices
        self.final_eval_seeds = final_eval_seeds
        self.history: list[dict] = []

    # -- checkpoints --------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_DIR / "state.msgpack"

    def _save_checkpoint(self, state, obs_mean, obs_var) -> None:
        import jax
        from flax import serialization

        payload = {
            "fingerprint": self.config.fingerprint(),
            "config": canonical_json(self.config.to_dict()),
            "history": canonical_json(self.history),
            "obs_mean": np.asarray(obs_mean), "obs_var": np.asarray(obs_var),
            "state": jax.tree.map(np.asarray, serialization.to_state_dict(state)),
        }
        atomic_write_bytes(self.checkpoint_path, serialization.msgpack_serialize(payload))

    def _load_checkpoint(self, template):
        from flax import serialization

        try:
            payload = serialization.msgpack_restore(self.checkpoint_path.read_bytes())
        except FileNotFoundError:
            raise CheckpointError(f"no checkpoint at {self.checkpoint_path}; run without --resume to start") from None
        except Exception as exc:
            raise CheckpointError(f"checkpoint {self.checkpoint_path} is unreadable ({exc}); delete it to start over") from None
        if payload.get("fingerprint") != self.config.fingerprint():
            raise CheckpointError(
                f"checkpoint {self.checkpoint_path} was made with other settings; use the same options to resume, or another --out")
        self.history = json.loads(payload["history"])
        state = serialization.from_state_dict(template, payload["state"])
        return state, payload["obs_mean"], payload["obs_var"]

    # -- the loop -----------------------------------------------------------------------------
    def run(self, resume: bool = False, on_progress: Callable[[Progress], None] | None = None) -> Dataset:
        import jax
        import jax.numpy as jnp

        config = self.config
        spec = get_env_spec(config.env)
        if self.out.exists() and not resume and any(self.out.iterdir()):
            raise SpecError(f"{self.out} already exists and is not empty; pass --resume to continue it or pick another --out")
        if config.normalization == "constant":
            obs_mean, obs_var = estimate_obs_stats(config)
        else:
            obs_mean, obs_var = np.zeros(spec.obs_dim, np.float32), np.ones(spec.obs_dim, np.float32)
        mesh = make_mesh(config, self.num_devices)
        init_state, run_chunk, dataset_arrays = make_generation(config, jnp.asarray(obs_mean), jnp.asarray(obs_var), mesh)
        state = init_state(jax.random.PRNGKey(config.seed))
        if resume and self.checkpoint_path.exists():
            state, obs_mean, obs_var = self._load_checkpoint(state)
        elif resume:
            raise CheckpointError(f"no checkpoint at {self.checkpoint_path}; run without --resume to start")
        generation = len(self.history)
        notify = on_progress or (lambda progress: None)
        notify(Progress(generation, config.num_generations, *self._last()))
        while generation < config.num_generations:
            length = min(self.checkpoint_every, config.num_generations - generation)
            start = time.perf_counter()
            state, metrics = run_chunk(state, length)
            metrics = jax.tree.map(np.asarray, metrics)
            seconds = (time.perf_counter() - start) / length
            for index in range(length):
                generation += 1
                self.history.append({
                    "generation": generation, **{name: float(metrics[name][index]) for name in ("mean", "max", "min", "sigma")},
                    "episodes": int(metrics["episodes"][index]),
                    "env_steps": config.env_steps_per_generation * generation, "seconds": round(seconds, 4),
                })
            self._save_checkpoint(state, obs_mean, obs_var)
            notify(Progress(generation, config.num_generations, *self._last()))
        arrays = jax.tree.map(np.asarray, dataset_arrays(state))
        return self._dataset(arrays, obs_mean, obs_var)

    def _last(self) -> tuple[float, float]:
        if not self.history:
            return float("nan"), float("nan")
        return self.history[-1]["mean"], max(row["max"] for row in self.history)

    def _dataset(self, arrays: dict, obs_mean, obs_var) -> Dataset:
        from hades.provenance import provenance

        config = self.config
        spec = get_env_spec(config.env)
        states = arrays["states"]
        if spec.discrete:
            labels = np.argmax(arrays["label_logits"], -1) if config.learned_labels else fixed_labels(config)
            keep = labels >= 0
            states, actions = states[keep], labels[keep]
        else:
            actions = arrays["actions"]
        total_steps = config.env_steps_per_generation * len(self.history)
        method = {
            "name": config.method, "strategy": config.strategy, "preset": config.preset,
            "generations": len(self.history), "population_size": config.population_size,
            "inits_per_generation": config.inits_per_generation, "env_steps": total_steps,
            "final_population_mean_fitness": self.history[-1]["mean"] if self.history else None,
            "best_population_mean_fitness": max((row["mean"] for row in self.history), default=None),
            "config": config.to_dict(),
        }
        info = {"method": method, "recipe": config.recipe.to_dict(), "backend": config.backend,
                "license": "apache-2.0", "provenance": provenance(config.seed)}
        constant = config.normalization == "constant"
        return Dataset(states, actions, config.env, config.normalization,
                       obs_mean if constant else None, obs_var if constant else None, info)

    # -- outputs ------------------------------------------------------------------------------
    def write_outputs(self, dataset: Dataset, evaluation: dict | None = None, pictures: bool = True) -> Path:
        """Write the dataset folder (card, fitness.csv, fitness.png, states.png) next to the checkpoint."""
        from hades.formats import atomic_dir

        if evaluation is not None:
            dataset = dataset.replace(info={**dataset.info, "evaluation": evaluation})
        with atomic_dir(self.out.with_name(self.out.name + ".staging")) as tmp:
            csv_path = tmp / "fitness.csv"
            with open(csv_path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
                writer.writeheader()
                writer.writerows(self.history)
            extra = {"fitness.csv": csv_path}
            from hades.render import RenderError, fitness_plot, render_states

            extra["fitness.png"] = fitness_plot(csv_path, tmp / "fitness.png")
            if pictures:
                try:
                    extra["states.png"] = render_states(dataset, tmp / "states.png")
                except RenderError as exc:  # no OpenGL platform here: the card simply has no picture
                    import warnings

                    warnings.warn(f"states.png skipped: {exc}", stacklevel=2)
            staged = tmp / "dataset"
            dataset.save(staged, parquet=True, extra_files=extra)
            for item in staged.iterdir():
                target = self.out / item.name
                if target.is_dir():
                    import shutil

                    shutil.rmtree(target)
                os.replace(item, target)
        return self.out


def final_evaluation(dataset: Dataset, seeds: int, protocol=None) -> dict:
    """The standard protocol: fresh inits trained with the card's recipe, sampled actions."""
    from hades.trainfrom import train_from

    result = train_from(dataset, num_seeds=seeds, protocol=protocol)
    return {"protocol": result.protocol.to_dict(), "returns": [round(float(r), 2) for r in result.returns],
            "episodes": [int(e) for e in result.episodes], "mean": round(result.mean, 2), "std": round(result.std, 2),
            "seeds": list(result.seeds),
            "summary": f"{seeds} fresh random inits trained with the recipe below, each evaluated once."}
