"""`hades list`, `show`, `pull`, `push` and `verify`: the catalogue, the store and the hubs.

These commands start fast: everything beyond typer is imported inside the command that needs it,
and nothing here imports jax or brax.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from hades.cli import app


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, highlight=False, soft_wrap=False, width=160)  # pipes: do not squeeze tables
    return console


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _fmt_return(evaluation) -> str:
    return "-" if evaluation is None else str(evaluation)


@app.command("list")
def list_command(
    hub: Optional[str] = typer.Option(None, "--hub", metavar="ORG|file:///PATH",
                                      help="List a Hub author's hades datasets (or a directory hub) instead of the catalogue."),
    env: Optional[str] = typer.Option(None, "--env", help="Only datasets for this environment."),
    namespace: Optional[str] = typer.Option(None, "--namespace", metavar="NS",
                                            help="Only this catalogue namespace (iclr2024; 'ours' for our own entries)."),
    method: Optional[str] = typer.Option(None, "--method", help="Only datasets made by this method (hades-r, hades-f)."),
    show_all: bool = typer.Option(False, "--all", help="Every namespace (by default the namespaced entries are counted, not listed)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the bundled datasets (name, where they come from, env, pairs, return, license).

    The catalogue is the one shipped with hades, or the folder named by $HADES_REGISTRY. Our own
    entries are listed; the datasets of other namespaces (the paper's, converted) with --namespace or --all.

    Examples: hades list --namespace iclr2024 --env hopper --method hades-f; hades list --all --json
    """
    env_name = None
    if env is not None:
        from hades.envs import get_env_spec

        env_name = get_env_spec(env).name
    hidden: dict[str, int] = {}
    if hub is not None:
        from hades.hub import list_remote

        rows = [entry.to_dict() for entry in list_remote(hub)]
        title = f"hades datasets on {hub}"
    else:
        from hades.registry import load_catalogue, select_entries

        entries = load_catalogue()
        selected = select_entries(entries, env=env_name, namespace=namespace, method=method)
        if namespace is None and not show_all:
            for entry in selected:
                if entry.namespace:
                    hidden[entry.namespace] = hidden.get(entry.namespace, 0) + 1
            selected = [entry for entry in selected if not entry.namespace]
        rows = [dict(entry.to_dict(), id=entry.id, namespace=entry.namespace or None) for entry in selected]
        title = "bundled catalogue"
    if env_name is not None and hub is not None:
        rows = [row for row in rows if (row.get("env") or "").lower() == env_name.lower()]
    if as_json:
        _print_json(rows)
        return
    console = _console()
    more = "; ".join(f"{count} more in {name}/ (hades list --namespace {name})" for name, count in sorted(hidden.items()))
    if not rows:
        where = f" for {env_name}" if env_name else ""
        hint = "" if hub else " (use `hades list --hub ORG` for a Hub author's datasets)"
        console.print(f"no datasets in the {title}{where}{hint}" + (f"; {more}" if more else ""))
        return
    from rich.table import Table

    from hades.registry import format_score

    table = Table(title=title, title_justify="left")
    columns = ("name" if hub is None else "id", "source", "env", "pairs", "method", "return", "protocol", "license")
    for column in columns:  # ids stay whole; the protocol wraps first
        table.add_column(column, justify="right" if column == "pairs" else "left", no_wrap=column in ("name", "id", "return"),
                         ratio=2 if column == "protocol" else None)
    for row in rows:
        ret = row.get("return")
        shown = "-" if not ret else format_score(ret["mean"], ret["std"], ret.get("metric", "return"))
        table.add_row(row.get("id") or "-", _source(row), row.get("env") or "-",
                      str(row["pairs"]) if row.get("pairs") is not None else "-", row.get("method") or "-", shown,
                      (ret or {}).get("protocol") or "-", row.get("license") or "-")
    console.print(table)
    if more:
        console.print(more)


def _source(row: dict) -> str:
    """Where an entry comes from, in a few words: ours (hades distill) or the namespace it was converted into."""
    if row.get("namespace"):
        return f"{row['namespace']} (converted)"
    return row.get("source") or "hades distill"


@app.command("show")
def show_command(
    name: str = typer.Argument(..., metavar="NAME", help="Catalogue name, hf://datasets/ORG/NAME[@REV], file:///PATH/ORG/NAME or a path."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (card summary and all pairs)."),
    limit: int = typer.Option(32, "--limit", min=1, help="Show at most this many pairs in the table."),
    render: Optional[Path] = typer.Option(None, "--render", metavar="PNG", help="Also draw every synthetic state into this PNG."),
) -> None:
    """Show a dataset's card summary and its state-action pairs.

    Examples:

      hades show hopper-4pairs --render states.png

      hades show hf://datasets/ORG/NAME@v1 --json
    """
    from hades.registry import resolve
    from hades.store import verify_path

    path = resolve(name, progress=sys.stderr.isatty())
    verified = verify_path(path)
    summary = _summary(path)
    if verified.kind != "dataset":
        info = {"id": name, "path": str(path), "kind": verified.kind, "env": verified.env, "sha256": verified.sha256,
                **{key: summary.get(key) for key in ("license", "name")}}
        if as_json:
            _print_json(info)
        else:
            _print_fields(info)
        return
    from hades.dataset import Dataset

    if render is not None:
        from hades.paths import check_output_file

        check_output_file(render, "--render file", (".png",))
    dataset = Dataset.load(path)
    evaluation = summary.get("evaluation")
    info = {
        "id": name, "path": str(path), "kind": "dataset", "name": summary.get("name"), "env": dataset.env,
        "pairs": dataset.pairs, "obs_dim": dataset.env_spec.obs_dim, "action_dim": dataset.env_spec.action_dim,
        "action_type": dataset.env_spec.action_type, "normalization": dataset.normalization,
        "return": None if evaluation is None else evaluation.to_dict(),
        "method": (dataset.info.get("method") or {}).get("name") if isinstance(dataset.info.get("method"), dict) else dataset.info.get("method"),
        "license": summary.get("license"), "sha256": verified.sha256,
    }
    if render is not None:
        from hades.hubprogress import status
        from hades.render import render_states

        with status(sys.stderr.isatty(), f"drawing {dataset.pairs} states into {render}"):
            info["render"] = str(render_states(dataset, render))
    if as_json:
        _print_json(dict(info, states=dataset.states.tolist(), actions=dataset.actions.tolist()))
        return
    shown = dict(info)
    shown["return"] = "-" if evaluation is None else f"{_fmt_return(evaluation)} ({evaluation.protocol or 'protocol not stated'})"
    _print_fields(shown)
    _print_pairs(dataset, limit)


def _summary(path) -> dict:
    from pathlib import Path

    from hades.registry import card_summary

    if not Path(path).is_dir():
        return {}
    from hades.formats import read_card

    _, card = read_card(Path(path))
    return card_summary(card)


def _print_fields(info: dict) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in info.items():
        if value is not None:
            table.add_row(key, str(value))
    _console().print(table)


def _print_pairs(dataset, limit: int) -> None:
    import numpy as np
    from rich.table import Table

    max_dims = 12
    obs_dim = dataset.states.shape[1]
    table = Table(title=f"pairs ({min(limit, dataset.pairs)} of {dataset.pairs})", title_justify="left")
    table.add_column("#", justify="right")
    for index in range(min(obs_dim, max_dims)):
        table.add_column(f"s{index}", justify="right")
    if obs_dim > max_dims:
        table.add_column(f"… ({obs_dim - max_dims} more)")
    if dataset.actions.ndim == 1:
        table.add_column("label", justify="right", style="bold")
    else:
        for index in range(dataset.actions.shape[1]):
            table.add_column(f"a{index}", justify="right", style="bold")
    for row in range(min(limit, dataset.pairs)):
        cells = [str(row)] + [f"{x:.3f}" for x in dataset.states[row][:max_dims]]
        if obs_dim > max_dims:
            cells.append("…")
        action = dataset.actions[row]
        cells += [str(int(action))] if np.ndim(action) == 0 else [f"{x:.3f}" for x in action]
        table.add_row(*cells)
    _console().print(table)


@app.command("pull")
def pull_command(
    name: str = typer.Argument(..., metavar="NAME", help="Catalogue name, hf://datasets/ORG/NAME[@REV] or file:///PATH/ORG/NAME[@REV]."),
    force: bool = typer.Option(False, "--force", help="Download again even if the store holds this revision."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: id, path, kind, sha256, env, pairs."),
) -> None:
    """Fetch a dataset (or policy) into the local store, verify it, and print its local path.

    The store is $HADES_HOME (default: the user cache folder). Hub access follows HF_ENDPOINT,
    HF_TOKEN and HF_HUB_OFFLINE; bundled datasets need no network. hf://ORG/NAME (without
    datasets/ or models/) looks for a dataset repository first, then a model one.

    Examples:

      hades pull hopper-4pairs@1.5

      hades pull hf://datasets/ORG/NAME@v1 --json

      hades pull file:///srv/hub/ORG/NAME
    """
    if as_json:
        from hades.api import pull

        _print_json(pull(name, force=force, progress=sys.stderr.isatty()).to_dict())
        return
    from hades.registry import resolve

    path = resolve(name, force=force, progress=sys.stderr.isatty())
    sys.stdout.write(f"{path}\n")


@app.command("push")
def push_command(
    folder: str = typer.Argument(..., metavar="DIR", help="A dataset or policy folder (tensor file + README.md card)."),
    to: str = typer.Option(..., "--to", metavar="hf://datasets/ORG/NAME",
                           help="Where to push: hf://datasets/ORG/NAME (a policy: hf://models/ORG/NAME) or file:///PATH/ORG/NAME."),
    private: bool = typer.Option(False, "--private", help="Create the Hub repository as private."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Tag the new revision."),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="Commit message."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: id, commit, kind, tag_id, url."),
) -> None:
    """Push a verified folder to a hub as one commit; prints the id pinned to the new revision.

    A dataset goes with its parquet mirror (data/train.parquet), written afresh from its tensors.

    Examples:

      hades push runs/hopper-4 --to hf://datasets/ORG/hopper-4pairs --tag v1

      hades push policies/seed0 --to hf://models/ORG/hopper-policy --json

      hades push runs/hopper-4 --to file:///srv/hub/ORG/hopper-4pairs
    """
    from hades.hub import push

    result = push(folder, to, private=private, tag=tag, message=message, progress=sys.stderr.isatty())
    if as_json:
        from dataclasses import asdict

        _print_json(asdict(result))
        return
    sys.stdout.write(f"{result.id}\n")
    if result.tag_id:
        sys.stdout.write(f"{result.tag_id}\n")


@app.command("verify")
def verify_command(
    name: str = typer.Argument(..., metavar="NAME|PATH", help="A catalogue name, hub id or local path."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: ok, id, path, kind, sha256, env, pairs."),
) -> None:
    """Re-check sha256, format, shapes and finite values; prints OK or exits 1.

    Examples:

      hades verify hopper-4pairs

      hades verify ./my-dataset --json
    """
    from hades.ids import parse_id
    from hades.registry import resolve_id
    from hades.store import verify_path

    did = parse_id(name)
    path = resolve_id(did, progress=sys.stderr.isatty())
    verified = verify_path(path)
    if as_json:
        from hades.api import PullResult

        _print_json({"ok": True, **PullResult.from_verified(name, verified).to_dict()})
        return
    sys.stdout.write(f"OK {path} ({verified.summary()})\n")
