"""Wall time of train-from: compile versus run, and vmap versus lax.map over seeds for training.

    python bench/train_from.py [--arch 512,512:tanh] [--seeds 8] [--json]
    python bench/train_from.py --compare-vmap [--arch 512,512:tanh] [--seed-counts 1,2,4] [--timeout 120]

The default mode times what ``hades train-from`` runs: hopper, the paper's inner loop (200 full-batch
Adam steps, Gaussian NLL) with the chosen architecture, for N seeds, each evaluated under the standard
protocol (4 envs x 1024 steps, sampled actions), on a dataset it builds itself (4 random pairs,
constant normalisation with zero mean and unit variance). The first call traces, compiles and runs;
the second call of the same compiled program only runs.

``--compare-vmap`` times training alone (no evaluation) for 1, 2, 4 seeds, two ways:
``jax.jit(jax.vmap(train))`` (all seeds in one batched program) and ``jax.jit(lambda keys:
jax.lax.map(train, keys))`` (the seeds one after another inside one program). Every case runs in
its own process with a timeout; a case that runs out of time reports the phase it was stuck in.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ENV = "hopper"


def build_dataset(pairs: int = 4, seed: int = 0):
    import numpy as np

    import hades
    from hades.envs import get_env_spec

    spec = get_env_spec(ENV)
    rng = np.random.default_rng(seed)
    return hades.Dataset(rng.normal(size=(pairs, spec.obs_dim)).astype("float32"),
                         rng.normal(size=(pairs, spec.action_dim)).astype("float32"), ENV, "constant",
                         np.zeros(spec.obs_dim, "float32"), np.ones(spec.obs_dim, "float32"),
                         info={"license": "apache-2.0", "name": "bench"})


def recipe_for(arch: str):
    import dataclasses

    from hades.learn import paper_recipe
    from hades.policy import parse_arch

    return dataclasses.replace(paper_recipe(ENV, False), arch=parse_arch(arch))


def machine() -> dict:
    import jax

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "jax": jax.__version__,
        "devices": [str(device) for device in jax.devices()],
        "python": platform.python_version(),
    }


# -- default mode: train + evaluate, as train-from runs it ---------------------------------------------

def bench_train_from(arch: str, seeds: int, pairs: int) -> dict:
    import jax

    from hades.evaluate import EvalProtocol
    from hades.trainfrom import make_train_and_evaluate, seed_keys

    dataset = build_dataset(pairs)
    recipe = recipe_for(arch)
    protocol = EvalProtocol()
    keys = seed_keys(list(range(seeds)))
    run = jax.jit(make_train_and_evaluate(dataset, recipe, protocol))

    start = time.perf_counter()
    lowered = run.lower(keys)
    trace_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(compiled(keys))
    first_run_s = time.perf_counter() - start

    start = time.perf_counter()
    _, metrics, _ = jax.block_until_ready(compiled(keys))
    second_run_s = time.perf_counter() - start
    returns = [round(float(r), 1) for r in metrics["mean_return"]]
    env_steps = seeds * protocol.num_envs * protocol.num_steps
    return {
        "env": ENV, "arch": arch, "seeds": seeds, "pairs": pairs, "steps": recipe.steps,
        "protocol": f"{protocol.num_envs} envs x {protocol.num_steps} steps, sampled",
        "trace_s": trace_s, "compile_s": compile_s, "first_call_s": trace_s + compile_s + first_run_s,
        "first_run_s": first_run_s, "second_call_s": second_run_s,
        "env_steps_per_s": env_steps / second_run_s, "returns": returns,
    }


def print_train_from(result: dict, info: dict) -> None:
    rows = [
        ("first call (trace + compile + run)", f"{result['first_call_s']:.1f} s"),
        ("  trace", f"{result['trace_s']:.1f} s"),
        ("  compile", f"{result['compile_s']:.1f} s"),
        ("  run", f"{result['first_run_s']:.1f} s"),
        ("second call (run only)", f"{result['second_call_s']:.1f} s"),
        ("env steps / s (second call)", f"{result['env_steps_per_s']:,.0f}"),
        ("returns", ", ".join(f"{r:.0f}" for r in result["returns"])),
    ]
    title = (f"train-from {result['env']}: {result['arch']}, {result['steps']} steps, {result['seeds']} seeds, "
             f"{result['pairs']} pairs; eval {result['protocol']}")
    _table(title, ("", "wall time"), rows, info)


# -- --compare-vmap: training only, vmap vs lax.map over seeds ------------------------------------------

def run_case(mode: str, seeds: int, arch: str, pairs: int) -> None:
    """One case, in this process; prints one JSON line per phase so a timeout shows where it stopped."""
    import jax

    from hades.learn import make_train
    from hades.trainfrom import seed_keys

    def report(**fields):
        print(json.dumps(fields), flush=True)

    dataset = build_dataset(pairs)
    spec = dataset.env_spec
    train = make_train(recipe_for(arch), spec.obs_dim, spec.action_dim, spec.discrete)
    states, actions = dataset.states, dataset.actions

    def train_one(key):
        return train(key, states, actions)

    batched = jax.vmap(train_one) if mode == "vmap" else (lambda keys: jax.lax.map(train_one, keys))
    keys = seed_keys(list(range(seeds)))
    report(phase="trace")
    start = time.perf_counter()
    lowered = jax.jit(batched).lower(keys)
    report(phase="compile", trace_s=time.perf_counter() - start)
    start = time.perf_counter()
    compiled = lowered.compile()
    report(phase="run", compile_s=time.perf_counter() - start)
    start = time.perf_counter()
    jax.block_until_ready(compiled(keys))
    first = time.perf_counter() - start
    report(phase="second run", first_run_s=first)
    start = time.perf_counter()
    _, losses = jax.block_until_ready(compiled(keys))
    report(phase="done", run_s=time.perf_counter() - start, final_loss=float(losses.mean()))


def compare_vmap(arch: str, seed_counts: list[int], timeout: float, pairs: int) -> list[dict]:
    rows = []
    for seeds in seed_counts:
        for mode in ("lax.map", "vmap"):
            command = [sys.executable, __file__, "--case", f"{mode}:{seeds}", "--arch", arch, "--pairs", str(pairs)]
            start = time.perf_counter()
            try:
                proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
                output, timed_out = proc.stdout, False
                if proc.returncode != 0:
                    raise RuntimeError(f"case {mode}:{seeds} failed:\n{proc.stderr[-2000:]}")
            except subprocess.TimeoutExpired as exc:
                output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
                timed_out = True
            wall = time.perf_counter() - start
            row = {"mode": mode, "seeds": seeds, "timed_out": timed_out, "wall_s": wall}
            for line in output.splitlines():
                if line.startswith("{"):
                    row.update(json.loads(line))
            rows.append(row)
            print(f"  {mode:8s} {seeds} seed(s): " + (f"timeout in {row.get('phase', 'start-up')}" if timed_out else f"{wall:.1f} s"),
                  file=sys.stderr, flush=True)
    return rows


def print_compare(rows: list[dict], arch: str, timeout: float, info: dict) -> None:
    stuck_in = {"trace": "trace_s", "compile": "compile_s", "run": "first_run_s", "second run": "run_s"}

    def cell(row, name):
        if name in row:
            return f"{row[name]:.3f}"
        return "timeout" if row["timed_out"] and stuck_in.get(row.get("phase")) == name else "-"

    table_rows = []
    for row in rows:
        status = f"timeout in {row.get('phase', 'start-up')}" if row["timed_out"] else "ok"
        table_rows.append((row["mode"], str(row["seeds"]), cell(row, "trace_s"), cell(row, "compile_s"),
                           cell(row, "first_run_s"), cell(row, "run_s"), f"{row['wall_s']:.1f}", status))
    title = (f"training only, hopper, {arch}, 200 steps: seeds vmapped vs lax.map (seconds; "
             f"each case a fresh process, timeout {timeout:.0f} s)")
    _table(title, ("mode", "seeds", "trace", "compile", "first run", "second run", "process wall", "status"),
           table_rows, info)


# -- output ---------------------------------------------------------------------------------------

def _table(title: str, columns, rows, info: dict) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print(title)
        print(" | ".join(columns))
        for row in rows:
            print(" | ".join(row))
    else:
        table = Table(title=title, title_justify="left")
        for index, column in enumerate(columns):
            table.add_column(column, justify="left" if index == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console = Console()
        if not console.is_terminal:  # keep rows on one line when the output goes to a file
            console = Console(width=160)
        console.print(table)
    load = f", load {info['load_average']}" if info.get("load_average") else ""
    print(f"{info['date']}; {info['cpu_count']} CPUs ({info['cpu']}{load}); jax {info['jax']} on "
          f"{', '.join(info['devices'])}; python {info['python']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="512,512:tanh", help="policy architecture (default: the paper's 512,512:tanh)")
    parser.add_argument("--seeds", type=int, default=8, help="seeds trained and evaluated (default 8)")
    parser.add_argument("--pairs", type=int, default=4, help="pairs in the random dataset (default 4)")
    parser.add_argument("--compare-vmap", action="store_true", help="time training vmapped over seeds against lax.map")
    parser.add_argument("--seed-counts", default="1,2,4", help="seed counts for --compare-vmap (default 1,2,4)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per --compare-vmap case (default 120)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if args.case:
        mode, seeds = args.case.split(":")
        run_case(mode, int(seeds), args.arch, args.pairs)
        return
    from hades.policy import format_arch, parse_arch

    arch = format_arch(parse_arch(args.arch))
    info = machine()
    if args.compare_vmap:
        counts = [int(count) for count in args.seed_counts.split(",") if count]
        rows = compare_vmap(arch, counts, args.timeout, args.pairs)
        if args.json:
            print(json.dumps({"machine": info, "arch": arch, "timeout_s": args.timeout, "cases": rows}, indent=2))
        else:
            print_compare(rows, arch, args.timeout, info)
        return
    result = bench_train_from(arch, args.seeds, args.pairs)
    if args.json:
        print(json.dumps({"machine": info, **result}, indent=2))
    else:
        print_train_from(result, info)


if __name__ == "__main__":
    main()
