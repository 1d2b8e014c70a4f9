"""``hades distill --local-processes N``: one run as N pinned processes on this machine."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap

import pytest

from hades.errors import MultiHostError
from hades.localprocs import core_groups, without_option

TINY = ["distill", "inverted_double_pendulum", "--pairs", "4", "--preset", "cpu", "--population", "8",
        "--generations", "2", "--checkpoint-every", "1", "--inits", "1", "--inner-steps", "20",
        "--arch", "16,16:tanh", "--eval-envs", "1", "--eval-steps", "50", "--final-seeds", "0"]


def test_cores_split_into_even_contiguous_groups():
    assert core_groups(2, [0, 1]) == [[0], [1]]
    assert core_groups(2, [3, 0, 2]) == [[0, 2], [3]]
    assert core_groups(3, list(range(8))) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    with pytest.raises(MultiHostError, match="3 local processes need 3 CPU cores; this process may use 2"):
        core_groups(3, [0, 1])
    with pytest.raises(MultiHostError, match="at least 2"):
        core_groups(1, [0, 1])


def test_the_other_processes_run_the_command_without_the_launch_option():
    argv = ["distill", "hopper", "--local-processes", "2", "--devices=3", "--out", "run"]
    assert without_option(argv, "--local-processes") == ["distill", "hopper", "--devices=3", "--out", "run"]
    assert without_option(argv, "--devices") == ["distill", "hopper", "--local-processes", "2", "--out", "run"]


def _one_line_error(argv: list[str]) -> str:
    from test_store_commands import cli

    code, out, err = cli(*argv)
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 1 and lines[0].startswith("error: "), (code, out, err)
    return lines[0]


def test_cli_refuses_local_processes_with_other_multi_host_settings(hades_env, tmp_path):
    line = _one_line_error([*TINY, "--out", str(tmp_path / "run"), "--local-processes", "2",
                            "--coordinator", "127.0.0.1:1"])
    assert "--local-processes starts and joins its own processes: drop --coordinator" in line
    assert not (tmp_path / "run").exists()


def test_cli_refuses_more_local_processes_than_cores(hades_env, tmp_path):
    cores = len(os.sched_getaffinity(0))
    line = _one_line_error([*TINY, "--out", str(tmp_path / "run"), "--local-processes", str(cores + 1)])
    assert f"{cores + 1} local processes need {cores + 1} CPU cores; this process may use {cores}" in line
    assert not (tmp_path / "run").exists()


def test_a_failing_process_stops_the_run_with_its_last_words(tmp_path):
    """The watcher: another process that fails stops process 0 (exit 1) with that process's last line."""
    script = textwrap.dedent("""
        import subprocess, sys, tempfile, time
        from hades.localprocs import LocalRun
        log = tempfile.TemporaryFile()
        child = subprocess.Popen([sys.executable, "-c", "import sys; print('bad pairs', file=sys.stderr); sys.exit(3)"],
                                 stderr=log)
        run = LocalRun("127.0.0.1:1", 2, [(1, child, log)])
        run.watch()
        time.sleep(120)  # process 0 stuck in its work: the watcher must end it
        print("not stopped")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=100)
    assert proc.returncode == 1
    assert "error: local process 1 of 2 stopped: bad pairs" in proc.stderr
    assert "not stopped" not in proc.stdout


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPU cores")
def test_two_local_processes_run_one_distillation(hades_env, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "hades", *TINY, "--local-processes", "2", "--out", str(out)],
                          env=hades_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 cpu device(s) in 2 processes" in " ".join(proc.stderr.split())
    with open(out / "fitness.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["env_steps"] for row in rows] == ["400", "800"]  # the whole population, 8 x 1 x 50 steps
    assert (out / "dataset.safetensors").is_file() and (out / "README.md").is_file()
