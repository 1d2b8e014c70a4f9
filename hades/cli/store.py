"""`hades store list|delete|verify|cache`: what the local store and the compile cache hold."""

from __future__ import annotations

import json
from typing import Optional

import typer

from hades.cli import app

store_app = typer.Typer(help="What the local store ($HADES_HOME) holds: list, delete, verify; the compile cache.",
                        no_args_is_help=True)
app.add_typer(store_app, name="store")


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


@store_app.command("list")
def store_list(
    repo: Optional[str] = typer.Argument(None, metavar="[ORG/NAME]", help="Only this repository."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List every stored revision with its refs and size.

    Example: hades store list --json
    """
    from hades.store_contents import held, store_root

    revisions = held(repo)
    if as_json:
        typer.echo(json.dumps([item.to_dict() for item in revisions], indent=1))
        return
    if not revisions:
        typer.echo(f"the store at {store_root()} holds nothing" + (f" of {repo}" if repo else ""))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"store: {store_root()}", title_justify="left")
    for column in ("repository", "type", "hub", "commit", "refs", "size"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for item in revisions:
        table.add_row(item.repo, item.repo_type, item.source, item.commit[:12], ", ".join(item.refs) or "-",
                      _size(item.bytes))
    Console(highlight=False).print(table)
    typer.echo(f"{len(revisions)} revisions, {_size(sum(item.bytes for item in revisions))}")


@store_app.command("delete")
def store_delete(
    repo: str = typer.Argument(..., metavar="ORG/NAME[@REVISION]", help="Repository, optionally one revision (commit, branch or tag)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was deleted as JSON."),
) -> None:
    """Delete a repository's stored revisions (all of them, or the one named after '@').

    Example: hades store delete ORG/hopper-4pairs@v1
    """
    from hades.ids import check_part, check_revision
    from hades.store_contents import delete

    name, _, revision = repo.partition("@")
    parts = name.split("/")
    if len(parts) != 2:
        from hades.errors import SpecError

        raise SpecError(f"expected ORG/NAME[@REVISION], got {repo!r}")
    for part, what in zip(parts, ("organisation", "repository name")):
        check_part(part, what, repo)
    if revision:
        check_revision(revision, repo)
    removed = delete(name, revision or None)
    if as_json:
        typer.echo(json.dumps([item.to_dict() for item in removed], indent=1))
        return
    for item in removed:
        typer.echo(f"deleted {item.repo}@{item.commit[:12]} ({_size(item.bytes)})")


@store_app.command("verify")
def store_verify(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of lines.")) -> None:
    """Re-verify everything the store holds (sha256, format, shapes); exit 1 if anything fails.

    Example: hades store verify --json
    """
    from hades.store_contents import verify_all

    results = verify_all()
    if as_json:
        typer.echo(json.dumps([item.to_dict() for item in results], indent=1))
    else:
        for item in results:
            status = "OK" if item.ok else f"FAILED: {item.problem}"
            typer.echo(f"{item.revision.repo}@{item.revision.commit[:12]}: {status}")
        typer.echo(f"{sum(item.ok for item in results)} of {len(results)} revisions verified")
    if not all(item.ok for item in results):
        raise typer.Exit(1)


@store_app.command("cache")
def store_cache(
    clear: bool = typer.Option(False, "--clear", help="Delete every compiled program."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The persistent compilation cache: where it is and how large ($HADES_XLA_CACHE; 'off' turns it off).

    Examples: hades store cache --json; hades store cache --clear
    """
    from hades.compile_cache import cache_usage, clear_cache

    usage = clear_cache() if clear else cache_usage()
    if as_json:
        typer.echo(json.dumps({**usage.to_dict(), "cleared": clear}, indent=1))
        return
    if usage.folder is None:
        typer.echo("the compilation cache is off (HADES_XLA_CACHE=off)")
        return
    verb = "cleared" if clear else "holds"
    typer.echo(f"{usage.folder} {verb} {usage.entries} compiled programs, {_size(usage.bytes)}")
