"""Fitness history of a distillation run, read from its checkpoint (the run need not be finished).

    python bench/zoo-runs/history.py RUN_DIR [--every 100]

Prints, for each block of ``--every`` generations, the mean, median and maximum of the population's
mean fitness, and the median seconds per generation the runner recorded. The median shows the
typical generation; the mean drops when some generations draw inits that every candidate fails with.
Runs with ``--validate-every`` also get the ES mean's validation scores (fresh inits) in each block
and the generation the run keeps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hades.errors import CheckpointError
from hades.checkpoint import read_history, read_validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    try:
        history = read_history(args.run_dir)
        validation = read_validation(args.run_dir)
    except CheckpointError as exc:
        raise SystemExit(str(exc)) from None
    if not history:
        raise SystemExit(f"the checkpoint in {args.run_dir} holds no generations yet")
    means = np.array([row["mean"] for row in history])
    seconds = np.array([row["seconds"] for row in history])
    print(f"{args.run_dir}: {len(history)} generations, {history[-1]['env_steps']:,} env steps")
    scored = validation["history"] if validation else []
    header = f"{'generations':>11}  {'mean':>7}  {'median':>7}  {'max':>7}  {'s/gen':>6}"
    print(header + (f"  {'validated (mean, best)':>22}" if scored else ""))
    for first in range(0, len(history), args.every):
        block = slice(first, first + args.every)
        last = min(first + args.every, len(history))
        line = (f"{first + 1:>5}-{last:<5}  {means[block].mean():7.1f}  "
                f"{np.median(means[block]):7.1f}  {means[block].max():7.1f}  {np.median(seconds[block]):6.2f}")
        inside = [row["mean"] for row in scored if first < row["generation"] <= last]
        if inside:
            line += f"  {np.mean(inside):10.1f}  {max(inside):10.1f}"
        print(line)
    if validation and validation.get("best"):
        best, settings = validation["best"], validation["settings"]
        print(f"kept: the ES mean of generation {best['generation']}, {best['mean']:.1f} ± {best['std']:.1f} over "
              f"{settings['seeds']} fresh inits (seeds from {settings['first_seed']}), best of {len(scored)} validations")


if __name__ == "__main__":
    main()
