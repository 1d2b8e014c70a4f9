"""Convert and publish the datasets of Behaviour Distillation (ICLR 2024) into the catalogue's iclr2024 namespace.

    python bench/iclr2024.py ../shared/reference/iclr2024-results            # publish what is missing (resumable)
    python bench/iclr2024.py ../shared/reference/iclr2024-results --limit 5  # at most 5 entries this time
    python bench/iclr2024.py --table                                          # the README tables, from the cards

Each entry is measured under the standard protocol (8 fresh inits, the card's recipe, 4 envs x
1024 steps; greedy actions for runs whose fitness used greedy actions), HaDES-F ones also from their
own fixed init, and the lowest seed of each (env, pairs, method) on four architectures. The MNIST and
FashionMNIST runs are scored by the test accuracy of 8 fresh classifiers (the paper's CNN), or published
unmeasured where their image set is not on this machine. What each
publish printed goes to bench/iclr2024.jsonl as well. Stop it at any time; the next start skips what
the catalogue holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "bench" / "iclr2024.jsonl"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", type=Path, help="the folder of the original result files")
    parser.add_argument("--catalogue", type=Path, default=ROOT / "registry")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--only", default=None, help="only runs whose path contains this text")
    parser.add_argument("--table", action="store_true", help="print the README tables from the published cards")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.table:
        print_tables(args.catalogue)
        return
    if args.results is None:
        parser.error("give the results folder, or --table")
    from hades.iclr2024 import publish_all

    def log(row: dict) -> None:
        with open(LOG, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        if "error" in row:
            print(f"{row['name']}: not converted ({row['error']})", flush=True)
            return
        if row.get("metric") == "test_accuracy":
            scored = (f"test accuracy {row['mean']:.1%} ± {row['std']:.1%}" if row["measured"]
                      else "not measured (the image set is not on this machine)")
            print(f"{row['name']}: recorded train accuracy {row['recorded_train_accuracy']:.1%}, {scored} "
                  f"({row['seconds']:.0f} s)", flush=True)
            return
        own = f", own init {row['own_init_mean']:.1f}" if row.get("own_init_mean") is not None else ""
        recorded = f"{row['recorded']:.1f}" if row.get("recorded") is not None else "-"
        print(f"{row['name']}: recorded {recorded}, measured {row['mean']:.1f} ± {row['std']:.1f}{own} "
              f"({row['seconds']:.0f} s)", flush=True)

    only = (lambda run: args.only in run.relative) if args.only else None
    publish_all(args.results, args.catalogue, log=log, only=only, limit=args.limit)


def print_tables(catalogue: Path) -> None:
    from hades.dataset import Dataset
    from hades.registry import load_catalogue, select_entries

    entries = select_entries(load_catalogue(catalogue), namespace="iclr2024")
    print(f"{len(entries)} entries in iclr2024/\n")
    images = [entry for entry in entries if entry.evaluation is None or entry.evaluation.metric == "test_accuracy"]
    entries = [entry for entry in entries if entry not in images]
    print("| entry | env | pairs | method | recorded | ours (8 fresh inits) | own init (HaDES-F) | ours / recorded (own init for HaDES-F) |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    transfer = []
    for entry in sorted(entries, key=lambda e: e.name):
        info = Dataset.load(entry.folder, entry.sha256).info
        evaluation, comparison = info["evaluation"], info.get("paper_comparison") or {}
        own = evaluation.get("own_init")
        ratio = comparison.get("ratio")
        flag = " (below by >10%)" if comparison.get("below_recorded_by_over_10_percent") else ""
        print(f"| `{entry.name.split('/', 1)[1]}` | {entry.env} | {entry.pairs} | {entry.method} | "
              f"{comparison.get('recorded_fitness', float('nan')):.1f} | {evaluation['mean']:.1f} ± {evaluation['std']:.1f} | "
              f"{'-' if not own else format(own['mean'], '.1f') + ' ± ' + format(own['std'], '.1f')} | "
              f"{'-' if ratio is None else format(100 * ratio, '.0f') + '%'}{flag} |")
        if evaluation.get("architectures"):
            transfer.append((entry, evaluation["architectures"]))
    if transfer:
        archs = [row["arch"] for row in transfer[0][1]]
        print("\n| entry | " + " | ".join(archs) + " |")
        print("|---|" + "---:|" * len(archs))
        for entry, rows in transfer:
            cells = {row["arch"]: f"{row['mean']:.1f} ± {row['std']:.1f}" for row in rows}
            print(f"| `{entry.name.split('/', 1)[1]}` | " + " | ".join(cells.get(arch, "-") for arch in archs) + " |")
    if images:
        print("\n| entry | images | recorded train accuracy | ours: test accuracy (8 fresh classifiers) |")
        print("|---|---:|---:|---:|")
        for entry in sorted(images, key=lambda e: e.name):
            info = Dataset.load(entry.folder, entry.sha256).info
            recorded = (info.get("method") or {}).get("final_train_accuracy")
            ours = "not measured: the image set is not on this machine" if entry.evaluation is None else str(entry.evaluation)
            print(f"| `{entry.name.split('/', 1)[1]}` | {entry.pairs} | "
                  f"{'-' if recorded is None else format(recorded, '.1%')} | {ours} |")


if __name__ == "__main__":
    main()
