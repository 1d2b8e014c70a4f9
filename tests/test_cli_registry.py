"""`hades list/show/pull/push/verify` run as a user runs them: a fresh process, exit codes, and one
clear line on stderr for bad input. Also: these commands never import jax or brax."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_hopper_dataset

HEAVY = ("jax", "jaxlib", "brax", "flax", "optax", "mujoco", "gymnax", "evosax")


def hades(env: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hades", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_list_show_pull_verify_a_bundled_dataset(catalogue, hades_env):
    listed = hades(hades_env, "list")
    assert listed.returncode == 0 and "hopper-test@1" in listed.stdout and "1745.0 ± 12.5" in listed.stdout
    rows = json.loads(hades(hades_env, "list", "--json", "--env", "Hopper").stdout)
    assert [row["name"] for row in rows] == ["hopper-test"] and rows[0]["return"]["mean"] == 1745.0
    assert json.loads(hades(hades_env, "list", "--json", "--env", "walker2d").stdout) == []

    shown = hades(hades_env, "show", "hopper-test")
    assert shown.returncode == 0 and "pairs (4 of 4)" in shown.stdout and "hopper" in shown.stdout
    data = json.loads(hades(hades_env, "show", "hopper-test", "--json").stdout)
    assert data["pairs"] == 4 and len(data["states"]) == 4 and len(data["actions"][0]) == 3
    assert data["return"]["protocol"] == "4 envs x 1024 steps, sampled actions"

    pulled = hades(hades_env, "pull", "hopper-test")
    assert pulled.returncode == 0 and Path(pulled.stdout.strip()) == catalogue / "hopper-test"
    verified = hades(hades_env, "verify", "hopper-test")
    assert verified.returncode == 0 and verified.stdout.startswith("OK ")


def test_empty_catalogue(hades_env, tmp_path):
    empty = tmp_path / "empty-catalogue"
    empty.mkdir()
    (empty / "index.json").write_text("[]")
    env = dict(hades_env, HADES_REGISTRY=str(empty))
    assert json.loads(hades(env, "list", "--json").stdout) == []
    assert "no datasets" in hades(env, "list").stdout
    assert_one_line_error(hades(env, "pull", "hopper-4pairs"), "catalogue, which is empty")


def test_bundled_hopper_4pairs_works_offline(hades_env):
    env = dict(hades_env, HF_HUB_OFFLINE="1")
    listed = {entry["name"]: entry for entry in json.loads(hades(env, "list", "--json").stdout)}
    assert listed["hopper-4pairs"]["env"] == "hopper" and listed["hopper-4pairs"]["pairs"] == 4
    pulled = hades(env, "pull", "hopper-4pairs")
    assert pulled.returncode == 0, pulled.stderr
    verified = hades(env, "verify", "hopper-4pairs")
    assert verified.returncode == 0 and verified.stdout.startswith("OK ")
    import hades as hades_pkg

    dataset = hades_pkg.Dataset.load(Path(pulled.stdout.strip()))
    assert dataset.sha256 == listed["hopper-4pairs"]["sha256"]
    assert dataset.info["evaluation"]["mean"] == listed["hopper-4pairs"]["return"]["mean"]


def test_push_and_pull_through_the_hub(hub_server, hades_env, tmp_path):
    folder = make_hopper_dataset(3).save(tmp_path / "ds", parquet=True)
    pushed = hades(hades_env, "push", str(folder), "--to", "hf://org/cli-data", "--tag", "v1")
    assert pushed.returncode == 0, pushed.stderr
    pinned, tagged = pushed.stdout.split()
    assert pinned.startswith("hf://org/cli-data@") and tagged == "hf://org/cli-data@v1"
    pulled = hades(hades_env, "pull", tagged)
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.strip())
    assert (path / "dataset.safetensors").is_file() and path.name == pinned.split("@")[1]
    assert hades(hades_env, "verify", pinned).stdout.startswith("OK ")
    rows = json.loads(hades(hades_env, "list", "--hub", "org", "--json").stdout)
    assert [row["id"] for row in rows] == ["hf://org/cli-data"] and rows[0]["pairs"] == 4
    assert_one_line_error(hades(hades_env, "pull", "hf://org/nothing-here"), "no dataset or model repository")
    hub_server.state.token = "tok"
    assert_one_line_error(hades(hades_env, "pull", "hf://org/cli-data@main"), "set HF_TOKEN")


def test_push_and_pull_a_directory_hub(hades_env, tmp_path):
    folder = make_hopper_dataset(4).save(tmp_path / "ds")
    target = f"file://{tmp_path}/hub/org/dir-data"
    pushed = hades(hades_env, "push", str(folder), "--to", target)
    assert pushed.returncode == 0, pushed.stderr
    pulled = hades(hades_env, "pull", target)
    assert pulled.returncode == 0 and Path(pulled.stdout.strip()).is_dir()
    assert "file://" in hades(hades_env, "list", "--hub", f"file://{tmp_path}/hub").stdout


def test_verify_a_folder_and_a_tampered_one(hades_env, tmp_path):
    folder = make_hopper_dataset().save(tmp_path / "ds")
    ok = hades(hades_env, "verify", str(folder))
    assert ok.returncode == 0 and "OK" in ok.stdout and "4 pairs" in ok.stdout
    data = bytearray((folder / "dataset.safetensors").read_bytes())
    data[-2] ^= 0x10
    (folder / "dataset.safetensors").write_bytes(bytes(data))
    assert_one_line_error(hades(hades_env, "verify", str(folder)), "fails verification")
    assert_one_line_error(hades(hades_env, "show", str(folder)), "fails verification")


@pytest.mark.parametrize("args, fragment", [
    (("pull", "hopper-tset"), "not in the catalogue"),
    (("show", "no-such-dataset"), "not in the catalogue"),
    (("pull", "hf://org/../x"), "malformed Hub id"),
    (("pull", "hf://org/x@../main"), "malformed revision"),
    (("verify", "s3://bucket/x"), "unsupported scheme"),
    (("verify", "./does/not/exist"), "does not exist"),
    (("list", "--env", "atari"), "unknown environment"),
    (("list", "--hub", "bad org"), "not a valid Hub organisation"),
    (("push", ".", "--to", "hopper-test"), "cannot push to"),
    (("push", "./missing", "--to", "hf://org/x"), "does not exist"),
])
def test_bad_input_is_one_clear_line(catalogue, hades_env, tmp_path, args, fragment):
    assert_one_line_error(hades(hades_env, *args, cwd=tmp_path), fragment)


def test_offline_missing_dataset_is_one_clear_line(hades_env):
    env = dict(hades_env, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    assert_one_line_error(hades(env, "pull", "hf://org/never"), "HF_HUB_OFFLINE is set")


def test_commands_import_no_jax_or_brax(catalogue, hades_env):
    script = (
        "import json, sys\n"
        "from hades.cli import main\n"
        "for argv in (['--help'], ['list'], ['list', '--json'], ['show', 'hopper-test'], ['pull', 'hopper-test'],"
        " ['verify', 'hopper-test']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, (argv, exc.code)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "sys.stderr.write('HEAVY=' + json.dumps(heavy) + '\\n')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=hades_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    heavy = json.loads(result.stderr.split("HEAVY=")[1])
    assert heavy == []
