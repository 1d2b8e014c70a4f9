"""Start-up cost of the everyday commands, run as fresh processes the way a user runs them.

    python bench/cli.py [--repeats 7] [--json]

Builds a temporary catalogue (``HADES_REGISTRY``) and store (``HADES_HOME``) holding one hopper
dataset, pulls it once from a directory hub so the store has it, then times each command several
times and prints the median and the fastest wall time. The goal is under 0.3 s for ``list`` and a
cached ``pull``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _build(root: Path) -> dict[str, str]:
    import numpy as np

    import hades
    from hades import hub

    rng = np.random.default_rng(0)
    dataset = hades.Dataset(rng.normal(size=(4, 11)).astype("float32"), rng.normal(size=(4, 3)).astype("float32"),
                            "hopper", info={"license": "apache-2.0"})
    catalogue = root / "registry"
    dataset.save(catalogue / "hopper-bench")
    entry = {"name": "hopper-bench", "version": "1", "sha256": dataset.sha256, "env": "hopper", "pairs": 4,
             "return": None, "license": "apache-2.0", "path": "hopper-bench"}
    (catalogue / "index.json").write_text(json.dumps([entry]))
    env = dict(os.environ, HADES_REGISTRY=str(catalogue), HADES_HOME=str(root / "home"), HF_HUB_OFFLINE="1")
    os.environ.update(HADES_HOME=env["HADES_HOME"], HADES_REGISTRY=env["HADES_REGISTRY"])
    pushed = hub.push(catalogue / "hopper-bench", f"file://{root}/hub/bench/hopper")
    hub.pull(pushed.id)
    env["BENCH_STORE_ID"] = pushed.id
    return env


def _time(argv: list[str], env: dict[str, str], repeats: int) -> list[float]:
    command = [sys.executable, "-m", "hades", *argv]
    subprocess.run(command, env=env, capture_output=True, check=True)  # warm the OS file cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hades-bench-") as tmp:
        env = _build(Path(tmp))
        cases = [
            ("python -c pass (floor)", None),
            ("hades --help", ["--help"]),
            ("hades list", ["list"]),
            ("hades pull hopper-bench (bundled)", ["pull", "hopper-bench"]),
            ("hades pull file://…@commit (stored)", ["pull", env["BENCH_STORE_ID"]]),
            ("hades show hopper-bench", ["show", "hopper-bench"]),
            ("hades verify hopper-bench", ["verify", "hopper-bench"]),
        ]
        rows = []
        for label, argv in cases:
            if argv is None:
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    subprocess.run([sys.executable, "-c", "pass"], check=True)
                    times.append(time.perf_counter() - start)
            else:
                times = _time(argv, env, args.repeats)
            rows.append({"command": label, "median_s": statistics.median(times), "min_s": min(times),
                         "repeats": args.repeats})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    width = max(len(row["command"]) for row in rows)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{'command':<{width}}  {'median s':>9}  {'min s':>7}   "
          f"({args.repeats} runs each, {os.cpu_count()} CPUs, load average {load})")
    for row in rows:
        print(f"{row['command']:<{width}}  {row['median_s']:>9.3f}  {row['min_s']:>7.3f}")


if __name__ == "__main__":
    main()
