"""Score the published supervised datasets of Behaviour Distillation (ICLR 2024) under our pipeline.

    python bench/iclr2024_images.py ../shared/reference/iclr2024-results                 # FashionMNIST D10
    python bench/iclr2024_images.py ../shared/reference/iclr2024-results --set MNIST --seeds 16

Each ``mnist/SET/D10/seedN/data_final.pkl`` is converted (``hades convert``, nothing written) and
scored: the test-set accuracy of fresh inits (seeds 0..N-1) trained with the card's recipe, the
paper's CNN. One JSON line per run: our mean and std, and what the run itself recorded (the last
generation's mean training loss and training accuracy). The image set must be on this machine
(FashionMNIST: the Debian package dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the folder of the original result files")
    parser.add_argument("--set", default="FashionMNIST", choices=("FashionMNIST", "MNIST"))
    parser.add_argument("--seeds", type=int, default=8, help="fresh inits per dataset")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from hades.convert import convert_pickle
    from hades.imagetask import evaluate_test_accuracy

    from hades.errors import HadesError

    for pickle in sorted((args.results / "mnist" / args.set).glob("D*/seed*/data_final.pkl")):
        dataset = convert_pickle(pickle).dataset
        start = time.perf_counter()
        try:
            evaluation = evaluate_test_accuracy(dataset, args.seeds)
        except HadesError as exc:
            sys.exit(f"error: {exc}")
        method = dataset.info["method"]
        print(json.dumps({"run": method["run"], "test_accuracy_mean": evaluation["mean"],
                          "test_accuracy_std": evaluation["std"], "accuracies": evaluation["accuracies"],
                          "recorded_final_fitness": method["final_fitness"],
                          "recorded_train_accuracy": method["final_train_accuracy"],
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
