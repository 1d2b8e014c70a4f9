"""Fitness history of a distillation run, read from its checkpoint (the run need not be finished).

    python bench/zoo-runs/history.py RUN_DIR [--every 100]

Prints, for each block of ``--every`` generations, the mean, median and maximum of the population's
mean fitness, and the median seconds per generation the runner recorded. The median shows the
typical generation; the mean drops when some generations draw inits that every candidate fails with.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hades.errors import CheckpointError
from hades.runner import read_checkpoint_history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    try:
        history = read_checkpoint_history(args.run_dir)
    except CheckpointError as exc:
        raise SystemExit(str(exc)) from None
    if not history:
        raise SystemExit(f"the checkpoint in {args.run_dir} holds no generations yet")
    means = np.array([row["mean"] for row in history])
    seconds = np.array([row["seconds"] for row in history])
    print(f"{args.run_dir}: {len(history)} generations, {history[-1]['env_steps']:,} env steps")
    print(f"{'generations':>11}  {'mean':>7}  {'median':>7}  {'max':>7}  {'s/gen':>6}")
    for first in range(0, len(history), args.every):
        block = slice(first, first + args.every)
        print(f"{first + 1:>5}-{min(first + args.every, len(history)):<5}  {means[block].mean():7.1f}  "
              f"{np.median(means[block]):7.1f}  {means[block].max():7.1f}  {np.median(seconds[block]):6.2f}")


if __name__ == "__main__":
    main()
