"""The local store and verification: atomic installs, one copy under concurrency, tamper detection,
the bundled catalogue and the resolver for local paths."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_hopper_dataset, make_policy_folder, run_in_threads

from hades import registry, store
from hades.errors import ChecksumError, FormatError, HadesError, NotFoundError, SpecError
from hades.formats import sha256_bytes, tensors_to_bytes


def _key() -> store.StoreKey:
    return store.StoreKey("dir/test", "dataset", "org/hop")


def _fill_from(dataset):
    def fill(tmp: Path) -> None:
        dataset.save(tmp / "x")
        for path in (tmp / "x").iterdir():
            path.rename(tmp / path.name)
        (tmp / "x").rmdir()
    return fill


# -- verification ---------------------------------------------------------------------------------

def test_verify_dataset_folder_file_and_policy(tmp_path):
    dataset = make_hopper_dataset()
    folder = dataset.save(tmp_path / "ds")
    verified = store.verify_path(folder)
    assert (verified.kind, verified.env, verified.pairs, verified.sha256) == ("dataset", "hopper", 4, dataset.sha256)
    bare = dataset.save(tmp_path / "bare.safetensors")
    assert store.verify_path(bare).sha256 == dataset.sha256
    policy = store.verify_path(make_policy_folder(tmp_path / "policy"))
    assert (policy.kind, policy.env) == ("policy", "hopper")


def test_tampered_dataset_fails_with_one_clear_line(tmp_path):
    folder = make_hopper_dataset().save(tmp_path / "ds")
    data = bytearray((folder / "dataset.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (folder / "dataset.safetensors").write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as info:
        store.verify_path(folder)
    assert "fails verification" in str(info.value) and "\n" not in str(info.value)


def test_tampered_policy_and_nan_policy(tmp_path):
    folder = make_policy_folder(tmp_path / "policy")
    (folder / "policy.safetensors").write_bytes((folder / "policy.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ChecksumError):
        store.verify_path(folder)
    nan = tensors_to_bytes({"w": np.array([[np.nan]], np.float32)}, {"format_version": 1, "kind": "policy"})
    bad = tmp_path / "nan.safetensors"
    bad.write_bytes(nan)
    with pytest.raises(FormatError, match="NaN"):
        store.verify_path(bad)


def test_card_without_sha256_is_refused(tmp_path):
    from hades.errors import CardError

    folder = make_hopper_dataset().save(tmp_path / "ds")
    card = (folder / "README.md").read_text()
    (folder / "README.md").write_text("\n".join(line for line in card.splitlines() if "sha256:" not in line))
    with pytest.raises(CardError, match="records no sha256"):
        store.verify_path(folder)


def test_folder_without_payload_or_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="neither dataset.safetensors nor policy.safetensors"):
        store.verify_path(tmp_path / "empty")
    with pytest.raises(NotFoundError):
        store.verify_path(tmp_path / "nowhere")


def test_nan_states_fail_even_with_a_matching_checksum(tmp_path):
    dataset = make_hopper_dataset()
    folder = dataset.save(tmp_path / "ds")
    states = dataset.states.copy()
    states[0, 0] = np.nan
    data = tensors_to_bytes({"states": states, "actions": dataset.actions}, dataset.metadata())
    (folder / "dataset.safetensors").write_bytes(data)
    card = (folder / "README.md").read_text().replace(dataset.sha256, sha256_bytes(data))
    (folder / "README.md").write_text(card)
    with pytest.raises(FormatError, match="NaN"):
        store.verify_path(folder)


# -- the store ------------------------------------------------------------------------------------

def test_home_defaults_to_the_user_cache(monkeypatch):
    import platformdirs

    monkeypatch.delenv("HADES_HOME", raising=False)
    assert store.home() == Path(platformdirs.user_cache_dir("hades"))
    monkeypatch.setenv("HADES_HOME", "/tmp/somewhere")
    assert store.home() == Path("/tmp/somewhere")


def test_install_verifies_and_records(hades_env):
    dataset = make_hopper_dataset()
    folder = store.install(_key(), "c" * 40, _fill_from(dataset))
    assert folder == _key().snapshot("c" * 40)
    marker = json.loads((folder / store.MARKER).read_text())
    assert marker["files"]["dataset.safetensors"] == dataset.sha256
    assert store.check_entry(folder) == folder
    assert [entry[1] for entry in store.entries()] == ["c" * 40]


def test_failed_fill_leaves_nothing(hades_env):
    def fill(tmp: Path) -> None:
        (tmp / "dataset.safetensors").write_bytes(b"partial")
        raise ConnectionError("connection dropped")

    with pytest.raises(ConnectionError):
        store.install(_key(), "d" * 40, fill)
    assert store.cached(_key(), "d" * 40) is None
    assert list(_key().folder.joinpath("snapshots").iterdir()) == []


def test_unverifiable_download_is_not_stored(hades_env, tmp_path):
    dataset = make_hopper_dataset()

    def fill(tmp: Path) -> None:
        _fill_from(dataset)(tmp)
        (tmp / "dataset.safetensors").write_bytes(b"\0" * 64)

    with pytest.raises(FormatError):
        store.install(_key(), "e" * 40, fill)
    assert store.cached(_key(), "e" * 40) is None


def test_leftovers_of_a_killed_install_are_cleaned(hades_env):
    target = _key().snapshot("f" * 40)
    stale = target.parent / f".{target.name}.abc123.tmp"
    stale.mkdir(parents=True)
    (stale / "dataset.safetensors").write_bytes(b"half")
    store.install(_key(), "f" * 40, _fill_from(make_hopper_dataset()))
    assert not stale.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["f" * 40]


def test_concurrent_installs_store_one_copy(hades_env):
    dataset = make_hopper_dataset()
    fills = []

    def slow_fill(tmp: Path) -> None:
        fills.append(1)
        time.sleep(0.2)
        _fill_from(dataset)(tmp)

    results, errors = run_in_threads(lambda: store.install(_key(), "a" * 40, slow_fill), 8)
    assert not errors
    assert len(fills) == 1
    assert len(set(results)) == 1
    assert sorted(p.name for p in _key().snapshot("a" * 40).parent.iterdir()) == ["a" * 40]


def test_tampered_entry_is_caught_and_force_replaces_it(hades_env):
    dataset = make_hopper_dataset()
    folder = store.install(_key(), "b" * 40, _fill_from(dataset))
    data = bytearray((folder / "dataset.safetensors").read_bytes())
    data[-1] ^= 0x01
    (folder / "dataset.safetensors").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="stored copy is damaged.*hades pull --force"):
        store.check_entry(folder)
    with pytest.raises(ChecksumError):
        store.install(_key(), "b" * 40, _fill_from(dataset))
    store.install(_key(), "b" * 40, _fill_from(dataset), force=True)
    assert store.check_entry(folder) == folder


def test_unwritable_home_gives_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HADES_HOME", str(blocker / "home"))
    with pytest.raises(HadesError, match="set HADES_HOME to a writable folder"):
        store.install(_key(), "a" * 40, _fill_from(make_hopper_dataset()))


def test_refs_round_trip(hades_env):
    key = _key()
    assert store.read_ref(key, "v1") is None
    store.write_ref(key, "refs/pr/1", "1" * 40)
    assert store.read_ref(key, "refs/pr/1") == "1" * 40
    assert store.source_for_endpoint("https://huggingface.co") == "hf/huggingface.co"
    assert store.source_for_endpoint("http://127.0.0.1:8080/") == "hf/127.0.0.1_8080"


# -- catalogue and resolver -----------------------------------------------------------------------

def test_empty_catalogue_loads(hades_env, tmp_path, monkeypatch):
    (tmp_path / "index.json").write_text("[]")
    monkeypatch.setenv("HADES_REGISTRY", str(tmp_path))
    assert registry.load_catalogue() == ()
    with pytest.raises(NotFoundError, match="catalogue, which is empty"):
        registry.resolve("hopper-4pairs")


def test_every_bundled_entry_verifies(hades_env):
    entries = registry.load_catalogue()
    assert "hopper-4pairs" in {entry.name for entry in entries}
    for entry in entries:
        assert registry.resolve(entry.id) == entry.folder
        assert store.verify_path(entry.folder).sha256 == entry.sha256


def test_every_bundled_card_has_the_hub_filter_keys_of_its_dataset(hades_env):
    from huggingface_hub import DatasetCard

    from hades.dataset import Dataset

    for entry in registry.load_catalogue():
        card = DatasetCard.load(entry.folder / "README.md")
        for key, value in Dataset.load(entry.folder).hub_filters().items():
            assert getattr(card.data, key, None) == value, (entry.id, key)


def test_hub_filter_keys_are_added_to_an_older_card_and_nothing_else_changes(tmp_path):
    from conftest import make_hopper_dataset
    from huggingface_hub import DatasetCard

    from hades.publish import add_hub_filters

    folder = make_hopper_dataset(2).save(tmp_path / "old")
    card = DatasetCard.load(folder / "README.md")
    for key in ("task_categories", "size_categories", "source_datasets"):
        setattr(card.data, key, None)
    (folder / "README.md").write_text(str(card), encoding="utf-8")
    before = DatasetCard.load(folder / "README.md")
    assert add_hub_filters(folder) is True and add_hub_filters(folder) is False
    after = DatasetCard.load(folder / "README.md")
    assert after.data.task_categories == ["reinforcement-learning", "robotics"] and after.data.size_categories == ["n<1K"]
    assert after.data.source_datasets == ["original"] and after.text == before.text
    assert after.data.to_dict()["hades"] == before.data.to_dict()["hades"]
    store.verify_path(folder)


def test_catalogue_entry_resolves_in_place(catalogue):
    path = registry.resolve("hopper-test")
    assert path == catalogue / "hopper-test"
    assert registry.resolve("hopper-test@1") == path
    assert registry.resolve("HOPPER-TEST") == path
    dataset = registry.open_dataset("hopper-test")
    assert dataset.pairs == 4 and dataset.env == "hopper"
    entry = registry.find_entry("hopper-test")
    assert entry.evaluation.mean == 1745.0 and entry.license == "apache-2.0"


def test_unknown_names_list_what_is_available(catalogue):
    with pytest.raises(NotFoundError, match="did you mean 'hopper-test'.*available: hopper-test"):
        registry.resolve("hopper-tset")
    with pytest.raises(NotFoundError, match="no version '9'; available versions: 1"):
        registry.resolve("hopper-test@9")


def test_tampered_bundled_dataset_is_refused(catalogue):
    data_path = catalogue / "hopper-test" / "dataset.safetensors"
    data = bytearray(data_path.read_bytes())
    data[-1] ^= 0x01
    data_path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="bundled dataset hopper-test@1 fails verification"):
        registry.resolve("hopper-test")


@pytest.mark.parametrize("content, fragment", [
    ("{", "not valid JSON"),
    ("{}", "must hold a JSON list"),
    ('[{"name": "x"}]', "lacks version"),
    ('[{"name": "x", "version": "1", "sha256": "zz", "env": "hopper", "pairs": 4, "license": "mit", "path": "x"}]',
     "64 hex"),
    ('[{"name": "x", "version": "1", "sha256": "' + "a" * 64 + '", "env": "hopper", "pairs": 4, "license": "mit",'
     ' "path": "../x"}]', "without '..'"),
])
def test_broken_index_is_one_clear_error(tmp_path, monkeypatch, content, fragment):
    (tmp_path / "index.json").write_text(content)
    monkeypatch.setenv("HADES_REGISTRY", str(tmp_path))
    with pytest.raises(FormatError) as info:
        registry.load_catalogue()
    assert fragment in str(info.value)


def test_plain_paths_need_no_store(tmp_path, hades_env):
    dataset = make_hopper_dataset(3)
    folder = dataset.save(tmp_path / "mine")
    assert registry.resolve(str(folder)) == folder
    assert registry.open_dataset(str(folder)).sha256 == dataset.sha256
    bare = dataset.save(tmp_path / "mine.safetensors")
    assert registry.open_dataset(str(bare)).sha256 == dataset.sha256
    assert not Path(hades_env["HADES_HOME"]).exists()
    with pytest.raises(NotFoundError):
        registry.resolve(str(tmp_path / "missing"))
    with pytest.raises(SpecError):
        registry.resolve("hf://bad/../id")


def test_open_dataset_refuses_a_policy(tmp_path, hades_env):
    folder = make_policy_folder(tmp_path / "policy")
    with pytest.raises(FormatError, match="is a trained policy, not a dataset"):
        registry.open_dataset(str(folder))
