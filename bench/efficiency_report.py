"""The reports of ``bench/efficiency.py``: its marks as a CSV, a plot and a markdown table.

Every row is one (recipe, seed, mark) as the runs record it in their ``results.json``; the table
gives the mean ± std over seeds at each mark and the search env steps and wall time until the first
mark at or above 90% / 100% of the paper's figure.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

THRESHOLDS = (0.9, 1.0)
CSV_COLUMNS = ("recipe", "seed", "mark", "generations", "population", "restarts", "search_env_steps",
               "validation_env_steps", "score_env_steps", "wall_seconds", "search_seconds", "score_mean", "score_std")


def collect(out: Path, names: list[str], seeds: list[int]) -> list[dict]:
    rows = []
    for name in names:
        for seed in seeds:
            path = out / name / f"seed{seed}" / "results.json"
            if path.is_file():
                rows.extend(json.loads(path.read_text())["marks"])
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    from hades.formats import atomic_write_bytes

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def _by_recipe(rows: list[dict], names: list[str]) -> dict:
    """recipe -> mark -> [rows, one per seed]."""
    table = {name: {} for name in names}
    for row in rows:
        table.setdefault(row["recipe"], {}).setdefault(row["mark"], []).append(row)
    return table


def plot(path: Path, rows: list[dict], names: list[str], paper: float | None, title: str) -> None:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hades.formats import atomic_write_bytes

    figure = Figure(figsize=(7.2, 4.4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for index, (name, marks) in enumerate(_by_recipe(rows, names).items()):
        if not marks:
            continue
        color = f"C{index % 10}"
        order = sorted(marks)
        steps = [np.mean([row["search_env_steps"] for row in marks[mark]]) for mark in order]
        scores = [[row["score_mean"] for row in marks[mark]] for mark in order]
        axes.plot(steps, [np.mean(values) for values in scores], "o-", color=color, linewidth=1.6, markersize=3,
                  label=f"{name} ({max(len(values) for values in scores)} seeds)")
        axes.fill_between(steps, [min(values) for values in scores], [max(values) for values in scores],
                          color=color, alpha=0.15, linewidth=0)
    if paper is not None:
        axes.axhline(paper, color="black", linestyle="--", linewidth=1.0, label=f"paper ({paper:g})")
    axes.set_xlabel("search env steps")
    axes.set_ylabel("return of the ES mean (fresh inits)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _steps(steps: float) -> str:
    return f"{steps / 1e6:.3g}M" if steps >= 1e6 else f"{steps / 1e3:.3g}k"


def _reach(marks: dict, threshold: float | None) -> str:
    """Search env steps and wall time to the first mark at or above ``threshold``, over the seeds that got there."""
    if threshold is None:
        return "-"
    seeds = {row["seed"] for rows in marks.values() for row in rows}
    reached = []
    for seed in sorted(seeds):
        rows = sorted((row for rows in marks.values() for row in rows if row["seed"] == seed), key=lambda r: r["mark"])
        first = next((row for row in rows if row["score_mean"] >= threshold), None)
        if first is not None:
            reached.append(first)
    if not reached:
        return "not reached"
    steps = sum(row["search_env_steps"] for row in reached) / len(reached)
    hours = sum(row["wall_seconds"] for row in reached) / len(reached) / 3600
    return f"{_steps(steps)}, {hours:.1f} h ({len(reached)}/{len(seeds)} seeds)"


def table(rows: list[dict], names: list[str], marks: list[int], paper: float | None) -> str:
    import numpy as np

    heads = [_steps(mark) for mark in marks]
    reach = [f"{int(fraction * 100)}% of {paper:g}" for fraction in THRESHOLDS] if paper else ["90%", "100%"]
    lines = ["| recipe | " + " | ".join(heads) + " | " + " | ".join(reach) + " |",
             "|---" * (1 + len(heads) + len(reach)) + "|"]
    for name, by_mark in _by_recipe(rows, names).items():
        cells = []
        for mark in marks:
            values = [row["score_mean"] for row in by_mark.get(mark, [])]
            cells.append(f"{np.mean(values):.1f} ± {np.std(values):.1f} ({len(values)})" if values else "")
        cells += [_reach(by_mark, None if paper is None else fraction * paper) for fraction in THRESHOLDS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(out: Path, names: list[str], seeds: list[int], marks: list[int], env: str, pairs: int,
           paper: float | None) -> str:
    from hades.formats import atomic_write_bytes

    rows = collect(out, names, seeds)
    write_csv(out / "efficiency.csv", rows)
    plot(out / "efficiency.png", rows, names, paper, f"{env}, {pairs} pairs")
    text = table(rows, names, marks, paper)
    atomic_write_bytes(out / "efficiency.md", (text + "\n").encode())
    return text
