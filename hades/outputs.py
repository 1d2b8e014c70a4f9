"""The output folder of a distillation run: the dataset folder, its curves and pictures.

Everything is staged next to the output (the same file system) and moved in at the end, the card
(which holds the checksum) last, so a reader never sees a card naming files that are not there.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from hades.debris import clean_dead, owned_prefix
from hades.dataset import Dataset
from hades.files import (
    CARD_FILE, COMMANDS_COLUMNS, COMMANDS_CSV, FITNESS_COLUMNS, FITNESS_CSV, FITNESS_PLOT, LEGACY_VALIDATION_CSV, STATES_PLOT, VALIDATION_COLUMNS,
    VALIDATION_CSV,
)


def write_csv(path: Path, columns: tuple[str, ...], rows: Iterable[dict]) -> Path:
    """One header row of ``columns``, then ``rows`` (mappings with those keys)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


@contextmanager
def staging_beside(out: Path) -> Iterator[Path]:
    """A scratch folder next to ``out`` (the same file system), named after this process so the next
    writer can remove it if this one is killed; gone afterwards whatever happens."""
    clean_dead(out.parent, ".hades-")  # the staging folder of a run killed while writing its outputs
    with tempfile.TemporaryDirectory(prefix=owned_prefix(".hades-"), suffix=f".{out.name}.staging",
                                     dir=out.parent) as staging:
        yield Path(staging)


def move_in(staged: Path, out: Path) -> None:
    """Move every file of ``staged`` into ``out``, the card (which holds the checksum) last, so a
    reader never sees a card naming files that are not there yet."""
    for item in sorted(staged.iterdir(), key=lambda item: item.name == CARD_FILE):
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)


def paper_figure(dataset: Dataset) -> float | None:
    """The paper's return for the dataset's env, configured size and method (None when it reports none)."""
    from hades.iclr2024 import paper_return

    method = dataset.info.get("method") if isinstance(dataset.info.get("method"), dict) else {}
    pairs = (method.get("config") or {}).get("pairs", dataset.pairs)
    try:
        return paper_return(dataset.env, int(pairs), method.get("name"))
    except (TypeError, ValueError):
        return None


def write_outputs(out: str | Path, dataset: Dataset, history: list[dict], validation_history: list[dict] = (),
                  evaluation: dict | None = None, pictures: bool = True, commands: list[dict] = ()) -> Path:
    """Write the dataset folder (card, fitness.csv, fitness.png, states.png, scores.csv, commands.csv) into ``out``.

    ``history``: the fitness rows (:data:`hades.files.FITNESS_COLUMNS`); ``validation_history``:
    the validation rows, if the run validated; ``commands``: the commands that ran it
    (:data:`hades.files.COMMANDS_COLUMNS`), if known; ``evaluation``: the final evaluation the card
    records. Files of ``out`` the dataset does not name (the checkpoint) are left alone, except
    the ``validation.csv`` of an older run, which ``scores.csv`` replaces.
    """
    from hades.curves import fitness_plot
    from hades.render import RenderError, render_states

    out = Path(out)
    if evaluation is not None:
        dataset = dataset.replace(info={**dataset.info, "evaluation": evaluation})
    out.mkdir(parents=True, exist_ok=True)
    with staging_beside(out) as tmp:
        csv_path = write_csv(tmp / FITNESS_CSV, FITNESS_COLUMNS, history)
        method = dataset.info.get("method") or {}
        selected = method.get("selected") or {}
        plot = fitness_plot(csv_path, tmp / FITNESS_PLOT, validation=validation_history,
                            selected=selected.get("generation"), reference=paper_figure(dataset),
                            title=f"{dataset.env}, {dataset.pairs} pairs, {method.get('name') or 'hades'}")
        extra = {FITNESS_CSV: csv_path, FITNESS_PLOT: plot}
        if validation_history:
            extra[VALIDATION_CSV] = write_csv(tmp / VALIDATION_CSV, VALIDATION_COLUMNS, validation_history)
        if commands:
            extra[COMMANDS_CSV] = write_csv(tmp / COMMANDS_CSV, COMMANDS_COLUMNS, commands)
        if pictures:
            try:
                extra[STATES_PLOT] = render_states(dataset, tmp / STATES_PLOT)
            except RenderError as exc:  # no OpenGL platform here: the card simply has no picture
                warnings.warn(f"{STATES_PLOT} skipped: {exc}", stacklevel=2)
        move_in(dataset.save(tmp / "dataset", parquet=True, extra_files=extra), out)
    if validation_history:
        (out / LEGACY_VALIDATION_CSV).unlink(missing_ok=True)
    return out
