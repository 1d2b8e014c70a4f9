"""Devices and ``jax.distributed``: the mesh a run shards its population over, and several hosts in one run.

Several hosts join one run through :func:`initialize_distributed` (called before anything else
uses jax): the mesh then spans the devices of every process, every process runs the same
program, and only process 0 reads and writes files. What process 0 reads is broadcast
(:func:`from_lead`), so every process starts from the same state or stops with the same error.
Every function works unchanged in a single process, where the collectives are skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Callable

import numpy as np

from hades import errors
from hades.errors import HadesError, MultiHostError, SpecError
from hades.formats import canonical_json


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
            raise MultiHostError("a multi-host run needs the coordinator's address (HOST:PORT of process 0)")
        return False
    if num_processes is None or process_id is None:
        raise MultiHostError("a multi-host run needs the number of processes and this process's id along with the coordinator")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise MultiHostError(f"process id must be in 0..{num_processes - 1}, got {process_id}")
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit():
        raise MultiHostError(f"coordinator must be HOST:PORT, got {coordinator_address!r}")
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


def make_mesh(config, num_devices: int | None = None):
    """A 1-D ``population`` mesh for a :class:`~hades.distillation.DistillConfig`; None when there is only one device to use.

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


@contextlib.contextmanager
def envs_on_local_device():
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


def broadcast_bytes(data: bytes) -> bytes:
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


def broadcast_arrays(tree):
    """Process 0's pytree of numpy arrays on every process (the others pass arrays of the same shapes)."""
    import jax

    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return multihost_utils.broadcast_one_to_all(tree)


def from_lead(read: Callable[[], bytes | None]) -> bytes | None:
    """``read()`` on process 0 alone; every process returns its bytes, or raises the hades error it raised.

    Only process 0 may touch the files of a run, yet every process must decide alike whether the
    run can start, so the outcome travels, not just the data.
    """
    import jax

    message = b"N"
    if is_lead_process():
        try:
            data = read()
            message = b"N" if data is None else b"D" + data
        except HadesError as exc:
            message = b"E" + canonical_json([type(exc).__name__, str(exc)]).encode()
    if jax.process_count() > 1:
        message = broadcast_bytes(message)
    if message[:1] == b"E":
        name, text = json.loads(message[1:])
        kind = getattr(errors, name, None)
        raise (kind if isinstance(kind, type) and issubclass(kind, HadesError) else HadesError)(text)
    return message[1:] if message[:1] == b"D" else None


def check_same_everywhere(fingerprint: str) -> None:
    """Every process must run the same settings (a mismatch would silently corrupt the run).

    ``fingerprint`` is a hex digest of this process's settings.
    """
    import jax

    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    mine = np.frombuffer(bytes.fromhex(fingerprint), np.uint8)
    every = multihost_utils.process_allgather(mine)
    if not (every == every[0]).all():
        raise SpecError("the processes of this multi-host run were started with different settings; "
                        "start every process with the same options")


def to_host(tree):
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


def replicate(tree, sharding):
    """Place a pytree of values (equal on every process) replicated over the mesh."""
    import jax

    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)
