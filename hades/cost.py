"""What a distillation run cost, read from its folder: the env steps and seconds of the search and
of the validations that chose its output.

The numbers come from the run's own records (``fitness.csv``, ``scores.csv`` and the card's
account of the selection), so a run stopped, resumed and published later still reports all of it;
:func:`hades.publish.publish` puts them on the entry's card. Seconds are the runner's clock on the
machine that ran each chunk: compile time included, the final evaluation and anything between
resumptions not.
"""

from __future__ import annotations

import csv
from pathlib import Path

from hades.errors import FormatError


def _rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FormatError(f"{path} could not be read as CSV: {exc}") from None


def _seed_count(seeds) -> int | None:
    """``"1000000-1000007"`` (how a card names the validation seeds) -> 8."""
    try:
        first, last = (int(part) for part in str(seeds).split("-"))
    except ValueError:
        return None
    return last - first + 1 if last >= first else None


def run_cost(fitness_csv: str | Path, scores_csv: str | Path | None = None, method: dict | None = None) -> dict | None:
    """The cost of the run whose ``fitness.csv`` and ``scores.csv`` (None or missing: no validation)
    are given; None when the fitness file is not a runner's (no env steps and seconds per generation).

    ``method``: the dataset's ``method`` section, whose ``selected`` names the validation seeds and
    protocol (without it the validation env steps are not counted).
    """
    rows = _rows(Path(fitness_csv))
    if not rows or "env_steps" not in rows[0] or "seconds" not in rows[0]:
        return None  # a converted run's curves: no cost recorded
    try:
        search_steps = int(float(rows[-1]["env_steps"]))
        search_seconds = sum(float(row["seconds"]) for row in rows)
    except (TypeError, ValueError):
        return None
    cost = {"generations": len(rows), "search_env_steps": search_steps, "search_seconds": round(search_seconds, 1)}
    validations = _rows(Path(scores_csv)) if scores_csv is not None and Path(scores_csv).is_file() else []
    cost["validations"] = len(validations)
    selected = (method or {}).get("selected") or {}
    protocol = selected.get("protocol") or {}
    seeds = _seed_count(selected.get("seeds"))
    if not validations:
        cost["validation_env_steps"] = 0
    elif seeds and isinstance(protocol.get("num_envs"), int) and isinstance(protocol.get("num_steps"), int):
        cost["validation_env_steps"] = len(validations) * seeds * protocol["num_envs"] * protocol["num_steps"]
    seconds = [row.get("seconds") for row in validations]
    if all(seconds):  # every validation timed (older runs did not record it)
        cost["validation_seconds"] = round(sum(float(value) for value in seconds), 1)
        cost["wall_seconds"] = round(search_seconds + cost["validation_seconds"], 1)
    return cost
