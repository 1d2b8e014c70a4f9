"""``hades distill``: the CLI end to end, learning, resuming bit for bit, methods, strategies and bad settings.

Compiling one generation program costs tens of seconds on a small CPU, so the tests share them: one
module-scoped run backs the learning and resume tests (the resumed runs load its program from the
suite's persistent compilation cache, see conftest.py), and the CLI test compiles its own run once.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from conftest import run_cli, tiny_recipe

import hades
from hades.checkpoint import checkpoint_file, load_checkpoint, read_history, read_validation, restore_checkpoint
from hades.distillation import (DistillConfig, default_train_batch, fixed_labels, make_fitness, make_generation, make_strategy,
                                policy_param_count, preset, solution_layout, start_arrays)
from hades.errors import (CheckpointError, MissingCheckpointError, MultiHostError, OutputInUseError, SettingsMismatchError, SpecError,
                          UnknownEnvError)
from hades.evaluate import EvalProtocol
from hades.files import COMMANDS_CSV, FITNESS_COLUMNS, FITNESS_CSV, VALIDATION_CSV
from hades.history import run_history
from hades.multihost import initialize_distributed
from hades.provenance import command_line
from hades.runner import Distiller
from hades.trainfrom import train_from
from hades.validation import VALIDATION_FIRST_SEED, Validation

TINY_CLI = ["--preset", "cpu", "--population", "8", "--inner-steps", "20", "--arch", "16,16:tanh",
            "--eval-envs", "2", "--eval-steps", "50"]


def _front_matter(card: Path) -> dict:
    return yaml.safe_load(card.read_text(encoding="utf-8").split("---\n", 2)[1])


def _without_timing(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "seconds"} for row in history]


# -- the CLI, end to end ---------------------------------------------------------------------------

def test_cli_distills_a_dataset_that_train_from_loads(tmp_path):
    out = tmp_path / "hopper-run"
    result = run_cli("distill", "hopper", "--pairs", "4", *TINY_CLI, "--generations", "4", "--checkpoint-every", "2",
                     "--final-seeds", "2", "--final-eval-envs", "2", "--final-eval-steps", "50", "--out", out)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.replace("\n", "")  # rich wraps long lines where there is no terminal
    assert printed.startswith(f"wrote {out}") and "mean return" in printed and "over 2 inits" in printed

    for name in ("dataset.safetensors", "README.md", "fitness.csv", "fitness.png", "data/train.parquet",
                 "checkpoint/state.msgpack"):
        assert (out / name).is_file(), name
    assert (out / "fitness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [path.name for path in tmp_path.iterdir()] == ["hopper-run"]  # nothing staged is left behind

    # fitness.csv: the documented columns, one row per generation
    with open(out / "fitness.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == FITNESS_COLUMNS == (
            "generation", "mean", "max", "min", "sigma", "episodes", "env_steps", "seconds")
        rows = list(reader)
    assert [int(row["generation"]) for row in rows] == [1, 2, 3, 4]
    steps_per_generation = 8 * 2 * 2 * 50  # population x inits (cpu preset) x envs x steps
    assert [int(row["env_steps"]) for row in rows] == [steps_per_generation * g for g in (1, 2, 3, 4)]
    for row in rows:
        low, mean, high = float(row["min"]), float(row["mean"]), float(row["max"])
        assert all(math.isfinite(x) for x in (low, mean, high)) and low <= mean <= high
        assert math.isclose(float(row["sigma"]), 0.03, rel_tol=1e-5)  # OpenES, constant sigma
        assert int(row["episodes"]) >= 0 and float(row["seconds"]) >= 0

    # the dataset: format v1, verified on load, with method, provenance, fitness summary and evaluation
    dataset = hades.Dataset.load(out)
    assert dataset.env == "hopper" and dataset.normalization == "running"
    assert dataset.states.shape == (4, 11) and dataset.actions.shape == (4, 3)
    assert np.isfinite(dataset.states).all() and np.isfinite(dataset.actions).all()
    meta = _front_matter(out / "README.md")["hades"]
    assert meta["format_version"] == 1 and meta["sha256"] == dataset.sha256
    method = meta["method"]
    assert (method["name"], method["strategy"], method["preset"]) == ("hades-r", "open_es", "cpu")
    assert method["generations"] == 4 and method["population_size"] == 8 and method["inits_per_generation"] == 2
    assert method["env_steps"] == 4 * steps_per_generation
    assert method["final_population_mean_fitness"] == pytest.approx(float(rows[-1]["mean"]))
    assert method["best_population_mean_fitness"] == pytest.approx(max(float(row["mean"]) for row in rows))
    config = DistillConfig.from_dict(method["config"])
    assert config.population_size == 8 and config.num_generations == 4
    assert config.recipe.arch.hidden == (16, 16) and config.recipe.steps == 20
    assert (config.protocol.num_envs, config.protocol.num_steps) == (2, 50)
    assert meta["recipe"] == config.recipe.to_dict()  # the default recipe of train-from
    provenance = meta["provenance"]
    assert provenance["seed"] == 0 and "jax" in provenance["versions"] and "evosax" in provenance["versions"]
    assert provenance["command"].startswith("hades distill hopper --pairs 4")
    evaluation = meta["evaluation"]
    assert evaluation["protocol"]["num_envs"] == 2 and evaluation["protocol"]["num_steps"] == 50
    assert evaluation["seeds"] == [0, 1] and len(evaluation["returns"]) == 2
    assert evaluation["mean"] == pytest.approx(float(np.mean(evaluation["returns"])), abs=0.02)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Method" in card and "## Evaluation" in card

    # train-from loads it, with the card's recipe by default
    trained = run_cli("train-from", out, "--steps", "20", "--seeds", "2", "--envs", "2", "--eval-steps", "50", "--json")
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["dataset"]["sha256"] == dataset.sha256
    assert report["recipe"]["arch"]["hidden"] == [16, 16] and len(report["returns"]) == 2
    assert all(math.isfinite(r) for r in report["returns"])

    # the finished folder is not overwritten by a fresh run, nor resumed with other settings
    again = run_cli("distill", "hopper", "--pairs", "4", *TINY_CLI, "--generations", "4", "--out", out)
    assert again.returncode == 1 and "already exists and is not empty" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr
    other = run_cli("distill", "hopper", "--pairs", "4", *TINY_CLI, "--generations", "4", "--sigma", "0.05",
                    "--resume", "--out", out)
    assert other.returncode == 1 and "other settings" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    assert hades.Dataset.load(out).sha256 == dataset.sha256

    # --dry-run says what a command would do with the folder, and runs nothing
    def plan(*extra, target=out):
        result = run_cli("distill", "hopper", "--pairs", "4", *TINY_CLI, *extra, "--out", target, "--dry-run", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    finished, longer, changed = plan("--generations", "4"), plan("--generations", "6"), plan("--generations", "4", "--sigma", "0.05")
    assert finished["action"] == "finish" and finished["checkpoint"]["generations"] == 4
    assert longer["action"] == "resume" and longer["env_steps_total"] == 6 * longer["env_steps_per_generation"] == 6 * 8 * 2 * 2 * 50
    assert changed["action"] == "refuse" and changed["checkpoint"]["matches"] is False
    assert plan("--generations", "4", target=tmp_path / "fresh")["action"] == "start"
    assert not (tmp_path / "fresh").exists()
    text = run_cli("distill", "hopper", "--pairs", "4", *TINY_CLI, "--generations", "6", "--out", out, "--dry-run")
    assert text.returncode == 0 and "checkpoint at generation 4: would continue" in text.stdout


# -- learning and resuming: one compiled program, shared through the persistent cache ---------------

LEARN_GENERATIONS = 16
LEARN_CHUNK = 4


def learning_config(**overrides) -> DistillConfig:
    """Cheap enough to compile once and run in seconds, yet learning within a few generations."""
    from hades.learn import Recipe
    from hades.policy import PolicySpec

    recipe = Recipe(PolicySpec((16, 16), "tanh"), "gaussian_nll", 0.03, 20, 0.5)
    settings = dict(population_size=32, num_inits=2, num_generations=LEARN_GENERATIONS, recipe=recipe,
                    protocol=EvalProtocol(1, 100, episode_length=100), seed=0)
    settings.update(overrides)
    return preset("cpu", "inverted_double_pendulum", 4, **settings)


@pytest.fixture(scope="module")
def learning_run(tmp_path_factory):
    """``(config, distiller, dataset)`` of one uninterrupted run, in chunks of LEARN_CHUNK generations."""
    config = learning_config()
    distiller = Distiller(config, tmp_path_factory.mktemp("learn") / "run", checkpoint_every=LEARN_CHUNK, num_devices=1)
    dataset = distiller.run()
    return config, distiller, dataset


def test_fitness_improves_over_generations(learning_run):
    _, distiller, dataset = learning_run
    means = [row["mean"] for row in distiller.history]
    assert len(means) == LEARN_GENERATIONS and all(math.isfinite(m) for m in means)
    first, last = float(np.mean(means[:3])), float(np.mean(means[-3:]))
    assert last > first * 1.25, means
    assert dataset.info["method"]["best_population_mean_fitness"] == max(means)


def test_resume_ends_bit_for_bit_where_an_uninterrupted_run_ends(learning_run, tmp_path, monkeypatch):
    config, full, full_dataset = learning_run
    out = tmp_path / "run"
    started_by = command_line()
    # interrupted after the first checkpoint ...
    first = Distiller(dataclasses.replace(config, num_generations=LEARN_CHUNK), out, LEARN_CHUNK, num_devices=1)
    first.run()
    assert (out / "checkpoint" / "state.msgpack").is_file() and len(first.history) == LEARN_CHUNK
    # ... then resumed to the end: num_generations is not part of the fingerprint
    assert config.fingerprint() == dataclasses.replace(config, num_generations=LEARN_CHUNK).fingerprint()
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--resume"])  # as `hades distill ... --resume` would be
    resumed = Distiller(config, out, LEARN_CHUNK, num_devices=1)
    progress = []
    dataset = resumed.run(resume=True, on_progress=progress.append)
    assert progress[0].generation == LEARN_CHUNK and progress[-1].generation == LEARN_GENERATIONS

    assert _without_timing(resumed.history) == _without_timing(full.history)
    assert np.array_equal(dataset.states, full_dataset.states) and np.array_equal(dataset.actions, full_dataset.actions)
    # The whole file: the dataset records the command that started the run, not the one that resumed it.
    assert dataset.to_bytes() == full_dataset.to_bytes()
    assert dataset.info["provenance"]["command"] == started_by
    assert resumed.commands == [{"generation": 0, "command": started_by},
                                {"generation": LEARN_CHUNK, "command": command_line()}]
    assert load_checkpoint(out).commands() == resumed.commands
    resumed.write_outputs(dataset, pictures=False)
    with open(out / COMMANDS_CSV, newline="") as handle:
        assert [(int(row["generation"]), row["command"]) for row in csv.DictReader(handle)] == [
            (0, started_by), (LEARN_CHUNK, command_line())]
    assert run_history(out).commands == tuple(resumed.commands)


def test_an_env_step_budget_stops_the_run_and_a_resumed_run_goes_on_as_if_never_stopped(learning_run, tmp_path):
    config, full, full_dataset = learning_run
    per_generation = config.env_steps_per_generation
    budget = 6 * per_generation + 1  # reached by the 7th generation, inside the second chunk of 4
    out = tmp_path / "run"
    stopped = Distiller(config, out, LEARN_CHUNK, num_devices=1, max_env_steps=budget)
    assert stopped.plan()["env_steps_total"] == 7 * per_generation and stopped.plan()["action"] == "start"
    progress = []
    dataset = stopped.run(on_progress=progress.append)
    assert len(stopped.history) == 7 and stopped.env_steps == 7 * per_generation
    assert [p.total for p in progress] == [7, 7, 7] and [p.generation for p in progress] == [0, 4, 7]
    assert dataset.info["method"]["max_env_steps"] == budget and dataset.info["method"]["generations"] == 7
    assert _without_timing(stopped.history) == _without_timing(full.history[:7])
    stopped.write_outputs(dataset, pictures=False)
    assert f"- max_env_steps: {budget}" in (out / "README.md").read_text(encoding="utf-8")
    assert Distiller(config, out, LEARN_CHUNK, max_env_steps=budget).plan()["action"] == "finish"
    assert Distiller(config, out, LEARN_CHUNK, max_env_steps=budget + per_generation).plan()["action"] == "resume"
    again = Distiller(config, out, LEARN_CHUNK, num_devices=1, max_env_steps=budget)
    again.run(resume=True)  # a spent budget runs no generation
    assert len(again.history) == 7
    resumed = Distiller(config, out, LEARN_CHUNK, num_devices=1)  # the budget dropped: on to the last generation
    resumed_dataset = resumed.run(resume=True)
    assert _without_timing(resumed.history) == _without_timing(full.history)
    assert np.array_equal(resumed_dataset.states, full_dataset.states)
    assert np.array_equal(resumed_dataset.actions, full_dataset.actions)


@pytest.mark.parametrize("budget", [0, -5, 2.5, True])
def test_a_bad_env_step_budget_is_refused(learning_run, tmp_path, budget):
    with pytest.raises(SpecError, match="env-step budget"):
        Distiller(learning_run[0], tmp_path / "run", max_env_steps=budget)


def test_resume_refuses_other_settings_a_missing_checkpoint_and_a_used_folder(learning_run, tmp_path):
    config, full, _ = learning_run
    finished = full.out
    with pytest.raises(CheckpointError, match="other settings"):
        Distiller(dataclasses.replace(config, sigma=0.05), finished, LEARN_CHUNK).run(resume=True)
    with pytest.raises(CheckpointError, match="other settings"):
        Distiller(dataclasses.replace(config, seed=1), finished, LEARN_CHUNK).run(resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Distiller(config, tmp_path / "empty", LEARN_CHUNK).run(resume=True)
    with pytest.raises(SpecError, match="not empty"):
        Distiller(config, finished, LEARN_CHUNK).run()
    broken = tmp_path / "broken"
    (broken / "checkpoint").mkdir(parents=True)
    (broken / "checkpoint" / "state.msgpack").write_bytes(b"\x00not msgpack")
    with pytest.raises(CheckpointError, match="unreadable"):
        Distiller(config, broken, LEARN_CHUNK).run(resume=True)


def test_a_checkpoint_without_a_format_marker_resumes_as_version_1(learning_run, tmp_path):
    """Checkpoints written before the format marker (the committed zoo runs) resume to the same dataset."""
    from flax import serialization

    config, full, full_dataset = learning_run
    payload = serialization.msgpack_restore(checkpoint_file(full.out).read_bytes())
    assert (payload.pop("format"), payload.pop("format_version")) == ("hades-checkpoint", 1)
    legacy = tmp_path / "legacy"
    checkpoint_file(legacy).parent.mkdir(parents=True)
    checkpoint_file(legacy).write_bytes(serialization.msgpack_serialize(payload))
    assert restore_checkpoint(checkpoint_file(legacy).read_bytes(), checkpoint_file(legacy)).version == 1
    resumed = Distiller(config, legacy, LEARN_CHUNK, num_devices=1)
    dataset = resumed.run(resume=True)  # every generation is done: it restores the state and returns its mean
    assert _without_timing(resumed.history) == _without_timing(full.history)
    assert np.array_equal(dataset.states, full_dataset.states) and np.array_equal(dataset.actions, full_dataset.actions)


def test_distill_runs_the_whole_lifecycle_and_reports_it(learning_run, tmp_path):
    """hades.distill: resume, the stages after the search, the output folder and the result."""
    import shutil

    config, full, full_dataset = learning_run
    out = tmp_path / "run"
    shutil.copytree(checkpoint_file(full.out).parent, checkpoint_file(out).parent)
    stages, progress = [], []
    result = hades.distill(config, out, resume=True, checkpoint_every=LEARN_CHUNK, num_devices=1, final_seeds=0,
                           on_progress=progress.append, on_stage=stages.append)
    assert stages == ["write"] and [p.generation for p in progress] == [LEARN_GENERATIONS]
    assert result.out == out and result.evaluation is None and result.selected is None
    assert result.generations == LEARN_GENERATIONS and result.env_steps == LEARN_GENERATIONS * config.env_steps_per_generation
    assert np.array_equal(result.dataset.states, full_dataset.states)
    assert hades.Dataset.load(out).sha256 == result.dataset.sha256
    with open(out / FITNESS_CSV, newline="") as handle:
        assert len(list(csv.DictReader(handle))) == LEARN_GENERATIONS
    # Refusals name the problem; the command line adds its flags (see the CLI tests).
    with pytest.raises(OutputInUseError, match="already exists and is not empty") as refused:
        hades.distill(config, out, num_devices=1, final_seeds=0)
    with pytest.raises(MissingCheckpointError, match="no checkpoint at") as missing:
        hades.distill(config, tmp_path / "empty", resume=True, num_devices=1, final_seeds=0)
    with pytest.raises(SettingsMismatchError, match="other settings") as mismatch:
        hades.distill(dataclasses.replace(config, seed=1), out, resume=True, num_devices=1, final_seeds=0)
    assert not any("--" in str(error.value) for error in (refused, missing, mismatch))


# -- validation: score the ES mean with fresh inits, keep the best ---------------------------------

def _validation(every: int = LEARN_CHUNK) -> Validation:
    return Validation(every, seeds=2, protocol=EvalProtocol(1, 100, episode_length=100))


@pytest.fixture(scope="module")
def validated_run(learning_run, tmp_path_factory):
    config, _, _ = learning_run
    distiller = Distiller(config, tmp_path_factory.mktemp("validated") / "run", LEARN_CHUNK, num_devices=1,
                          validation=_validation())
    return distiller, distiller.run()


def test_validation_keeps_the_best_scoring_mean_without_changing_the_search(learning_run, validated_run):
    config, full, last_mean = learning_run
    distiller, dataset = validated_run
    assert _without_timing(distiller.history) == _without_timing(full.history)  # the ES itself is untouched
    rows = distiller.validation_history
    assert [row["generation"] for row in rows] == [4, 8, 12, 16]
    best = max(rows, key=lambda row: row["mean"])
    selected = dataset.info["method"]["selected"]
    assert selected["generation"] == best["generation"] and selected["validation_mean"] == best["mean"]
    assert selected["validations"] == 4 and selected["seeds"] == f"{VALIDATION_FIRST_SEED}-{VALIDATION_FIRST_SEED + 1}"
    if best["generation"] == LEARN_GENERATIONS:
        assert np.array_equal(dataset.states, last_mean.states)
    else:
        assert not np.array_equal(dataset.states, last_mean.states)
    # The kept dataset is the one that scored: train-from with the validation seeds reproduces its score.
    again = train_from(dataset, config.recipe, EvalProtocol(1, 100, episode_length=100), num_seeds=2,
                             first_seed=VALIDATION_FIRST_SEED)
    assert again.mean == pytest.approx(best["mean"], rel=1e-3, abs=1e-3)
    card = dataset.card(dataset.sha256)
    assert f"this is the ES mean at generation {best['generation']} of {LEARN_GENERATIONS}, the best of 4 validations" in card


def test_a_published_runs_card_gives_its_search_and_validation_cost(learning_run, validated_run, tmp_path, hades_env):
    from hades.cost import run_cost
    from hades.outputs import write_outputs
    from hades.publish import publish

    config, _, _ = learning_run
    distiller, dataset = validated_run
    out = write_outputs(tmp_path / "run", dataset, distiller.history, distiller.validation_history, pictures=False)
    cost = run_cost(out / FITNESS_CSV, out / VALIDATION_CSV, dataset.info["method"])
    assert cost["generations"] == LEARN_GENERATIONS
    assert cost["search_env_steps"] == LEARN_GENERATIONS * config.env_steps_per_generation
    assert cost["search_seconds"] == pytest.approx(sum(row["seconds"] for row in distiller.history), abs=0.1)
    # 4 validations x 2 seeds x 1 env x 100 steps (the _validation protocol)
    assert cost["validations"] == 4 and cost["validation_env_steps"] == 4 * 2 * 1 * 100
    timed = sum(row["seconds"] for row in distiller.validation_history)
    assert timed > 0 and cost["validation_seconds"] == pytest.approx(timed, abs=0.1)
    assert cost["wall_seconds"] == pytest.approx(cost["search_seconds"] + cost["validation_seconds"], abs=0.1)
    result = publish(out, "hopper-costed", "1.0", seeds=1, protocol=EvalProtocol(1, 50), transfer=(),
                     catalogue=tmp_path / "catalogue", pictures=False, parquet=False)
    assert result.dataset.info["cost"] == cost
    card = (result.folder / "README.md").read_text()
    assert "### Cost" in card and f"| {cost['search_env_steps']:,} |" in card and "| 800 |" in card
    # A run validated before validations were timed: its steps still count, its seconds are unknown.
    scores = out / VALIDATION_CSV
    rows = list(csv.DictReader(scores.open(newline="")))
    with scores.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["generation", "mean", "std", "min", "max"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    older = run_cost(out / FITNESS_CSV, out / VALIDATION_CSV, dataset.info["method"])
    assert older["validation_env_steps"] == 800 and "validation_seconds" not in older and "wall_seconds" not in older
    (out / FITNESS_CSV).write_text("generation,mean_fitness,max_fitness\n1,2.0,3.0\n")  # a converted run's curves
    assert run_cost(out / FITNESS_CSV, out / VALIDATION_CSV, dataset.info["method"]) is None


def test_validation_resumes_with_the_run_and_can_be_turned_on_later(learning_run, validated_run, tmp_path):
    config, _, _ = learning_run
    full, full_dataset = validated_run
    out = tmp_path / "run"
    Distiller(dataclasses.replace(config, num_generations=2 * LEARN_CHUNK), out, LEARN_CHUNK, num_devices=1,
              validation=_validation()).run()
    resumed = Distiller(config, out, LEARN_CHUNK, num_devices=1, validation=_validation())
    dataset = resumed.run(resume=True)
    assert _without_timing(resumed.validation_history) == _without_timing(full.validation_history)
    assert np.array_equal(dataset.states, full_dataset.states) and np.array_equal(dataset.actions, full_dataset.actions)

    # A run made without validation takes it up when resumed: scores from then on, ending with the last generation.
    plain = tmp_path / "plain"
    Distiller(dataclasses.replace(config, num_generations=2 * LEARN_CHUNK), plain, LEARN_CHUNK, num_devices=1).run()
    later = Distiller(config, plain, LEARN_CHUNK, num_devices=1, validation=_validation(every=8))
    later.run(resume=True)
    assert [row["generation"] for row in later.validation_history] == [16]
    # Scores under other seeds do not compare: the record starts over (with a warning).
    other = Distiller(config, out, LEARN_CHUNK, num_devices=1,
                      validation=Validation(LEARN_CHUNK, seeds=3, protocol=EvalProtocol(1, 100, episode_length=100)))
    with pytest.warns(UserWarning, match="validation starts over"):
        other.run(resume=True)
    assert [row["generation"] for row in other.validation_history] == [16]


@pytest.mark.parametrize("settings, message", [
    (dict(every=0), "period of at least 1"), (dict(every=2, seeds=0), "at least 1 seed"),
    (dict(every=2, first_seed=-1), "non-negative"),
])
def test_bad_validation_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        Validation(**settings)


def test_cli_validation_writes_its_scores_and_names_the_kept_generation(tmp_path):
    out = tmp_path / "validated"
    result = run_cli("distill", "hopper", "--pairs", "4", *TINY_CLI, "--generations", "4", "--checkpoint-every", "2",
                     "--validate-every", "2", "--validate-seeds", "2", "--final-seeds", "0",
                     "--final-eval-envs", "2", "--final-eval-steps", "50", "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    # not a terminal: a plain progress line after every chunk instead of a live bar
    progress = [line for line in result.stderr.splitlines() if line.startswith("gen ")]
    assert [line.split()[1] for line in progress] == ["2/4", "4/4"] and "validated" in progress[-1], result.stderr
    with open(out / VALIDATION_CSV, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["generation"]) for row in rows] == [2, 4]
    assert VALIDATION_CSV == "scores.csv" and not (out / "validation.csv").exists()
    best = max(rows, key=lambda row: float(row["mean"]))
    report = json.loads(result.stdout)  # --json: the result alone on stdout
    assert report["selected"]["generation"] == int(best["generation"]) and report["selected"]["validations"] == 2
    assert report["generations"] == 4 and report["evaluation"] is None and report["out"] == str(out)
    selected = _front_matter(out / "README.md")["hades"]["method"]["selected"]
    assert selected["generation"] == int(best["generation"]) and selected["protocol"]["num_steps"] == 50
    # the record lives in the checkpoint too, and `hades history` reports it
    record = read_validation(out)
    assert [row["generation"] for row in record["history"]] == [2, 4]
    assert record["best"]["generation"] == int(best["generation"]) and record["settings"]["seeds"] == 2
    from hades.history import run_history

    report = run_history(out, every=2)
    assert [block.validated_best for block in report.blocks][1] == pytest.approx(float(rows[1]["mean"]), abs=0.05)
    assert report.kept["generation"] == int(best["generation"]) and report.kept["validations"] == 2
    shown = run_cli("history", out, "--every", "2")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "validated (mean, best)" in lines[1]
    kept = next(line for line in lines if line.startswith("kept: "))
    assert kept.startswith(f"kept: the ES mean of generation {best['generation']}") and "best of 2 validations" in kept
    assert lines[-1].startswith("started at generation 0: ") and "--validate-every 2" in lines[-1]
    dry = run_cli("distill", "hopper", "--pairs", "4", *TINY_CLI, "--generations", "4", "--validate-every", "2",
                  "--out", out, "--dry-run")
    assert dry.returncode == 0 and "validation every 2 generations: 8 fresh inits x 4 envs x 1024 steps" in dry.stdout


# -- warm starts -----------------------------------------------------------------------------------

def test_warm_start_begins_at_the_dataset_and_the_card_says_so(learning_run, tmp_path):
    config, full, parent = learning_run
    warm = dataclasses.replace(config, num_generations=LEARN_CHUNK, init_from=parent.sha256)
    assert warm.fingerprint() != config.fingerprint()  # a warm-started checkpoint resumes only as one

    init_state, _, dataset_arrays = make_generation(warm, jnp.zeros(8), jnp.ones(8), start=start_arrays(warm, parent))
    mean = dataset_arrays(init_state(jax.random.PRNGKey(0)))
    assert np.allclose(mean["states"], parent.states) and np.allclose(mean["actions"], parent.actions)

    distiller = Distiller(warm, tmp_path / "warm", LEARN_CHUNK, num_devices=1, start=parent, start_source="parent")
    dataset = distiller.run()
    # Same seed, so the first generation meets the same inits and env noise as the cold run's first.
    assert distiller.history[0]["mean"] > 1.25 * full.history[0]["mean"], (distiller.history[0], full.history[0])
    method = dataset.info["method"]
    assert method["init_from"] == {"source": "parent", "sha256": parent.sha256,
                                   "generations": LEARN_GENERATIONS, "env_steps": parent.info["method"]["env_steps"]}
    assert method["env_steps_including_init"] == method["env_steps"] + parent.info["method"]["env_steps"]
    assert f"began at `parent` (sha256 `{parent.sha256}`, itself {LEARN_GENERATIONS} generations" in dataset.card(dataset.sha256)
    with pytest.raises(SpecError, match="does not match"):
        Distiller(warm, tmp_path / "other", start=None)
    with pytest.raises(CheckpointError, match="other settings"):  # resuming it as a cold run is refused
        Distiller(dataclasses.replace(config, num_generations=2 * LEARN_CHUNK), tmp_path / "warm").run(resume=True)


def test_start_arrays_refuse_datasets_that_cannot_seed_the_run(tiny_dataset, tiny_discrete_dataset):
    norm = tiny_dataset.normalization
    arrays = start_arrays(preset("cpu", "hopper", 4, normalization=norm), tiny_dataset)
    assert np.array_equal(arrays["states"], tiny_dataset.states) and np.array_equal(arrays["actions"], tiny_dataset.actions)
    with pytest.raises(SpecError, match="it has 4 pairs, this run 8"):
        start_arrays(preset("cpu", "hopper", 8, normalization=norm), tiny_dataset)
    with pytest.raises(SpecError, match="its normalisation is"):
        start_arrays(preset("cpu", "hopper", 4, normalization="running" if norm != "running" else "none"), tiny_dataset)
    with pytest.raises(SpecError, match="it is a hopper dataset"):
        start_arrays(preset("cpu", "walker2d", 4, normalization=norm), tiny_dataset)
    breakout = preset("cpu", "Breakout-MinAtar", tiny_discrete_dataset.pairs,
                      normalization=tiny_discrete_dataset.normalization)
    labels = np.asarray(tiny_discrete_dataset.actions)
    assert (labels == fixed_labels(breakout)).all()  # two states per action, in order
    assert np.array_equal(start_arrays(breakout, tiny_discrete_dataset)["states"], tiny_discrete_dataset.states)
    learned = dataclasses.replace(breakout, learned_labels=True)
    logits = start_arrays(learned, tiny_discrete_dataset)["label_logits"]
    assert (logits.argmax(-1) == labels).all()
    with pytest.raises(SpecError, match="fixed layout"):
        start_arrays(breakout, tiny_discrete_dataset.replace(actions=labels[::-1].copy()))


def test_checkpoint_history_reader_names_a_missing_or_damaged_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        read_history(tmp_path)
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.msgpack").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        read_history(tmp_path)


# -- methods and strategies ------------------------------------------------------------------------

def test_hades_f_uses_one_fixed_init_whatever_num_inits_says():
    config = preset("cpu", "hopper", 4, method="hades-f", num_inits=3)
    assert config.inits_per_generation == 1
    assert config.env_steps_per_generation == config.population_size * 1 * 1 * 1000
    assert preset("cpu", "hopper", 4, num_inits=3).inits_per_generation == 3


@pytest.mark.slow
def test_hades_f_runs_and_records_one_init(tmp_path):
    config = preset("cpu", "inverted_double_pendulum", 4, method="hades-f", num_inits=2, population_size=8,
                    num_generations=1, recipe=tiny_recipe(), protocol=EvalProtocol(1, 50))
    distiller = Distiller(config, tmp_path / "run", checkpoint_every=1, num_devices=1)
    dataset = distiller.run()
    assert dataset.info["method"]["name"] == "hades-f" and dataset.info["method"]["inits_per_generation"] == 1
    assert distiller.history[0]["env_steps"] == 8 * 1 * 1 * 50
    assert dataset.states.shape == (4, 8) and dataset.actions.shape == (4, 1)


@pytest.mark.slow
def test_snes_softmax_rank_on_breakout_yields_an_int_labelled_dataset(tmp_path):
    # 7 pairs, 3 actions: two states per action, the seventh is unused
    config = preset("cpu", "Breakout-MinAtar", 7, strategy="snes", fitness_shaping="softmax_rank", population_size=8,
                    num_generations=1, num_inits=1, recipe=tiny_recipe(discrete=True), protocol=EvalProtocol(1, 50))
    distiller = Distiller(config, tmp_path / "run", checkpoint_every=1, num_devices=1)
    dataset = distiller.run()
    assert np.issubdtype(dataset.actions.dtype, np.integer)
    assert dataset.actions.tolist() == [0, 0, 1, 1, 2, 2]
    assert dataset.states.shape == (6, 400)
    assert math.isfinite(distiller.history[0]["mean"]) and distiller.history[0]["sigma"] > 0
    distiller.write_outputs(dataset)
    assert hades.Dataset.load(tmp_path / "run").actions.tolist() == [0, 0, 1, 1, 2, 2]


def _climb_quadratic(config: DistillConfig, generations: int = 60) -> tuple[float, float]:
    """Drive the strategy as ``make_generation`` does (tell gets ``-fitness``) on a fitness whose maximum
    is at 0.5 everywhere; return the distance to it before and after."""
    import jax
    import jax.numpy as jnp

    strategy, params = make_strategy(config)
    layout = solution_layout(config)

    def fitness(candidate):  # to be maximised, like a return
        return -sum(jnp.sum(jnp.square(candidate[name] - 0.5)) for name in layout)

    def generation(state, key):
        ask_key, tell_key = jax.random.split(key)
        population, state = strategy.ask(ask_key, state, params)
        values = jax.vmap(fitness)(population)
        state, _ = strategy.tell(tell_key, population, -values, state, params)
        return state, None

    zeros = {name: jnp.zeros(shape) for name, shape in layout.items()}
    state = strategy.init(jax.random.PRNGKey(0), zeros, params)
    keys = jax.random.split(jax.random.PRNGKey(1), generations)
    state, _ = jax.jit(lambda state: jax.lax.scan(generation, state, keys))(state)
    return float(-fitness(zeros)), float(-fitness(strategy.get_mean(state)))


STRATEGY_CASES = [("open_es", "raw"), ("open_es", "centered_rank"), ("open_es", "standardize"), ("pgpe", "centered_rank"),
                  ("pgpe", "raw"), ("snes", "centered_rank"), ("snes", "softmax_rank"), ("xnes", "centered_rank"),
                  ("xnes", "softmax_rank"), ("simple_es", "softmax_rank"), ("sep_cma_es", "softmax_rank")]


@pytest.mark.parametrize(("strategy", "shaping"), STRATEGY_CASES)
def test_strategies_climb_towards_the_maximum(strategy, shaping):
    sigma = 0.03 if strategy == "open_es" else 0.5
    config = DistillConfig("hopper", 1, strategy=strategy, fitness_shaping=shaping, population_size=16, sigma=sigma,
                           es_lr=0.01)
    before, after = _climb_quadratic(config)
    assert math.isfinite(after) and after < 0.5 * before, (before, after)


def test_softmax_rank_weights_favour_the_best():
    _, params = make_strategy(preset("paper", "Breakout-MinAtar", 6, population_size=16))
    weights = np.asarray(params.weights)
    assert weights.shape == (16,) and abs(weights.sum()) < 1e-5
    assert (np.diff(weights) < 0).all()  # rank 0 (the lowest -return, i.e. the best) weighs most


# -- bad settings ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "message"), [
    ({"population_size": 7}, "even number"),
    ({"population_size": 0}, "even number"),
    ({"strategy": "adam"}, "strategy must be one of"),
    ({"method": "hades-x"}, "method must be one of"),
    ({"fitness_shaping": "ranks"}, "fitness shaping must be one of"),
    ({"strategy": "simple_es", "fitness_shaping": "centered_rank"}, "simple_es needs fitness shaping softmax_rank"),
    ({"strategy": "snes", "fitness_shaping": "raw"}, "snes needs fitness shaping"),
    ({"num_generations": 0}, "generations must be at least 1"),
    ({"normalization": "batch"}, "normalization must be one of"),
    ({"sigma": 0.0}, "must be positive"),
])
def test_bad_configs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        DistillConfig("hopper", 4, **overrides)
    with pytest.raises(SpecError, match=message):
        preset("cpu", "hopper", 4, **overrides)


def test_losses_and_labels_must_fit_the_env():
    with pytest.raises(ValueError, match="does not fit"):
        DistillConfig("hopper", 4, recipe=tiny_recipe(discrete=True))
    with pytest.raises(ValueError, match="does not fit"):
        DistillConfig("Breakout-MinAtar", 6, recipe=tiny_recipe())
    with pytest.raises(ValueError, match="fixed labels need at least"):
        DistillConfig("Breakout-MinAtar", 2, recipe=tiny_recipe(discrete=True))
    with pytest.raises(UnknownEnvError, match="did you mean 'hopper'"):
        DistillConfig("hoper", 4)
    with pytest.raises(SpecError, match="unknown preset"):
        preset("laptop", "hopper", 4)
    with pytest.raises(SpecError, match="rank weights"):
        make_strategy(DistillConfig("hopper", 4, fitness_shaping="softmax_rank"))


def test_the_candidates_and_random_keys_do_not_depend_on_the_device_count():
    """bench/devices.py at tiny size: generation 1 asks the same candidates on 1 and 2 devices, and the
    run's random keys stay bit for bit the same; only the fitness can differ, by float rounding."""
    bench = Path(__file__).resolve().parents[1] / "bench" / "devices.py"
    proc = subprocess.run([sys.executable, str(bench), "--population", "4", "--arch", "8,8:tanh", "--inits", "1",
                           "--eval-envs", "1", "--eval-steps", "20", "--inner-steps", "5", "--generations", "1",
                           "--normalization", "none"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "final random keys bit for bit the same on 1 and 2 devices: True" in lines
    first = next(line for line in lines if line.startswith("| 1 |")).split("|")
    assert first[2].strip() == "yes"
    assert abs(float(first[3]) - float(first[4])) <= 0.05 * abs(float(first[3])) + 1.0


def test_multi_host_settings_are_checked_before_joining():
    assert initialize_distributed() is False  # no coordinator: a single-process run
    with pytest.raises(MultiHostError, match="coordinator's address") as raised:
        initialize_distributed(None, 2, 0)
    assert "--" not in str(raised.value)  # the library names settings; the CLI names its flags
    with pytest.raises(MultiHostError, match="number of processes and this process's id"):
        initialize_distributed("127.0.0.1:1234", 2, None)
    with pytest.raises(SpecError, match="process id must be in 0..1"):
        initialize_distributed("127.0.0.1:1234", 2, 2)
    with pytest.raises(SpecError, match="HOST:PORT"):
        initialize_distributed("localhost", 2, 0)


@pytest.mark.parametrize(("args", "message"), [
    (["hopper", "--pairs", "4", "--population", "7"], "even number"),
    (["hopper", "--pairs", "4", "--strategy", "adam"], "strategy must be one of"),
    (["hopper", "--pairs", "4", "--method", "hades-x"], "method must be one of"),
    (["hopper", "--pairs", "4", "--preset", "laptop"], "unknown preset"),
    (["hoper", "--pairs", "4"], "unknown environment"),
    (["Breakout-MinAtar", "--pairs", "2"], "fixed labels need at least"),
    (["hopper", "--pairs", "4", "--arch", "16,16:nope"], ""),
    (["hopper", "--pairs", "4", "--init-from", "no-such-dataset"], "not in the catalogue"),
    (["hopper", "--pairs", "8", "--init-from", "hopper-4pairs@1.2"], "pass --pairs 4"),
    (["hopper", "--pairs", "4", "--init-from", "hopper-4pairs@1.5"], "pass --normalization constant"),
    (["walker2d", "--pairs", "4", "--init-from", "hopper-4pairs"], "it is a hopper dataset"),
    (["hopper", "--pairs", "4", "--num-processes", "2", "--process-id", "0"], "--coordinator"),
    (["hopper", "--pairs", "4", "--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
    (["hopper", "--pairs", "4", "--max-env-steps", "0"], "--max-env-steps must be a whole number"),
    (["hopper", "--pairs", "4", "--max-env-steps", "lots"], "--max-env-steps must be a whole number"),
    (["hopper", "--pairs", "4", "--max-env-steps", "2.5"], "--max-env-steps must be a whole number"),
    (["fashion-mnist", "--pairs", "10", "--max-env-steps", "1000"], "--max-env-steps does not apply to image"),
])
def test_cli_bad_settings_print_one_line_and_exit_1(tmp_path, args, message):
    out = tmp_path / "run"
    result = run_cli("distill", *args, "--out", out)
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not out.exists()


def test_cli_plans_a_run_that_stops_at_its_env_step_budget(tmp_path):
    args = ["distill", "hopper", "--pairs", "4", "--preset", "fast", "--max-env-steps", "5e6", "--out", tmp_path / "run",
            "--dry-run"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.replace("\n", " ")
    # population 16 x 2 inits x 1000 steps = 32,000 env steps per generation: 157 generations reach 5M
    assert "5,024,000 for at most 2000 generations, stopping at --max-env-steps 5,000,000" in printed
    plan = json.loads(run_cli(*args, "--json").stdout)
    assert plan["max_env_steps"] == 5_000_000 and plan["env_steps_total"] == 157 * 32_000
    assert not (tmp_path / "run").exists()


def test_cli_resume_without_a_checkpoint_exits_1(tmp_path):
    out = tmp_path / "run"
    result = run_cli("distill", "hopper", "--pairs", "4", *TINY_CLI, "--resume", "--out", out)
    assert result.returncode == 1 and "no checkpoint" in result.stderr and "run without --resume to start" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_training_in_batches_scores_like_training_all_candidates_at_once():
    """lax.map over batches of candidates (the CPU default for wide policies) changes speed, not results."""
    config = learning_config(population_size=6)
    population = {name: np.random.default_rng(0).normal(size=(6, *shape)).astype(np.float32)
                  for name, shape in solution_layout(config).items()}
    keys = jax.random.split(jax.random.PRNGKey(1), 2), jax.random.split(jax.random.PRNGKey(2), 2)
    obs = jnp.zeros(8), jnp.ones(8)
    scores = {batch: jax.jit(make_fitness(config, *obs, batch))(population, *keys) for batch in (None, 4, 1)}
    reference_mean, reference_episodes = scores[None]
    assert reference_mean.shape == (6,) and np.isfinite(reference_mean).all() and np.ptp(reference_mean) > 0
    for batch in (4, 1):  # 4 leaves a remainder of 2
        mean, episodes = scores[batch]
        np.testing.assert_allclose(mean, reference_mean, rtol=1e-3)
        np.testing.assert_array_equal(episodes, reference_episodes)


def test_default_train_batch_keeps_small_policies_together_and_splits_wide_ones():
    small, wide = preset("cpu", "hopper", 4), preset("paper", "hopper", 4)
    assert policy_param_count(small) == (11 * 64 + 64) + (64 * 64 + 64) + (64 * 3 + 3) + 3
    assert default_train_batch(small, "cpu") >= 32  # 32 candidates per core train at once
    assert default_train_batch(wide, "cpu") == 2  # never 1: a vmapped batch of one trains slowest (see map_candidates)
    assert default_train_batch(wide, "gpu") is None
