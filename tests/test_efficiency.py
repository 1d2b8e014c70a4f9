"""bench/efficiency.py at toy size, in-process: a score at every mark, the CSV, plot and table, and a
second invocation that resumes instead of redoing (nothing when everything is done)."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "efficiency.py"
TINY = {"tiny": {"preset": "cpu", "population_size": 8, "num_inits": 1, "inner_steps": 5, "arch": "16,16:tanh",
                 "eval_envs": 1, "eval_steps": 50}}  # 400 env steps per generation


def _bench():
    spec = importlib.util.spec_from_file_location("efficiency", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _rows(out: Path) -> list[dict]:
    with open(out / "efficiency.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_efficiency_scores_every_mark_reports_and_resumes(tmp_path, capsys):
    efficiency = _bench()
    recipes, out = tmp_path / "recipes.json", tmp_path / "out"
    recipes.write_text(json.dumps(TINY))
    argv = ["--env", "hopper", "--pairs", "4", "--recipes-file", str(recipes), "--recipes", "tiny", "--seeds", "0",
            "--score-seeds", "2", "--score-envs", "1", "--score-steps", "50", "--checkpoint-every", "1",
            "--out", str(out)]
    two_generations = argv + ["--budget", "800", "--marks", "400,800"]

    assert efficiency.main(two_generations + ["--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "tiny: open_es, population 8, 1 init(s) x 1 arch(s) x 1 env(s) x 50 steps" in plan
    assert "400 env steps per generation, about 2 generations" in plan and "left to search: 800 env steps" in plan
    assert not out.exists()

    assert efficiency.main(two_generations) == 0
    printed = capsys.readouterr().out
    rows = _rows(out)
    assert [(row["recipe"], int(row["mark"]), int(row["generations"]), int(row["search_env_steps"])) for row in rows] == [
        ("tiny", 400, 1, 400), ("tiny", 800, 2, 800)]
    assert all(math.isfinite(float(row["score_mean"])) and float(row["wall_seconds"]) > 0 for row in rows)
    assert [int(row["score_env_steps"]) for row in rows] == [100, 200] and {row["validation_env_steps"] for row in rows} == {"0"}
    assert (out / "efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "efficiency.md").read_text()
    assert table.splitlines()[0].startswith("| recipe |") and "90% of 1745" in table and "| tiny |" in table
    assert "not reached" in table and table.strip() in printed

    # Everything done: a second invocation reports again and runs nothing.
    checkpoint = out / "tiny" / "seed0" / "run" / "checkpoint" / "state.msgpack"
    before = checkpoint.read_bytes()
    assert efficiency.main(two_generations) == 0
    assert checkpoint.read_bytes() == before and _rows(out) == rows
    capsys.readouterr()

    # --report prints the table of what is recorded, even for marks not reached yet, and runs nothing.
    assert efficiency.main(argv + ["--budget", "1200", "--marks", "400,800", "--report"]) == 0
    partial = capsys.readouterr().out
    assert checkpoint.read_bytes() == before and _rows(out) == rows
    assert partial.splitlines()[0].startswith("| recipe | 0.4k | 0.8k | 1.2k |") and "(1) |  |" in partial

    # A larger budget resumes the run from its checkpoint and keeps the marks already scored.
    assert efficiency.main(argv + ["--budget", "1200", "--marks", "400,800"]) == 0
    extended = _rows(out)
    assert extended[:2] == rows and [int(row["generations"]) for row in extended] == [1, 2, 3]
    assert "tiny seed 0: 1,200 env steps (gen 3)" in capsys.readouterr().out


def test_a_run_that_restarts_stops_at_the_mark_instead_of_overshooting_it(tmp_path, monkeypatch):
    from hades.runner import Distiller

    # Every validation asks for a restart while one is left: the population doubles after generation 1.
    monkeypatch.setattr(Distiller, "_stale", lambda self: len(self.restarts) < self.config.restarts)
    efficiency = _bench()
    restarting = {"tiny-restart": {"preset": "fast", "population_size": 8, "num_inits": 1, "inner_steps": 5,
                                   "arch": "16,16:tanh", "eval_envs": 1, "eval_steps": 50, "restarts": 1,
                                   "validate_every": 1, "validate_seeds": 1, "keep_best": True}}
    recipes, out = tmp_path / "recipes.json", tmp_path / "out"
    recipes.write_text(json.dumps(restarting))
    assert efficiency.main(["--env", "hopper", "--pairs", "4", "--recipes-file", str(recipes), "--recipes",
                            "tiny-restart", "--seeds", "0", "--score-seeds", "1", "--score-envs", "1",
                            "--score-steps", "50", "--checkpoint-every", "1", "--budget", "2000",
                            "--marks", "2000", "--out", str(out)]) == 0
    # Planned at 400 env steps a generation, the mark is 5 generations away; after the restart a
    # generation costs 800, so the mark falls at generation 3 (400 + 800 + 800), where the run stops.
    [row] = _rows(out)
    assert (int(row["generations"]), int(row["search_env_steps"]), int(row["restarts"])) == (3, 2000, 1)


def _committed_comparisons() -> list[Path]:
    return sorted(path.parent for path in (BENCH.parent / "efficiency").glob("*/efficiency.md"))


def test_every_committed_comparison_table_is_its_results_and_the_readme_quotes_it():
    """The tables in the README are what ``--report`` prints from the committed results, not typed in."""
    _bench()  # puts bench/ on the path for its report module
    import efficiency_report

    readme = (BENCH.parents[1] / "README.md").read_text(encoding="utf-8")
    comparisons = _committed_comparisons()
    assert comparisons
    for out in comparisons:
        text = (out / "efficiency.md").read_text(encoding="utf-8").strip()
        head, _, *lines = text.splitlines()
        columns = [cell.strip() for cell in head.strip("|").split("|")]
        marks = [int(float(cell[:-1]) * (1e6 if cell.endswith("M") else 1e3)) for cell in columns[1:-2]]
        paper = float(columns[-1].split(" of ")[1])
        names = [line.strip("|").split("|")[0].strip() for line in lines]
        seeds = sorted({int(path.name[4:]) for path in out.glob("*/seed*") if path.is_dir()})
        rows = efficiency_report.collect(out, names, seeds)
        assert rows, out
        assert efficiency_report.table(rows, names, marks, paper) == text, out
        assert [(row["recipe"], int(row["seed"]), int(row["mark"])) for row in _rows(out)] == [
            (row["recipe"], row["seed"], row["mark"]) for row in rows], out
        assert text in readme, f"the README does not quote {out.name}'s table as --report printed it"
