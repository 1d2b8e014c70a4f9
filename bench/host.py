"""How far this machine's cores scale apart: the ceiling any sharding over CPU devices can reach.

    python bench/host.py [--cores 0,1] [--repeats 3] [--kernels matmul-l1,stream-l2,...] [--json]

Each kernel runs first alone, in one process pinned to the first core, then in one process per
listed core, all at once (a barrier starts every repeat together), each process doing the same
work as the lone one. ``scaling`` is the work done per second together over the work done per
second alone (the ideal is the number of cores): what 2 devices of ``hades distill`` could gain at
most for a program made of that kernel, since each device computes on a core of its own.

Kernels (every one a jitted XLA:CPU program, as the distillation's are):

- ``matmul-l1``: a chain of 96x96 float32 matmuls (everything in the core's L1/L2 cache: compute).
- ``stream-l2`` / ``stream-l3`` / ``stream-dram``: ``x = x * a + b`` over 1 MiB / 8 MiB / 128 MiB of
  float32 (memory traffic from the L2 cache, the shared L3 cache, main memory).
- ``train-2x512``: the distillation's inner training at the paper's recipe (2x512 tanh, Adam, 200
  steps on 4 hopper pairs), 16 policies one after the other, as one CPU device trains them.
- ``rollout-hopper``: 64 hopper envs stepped 1024 times with random actions (the rollout floor's kind
  of work: many small ops).

The table shows the fastest repeat alone, the slowest process's fastest repeat together, and the
scaling. The load average is printed: on a shared host the numbers are only as good as the CPU time
the processes got.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import time

KERNELS = ("matmul-l1", "stream-l2", "stream-l3", "stream-dram", "train-2x512", "rollout-hopper")
WORKING_SET = {"matmul-l1": "72 KiB", "stream-l2": "1 MiB", "stream-l3": "8 MiB", "stream-dram": "128 MiB",
               "train-2x512": "4.3 MiB a policy", "rollout-hopper": "64 envs"}


def build(name: str):
    """``(program, args)``: one jitted call of the kernel and its inputs."""
    import jax
    import jax.numpy as jnp

    if name == "matmul-l1":
        w = jax.random.normal(jax.random.PRNGKey(0), (96, 96)) / 96.0

        def matmul(x):
            return jax.lax.fori_loop(0, 100_000, lambda _, y: y @ w + 1e-3, x)
        return jax.jit(matmul), (jnp.ones((96, 96)),)
    if name.startswith("stream-"):
        size = {"stream-l2": 1, "stream-l3": 8, "stream-dram": 128}[name] * 2**20 // 4
        iterations = max(1, 10_000_000_000 // size)

        def stream(x):
            return jax.lax.fori_loop(0, iterations, lambda _, y: y * 0.999 + 1e-3, x)
        return jax.jit(stream), (jnp.ones(size),)
    if name == "train-2x512":
        import dataclasses

        from hades.envs import get_env_spec
        from hades.learn import make_train, paper_recipe
        from hades.policy import parse_arch

        spec = get_env_spec("hopper")
        recipe = dataclasses.replace(paper_recipe(spec.name, spec.discrete), arch=parse_arch("512,512:tanh"), steps=200)
        train = make_train(recipe, spec.obs_dim, spec.action_dim, spec.discrete)
        keys = jax.random.split(jax.random.PRNGKey(1), 16)
        states = jax.random.normal(jax.random.PRNGKey(2), (4, spec.obs_dim))
        targets = jax.random.uniform(jax.random.PRNGKey(3), (4, spec.action_dim), minval=-1, maxval=1)

        def train_all(keys):
            return jax.lax.map(lambda key: train(key, states, targets)[0], keys)
        return jax.jit(train_all), (keys,)
    if name == "rollout-hopper":
        from hades.envs import VecEnv, get_env_spec

        spec = get_env_spec("hopper")
        env = VecEnv(spec, 64)

        def rollout(key):
            _, state = env.reset(key)

            def body(carry, step_key):
                act_key, env_key = jax.random.split(step_key)
                action = jax.random.uniform(act_key, (64, spec.action_dim), minval=-1, maxval=1)
                _, carry, reward, _ = env.step(env_key, carry, action)
                return carry, reward.sum()
            return jax.lax.scan(body, state, jax.random.split(key, 1024))[1].sum()
        return jax.jit(rollout), (jax.random.PRNGKey(4),)
    raise ValueError(f"unknown kernel {name!r}; choose from {', '.join(KERNELS)}")


def worker(core: int, kernels: list[str], repeats: int, barrier, results) -> None:
    os.sched_setaffinity(0, {core})  # before XLA starts its threads
    import jax

    timings = {}
    for name in kernels:
        program, inputs = build(name)
        jax.block_until_ready(program(*inputs))  # compile and warm up
        best = float("inf")
        for _ in range(repeats):
            barrier.wait()
            start = time.perf_counter()
            jax.block_until_ready(program(*inputs))
            best = min(best, time.perf_counter() - start)
        timings[name] = best
    results.put((core, timings))


def run(cores: list[int], kernels: list[str], repeats: int) -> dict:
    """Fastest repeat of each kernel per process, with the processes on ``cores`` running at once."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(len(cores)), context.Queue()
    procs = [context.Process(target=worker, args=(core, kernels, repeats, barrier, results)) for core in cores]
    for proc in procs:
        proc.start()
    gathered = dict(results.get() for _ in procs)
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"a worker failed (exit {proc.exitcode})")
    return gathered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="0,1", help="CPU cores to run on together (the first also runs alone).")
    parser.add_argument("--kernels", default=",".join(KERNELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args()
    cores = [int(core) for core in args.cores.split(",")]
    kernels = [name.strip() for name in args.kernels.split(",") if name.strip()]
    unknown = [name for name in kernels if name not in KERNELS]
    if unknown or len(cores) < 2 or args.repeats < 1:
        parser.error(f"unknown kernels {unknown}" if unknown else "give at least 2 cores and 1 repeat")
    alone = run(cores[:1], kernels, args.repeats)[cores[0]]
    together = run(cores, kernels, args.repeats)
    rows = []
    for name in kernels:
        slowest = max(timings[name] for timings in together.values())
        rows.append({"kernel": name, "working_set": WORKING_SET[name], "alone_s": alone[name], "together_s": slowest,
                     "scaling": len(cores) * alone[name] / slowest})
    info = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
            "cores": cores, "cpu_count": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}
    if args.json:
        print(json.dumps({**info, "rows": rows}, indent=2))
        return
    print(f"{info['date']}, {len(cores)} cores {cores} of {info['cpu_count']}, load average {info['loadavg']}")
    print()
    print(f"| kernel | working set | alone s | {len(cores)} at once s | scaling (ideal {len(cores)}.00x) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['kernel']} | {row['working_set']} | {row['alone_s']:.3f} | {row['together_s']:.3f} | "
              f"{row['scaling']:.2f}x |")


if __name__ == "__main__":
    main()
