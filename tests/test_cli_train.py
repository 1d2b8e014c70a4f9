"""``hades train-from`` and ``hades eval`` as a user runs them: fresh processes, JSON on stdout,
one line on stderr and exit code 1 for every bad input, nothing half-written by ``--save``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import assert_one_line_error, cli_env, make_breakout_dataset, make_hopper_dataset, run_cli, tiny_recipe

import hades
from hades.evaluate import EvalProtocol

from hades.formats import sha256_file, tensors_to_bytes

TINY = ["--steps", "20", "--seeds", "2", "--envs", "2", "--eval-steps", "50"]


def _front_matter(card: Path) -> dict:
    return yaml.safe_load(card.read_text(encoding="utf-8").split("---\n", 2)[1])


def _check_report(report: dict, env: str, arch: dict) -> None:
    assert report["env"] == env and report["seeds"] == [0, 1]
    assert len(report["returns"]) == 2 and all(math.isfinite(r) for r in report["returns"])
    assert len(report["episodes"]) == 2 and len(report["final_losses"]) == 2
    assert math.isclose(report["mean"], float(np.mean(report["returns"])), abs_tol=1e-2)
    assert report["recipe"]["arch"] == arch and report["recipe"]["steps"] == 20
    assert report["protocol"] == {"num_envs": 2, "num_steps": 50, "greedy": False, "episode_length": None}
    assert set(report["timings"]) == {"compile_s", "run_s"}


def _check_saved(folder: Path, report: dict) -> None:
    assert sorted(p.name for p in folder.iterdir()) == ["seed0", "seed1"]
    assert report["saved"] == [str(folder / "seed0"), str(folder / "seed1")]
    for seed in (0, 1):
        policy = folder / f"seed{seed}"
        assert sorted(p.name for p in policy.iterdir()) == ["README.md", "policy.safetensors"]
        meta = _front_matter(policy / "README.md")["hades"]
        assert meta["sha256"] == sha256_file(policy / "policy.safetensors")
        assert meta["kind"] == "policy" and meta["seed"] == seed
        assert meta["dataset"]["sha256"] == report["dataset"]["sha256"]
        assert math.isclose(meta["evaluation"]["mean_return"], report["returns"][seed], abs_tol=1e-2)
        assert meta["evaluation"]["device"]["platform"] == "cpu"
        assert "the same kind of machine gives this return exactly" in (policy / "README.md").read_text()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left


def _check_eval(result: dict, runs: int) -> None:
    assert len(result["returns"]) == runs and all(math.isfinite(r) for r in result["returns"])
    assert result["protocol"] == {"num_envs": 2, "num_steps": 50, "greedy": False, "episode_length": None}
    assert math.isclose(result["mean"], float(np.mean(result["returns"])), rel_tol=1e-6, abs_tol=1e-9)


# -- a discrete dataset end to end (compiles in seconds) ------------------------------------------

@pytest.fixture(scope="module")
def breakout_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("breakout-cli")
    env = cli_env(root)
    dataset = make_breakout_dataset(seed=3)
    folder = dataset.save(root / "dataset")
    out = root / "out" / "policies"
    proc = run_cli("train-from", folder, "--arch", "16,16:relu", *TINY, "--json", "--save", out, env=env, cwd=root)
    return {"root": root, "env": env, "dataset": dataset, "folder": folder, "out": out, "proc": proc}


def test_train_from_json_is_pure_json(breakout_run):
    proc = breakout_run["proc"]
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("{") and proc.stdout.rstrip().endswith("}")
    report = json.loads(proc.stdout)
    _check_report(report, "Breakout-MinAtar", {"hidden": [16, 16], "activation": "relu", "init": "orthogonal"})
    # the card's recipe supplies what the options leave out
    assert report["recipe"]["loss"] == "cross_entropy" and report["recipe"]["lr"] == 0.03
    assert report["dataset"] == {"id": str(breakout_run["folder"]), "sha256": breakout_run["dataset"].sha256, "pairs": 6}
    assert "Traceback" not in proc.stderr


def test_the_same_machine_reproduces_a_figure_exactly(breakout_run):
    """A second process running the same command prints the same returns, to the last digit."""
    again = run_cli("train-from", breakout_run["folder"], "--arch", "16,16:relu", *TINY, "--json",
                    env=breakout_run["env"], cwd=breakout_run["root"])
    assert again.returncode == 0, again.stderr
    first, second = json.loads(breakout_run["proc"].stdout), json.loads(again.stdout)
    assert second["returns"] == first["returns"] and second["final_losses"] == first["final_losses"]


def test_a_cards_evaluation_records_the_device_it_ran_on(tmp_path):
    from hades.trainfrom import standard_evaluation

    dataset = make_breakout_dataset(seed=4)
    evaluation = standard_evaluation(dataset, 1, EvalProtocol(1, 20), tiny_recipe(discrete=True, steps=5))
    device = evaluation["device"]
    assert device["platform"] == "cpu" and device["count"] >= 1 and device["kind"] and device["cpu"]
    folder = dataset.replace(info={**dataset.info, "evaluation": evaluation}).save(tmp_path / "d")
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert f"Measured on {device['count']} cpu device(s) ({device['cpu']})" in card
    assert "same kind of machine gives these returns exactly" in card
    assert hades.Dataset.load(folder).info["evaluation"]["device"] == device


def test_train_from_save_writes_policy_folders(breakout_run):
    report = json.loads(breakout_run["proc"].stdout)
    _check_saved(breakout_run["out"], report)


def test_eval_a_saved_policy(breakout_run):
    proc = run_cli("eval", breakout_run["out"] / "seed0", "--eval-steps", "50", "--envs", "2", "--runs", "2", "--json",
                   env=breakout_run["env"], cwd=breakout_run["root"])
    assert proc.returncode == 0, proc.stderr
    _check_eval(json.loads(proc.stdout), runs=2)


def test_eval_refuses_a_tampered_policy(breakout_run, tmp_path):
    import shutil

    policy = shutil.copytree(breakout_run["out"] / "seed1", tmp_path / "seed1")
    data = bytearray((policy / "policy.safetensors").read_bytes())
    data[-1] ^= 0x01
    (policy / "policy.safetensors").write_bytes(bytes(data))
    proc = run_cli("eval", policy, "--eval-steps", "50", "--envs", "2", env=breakout_run["env"], cwd=tmp_path)
    assert_one_line_error(proc, "sha256")


# -- bad input: one line, exit code 1, nothing written ----------------------------------------------

def _raw(path: Path, states, actions, meta: dict) -> Path:
    path.write_bytes(tensors_to_bytes({"states": np.asarray(states), "actions": np.asarray(actions)}, meta))
    return path


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, a fragment of the one error line)."""
    good = make_hopper_dataset(seed=9)
    meta = good.metadata()
    cases = {}
    data = good.to_bytes()
    (tmp_path / "corrupt.safetensors").write_bytes(data[: len(data) - 40])
    cases["corrupt"] = ([str(tmp_path / "corrupt.safetensors")], "truncated or corrupt")
    (tmp_path / "noise.safetensors").write_bytes(np.random.default_rng(0).bytes(256))
    cases["random bytes"] = ([str(tmp_path / "noise.safetensors")], "truncated or corrupt")
    states = good.states.copy()
    states[0, 0] = np.nan
    cases["nan"] = ([str(_raw(tmp_path / "nan.safetensors", states, good.actions, meta))], "NaN or infinite")
    cases["shape"] = ([str(_raw(tmp_path / "shape.safetensors", good.states[:, :9], good.actions, meta))], "hopper needs [D, 11]")
    unknown = json.loads(json.dumps(meta))
    unknown["env"]["id"] = "hoppper"
    cases["unknown env"] = ([str(_raw(tmp_path / "env.safetensors", good.states, good.actions, unknown))], "unknown environment 'hoppper'")
    cases["version"] = ([str(_raw(tmp_path / "v2.safetensors", good.states, good.actions, {**meta, "format_version": 2}))],
                        "format version 2")
    folder = good.save(tmp_path / "badcard")
    card = folder / "README.md"
    card.write_text(card.read_text().replace("  pairs: 4\n", "  pairs: [4\n", 1))
    cases["malformed card"] = ([str(folder)], "malformed YAML")
    folder = good.save(tmp_path / "nohades")
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n\n# no hades section\n")
    cases["card without hades"] = ([str(folder)], "no 'hades' section")
    folder = good.save(tmp_path / "tampered")
    raw = bytearray((folder / "dataset.safetensors").read_bytes())
    raw[-2] ^= 0x01
    (folder / "dataset.safetensors").write_bytes(bytes(raw))
    cases["checksum"] = ([str(folder)], "fails verification")
    ok = str(good.save(tmp_path / "good"))
    cases["bad arch"] = ([ok, "--arch", "2x:tanh"], "architecture '2x:tanh'")
    cases["bad activation"] = ([ok, "--arch", "64,64:swish"], "activation must be one of")
    cases["loss for another action type"] = ([ok, "--loss", "cross_entropy"], "does not fit the continuous actions")
    cases["bad lr"] = ([ok, "--lr", "-1"], "lr must be positive")
    cases["steps and episodes"] = ([ok, "--eval-steps", "50", "--episodes", "2"], "not both")
    cases["bad backend"] = ([ok, "--backend", "physx"], "backend 'physx' is not available")
    cases["missing path"] = ([str(tmp_path / "no-such-dataset")], "does not exist")
    return cases


def test_bad_inputs_fail_with_one_line(tmp_path):
    env = cli_env(tmp_path)
    cases = _bad_inputs(tmp_path)
    failures = []
    for name, (args, fragment) in cases.items():
        out = tmp_path / "out" / name.replace(" ", "-")
        proc = run_cli("train-from", *args, *TINY, "--json", "--save", out, env=env, cwd=tmp_path)
        try:
            assert_one_line_error(proc, fragment)
            assert not out.exists() and not (tmp_path / "out").exists()
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)
    # a failed command writes nothing to the store either
    assert not (tmp_path / "hades-home").exists() or not any((tmp_path / "hades-home").rglob("*.safetensors"))


def test_eval_bad_inputs_fail_with_one_line(tmp_path):
    env = cli_env(tmp_path)
    assert_one_line_error(run_cli("eval", tmp_path / "nothing", env=env, cwd=tmp_path), "does not exist")
    folder = make_hopper_dataset().save(tmp_path / "dataset")
    assert_one_line_error(run_cli("eval", folder, env=env, cwd=tmp_path), "not a policy")


def test_save_into_a_file_fails_before_training(tmp_path):
    env = cli_env(tmp_path)
    folder = make_breakout_dataset().save(tmp_path / "dataset")
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    for target in (blocker, blocker / "policies"):
        proc = run_cli("train-from", folder, "--arch", "8:relu", *TINY, "--save", target, env=env, cwd=tmp_path)
        assert_one_line_error(proc, "is a file, not a folder")
        assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "taken"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a /proc file system to refuse writes")
def test_save_that_cannot_be_written_leaves_nothing(tmp_path):
    env = cli_env(tmp_path)
    folder = make_breakout_dataset().save(tmp_path / "dataset")
    target = Path("/proc") / f"hades-test-{os.getpid()}" / "policies"
    proc = run_cli("train-from", folder, "--arch", "8:relu", *TINY, "--json", "--save", target, env=env, cwd=tmp_path)
    assert_one_line_error(proc, "cannot write the --save folder", str(target))
    assert not target.parent.exists()


def test_table_output(tmp_path):
    env = cli_env(tmp_path)
    folder = make_breakout_dataset(seed=4).save(tmp_path / "dataset")
    proc = run_cli("train-from", folder, "--arch", "8:relu", *TINY, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for fragment in ("8:relu:orthogonal", "cross_entropy", "2 envs x 50 steps", "sampled actions", "mean ± std",
                     "compile", "seed"):
        assert fragment in proc.stdout, (fragment, proc.stdout)


# -- the continuous path, as in the docs ---------------------------------------------------------------

@pytest.mark.slow  # two fresh processes each compile the brax physics (about a minute each on 2 cores)
def test_hopper_train_from_save_and_eval(tmp_path):
    env = cli_env(tmp_path)
    dataset = make_hopper_dataset(seed=5)
    folder = dataset.save(tmp_path / "dataset")
    out = tmp_path / "policies"
    proc = run_cli("train-from", folder, "--arch", "16,16:tanh", *TINY, "--json", "--save", out, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("{")
    report = json.loads(proc.stdout)
    _check_report(report, "hopper", {"hidden": [16, 16], "activation": "tanh", "init": "orthogonal"})
    assert report["recipe"]["loss"] == "gaussian_nll" and report["returns"][0] != report["returns"][1]
    _check_saved(out, report)
    proc = run_cli("eval", out / "seed0", "--eval-steps", "50", "--envs", "2", "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _check_eval(json.loads(proc.stdout), runs=1)
