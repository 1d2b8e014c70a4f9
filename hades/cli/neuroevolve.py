"""`hades neuroevolve`: the neuroevolution baseline, an ES over a policy's weights, with `hades distill`'s runner."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hades.cli import app
from hades.errors import SpecError


@app.command("neuroevolve")
def neuroevolve_command(
    env: str = typer.Argument(..., metavar="ENV", help="Environment, e.g. hopper or Breakout-MinAtar."),
    arch: Optional[str] = typer.Option(None, "--arch", help="The policy whose weights are searched (default 2x512:tanh)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="open_es (default), snes, pgpe, simple_es, sep_cma_es, xnes, cma_es."),
    population: Optional[int] = typer.Option(None, "--population", help="ES population size (even; default 2048)."),
    generations: Optional[int] = typer.Option(None, "--generations", help="Number of ES generations (default 2000)."),
    eval_envs: Optional[int] = typer.Option(None, "--eval-envs", help="Envs per candidate rollout."),
    eval_steps: Optional[int] = typer.Option(None, "--eval-steps", help="Steps per candidate rollout."),
    normalization: Optional[str] = typer.Option(None, "--normalization", help="running (default), constant or none."),
    sigma: Optional[float] = typer.Option(None, "--sigma", help="ES noise scale (default 0.03)."),
    es_lr: Optional[float] = typer.Option(None, "--es-lr", help="ES Adam learning rate (OpenES; default 0.05)."),
    shaping: Optional[str] = typer.Option(None, "--shaping", help="raw, centered_rank (default), standardize or rank_weights."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Brax backend (default positional)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the ES and the policy init its mean starts at."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default ./ENV-params-seedN)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint."),
    checkpoint_every: int = typer.Option(10, "--checkpoint-every", min=1, help="Generations per jitted chunk and checkpoint."),
    devices: Optional[int] = typer.Option(None, "--devices", min=1, help="Devices to shard the population over."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the settings, their cost and what --out holds; run nothing."),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: print one JSON object."),
    final_seeds: int = typer.Option(8, "--final-seeds", min=0, help="Evaluation seeds for the ES mean policy (0 skips it)."),
    final_eval_envs: int = typer.Option(4, "--final-eval-envs", min=1, help="Envs per evaluation seed."),
    final_eval_steps: int = typer.Option(1024, "--final-eval-steps", min=1, help="Env steps per evaluation seed."),
    validate_every: int = typer.Option(
        0, "--validate-every", min=0,
        help="Every N generations, evaluate the ES mean policy on fresh evaluation seeds and keep the best (0: keep the last)."),
    validate_seeds: int = typer.Option(8, "--validate-seeds", min=1, help="Evaluation seeds per validation (from 1000000 up)."),
):
    """Evolve a policy's weights directly (the neuroevolution baseline HaDES is compared with).

    The ES mean starts at the network's init from --seed; each candidate policy is rolled out with
    sampled actions. The output is a policy folder that `hades eval` scores and `hades push` shares.
    """
    if as_json and not dry_run:
        raise SpecError("--json only goes with --dry-run (a run reports progress, not JSON)")
    from hades.multihost import configure_devices

    configure_devices(devices)
    import dataclasses

    from hades.evaluate import EvalProtocol
    from hades.neuroevolution import params_preset
    from hades.policy import parse_arch

    config = params_preset(env, seed=seed)
    protocol = config.protocol
    if eval_envs is not None or eval_steps is not None:
        protocol = EvalProtocol(protocol.num_envs if eval_envs is None else eval_envs,
                                protocol.num_steps if eval_steps is None else eval_steps, protocol.greedy)
    overrides = {"strategy": strategy, "population_size": population, "num_generations": generations,
                 "normalization": normalization, "sigma": sigma, "es_lr": es_lr, "fitness_shaping": shaping,
                 "backend": backend}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if strategy is not None and shaping is None:
        from hades.strategies import fits, strategy_defaults

        if not fits(strategy, config.fitness_shaping):
            overrides["fitness_shaping"] = strategy_defaults(strategy, config.recipe.loss == "cross_entropy")["fitness_shaping"]
    recipe = config.recipe if arch is None else dataclasses.replace(config.recipe, arch=parse_arch(arch))
    config = params_preset(env, seed=seed, recipe=recipe, protocol=protocol, **overrides)
    final_protocol = EvalProtocol(final_eval_envs, final_eval_steps)
    validation = None
    if validate_every:
        from hades.validation import Validation

        validation = Validation(validate_every, validate_seeds, final_protocol)
    if out is not None:
        from hades.paths import check_output_folder

        check_output_folder(out, "--out folder")
    out = out or Path(f"{config.env}-params-seed{config.seed}")
    if dry_run:
        return _print_plan(config, out, as_json, validation)
    _run(config, out, resume, checkpoint_every, devices, final_seeds, final_protocol, validation)


def _print_plan(config, out: Path, as_json: bool, validation) -> None:
    import json

    from rich.console import Console

    from hades.neuroevolution import ParamsDistiller
    from hades.policy import format_arch

    plan = ParamsDistiller(config, out, validation=validation).plan()
    if as_json:
        print(json.dumps(plan, indent=1))
        return
    held = f", checkpoint at generation {plan['checkpoint']['generations']}" if plan["checkpoint"] else ""
    Console().print(
        f"{config.env}, params/{config.strategy}, population {config.population_size}, policy "
        f"{format_arch(config.recipe.arch)} ({plan['policy_parameters']:,} parameters searched), "
        f"{config.protocol.num_envs} env(s) x {config.protocol.num_steps} steps per candidate\n"
        f"{plan['env_steps_per_generation']:,} env steps per generation, {plan['env_steps_total']:,} for "
        f"{config.num_generations} generations\nfingerprint {plan['fingerprint']}; {out}{held}: would {plan['action']}"
        + (f" ({plan['reason']})" if plan.get("reason") else ""), highlight=False, soft_wrap=True)


def _run(config, out: Path, resume: bool, checkpoint_every: int, devices, final_seeds: int, final_protocol,
         validation) -> None:
    import time

    from rich.console import Console

    from hades.cli.distill import _FLAG_HINTS
    from hades.neuroevolution import neuroevolve

    console = Console(stderr=True)
    started = time.perf_counter()

    def on_progress(progress):
        if not progress.generation:
            console.print(f"neuroevolving {config.env}, params/{config.strategy}, population {config.population_size} "
                          f"-> {out}", soft_wrap=True)
            return
        stats = f"mean {progress.mean:.1f} best {progress.best:.1f}"
        if progress.validation is not None:
            stats += f" validated {progress.validation:.1f}"
        console.print(f"gen {progress.generation}/{progress.total} {stats} ({time.perf_counter() - started:.0f} s)",
                      highlight=False, soft_wrap=True)

    def on_stage(stage: str):
        console.print("final evaluation of the ES mean policy" if stage == "evaluate" else f"writing {out}",
                      soft_wrap=True)

    try:
        result = neuroevolve(config, out, resume=resume, checkpoint_every=checkpoint_every, num_devices=devices,
                             final_seeds=final_seeds, final_protocol=final_protocol, validation=validation,
                             on_progress=on_progress, on_stage=on_stage)
    except tuple(_FLAG_HINTS) as exc:
        raise type(exc)(f"{exc}; {_FLAG_HINTS[type(exc)]}") from None
    summary = f"wrote {out}"
    if result.selected:
        summary += f" (the ES mean of generation {result.selected['generation']})"
    if result.evaluation:
        summary += (f": mean return {result.evaluation['mean_return']:.1f} ± {result.evaluation['std_return']:.1f} "
                    f"over {final_seeds} evaluation seeds")
    Console().print(summary, soft_wrap=True)
