"""How well a dataset trains policies of other architectures than the one it was distilled for.

    python bench/architectures.py DATASET [--seeds 8] [--envs 4] [--eval-steps 1024] [--arch SPEC ...]

DATASET is anything ``hades train-from`` accepts (a dataset folder, a ``.safetensors`` file, a
catalogue name) or one of the published result files (``reference/iclr2024/*.json``: fields
``env``, ``backend``, ``obs_normalization``, ``obs_mean``/``obs_var``, ``inner``, ``states``,
``actions``). For every architecture (default 2x64 relu, 2x256 tanh, 2x512 tanh, 3x256 relu), it
trains fresh policies with the dataset's recipe (only the architecture changes) for each seed, evaluates
them under the protocol (default: the standard one, 4 envs x 1024 steps, sampled actions) and prints
a markdown table: mean, std and per-seed returns.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
from pathlib import Path

DEFAULT_ARCHS = ("2x64:relu", "2x256:tanh", "2x512:tanh", "3x256:relu")


def dataset_from_result_json(path: Path):
    """A ``hades.Dataset`` from one published result file (continuous-action envs)."""
    import numpy as np

    import hades
    from hades.learn import Recipe
    from hades.policy import PolicySpec

    data = json.loads(Path(path).read_text())
    if "actions" not in data:
        raise SystemExit(f"{path}: no 'actions' field; only the Brax result files are supported here")
    inner = data["inner"]
    recipe = Recipe(PolicySpec((int(inner["width"]),) * int(inner["depth"]), inner["activation"]), "gaussian_nll",
                    float(inner["lr"]), int(inner["steps"]), inner.get("max_grad_norm"))
    normalization = data.get("obs_normalization", "none")
    stats = {}
    if normalization == "constant":
        stats = {"obs_mean": np.asarray(data["obs_mean"], np.float32), "obs_var": np.asarray(data["obs_var"], np.float32)}
    return hades.Dataset(np.asarray(data["states"], np.float32), np.asarray(data["actions"], np.float32), data["env"],
                         normalization, info={"backend": data.get("backend"), "recipe": recipe.to_dict(),
                                              "name": Path(path).stem}, **stats)


def load(identifier: str):
    if identifier.endswith(".json"):
        return dataset_from_result_json(Path(identifier))
    from hades.registry import open_dataset

    return open_dataset(identifier)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="dataset folder, .safetensors file, catalogue name, or a reference .json")
    parser.add_argument("--arch", action="append", dest="archs",
                        help=f"an architecture to try; repeat for several (default {', '.join(DEFAULT_ARCHS)})")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--eval-steps", type=int, default=1024)
    parser.add_argument("--greedy", action="store_true")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import jax

    from hades.errors import HadesError
    from hades.evaluate import EvalProtocol
    from hades.policy import format_arch, parse_arch
    from hades.trainfrom import train_from

    try:
        dataset = load(args.dataset)
        archs = [parse_arch(spec) for spec in (args.archs or DEFAULT_ARCHS)]
    except HadesError as exc:
        raise SystemExit(f"error: {exc}") from None
    protocol = EvalProtocol(args.envs, args.eval_steps, args.greedy)
    base = dataset.recipe
    results = []
    for arch in archs:
        recipe = dataclasses.replace(base, arch=arch)
        result = train_from(dataset, recipe, protocol, num_seeds=args.seeds)
        results.append(result)
        print(f"  {format_arch(arch)}: {result.mean:.1f} ± {result.std:.1f} "
              f"(compile {result.timings['compile_s']:.0f} s, run {result.timings['run_s']:.0f} s)",
              file=sys.stderr, flush=True)

    print(f"Dataset `{args.dataset}`: {dataset.env}, {dataset.pairs} pairs, {dataset.normalization} normalisation; "
          f"recipe {base.loss}, lr {base.lr}, {base.steps} steps, clip {base.max_grad_norm} "
          f"(distilled for {format_arch(base.arch)}); {args.seeds} seeds; eval {protocol.num_envs} envs x "
          f"{protocol.num_steps} steps, {'greedy' if protocol.greedy else 'sampled'} actions.")
    print()
    print("| arch | mean | std | per-seed returns | compile s | run s |")
    print("|---|---:|---:|---|---:|---:|")
    for arch, result in zip(archs, results):
        returns = ", ".join(f"{r:.0f}" for r in result.returns)
        print(f"| {format_arch(arch)} | {result.mean:.1f} | {result.std:.1f} | {returns} | "
              f"{result.timings['compile_s']:.0f} | {result.timings['run_s']:.0f} |")
    print()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{date}; {os.cpu_count()} CPUs; jax {jax.__version__} on {', '.join(str(d) for d in jax.devices())}")
    if args.json:
        print(json.dumps({"dataset": args.dataset, "results": [r.to_dict() for r in results]}, indent=2))


if __name__ == "__main__":
    main()
