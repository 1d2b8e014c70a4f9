"""`hades --version` and the `--json` output of the commands that print a result, run in-process
(`hades.cli.main`): pure JSON on stdout, the fields documented in each command's help."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from conftest import make_hopper_dataset, make_policy_folder

import hades
from hades.cli import main


def run_main(argv: list[str]) -> str:
    """stdout of ``hades ARGV``; the command must succeed."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            main([str(arg) for arg in argv])
        except SystemExit as exc:
            assert exc.code in (0, None), (argv, exc.code)
    return buffer.getvalue()


def run_json(argv: list[str]):
    out = run_main(argv)
    assert out.lstrip().startswith(("{", "[")), out
    return json.loads(out)


def test_version():
    assert run_main(["--version"]) == f"hades-zoo {hades.__version__}\n"


def test_help_of_every_command_has_examples():
    for command in ("list", "show", "pull", "push", "verify", "train-from", "eval", "convert", "publish", "history"):
        assert "Example" in run_main([command, "--help"]), command


def test_pull_and_verify_json_for_a_bundled_dataset(catalogue):
    pulled = run_json(["pull", "hopper-test", "--json"])
    assert pulled == {"id": "hopper-test", "path": str(catalogue / "hopper-test"), "kind": "dataset",
                      "sha256": pulled["sha256"], "env": "hopper", "pairs": 4}
    verified = run_json(["verify", "hopper-test", "--json"])
    assert verified == dict(pulled, ok=True)
    assert run_main(["pull", "hopper-test"]) == f"{catalogue / 'hopper-test'}\n"  # without --json: the path alone


def test_push_pull_and_verify_json_through_the_hub(hub_server, tmp_path):
    dataset = make_hopper_dataset(2)
    folder = dataset.save(tmp_path / "ds", parquet=True)
    pushed = run_json(["push", folder, "--to", "hf://datasets/org/json-data", "--tag", "v1", "--json"])
    assert pushed["id"] == f"hf://datasets/org/json-data@{pushed['commit']}" and pushed["kind"] == "dataset"
    assert pushed["tag_id"] == "hf://datasets/org/json-data@v1" and pushed["url"].startswith(hub_server.url)
    pulled = run_json(["pull", "hf://datasets/org/json-data@v1", "--json"])
    assert pulled["sha256"] == dataset.sha256 and Path(pulled["path"]).name == pushed["commit"]
    assert pulled["kind"] == "dataset" and pulled["env"] == "hopper" and pulled["pairs"] == 4
    assert run_json(["verify", pushed["id"], "--json"])["ok"] is True
    policy = run_json(["push", make_policy_folder(tmp_path / "policy"), "--to", "hf://models/org/json-policy", "--json"])
    assert policy["kind"] == "policy" and policy["tag_id"] is None
    assert run_json(["pull", policy["id"], "--json"])["kind"] == "policy"


def test_push_json_to_a_directory_hub(hades_env, tmp_path):
    target = f"file://{tmp_path}/hub/org/dir-data"
    pushed = run_json(["push", make_hopper_dataset(3).save(tmp_path / "ds"), "--to", target, "--json"])
    assert pushed["id"] == f"{target}@{pushed['commit']}" and Path(pushed["url"]).is_dir()


def test_a_failing_command_prints_no_json(hades_env, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(tmp_path / "missing"), "--json"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and "does not exist" in captured.err


@pytest.mark.reference
def test_convert_json(reference_dir, tmp_path):
    pickle = reference_dir / "iclr2024-pickles" / "brax_distill_hopper_D4_seed0.pkl"
    report = run_json(["convert", pickle, "--out", tmp_path / "d4", "--json"])
    assert report["env"] == "hopper" and report["pairs"] == 4 and report["normalization"] == "constant"
    assert report["out"] == str(tmp_path / "d4") and report["sha256"] == hades.Dataset.load(tmp_path / "d4").sha256


def test_show_render_prints_nothing_extra_off_a_terminal(hades_env, tmp_path, capsys):
    from conftest import make_breakout_dataset

    folder = make_breakout_dataset().save(tmp_path / "ds")
    shown = run_json(["show", folder, "--render", tmp_path / "states.png", "--json"])
    assert shown["render"] == str(tmp_path / "states.png") and (tmp_path / "states.png").stat().st_size > 0
    assert capsys.readouterr().err == ""
