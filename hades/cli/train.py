"""`hades train-from` and `hades eval`: thin wrappers over hades.trainfrom and hades.policy_io."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from hades.cli import app
from hades.errors import SpecError


def _progress_bar(label: str):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    # On stderr, and only on a terminal: stdout carries the results (--json), and rich writes a
    # stray newline when a transient display stops on a non-terminal.
    console = Console(stderr=True)
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=True,
                    console=console, disable=not console.is_terminal)


def _check_targets(save: Optional[Path], video: Optional[Path]) -> None:
    """Refuse a --save folder or --video file that cannot be written before spending time on training."""
    from hades.paths import check_output_file, check_output_folder

    if save is not None:
        check_output_folder(save, "--save folder")
    if video is not None:
        check_output_file(video, "--video file", (".gif", ".mp4"))


def _check_seeds(seeds: int, first_seed: int) -> None:
    from hades.limits import MAX_SEED, MAX_SEEDS

    if seeds > MAX_SEEDS:
        raise SpecError(f"--seeds {seeds} is more than the {MAX_SEEDS} policies one run trains side by side")
    if not 0 <= first_seed <= MAX_SEED - seeds + 1:
        raise SpecError(f"--seed must lie in 0..{MAX_SEED - seeds + 1}, got {first_seed}")


def _protocol(spec, envs: int, eval_steps: Optional[int], episodes: Optional[int], greedy: bool):
    from hades.evaluate import EvalProtocol

    try:
        if episodes is not None:
            if eval_steps is not None:
                raise SpecError("give --eval-steps or --episodes, not both")
            return EvalProtocol.for_episodes(spec, episodes, envs, greedy)
        return EvalProtocol(envs, eval_steps or 1024, greedy)
    except ValueError as exc:
        raise SpecError(f"bad evaluation protocol: {exc}") from None


def _recipe(base, arch, lr, steps, loss, max_grad_norm):
    import dataclasses

    from hades.policy import parse_arch

    changes = {}
    if arch is not None:
        changes["arch"] = parse_arch(arch)
    for name, value in (("lr", lr), ("steps", steps), ("loss", loss)):
        if value is not None:
            changes[name] = value
    if max_grad_norm is not None:
        if not max_grad_norm >= 0:  # NaN too
            raise SpecError(f"--max-grad-norm must be 0 (no clipping) or positive, got {max_grad_norm}")
        changes["max_grad_norm"] = None if max_grad_norm == 0 else max_grad_norm
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as exc:
        raise SpecError(f"bad recipe: {exc}") from None


@app.command("train-from")
def train_from_command(
    datasets: List[str] = typer.Argument(..., metavar="DATASET...",
                                         help="Catalogue name, hf://datasets/ORG/NAME[@REV], file:// hub id, or a dataset "
                                              "folder/file; several (one per env) with --multitask."),
    multitask: bool = typer.Option(False, "--multitask", help="Train one policy on the union of the datasets (one per env) "
                                                              "and score it on every env, beside single-task policies."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Policy architecture, e.g. 512,512:tanh or 3x256:relu:lecun. Default: the card's recipe."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate. Default: the card's recipe."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Full-batch gradient steps. Default: the card's recipe."),
    loss: Optional[str] = typer.Option(None, "--loss", help="gaussian_nll, mse or cross_entropy. Default: the card's recipe."),
    max_grad_norm: Optional[float] = typer.Option(None, "--max-grad-norm", help="Global-norm clip (0 disables). Default: the card's recipe."),
    seeds: int = typer.Option(8, "--seeds", min=1, help="Number of fresh policy inits."),
    first_seed: int = typer.Option(0, "--seed", help="First seed; seeds are SEED..SEED+N-1."),
    envs: int = typer.Option(4, "--envs", min=1, help="Evaluation envs per policy."),
    eval_steps: Optional[int] = typer.Option(None, "--eval-steps", min=1, help="Env steps per evaluation (default 1024)."),
    episodes: Optional[int] = typer.Option(None, "--episodes", min=1, help="Evaluate at least this many full episodes per policy instead."),
    greedy: bool = typer.Option(False, "--greedy", help="Act with the mean/argmax instead of sampling."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Brax backend (default: the dataset's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    save: Optional[Path] = typer.Option(None, "--save", help="Write each trained policy (safetensors + model card) under this folder."),
    video: Optional[Path] = typer.Option(None, "--video", metavar="GIF",
                                         help="Write a GIF and an MP4 (same name, .mp4) of the first policy acting; with --save, "
                                              "its folder gets them too."),
):
    """Train fresh policies of any architecture on a dataset and evaluate them in the environment.

    On an image dataset (supervised distillation) it trains fresh classifiers and prints their
    accuracy on the image set's test split.

    Examples:

      hades train-from hopper-4pairs --arch 3x256:relu --seeds 8 --json

      hades train-from hf://datasets/ORG/NAME@v1 --lr 3e-3 --steps 400 --episodes 8 --greedy --save policies/

      hades train-from breakout-16 --video rollout.gif --save policies/

      hades train-from hopper-4pairs walker2d-4pairs halfcheetah-64pairs --multitask --arch 2x256:tanh --steps 400
    """
    from hades.registry import open_dataset
    from hades.trainfrom import train_from

    _check_seeds(seeds, first_seed)
    _check_targets(save, video)
    if multitask or len(datasets) > 1:
        if not multitask:
            raise SpecError(f"train-from takes one dataset, got {len(datasets)}: give --multitask to train one "
                            "policy on all of them")
        from hades.cli.multitask import train_multitask_command

        return train_multitask_command(datasets, (arch, lr, steps, loss, max_grad_norm), seeds, first_seed,
                                       (envs, eval_steps, episodes, greedy), backend, as_json, save, video)
    dataset = datasets[0]
    data = open_dataset(dataset)
    recipe = _recipe(data.recipe, arch, lr, steps, loss, max_grad_norm)
    from hades.measure import is_image_dataset

    if is_image_dataset(data):
        from hades.cli.images import train_from_images_command

        env_options = {"--envs": envs != 4, "--eval-steps": eval_steps is not None, "--episodes": episodes is not None,
                       "--greedy": greedy, "--backend": backend is not None, "--save": save is not None,
                       "--video": video is not None}
        return train_from_images_command(data, dataset, recipe, seeds, first_seed, as_json,
                                         [flag for flag, given in env_options.items() if given])
    if recipe.loss == "cross_entropy" and not data.env_spec.discrete or recipe.loss != "cross_entropy" and data.env_spec.discrete:
        raise SpecError(f"loss {recipe.loss!r} does not fit the {data.env_spec.action_type} actions of {data.env}")
    protocol = _protocol(data.env_spec, envs, eval_steps, episodes, greedy)
    if backend is not None:
        data.env_spec.check_backend(backend)
    with _progress_bar("train-from") as bar:
        task = bar.add_task(f"compiling ({data.env}, {seeds} seeds)", total=seeds)

        def progress(stage, done, total):
            description = "compiling" if stage == "compile" else "training + evaluating"
            bar.update(task, completed=done, description=f"{description} ({data.env}, {total} seeds)")

        result = train_from(data, recipe, protocol, seeds, first_seed, backend=backend,
                            keep_params=save is not None or video is not None, progress=progress, source=dataset)
    report = result.to_dict()
    report["dataset"] = {"id": dataset, "sha256": data.sha256, "pairs": data.pairs}
    replay = {}
    if video is not None:
        replay = _record(data, result, video)
        report["video"], report["video_mp4"] = (str(path) for path in replay.values())
    if save is not None:
        report["saved"] = [str(path) for path in _save_policies(result, save, replay)]
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_table(result, dataset, report)


def _record(data, result, video: Path) -> dict:
    """Record the first policy acting into a GIF and an MP4 (``video`` names one, the other goes beside it)."""
    import sys

    from hades.files import REPLAY_GIF, REPLAY_MP4
    from hades.hubprogress import status
    from hades.render import rollout_gif

    gif, mp4 = (video.with_suffix(".gif"), video) if video.suffix.lower() == ".mp4" else (video, video.with_suffix(".mp4"))
    with status(sys.stderr.isatty(), f"recording seed {result.seeds[0]} acting in {data.env} -> {gif}, {mp4.name}"):
        rollout_gif(data, result, gif, mp4=mp4)
    return {REPLAY_GIF: gif, REPLAY_MP4: mp4}


def _save_policies(result, folder: Path, replay: dict | None = None) -> list[Path]:
    """Every policy under ``folder/seedN``; the first seed's folder gets the ``replay`` files."""
    import shutil

    from hades.errors import HadesError

    created = not folder.exists()
    paths = []
    try:
        for index, seed in enumerate(result.seeds):
            extra = replay if index == 0 else None
            paths.append(result.policy(index).save(folder / f"seed{seed}", extra_files=extra))
    except OSError as exc:
        # Leave nothing half-written: the policies of this run go, and the folder if this run made it.
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise HadesError(f"cannot write the policies under {folder}: {exc.strerror or exc}") from None
    return paths


def _print_table(result, dataset_id: str, report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from hades.policy import format_arch

    protocol = result.protocol
    title = (f"{dataset_id}: {format_arch(result.recipe.arch)}, {result.recipe.loss}, lr {result.recipe.lr}, "
             f"{result.recipe.steps} steps; eval {protocol.num_envs} envs x {protocol.num_steps} steps, "
             f"{'greedy' if protocol.greedy else 'sampled'} actions")
    table = Table()  # the title goes on its own line, whole: a table title wraps to the table's width
    for column in ("seed", "return", "episodes", "final loss"):
        table.add_column(column, justify="right")
    for seed, ret, eps, loss in zip(result.seeds, result.returns, result.episodes, result.final_losses):
        table.add_row(str(seed), f"{ret:.1f}", str(int(eps)), f"{loss:.4f}")
    table.add_section()
    table.add_row("mean ± std", f"{result.mean:.1f} ± {result.std:.1f}", "", "")
    console = Console()
    console.print(title, soft_wrap=True, highlight=False)
    console.print(table)
    timings = result.timings
    console.print(f"compile {timings['compile_s']:.1f} s, train + evaluate {timings['run_s']:.1f} s")
    for path in report.get("saved", []):
        console.print(f"saved {path}")
    if "video" in report:
        console.print(f"video {report['video']}, {report['video_mp4']}")


@app.command("eval")
def eval_command(
    policy: str = typer.Argument(..., metavar="POLICY", help="A policy folder written by train-from --save (or a hub id of one)."),
    runs: int = typer.Option(1, "--runs", min=1, help="Independent evaluations (different env/action noise)."),
    envs: int = typer.Option(4, "--envs", min=1),
    eval_steps: Optional[int] = typer.Option(None, "--eval-steps", min=1),
    episodes: Optional[int] = typer.Option(None, "--episodes", min=1),
    greedy: bool = typer.Option(False, "--greedy", help="Act with the mean/argmax instead of sampling."),
    env: Optional[str] = typer.Option(None, "--env", help="The env to evaluate a multi-task policy on (default: every task)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
):
    """Evaluate a saved policy again.

    Examples:

      hades eval policies/seed0 --runs 4

      hades eval hf://models/ORG/NAME@v1 --episodes 8 --greedy --json

      hades eval multitask/seed0 --env walker2d
    """
    from hades.policy_io import Policy, evaluate_policy
    from hades.registry import resolve

    loaded = Policy.load(resolve(policy))
    if not isinstance(loaded, Policy):  # a multi-task policy
        from hades.cli.multitask import eval_multitask

        return eval_multitask(loaded, policy, env, runs, (envs, eval_steps, episodes, greedy), as_json)
    if env is not None:
        from hades.envs import get_env_spec

        if get_env_spec(env).name != loaded.env:
            raise SpecError(f"{policy} is a {loaded.env} policy; it cannot be evaluated on {get_env_spec(env).name}")
    protocol = _protocol(loaded.env_spec, envs, eval_steps, episodes, greedy)
    with _progress_bar("eval") as bar:
        bar.add_task(f"compiling + evaluating ({loaded.env})", total=None)
        result = evaluate_policy(loaded, protocol, runs)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    from rich.console import Console

    returns = ", ".join(f"{r:.1f}" for r in result.returns)
    Console().print(f"{policy}: mean return {result.mean:.1f} ± {result.std:.1f} over {runs} run(s) [{returns}]")
