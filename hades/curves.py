"""Fitness curves of distillation runs, as PNG plots.

A curve comes from a run's fitness.csv (:data:`hades.files.FITNESS_COLUMNS`), a converted run's
(:data:`hades.files.CONVERTED_FITNESS_COLUMNS`), or rows in memory.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hades.errors import FormatError, NotFoundError
from hades.files import FITNESS_CSV, FITNESS_CURVE_COLUMNS
from hades.pictures import write_atomic


def fitness_plot(csv_path_or_rows: str | Path | Iterable[Mapping[str, Any]], path: str | Path,
                 title: str | None = None, validation: Iterable[Mapping[str, Any]] | None = None,
                 selected: int | None = None, reference: float | None = None,
                 reference_label: str = "paper") -> Path:
    """Plot a distillation fitness curve (PNG): the population mean, with max and min when present.

    Takes a CSV file or rows (mappings) with a ``generation`` column and ``mean``, ``max``,
    ``min`` columns: a run's fitness.csv, or the ``mean_fitness``, ``max_fitness`` curves of a
    converted run (:data:`hades.files.FITNESS_CURVE_COLUMNS`).
    ``validation``: rows (generation, mean, std) scoring the ES mean itself with fresh inits,
    drawn as points with error bars; ``selected`` marks the generation the run kept.
    With an ``env_steps`` column the x axis is search env steps (the cost a reader compares runs
    by), else generations. ``reference`` draws a published figure as a horizontal line.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    columns = _fitness_columns(csv_path_or_rows)
    by_steps = "env_steps" in columns
    generation = columns["env_steps"] if by_steps else columns["generation"]

    def at(generations):  # a generation's place on the x axis
        values = np.asarray(generations, dtype=np.float64)
        return np.interp(values, columns["generation"], columns["env_steps"]) if by_steps else values

    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if "min" in columns and "max" in columns:
        axes.fill_between(generation, columns["min"], columns["max"], color="tab:blue", alpha=0.18,
                          linewidth=0, label="population min-max")
    if "max" in columns:
        axes.plot(generation, columns["max"], color="tab:orange", linewidth=1.2, label="max")
    axes.plot(generation, columns["mean"], color="tab:blue", linewidth=1.8, label="mean")
    if "min" in columns:
        axes.plot(generation, columns["min"], color="tab:blue", linewidth=0.8, alpha=0.6, label="min")
    rows = list(validation or [])
    if rows:
        axes.errorbar(at([row["generation"] for row in rows]), [row["mean"] for row in rows],
                      yerr=[row.get("std", 0.0) for row in rows], fmt="o", markersize=3, color="tab:green",
                      elinewidth=0.8, label="ES mean, fresh inits")
    if selected is not None:
        axes.axvline(float(at([selected])[0]), color="tab:green", linestyle="--", linewidth=1.0,
                     label=f"kept (gen {selected})")
    if reference is not None:
        axes.axhline(reference, color="tab:red", linestyle=":", linewidth=1.2, label=f"{reference_label}: {reference:g}")
    axes.set_xlabel("search env steps" if by_steps else "generation")
    axes.set_ylabel("fitness (return)")
    axes.set_title(title or "distillation fitness")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return write_atomic(path, buffer.getvalue())


def _fitness_columns(source) -> dict[str, np.ndarray]:
    where = "fitness rows"
    if isinstance(source, (str, os.PathLike)):
        where = str(source)
        try:
            with open(source, newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except FileNotFoundError:
            raise NotFoundError(f"{where} does not exist; give the {FITNESS_CSV} of a distillation run") from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise FormatError(f"{where} could not be read as CSV: {exc}") from None
    else:
        rows = [dict(row) for row in source]
    if not rows:
        raise FormatError(f"{where} holds no rows; there is no fitness curve to plot")
    keys = {str(key).strip().lower(): key for key in rows[0]}
    found = {}
    for column, aliases in FITNESS_CURVE_COLUMNS.items():
        key = next((keys[alias] for alias in aliases if alias in keys), None)
        if key is None:
            continue
        try:
            values = np.asarray([float(row[key]) for row in rows], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{where}: column {key!r} holds a value that is not a number ({exc})") from None
        found[column] = values
    for required in ("generation", "mean"):
        if required not in found:
            raise FormatError(f"{where} has no {required!r} column (columns: {', '.join(map(str, rows[0]))}); "
                              "expected generation, mean, max, min")
    return found
