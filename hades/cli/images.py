"""`hades distill IMAGES`: supervised dataset distillation, for an ENV that names an image set.

``hades distill`` hands over here when its ENV is an image set (``digits``, ``fashion-mnist``,
``mnist``, a folder of class folders, an ``.npz``, ``hf://ORG/NAME``); the options keep their
meaning, with the classifier for ``--arch`` (an MLP such as ``128:relu``, or a CNN such as
``c16,128:relu:lecun``). ``--init-from`` takes ``mean`` (each image starts as its class's mean
training image, the default), ``zeros``, or a dataset. The options of environments (rollouts,
normalisation, Brax backends, several hosts) do not apply and are refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hades.errors import SpecError

# Options that only mean something with an environment.
_ENV_ONLY = {"eval_envs": "--eval-envs", "eval_steps": "--eval-steps", "backend": "--backend",
             "max_env_steps": "--max-env-steps",
             "coordinator": "--coordinator", "num_processes": "--num-processes", "process_id": "--process-id"}
# Options whose value goes to the config under another name.
_FIELDS = {"method": "method", "strategy": "strategy", "generations": "num_generations", "inits": "num_inits",
           "sigma": "sigma", "es_lr": "es_lr", "es_lr_decay": "es_lr_decay", "es_lr_floor": "es_lr_floor",
           "sigma_decay": "sigma_decay", "sigma_floor": "sigma_floor", "shaping": "fitness_shaping",
           "restarts": "restarts", "restart_patience": "restart_patience", "restart_factor": "restart_factor"}
# Options the command reads itself, or whose defaults need nothing here.
_HANDLED = {"env", "pairs", "preset", "population", "arch", "inner_steps", "normalization", "learned_labels",
            "init_from", "seed", "out", "resume", "checkpoint_every", "devices", "dry_run", "as_json", "final_seeds",
            "final_eval_envs", "final_eval_steps", "validate_every", "validate_seeds"}


def is_image_task(env: str) -> bool:
    from hades.imagesets import is_image_source

    return is_image_source(env)


def distill_images_command(**options) -> None:
    """The body of ``hades distill`` for an image set; ``options`` are the command's parsed options."""
    from hades.multihost import configure_devices

    _refuse_env_options(options)
    if options.get("as_json") and not options.get("dry_run"):
        raise SpecError("--json only goes with --dry-run (a run reports progress, not JSON)")
    configure_devices(options.get("devices"))
    config = _config(options)
    start, start_source = _start(config, options.get("init_from"))
    if start is not None:
        config = dataclasses.replace(config, init_from=start.sha256)
    validation = None
    validate_every = options.get("validate_every")
    if validate_every is None:
        validate_every = 10 if config.restarts else 0
    if validate_every:
        from hades.validation import Validation

        validation = Validation(validate_every, options.get("validate_seeds") or 8)
    out = options.get("out") or Path(f"{_run_name(config)}-D{config.pairs}-{config.method}-seed{config.seed}")
    if options.get("dry_run"):
        _print_plan(config, out, start, start_source, validation, options.get("as_json"))
        return
    _run(config, out, options, start, start_source, validation)


def _refuse_env_options(options: dict) -> None:
    for name, flag in _ENV_ONLY.items():
        if options.get(name) is not None:
            raise SpecError(f"{flag} does not apply to image datasets: they are scored by classification accuracy")
    if options.get("normalization") not in (None, "none"):
        raise SpecError("--normalization does not apply to image datasets: pixels are scaled to [0, 1]")
    defaults = _declared_defaults()
    for name, value in options.items():
        if name not in _ENV_ONLY and name not in _FIELDS and name not in _HANDLED and value != defaults.get(name):
            raise SpecError(f"--{name.replace('_', '-')} does not apply to image datasets")


def _declared_defaults() -> dict:
    """The defaults ``hades distill`` declares for its options (what a user who did not give one gets)."""
    import inspect

    from hades.cli.distill import distill_command

    return {name: getattr(parameter.default, "default", parameter.default)
            for name, parameter in inspect.signature(distill_command).parameters.items()}


def _config(options: dict):
    from hades.imagetask import image_preset
    from hades.policy import parse_arch

    env, pairs, name = options["env"], options["pairs"], options.get("preset") or "paper"
    seed, learned = options.get("seed") or 0, bool(options.get("learned_labels"))
    config = image_preset(name, env, pairs, seed=seed, learned_labels=learned)
    overrides = {field: options.get(option) for option, field in _FIELDS.items() if options.get(option) is not None}
    population = options.get("population")
    if population is not None:
        text = str(population).strip().lower()
        if text != "auto" and not text.isdigit():
            raise SpecError(f"--population must be a number or auto, got {population!r}")
        overrides["population_size"] = None if text == "auto" else int(text)
    recipe = config.recipe
    if options.get("arch"):
        archs = [parse_arch(part) for part in str(options["arch"]).split(";") if part.strip()]
        recipe = dataclasses.replace(recipe, arch=archs[0])
        if len(archs) > 1:
            overrides["extra_archs"] = tuple(archs[1:])
    if options.get("inner_steps") is not None:
        recipe = dataclasses.replace(recipe, steps=options["inner_steps"])
    return image_preset(name, env, pairs, seed=seed, learned_labels=learned, recipe=recipe, **overrides)


def _start(config, init_from: str | None):
    """The dataset the ES mean starts at, and what to call it: class means unless ``--init-from`` says otherwise."""
    from hades.imagedistill import class_mean_start

    choice = (init_from or "mean").strip()
    if choice.lower() == "zeros":
        return None, None
    if choice.lower() == "mean":
        return class_mean_start(config), "class means"
    from hades.distillation import start_arrays
    from hades.registry import open_dataset

    start = open_dataset(choice)
    start_arrays(config, start)  # a dataset that cannot seed this run fails here, before any work
    return start, choice


def _run_name(config) -> str:
    return Path(config.source).stem if config.source else config.env


def _describe(config, plan: dict, validation) -> str:
    from hades.imagetask import architectures
    from hades.policy import format_arch

    image_set, recipe = config.image_set(), config.recipe
    height, width, channels = image_set.shape
    lines = [
        f"{image_set.source}: {height}x{width}x{channels} images, {image_set.classes} classes; {config.pairs} synthetic "
        f"images, {config.method}/{config.strategy}, population {config.population_size}, "
        f"{config.inits_per_generation} init(s) per candidate",
        f"classifier {'; '.join(format_arch(arch) for arch in architectures(config))} "
        f"({plan['policy_parameters']:,} parameters), {recipe.optimizer} lr {recipe.lr:g}, {recipe.steps} steps",
        f"fitness: {config.fitness} on {config.holdout} held-out training images (seed {config.split_seed}); "
        f"{plan['env_steps_per_generation']:,} classifiers trained per generation, {plan['env_steps_total']:,} "
        f"for {config.num_generations} generations",
    ]
    if validation is not None:
        lines.append(f"validation every {validation.every} generations: {validation.seeds} fresh inits on the "
                     "held-out images; keeps the best ES mean")
    return "\n".join(lines)


def _print_plan(config, out: Path, start, start_source, validation, as_json: bool) -> None:
    import json

    from rich.console import Console

    from hades.runner import Distiller

    plan = Distiller(config, out, start=start, start_source=start_source, validation=validation).plan()
    if as_json:
        print(json.dumps(plan, indent=1))
        return
    action = plan["action"] + (f" ({plan['reason']})" if plan.get("reason") else "")
    if plan["action"] in ("resume", "finish"):
        action += f" with --resume from generation {plan['checkpoint']['generations']}"
    Console().print(f"{_describe(config, plan, validation)}\nES mean starts at {start_source or 'zeros'}; fingerprint "
                    f"{plan['fingerprint']}; {out}: would {action}", highlight=False, soft_wrap=True)


def _run(config, out: Path, options: dict, start, start_source, validation) -> None:
    from rich.console import Console

    import jax

    from hades.api import STAGE_EVALUATE
    from hades.cli.distill import _FLAG_HINTS
    from hades.cli.progress import RunProgress
    from hades.imagedistill import distill_images

    console = Console(stderr=True, highlight=False)
    final_seeds = options.get("final_seeds", 8)

    def headline() -> str:
        return (f"distilling {config.pairs} images of {config.image_set().source}, {config.method}/{config.strategy}, "
                f"population {config.population_size} on {len(jax.devices())} {jax.default_backend()} device(s) -> {out}")

    def stats(progress) -> str:
        text = f"{config.fitness} {progress.mean:.4f} best {progress.best:.4f}"
        return text + (f" validated {progress.validation:.4f}" if progress.validation is not None else "")

    bar = RunProgress(console, config.num_generations, headline, stats)

    def on_stage(stage: str):
        bar.stop()
        if stage == STAGE_EVALUATE:
            console.print(f"final evaluation: test accuracy of {final_seeds} fresh inits, recipe from the card")

    try:
        result = distill_images(config, out, resume=bool(options.get("resume")),
                                checkpoint_every=options.get("checkpoint_every") or 10,
                                num_devices=options.get("devices"), final_seeds=final_seeds, start=start,
                                start_source=start_source, validation=validation, on_progress=bar,
                                on_stage=on_stage)
    except tuple(_FLAG_HINTS) as exc:
        raise type(exc)(f"{exc}; {_FLAG_HINTS[type(exc)]}") from None
    finally:
        bar.stop()
    summary = f"wrote {out}"
    if result.selected:
        selected = result.selected
        summary += (f" (the ES mean of generation {selected['generation']}, best of {selected['validations']} "
                    f"validations: {selected['validation_mean']:.1%} held-out accuracy)")
    if result.evaluation:
        evaluation = result.evaluation
        summary += f": test accuracy {evaluation['mean']:.1%} ± {evaluation['std']:.1%} over {final_seeds} inits"
    Console(highlight=False).print(summary)


def train_from_images_command(data, dataset_id: str, recipe, seeds: int, first_seed: int, as_json: bool,
                              env_flags: list[str]) -> None:
    """``hades train-from`` on an image dataset: fresh classifiers and their test-set accuracy."""
    import json
    import sys

    import typer

    from hades.hubprogress import status
    from hades.imagetask import evaluate_test_accuracy
    from hades.policy import format_arch

    if env_flags:
        raise SpecError(f"{env_flags[0]} does not apply to image datasets: they are scored by test accuracy")
    with status(sys.stderr.isatty(), f"training {seeds} {format_arch(recipe.arch)} classifiers on {dataset_id}"):
        evaluation = evaluate_test_accuracy(data, seeds, recipe, first_seed)
    if as_json:
        report = {**evaluation, "env": data.env, "recipe": recipe.to_dict(),
                  "dataset": {"id": dataset_id, "sha256": data.sha256, "pairs": data.pairs}}
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    protocol = evaluation["protocol"]
    console = Console()
    console.print(f"{dataset_id}: {protocol['classifier']}, {recipe.optimizer} lr {recipe.lr:g}, {recipe.steps} steps; "
                  f"test accuracy on {protocol['test_images']} images ({protocol['test_split']})",
                  soft_wrap=True, highlight=False)
    table = Table()
    for column in ("seed", "test accuracy"):
        table.add_column(column, justify="right")
    for seed, accuracy in zip(evaluation["seeds"], evaluation["accuracies"]):
        table.add_row(str(seed), f"{accuracy:.1%}")
    table.add_section()
    table.add_row("mean ± std", f"{evaluation['mean']:.1%} ± {evaluation['std']:.1%}")
    console.print(table)
