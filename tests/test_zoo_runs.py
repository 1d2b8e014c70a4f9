"""The research runs behind the catalogue (bench/zoo-runs/): their committed checkpoints resume with the
commands their README gives, and `hades history` reads them.

These checkpoints are research material, not part of the suite's contract: the tests run only when
asked for (`python -m pytest -m zoo`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import FASHION_DIR, run_cli

from hades.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, load_checkpoint, read_history

pytestmark = pytest.mark.zoo
ZOO = Path(__file__).parents[1] / "bench" / "zoo-runs"


def _zoo_run_commands() -> list[tuple[str, list[str]]]:
    """(folder, hades arguments) for every run in bench/zoo-runs/README.md's table."""
    import shlex

    readme = Path(__file__).parents[1] / "bench" / "zoo-runs" / "README.md"
    rows = []
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[1].startswith("hades distill "):
            # The first command of the cell: later ones ("then the same with ...") only extend it.
            rows.append((cells[0], shlex.split(cells[1].split("`")[0])[1:]))
    return rows


@pytest.mark.parametrize("folder, args", _zoo_run_commands(), ids=[row[0] for row in _zoo_run_commands()])
def test_every_zoo_checkpoint_resumes_with_its_documented_command(folder, args, hades_env):
    """Each committed run in bench/zoo-runs/ continues with the command its README gives (plus --resume)."""
    root = Path(__file__).parents[1]
    if args[1] == "fashion-mnist" and not FASHION_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST is not installed ({FASHION_DIR}: Debian package dataset-fashion-mnist)")
    assert args[args.index("--out") + 1] == f"bench/zoo-runs/{folder}"
    result = run_cli(*args, "--dry-run", "--json", env=hades_env, cwd=root)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["checkpoint"]["matches"] and plan["checkpoint"]["generations"] >= 10
    # A run that reached its documented --generations is "finish"; raising them resumes it.
    assert plan["action"] in {"resume", "finish"}
    longer = list(args)
    longer[longer.index("--generations") + 1] = str(plan["checkpoint"]["generations"] + 10)
    result = run_cli(*longer, "--resume", "--dry-run", "--json", env=hades_env, cwd=root)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["action"] == "resume"


def test_the_zoo_readme_lists_every_committed_run():
    committed = {path.parent.parent.name for path in (Path(__file__).parents[1] / "bench" / "zoo-runs").glob("*/checkpoint/state.msgpack")}
    assert committed and committed == {folder for folder, _ in _zoo_run_commands()}


def test_hades_history_covers_every_generation_of_a_committed_run(hades_env):
    root = Path(__file__).parents[1]
    run_dir = root / "bench" / "zoo-runs" / "walker2d-4pairs"
    history = read_history(run_dir)
    assert len(history) >= 10 and all({"mean", "max", "seconds", "env_steps"} <= set(row) for row in history)
    result = run_cli("history", run_dir, "--every", "250", env=hades_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"{len(history)} generations, {history[-1]['env_steps']:,} env steps" in lines[0]
    blocks = [line.split() for line in lines[2:] if not line.startswith("kept:")]
    assert len(blocks) == math.ceil(len(history) / 250)
    assert blocks[0][0] == "1-250" and float(blocks[0][1]) == pytest.approx(np.mean([row["mean"] for row in history[:250]]), abs=0.05)
    assert blocks[-1][0].endswith(f"-{len(history)}")


@pytest.mark.parametrize("folder", sorted(path.parent.parent.name for path in ZOO.glob("*/checkpoint/state.msgpack")))
def test_every_committed_zoo_checkpoint_reads(folder):
    """Research runs checkpointed before the format marker existed read as version 1, like newer ones."""
    checkpoint = load_checkpoint(ZOO / folder)
    assert checkpoint.version == CHECKPOINT_VERSION
    assert checkpoint.payload.get("format", CHECKPOINT_FORMAT) == CHECKPOINT_FORMAT
    history = checkpoint.history()
    assert len(history) >= 10 and history[-1]["generation"] == len(history)
    mean, var = checkpoint.obs_stats()
    assert mean.shape == var.shape and mean.ndim == 1
    record = checkpoint.validation()
    if record is not None and record.get("best"):
        assert set(checkpoint.best_arrays()) >= {"states"}
