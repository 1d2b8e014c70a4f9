"""Inner-loop training inside `hades distill` on CPU: all candidates vmapped at once vs cache-sized batches.

    python bench/train_batch.py [--env hopper] [--pairs 4] [--population 32] [--inits 1]
                                [--archs 64,64:tanh,256,256:tanh,...] [--batches all,auto,1] [--repeats 3] [--json]

One process, one CPU device (one core), the whole fitness function of one device's share of the
population (train every candidate's policies, then roll them out for --eval-steps), jitted once per
setting and timed --repeats times; the table shows the fastest repeat and the speed-up against
training all candidates at once (`all`, plain vmap). `auto` is what `hades distill` picks
(hades.distillation.default_train_batch: about 262k policy parameters per batch; a batch of 1 runs
unbatched, see below). The settings run side by side in one process, so their ratios are comparable
even on a busy machine; absolute seconds are not.

``--loops`` times the inner training alone (the same recipe and 200 steps, one candidate's inits
after another within each candidate) four ways: ``lax.map`` with no batch (one candidate after
another, no vmap), ``lax.map`` with ``batch_size=1`` (vmapped over a batch of one), ``batch_size=2``
and one vmap over all candidates: why hades runs batches of one unbatched.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--population", type=int, default=32, help="candidates on the device")
    parser.add_argument("--inits", type=int, default=1)
    parser.add_argument("--eval-steps", type=int, default=100, help="short rollouts, so training dominates")
    parser.add_argument("--archs", default="64,64:tanh;256,256:tanh;512,512:tanh", help="';'-separated")
    parser.add_argument("--batches", default="all,auto,1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loops", action="store_true", help="time the inner training's loop forms instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.loops:
        time_loops(args)
        return

    from hades.multihost import configure_devices

    configure_devices(1)
    import jax
    import numpy as np

    from hades.distillation import default_train_batch, make_fitness, policy_param_count, preset, solution_layout
    from hades.envs import get_env_spec
    from hades.evaluate import EvalProtocol
    from hades.policy import parse_arch

    rows = []
    for arch in args.archs.split(";"):
        base = preset("cpu", args.env, args.pairs, population_size=args.population, num_inits=args.inits,
                      protocol=EvalProtocol(1, args.eval_steps))
        config = dataclasses.replace(base, recipe=dataclasses.replace(base.recipe, arch=parse_arch(arch)))
        rng = np.random.default_rng(0)
        population = {name: rng.normal(size=(args.population, *shape)).astype(np.float32)
                      for name, shape in solution_layout(config).items()}
        init_keys = jax.random.split(jax.random.PRNGKey(1), args.inits)
        eval_keys = jax.random.split(jax.random.PRNGKey(2), args.inits)
        obs_dim = get_env_spec(config.env).obs_dim
        obs_mean, obs_var = np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)
        first = None
        for label in args.batches.split(","):
            batch = None if label == "all" else default_train_batch(config, "cpu") if label == "auto" else int(label)
            fitness = jax.jit(make_fitness(config, obs_mean, obs_var, batch))
            start = time.perf_counter()
            jax.block_until_ready(fitness(population, init_keys, eval_keys))
            compile_s = time.perf_counter() - start
            timings = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                jax.block_until_ready(fitness(population, init_keys, eval_keys))
                timings.append(time.perf_counter() - start)
            seconds = min(timings)
            first = first or seconds
            rows.append({"arch": arch, "policy_params": policy_param_count(config), "train_batch": label,
                         "batch_size": batch or args.population, "seconds": round(seconds, 4),
                         "repeats": [round(t, 4) for t in timings], "compile_s": round(compile_s, 1),
                         "speedup_vs_first": round(first / seconds, 2)})
            print(json.dumps(rows[-1]) if args.json else "", end="\n" if args.json else "", flush=True)
    if args.json:
        return
    print(f"{args.env}, {args.pairs} pairs, {args.population} candidates x {args.inits} init(s) on 1 CPU device, "
          f"rollouts of {args.eval_steps} steps, best of {args.repeats}; "
          f"{datetime.date.today()}, {os.cpu_count()} CPUs, {platform.machine()}, load avg "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    header = f"{'arch':<16} {'params':>7}  {'train batch':>11}  {'s':>8}  {'speed-up':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        shown = row["train_batch"] if row["train_batch"] != "auto" else f"auto={row['batch_size']}"
        print(f"{row['arch']:<16} {row['policy_params']:>7}  {shown:>11}  {row['seconds']:>8.3f}  "
              f"{row['speedup_vs_first']:>7.2f}x")


LOOPS = ("unbatched", "batch_size=1", "batch_size=2", "vmap all")


def time_loops(args) -> None:
    """The inner training of ``--population`` candidates x ``--inits`` inits in each loop form of LOOPS."""
    from hades.multihost import configure_devices

    configure_devices(1)
    import jax

    from hades.envs import get_env_spec
    from hades.learn import make_train, paper_recipe
    from hades.policy import parse_arch

    spec = get_env_spec(args.env)
    key_s, key_t, key_i = jax.random.split(jax.random.PRNGKey(0), 3)
    states = jax.random.normal(key_s, (args.population, args.pairs, spec.obs_dim))
    targets = jax.random.uniform(key_t, (args.population, args.pairs, spec.action_dim), minval=-1, maxval=1)
    init_keys = jax.random.split(key_i, args.inits)
    print(f"{args.env}, {args.pairs} pairs, inner training of {args.population} candidates x {args.inits} init(s), "
          f"200 steps, 1 CPU device, best of {args.repeats}; {datetime.date.today()}, load avg "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| policy | loop | s | vs unbatched |")
    print("|---|---|---|---|")
    for arch in args.archs.split(";"):
        recipe = dataclasses.replace(paper_recipe(spec.name, spec.discrete), arch=parse_arch(arch), steps=200)
        train = make_train(recipe, spec.obs_dim, spec.action_dim, spec.discrete)

        def candidate(item):
            return jax.lax.map(lambda key: train(key, item[0], item[1])[0], init_keys)
        forms = {"unbatched": lambda s, t: jax.lax.map(candidate, (s, t)),
                 "batch_size=1": lambda s, t: jax.lax.map(candidate, (s, t), batch_size=1),
                 "batch_size=2": lambda s, t: jax.lax.map(candidate, (s, t), batch_size=2),
                 "vmap all": lambda s, t: jax.vmap(lambda a, b: candidate((a, b)))(s, t)}
        first = None
        for name in LOOPS:
            program = jax.jit(forms[name])
            jax.block_until_ready(program(states, targets))
            timings = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                jax.block_until_ready(program(states, targets))
                timings.append(time.perf_counter() - start)
            first = first or min(timings)
            print(f"| {arch} | {name} | {min(timings):.3f} | {first / min(timings):.2f}x |", flush=True)


if __name__ == "__main__":
    main()
