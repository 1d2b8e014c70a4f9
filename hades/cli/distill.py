"""`hades distill`: options to a DistillConfig, then :func:`hades.distill` with a progress bar and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hades.cli import app
from hades.errors import (HadesError, MissingCheckpointError, MultiHostError, OutputInUseError, SettingsMismatchError,
                          SpecError)


@app.command("distill")
def distill_command(
    env: str = typer.Argument(..., metavar="ENV", help="Environment, e.g. hopper or Breakout-MinAtar."),
    pairs: int = typer.Option(..., "--pairs", "-D", min=1, help="Number of synthetic state-action pairs."),
    preset: str = typer.Option(
        "paper", "--preset",
        help="paper (published settings), cpu (small) or fast (provisional: the fewest env steps expected); options below override it."),
    method: Optional[str] = typer.Option(None, "--method", help="hades-r (fresh inits each generation) or hades-f (one fixed init)."),
    strategy: Optional[str] = typer.Option(
        None, "--strategy", help="open_es, snes, pgpe, simple_es, sep_cma_es, xnes, cma_es (with their own shaping and sigma unless given)."),
    population: Optional[str] = typer.Option(
        None, "--population", help="ES population size (even), or auto: 4 + 3 ln n for n searched numbers, rounded up to even."),
    generations: Optional[int] = typer.Option(None, "--generations", help="Number of ES generations."),
    max_env_steps: Optional[str] = typer.Option(
        None, "--max-env-steps",
        help="Stop once the search has spent this many env steps (e.g. 50e6), before --generations if need be."),
    inner_steps: Optional[int] = typer.Option(None, "--inner-steps", help="Supervised steps per policy."),
    arch: Optional[str] = typer.Option(
        None, "--arch", help="Inner policy, e.g. 512,512:tanh; several separated by ';' train every candidate (the first is the card's)."),
    inits: Optional[int] = typer.Option(None, "--inits", help="Policy inits per generation (HaDES-R)."),
    eval_envs: Optional[int] = typer.Option(None, "--eval-envs", help="Envs per fitness rollout."),
    eval_steps: Optional[int] = typer.Option(None, "--eval-steps", help="Steps per fitness rollout."),
    normalization: Optional[str] = typer.Option(None, "--normalization", help="running, constant or none."),
    sigma: Optional[float] = typer.Option(None, "--sigma", help="ES noise scale (SNES, xNES, CMA-ES: the initial step)."),
    es_lr: Optional[float] = typer.Option(None, "--es-lr", help="ES Adam learning rate (OpenES)."),
    es_lr_decay: Optional[float] = typer.Option(None, "--es-lr-decay", help="OpenES: multiply the learning rate by this every generation."),
    es_lr_floor: Optional[float] = typer.Option(None, "--es-lr-floor", help="OpenES: the least learning rate the decay goes to."),
    sigma_decay: Optional[float] = typer.Option(None, "--sigma-decay", help="OpenES: multiply sigma by this every generation."),
    sigma_floor: Optional[float] = typer.Option(None, "--sigma-floor", help="OpenES: the least sigma of the decay; CMA-ES, Sep-CMA-ES: the least step."),
    shaping: Optional[str] = typer.Option(
        None, "--shaping", help="raw, centered_rank, standardize, softmax_rank or rank_weights (the strategy's own)."),
    restarts: Optional[int] = typer.Option(
        None, "--restarts", min=0, help="At most this many IPOP restarts: from the best validated mean, with a larger population."),
    restart_patience: Optional[int] = typer.Option(
        None, "--restart-patience", min=1, help="Restart after this many validations without a new best."),
    restart_factor: Optional[int] = typer.Option(None, "--restart-factor", min=2, help="Each restart multiplies the population by this."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Brax backend (default positional)."),
    learned_labels: bool = typer.Option(False, "--learned-labels", help="Discrete envs: evolve the labels too."),
    init_from: Optional[str] = typer.Option(
        None, "--init-from", help="Start the ES mean at this dataset (catalogue name, hub id or folder) instead of zeros."),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default ./ENV-DPAIRS-METHOD-seedN)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint."),
    checkpoint_every: int = typer.Option(10, "--checkpoint-every", min=1, help="Generations per jitted chunk and checkpoint."),
    devices: Optional[int] = typer.Option(None, "--devices", min=1, help="Devices to shard the population over (default: all; on CPU one per core)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the settings, their cost in env steps and what --out holds; run nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: the plan (--dry-run) or the run's result."),
    final_seeds: int = typer.Option(8, "--final-seeds", min=0, help="Fresh inits for the final evaluation (0 skips it)."),
    final_eval_envs: int = typer.Option(4, "--final-eval-envs", min=1, help="Envs per policy in the final evaluation."),
    final_eval_steps: int = typer.Option(1024, "--final-eval-steps", min=1, help="Env steps per policy in the final evaluation."),
    validate_every: Optional[int] = typer.Option(
        None, "--validate-every", min=0,
        help="Every N generations, train fresh inits on the ES mean and score it; the run keeps the best mean "
             "(0: off, keep the last; default 10 for runs with restarts, else 0)."),
    validate_seeds: int = typer.Option(8, "--validate-seeds", min=1, help="Fresh inits per validation (seeds from 1000000 up)."),
    coordinator: Optional[str] = typer.Option(
        None, "--coordinator", envvar="HADES_COORDINATOR", rich_help_panel="Multi-host",
        help="HOST:PORT of process 0: join a multi-host run through jax.distributed."),
    num_processes: Optional[int] = typer.Option(
        None, "--num-processes", envvar="HADES_NUM_PROCESSES", min=1, rich_help_panel="Multi-host",
        help="Processes in the multi-host run."),
    process_id: Optional[int] = typer.Option(
        None, "--process-id", envvar="HADES_PROCESS_ID", min=0, rich_help_panel="Multi-host",
        help="This process's id, 0..N-1; process 0 writes the outputs."),
    local_processes: Optional[int] = typer.Option(
        None, "--local-processes", min=2, rich_help_panel="Multi-host",
        help="Run as N processes on this machine, each pinned to its share of the CPU cores and joined at "
             "127.0.0.1 (each trains on cores of its own, which N CPU devices in one process do not); --devices then counts "
             "devices per process (default: its cores)."),
):
    """Distil a synthetic dataset with HaDES (evolution strategies over state-action pairs).

    Several hosts share one run when every one starts the same command with --coordinator, --num-processes
    and its own --process-id; --devices then counts devices per process. --local-processes N does that on
    this machine by itself.

    Examples:

      hades distill hopper --pairs 4 --preset fast --out runs/hopper-4

      hades distill hopper --pairs 64 --preset paper --dry-run

      hades distill hopper --pairs 4 --preset cpu --out runs/hopper-4 --resume --generations 400

      hades distill fashion-mnist --pairs 10 --preset cpu --out runs/fmnist-10
    """
    options = dict(locals())  # every option as parsed: an image set hands them all over
    from hades.cli.images import distill_images_command, is_image_task

    if is_image_task(env):  # supervised dataset distillation (ENV names an image set)
        return distill_images_command(**options)
    from hades.multihost import configure_devices, initialize_distributed

    if local_processes and not dry_run:
        coordinator, num_processes, process_id, devices = _start_local(local_processes, devices, coordinator,
                                                                       num_processes, process_id)
    configure_devices(devices)
    from hades.evaluate import EvalProtocol

    overrides = {"method": method, "strategy": strategy, "num_generations": generations, "num_inits": inits,
                 "normalization": normalization, "sigma": sigma, "es_lr": es_lr, "es_lr_decay": es_lr_decay,
                 "es_lr_floor": es_lr_floor, "sigma_decay": sigma_decay, "sigma_floor": sigma_floor,
                 "fitness_shaping": shaping, "backend": backend, "restarts": restarts,
                 "restart_patience": restart_patience, "restart_factor": restart_factor}
    try:
        config, start = _config(preset, env, pairs, seed, learned_labels, arch, inner_steps, eval_envs, eval_steps,
                                population, init_from, overrides)
    except ValueError as exc:  # a setting the library refuses: say which
        if isinstance(exc, HadesError):
            raise
        raise SpecError(f"bad settings: {exc}") from None
    if out is not None:
        from hades.paths import check_output_folder

        check_output_folder(out, "--out folder")
    final_protocol = EvalProtocol(final_eval_envs, final_eval_steps)
    validation = None
    if validate_every is None:
        validate_every = 10 if config.restarts else 0
    if validate_every:
        from hades.validation import Validation

        validation = Validation(validate_every, validate_seeds, final_protocol)
    if start is not None:
        from hades.distillation import start_arrays

        start_arrays(config, start)  # a dataset that cannot seed this run fails here, before any work
    budget = None if max_env_steps is None else _env_steps(max_env_steps)
    out = out or Path(f"{config.env}-D{config.pairs}-{config.method}-seed{config.seed}")
    if dry_run:
        _print_plan(config, out, start, as_json, validation, budget)
        return
    # Settings are checked first, so a bad option fails fast instead of after joining the other hosts.
    try:
        initialize_distributed(coordinator, num_processes, process_id)
    except MultiHostError as exc:
        raise MultiHostError(f"{exc}; {_MULTI_HOST_HINT}") from None
    _run(config, out, resume, checkpoint_every, devices, final_seeds, final_protocol, start, init_from, validation,
         as_json=as_json, max_env_steps=budget)


def _config(preset, env, pairs, seed, learned_labels, arch, inner_steps, eval_envs, eval_steps, population,
            init_from, overrides):
    """The run's DistillConfig: the preset under the options (and the dataset it starts from, if any)."""
    import dataclasses

    from hades.distillation import preset as make_preset
    from hades.evaluate import EvalProtocol
    from hades.policy import parse_arch

    config = make_preset(preset, env, pairs, seed=seed, learned_labels=learned_labels)
    recipe, extra_archs = config.recipe, config.extra_archs
    if arch is not None:
        archs = [parse_arch(part) for part in arch.split(";") if part.strip()] or [parse_arch(arch)]
        recipe, extra_archs = dataclasses.replace(recipe, arch=archs[0]), tuple(archs[1:])
    if inner_steps is not None:
        recipe = dataclasses.replace(recipe, steps=inner_steps)
    protocol = config.protocol
    if eval_envs is not None or eval_steps is not None:
        protocol = EvalProtocol(protocol.num_envs if eval_envs is None else eval_envs,
                                protocol.num_steps if eval_steps is None else eval_steps, protocol.greedy)
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if population is not None:
        overrides["population_size"] = _population(population)
    overrides.update(recipe=recipe, protocol=protocol, learned_labels=learned_labels or config.learned_labels,
                     extra_archs=extra_archs)
    start = None
    if init_from is not None:
        from hades.registry import open_dataset

        start = open_dataset(init_from)
        overrides["init_from"] = start.sha256
    return make_preset(preset, env, pairs, seed=seed, **overrides), start  # the preset's settings under the options


def _population(text: str) -> int | None:
    """``--population``: a number, or auto (None: sized to the search space)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise SpecError(f"--population must be a number or auto, got {text!r}") from None


def _env_steps(text: str) -> int:
    """``--max-env-steps``: a whole number of at least 1, written plainly or as 50e6."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 1 and value == int(value)):
        raise SpecError(f"--max-env-steps must be a whole number of env steps, at least 1 (e.g. 50e6), got {text!r}")
    return int(value)


def _print_plan(config, out: Path, start, as_json: bool, validation=None, max_env_steps: int | None = None) -> None:
    import json

    from rich.console import Console

    from hades.policy import format_arch
    from hades.runner import Distiller

    plan = Distiller(config, out, start=start, validation=validation, max_env_steps=max_env_steps).plan()
    if as_json:
        print(json.dumps(plan, indent=1))
        return
    actions = {"start": "start a new run", "resume": "continue the checkpoint with --resume",
               "finish": "write the outputs of the finished checkpoint with --resume",
               "refuse": "refuse: " + plan.get("reason", "")}
    checkpoint = plan["checkpoint"]
    held = f", checkpoint at generation {checkpoint['generations']}" if checkpoint else ""
    recipe = config.recipe
    Console().print(
        f"{config.env}, {config.pairs} pairs, {config.method}/{config.strategy}, population {config.population_size}, "
        f"{config.inits_per_generation} init(s) x {config.protocol.num_envs} env(s) x {config.protocol.num_steps} steps "
        f"per candidate\ninner polic{'ies' if config.extra_archs else 'y'} "
        f"{'; '.join(format_arch(arch) for arch in config.architectures)} ({plan['policy_parameters']:,} parameters), "
        f"{recipe.steps} steps\n{plan['env_steps_per_generation']:,} env steps per generation, "
        f"{plan['env_steps_total']:,} for {_describe_length(config, max_env_steps)}\n"
        f"{_describe_validation(validation)}{_describe_restarts(config)}fingerprint {plan['fingerprint']}; {out}{held}: would {actions[plan['action']]}", highlight=False, soft_wrap=True)


def _describe_length(config, max_env_steps: int | None) -> str:
    if max_env_steps is None:
        return f"{config.num_generations} generations"
    return f"at most {config.num_generations} generations, stopping at --max-env-steps {max_env_steps:,}"


def _describe_restarts(config) -> str:
    if not config.restarts:
        return ""
    return (f"restarts: up to {config.restarts}, each after {config.restart_patience} validations without a new best, "
            f"from the best validated mean with {config.restart_factor}x the population\n")


def _describe_validation(validation) -> str:
    if validation is None:
        return ""
    return (f"validation every {validation.every} generations: {validation.seeds} fresh inits x "
            f"{validation.protocol.num_envs} envs x {validation.protocol.num_steps} steps; keeps the best ES mean\n")


def _start_local(processes: int, devices, coordinator, num_processes, process_id):
    """Become process 0 of a run of ``processes`` local processes (see :mod:`hades.localprocs`)."""
    import sys

    from hades.localprocs import core_groups, start_local_processes, without_option

    if coordinator or num_processes is not None or process_id is not None:
        raise MultiHostError("--local-processes starts and joins its own processes: drop --coordinator, "
                             "--num-processes and --process-id (or the HADES_* variables that set them)")
    per_process = devices or min(len(group) for group in core_groups(processes))
    argv = without_option(without_option(sys.argv[1:], "--local-processes"), "--devices")
    run = start_local_processes(processes, [*argv, "--devices", str(per_process)])
    return run.coordinator, processes, 0, per_process


# What a refused start needs to hear from the command line (the library does not know its flags).
_MULTI_HOST_HINT = "every process passes --coordinator HOST:PORT, --num-processes N and its own --process-id"
_FLAG_HINTS = {OutputInUseError: "pass --resume to continue it or pick another --out",
               MissingCheckpointError: "run without --resume to start",
               SettingsMismatchError: "use the same options to resume, or another --out"}


def _run(config, out: Path, resume: bool, checkpoint_every: int, devices, final_seeds: int, final_protocol=None,
         start=None, start_source: str | None = None, validation=None, as_json: bool = False,
         max_env_steps: int | None = None) -> None:
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    import jax

    from hades.api import STAGE_EVALUATE, distill
    from hades.evaluate import EvalProtocol
    from hades.multihost import is_lead_process

    console = Console(stderr=True)
    hosts = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    index, lead = jax.process_index(), is_lead_process()
    columns = (TextColumn("gen"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[stats]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    # On a terminal a live bar; in a log file or CI a plain line after every chunk of generations.
    bar = Progress(*columns, console=console, disable=not console.is_terminal)
    task = None
    spinner = None
    started = time.perf_counter()

    def on_progress(progress):
        nonlocal task
        if task is None:  # the run has started: settings, output folder and checkpoint are good
            console.print(f"distilling {config.env}, {config.pairs} pairs, {config.method}/{config.strategy}, population "
                          f"{config.population_size} on {len(jax.devices())} {jax.default_backend()} device(s){hosts} -> {out}",
                          soft_wrap=True)
            bar.start()
            task = bar.add_task("distill", total=progress.total, stats="compiling")
        stats = f"mean {progress.mean:.1f} best {progress.best:.1f}" if progress.generation else "compiling"
        if progress.validation is not None:
            stats += f" validated {progress.validation:.1f}"
        bar.update(task, completed=progress.generation, total=progress.total, stats=stats)
        if not console.is_terminal and progress.generation:
            console.print(f"gen {progress.generation}/{progress.total} {stats} "
                          f"({time.perf_counter() - started:.0f} s)", highlight=False, soft_wrap=True)

    def on_stage(stage: str):
        nonlocal spinner
        bar.stop()
        if spinner is not None:
            spinner.stop()
        if stage == STAGE_EVALUATE:
            protocol = final_protocol or EvalProtocol()
            text = (f"final evaluation: {final_seeds} fresh inits, recipe from the card, "
                    f"{protocol.num_envs} envs x {protocol.num_steps} steps")
        else:
            text = f"writing {out} (card, fitness.png, states.png, parquet)"
        if console.is_terminal:
            spinner = console.status(text)
            spinner.start()
        elif stage == STAGE_EVALUATE:
            console.print(text, soft_wrap=True)

    if not lead:
        # The other processes compute; process 0 shows progress and writes every file.
        console.print(f"process {index} of {jax.process_count()}: computing its share of the population")
    try:
        result = distill(config, out, resume=resume, checkpoint_every=checkpoint_every, num_devices=devices,
                         final_seeds=final_seeds, final_protocol=final_protocol, start=start, start_source=start_source,
                         validation=validation, on_progress=on_progress if lead else None, on_stage=on_stage,
                         max_env_steps=max_env_steps)
    except tuple(_FLAG_HINTS) as exc:
        raise type(exc)(f"{exc}; {_FLAG_HINTS[type(exc)]}") from None
    finally:
        bar.stop()
        if spinner is not None:
            spinner.stop()
    if not lead:
        Console().print(f"process {index} done")
        return
    selected, evaluation = result.selected, result.evaluation
    if as_json:  # progress went to stderr; stdout holds the result alone
        import json

        print(json.dumps({"out": str(out), "sha256": result.dataset.sha256, "generations": result.generations,
                          "env_steps": result.env_steps, "selected": selected, "evaluation": evaluation}, indent=1))
        return
    summary = f"wrote {out}"
    if selected:
        summary += (f" (the ES mean of generation {selected['generation']}, best of {selected['validations']} "
                    f"validations: {selected['validation_mean']:.1f} ± {selected['validation_std']:.1f})")
    if evaluation:
        summary += f": mean return {evaluation['mean']:.1f} ± {evaluation['std']:.1f} over {final_seeds} inits"
    Console().print(summary)
