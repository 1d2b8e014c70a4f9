"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One persistent XLA compilation cache for the whole run, shared with the CLI subprocesses the tests
# start: many tests compile the same tiny programs, and compiling dominates the suite's time. Each
# pytest-xdist worker gets a folder of its own under it: JAX writes cache entries without a lock, and
# two workers compiling one program at once could read each other's half-written entry.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ or "HADES_TEST_XLA_CACHE" in os.environ:
    import tempfile

    root = os.environ.setdefault("HADES_TEST_XLA_CACHE", tempfile.mkdtemp(prefix="hades-test-xla-cache-"))
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(root, os.environ.get("PYTEST_XDIST_WORKER", "main"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

# The published datasets and result files (test material only, never copied into the repository).
REFERENCE_DIR = Path(os.environ.get("HADES_REFERENCE_DIR", Path(__file__).resolve().parents[2] / "shared" / "reference"))


def _idx_dir(name: str) -> Path:
    """Where the image loader looks for a packaged IDX set (its variable, else the Debian folder)."""
    from hades.imagesets import IDX_DIRS

    variable, default = IDX_DIRS[name]
    return Path(os.environ.get(variable, default))


# Fashion-MNIST comes from the Debian package dataset-fashion-mnist; its tests skip without it.
FASHION_DIR = _idx_dir("fashion-mnist")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference folder; tests that need it are skipped where it is absent."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE_DIR} (set HADES_REFERENCE_DIR to the shared/reference folder)")
    return REFERENCE_DIR


# -- registry and Hub fixtures ---------------------------------------------------------------------

def make_hopper_dataset(seed: int = 0, pairs: int = 4, evaluation: dict | None = None):
    """A small random hopper dataset (11-dim states, 3-dim actions)."""
    import numpy as np

    import hades

    rng = np.random.default_rng(seed)
    info = {"license": "apache-2.0", "name": f"hopper test {seed}"}
    if evaluation is not None:
        info["evaluation"] = evaluation
    return hades.Dataset(rng.normal(size=(pairs, 11)).astype("float32"),
                         rng.normal(size=(pairs, 3)).astype("float32"), "hopper", info=info)


@pytest.fixture
def hades_env(tmp_path, monkeypatch) -> dict:
    """A private HADES_HOME, an empty HF cache and no Hub settings leaking in from the machine.

    Returns the environment a ``python -m hades`` subprocess should run with."""
    import huggingface_hub.constants as hf_constants

    home = tmp_path / "hades-home"
    monkeypatch.setenv("HADES_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf-home" / "stored_tokens"))
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT", "HADES_REGISTRY", "HADES_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    env = {key: value for key, value in os.environ.items()}
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    return env


@pytest.fixture
def hub_server(hades_env, monkeypatch):
    """An HF-Hub-compatible server on 127.0.0.1 that the real huggingface_hub client uses via HF_ENDPOINT."""
    from hubserver import HubServer

    server = HubServer().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    hades_env["HF_ENDPOINT"] = server.url
    yield server
    server.stop()


@pytest.fixture
def catalogue(tmp_path, hades_env, monkeypatch):
    """A temporary bundled catalogue (HADES_REGISTRY) holding one dataset, ``hopper-test`` version 1."""
    import json

    root = tmp_path / "registry"
    dataset = make_hopper_dataset(seed=7, evaluation={
        "mean": 1745.0, "std": 12.5, "returns": [1730.0, 1760.0],
        "protocol": {"num_envs": 4, "num_steps": 1024, "greedy": False},
    })
    dataset.save(root / "hopper-test", parquet=False)
    entry = {"name": "hopper-test", "version": "1", "sha256": dataset.sha256, "env": "hopper", "pairs": dataset.pairs,
             "return": {"mean": 1745.0, "std": 12.5, "protocol": "4 envs x 1024 steps, sampled actions"},
             "license": "apache-2.0", "path": "hopper-test"}
    (root / "index.json").write_text(json.dumps([entry], indent=2))
    monkeypatch.setenv("HADES_REGISTRY", str(root))
    hades_env["HADES_REGISTRY"] = str(root)
    return root


def make_policy_folder(folder: Path, seed: int = 0) -> Path:
    """A minimal trained-policy folder: policy.safetensors plus a model card recording its sha256."""
    import numpy as np

    from hades.formats import sha256_bytes, tensors_to_bytes

    rng = np.random.default_rng(seed)
    shapes = {"Dense_0/kernel": (11, 8), "Dense_0/bias": (8,), "Dense_1/kernel": (8, 3), "Dense_1/bias": (3,),
              "log_std": (3,)}  # a 1x8 tanh MLP for hopper, as its recipe says
    tensors = {f"params/{name}": rng.normal(size=shape).astype("float32") for name, shape in shapes.items()}
    recipe = {"arch": {"hidden": [8], "activation": "tanh", "init": "orthogonal"}, "loss": "gaussian_nll",
              "lr": 0.005, "steps": 20, "max_grad_norm": 0.5, "adam_eps": 1e-05}
    data = tensors_to_bytes(tensors, {"format_version": 1, "kind": "policy", "env": {"id": "hopper"}, "recipe": recipe})
    folder.mkdir(parents=True)
    (folder / "policy.safetensors").write_bytes(data)
    (folder / "README.md").write_text(
        "---\nlicense: apache-2.0\ntags:\n- hades\nhades:\n  format_version: 1\n  kind: policy\n"
        f"  env:\n    id: hopper\n  sha256: {sha256_bytes(data)}\n---\n\n# A hopper policy\n", encoding="utf-8")
    return folder


# -- foundation helpers: tiny datasets, recipes, the CLI as a subprocess ---------------------------

def make_breakout_dataset(seed: int = 0, pairs: int = 6):
    """A small random Breakout-MinAtar dataset (400-dim states, integer labels 0..2 in order)."""
    import numpy as np

    import hades

    rng = np.random.default_rng(seed)
    labels = np.arange(pairs, dtype=np.int32) * 3 // pairs
    return hades.Dataset(rng.uniform(size=(pairs, 400)).astype("float32"), labels, "Breakout-MinAtar",
                         info={"license": "apache-2.0", "name": f"breakout test {seed}"})


def tiny_recipe(discrete: bool = False, hidden=(16, 16), steps: int = 20):
    """A recipe small enough that training compiles and runs in a second or two."""
    from hades.learn import Recipe
    from hades.policy import PolicySpec

    if discrete:
        return Recipe(PolicySpec(tuple(hidden), "relu"), "cross_entropy", 0.03, steps, None)
    return Recipe(PolicySpec(tuple(hidden), "tanh"), "gaussian_nll", 5e-3, steps, 0.5)


@pytest.fixture
def tiny_dataset():
    """A random hopper dataset of 4 pairs."""
    return make_hopper_dataset(seed=0)


@pytest.fixture
def tiny_discrete_dataset():
    """A random Breakout-MinAtar dataset of 6 pairs, two per action."""
    return make_breakout_dataset(seed=0)


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600):
    """Run ``python -m hades ARGS`` in a fresh process; returns the CompletedProcess (text mode)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "hades", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def cli_env(root: Path) -> dict:
    """The environment of a CLI subprocess: its own HADES_HOME and HF cache under ``root``, offline."""
    env = dict(os.environ)
    env["HADES_HOME"] = str(root / "hades-home")
    env["HF_HOME"] = str(root / "hf-home")
    env["HF_HUB_OFFLINE"] = "1"
    for name in ("HADES_REGISTRY", "HADES_DEBUG", "HF_ENDPOINT", "HF_TOKEN"):
        env.pop(name, None)
    return env


def assert_one_line_error(proc, *fragments: str) -> str:
    """A CLI run that failed as bad input must: exit code 1, one line on stderr holding ``fragments``, no stdout."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def dataset_from_reference_json(path: Path):
    """A ``hades.Dataset`` built from one published result file (``reference/iclr2024/*.json``)."""
    import json

    import numpy as np

    import hades
    from hades.learn import Recipe
    from hades.policy import PolicySpec

    data = json.loads(Path(path).read_text())
    inner = data["inner"]
    discrete = "labels" in data
    recipe = Recipe(PolicySpec((inner["width"],) * inner["depth"], inner["activation"]),
                    "cross_entropy" if discrete else "gaussian_nll", inner["lr"], inner["steps"],
                    inner.get("max_grad_norm"))
    if discrete:  # fixed labels, in order; states without a label are unused
        actions = np.asarray(data["labels"], np.int32)
        states = np.asarray(data["states"], np.float32)[: len(actions)]
    else:
        actions = np.asarray(data["actions"], np.float32)
        states = np.asarray(data["states"], np.float32)
    constant = data["obs_normalization"] == "constant"
    return hades.Dataset(
        states, actions, data["env"], data["obs_normalization"],
        np.asarray(data["obs_mean"], np.float32) if constant else None,
        np.asarray(data["obs_var"], np.float32) if constant else None,
        info={"backend": data["backend"], "recipe": recipe.to_dict(), "license": "apache-2.0"},
    )


def run_in_threads(fn, count: int = 8) -> tuple[list, list]:
    """Call ``fn`` from ``count`` threads at once; return (results, exceptions) for the assertions."""
    import threading

    results, errors = [], []

    def worker():
        try:
            results.append(fn())
        except Exception as exc:  # reported by the caller's assertions
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors
