"""The distillation loop: the only place with a Python loop over generations.

Generations run in jitted chunks that end on multiples of ``checkpoint_every`` (and of the
validation period); after each chunk the ES state and the fitness history are written atomically
to the checkpoint (:mod:`hades.checkpoint`). Resuming reloads them and goes on with the same
compiled program, so an interrupted run ends bit for bit where an uninterrupted one would.

A run with restarts (``config.restarts``, IPOP style) watches its validated ES mean: after
``restart_patience`` validations without a new best it starts the strategy afresh from the best
validated mean, with ``restart_factor`` times the population. Every restart is recorded in the
checkpoint, so a resumed run rebuilds the program of its current population.

With several processes (:mod:`hades.multihost`) every process runs the same chunks and only
process 0 reads and writes files; what it reads is broadcast, so every process starts from the
same state or stops with the same error. :func:`hades.distill` wraps a whole run (final
evaluation and output folder included).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from hades.checkpoint import Checkpoint, checkpoint_file, read_checkpoint_bytes, restore_checkpoint, save_checkpoint
from hades.dataset import Dataset
from hades.debris import left_by_dead
from hades.distillation import DistillConfig, fixed_labels, make_generation, start_arrays
from hades.envs import get_env_spec
from hades.errors import OutputInUseError, SettingsMismatchError, SpecError
from hades.multihost import (broadcast_arrays, check_same_everywhere, envs_on_local_device, from_lead, is_lead_process,
                             make_mesh, replicate, to_host)
from hades.provenance import command_line
from hades.validation import Validation, ValidationLog


@dataclass
class Progress:
    """What ``on_progress`` hears when a run starts and after every chunk of generations."""

    generation: int
    total: int  # where the run stops: its last generation, or sooner where an env-step budget runs out
    mean: float
    best: float
    validation: float | None = None  # the best validation score so far (runs with validation)


class Distiller:
    """Runs (or resumes) one distillation into ``out``.

    With several processes (:func:`hades.multihost.initialize_distributed`) every process
    constructs the same Distiller and calls :meth:`run`; only process 0 touches ``out``.
    """

    def __init__(self, config: DistillConfig, out: str | Path, checkpoint_every: int = 10,
                 num_devices: int | None = None, start: Dataset | None = None, start_source: str | None = None,
                 train_batch="auto", validation: Validation | None = None, max_env_steps: int | None = None):
        """``start``: the dataset a warm start begins from (``config.init_from`` must be its sha256).

        ``validation``: score the ES mean with fresh inits as the run goes and return the best mean
        (None: return the last one). It does not change the search, so a run can turn it on when resumed.

        ``max_env_steps``: stop at the first generation whose search env steps reach this budget, however
        large restarts made the population (None: run every generation). Like the generations it is not a
        setting of the search: a resumed run may raise it or drop it and goes on as if never stopped.

        ``train_batch``: candidates whose inner policies train at once per device ("auto": by platform
        and policy size, see :func:`hades.distillation.default_train_batch`; None: all of them).
        """
        if (start is None) != (config.init_from is None) or (start is not None and start.sha256 != config.init_from):
            raise SpecError("the starting dataset does not match config.init_from (its sha256)")
        if max_env_steps is not None and (isinstance(max_env_steps, bool) or int(max_env_steps) != max_env_steps
                                          or max_env_steps < 1):
            raise SpecError(f"the env-step budget must be a whole number of at least 1, got {max_env_steps!r}")
        self.max_env_steps = None if max_env_steps is None else int(max_env_steps)
        self.config = config
        self.start = start
        self.start_source = start_source
        self.train_batch = train_batch
        self.out = Path(out)
        self.checkpoint_every = max(1, checkpoint_every)
        self.num_devices = num_devices
        self.validation = validation
        self.history: list[dict] = []
        self.log: ValidationLog | None = None  # the validation scores and the best mean (runs with validation)
        self.restarts: list[dict] = []  # the restarts so far: generation and the population from then on
        # The commands that ran this run: the starting one (the dataset records it), then each resumption.
        self.commands: list[dict] = []
        self.last_dataset: Dataset | None = None  # the ES mean when the run stopped (what it returns without validation)

    @property
    def checkpoint_path(self) -> Path:
        return checkpoint_file(self.out)

    @property
    def validation_history(self) -> list[dict]:
        return [] if self.log is None else self.log.history

    @property
    def population_size(self) -> int:
        """The population of the strategy now (it grows with every restart)."""
        return self.config.population_size * self.config.restart_factor ** len(self.restarts)

    @property
    def env_steps(self) -> int:
        """Search env steps spent so far."""
        return self.history[-1]["env_steps"] if self.history else 0

    def _generation_env_steps(self) -> int:
        config = self.config
        return config.env_steps_per_generation * self.population_size // config.population_size

    def _last_generation(self, generation: int) -> int:
        """Where the run stops: its last generation, or sooner where the env-step budget runs out."""
        if self.max_env_steps is None:
            return self.config.num_generations
        left = max(0, -(-(self.max_env_steps - self.env_steps) // self._generation_env_steps()))
        return min(self.config.num_generations, generation + left)

    @property
    def best(self) -> dict | None:
        """The best validated mean so far: generation, mean, std and its arrays."""
        return None if self.log is None else self.log.best

    # -- the state of the output folder -------------------------------------------------------
    def _read_start(self, resume: bool) -> bytes | None:
        """Process 0 checks the output folder and reads the checkpoint; every process gets the verdict.

        Returns the checkpoint bytes (resume) or None (fresh start); raises the same error on
        every process when the run cannot start.
        """
        check_same_everywhere(self.config.fingerprint())

        def read() -> bytes | None:
            if resume:
                return read_checkpoint_bytes(self.out)
            if self._out_in_use():
                raise OutputInUseError(f"{self.out} already exists and is not empty")
            return None

        return from_lead(read)

    def _out_in_use(self) -> bool:
        """Whether ``out`` holds anything but what a run killed before its first checkpoint leaves
        (dead writers' temporary files, a checkpoint folder holding nothing else)."""
        if not self.out.exists():
            return False
        checkpoint_folder = self.checkpoint_path.parent
        for item in self.out.iterdir():
            if left_by_dead(item, ".hades-"):
                continue
            if item == checkpoint_folder and item.is_dir() and not item.is_symlink() and all(
                    left_by_dead(inner, ".hades-") for inner in item.iterdir()):
                continue
            return True
        return False

    def _checkpoint(self, data: bytes) -> Checkpoint:
        checkpoint = restore_checkpoint(data, self.checkpoint_path)
        checkpoint.check_settings(self.config.fingerprint())
        return checkpoint

    def plan(self) -> dict:
        """What :meth:`run` would do, without doing it (:func:`hades.runplan.plan_run`)."""
        from hades.runplan import plan_run

        return plan_run(self)

    # -- the loop -----------------------------------------------------------------------------
    def run(self, resume: bool = False, on_progress: Callable[[Progress], None] | None = None) -> Dataset:
        import jax

        from hades.obsstats import starting_obs_stats
        from hades.validation import make_validate

        config = self.config
        if config.restarts and self.validation is None:
            raise SpecError("restarts watch the validated ES mean: the run needs a validation (--validate-every)")
        data = self._read_start(resume)
        checkpoint = None if data is None else self._checkpoint(data)
        # The program is built with the statistics the run started with.
        obs_mean, obs_var = starting_obs_stats(config, self.start) if checkpoint is None else checkpoint.obs_stats()
        self.history, self.log, self.restarts = [], None if self.validation is None else ValidationLog(self.validation), []
        self.commands = []
        if checkpoint is not None:
            self.history, self.restarts, self.commands = checkpoint.history(), checkpoint.restarts(), checkpoint.commands()
            if self.validation is not None:
                self._check_restart_validation(checkpoint)
                self.log = ValidationLog.resumed(self.validation, checkpoint)
        self.commands.append({"generation": len(self.history), "command": command_line()})
        start = None if self.start is None else start_arrays(config, self.start)
        state, run_chunk, dataset_arrays = self._program(obs_mean, obs_var, start, jax.random.PRNGKey(config.seed),
                                                         checkpoint)
        generation = len(self.history)
        validate = None
        if self.validation is not None and is_lead_process():
            with envs_on_local_device():
                validate = make_validate(config, self.validation, obs_mean, obs_var)
        # Runs with restarts validate on the period only: a validation at a generation where a run
        # happened to stop would steer the search differently from the same run uninterrupted.
        notify = on_progress or (lambda progress: None)
        notify(Progress(generation, self._last_generation(generation), *self._last()))
        while generation < (stop := self._last_generation(generation)):
            last = None if config.restarts else stop
            before, length = generation, min(self._next_stop(generation), stop) - generation
            steps_so_far, per_generation = self.env_steps, self._generation_env_steps()
            start_time = time.perf_counter()
            state, metrics = run_chunk(state, length)
            metrics = to_host(metrics)
            seconds = (time.perf_counter() - start_time) / length
            for index in range(length):
                generation += 1
                self.history.append({
                    "generation": generation, **{name: float(metrics[name][index]) for name in ("mean", "max", "min", "sigma")},
                    "episodes": int(metrics["episodes"][index]),
                    "env_steps": steps_so_far + per_generation * (index + 1), "seconds": round(seconds, 4),
                })
            host_state = to_host(state)
            if self.validation is not None and self.validation.due(before, generation, last):
                if validate is not None:
                    self._validate(validate, generation, jax.tree.map(np.asarray, dataset_arrays(host_state)))
                if config.restarts and self._restart_due():
                    state, run_chunk, dataset_arrays = self._restart(generation, obs_mean, obs_var,
                                                                     dataset_arrays(host_state))
                    host_state = to_host(state)
            self._save_checkpoint(host_state, obs_mean, obs_var)
            notify(Progress(generation, self._last_generation(generation), *self._last()))
        arrays = jax.tree.map(np.asarray, dataset_arrays(to_host(state)))
        if validate is not None and not config.restarts and not self.log.scored(generation):
            self._validate(validate, generation, arrays)  # a finished run resumed with validation turned on
        self.last_dataset = self._dataset(arrays, obs_mean, obs_var)
        if self.best is not None:
            return self._dataset(self.best["arrays"], obs_mean, obs_var, selected=self.log.selected())
        return self.last_dataset

    def _program(self, obs_mean, obs_var, start, key, checkpoint=None):
        """``(state, run_chunk, dataset_arrays)`` for the current population: the state is ``checkpoint``'s,
        else a fresh one drawn from ``key`` with its ES mean at ``start`` (None: zeros)."""
        import jax
        import jax.numpy as jnp

        config = self.config if not self.restarts else replace(self.config, population_size=self.population_size)
        mesh = make_mesh(config, self.num_devices)
        with envs_on_local_device():
            init_state, run_chunk, dataset_arrays = make_generation(
                config, jnp.asarray(obs_mean), jnp.asarray(obs_var), mesh, start=start, train_batch=self.train_batch)
        state = init_state(key)
        if checkpoint is not None:
            state = checkpoint.restore_state(state)
        if mesh is not None:
            # The carried state lives replicated on the mesh, going in and coming out, so every chunk
            # sees the same input shardings and reuses one compiled program; with several processes
            # this also makes it a global array that every process can read back.
            from jax.sharding import NamedSharding, PartitionSpec

            replicated = NamedSharding(mesh, PartitionSpec())
            state = replicate(jax.tree.map(np.asarray, state), replicated)
            run_chunk = jax.jit(run_chunk, static_argnums=1, out_shardings=replicated)
        return state, run_chunk, dataset_arrays

    def _next_stop(self, generation: int) -> int:
        """Where the chunk from ``generation`` ends: the next multiple of the checkpoint (and validation)
        period, or the last generation, so chunks fall alike however often a run was stopped."""
        periods = [self.checkpoint_every] + ([self.validation.every] if self.validation is not None else [])
        return min([self.config.num_generations] + [(generation // period + 1) * period for period in periods])

    # -- restarts -----------------------------------------------------------------------------
    def _check_restart_validation(self, checkpoint) -> None:
        record = checkpoint.validation()
        if self.config.restarts and record is not None and (
                not self.validation.same_scores_as(record.get("settings"))
                or record["settings"].get("every") != self.validation.every):
            raise SettingsMismatchError(f"checkpoint {checkpoint.path} was validated with other settings, and its "
                                        "restarts follow the validation")

    def _stale(self) -> bool:
        """Whether the last ``restart_patience`` validations (since the last restart) found no new best."""
        config = self.config
        if len(self.restarts) >= config.restarts or self.best is None:
            return False
        since = max(self.best["generation"], self.restarts[-1]["generation"] if self.restarts else 0)
        return sum(row["generation"] > since for row in self.log.history) >= config.restart_patience

    def _restart_due(self) -> bool:
        """Process 0 decides (it alone validates); every process hears the verdict."""
        return from_lead(lambda: b"1" if self._stale() else None) is not None

    def _restart(self, generation: int, obs_mean, obs_var, current: dict):
        """Start the strategy afresh from the best validated mean with a larger population (drawn
        deterministically: the run's seed folded with the restart's number)."""
        import jax

        best = self.log.best_arrays if is_lead_process() else None
        arrays = broadcast_arrays(jax.tree.map(np.asarray, best if best is not None else current))
        self.restarts.append({"generation": generation,
                              "population_size": self.population_size * self.config.restart_factor})
        key = jax.random.fold_in(jax.random.PRNGKey(self.config.seed), len(self.restarts))
        return self._program(obs_mean, obs_var, arrays, key)

    def _validate(self, validate, generation: int, arrays: dict) -> None:
        start_time = time.perf_counter()
        returns = validate(*self._pairs(arrays))
        self.log.add(generation, returns, arrays, seconds=time.perf_counter() - start_time)

    def _save_checkpoint(self, state, obs_mean, obs_var) -> None:
        """Write the (host copy of the) state; only process 0 writes."""
        if not is_lead_process():
            return
        log = self.log
        save_checkpoint(self.out, self.config, self.history, obs_mean, obs_var, state,
                        None if log is None else log.record(), None if log is None else log.best_arrays, self.restarts,
                        self.commands)

    def _last(self) -> tuple[float, float, float | None]:
        validation = None if self.best is None else self.best["mean"]
        if not self.history:
            return float("nan"), float("nan"), validation
        return self.history[-1]["mean"], max(row["max"] for row in self.history), validation

    def _pairs(self, arrays: dict) -> tuple[np.ndarray, np.ndarray]:
        """The dataset's (states, actions) from the ES mean's arrays: labelled states only for discrete envs."""
        config = self.config
        states = arrays["states"]
        if not get_env_spec(config.env).discrete:
            return states, arrays["actions"]
        labels = np.argmax(arrays["label_logits"], -1) if config.learned_labels else fixed_labels(config)
        keep = labels >= 0
        return states[keep], labels[keep]

    def _method_record(self, name: str, selected: dict | None, **details) -> dict:
        """The card's ``method`` section: what ran (``details`` after the common settings) and what it cost."""
        config = self.config
        method = {"name": name, "strategy": config.strategy, "preset": config.preset,
                  "generations": len(self.history), "population_size": config.population_size, **details,
                  "env_steps": self.history[-1]["env_steps"] if self.history else 0,
                  "final_population_mean_fitness": self.history[-1]["mean"] if self.history else None,
                  "best_population_mean_fitness": max((row["mean"] for row in self.history), default=None),
                  "config": config.to_dict()}
        if selected is not None:
            method["selected"] = selected
        if self.restarts:
            method["restarts"] = list(self.restarts)
        if self.max_env_steps is not None:
            method["max_env_steps"] = self.max_env_steps
        return method

    def _dataset(self, arrays: dict, obs_mean, obs_var, selected: dict | None = None) -> Dataset:
        from hades.provenance import provenance

        config = self.config
        # The command that started the run, not the one that resumed it: interrupted and resumed
        # gives the same file as uninterrupted (the resumptions are in commands.csv).
        started_by = {"command": self.commands[0]["command"]} if self.commands else {}
        states, actions = self._pairs(arrays)
        method = self._method_record(config.method, selected, inits_per_generation=config.inits_per_generation)
        total_steps = method["env_steps"]
        if config.extra_archs:
            from hades.policy import format_arch

            method["architectures"] = [format_arch(arch) for arch in config.architectures]
            if selected is not None:  # the validation trained every architecture
                method["selected"] = {**selected, "architectures": len(config.architectures)}
        if self.start is not None:
            parent = self.start.info.get("method") or {}
            method["init_from"] = {"source": self.start_source, "sha256": self.start.sha256,
                                   "generations": parent.get("generations"), "env_steps": parent.get("env_steps")}
            if isinstance(parent.get("env_steps"), int):
                method["env_steps_including_init"] = total_steps + parent["env_steps"]
        info = {"method": method, "recipe": config.recipe.to_dict(), "backend": config.backend,
                "license": "apache-2.0", "provenance": provenance(config.seed, **started_by)}
        constant = config.normalization == "constant"
        return Dataset(states, actions, config.env, config.normalization,
                       obs_mean if constant else None, obs_var if constant else None, info)

    def write_outputs(self, dataset: Dataset, evaluation: dict | None = None, pictures: bool = True) -> Path:
        """Write the dataset folder next to the checkpoint (:func:`hades.outputs.write_outputs`).

        With several processes only process 0 writes; the others return ``out`` untouched.
        """
        if not is_lead_process():
            return self.out
        from hades.outputs import write_outputs

        return write_outputs(self.out, dataset, self.history, self.validation_history, evaluation, pictures,
                             commands=self.commands)
