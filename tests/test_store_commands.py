"""`hades store`: what the store holds, deleting revisions (also while another process reads), verifying all;
and the persistent compilation cache that every compiling command uses."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import threading

import pytest
from conftest import make_hopper_dataset, run_cli


def cli(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    from hades.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code or 0
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def stocked_store(tmp_path, hades_env):
    """A directory hub with two datasets, one of them at two tags, all pulled into the store."""
    from hades import hub

    root = tmp_path / "hub"
    for name, seed in (("org/alpha", 1), ("org/beta", 2)):
        folder = tmp_path / f"src-{seed}"
        make_hopper_dataset(seed=seed).save(folder)
        hub.push(folder, f"file://{root}/{name}", tag="v1")
    second = tmp_path / "src-3"
    make_hopper_dataset(seed=3).save(second)
    hub.push(second, f"file://{root}/org/alpha", tag="v2")
    for ident in ("org/alpha@v1", "org/alpha@v2", "org/beta@v1"):
        hub.pull(f"file://{root}/{ident}")
    return root


def test_store_lists_sizes_and_refs_then_deletes_one_revision(stocked_store):
    code, out, _ = cli("store", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert sorted((row["repo"], tuple(row["refs"])) for row in rows) == [
        ("org/alpha", ("v1",)), ("org/alpha", ("v2",)), ("org/beta", ("v1",))]
    assert all(row["bytes"] > 0 for row in rows)
    code, out, _ = cli("store", "delete", "org/alpha@v1", "--json")
    assert code == 0 and [row["refs"] for row in json.loads(out)] == [["v1"]]
    remaining = json.loads(cli("store", "list", "--json")[1])
    assert sorted((row["repo"], tuple(row["refs"])) for row in remaining) == [("org/alpha", ("v2",)), ("org/beta", ("v1",))]
    code, out, _ = cli("store", "verify", "--json")
    assert code == 0 and all(row["ok"] for row in json.loads(out)) and len(json.loads(out)) == 2
    # the deleted revision comes back with a pull, and deleting a whole repository takes every revision
    code, _, _ = cli("pull", f"file://{stocked_store}/org/alpha@v1")
    assert code == 0
    code, out, _ = cli("store", "delete", "org/alpha", "--json")
    assert code == 0 and len(json.loads(out)) == 2
    assert [row["repo"] for row in json.loads(cli("store", "list", "--json")[1])] == ["org/beta"]


def test_store_verify_reports_a_damaged_revision_and_exits_1(stocked_store):
    from hades.store_contents import held

    victim = held("org/beta")[0].folder / "dataset.safetensors"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, out, _ = cli("store", "verify", "--json")
    rows = json.loads(out)
    assert code == 1
    assert [row["repo"] for row in rows if not row["ok"]] == ["org/beta"]
    assert all(row["ok"] for row in rows if row["repo"] != "org/beta")


def test_bad_store_input_is_one_line(stocked_store):
    for argv, fragment in ((["store", "delete", "org/nothing"], "holds no org/nothing"),
                           (["store", "delete", "no-slash"], "expected ORG/NAME"),
                           (["store", "delete", "org/alpha@../x"], "malformed revision")):
        code, _, err = cli(*argv)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1 and fragment in lines[0], (argv, err)


def test_deleting_while_another_process_reads_never_shows_half_a_dataset(stocked_store, hades_env):
    """A reader loops over load-and-verify while the revision is deleted: each read is whole or a clear miss."""
    from hades.store_contents import held

    folder = held("org/beta")[0].folder
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, hades\nfrom hades.errors import HadesError\nok = gone = 0\n"
         "for _ in range(400):\n"
         "    try:\n        hades.Dataset.load(sys.argv[1]); ok += 1\n"
         "    except HadesError as exc:\n"
         "        assert 'does not exist' in str(exc) or 'holds no' in str(exc), exc\n"
         "        gone += 1\n"
         "print(ok, gone)\n", str(folder)],
        env=hades_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(0.3, lambda: cli("store", "delete", "org/beta"))
    timer.start()
    out, err = reader.communicate(timeout=300)
    timer.join()
    assert reader.returncode == 0, err
    ok, gone = map(int, out.split())
    assert ok + gone == 400
    assert not folder.exists()


def test_compilation_cache_gains_entries_that_a_second_process_reads(tmp_path, hades_env):
    cache = tmp_path / "xla"
    env = {key: value for key, value in hades_env.items() if not key.startswith("JAX_")}
    env["HADES_XLA_CACHE"] = str(cache)
    dataset = tmp_path / "tiny"
    make_hopper_dataset().save(dataset)
    args = ("train-from", str(dataset), "--seeds", "1", "--envs", "1", "--eval-steps", "20", "--steps", "3",
            "--arch", "8,8:tanh", "--json")
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    entries = {path.name for path in cache.rglob("*") if path.is_file()}
    assert entries, "the first run wrote no compiled program"
    second = run_cli(*args, env=env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["returns"] == json.loads(first.stdout)["returns"]
    # the second process found its programs there: it compiled nothing new to add
    assert {path.name for path in cache.rglob("*") if path.is_file()} == entries
    # turned off, a run with a new program leaves the folder as it was; turned on, the same run adds to it
    other = [arg if arg != "8,8:tanh" else "12,12:tanh" for arg in args]
    assert run_cli(*other, env=dict(env, HADES_XLA_CACHE="off")).returncode == 0
    assert {path.name for path in cache.rglob("*") if path.is_file()} == entries
    assert run_cli(*other, env=env).returncode == 0
    assert {path.name for path in cache.rglob("*") if path.is_file()} > entries


def test_store_cache_reports_and_clears(tmp_path, monkeypatch):
    from hades.compile_cache import cache_usage

    cache = tmp_path / "xla"
    (cache / "sub").mkdir(parents=True)
    (cache / "a-cache").write_bytes(b"x" * 100)
    (cache / "sub" / "b").write_bytes(b"y" * 50)
    monkeypatch.setenv("HADES_XLA_CACHE", str(cache))
    code, out, _ = cli("store", "cache", "--json")
    assert code == 0 and json.loads(out)["entries"] == 2 and json.loads(out)["bytes"] == 150
    code, out, _ = cli("store", "cache", "--clear", "--json")
    assert code == 0 and json.loads(out)["cleared"] is True
    assert cache_usage(cache).entries == 0 and cache.is_dir()
    monkeypatch.setenv("HADES_XLA_CACHE", "off")
    code, out, _ = cli("store", "cache")
    assert code == 0 and "off" in out
