"""`hades convert`: import a result pickle of the original HaDES code as a format v1 dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from hades.cli import app


@app.command("convert")
def convert_command(
    pickle_file: Annotated[Path, typer.Argument(metavar="PICKLE", help="A data_final.pkl written by the original HaDES code.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="DIR",
                                                help="Dataset folder to write (default: ./ENV-DPAIRS-seedSEED).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: env, pairs, normalisation, method, out, sha256.")] = False,
) -> None:
    """Convert a published HaDES result pickle into a dataset folder, without running anything from the file.

    Examples:

      hades convert data_final.pkl --out hopper-d4

      hades convert data_final.pkl --json
    """
    from hades.convert import convert

    conversion, target = convert(pickle_file, out)
    dataset = conversion.dataset
    method = dataset.info["method"]
    final = method.get("final_fitness")
    if as_json:
        typer.echo(json.dumps({"env": dataset.env, "backend": dataset.backend, "pairs": dataset.pairs,
                               "normalization": dataset.normalization, "method": method.get("name"),
                               "strategy": method.get("strategy"), "generations": method.get("generations"),
                               "final_fitness": final, "out": str(target), "sha256": dataset.sha256}, indent=1))
        return
    rows = [
        ("env", f"{dataset.env} ({dataset.backend})"),
        ("pairs", str(dataset.pairs)),
        ("normalisation", dataset.normalization),
        ("method", f"{method['name']} ({method['strategy']}, {method.get('generations')} generations)"),
        ("final fitness", f"{final:.1f} (population mean, last generation)" if final is not None else "not recorded"),
        ("out", str(target)),
        ("sha256", dataset.sha256),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        typer.echo(f"{name.ljust(width)}  {value}")
