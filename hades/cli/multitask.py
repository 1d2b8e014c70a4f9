"""`hades train-from A B ... --multitask` and `hades eval` of a multi-task policy: thin wrappers
over hades.multitask and hades.multitask_policy (the commands themselves live in hades.cli.train)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from hades.cli.train import _progress_bar, _protocol, _recipe, _save_policies
from hades.errors import SpecError


def train_multitask_command(datasets: list[str], recipe_options: tuple, seeds: int, first_seed: int,
                            protocol_options: tuple, backend: Optional[str], as_json: bool,
                            save: Optional[Path], video: Optional[Path]) -> None:
    """Train one policy per seed on every dataset at once; score it on each env beside single-task
    policies trained with the same recipe (the first dataset's, with the options applied) and seeds."""
    from hades.multitask import check_tasks, train_multitask
    from hades.registry import open_dataset

    if video is not None:
        raise SpecError("--video records single-task policies; drop it with --multitask")
    opened = [open_dataset(dataset) for dataset in datasets]
    check_tasks(opened, datasets)
    recipe = _recipe(opened[0].recipe, *recipe_options)
    longest = max((data.env_spec for data in opened), key=lambda spec: spec.episode_length)
    protocol = _protocol(longest, *protocol_options)
    with _progress_bar("train-from --multitask") as bar:
        task = bar.add_task(f"training ({seeds} seeds)", total=1 + 2 * len(opened))

        def progress(stage, done, total):
            bar.update(task, completed=done, description=f"{stage} ({seeds} seeds)")

        # the recipe, the backend and the action types are checked before any training
        result = train_multitask(opened, recipe, protocol, seeds, first_seed, backend=backend,
                                 keep_params=save is not None, progress=progress, sources=datasets)
    report = result.to_dict()
    if save is not None:
        report["saved"] = [str(path) for path in _save_policies(result, save)]
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_table(result, report)


def _print_table(result, report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from hades.policy import format_arch

    recipe, protocol, layout = result.recipe, result.protocol, result.layout
    names = [record["dataset"]["id"] for record in report["multitask"]["tasks"]]
    title = (f"multi-task policy on {' + '.join(names)}: {format_arch(recipe.arch)}, {recipe.loss}, lr {recipe.lr}, "
             f"{recipe.steps} steps; eval {protocol.num_envs} envs x {protocol.num_steps} steps, "
             f"{'greedy' if protocol.greedy else 'sampled'} actions; {len(result.seeds)} seeds")
    table = Table()
    for column, justify in (("env", "left"), ("dataset", "left"), ("obs/act", "right"), ("normalisation", "left"),
                            ("multi-task", "right"), ("single-task", "right")):
        table.add_column(column, justify=justify)
    for index, (name, task) in enumerate(zip(names, layout.tasks)):
        spec = task.spec
        single = result.single_task[index] if result.single_task else None
        table.add_row(task.env, name, f"{spec.obs_dim}/{spec.action_dim}", task.normalization,
                      f"{result.means[task.env]:.1f} ± {result.stds[task.env]:.1f}",
                      f"{single.mean:.1f} ± {single.std:.1f}" if single else "")
    console = Console(soft_wrap=True)
    if not console.is_terminal:  # a file or a pipe: wide enough that no cell wraps
        console.width = max(console.width, 120)
    console.print(title)
    console.print(table)
    console.print(f"inputs: obs zero-padded to {layout.obs_padding} + a {len(layout.tasks)}-value task indicator "
                  f"= {layout.input_dim}; head {layout.head_dim} (each env takes its first action dims)")
    timings = result.timings
    console.print(f"multi-task: train {timings['train_s']:.1f} s, evaluate {timings['evaluate_s']:.1f} s; "
                  f"single-task {timings.get('single_task_s', 0.0):.1f} s (compile included)")
    for path in report.get("saved", []):
        console.print(f"saved {path}")


def eval_multitask(policy, name: str, env: Optional[str], runs: int, protocol_options: tuple, as_json: bool) -> None:
    """Evaluate a multi-task policy on one of its envs (``env``) or on every one."""
    indices = [policy.layout.index(env)] if env is not None else range(len(policy.layout.tasks))
    results = []
    with _progress_bar("eval") as bar:
        for index in indices:
            task = policy.layout.tasks[index]
            bar.add_task(f"compiling + evaluating ({task.env})", total=None)
            results.append(policy.evaluate(task.env, _protocol(task.spec, *protocol_options), runs))
    if as_json:
        typer.echo(json.dumps({"tasks": [{"env": result.env, **result.to_dict()} for result in results]}, indent=2))
        return
    from rich.console import Console

    console = Console(soft_wrap=True)
    for result in results:
        returns = ", ".join(f"{r:.1f}" for r in result.returns)
        console.print(f"{name} on {result.env}: mean return {result.mean:.1f} ± {result.std:.1f} over {runs} run(s) "
                      f"[{returns}]")
