"""kill -9 at random moments of pull, push, publish and distill, with readers looking on.

Each operation runs as ``python -m hades ...`` (publish through its library function) in a child
process, once uninterrupted to time it, then again and again killed at moments drawn at random over
that time (one moment in each equal slice of it, so the start-up, the work and the final writes are
all hit; operations that compile are timed warm, after a first run filled the shared XLA cache). While it runs, reader threads look at what it writes: a store, a hub, a catalogue, a run
folder. They must only ever see nothing or a whole, verifying dataset. After each kill the next
operation of the same kind must succeed and leave no debris, and a killed distillation, resumed,
must end with the uninterrupted run's ``dataset.safetensors`` byte for byte.

``HADES_FAULT_SEED`` picks the moments (the default is fixed, so a failure can be replayed);
``HADES_FAULT_LOG=FILE`` appends one JSON line per kill. ``python tests/test_faults.py FILE``
prints the table of such a log that the README quotes.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

FAULT_SEED = int(os.environ.get("HADES_FAULT_SEED", "20261201"))
KILLS = {"pull": 6, "push (Hub)": 4, "push (directory hub)": 4, "publish": 3, "distill": 3}
TINY_DISTILL = ["distill", "hopper", "--pairs", "4", "--preset", "cpu", "--population", "8", "--inner-steps", "20",
                "--arch", "16,16:tanh", "--eval-envs", "2", "--eval-steps", "50", "--generations", "4",
                "--checkpoint-every", "1", "--final-seeds", "0", "--out", "run"]
# Names of what a killed writer leaves while it works (temporary files and folders, named after
# its pid or with a temporary suffix); none may survive the next operation.
DEBRIS_NAME = re.compile(r"^\.(hades|publish)-\d+-|\.(tmp|old|staging|incomplete|lock-tmp)$")


# -- the harness ----------------------------------------------------------------------------------

def moments(operation: str, span: float, count: int) -> list[float]:
    """One moment drawn uniformly from each of ``count`` equal slices of ``span`` seconds."""
    rng = random.Random(f"{FAULT_SEED}:{operation}")
    width = span / count
    return [round(rng.uniform(index * width, (index + 1) * width), 3) for index in range(count)]


def start(args: list[str], env: dict, cwd: Path | None = None) -> subprocess.Popen:
    command = args if args[0] == sys.executable else [sys.executable, "-m", "hades", *args]
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def timed_run(args: list[str], env: dict, cwd: Path | None = None) -> float:
    """Run to the end; the seconds it took."""
    began = time.monotonic()
    child = start(args, env, cwd)
    _, stderr = child.communicate(timeout=600)
    assert child.returncode == 0, stderr.decode()
    return time.monotonic() - began


def kill_at(args: list[str], env: dict, moment: float, cwd: Path | None = None) -> str:
    """Start the operation and SIGKILL its process group ``moment`` seconds in: ``killed``, or
    ``finished`` when it was done by then (and then it must have succeeded)."""
    child = start(args, env, cwd)
    deadline = time.monotonic() + moment
    while time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return "killed"
    _, stderr = child.communicate()
    assert child.returncode == 0, stderr.decode()
    return "finished"


class Readers:
    """``count`` threads calling ``look()`` until stopped; it returns what it saw (a label) and
    raises when what it saw is broken."""

    def __init__(self, look, count: int = 2):
        self.look, self.seen, self.broken = look, Counter(), []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(count)]

    def _loop(self):
        while not self.stop.is_set():
            try:
                self.seen[self.look()] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                self.broken.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.02)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def debris(*roots: Path) -> list[str]:
    """Everything under ``roots`` named like a killed writer's leftovers."""
    found = []
    for root in roots:
        if root.is_dir():
            found += [str(path) for path in root.rglob("*") if DEBRIS_NAME.search(path.name)]
    return found


def record(operation: str, moment: float, outcome: str, readers: Readers | None, then: str) -> dict:
    row = {"operation": operation, "seed": FAULT_SEED, "moment_s": moment, "outcome": outcome,
           "reads": sum(readers.seen.values()) if readers else 0, "broken_reads": len(readers.broken) if readers else 0,
           "seen": dict(readers.seen) if readers else {}, "next": then}
    log = os.environ.get("HADES_FAULT_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
    return row


def fault_table(path: str) -> str:
    """The README's table: per operation, kills, readers' reads, what the next operation did."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    lines = ["| operation | kill moments | killed mid-way | finished first | reads while it ran | broken reads | "
             "next operation |", "|---|---:|---:|---:|---:|---:|---|"]
    for operation in KILLS:
        mine = [row for row in rows if row["operation"] == operation]
        if not mine:
            continue
        outcomes = Counter(row["outcome"] for row in mine)
        nexts = ", ".join(f"{count} {what}" for what, count in sorted(Counter(row["next"] for row in mine).items()))
        lines.append(f"| {operation} | {len(mine)} | {outcomes['killed']} | {outcomes['finished']} | "
                     f"{sum(row['reads'] for row in mine)} | {sum(row['broken_reads'] for row in mine)} | {nexts} |")
    return "\n".join(lines)


@pytest.fixture
def fault_env(hades_env, tmp_path, tmp_path_factory) -> dict:
    """The children's environment: the test's HADES_HOME, a TMPDIR of their own, one shared XLA cache."""
    env = dict(hades_env)
    env["TMPDIR"] = str(tmp_path / "child-tmp")
    Path(env["TMPDIR"]).mkdir()
    env["HADES_XLA_CACHE"] = str(tmp_path_factory.getbasetemp() / "fault-xla-cache")
    return env


# -- pull -----------------------------------------------------------------------------------------

def _big_dataset(seed: int, pairs: int = 20000):
    from conftest import make_hopper_dataset

    return make_hopper_dataset(seed=seed, pairs=pairs)


def test_killed_pulls_never_show_a_partial_dataset(hub_server, fault_env, tmp_path):
    from hades import hub, store

    dataset = _big_dataset(1)
    hub.push(dataset.save(tmp_path / "source", parquet=False), "hf://org/big")
    hub_server.state.delay = 0.5  # each file takes half a second: kills land mid-download
    expected = dataset.sha256

    def look() -> str:
        snapshots = [folder for _, _, folder in store.entries()]
        for folder in snapshots:
            verified = store.verify_path(folder)
            assert verified.sha256 == expected, verified
        return "whole" if snapshots else "nothing"

    span = timed_run(["pull", "hf://org/big"], fault_env)
    for key, commit, _ in store.entries():
        store.remove(key, commit)
    for moment in moments("pull", span, KILLS["pull"]):
        with Readers(look) as readers:
            outcome = kill_at(["pull", "hf://org/big"], fault_env, moment)
        assert readers.broken == [], readers.broken
        folder = hub.pull("hf://org/big")  # the next pull
        assert store.verify_path(folder).sha256 == expected
        assert [entry[2] for entry in store.entries()] == [folder]
        assert debris(store.home(), Path(fault_env["TMPDIR"])) == []
        record("pull", moment, outcome, readers, "pull succeeded")
        for key, commit, _ in store.entries():
            store.remove(key, commit)


# -- push -----------------------------------------------------------------------------------------

def _push_trials(operation: str, target: str, fault_env, tmp_path, watch_debris: list[Path]):
    """Push a new dataset at each kill while readers pull the target's latest revision."""
    from hades import hub, registry

    sources = [_big_dataset(seed).save(tmp_path / f"push-{seed}", parquet=False) for seed in range(KILLS[operation] + 2)]
    shas = {registry.open_dataset(str(folder)).sha256 for folder in sources}
    hub.push(sources[0], target)

    def look() -> str:
        sha = registry.open_dataset(str(hub.pull(target))).sha256
        assert sha in shas, sha
        return "whole"

    span = timed_run(["push", str(sources[1]), "--to", target], fault_env)
    for index, moment in enumerate(moments(operation, span, KILLS[operation])):
        source = sources[index + 2]
        with Readers(look) as readers:
            outcome = kill_at(["push", str(source), "--to", target], fault_env, moment)
        assert readers.broken == [], readers.broken
        result = hub.push(source, target)  # the next push of the same folder
        assert registry.open_dataset(result.id).sha256 == registry.open_dataset(str(source)).sha256
        assert registry.open_dataset(target).sha256 == registry.open_dataset(str(source)).sha256
        assert debris(Path(fault_env["TMPDIR"]), *watch_debris) == []
        record(operation, moment, outcome, readers, "push succeeded")


def test_killed_pushes_to_a_hub_never_show_a_partial_revision(hub_server, fault_env, tmp_path):
    import hashlib

    from hades import store

    hub_server.state.delay = 0.5
    _push_trials("push (Hub)", "hf://org/pushed", fault_env, tmp_path, [store.home()])
    for repo in hub_server.state.repos.values():  # every commit on the Hub that holds a dataset holds its card
        for commit in repo.commits.values():
            if "dataset.safetensors" in commit.files:
                sha = hashlib.sha256(commit.files["dataset.safetensors"]).hexdigest()
                assert sha in commit.files["README.md"].decode(), commit.oid


def test_killed_pushes_to_a_directory_hub_never_show_a_partial_revision(fault_env, tmp_path):
    from hades import store

    root = tmp_path / "dirhub"
    _push_trials("push (directory hub)", f"file://{root}/org/pushed", fault_env, tmp_path, [root, store.home()])
    for revision in (root / "org" / "pushed" / "revisions").iterdir():  # every revision verifies
        store.verify_path(revision)


# -- publish --------------------------------------------------------------------------------------

PUBLISH_SCRIPT = ("import sys; from hades.publish import publish; from hades.evaluate import EvalProtocol; "
                  "publish(sys.argv[1], 'hopper-tiny', sys.argv[2], seeds=1, protocol=EvalProtocol(1, 50), "
                  "transfer=(), catalogue=sys.argv[3])")


def test_killed_publishes_leave_the_catalogue_whole(fault_env, tmp_path):
    from test_publish import tiny_source

    from hades.publish import publish
    from hades.registry import load_catalogue
    from hades.store import verify_path

    catalogue = tmp_path / "catalogue"
    source = tiny_source(tmp_path)

    def look() -> str:
        entries = load_catalogue(catalogue)
        for entry in entries:  # everything the index lists is there and verifies
            assert verify_path(entry.folder).sha256 == entry.sha256, entry
        return f"{len(entries)} entries"

    def publish_command(version: str) -> list[str]:
        return [sys.executable, "-c", PUBLISH_SCRIPT, str(source), version, str(catalogue)]

    timed_run(publish_command("1.0"), fault_env)  # compiles into the shared cache: the runs below are warm
    span = timed_run(publish_command("1.1"), fault_env)
    for index, moment in enumerate(moments("publish", span, KILLS["publish"])):
        with Readers(look) as readers:
            outcome = kill_at(publish_command(f"2.{index}"), fault_env, moment)
        assert readers.broken == [], readers.broken
        versions = {entry.version for entry in load_catalogue(catalogue)}
        then = "none needed (it had landed)"
        if f"2.{index}" not in versions:  # the next publish of the same version
            from hades.evaluate import EvalProtocol

            publish(source, "hopper-tiny", f"2.{index}", seeds=1, protocol=EvalProtocol(1, 50), transfer=(),
                    catalogue=catalogue)
            then = "publish succeeded"
        look()
        listed = {Path(entry.path) for entry in load_catalogue(catalogue)}
        on_disk = {marker.parent.relative_to(catalogue) for marker in catalogue.glob("**/.published")}
        assert on_disk == listed
        assert debris(catalogue, Path(fault_env["TMPDIR"])) == []
        record("publish", moment, outcome, readers, then)


# -- distill --------------------------------------------------------------------------------------

def test_a_killed_distillation_resumes_to_the_uninterrupted_file(fault_env, tmp_path):
    from hades.checkpoint import checkpoint_file, read_checkpoint_bytes, restore_checkpoint
    from hades.files import CARD_FILE, COMMANDS_CSV, DATASET_FILE
    from hades.store import verify_path

    runs = []
    for index in range(2):  # the first compiles into the shared cache; the second, warm, times a run
        runs.append(tmp_path / f"uninterrupted-{index}")
        runs[-1].mkdir()
        span = timed_run(TINY_DISTILL, fault_env, cwd=runs[-1])
    reference = (runs[0] / "run" / DATASET_FILE).read_bytes()
    assert (runs[1] / "run" / DATASET_FILE).read_bytes() == reference
    for index, moment in enumerate(moments("distill", span, KILLS["distill"])):
        cwd = tmp_path / f"killed-{index}"
        cwd.mkdir()
        out = cwd / "run"

        def look() -> str:
            seen = "nothing"
            if checkpoint_file(out).is_file():
                restore_checkpoint(read_checkpoint_bytes(out), checkpoint_file(out)).history()
                seen = "checkpoint"
            if (out / CARD_FILE).is_file():
                verify_path(out)
                seen = "outputs"
            elif (out / DATASET_FILE).is_file():
                verify_path(out / DATASET_FILE)
                seen = "dataset without its card yet"
            return seen

        with Readers(look) as readers:
            outcome = kill_at(TINY_DISTILL, fault_env, moment, cwd=cwd)
        assert readers.broken == [], readers.broken
        then = "none needed"
        if outcome == "killed":  # what a user does next: resume, or start again when there is nothing to resume
            resumable = checkpoint_file(out).is_file()
            timed_run(TINY_DISTILL + (["--resume"] if resumable else []), fault_env, cwd=cwd)
            then = "resumed" if resumable else "started again"
        assert (out / DATASET_FILE).read_bytes() == reference, (moment, then)
        verify_path(out)
        commands = (out / COMMANDS_CSV).read_text().splitlines()
        assert len(commands) == (3 if then == "resumed" else 2), commands
        assert debris(cwd, Path(fault_env["TMPDIR"])) == []
        record("distill", moment, outcome, readers, then)


if __name__ == "__main__":
    print(fault_table(sys.argv[1]))
