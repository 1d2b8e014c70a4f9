"""One run as several processes on this machine, each on its own share of the CPU cores.

On a CPU, N processes of one device each, pinned to their cores and joined through
``jax.distributed`` at 127.0.0.1, each train inner policies on a core of their own, which N XLA
CPU devices in one process do not (bench/distill.py's training floor does not fall with a second
device; bench/host.py's training kernel runs 1.8x as fast in two processes). :func:`start_local_processes` turns
the command that calls it into process 0 of such a run: it starts processes 1..N-1 running the
same command with the multi-host options added, pins each process to its cores, and watches the
others, so that one that fails stops the run with its own message instead of leaving process 0
waiting at a collective.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from hades.errors import MultiHostError

MULTI_HOST_VARIABLES = ("HADES_COORDINATOR", "HADES_NUM_PROCESSES", "HADES_PROCESS_ID")
# How long a failed process's siblings may take to fail the same way themselves (a bad setting fails
# every process at once, and process 0's own message is then the one to show).
GRACE_SECONDS = 5.0


def core_groups(processes: int, cores: list[int] | None = None) -> list[list[int]]:
    """This process's usable cores (or ``cores``) split into ``processes`` contiguous groups, as even as can be."""
    cores = sorted(os.sched_getaffinity(0) if cores is None else cores)
    if processes < 2:
        raise MultiHostError(f"local processes must be at least 2, got {processes}")
    if len(cores) < processes:
        raise MultiHostError(f"{processes} local processes need {processes} CPU cores; this process may use "
                             f"{len(cores)}")
    size, extra = divmod(len(cores), processes)
    groups, start = [], 0
    for index in range(processes):
        end = start + size + (index < extra)
        groups.append(cores[start:end])
        start = end
    return groups


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalRun:
    """The processes 1..N-1 this process (process 0) started, and the coordinator they join."""

    coordinator: str
    num_processes: int
    children: list = field(default_factory=list)  # (process id, Popen, stderr file)
    exiting: bool = False

    def watch(self) -> None:
        """Stop the whole run (exit 1) as soon as another process fails, with that process's last words."""
        for process_id, child, log in self.children:
            threading.Thread(target=self._watch_one, args=(process_id, child, log), daemon=True).start()
        atexit.register(self.close)

    def _watch_one(self, process_id: int, child, log) -> None:
        code = child.wait()
        if code == 0 or self.exiting:
            return
        time.sleep(GRACE_SECONDS)
        if self.exiting:
            return
        log.seek(0)
        lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {code}"
        sys.stderr.write(f"error: local process {process_id} of {self.num_processes} stopped: {last}\n")
        sys.stderr.flush()
        self.terminate()
        os._exit(1)  # process 0 may be waiting inside a collective that would never return

    def terminate(self) -> None:
        for _, child, _ in self.children:
            if child.poll() is None:
                child.terminate()

    def close(self, timeout: float = 60.0) -> None:
        """At exit: let the others finish (they leave the run when process 0 does), then stop any that linger."""
        self.exiting = True
        deadline = time.monotonic() + timeout
        for _, child, _ in self.children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.terminate()


def start_local_processes(processes: int, argv: list[str]) -> LocalRun:
    """Start processes 1..``processes``-1 as ``python -m hades *argv`` plus the multi-host options, each
    pinned to its group of :func:`core_groups`, and pin this process to the first group.

    Call it before jax is imported, then join with ``initialize_distributed(run.coordinator,
    run.num_processes, 0)``. The others' output is dropped, except the last line of one that fails,
    which stops this process too (exit 1); at exit this process waits for the others.
    """
    groups = core_groups(processes)
    coordinator = f"127.0.0.1:{free_port()}"
    env = {key: value for key, value in os.environ.items() if key not in MULTI_HOST_VARIABLES}
    run = LocalRun(coordinator, processes)
    try:
        for process_id in range(1, processes):
            log = tempfile.TemporaryFile()
            cores = groups[process_id]
            child = subprocess.Popen(
                [sys.executable, "-m", "hades", *argv, "--coordinator", coordinator,
                 "--num-processes", str(processes), "--process-id", str(process_id)],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                preexec_fn=lambda cores=cores: os.sched_setaffinity(0, cores))
            run.children.append((process_id, child, log))
    except OSError as exc:
        run.terminate()
        raise MultiHostError(f"could not start the local processes: {exc}") from None
    os.sched_setaffinity(0, groups[0])
    run.watch()
    return run


def without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` / ``name=VALUE``: the command line the other processes run."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == name:
            skip = True
        elif not item.startswith(f"{name}="):
            kept.append(item)
    return kept
