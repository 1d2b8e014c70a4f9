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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from hades.dataset import Dataset
from hades.distill import DistillConfig, fixed_labels, make_generation, start_arrays
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


def read_checkpoint_history(out: str | Path) -> list[dict]:
    """The fitness history of the run in ``out`` so far, from its checkpoint; for reports on running runs."""
    path = checkpoint_file(out)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    return checkpoint_history(restore_checkpoint(data, path), path)


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
                 start: Dataset | None = None, start_source: str | None = None, train_batch="auto"):
        """``start``: the dataset a warm start begins from (``config.init_from`` must be its sha256).

        ``train_batch``: candidates whose inner policies train at once per device ("auto": by platform
        and policy size, see :func:`hades.distill.default_train_batch`; None: all of them).
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
        self.history: list[dict] = []

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
        return state, payload["obs_mean"], payload["obs_var"]

    def plan(self) -> dict:
        """What :meth:`run` would do, without doing it: the cost of the run and the state of ``out``.

        ``action`` is ``start`` (an empty or missing folder), ``resume`` (a checkpoint made with
        these settings; ``--resume`` continues it), ``refuse`` (a folder that cannot be used, with
        ``reason``) or ``finish`` (the checkpoint already holds every generation: ``--resume``
        only writes the outputs).
        """
        from hades.distill import policy_param_count

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
        self.history = []
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
        notify = on_progress or (lambda progress: None)
        notify(Progress(generation, config.num_generations, *self._last()))
        while generation < config.num_generations:
            length = min(self.checkpoint_every, config.num_generations - generation)
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
            self._save_checkpoint(_to_host(state), obs_mean, obs_var)
            notify(Progress(generation, config.num_generations, *self._last()))
        arrays = jax.tree.map(np.asarray, dataset_arrays(_to_host(state)))
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
            extra = {"fitness.csv": csv_path, "fitness.png": fitness_plot(csv_path, tmp / "fitness.png")}
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


def final_evaluation(dataset: Dataset, seeds: int, protocol=None) -> dict:
    """The standard protocol: fresh inits trained with the card's recipe, sampled actions."""
    from hades.trainfrom import train_from

    result = train_from(dataset, num_seeds=seeds, protocol=protocol)
    return {"protocol": result.protocol.to_dict(), "returns": [round(float(r), 2) for r in result.returns],
            "episodes": [int(e) for e in result.episodes], "mean": round(result.mean, 2), "std": round(result.std, 2),
            "seeds": list(result.seeds),
            "summary": f"{seeds} fresh random inits trained with this card's recipe, each evaluated once."}
