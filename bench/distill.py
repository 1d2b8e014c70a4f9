"""Throughput of `hades distill`: seconds per generation and env steps per second, against raw Brax.

    python bench/distill.py [--env hopper] [--pairs 4] [--population 32] [--arch 64,64:tanh]
                            [--inits 1] [--eval-envs 1] [--eval-steps 1000] [--inner-steps 200] [--normalization constant]
                            [--generations 2] [--repeats 3] [--devices 1,2] [--pin] [--processes 2]
                            [--json] [--json-out FILE]

For each device count, a fresh process (the XLA CPU device count is fixed when jax is imported)
runs the real distillation loop (:class:`hades.runner.Distiller`, one jitted chunk of
``--generations`` generations per checkpoint) for 1 + ``--repeats`` chunks: the first compiles and
warms up, the others are timed by the runner's own clock. In the same process it then times a raw
rollout of the same env and backend with uniformly random actions, the same total batch (population
x inits x eval envs, split over the same devices) and the same number of steps: one call to
compile, then ``--repeats`` timed calls. The table shows the fastest repeat of each (the least
disturbed by other work on the machine); the JSON has every repeat.

In the same process it also measures the generation's two floors apart: training the same number
of inner policies with the same recipe and batching (on random pairs), and rolling those policies
out under the same protocol, each sharded as the generation is. ``gen / floors`` is s/gen over
their sum: what the ES, sampling and the glue between the two cost on top.

Columns: devices, s/gen, the two floors, gen / floors, env steps/s (of the distillation:
population x inits x envs x steps per generation, divided by s/gen), raw env steps/s, ratio
(distillation / raw random-action rollout, in %), speedup of s/gen against the first device
count listed, and the mean fitness of generation 1 (the same seed on every device count: it
differs only by the float rounding of other batch shapes). The load average is printed too: on a shared machine the
numbers are only as good as the CPU time the process got.

``--pin`` pins each case to one CPU core per device (XLA's CPU kernels otherwise spread one device's
work over every core, so a second device finds no core of its own): a device count's gain is then
the sharding's, as on a machine whose devices compute apart. ``--processes N``
adds a row: the same run as ``hades distill --local-processes N`` (N processes of 1 device, each
pinned to its core, joined through ``jax.distributed`` at 127.0.0.1; timed by its fitness.csv; no
floors).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_config(args):
    import dataclasses

    from hades.distillation import preset
    from hades.envs import get_env_spec
    from hades.evaluate import EvalProtocol
    from hades.learn import paper_recipe
    from hades.policy import parse_arch

    spec = get_env_spec(args.env)
    recipe = dataclasses.replace(paper_recipe(spec.name, spec.discrete), arch=parse_arch(args.arch))
    if args.inner_steps is not None:
        recipe = dataclasses.replace(recipe, steps=args.inner_steps)
    overrides = {} if args.normalization is None else {"normalization": args.normalization}
    overrides["seed"] = getattr(args, "seed", 0)
    return preset("cpu", spec.name, args.pairs, population_size=args.population, num_inits=args.inits, **overrides,
                  num_generations=(1 + args.repeats) * args.generations, recipe=recipe,
                  protocol=EvalProtocol(args.eval_envs, args.eval_steps))


def time_distillation(config, generations: int, devices: int) -> dict:
    """Chunks of ``generations``: the first compiles and warms up, the others are timed (by the runner)."""
    from hades.runner import Distiller

    with tempfile.TemporaryDirectory() as tmp:
        distiller = Distiller(config, Path(tmp) / "run", checkpoint_every=generations, num_devices=devices)
        distiller.run()
    history = distiller.history
    per_chunk = [history[index]["seconds"] for index in range(0, len(history), generations)]
    seconds = min(per_chunk[1:])
    return {"s_per_gen": seconds, "s_per_gen_repeats": per_chunk[1:], "warmup_s": round(per_chunk[0] * generations, 2),
            "env_steps_per_gen": config.env_steps_per_generation,
            "env_steps_per_s": config.env_steps_per_generation / seconds,
            "first_mean_fitness": history[0]["mean"], "final_mean_fitness": history[-1]["mean"]}


def time_raw_rollout(config, devices: int, repeats: int) -> dict:
    """Random actions in ``population x inits x envs`` envs for ``num_steps``, sharded like the population."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P

    from hades.envs import VecEnv, get_env_spec
    from hades.multihost import make_mesh

    spec = get_env_spec(config.env)
    batch = config.population_size * config.inits_per_generation * config.protocol.num_envs
    steps = config.protocol.num_steps
    mesh = make_mesh(config, devices)
    shards = mesh.size if mesh is not None else 1
    env = VecEnv(spec, batch // shards, config.backend)

    def rollout(keys):
        key = keys[0]
        obs, state = env.reset(key)

        def body(carry, step_key):
            state, total = carry
            act_key, env_key = jax.random.split(step_key)
            if spec.discrete:
                action = jax.random.randint(act_key, (env.num_envs,), 0, spec.action_dim)
            else:
                action = jax.random.uniform(act_key, (env.num_envs, spec.action_dim), minval=-1, maxval=1)
            _, state, reward, _ = env.step(env_key, state, action)
            return (state, total + reward.sum()), None

        (_, total), _ = jax.lax.scan(body, (state, jnp.zeros(())), jax.random.split(key, steps))
        return total[None]

    if mesh is not None:
        rollout = jax.shard_map(rollout, mesh=mesh, in_specs=P("population"), out_specs=P("population"),
                                check_vma=False)
    program = jax.jit(rollout)
    keys = jax.random.split(jax.random.PRNGKey(0), shards)
    start = time.perf_counter()
    jax.block_until_ready(program(keys))
    warmup = time.perf_counter() - start
    timings = []
    for repeat in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(program(jax.random.split(jax.random.PRNGKey(1 + repeat), shards)))
        timings.append(time.perf_counter() - start)
    seconds = min(timings)
    return {"raw_batch": batch, "raw_steps": steps, "raw_s": seconds, "raw_s_repeats": [round(t, 4) for t in timings],
            "raw_warmup_s": round(warmup, 2), "raw_env_steps_per_s": batch * steps / seconds}


def _best_of(program, args_for, repeats: int) -> tuple[float, list[float]]:
    """Compile with one call, then the fastest of ``repeats`` timed calls (and all of them)."""
    import jax

    jax.block_until_ready(program(*args_for(0)))
    timings = []
    for repeat in range(repeats):
        inputs = args_for(1 + repeat)
        start = time.perf_counter()
        jax.block_until_ready(program(*inputs))
        timings.append(time.perf_counter() - start)
    return min(timings), [round(t, 4) for t in timings]


def time_floors(config, devices: int, repeats: int, train_batch="auto") -> dict:
    """The generation's two floors, measured apart: training the population's inner policies (the
    same recipe, batching and number of policies, on random pairs) and rolling those policies out
    (the same protocol and batch), each sharded over the devices as the generation shards them."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P

    from hades.distillation import default_train_batch, map_candidates
    from hades.envs import get_env_spec
    from hades.evaluate import make_evaluate
    from hades.learn import make_train
    from hades.multihost import make_mesh

    spec = get_env_spec(config.env)
    arch = config.architectures[0]
    train = make_train(config.recipe, spec.obs_dim, spec.action_dim, spec.discrete)
    evaluate = make_evaluate(spec, arch, config.protocol, config.normalization, config.backend)
    batch = default_train_batch(config, jax.default_backend()) if train_batch == "auto" else train_batch
    inits, pairs = config.inits_per_generation, config.pairs
    obs_mean, obs_var = jnp.zeros(spec.obs_dim), jnp.ones(spec.obs_dim)

    def train_all(states, targets, init_keys):
        def train_candidate(item):
            return jax.lax.map(lambda key: train(key, item[0], item[1])[0], init_keys)

        return map_candidates(train_candidate, (states, targets), batch)

    def rollout_all(params, eval_keys):
        def candidate(candidate_params):
            return jax.lax.map(lambda item: evaluate(item[0], item[1], obs_mean, obs_var)["mean_return"],
                               (candidate_params, eval_keys))
        return jax.vmap(candidate)(params)

    mesh = make_mesh(config, devices)
    if mesh is not None:
        train_all = jax.shard_map(train_all, mesh=mesh, in_specs=(P("population"), P("population"), P()),
                                  out_specs=P("population"), check_vma=False)
        rollout_all = jax.shard_map(rollout_all, mesh=mesh, in_specs=(P("population"), P()),
                                    out_specs=P("population"), check_vma=False)
    train_program, rollout_program = jax.jit(train_all), jax.jit(rollout_all)

    def pairs_for(seed: int):
        key_s, key_t, key_i = jax.random.split(jax.random.PRNGKey(seed), 3)
        states = jax.random.normal(key_s, (config.population_size, pairs, spec.obs_dim))
        if spec.discrete:
            targets = jax.random.randint(key_t, (config.population_size, pairs), 0, spec.action_dim)
        else:
            targets = jax.random.uniform(key_t, (config.population_size, pairs, spec.action_dim), minval=-1, maxval=1)
        return states, targets, jax.random.split(key_i, inits)

    train_s, train_repeats = _best_of(train_program, pairs_for, repeats)
    params = train_program(*pairs_for(0))
    rollout_s, rollout_repeats = _best_of(
        rollout_program, lambda seed: (params, jax.random.split(jax.random.PRNGKey(100 + seed), inits)), repeats)
    return {"train_s": train_s, "train_s_repeats": train_repeats, "rollout_s": rollout_s,
            "rollout_s_repeats": rollout_repeats, "floor_s": train_s + rollout_s, "train_batch": batch}


def worker(args) -> None:
    if args.worker_cores:
        os.sched_setaffinity(0, {int(core) for core in args.worker_cores.split(",")})  # before XLA starts its threads
    from hades.multihost import configure_devices

    configure_devices(args.worker_devices)
    import jax

    config = build_config(args)
    result = {"devices": args.worker_devices, "visible_devices": len(jax.devices())}
    result.update(time_distillation(config, args.generations, args.worker_devices))
    result.update(time_raw_rollout(config, args.worker_devices, args.repeats))
    result.update(time_floors(config, args.worker_devices, args.repeats))
    result["ratio"] = result["env_steps_per_s"] / result["raw_env_steps_per_s"]
    result["floor_ratio"] = result["s_per_gen"] / result["floor_s"]
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))


def run_case(args, devices: int) -> dict:
    argv = [sys.executable, __file__, "--worker-devices", str(devices)]
    for name in ("env", "pairs", "population", "arch", "inits", "eval_envs", "eval_steps", "inner_steps", "normalization",
                 "generations", "repeats"):
        value = getattr(args, name)
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    if args.pin:
        argv += ["--worker-cores", ",".join(str(core) for core in range(devices))]
    proc = subprocess.run(argv, env=_worker_env(devices), capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"devices": devices, "error": " | ".join(tail)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker_env(devices: int) -> dict:
    env = dict(os.environ)
    flags = [flag for flag in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in flag]
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
    for name in ("HADES_COORDINATOR", "HADES_NUM_PROCESSES", "HADES_PROCESS_ID"):
        env.pop(name, None)
    return env


def run_processes(args, processes: int) -> dict:
    """The same run as the device rows through ``hades distill --local-processes N`` (N processes of 1 device,
    each pinned to its core, joined through jax.distributed at 127.0.0.1), timed by its fitness.csv (best
    chunk after the first)."""
    import csv

    run = ["distill", args.env, "--pairs", str(args.pairs), "--preset", "cpu", "--population", str(args.population),
           "--arch", args.arch, "--inits", str(args.inits), "--eval-envs", str(args.eval_envs), "--eval-steps",
           str(args.eval_steps), "--generations", str((1 + args.repeats) * args.generations), "--checkpoint-every",
           str(args.generations), "--final-seeds", "0", "--devices", "1", "--local-processes", str(processes)]
    for name, value in (("--inner-steps", args.inner_steps), ("--normalization", args.normalization)):
        if value is not None:
            run += [name, str(value)]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "hades", *run, "--out", str(Path(tmp) / "run")],
                              env=_worker_env(1), capture_output=True, text=True, timeout=args.timeout)
        if proc.returncode:
            tail = proc.stderr.strip().splitlines()[-3:]
            return {"devices": f"{processes} processes x 1", "error": " | ".join(tail)}
        with open(Path(tmp) / "run" / "fitness.csv", newline="") as handle:
            history = list(csv.DictReader(handle))
    per_chunk = [float(history[index]["seconds"]) for index in range(0, len(history), args.generations)]
    seconds = min(per_chunk[1:])
    steps = int(history[0]["env_steps"])
    return {"devices": f"{processes} processes x 1", "s_per_gen": seconds, "s_per_gen_repeats": per_chunk[1:],
            "env_steps_per_s": steps / seconds, "first_mean_fitness": float(history[0]["mean"]),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--arch", default="64,64:tanh")
    parser.add_argument("--inits", type=int, default=1)
    parser.add_argument("--eval-envs", type=int, default=1)
    parser.add_argument("--eval-steps", type=int, default=1000)
    parser.add_argument("--inner-steps", type=int, default=None, help="default: the paper's for the env")
    parser.add_argument("--normalization", default=None, help="running, constant or none (default: the cpu preset's)")
    parser.add_argument("--generations", type=int, default=2, help="generations per timed chunk")
    parser.add_argument("--repeats", type=int, default=3, help="timed chunks (and raw rollouts); the fastest is shown")
    parser.add_argument("--devices", default="1,2", help="device counts to compare, e.g. 1,2")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per device count")
    parser.add_argument("--pin", action="store_true",
                        help="pin each case to as many CPU cores as it has devices (1 device: core 0; 2: cores 0-1), "
                             "so a device is one core's work, as on a machine whose devices compute apart")
    parser.add_argument("--worker-cores", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=0,
                        help="also time this many local processes of 1 device each, joined through jax.distributed")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON report to this file")
    parser.add_argument("--worker-devices", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_devices is not None:
        worker(args)
        return

    counts = [int(part) for part in args.devices.split(",") if part.strip()]
    rows = [run_case(args, count) for count in counts]
    if args.processes:
        rows.append(run_processes(args, args.processes))
    base = next((row["s_per_gen"] for row in rows if "s_per_gen" in row), None)
    for row in rows:
        if "s_per_gen" in row and base:
            row["speedup"] = base / row["s_per_gen"]
    report = {
        "config": {name: getattr(args, name) for name in ("env", "pairs", "population", "arch", "inits", "eval_envs",
                                                         "eval_steps", "inner_steps", "normalization", "generations",
                                                         "repeats", "pin")},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
    }
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
        return
    config = report["config"]
    print(f"{config['env']}, {config['pairs']} pairs, population {config['population']}, {config['arch']}, "
          f"{config['inits']} init(s) x {config['eval_envs']} env(s) x {config['eval_steps']} steps, inner steps "
          f"{config['inner_steps'] or 'paper'}; best of {config['repeats']} chunks of {config['generations']} "
          "generation(s) after a warm-up chunk" + ("; each case pinned to one core per device" if config["pin"] else ""))
    print("| devices | s/gen | train floor s | rollout floor s | gen / floors | env steps/s | raw env steps/s | "
          "ratio | speedup | gen 1 mean fitness | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['devices']} | failed: {row['error']} |")
            continue
        if "train_s" not in row:  # several processes: timed by the run itself, no floors
            print(f"| {row['devices']} | {row['s_per_gen']:.3f} | - | - | - | {row['env_steps_per_s']:,.0f} | - | - | "
                  f"{row['speedup']:.2f}x | {row['first_mean_fitness']:.4f} | {' '.join(f'{x:.2f}' for x in row['loadavg'])} |")
            continue
        print(f"| {row['devices']} | {row['s_per_gen']:.3f} | {row['train_s']:.3f} | {row['rollout_s']:.3f} | "
              f"{row['floor_ratio']:.2f}x | {row['env_steps_per_s']:,.0f} | {row['raw_env_steps_per_s']:,.0f} | "
              f"{100 * row['ratio']:.1f}% | {row['speedup']:.2f}x | {row['first_mean_fitness']:.4f} | "
              f"{' '.join(f'{x:.2f}' for x in row['loadavg'])} |")


if __name__ == "__main__":
    main()
