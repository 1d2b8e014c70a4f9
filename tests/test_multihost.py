"""The population sharded over devices, and over processes joined through ``jax.distributed``.

Every run is a fresh ``hades distill`` process: the XLA CPU device count is fixed when jax is
imported, and a multi-host run is several processes. The same tiny distillation runs on 1 device,
on 2 devices of one process, and in 2 processes of 1 device each that meet at a coordinator on
127.0.0.1 (gloo collectives on CPU).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hades
from hades.localprocs import free_port

pytestmark = pytest.mark.slow

# inverted_double_pendulum compiles several times faster than hopper; 2 chunks of 1 generation
# carry the state across a checkpoint.
RUN = ["distill", "inverted_double_pendulum", "--pairs", "4", "--preset", "cpu", "--population", "8",
       "--generations", "2", "--checkpoint-every", "1", "--inits", "1", "--inner-steps", "20",
       "--arch", "16,16:tanh", "--eval-envs", "1", "--eval-steps", "50", "--final-seeds", "0"]
TIMEOUT = 900


def _env(devices: int, **extra: str) -> dict:
    env = dict(os.environ)
    flags = [flag for flag in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in flag]
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
    for name in ("HADES_COORDINATOR", "HADES_NUM_PROCESSES", "HADES_PROCESS_ID", "HADES_DEBUG"):
        env.pop(name, None)
    env.update(extra)
    return env


def _start(out: Path, devices: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hades", *RUN, "--devices", str(devices), "--out", str(out), *args],
                            env=env or _env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> tuple[str, str]:
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"timed out: {stderr[-2000:]}")
    assert process.returncode == 0, stderr[-3000:]
    return stdout, stderr


def _history(out: Path) -> list[dict]:
    with open(out / "fitness.csv", newline="") as handle:
        return [{key: float(value) for key, value in row.items() if key != "seconds"} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory) -> Path:
    """The reference: one process, the population sharded over its 2 CPU devices."""
    out = tmp_path_factory.mktemp("devices") / "two"
    _finish(_start(out, 2))
    return out


def test_two_devices_give_the_fitness_of_one(two_devices, tmp_path):
    one = tmp_path / "one"
    _finish(_start(one, 1))
    single, sharded = _history(one), _history(two_devices)
    assert len(single) == len(sharded) == 2
    # Generation 1 scores the same population either way; only the float rounding of the per-device
    # batches differs. Later generations follow the ES update, so they are compared more loosely.
    for key in ("mean", "max", "min"):
        assert sharded[0][key] == pytest.approx(single[0][key], rel=1e-3, abs=1e-3)
        assert sharded[1][key] == pytest.approx(single[1][key], rel=5e-2, abs=1.0)
    assert [row["episodes"] for row in sharded][:1] == [row["episodes"] for row in single][:1]
    assert [row["env_steps"] for row in sharded] == [row["env_steps"] for row in single] == [400.0, 800.0]


def test_two_processes_match_two_devices_and_only_process_0_writes(two_devices, tmp_path):
    out = tmp_path / "hosts"
    coordinator = f"127.0.0.1:{free_port()}"
    hosts = ["--coordinator", coordinator, "--num-processes", "2"]
    lead = _start(out, 1, *hosts, "--process-id", "0")
    # The second process takes its settings from the environment instead of options.
    other = _start(out, 1, env=_env(1, HADES_COORDINATOR=coordinator, HADES_NUM_PROCESSES="2", HADES_PROCESS_ID="1"))
    lead_out, lead_err = _finish(lead)
    other_out, other_err = _finish(other)
    assert "2 cpu device(s) in 2 processes" in " ".join(lead_err.split())
    assert "process 1 done" in other_out and "wrote" not in other_out

    # the whole population ran over both processes: same history and dataset as 2 devices of one process
    assert _history(out) == _history(two_devices)
    ours, reference = hades.Dataset.load(out), hades.Dataset.load(two_devices)
    assert np.array_equal(ours.states, reference.states) and np.array_equal(ours.actions, reference.actions)
    assert ours.info["method"] == reference.info["method"]
    assert not [path for path in tmp_path.iterdir() if path.name != "hosts"]  # nothing else written


def test_a_multi_host_run_resumes_from_process_0s_checkpoint(two_devices, tmp_path):
    """Only process 0 has the checkpoint: it is broadcast, and both processes go on from it."""
    import shutil

    out = tmp_path / "hosts"
    shutil.copytree(two_devices, out)
    (out / "fitness.csv").unlink()
    coordinator = f"127.0.0.1:{free_port()}"
    hosts = ["--coordinator", coordinator, "--num-processes", "2"]
    extended = ["--generations", "3"]  # one more generation than the finished reference run
    lead = _start(out, 1, *hosts, "--process-id", "0", *extended, "--resume")
    other = _start(tmp_path / "elsewhere", 1, *hosts, "--process-id", "1", *extended, "--resume")
    _finish(lead)
    _finish(other)
    history = _history(out)
    assert [row["generation"] for row in history] == [1.0, 2.0, 3.0]
    assert history[:2] == _history(two_devices)
    assert not (tmp_path / "elsewhere").exists()

