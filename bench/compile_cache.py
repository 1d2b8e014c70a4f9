"""What the persistent compilation cache saves: `hades train-from` run three times as fresh processes.

    python bench/compile_cache.py [--dataset hopper-4pairs] [--seeds 8] [--json]

Run 1 starts with an empty cache folder, run 2 finds the programs run 1 compiled, run 3 has the
cache turned off (``HADES_XLA_CACHE=off``). Prints each run's wall time and the compile and run
seconds that `hades train-from --json` reports, and checks the three give the same returns.
The goal is a second run under 10 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(argv: list[str], env: dict[str, str]) -> dict:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "hades", *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"hades {' '.join(argv)} failed: {result.stderr.strip().splitlines()[-1]}")
    report = json.loads(result.stdout)
    return {"wall_s": round(wall, 2), "compile_s": round(report["timings"]["compile_s"], 2),
            "run_s": round(report["timings"]["run_s"], 2), "returns": report["returns"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="hopper-4pairs")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    command = ["train-from", args.dataset, "--seeds", str(args.seeds), "--json"]
    with tempfile.TemporaryDirectory(prefix="hades-bench-cache-") as folder:
        env = {key: value for key, value in os.environ.items() if not key.startswith("JAX_")}
        env.update(HADES_XLA_CACHE=str(Path(folder) / "xla"), HADES_HOME=str(Path(folder) / "home"))
        rows = [("first run, empty cache", _run(command, env)), ("second run, cache filled", _run(command, env)),
                ("cache off", _run(command, dict(env, HADES_XLA_CACHE="off")))]
        entries = sum(1 for path in (Path(folder) / "xla").rglob("*") if path.is_file())
    same = all(row["returns"] == rows[0][1]["returns"] for _, row in rows)
    if args.json:
        print(json.dumps({"rows": [{"run": name, **row} for name, row in rows], "cache_entries": entries,
                          "same_returns": same}, indent=1))
        return
    print(f"`hades {' '.join(command)}`, cache entries after two runs: {entries}; same returns in all three: {same}\n")
    print("| run | wall s | compile s | run s |")
    print("|---|---:|---:|---:|")
    for name, row in rows:
        print(f"| {name} | {row['wall_s']:.1f} | {row['compile_s']:.1f} | {row['run_s']:.1f} |")


if __name__ == "__main__":
    main()
