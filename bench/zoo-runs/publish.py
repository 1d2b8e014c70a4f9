"""Publish a finished distillation run into the bundled catalogue (``registry/``).

    python bench/zoo-runs/publish.py RUN_DIR --name hopper-4pairs --version 1.0 --note "..."
    python bench/zoo-runs/publish.py registry/hopper-4pairs/1.0 --name hopper-4pairs --version 1.1 --arch 256,256:tanh --note "..."

Re-measures architecture transfer (8 fresh inits per architecture, standard protocol), writes the
card with it, copies the dataset folder (with fitness.csv/png, states.png and validation.csv) to
``registry/NAME/VERSION`` (earlier versions stay pullable) and records name, version, sha256 and the measured return in
``registry/index.json``. With ``--arch`` the card's recipe (the default of ``train-from`` and the
recipe of the standard evaluation) gets another inner policy; the pairs stay as they were evolved
and the standard evaluation is measured again with the new recipe. With ``--freeze-stats`` a
running-normalised dataset gets constant statistics measured from its own policies' rollouts
(``hades.trainfrom.freeze_normalization``; 16 fresh inits, seeds 2000000-2000015), and is measured
again too. Every figure it writes is printed here too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHS = ("2x64:relu", "2x256:tanh", "2x512:tanh", "3x256:relu")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", default="1.0")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--note", default="")
    parser.add_argument("--arch", default=None, help="another card recipe architecture, e.g. 256,256:tanh")
    parser.add_argument("--freeze-stats", action="store_true",
                        help="switch running normalisation to constant statistics measured from the dataset's policies")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    from hades.dataset import Dataset
    from hades.evaluate import EvalProtocol
    from hades.policy import format_arch, parse_arch
    from hades.runner import final_evaluation
    from hades.trainfrom import freeze_normalization, train_from

    dataset = Dataset.load(args.run_dir)
    evaluation = dict(dataset.info.get("evaluation") or {})
    if not evaluation:
        raise SystemExit(f"{args.run_dir} has no final evaluation; finish the run with --final-seeds first")
    if args.arch:
        evolved_for = dataset.recipe
        recipe = dataclasses.replace(evolved_for, arch=parse_arch(args.arch))
        info = dataset.derived_info()
        info["recipe"] = recipe.to_dict()
        info["recipe_changed"] = {"evolved_for": evolved_for.to_dict(), "from_sha256": dataset.sha256}
        dataset = dataset.replace(info=info)
        print(f"card recipe {format_arch(recipe.arch)} (evolved for {format_arch(evolved_for.arch)})", flush=True)
    if args.freeze_stats:
        dataset = freeze_normalization(dataset)
        mean = ", ".join(f"{x:.3f}" for x in dataset.obs_mean)
        var = ", ".join(f"{x:.3f}" for x in dataset.obs_var)
        print(f"constant statistics measured: obs_mean [{mean}], obs_var [{var}]", flush=True)
    if args.arch or args.freeze_stats:
        evaluation = final_evaluation(dataset, args.seeds, EvalProtocol(**evaluation["protocol"]))
        print(f"standard evaluation, {format_arch(dataset.recipe.arch)} {dataset.normalization} normalisation: "
              f"{evaluation['mean']:.1f} ± {evaluation['std']:.1f}", flush=True)
    rows = []
    for spec in ARCHS:
        recipe = dataclasses.replace(dataset.recipe, arch=parse_arch(spec))
        result = train_from(dataset, recipe, num_seeds=args.seeds)
        rows.append({"arch": format_arch(recipe.arch), "mean": round(result.mean, 1), "std": round(result.std, 1),
                     "returns": [round(float(r), 1) for r in result.returns]})
        print(f"{rows[-1]['arch']}: {result.mean:.1f} ± {result.std:.1f}", flush=True)
    evaluation["architectures"] = rows
    info = {**dataset.info, "name": args.name, "catalogue_name": args.name, "evaluation": evaluation}
    if args.note:
        info["description"] = args.note
    dataset = dataset.replace(info=info)
    extra = {name: args.run_dir / name for name in ("fitness.csv", "fitness.png", "states.png", "validation.csv")
             if (args.run_dir / name).is_file()}
    target = ROOT / "registry" / args.name / args.version
    if target.exists():
        raise SystemExit(f"{target} exists: published versions are immutable, pick another --version")
    dataset.save(target, parquet=True, extra_files=extra)
    sha256 = Dataset.load(target).sha256
    index_path = ROOT / "registry" / "index.json"
    index = [entry for entry in json.loads(index_path.read_text())
             if (entry["name"], entry["version"]) != (args.name, args.version)]
    protocol = evaluation["protocol"]
    index.append({
        "name": args.name, "version": args.version, "sha256": sha256, "env": dataset.env, "pairs": dataset.pairs,
        "return": {"mean": evaluation["mean"], "std": evaluation["std"],
                   "protocol": f"{len(evaluation['returns'])} inits x {protocol['num_envs']} envs x "
                               f"{protocol['num_steps']} steps, {'greedy' if protocol['greedy'] else 'sampled'} actions"},
        "license": info.get("license", "apache-2.0"), "path": f"{args.name}/{args.version}",
    })
    index_path.write_text(json.dumps(sorted(index, key=lambda e: (e["name"], e["version"])), indent=1) + "\n")
    print(f"{args.name}@{args.version}: {dataset.env}, {dataset.pairs} pairs, return {evaluation['mean']} ± "
          f"{evaluation['std']}, sha256 {sha256}")


if __name__ == "__main__":
    main()
