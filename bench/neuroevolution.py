"""HaDES-F against neuroevolution at equal env-step budgets: the paper's first claim, measured here.

    python bench/neuroevolution.py                       # hopper and Breakout, 3 seeds each (resumable)
    python bench/neuroevolution.py --envs hopper --seeds 0 --generations 20
    python bench/neuroevolution.py --report              # the table of what is recorded

Both methods search with OpenES, the same population, the same policy (2x64; tanh for Brax, the
paper's relu for MinAtar), the same fitness rollouts per candidate (one init, 1 env x 1000 steps)
and the same number of generations, so they spend the same env steps: HaDES-F evolves the pairs a
fixed init is trained on (the inner training costs no env steps), neuroevolution the policy's weights.
Each keeps its own published noise and learning rate (HaDES: sigma 0.03, lr 0.05 on Brax, the
Breakout zoo run's sigma 0.1, lr 0.02; neuroevolution: sigma 0.03, lr 0.05). The final return is the
policy each method produces, under the standard protocol (4 envs x 1024 steps, sampled actions, 8
evaluation seeds): HaDES-F's fixed init trained on its pairs, neuroevolution's ES mean policy.
HaDES-F pairs are also scored from 8 fresh inits (they are tuned to one). Each run is a run folder
under --out with its checkpoint, so a stopped comparison resumes, and a larger --generations extends
the same runs (the table has a row per budget); results go to results.jsonl there. Search time is
the runner's clock summed over the generations of the budget (compiling and the final evaluation
left out); on a shared machine it includes time the run waited for the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "neuroevolution"
ENVS = {"hopper": {"pairs": 4, "sigma": 0.03, "es_lr": 0.05},
        "Breakout-MinAtar": {"pairs": 16, "sigma": 0.1, "es_lr": 0.02}}
METHODS = ("hades-f", "neuroevolution")


def configs(env: str, population: int, generations: int, seed: int) -> dict:
    """The two methods' configs for one env and seed, equal in everything the comparison holds fixed."""
    from hades.distillation import preset
    from hades.evaluate import EvalProtocol
    from hades.neuroevolution import params_preset
    from hades.policy import PolicySpec

    settings = ENVS[env]
    fitness = EvalProtocol(num_envs=1, num_steps=1000)
    hades_f = preset("cpu", env, settings["pairs"], method="hades-f", strategy="open_es", population_size=population,
                     num_generations=generations, num_inits=1, protocol=fitness, sigma=settings["sigma"],
                     es_lr=settings["es_lr"], fitness_shaping="centered_rank", normalization="running", seed=seed,
                     fixed_init_seed=seed)
    policy = PolicySpec((64, 64), hades_f.recipe.arch.activation)
    hades_f = dataclasses.replace(hades_f, recipe=dataclasses.replace(hades_f.recipe, arch=policy))
    params = params_preset(env, population_size=population, num_generations=generations, protocol=fitness,
                           recipe=dataclasses.replace(hades_f.recipe, arch=policy), normalization="running",
                           seed=seed)
    return {"hades-f": hades_f, "neuroevolution": params}


def run_one(env: str, method: str, seed: int, config, out: Path) -> dict:
    import hades
    from hades.checkpoint import checkpoint_file
    from hades.measure import hades_f_init
    from hades.trainfrom import fixed_init_evaluation

    resume = checkpoint_file(out).exists()
    start = time.perf_counter()
    if method == "hades-f":
        result = hades.distill(config, out, resume=resume)
        init_seed, legacy = hades_f_init(result.dataset)
        own = fixed_init_evaluation(result.dataset, init_seed, 8, legacy_prng=legacy)
        returns, fresh = own["returns"], result.evaluation["returns"]
    else:
        result = hades.neuroevolve(config, out, resume=resume)
        returns, fresh = result.evaluation["returns"], None
    return {"env": env, "method": method, "seed": seed, "population": config.population_size,
            "generations": result.generations, "env_steps": result.env_steps, "returns": returns,
            "mean": round(statistics.fmean(returns), 1), "fresh_init_returns": fresh,
            "fresh_init_mean": None if fresh is None else round(statistics.fmean(fresh), 1),
            "seconds": round(time.perf_counter() - start, 1), "resumed": resume}


def search_seconds(folder: Path, generations: int) -> float:
    """The run's search time up to ``generations``, from its fitness.csv (the runner's clock, per generation)."""
    import csv

    with open(folder / "fitness.csv", newline="") as handle:
        return sum(float(row["seconds"]) for row in csv.DictReader(handle) if int(row["generation"]) <= generations)


def report(rows: list[dict], out: Path) -> None:
    print("| env | method | generations | final return (8 eval seeds; mean over seeds) | per seed | "
          "HaDES-F pairs, fresh inits | env steps per run | search time per run |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    budgets = sorted({row["generations"] for row in rows})
    for env, generations, method in ((env, g, m) for env in ENVS for g in budgets for m in METHODS):
        group = sorted((row for row in rows if (row["env"], row["method"], row["generations"]) ==
                        (env, method, generations)), key=lambda r: r["seed"])
        if not group:
            continue
        means = [row["mean"] for row in group]
        search = [search_seconds(out / env / method / f"seed{row['seed']}", generations) for row in group]
        spread = f" ± {statistics.pstdev(means):.1f}" if len(means) > 1 else ""
        fresh = [row["fresh_init_mean"] for row in group if row["fresh_init_mean"] is not None]
        fresh_text = f"{statistics.fmean(fresh):.1f}" if fresh else "-"
        print(f"| {env} | {method} | {generations} | {statistics.fmean(means):.1f}{spread} ({len(group)} seeds) | "
              f"{', '.join(f'{m:.1f}' for m in means)} | {fresh_text} | {group[0]['env_steps']:,} | "
              f"{statistics.fmean(search):.0f} s |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", default=",".join(ENVS), help="comma-separated: hopper, Breakout-MinAtar")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--generations", type=int, default=60)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report", action="store_true", help="print the table of the recorded runs and stop")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    results = args.out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    if args.report:
        report(rows, args.out)
        return
    done = {(row["env"], row["method"], row["seed"], row["generations"]) for row in rows}
    envs = [env for env in args.envs.split(",") if env]
    unknown = [env for env in envs if env not in ENVS]
    if unknown:
        parser.error(f"unknown env {unknown[0]!r}: choose from {', '.join(ENVS)}")
    for env in envs:
        for seed in (int(text) for text in args.seeds.split(",")):
            for method, config in configs(env, args.population, args.generations, seed).items():
                if (env, method, seed, args.generations) in done:
                    continue
                row = run_one(env, method, seed, config, args.out / env / method / f"seed{seed}")
                args.out.mkdir(parents=True, exist_ok=True)
                with open(results, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
                rows.append(row)
                print(f"{env} {method} seed {seed}: {row['mean']:.1f} ({row['env_steps']:,} env steps, "
                      f"{row['seconds']:.0f} s)", flush=True)
    report(rows, args.out)


if __name__ == "__main__":
    main()
