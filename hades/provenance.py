"""Where a result came from: package versions, git commit, the exact command."""

from __future__ import annotations

import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

TRACKED_PACKAGES = ("hades-zoo", "jax", "jaxlib", "flax", "optax", "evosax", "brax", "mujoco", "gymnax",
                    "safetensors", "huggingface_hub")


def package_versions() -> dict[str, str]:
    found = {}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def git_commit() -> str | None:
    """The commit of the hades source tree, when it runs from a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def command_line() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("hades", "__main__.py"):
        argv[0] = "hades"
    return shlex.join(argv)


def device_record() -> dict:
    """What an evaluation ran on: jax's platform, its device kind and count, and the CPU's model.

    Returns are bit-for-bit reproducible on the same kind of machine only: another CPU (or a GPU)
    rounds the last bits of a rollout differently, and the physics grows the difference."""
    import platform

    import jax

    return {"platform": jax.default_backend(), "kind": jax.devices()[0].device_kind,
            "count": jax.device_count(), "cpu": _cpu_model() or platform.machine()}


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def provenance(seed: int | None = None, **extra) -> dict:
    record = {"versions": package_versions(), "git_commit": git_commit(), "command": command_line()}
    if seed is not None:
        record["seed"] = int(seed)
    record.update(extra)
    return record
