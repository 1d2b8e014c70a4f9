"""The files the bad-input corpus feeds to `hades`: a good dataset and policy to start from, then
every way a file, a card or a path can be wrong. Built once per test session under one folder."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

HOPPER_OBS, HOPPER_ACT = 11, 3


def safetensors_bytes(tensors: dict[str, np.ndarray], meta) -> bytes:
    """Raw safetensors bytes with any ``hades`` metadata at all (a JSON string, or not)."""
    from safetensors.numpy import save

    text = meta if isinstance(meta, str) else json.dumps(meta)
    return save({name: np.ascontiguousarray(value) for name, value in tensors.items()}, metadata={"hades": text})


def good_dataset():
    from conftest import make_hopper_dataset

    return make_hopper_dataset(seed=3, evaluation={
        "mean": 1000.0, "std": 10.0, "returns": [990.0, 1010.0],
        "protocol": {"num_envs": 4, "num_steps": 1024, "greedy": False}})


def good_policy():
    """A real (untrained) 2x8 tanh hopper policy: params from the network's own init."""
    import jax

    import hades
    from hades.learn import Recipe
    from hades.policy import PolicySpec, make_network

    recipe = Recipe(PolicySpec((8, 8), "tanh"), "gaussian_nll", 5e-3, 20, 0.5)
    network = make_network(recipe.arch, HOPPER_ACT, False)
    params = network.init(jax.random.key(0), np.zeros((1, HOPPER_OBS), np.float32))["params"]
    return hades.Policy(jax.tree.map(np.asarray, params), "hopper", recipe, info={"license": "apache-2.0"})


def dataset_meta(dataset) -> dict:
    return json.loads(json.dumps(dataset.metadata()))


def corrupt_tensor_files(dataset) -> dict[str, bytes]:
    """name -> the bytes of a broken ``dataset.safetensors`` (each broken in one way)."""
    good = dataset.to_bytes()
    meta = dataset_meta(dataset)
    states, actions = dataset.states, dataset.actions
    base = {"states": states, "actions": actions}

    def with_meta(**changes):
        changed = dict(meta)
        for key, value in changes.items():
            if value is None:
                changed.pop(key, None)
            else:
                changed[key] = value
        return safetensors_bytes(base, changed)

    def with_tensors(**tensors):
        return safetensors_bytes({**base, **tensors}, meta)

    files = {
        "empty": b"",
        "seven-bytes": b"\x01" * 7,
        "random-bytes": np.random.default_rng(0).bytes(1000),
        "huge-header-length": struct.pack("<Q", 2**62) + b"{}",
        "header-not-json": struct.pack("<Q", 10) + b"not json!!",
        "header-json-array": struct.pack("<Q", 2) + b"[]",
        "truncated-half": good[: len(good) // 2],
        "truncated-last-byte": good[:-1],
        "no-hades-metadata": __import__("safetensors.numpy", fromlist=["save"]).save(dict(base)),
        "metadata-not-json": safetensors_bytes(base, "{not json"),
        "metadata-a-list": safetensors_bytes(base, "[1, 2]"),
        "format-version-2": with_meta(format_version=2),
        "format-version-string": with_meta(format_version="1"),
        "format-version-missing": with_meta(format_version=None),
        "kind-policy": with_meta(kind="policy"),
        "kind-unknown": with_meta(kind="spreadsheet"),
        "env-missing": with_meta(env=None),
        "env-a-string": with_meta(env="hopper"),
        "env-id-unknown": with_meta(env={**meta["env"], "id": "pogo-stick"}),
        "env-id-a-number": with_meta(env={**meta["env"], "id": 7}),
        "env-other-env": with_meta(env={**meta["env"], "id": "walker2d"}),
        "env-backend-unknown": with_meta(env={**meta["env"], "backend": "warp-drive"}),
        "pairs-disagree": with_meta(pairs=99),
        "pairs-a-string": with_meta(pairs="four"),
        "normalization-unknown": with_meta(normalization="sideways"),
        "normalization-a-list": with_meta(normalization=["constant"]),
        "normalization-constant-no-stats": with_meta(normalization="constant"),
        "recipe-a-string": with_meta(recipe="fast please"),
        "recipe-empty": with_meta(recipe={"lr": 0.1}),
        "recipe-unknown-field": with_meta(recipe={**meta.get("recipe", {}), "warp": 9}),
        "recipe-lr-text": with_meta(recipe={"arch": {"hidden": [8]}, "loss": "mse", "lr": "fast", "steps": 10}),
        "recipe-lr-negative": with_meta(recipe={"arch": {"hidden": [8]}, "loss": "mse", "lr": -1.0, "steps": 10}),
        "recipe-steps-zero": with_meta(recipe={"arch": {"hidden": [8]}, "loss": "mse", "lr": 0.01, "steps": 0}),
        "recipe-hidden-negative": with_meta(recipe={"arch": {"hidden": [-8]}, "loss": "mse", "lr": 0.01, "steps": 10}),
        "recipe-hidden-text": with_meta(recipe={"arch": {"hidden": "wide"}, "loss": "mse", "lr": 0.01, "steps": 10}),
        "recipe-activation-unknown": with_meta(recipe={"arch": {"hidden": [8], "activation": "sparkle"}, "loss": "mse",
                                                       "lr": 0.01, "steps": 10}),
        "recipe-loss-unknown": with_meta(recipe={"arch": {"hidden": [8]}, "loss": "vibes", "lr": 0.01, "steps": 10}),
        "recipe-huge-width": with_meta(recipe={"arch": {"hidden": [10**9]}, "loss": "mse", "lr": 0.01, "steps": 10}),
        "evaluation-a-string": with_meta(evaluation="great"),
        "states-missing": safetensors_bytes({"actions": actions}, meta),
        "actions-missing": safetensors_bytes({"states": states}, meta),
        "states-float64": with_tensors(states=states.astype(np.float64)),
        "states-int": with_tensors(states=states.astype(np.int32)),
        "states-wrong-width": with_tensors(states=np.zeros((4, 12), np.float32)),
        "states-3d": with_tensors(states=np.zeros((4, 11, 1), np.float32)),
        "states-zero-pairs": safetensors_bytes({"states": np.zeros((0, 11), np.float32),
                                                "actions": np.zeros((0, 3), np.float32)}, meta),
        "states-nan": with_tensors(states=np.full_like(states, np.nan)),
        "states-inf": with_tensors(states=np.full_like(states, np.inf)),
        "actions-wrong-width": with_tensors(actions=np.zeros((4, 2), np.float32)),
        "actions-fewer-pairs": with_tensors(actions=np.zeros((3, 3), np.float32)),
        "actions-int": with_tensors(actions=np.zeros((4, 3), np.int32)),
        "obs-var-negative": safetensors_bytes({**base, "obs_mean": np.zeros(11, np.float32),
                                               "obs_var": -np.ones(11, np.float32)}, {**meta, "normalization": "constant"}),
        "obs-mean-wrong-shape": safetensors_bytes({**base, "obs_mean": np.zeros(5, np.float32),
                                                   "obs_var": np.ones(11, np.float32)}, {**meta, "normalization": "constant"}),
    }
    return files


def card_text(section: dict, body: str = "# a dataset\n") -> str:
    import yaml

    return "---\n" + yaml.safe_dump({"license": "apache-2.0", "hades": section}, sort_keys=False) + "---\n\n" + body


def tampered_cards(dataset) -> dict[str, str]:
    """name -> a card for the good ``dataset.safetensors`` that says something the file does not."""
    from hades.formats import sha256_bytes

    meta = dataset_meta(dataset)
    section = {**meta, "sha256": sha256_bytes(dataset.to_bytes())}

    def edit(**changes):
        return card_text({**section, **changes})

    evaluation = dict(section["evaluation"])
    return {
        "card-env-edited": edit(env={**section["env"], "id": "walker2d"}),
        "card-pairs-edited": edit(pairs=64),
        "card-normalization-edited": edit(normalization="constant"),
        "card-recipe-edited": edit(recipe={"arch": {"hidden": [4096]}, "loss": "mse", "lr": 1.0, "steps": 1}),
        "card-evaluation-edited": edit(evaluation={**evaluation, "mean": 9999.0}),
        "card-license-in-section-edited": edit(license="proprietary"),
        "card-extra-claim": edit(award="best dataset ever"),
        "card-sha-edited": edit(sha256="0" * 64),
        "card-sha-not-hex": edit(sha256="not-a-checksum"),
        "card-format-version-9": edit(format_version=9),
        "card-kind-policy": edit(kind="policy"),
        "card-broken-yaml": "---\nhades: {format_version: 1, sha256: [unclosed\n---\n\n# broken\n",
        "card-no-front-matter": "# just a title\n\nno metadata at all\n",
        "card-no-hades-section": "---\nlicense: apache-2.0\n---\n\n# no hades\n",
        "card-hades-a-list": "---\nhades:\n- 1\n- 2\n---\n",
        "card-unclosed-front-matter": "---\nhades:\n  format_version: 1\n",
        "card-empty": "",
        "card-binary": "---\n\x00\x01\x02\x03\n---\n",
    }


class _Malicious:
    """Unpickling this would run a command: the converter must refuse it without running anything."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickles(root: Path, reference: Path | None) -> dict[str, Path]:
    import pickle

    folder = root / "pickles"
    folder.mkdir()
    out = {}
    contents = {"malicious": _Malicious(root / "PICKLE-RAN"), "a-dict": {"hello": 1}, "a-list": [1, 2, 3]}
    for name, value in contents.items():
        out[f"pickle:{name}"] = folder / f"{name}.pkl"
        out[f"pickle:{name}"].write_bytes(pickle.dumps(value))
    (folder / "empty.pkl").write_bytes(b"")
    out["pickle:empty"] = folder / "empty.pkl"
    good = None
    if reference is not None:
        candidate = reference / "iclr2024-results" / "brax" / "distill" / "hopper" / "D4" / "seed0" / "data_final.pkl"
        good = candidate if candidate.is_file() else None
    if good is not None:
        out["pickle:good"] = good
        (folder / "truncated.pkl").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        out["pickle:truncated"] = folder / "truncated.pkl"
    return out


def _runs(root: Path) -> dict[str, Path]:
    run = root / "runs" / "corrupt-fitness"
    run.mkdir(parents=True)
    (run / "fitness.csv").write_bytes(b"generation,mean\n1,\x00\xff\n2,abc,def\n")
    return {"run:corrupt-fitness": run}


def build(root: Path, reference: Path | None = None) -> dict[str, Path]:
    """Write every material under ``root``; returns name -> path (the result pickles need ``reference``)."""
    root.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    dataset = good_dataset()
    paths["dataset"] = dataset.save(root / "good-dataset")
    paths["bare-dataset"] = root / "good.safetensors"
    paths["bare-dataset"].write_bytes(dataset.to_bytes())
    paths["policy"] = good_policy().save(root / "good-policy")
    from hades.formats import sha256_bytes

    for name, data in corrupt_tensor_files(dataset).items():
        bare = root / "bare" / f"{name}.safetensors"
        bare.parent.mkdir(exist_ok=True)
        bare.write_bytes(data)
        paths[f"bare:{name}"] = bare
        folder = root / "folders" / name  # the broken file with a card that matches its bytes
        folder.mkdir(parents=True)
        (folder / "dataset.safetensors").write_bytes(data)
        section = {"format_version": 1, "kind": "dataset", "sha256": sha256_bytes(data)}
        (folder / "README.md").write_text(card_text(section), encoding="utf-8")
        paths[f"folder:{name}"] = folder
    for name, text in tampered_cards(dataset).items():
        folder = root / "cards" / name
        folder.mkdir(parents=True)
        (folder / "dataset.safetensors").write_bytes(dataset.to_bytes())
        (folder / "README.md").write_text(text, encoding="utf-8")
        paths[name] = folder
    paths.update(_odd_paths(root))
    paths.update(_policy_variants(root))
    paths.update(_pickles(root, reference))
    paths.update(_runs(root))
    return paths


def _odd_paths(root: Path) -> dict[str, Path]:
    odd = root / "odd"
    odd.mkdir()
    regular = odd / "a-file"
    regular.write_text("just text\n")
    empty = odd / "empty-folder"
    empty.mkdir()
    fifo = odd / "a-pipe.safetensors"
    os.mkfifo(fifo)
    loop = odd / "loop"
    os.symlink(loop, loop)
    card_folder = odd / "card-is-a-folder"
    card_folder.mkdir()
    (card_folder / "README.md").mkdir()
    (card_folder / "dataset.safetensors").mkdir()
    return {
        "missing": odd / "no-such-thing",
        "regular-file": regular,
        "through-file": regular / "inside",
        "empty-folder": empty,
        "fifo": fifo,
        "symlink-loop": loop,
        "name-too-long": odd / ("x" * 300),
        "proc": Path("/proc/hades-no-such-file"),
        "card-is-a-folder": card_folder,
    }


def _policy_variants(root: Path) -> dict[str, Path]:
    """Policy folders broken one way each: metadata, tensors or card."""
    from hades.formats import sha256_bytes

    policy = good_policy()
    meta = json.loads(json.dumps(policy.metadata()))
    from hades.policy_io import param_tensors

    tensors = param_tensors(policy.params)
    out = {}

    def write(name: str, data: bytes, section: dict | None = None):
        folder = root / "policies" / name
        folder.mkdir(parents=True)
        (folder / "policy.safetensors").write_bytes(data)
        card = section if section is not None else {**meta, "sha256": sha256_bytes(data)}
        (folder / "README.md").write_text(card_text(card, "# a policy\n"), encoding="utf-8")
        out[f"policy:{name}"] = folder

    def meta_with(**changes):
        return {**meta, **changes}

    write("recipe-missing", safetensors_bytes(tensors, {k: v for k, v in meta.items() if k != "recipe"}))
    write("recipe-a-string", safetensors_bytes(tensors, meta_with(recipe="x")))
    write("recipe-hidden-text", safetensors_bytes(tensors, meta_with(recipe={**meta["recipe"], "arch": {"hidden": "big"}})))
    write("recipe-arch-disagrees", safetensors_bytes(tensors, meta_with(recipe={**meta["recipe"],
                                                                               "arch": {"hidden": [16, 16]}})))
    write("env-missing", safetensors_bytes(tensors, {k: v for k, v in meta.items() if k != "env"}))
    write("env-a-string", safetensors_bytes(tensors, meta_with(env="hopper")))
    write("env-unknown", safetensors_bytes(tensors, meta_with(env={**meta["env"], "id": "pogo-stick"})))
    write("env-other-dims", safetensors_bytes(tensors, meta_with(env={**meta["env"], "id": "walker2d"})))
    write("normalization-unknown", safetensors_bytes(tensors, meta_with(normalization="sideways")))
    write("normalization-constant-no-stats", safetensors_bytes(tensors, meta_with(normalization="constant")))
    write("no-params", safetensors_bytes({"other": np.zeros(3, np.float32)}, meta))
    write("params-nan", safetensors_bytes({k: np.full_like(v, np.nan) for k, v in tensors.items()}, meta))
    write("params-wrong-shape", safetensors_bytes({k: v[:1] for k, v in tensors.items()}, meta))
    good = policy.to_bytes()
    write("card-env-edited", good, {**meta, "sha256": sha256_bytes(good), "env": {**meta["env"], "id": "walker2d"}})
    write("card-recipe-edited", good, {**meta, "sha256": sha256_bytes(good),
                                       "recipe": {**meta["recipe"], "lr": 99.0}})
    # a bare file that says it is a policy but holds a dataset's tensors
    dataset = good_dataset()
    bare = root / "policies" / "dataset-called-policy.safetensors"
    bare.write_bytes(safetensors_bytes({"states": dataset.states, "actions": dataset.actions},
                                       {**dataset_meta(dataset), "kind": "policy"}))
    out["policy:dataset-called-policy"] = bare
    return out
