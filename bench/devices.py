"""The same distillation on 1 and on 2 devices, candidate by candidate: what is equal, what drifts.

    python bench/devices.py [--env hopper] [--pairs 4] [--population 32] [--arch 512,512:tanh]
                            [--inits 2] [--eval-envs 4] [--eval-steps 1024] [--inner-steps 200]
                            [--normalization constant] [--generations 1] [--seed 0]

In one process with 2 CPU devices, the generation program runs from the same seed unsharded (one
device) and with the population sharded over both, for ``--generations`` generations. For each
generation it prints whether the populations and the random keys are bit for bit the same, the
mean fitness of each, and how far the candidates' fitness apart: the median and largest absolute
difference and how many candidates agree within 1 return. Generation 1 scores the same candidates
on both; later generations also carry the first one's differences through the ES update.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill import build_config  # noqa: E402 - the same settings as the throughput bench


def run(config, devices: int, generations: int) -> dict:
    """Populations, fitness and final key of ``generations`` generations on ``devices`` devices."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec

    from hades.distillation import make_generation
    from hades.multihost import make_mesh, replicate
    from hades.obsstats import starting_obs_stats

    seen = {}
    obs_mean, obs_var = starting_obs_stats(config)
    mesh = make_mesh(config, devices)
    init_state, run_chunk, _ = make_generation(
        config, jnp.asarray(obs_mean), jnp.asarray(obs_var), mesh,
        observe=lambda generation, population, fitness: seen.setdefault(
            int(generation), (jax.tree.map(np.asarray, population), np.asarray(fitness))))
    state = init_state(jax.random.PRNGKey(config.seed))
    if mesh is not None:
        replicated = NamedSharding(mesh, PartitionSpec())
        state = replicate(jax.tree.map(np.asarray, state), replicated)
        run_chunk = jax.jit(run_chunk, static_argnums=1, out_shardings=replicated)
    state, _ = run_chunk(state, generations)
    jax.effects_barrier()
    order = sorted(seen)
    return {"populations": [seen[index][0] for index in order], "fitness": [seen[index][1] for index in order],
            "key": np.asarray(state["key"])}


def compare(one: dict, two: dict) -> list[dict]:
    rows = []
    for generation, (pop_1, pop_2, fit_1, fit_2) in enumerate(
            zip(one["populations"], two["populations"], one["fitness"], two["fitness"]), start=1):
        same = all(np.array_equal(pop_1[name], pop_2[name]) for name in pop_1)
        gap = np.abs(fit_1 - fit_2)
        rows.append({"generation": generation, "same_population": same, "mean_1": float(fit_1.mean()),
                     "mean_2": float(fit_2.mean()), "median_gap": float(np.median(gap)), "max_gap": float(gap.max()),
                     "within_1": int((gap <= 1.0).sum()), "candidates": int(gap.size),
                     "worst": (float(fit_1[gap.argmax()]), float(fit_2[gap.argmax()]))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--arch", default="512,512:tanh")
    parser.add_argument("--inits", type=int, default=2)
    parser.add_argument("--eval-envs", type=int, default=4)
    parser.add_argument("--eval-steps", type=int, default=1024)
    parser.add_argument("--inner-steps", type=int, default=None, help="default: the paper's for the env")
    parser.add_argument("--normalization", default="constant")
    parser.add_argument("--generations", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    flags = [flag for flag in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in flag]
    os.environ["XLA_FLAGS"] = " ".join([*flags, "--xla_force_host_platform_device_count=2"])
    args.repeats = 0  # build_config's chunks: exactly --generations generations
    config = build_config(args)
    one, two = run(config, 1, args.generations), run(config, 2, args.generations)
    print(f"{config.env}, {config.pairs} pairs, population {config.population_size}, {args.arch}, {config.num_inits} "
          f"init(s) x {config.protocol.num_envs} env(s) x {config.protocol.num_steps} steps, {config.recipe.steps} "
          f"inner steps, {config.normalization} normalisation, seed {config.seed}")
    print(f"final random keys bit for bit the same on 1 and 2 devices: {np.array_equal(one['key'], two['key'])}")
    print("| generation | same candidates | mean fitness, 1 device | mean fitness, 2 devices | median gap | "
          "largest gap (1 vs 2 device) | candidates within 1 |")
    print("|---|---|---|---|---|---|---|")
    for row in compare(one, two):
        print(f"| {row['generation']} | {'yes' if row['same_population'] else 'no'} | {row['mean_1']:.2f} | "
              f"{row['mean_2']:.2f} | {row['median_gap']:.2f} | {row['max_gap']:.1f} ({row['worst'][0]:.1f} vs "
              f"{row['worst'][1]:.1f}) | {row['within_1']}/{row['candidates']} |")


if __name__ == "__main__":
    main()
