"""The distillation runner: the only place with a Python loop, logging, checkpoints and files.

Generations run in jitted chunks of ``checkpoint_every``; after each chunk the ES state and the
fitness history are written atomically to ``OUT/checkpoint/``. ``resume`` reloads them and goes
on with the same compiled program, so an interrupted run ends bit for bit where an uninterrupted
one would.

Several hosts join one run through ``jax.distributed`` (:func:`initialize_distributed`, called
before anything else uses jax): the mesh then spans the devices of every process, every process
runs the same chunks, and only process 0 reads and writes files. What process 0 reads (the
checkpoint, the verdict on the output folder) is broadcast, so every process starts from the same
state or stops with the same error.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from hades.dataset import Dataset
from hades.distillation import DistillConfig, fixed_labels, make_generation, start_arrays
from hades.envs import get_env_spec
from hades.errors import CheckpointError, SpecError
from hades.evaluate import EvalProtocol
from hades.formats import atomic_write_bytes, canonical_json

CHECKPOINT_DIR = "checkpoint"
CSV_COLUMNS = ("generation", "mean", "max", "min", "sigma", "episodes", "env_steps", "seconds")
VALIDATION_CSV_COLUMNS = ("generation", "mean", "std", "min", "max")
# Validation draws its inits from here up, far from the seeds a final evaluation or train-from uses
# (0, 1, ...), so the dataset a run selects is scored afterwards on inits that did not select it.
VALIDATION_FIRST_SEED = 1_000_000


@dataclass(frozen=True)
class Validation:
    """Score the ES mean with fresh inits every ``every`` generations and keep the best one.

    The ES mean of a small population wanders: a dataset that scores well with the inits of one
    generation can train badly from others. Validation trains ``seeds`` fresh policies with the
    run's recipe on the mean itself and evaluates them under ``protocol`` (the standard one by
    default); the run's output is then the best-scoring mean, not the last.
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


@dataclass
class Progress:
    generation: int
    total: int
    mean: float
    best: float
    validation: float | None = None  # the best validation score so far (runs with validation)


def configure_devices(num_devices: int | None = None) -> None:
    """Expose one XLA CPU device per core (must run before jax is imported)."""
    import sys

    if "jax" in sys.modules:
        return
    count = num_devices or os.cpu_count() or 1
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, timeout: int = 300) -> bool:
    """Join a multi-host run through ``jax.distributed`` (call before anything else uses jax).

    Every process passes the same coordinator (``HOST:PORT`` of process 0) and process count and
    its own id. Returns False (and does nothing) when no coordinator is given. On CPU the
    cross-process collectives are gloo's (jax's default).
    """
    if coordinator_address is None:
        if num_processes is not None or process_id is not None:
            raise SpecError("a multi-host run needs --coordinator HOST:PORT (the address of process 0)")
        return False
    if num_processes is None or process_id is None:
        raise SpecError("a multi-host run needs --num-processes and --process-id along with --coordinator")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise SpecError(f"process id must be in 0..{num_processes - 1}, got {process_id}")
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit():
        raise SpecError(f"coordinator must be HOST:PORT, got {coordinator_address!r}")
    import jax

    if jax.distributed.is_initialized():
        return True
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id, initialization_timeout=timeout)
    except Exception as exc:  # jax raises RuntimeError/ValueError/XlaRuntimeError, all meaning "could not join"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"could not join the multi-host run at {coordinator_address} as process "
                        f"{process_id} of {num_processes}: {detail}") from None
    return True


def shutdown_distributed() -> None:
    """Leave the multi-host run, once every process is done with the shared work.

    Process 0 may go on alone afterwards (final evaluation, writing files) without the others
    waiting for it at jax's exit barrier, which gives up after a few minutes.
    """
    import sys

    if "jax" not in sys.modules:
        return
    import jax

    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def is_lead_process() -> bool:
    """True on process 0, the one that reads and writes files (always, without jax.distributed)."""
    import jax

    return jax.process_index() == 0


def make_mesh(config: DistillConfig, num_devices: int | None = None):
    """A 1-D ``population`` mesh; None when there is only one device to use.

    ``num_devices`` counts devices per process. With several processes the mesh takes that many
    devices from every process, and the population must divide evenly over them.
    """
    import jax

    auto = (jax.sharding.AxisType.Auto,)
    if jax.process_count() > 1:
        per_process: dict[int, list] = {}
        for device in jax.devices():
            per_process.setdefault(device.process_index, []).append(device)
        devices = [device for index in sorted(per_process) for device in per_process[index][: num_devices or None]]
        if config.population_size % len(devices):
            raise SpecError(f"population {config.population_size} does not divide over the {len(devices)} devices of "
                            f"{jax.process_count()} processes; pick a multiple of {len(devices)}")
        return jax.make_mesh((len(devices),), ("population",), axis_types=auto, devices=devices)
    devices = jax.devices()[: num_devices or None]
    usable = len(devices)
    while usable > 1 and config.population_size % usable:
        usable -= 1
    if usable <= 1:
        return None
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


@contextlib.contextmanager
def _envs_on_local_device():
    """Build Brax envs on this process's own first device.

    brax builds an env's system with ``mujoco.mjx.put_model``, which places the model on
    ``jax.devices()[0]``; in a multi-process run that device belongs to process 0, and every other
    process would close over arrays it cannot read. Single-process runs are left as they are.
    """
    import jax

    if jax.process_count() == 1:
        yield
        return
    from hades.envs import import_brax

    import_brax()
    from mujoco import mjx

    original, local = mjx.put_model, jax.local_devices()[0]

    def put_model(model, device=None, *args, **kwargs):
        return original(model, device or local, *args, **kwargs)

    mjx.put_model = put_model
    try:
        yield
    finally:
        mjx.put_model = original


def restore_checkpoint(data: bytes, path: Path) -> dict:
    """A checkpoint's payload, whatever settings made it (CheckpointError naming ``path`` if unreadable)."""
    from flax import serialization

    try:
        payload = serialization.msgpack_restore(data)
        payload.get("fingerprint")
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from None
    return payload


def checkpoint_history(payload: dict, path: Path) -> list[dict]:
    """The per-generation rows (mean, max, seconds, env_steps, ...) a checkpoint's payload holds."""
    try:
        history = json.loads(payload["history"])
        if not isinstance(history, list):
            raise ValueError("its history is not a list")
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from None
    return history


def checkpoint_file(out: str | Path) -> Path:
    """Where the run writing to ``out`` keeps its checkpoint."""
    return Path(out) / CHECKPOINT_DIR / "state.msgpack"


def _read_payload(out: str | Path) -> tuple[dict, Path]:
    path = checkpoint_file(out)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    return restore_checkpoint(data, path), path


def read_checkpoint_history(out: str | Path) -> list[dict]:
    """The fitness history of the run in ``out`` so far, from its checkpoint; for reports on running runs."""
    payload, path = _read_payload(out)
    return checkpoint_history(payload, path)


def checkpoint_validation(payload: dict, path: Path) -> dict | None:
    """The validation record (``settings``, ``history``, ``best``) a checkpoint's payload holds; None without one."""
    if "validation" not in payload:
        return None
    try:
        record = json.loads(payload["validation"])
        if not isinstance(record.get("history"), list):
            raise ValueError("its validation history is not a list")
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from None
    return record


def read_checkpoint_validation(out: str | Path) -> dict | None:
    """The validation record of the run in ``out`` so far; None for a run without validation."""
    payload, path = _read_payload(out)
    return checkpoint_validation(payload, path)


def _broadcast_bytes(data: bytes) -> bytes:
    """Process 0's ``data`` on every process (``data`` is ignored elsewhere)."""
    import jax

    if jax.process_count() == 1:
        return data
    from jax.experimental import multihost_utils

    size = int(multihost_utils.broadcast_one_to_all(np.asarray(len(data), np.int64)))
    buffer = np.zeros(size, np.uint8)
    if is_lead_process():
        buffer[:] = np.frombuffer(data, np.uint8)
    return multihost_utils.broadcast_one_to_all(buffer).tobytes()


def _to_host(tree):
    """numpy copies of (possibly global, multi-process) arrays, the same on every process."""
    import jax

    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.sharding.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            return multihost_utils.process_allgather(x, tiled=True)
        return np.asarray(x)

    return jax.tree.map(fetch, tree)


def _replicate(tree, sharding):
    """Place a pytree of values (equal on every process) replicated over the mesh."""
    import jax

    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


_ERRORS = {cls.__name__: cls for cls in (SpecError, CheckpointError)}


class Distiller:
    """Runs (or resumes) one distillation into ``out``.

    With several processes (:func:`initialize_distributed`) every process constructs the same
    Distiller and calls :meth:`run`; only process 0 touches ``out``.
    """

    def __init__(self, config: DistillConfig, out: str | Path, checkpoint_every: int = 10,
                 num_devices: int | None = None, final_eval_seeds: int = 8,
                 start: Dataset | None = None, start_source: str | None = None, train_batch="auto",
                 validation: Validation | None = None):
        """``start``: the dataset a warm start begins from (``config.init_from`` must be its sha256).

        ``validation``: score the ES mean with fresh inits as the run goes and return the best mean
        (None: return the last one). It does not change the search, so a run can turn it on when resumed.

        ``train_batch``: candidates whose inner policies train at once per device ("auto": by platform
        and policy size, see :func:`hades.distillation.default_train_batch`; None: all of them).
        """
        if (start is None) != (config.init_from is None) or (start is not None and start.sha256 != config.init_from):
            raise SpecError("the starting dataset does not match config.init_from (its sha256)")
        self.config = config
        self.start = start
        self.start_source = start_source
        self.train_batch = train_batch
        self.out = Path(out)
        self.checkpoint_every = max(1, checkpoint_every)
        self.num_devices = num_devices
        self.final_eval_seeds = final_eval_seeds
        self.validation = validation
        self.history: list[dict] = []
        self.validation_history: list[dict] = []
        self.best: dict | None = None  # the best validated mean: generation, mean, std, arrays

    # -- checkpoints --------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return checkpoint_file(self.out)

    def _save_checkpoint(self, state, obs_mean, obs_var) -> None:
        """Write the (host copy of the) state; only process 0 writes."""
        import jax
        from flax import serialization

        if not is_lead_process():
            return
        payload = {
            "fingerprint": self.config.fingerprint(),
            "config": canonical_json(self.config.to_dict()),
            "history": canonical_json(self.history),
            "obs_mean": np.asarray(obs_mean), "obs_var": np.asarray(obs_var),
            "state": jax.tree.map(np.asarray, serialization.to_state_dict(state)),
        }
        if self.validation is not None:
            payload["validation"] = canonical_json({
                "settings": self.validation.to_dict(), "history": self.validation_history,
                "best": None if self.best is None else {k: v for k, v in self.best.items() if k != "arrays"}})
            if self.best is not None:
                payload["best_arrays"] = {name: np.asarray(value) for name, value in self.best["arrays"].items()}
        atomic_write_bytes(self.checkpoint_path, serialization.msgpack_serialize(payload))

    def _read_start(self, resume: bool) -> bytes | None:
        """Process 0 checks the output folder and reads the checkpoint; every process gets the verdict.

        Returns the checkpoint bytes (resume) or None (fresh start); raises the same error on
        every process when the run cannot start.
        """
        import jax

        message = b"N"
        if is_lead_process():
            try:
                if resume:
                    try:
                        message = b"C" + self.checkpoint_path.read_bytes()
                    except FileNotFoundError:
                        raise CheckpointError(
                            f"no checkpoint at {self.checkpoint_path}; run without --resume to start") from None
                elif self._out_in_use():
                    raise SpecError(f"{self.out} already exists and is not empty; pass --resume to continue it "
                                    "or pick another --out")
            except (SpecError, CheckpointError) as exc:
                message = b"E" + canonical_json([type(exc).__name__, str(exc)]).encode()
        if jax.process_count() > 1:
            message = _broadcast_bytes(message)
            self._check_same_config()
        if message[:1] == b"E":
            name, text = json.loads(message[1:])
            raise _ERRORS[name](text)
        return message[1:] if message[:1] == b"C" else None

    def _check_same_config(self) -> None:
        """Every process must run the same config (a mismatch would silently corrupt the run)."""
        from jax.experimental import multihost_utils

        mine = np.frombuffer(bytes.fromhex(self.config.fingerprint()), np.uint8)
        every = multihost_utils.process_allgather(mine)
        if not (every == every[0]).all():
            raise SpecError("the processes of this multi-host run were started with different settings; "
                            "start every process with the same options")

    def _out_in_use(self) -> bool:
        return self.out.exists() and any(self.out.iterdir())

    def _parse_checkpoint(self, data: bytes) -> dict:
        payload = restore_checkpoint(data, self.checkpoint_path)
        if payload.get("fingerprint") != self.config.fingerprint():
            raise CheckpointError(
                f"checkpoint {self.checkpoint_path} was made with other settings; use the same options to resume, or another --out")
        return payload

    def _load_checkpoint(self, template, data: bytes | None = None):
        """Restore ``(state, obs_mean, obs_var)`` and the history from the checkpoint (bytes or file)."""
        from flax import serialization

        if data is None:
            try:
                data = self.checkpoint_path.read_bytes()
            except FileNotFoundError:
                raise CheckpointError(f"no checkpoint at {self.checkpoint_path}; run without --resume to start") from None
        payload = self._parse_checkpoint(data)
        history = checkpoint_history(payload, self.checkpoint_path)
        try:
            state = serialization.from_state_dict(template, payload["state"])
        except Exception as exc:
            raise CheckpointError(f"checkpoint {self.checkpoint_path} is unreadable ({exc}); delete it to start over") from None
        self.history = history
        self._load_validation(payload)
        return state, payload["obs_mean"], payload["obs_var"]

    def _load_validation(self, payload: dict) -> None:
        """Take over the checkpoint's validation record when its scores compare with this run's."""
        self.validation_history, self.best = [], None
        record = checkpoint_validation(payload, self.checkpoint_path) if self.validation is not None else None
        if record is None:
            return
        if not self.validation.same_scores_as(record.get("settings")):
            import warnings

            warnings.warn("the checkpoint's validation used other seeds or another protocol; "
                          "validation starts over from this generation", stacklevel=3)
            return
        self.validation_history = record["history"]
        if record.get("best") is not None:
            try:
                self.best = {**record["best"], "arrays": dict(payload["best_arrays"])}
            except Exception as exc:
                raise CheckpointError(f"checkpoint {self.checkpoint_path} is unreadable ({exc}); delete it to start over") from None

    def plan(self) -> dict:
        """What :meth:`run` would do, without doing it: the cost of the run and the state of ``out``.

        ``action`` is ``start`` (an empty or missing folder), ``resume`` (a checkpoint made with
        these settings; ``--resume`` continues it), ``refuse`` (a folder that cannot be used, with
        ``reason``) or ``finish`` (the checkpoint already holds every generation: ``--resume``
        only writes the outputs).
        """
        from hades.distillation import policy_param_count

        config = self.config
        fingerprint = config.fingerprint()
        plan = {
            "fingerprint": fingerprint,
            "config": config.to_dict(),
            "policy_parameters": policy_param_count(config),
            "env_steps_per_generation": config.env_steps_per_generation,
            "env_steps_total": config.env_steps_per_generation * config.num_generations,
            "out": str(self.out),
            "checkpoint": None,
            "validation": None if self.validation is None else self.validation.to_dict(),
        }
        try:
            data = self.checkpoint_path.read_bytes()
        except FileNotFoundError:
            if self._out_in_use():
                plan.update(action="refuse", reason=f"{self.out} already exists and is not empty")
            else:
                plan["action"] = "start"
            return plan
        try:
            payload = restore_checkpoint(data, self.checkpoint_path)
            done = len(checkpoint_history(payload, self.checkpoint_path))
        except CheckpointError as exc:
            plan.update(action="refuse", reason=str(exc))
            return plan
        matches = payload.get("fingerprint") == fingerprint
        plan["checkpoint"] = {"path": str(self.checkpoint_path), "generations": done,
                              "fingerprint": payload.get("fingerprint"), "matches": matches}
        if not matches:
            plan.update(action="refuse", reason="the checkpoint was made with other settings")
        else:
            plan["action"] = "finish" if done >= config.num_generations else "resume"
        return plan

    # -- the loop -----------------------------------------------------------------------------
    def run(self, resume: bool = False, on_progress: Callable[[Progress], None] | None = None) -> Dataset:
        import jax
        import jax.numpy as jnp

        config = self.config
        spec = get_env_spec(config.env)
        checkpoint = self._read_start(resume)
        mesh = make_mesh(config, self.num_devices)
        if checkpoint is not None:
            # The program is built with the statistics the run started with.
            payload = self._parse_checkpoint(checkpoint)
            obs_mean, obs_var = payload["obs_mean"], payload["obs_var"]
        elif self.start is not None and config.normalization == "constant":
            # The starting states live in the starting dataset's normalised space: keep its statistics.
            obs_mean, obs_var = self.start.normalization_arrays()
        elif config.normalization == "constant" and jax.process_count() > 1:
            # Process 0 estimates the statistics; every process uses its numbers.
            from jax.experimental import multihost_utils

            if is_lead_process():
                with _envs_on_local_device():
                    obs_mean, obs_var = estimate_obs_stats(config)
            else:
                obs_mean, obs_var = np.zeros(spec.obs_dim, np.float32), np.zeros(spec.obs_dim, np.float32)
            obs_mean, obs_var = multihost_utils.broadcast_one_to_all((obs_mean, obs_var))
        elif config.normalization == "constant":
            obs_mean, obs_var = estimate_obs_stats(config)
        else:
            obs_mean, obs_var = np.zeros(spec.obs_dim, np.float32), np.ones(spec.obs_dim, np.float32)
        with _envs_on_local_device():
            init_state, run_chunk, dataset_arrays = make_generation(
                config, jnp.asarray(obs_mean), jnp.asarray(obs_var), mesh,
                start=None if self.start is None else start_arrays(config, self.start), train_batch=self.train_batch)
        state = init_state(jax.random.PRNGKey(config.seed))
        self.history, self.validation_history, self.best = [], [], None
        if checkpoint is not None:
            state, obs_mean, obs_var = self._load_checkpoint(state, checkpoint)
        if mesh is not None:
            # The carried state lives replicated on the mesh, going in and coming out, so every chunk
            # sees the same input shardings and reuses one compiled program; with several processes
            # this also makes it a global array that every process can read back.
            from jax.sharding import NamedSharding, PartitionSpec

            replicated = NamedSharding(mesh, PartitionSpec())
            state = _replicate(jax.tree.map(np.asarray, state), replicated)
            run_chunk = jax.jit(run_chunk, static_argnums=1, out_shardings=replicated)
        generation = len(self.history)
        validate = None
        if self.validation is not None and is_lead_process():
            with _envs_on_local_device():
                validate = self._make_validate(obs_mean, obs_var)
        notify = on_progress or (lambda progress: None)
        notify(Progress(generation, config.num_generations, *self._last()))
        while generation < config.num_generations:
            length = min(self.checkpoint_every, config.num_generations - generation)
            before = generation
            start = time.perf_counter()
            state, metrics = run_chunk(state, length)
            metrics = _to_host(metrics)
            seconds = (time.perf_counter() - start) / length
            for index in range(length):
                generation += 1
                self.history.append({
                    "generation": generation, **{name: float(metrics[name][index]) for name in ("mean", "max", "min", "sigma")},
                    "episodes": int(metrics["episodes"][index]),
                    "env_steps": config.env_steps_per_generation * generation, "seconds": round(seconds, 4),
                })
            host_state = _to_host(state)
            if validate is not None and (generation // self.validation.every > before // self.validation.every
                                         or generation == config.num_generations):
                self._validate(validate, generation, jax.tree.map(np.asarray, dataset_arrays(host_state)))
            self._save_checkpoint(host_state, obs_mean, obs_var)
            notify(Progress(generation, config.num_generations, *self._last()))
        arrays = jax.tree.map(np.asarray, dataset_arrays(_to_host(state)))
        if validate is not None and not any(row["generation"] == generation for row in self.validation_history):
            self._validate(validate, generation, arrays)  # a finished run resumed with validation turned on
        if self.best is not None:
            return self._dataset(self.best["arrays"], obs_mean, obs_var, selected=self.best)
        return self._dataset(arrays, obs_mean, obs_var)

    def _make_validate(self, obs_mean, obs_var) -> Callable[[dict], np.ndarray]:
        """``validate(arrays) -> returns`` of fresh inits trained on the ES mean: compiled once, on this process."""
        import jax

        from hades.trainfrom import make_train_and_evaluate_arrays, seed_keys

        config, validation = self.config, self.validation
        spec = get_env_spec(config.env)
        run = make_train_and_evaluate_arrays(spec, config.recipe, validation.protocol, config.normalization,
                                             config.backend)
        device = jax.local_devices()[0]
        keys = jax.device_put(seed_keys(range(validation.first_seed, validation.first_seed + validation.seeds)), device)
        stats = jax.device_put((np.asarray(obs_mean, np.float32), np.asarray(obs_var, np.float32)), device)
        compiled = jax.jit(lambda states, targets: run(states, targets, *stats, keys)[1]["mean_return"])

        def validate(arrays: dict) -> np.ndarray:
            return np.asarray(compiled(*jax.device_put(self._pairs(arrays), device)))

        return validate

    def _validate(self, validate, generation: int, arrays: dict) -> None:
        returns = validate(arrays)
        row = {"generation": generation, "mean": round(float(returns.mean()), 3), "std": round(float(returns.std()), 3),
               "min": round(float(returns.min()), 3), "max": round(float(returns.max()), 3)}
        self.validation_history.append(row)
        if self.best is None or row["mean"] > self.best["mean"]:
            self.best = {"generation": generation, "mean": row["mean"], "std": row["std"], "arrays": arrays}

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

    def _dataset(self, arrays: dict, obs_mean, obs_var, selected: dict | None = None) -> Dataset:
        from hades.provenance import provenance

        config = self.config
        states, actions = self._pairs(arrays)
        total_steps = config.env_steps_per_generation * len(self.history)
        method = {
            "name": config.method, "strategy": config.strategy, "preset": config.preset,
            "generations": len(self.history), "population_size": config.population_size,
            "inits_per_generation": config.inits_per_generation, "env_steps": total_steps,
            "final_population_mean_fitness": self.history[-1]["mean"] if self.history else None,
            "best_population_mean_fitness": max((row["mean"] for row in self.history), default=None),
            "config": config.to_dict(),
        }
        if selected is not None:
            validation = self.validation
            last = validation.first_seed + validation.seeds - 1
            method["selected"] = {
                "generation": selected["generation"], "validation_mean": selected["mean"],
                "validation_std": selected["std"], "validations": len(self.validation_history),
                "seeds": f"{validation.first_seed}-{last}", "protocol": validation.protocol.to_dict()}
        if self.start is not None:
            parent = self.start.info.get("method") or {}
            method["init_from"] = {"source": self.start_source, "sha256": self.start.sha256,
                                   "generations": parent.get("generations"), "env_steps": parent.get("env_steps")}
            if isinstance(parent.get("env_steps"), int):
                method["env_steps_including_init"] = total_steps + parent["env_steps"]
        info = {"method": method, "recipe": config.recipe.to_dict(), "backend": config.backend,
                "license": "apache-2.0", "provenance": provenance(config.seed)}
        constant = config.normalization == "constant"
        return Dataset(states, actions, config.env, config.normalization,
                       obs_mean if constant else None, obs_var if constant else None, info)

    # -- outputs ------------------------------------------------------------------------------
    def write_outputs(self, dataset: Dataset, evaluation: dict | None = None, pictures: bool = True) -> Path:
        """Write the dataset folder (card, fitness.csv, fitness.png, states.png) next to the checkpoint.

        With several processes only process 0 writes; the others return ``out`` untouched.
        """
        if not is_lead_process():
            return self.out
        import shutil
        import tempfile

        from hades.formats import CARD_FILE
        from hades.render import RenderError, fitness_plot, render_states

        if evaluation is not None:
            dataset = dataset.replace(info={**dataset.info, "evaluation": evaluation})
        self.out.mkdir(parents=True, exist_ok=True)
        # Staged next to the output (same file system), gone afterwards whatever happens.
        with tempfile.TemporaryDirectory(prefix=f".{self.out.name}.", suffix=".staging", dir=self.out.parent) as staging:
            tmp = Path(staging)
            csv_path = tmp / "fitness.csv"
            with open(csv_path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
                writer.writeheader()
                writer.writerows(self.history)
            selected = (dataset.info.get("method") or {}).get("selected") or {}
            plot = fitness_plot(csv_path, tmp / "fitness.png", validation=self.validation_history,
                                selected=selected.get("generation"))
            extra = {"fitness.csv": csv_path, "fitness.png": plot}
            if self.validation_history:
                validation_path = tmp / "validation.csv"
                with open(validation_path, "w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=VALIDATION_CSV_COLUMNS)
                    writer.writeheader()
                    writer.writerows(self.validation_history)
                extra["validation.csv"] = validation_path
            if pictures:
                try:
                    extra["states.png"] = render_states(dataset, tmp / "states.png")
                except RenderError as exc:  # no OpenGL platform here: the card simply has no picture
                    import warnings

                    warnings.warn(f"states.png skipped: {exc}", stacklevel=2)
            staged = tmp / "dataset"
            dataset.save(staged, parquet=True, extra_files=extra)
            # The card (which holds the checksum) goes in last.
            for item in sorted(staged.iterdir(), key=lambda item: item.name == CARD_FILE):
                target = self.out / item.name
                if target.is_dir():
                    shutil.rmtree(target)
                os.replace(item, target)
        return self.out

