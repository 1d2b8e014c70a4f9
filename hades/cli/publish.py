"""`hades publish` and `hades history`: thin wrappers over hades.publish and hades.history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from hades.cli import app


@app.command("publish")
def publish_command(
    source: str = typer.Argument(..., metavar="SOURCE",
                                 help="A finished run folder, a dataset (folder, file or any id) or a data_final.pkl."),
    name: str = typer.Option(..., "--name", help="Entry name, e.g. hopper-4pairs (no namespace: see --namespace)."),
    version: str = typer.Option(..., "--version", help="Entry version, e.g. 1.6; published versions are immutable."),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="Catalogue namespace, e.g. iclr2024 (ours: none)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Give the card another recipe architecture, e.g. 256,256:tanh."),
    freeze_stats: bool = typer.Option(False, "--freeze-stats",
                                      help="Running normalisation -> constant statistics measured from the dataset's policies."),
    seeds: int = typer.Option(8, "--seeds", min=1, help="Fresh inits per evaluation."),
    eval_envs: int = typer.Option(4, "--eval-envs", min=1, help="Envs per policy (standard: 4)."),
    eval_steps: int = typer.Option(1024, "--eval-steps", min=1, help="Env steps per policy (standard: 1024)."),
    transfer: str = typer.Option("2x64:relu;2x256:tanh;2x512:tanh;3x256:relu", "--transfer",
                                 help="Architectures of the transfer table, ';'-separated ('' for none)."),
    note: Optional[str] = typer.Option(None, "--note", help="A description for the card."),
    catalogue: Optional[Path] = typer.Option(None, "--catalogue", envvar="HADES_REGISTRY",
                                             help="Catalogue folder (default: the bundled one)."),
    no_pictures: bool = typer.Option(False, "--no-pictures", help="Leave the run's pictures out (render them with show --render)."),
    no_parquet: bool = typer.Option(False, "--no-parquet", help="Leave the parquet mirror out."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Measure a dataset under the standard protocol and add it to the catalogue.

    Examples:

      hades publish runs/hopper-4 --name hopper-4pairs --version 1.6

      hades publish data_final.pkl --namespace iclr2024 --name hopper-4pairs-hades-r-seed0 --version 1.0 --no-pictures
    """
    from hades.cli.train import _progress_bar
    from hades.evaluate import EvalProtocol
    from hades.publish import PublishError, publish

    archs = tuple(part.strip() for part in transfer.split(";") if part.strip())
    bar = _progress_bar("publish")
    task = None

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task(stage, total=total)
        bar.update(task, description=stage, completed=done)

    try:
        with bar:
            result = publish(source, name, version, namespace=namespace, arch=arch, freeze_stats=freeze_stats,
                             seeds=seeds, protocol=EvalProtocol(eval_envs, eval_steps), transfer=archs,
                             catalogue=catalogue, description=note, pictures=not no_pictures,
                             parquet=not no_parquet, progress=progress)
    except PublishError as exc:
        if "is a distillation run without outputs" in str(exc):
            raise PublishError(f"{exc} (hades distill ... --out {source} --resume)") from None
        raise
    evaluation = result.evaluation
    if as_json:
        typer.echo(json.dumps({"id": result.id, "sha256": result.sha256, "folder": str(result.folder),
                               "evaluation": evaluation}, indent=1))
        return
    from hades.registry import format_score

    metric = evaluation.get("metric", "return")
    score = format_score(evaluation["mean"], evaluation["std"], metric)
    if metric == "test_accuracy":  # an image dataset
        typer.echo(f"{result.id}: {result.dataset.env}, {result.dataset.pairs} images, test accuracy {score} "
                   f"({len(evaluation['accuracies'])} fresh classifiers)")
    else:
        typer.echo(f"{result.id}: {result.dataset.env}, {result.dataset.pairs} pairs, return {score} "
                   f"({len(evaluation['returns'])} fresh inits)")
    for row in result.architectures:
        typer.echo(f"  {row['arch']}: {format_score(row['mean'], row['std'], metric)}")
    comparison = result.dataset.info.get("paper_comparison")
    if comparison:
        flag = " (more than 10% below)" if comparison["below_recorded_by_over_10_percent"] else ""
        typer.echo(f"  the original run recorded {comparison['recorded_fitness']:.1f}{flag}")
    typer.echo(f"  {result.folder} (sha256 {result.sha256})")


@app.command("history")
def history_command(
    run: Path = typer.Argument(..., metavar="RUN", help="A distillation run folder (its --out)."),
    every: int = typer.Option(100, "--every", min=1, help="Generations per block."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Fitness history of a distillation run, read from its checkpoint (the run need not be finished).

    Example: hades history runs/hopper-4 --every 10
    """
    from hades.history import run_history

    report = run_history(run, every)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
        return
    scored = any(block.validated_mean is not None for block in report.blocks)
    typer.echo(f"{run}: {report.generations} generations, {report.env_steps:,} env steps")
    header = f"{'generations':>11}  {'mean':>7}  {'median':>7}  {'max':>7}  {'s/gen':>6}"
    typer.echo(header + (f"  {'validated (mean, best)':>22}" if scored else ""))
    for block in report.blocks:
        line = (f"{block.first:>5}-{block.last:<5}  {block.mean:7.1f}  {block.median:7.1f}  {block.max:7.1f}  "
                f"{block.seconds_per_generation:6.2f}")
        if block.validated_mean is not None:
            line += f"  {block.validated_mean:10.1f}  {block.validated_best:10.1f}"
        typer.echo(line)
    kept = report.kept
    if kept:
        typer.echo(f"kept: the ES mean of generation {kept['generation']}, {kept['mean']:.1f} ± {kept['std']:.1f} over "
                   f"{kept['seeds']} fresh inits (seeds from {kept['first_seed']}), best of {kept['validations']} validations")
    for index, row in enumerate(report.commands):
        typer.echo(f"{'started' if index == 0 else 'resumed'} at generation {row['generation']}: {row['command']}")
