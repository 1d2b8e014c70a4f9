"""Push and pull through the real huggingface_hub client against the test Hub server, directory hubs,
offline use, and faults: a broken or killed download, tampered bytes, concurrent pulls, auth."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_hopper_dataset, make_policy_folder, run_in_threads
from hubserver import Fault

from hades import hub, ids, registry, store
from hades.errors import AuthError, ChecksumError, HubError, NotFoundError, SpecError


def _snapshots(repo_type: str = "dataset") -> list[Path]:
    root = store.home() / "store"
    found = root.glob(f"hf/*/{repo_type}s/*/*/snapshots/*")
    return sorted(path for path in found if not path.name.startswith("."))  # hidden: unfinished downloads


@pytest.fixture
def pushed(hub_server, tmp_path):
    """Two revisions of hf://org/hop: v1 (tagged) then a second one on main."""
    first, second = make_hopper_dataset(1), make_hopper_dataset(2)
    result1 = hub.push(first.save(tmp_path / "first", parquet=True), "hf://org/hop", tag="v1")
    result2 = hub.push(second.save(tmp_path / "second", parquet=True), "hf://org/hop")
    return {"first": first, "second": second, "r1": result1, "r2": result2}


@pytest.mark.parametrize("lfs_threshold", [None, 0], ids=["inline", "git-lfs"])
def test_push_then_pull_by_tag_and_commit(hub_server, tmp_path, lfs_threshold):
    hub_server.state.lfs_threshold = lfs_threshold
    dataset = make_hopper_dataset(1)
    folder = dataset.save(tmp_path / "ds", parquet=True)
    result = hub.push(folder, "hf://org/hop", tag="v1")
    repo = hub_server.state.repos[("dataset", "org/hop")]
    commit = repo.commits[result.commit]
    assert result.id == f"hf://org/hop@{result.commit}" and result.tag_id == "hf://org/hop@v1"
    assert {"dataset.safetensors", "README.md", "data/train.parquet"} <= set(commit.files)
    assert repo.tags == {"v1": result.commit}
    commits_made = [method for method, path in hub_server.state.log if method == "POST" and "/commit/" in path]
    assert len(commits_made) == 1
    if lfs_threshold == 0:
        assert "dataset.safetensors" in commit.lfs and hub_server.state.lfs_objects
        assert any(method == "PUT" for method, _ in hub_server.state.log)
    else:
        assert not commit.lfs and not hub_server.state.lfs_objects

    by_tag = registry.resolve("hf://org/hop@v1")
    assert registry.open_dataset("hf://org/hop@v1").sha256 == dataset.sha256
    assert (by_tag / "data" / "train.parquet").is_file()
    assert registry.resolve(result.id) == by_tag
    assert by_tag.name == result.commit and _snapshots() == [by_tag]


def test_second_revision_and_the_first_again(pushed, hub_server):
    first, second = pushed["first"], pushed["second"]
    assert registry.open_dataset("hf://org/hop").sha256 == second.sha256
    assert registry.open_dataset("hf://org/hop@v1").sha256 == first.sha256
    before = len(hub_server.state.log)
    assert registry.open_dataset(pushed["r1"].id).sha256 == first.sha256
    assert len(hub_server.state.log) == before  # a pinned commit already in the store needs no network
    assert len(_snapshots()) == 2


def test_parquet_mirror_and_to_hf(pushed):
    import datasets

    folder = registry.resolve("hf://org/hop@v1")
    table = datasets.Dataset.from_parquet(str(folder / "data" / "train.parquet"))
    first = pushed["first"]
    assert table.column_names[:2] == ["state", "action"] and len(table) == first.pairs
    assert table.features == first.hf_features()
    np.testing.assert_allclose(np.array(table["state"], np.float32), first.states)
    np.testing.assert_allclose(np.array(table["action"], np.float32), first.actions)
    converted = first.to_hf()
    assert isinstance(converted, datasets.Dataset) and converted.num_rows == first.pairs
    np.testing.assert_allclose(np.array(converted["state"], np.float32), first.states)


def test_push_writes_parquet_when_the_folder_has_none(hub_server, tmp_path):
    folder = make_hopper_dataset(5).save(tmp_path / "plain")
    result = hub.push(folder, "hf://datasets/org/plain")
    files = hub_server.state.repos[("dataset", "org/plain")].commits[result.commit].files
    assert "data/train.parquet" in files
    assert not (folder / "data").exists()


def test_missing_repo_and_revision_are_not_found(pushed):
    with pytest.raises(NotFoundError, match="no dataset or model repository org/nothing"):
        registry.resolve("hf://org/nothing")
    with pytest.raises(NotFoundError, match="was not found on"):
        registry.resolve("hf://datasets/org/nothing")
    with pytest.raises(NotFoundError, match="has no revision 'v9'"):
        registry.resolve("hf://org/hop@v9")
    assert _snapshots() == []


def test_auth_required(hub_server, tmp_path, monkeypatch):
    hub_server.state.token = "secret-token"
    folder = make_hopper_dataset().save(tmp_path / "ds")
    with pytest.raises(AuthError, match="HTTP 401.*set HF_TOKEN") as info:
        hub.push(folder, "hf://org/private")
    assert "\n" not in str(info.value)
    monkeypatch.setenv("HF_TOKEN", "wrong")
    with pytest.raises(AuthError):
        hub.push(folder, "hf://org/private")
    monkeypatch.setenv("HF_TOKEN", "secret-token")
    result = hub.push(folder, "hf://org/private", private=True)
    assert hub_server.state.repos[("dataset", "org/private")].private
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(AuthError):
        registry.resolve("hf://org/private")
    monkeypatch.setenv("HF_TOKEN", "secret-token")
    assert registry.resolve("hf://org/private").name == result.commit
    assert "secret-token" not in "".join(p.read_text(errors="ignore") for p in store.home().rglob("*") if p.is_file())


def test_unreachable_hub(hades_env, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(HubError, match="unreachable.*HF_HUB_OFFLINE=1"):
        registry.resolve("hf://org/hop")


def test_tag_that_exists_is_refused_before_uploading(pushed, hub_server, tmp_path):
    repo = hub_server.state.repos[("dataset", "org/hop")]
    commits = len(repo.commits)
    with pytest.raises(SpecError, match="already has a tag 'v1'"):
        hub.push(make_hopper_dataset(9).save(tmp_path / "third"), "hf://org/hop", tag="v1")
    assert len(repo.commits) == commits
    with pytest.raises(SpecError, match="takes no @REVISION"):
        hub.push(tmp_path / "third", "hf://org/hop@main")


def test_tampered_folder_is_not_pushed(hub_server, tmp_path):
    folder = make_hopper_dataset().save(tmp_path / "ds")
    (folder / "dataset.safetensors").write_bytes((folder / "dataset.safetensors").read_bytes()[:-1] + b"\x07")
    with pytest.raises(ChecksumError):
        hub.push(folder, "hf://org/hop")
    assert hub_server.state.log == []


def test_policies_go_to_model_repos(hub_server, tmp_path):
    folder = make_policy_folder(tmp_path / "policy")
    result = hub.push(folder, "hf://org/walker-policy", tag="v1")
    assert ("model", "org/walker-policy") in hub_server.state.repos and result.kind == "policy"
    pulled = registry.resolve("hf://org/walker-policy@v1")
    assert (pulled / "policy.safetensors").read_bytes() == (folder / "policy.safetensors").read_bytes()
    assert "/models/" in str(pulled)
    assert registry.resolve("hf://models/org/walker-policy@v1") == pulled
    with pytest.raises(SpecError, match="is a policy"):
        hub.push(folder, "hf://datasets/org/walker-policy")


def test_list_a_hub_author(pushed, hub_server, tmp_path):
    hub.push(make_hopper_dataset(4, evaluation={"mean": 1800.0, "std": 5.0, "protocol": {
        "num_envs": 4, "num_steps": 1024, "greedy": False}}).save(tmp_path / "e"), "hf://org/evaluated")
    hub.push(make_hopper_dataset(4).save(tmp_path / "o"), "hf://other/elsewhere")
    rows = {entry.id: entry for entry in hub.list_remote("org")}
    assert sorted(rows) == ["hf://org/evaluated", "hf://org/hop"]
    assert rows["hf://org/evaluated"].evaluation.mean == 1800.0
    assert rows["hf://org/hop"].env == "hopper" and rows["hf://org/hop"].pairs == 4


# -- offline --------------------------------------------------------------------------------------

def test_offline_uses_the_store_and_the_catalogue(pushed, hub_server, catalogue, monkeypatch):
    by_tag = registry.resolve("hf://org/hop@v1")
    latest = registry.resolve("hf://org/hop")
    hub_server.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert registry.resolve("hf://org/hop@v1") == by_tag
    assert registry.resolve("hf://org/hop") == latest
    assert registry.open_dataset("hopper-test").pairs == 4
    with pytest.raises(NotFoundError, match="not in the local store and HF_HUB_OFFLINE is set"):
        registry.resolve("hf://org/never-pulled")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        hub.push(by_tag, "hf://org/again")


def test_unreachable_hub_falls_back_to_the_copy_pulled_earlier(pushed, hub_server, capsys):
    latest = registry.resolve("hf://org/hop")
    hub_server.stop()
    assert registry.resolve("hf://org/hop") == latest
    assert "using the copy of hf://org/hop pulled earlier" in capsys.readouterr().err


# -- faults ---------------------------------------------------------------------------------------

def test_hub_serving_tampered_bytes_fails_verification(pushed, hub_server):
    hub_server.state.faults["dataset.safetensors"] = Fault("dataset.safetensors", "tamper")
    with pytest.raises(ChecksumError, match="fails verification"):
        registry.resolve("hf://org/hop@v1")
    assert _snapshots() == []


def test_dropped_connection_is_resumed_and_verified(pushed, hub_server):
    hub_server.state.faults["dataset.safetensors"] = Fault("dataset.safetensors", "drop", times=1)
    folder = registry.resolve("hf://org/hop@v1")
    assert registry.open_dataset(str(folder)).sha256 == pushed["first"].sha256
    assert hub_server.state.downloads("dataset.safetensors") == 2


def test_killed_download_leaves_nothing_in_the_store(pushed, hub_server, hades_env):
    fault = Fault("dataset.safetensors", "stall")
    hub_server.state.faults["dataset.safetensors"] = fault
    child = subprocess.Popen([sys.executable, "-m", "hades", "pull", "hf://org/hop@v1"], env=hades_env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert fault.half_sent.wait(60), "the pull never reached the stalled file"
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
    assert _snapshots() == []
    fault.release.set()
    del hub_server.state.faults["dataset.safetensors"]
    folder = registry.resolve("hf://org/hop@v1")
    assert registry.open_dataset(str(folder)).sha256 == pushed["first"].sha256
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # the killed pull's temp folder is gone


def test_eight_concurrent_pulls_store_one_copy(pushed, hub_server):
    hub_server.state.log.clear()
    results, errors = run_in_threads(lambda: registry.resolve("hf://org/hop@v1"), 8)
    assert errors == []
    assert len(set(results)) == 1 and len(results) == 8
    assert _snapshots() == [results[0]]
    assert hub_server.state.downloads("dataset.safetensors") == 1


# -- directory hubs -------------------------------------------------------------------------------

def test_directory_hub_push_pull_and_tags(hades_env, tmp_path):
    root = tmp_path / "dirhub"
    first, second = make_hopper_dataset(1), make_hopper_dataset(2)
    r1 = hub.push(first.save(tmp_path / "a"), f"file://{root}/org/hop", tag="v1")
    r2 = hub.push(second.save(tmp_path / "b"), f"file://{root}/org/hop")
    assert r1.commit != r2.commit and r1.tag_id == f"file://{root}/org/hop@v1"
    assert registry.open_dataset(f"file://{root}/org/hop").sha256 == second.sha256
    assert registry.open_dataset(f"file://{root}/org/hop@v1").sha256 == first.sha256
    assert registry.open_dataset(r1.id).sha256 == first.sha256
    assert "/store/dir/" in str(registry.resolve(r1.id))
    with pytest.raises(NotFoundError, match="no revision 'v7'.*refs there: main, v1"):
        registry.resolve(f"file://{root}/org/hop@v7")
    with pytest.raises(NotFoundError, match="has no repository org/missing"):
        registry.resolve(f"file://{root}/org/missing")
    with pytest.raises(SpecError, match="already has a tag 'v1'"):
        hub.push(tmp_path / "b", f"file://{root}/org/hop", tag="v1")
    assert [entry.id for entry in hub.list_remote(f"file://{root}")] == [f"file://{root}/org/hop"]


def test_directory_hub_with_a_plain_folder(hades_env, tmp_path):
    dataset = make_hopper_dataset(6)
    dataset.save(tmp_path / "hub" / "org" / "plain")
    assert registry.open_dataset(f"file://{tmp_path}/hub/org/plain").sha256 == dataset.sha256
    with pytest.raises(NotFoundError, match="unversioned"):
        registry.resolve(f"file://{tmp_path}/hub/org/plain@v1")


# -- one interface --------------------------------------------------------------------------------

def test_every_hub_backend_has_the_interface_and_is_picked_by_kind(hades_env, tmp_path):
    import inspect

    from hades.dirhub import DirHub
    from hades.hfhub import HFHub

    assert isinstance(hub.backend("hf"), HFHub) and isinstance(hub.backend("dir"), DirHub)
    with pytest.raises(SpecError, match="no hub of kind 'ftp'"):
        hub.backend("ftp")
    for name in ("pull", "push", "list"):
        wanted = inspect.signature(getattr(hub.HubBackend, name))
        for backend in (HFHub, DirHub):
            assert list(inspect.signature(getattr(backend, name)).parameters) == list(wanted.parameters), (backend, name)
    # a push and a pull straight through the backend, with progress asked for
    dataset = make_hopper_dataset(3)
    folder = dataset.save(tmp_path / "d")
    files = hub.hub_names(hub.files_to_push(folder))
    did = ids.parse_id(f"file://{tmp_path / 'dirhub'}/org/hop")
    result = hub.backend("dir").push(did, store.verify_path(folder), files, tag="v1", private=False, message=None,
                                     progress=True)
    pulled = hub.backend("dir").pull(ids.parse_id(result.tag_id), False, True)
    assert registry.open_dataset(str(pulled)).sha256 == dataset.sha256


def test_the_operation_deadline_holds_in_the_download_threads_too(hub_server, hades_env, tmp_path, monkeypatch):
    """huggingface_hub downloads in worker threads of its own: a slow Hub still ends the pull at the deadline."""
    from hades.errors import HubTimeoutError

    folder = make_hopper_dataset(5).save(tmp_path / "many")
    for index in range(8):  # more files than download threads: some start after the deadline
        (folder / f"extra-{index}.csv").write_text("a,b\n1,2\n")
    hub.push(folder, "hf://org/many")
    hub_server.state.delay = 1.0
    monkeypatch.setenv("HADES_HUB_OPERATION_TIMEOUT", "1")
    with pytest.raises(HubTimeoutError, match="did not finish within 1 s"):
        registry.resolve("hf://org/many")
    assert _snapshots() == []
    monkeypatch.setenv("HADES_HUB_OPERATION_TIMEOUT", "60")
    assert registry.open_dataset("hf://org/many").sha256 == make_hopper_dataset(5).sha256
