"""Strategies and noise handling: CMA-ES and the other strategies with their defaults, OpenES schedules,
populations sized to the search space, IPOP restarts, and datasets that train several architectures.

Runs are tiny (population 8, 5 inner steps, 50 env steps); each strategy compiles its generation
program once, the interrupted runs load it from the suite's persistent compilation cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import jax
import numpy as np
import pytest
from conftest import run_cli, tiny_recipe
from test_distill import _climb_quadratic, _without_timing

from hades.checkpoint import load_checkpoint
from hades.distillation import LATER_FIELD_DEFAULTS, DistillConfig, make_fitness, make_strategy, preset, solution_layout
from hades.errors import SettingsMismatchError, SpecError
from hades.evaluate import EvalProtocol
from hades.policy import PolicySpec
from hades.runner import Distiller
from hades.searchspace import search_dims
from hades.strategies import default_population_size
from hades.validation import Validation, ValidationLog, make_validate

TINY = dict(population_size=8, num_inits=1, recipe=tiny_recipe(steps=5), protocol=EvalProtocol(1, 50))


def tiny_config(strategy: str, **overrides) -> DistillConfig:
    return preset("cpu", "inverted_double_pendulum", 4, strategy=strategy, num_generations=4, **{**TINY, **overrides})


OPENES_SCHEDULED = dict(fitness_shaping="centered_rank", sigma=0.1, es_lr=0.05, sigma_decay=0.9, sigma_floor=0.07,
                        es_lr_decay=0.98, es_lr_floor=0.01)
NEW_STRATEGIES = [("cma_es", {}), ("sep_cma_es", {}), ("snes", {"fitness_shaping": "rank_weights"}),
                  ("xnes", {"fitness_shaping": "rank_weights"}), ("open_es", OPENES_SCHEDULED)]


# -- every strategy climbs ----------------------------------------------------------------------------

@pytest.mark.parametrize(("strategy", "settings"), NEW_STRATEGIES + [("cma_es", {"sigma_floor": 0.05})],
                         ids=[name for name, _ in NEW_STRATEGIES] + ["cma_es-floor"])
def test_strategies_with_their_defaults_climb_a_quadratic(strategy, settings):
    config = preset("cpu", "hopper", 1, strategy=strategy, population_size=16, **settings)
    before, after = _climb_quadratic(config)
    assert math.isfinite(after) and after < 0.1 * before, (before, after)


def test_picking_a_strategy_brings_its_shaping_and_sigma_unless_given():
    cma = preset("paper", "hopper", 4, strategy="cma_es")  # the paper's raw returns do not suit CMA-ES
    assert (cma.fitness_shaping, cma.sigma) == ("rank_weights", 0.1)
    assert preset("paper", "hopper", 4, strategy="cma_es", sigma=0.3).sigma == 0.3
    snes = preset("cpu", "hopper", 4, strategy="snes")  # centred ranks suit SNES: the preset's settings stay
    assert (snes.fitness_shaping, snes.sigma) == ("centered_rank", 0.03)
    assert preset("fast", "hopper", 4, strategy="open_es").fitness_shaping == "centered_rank"
    with pytest.raises(SpecError, match="schedules go with open_es"):
        preset("cpu", "hopper", 4, strategy="snes", sigma_decay=0.99)
    with pytest.raises(SpecError, match="sigma floor goes with"):
        preset("cpu", "hopper", 4, strategy="xnes", sigma_floor=0.01)
    with pytest.raises(SpecError, match="decay rates must be in"):
        preset("cpu", "hopper", 4, es_lr_decay=1.5)


def test_openes_schedules_decay_to_their_floors():
    config = DistillConfig("hopper", 1, population_size=8, **OPENES_SCHEDULED)
    strategy, params = make_strategy(config)
    # Adam under a constant gradient steps by exactly its learning rate: the schedule's, step by step.
    optimizer = strategy.optimizer
    state = optimizer.init(np.zeros(3, np.float32))
    steps = []
    for _ in range(120):
        update, state = optimizer.update(np.ones(3, np.float32), state)
        steps.append(float(-update[0]))
    expected = [max(0.05 * 0.98 ** k, 0.01) for k in range(120)]
    np.testing.assert_allclose(steps, expected, rtol=1e-4)
    sigmas = [float(strategy.std_schedule(k)) for k in (0, 1, 2, 10)]
    np.testing.assert_allclose(sigmas, [0.1, 0.09, 0.081, 0.07], rtol=1e-5)


# -- populations sized to the search space, fingerprints of older runs --------------------------------

def test_population_auto_follows_the_cma_es_rule():
    assert search_dims("hopper", 4) == 4 * (11 + 3) and search_dims("Breakout-MinAtar", 6) == 6 * 400
    assert search_dims("Breakout-MinAtar", 6, learned_labels=True) == 6 * (400 + 3)
    assert default_population_size(56) == 16  # 4 + floor(3 ln 56) = 16
    assert default_population_size(92) == 18  # 4 + 13 = 17, rounded up to even
    assert DistillConfig("hopper", 4, strategy="cma_es", fitness_shaping="rank_weights",
                         population_size=None).population_size == 16
    fast = preset("fast", "hopper", 4)
    assert (fast.strategy, fast.population_size, fast.restarts) == ("cma_es", 16, 4)
    assert preset("fast", "halfcheetah", 64).strategy == "sep_cma_es"  # 1472 numbers: no full covariance
    minatar = preset("fast", "Breakout-MinAtar", 16)
    assert (minatar.strategy, minatar.population_size, minatar.restarts, minatar.protocol.num_envs) == (
        "open_es", 256, 0, 4)
    result = run_cli("distill", "hopper", "--pairs", "4", "--preset", "cpu", "--strategy", "cma_es", "--population",
                     "auto", "--arch", "64,64:relu;32:tanh", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    config = DistillConfig.from_dict(json.loads(result.stdout)["config"])
    assert config.population_size == 16 and config.fitness_shaping == "rank_weights"
    assert config.recipe.arch == PolicySpec((64, 64), "relu") and config.extra_archs == (PolicySpec((32,), "tanh"),)


def test_cli_fast_preset_plans_restarts_with_validation(tmp_path):
    result = run_cli("distill", "hopper", "--pairs", "4", "--preset", "fast", "--out", tmp_path / "run", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "hades-r/cma_es, population 16, 2 init(s) x 1 env(s) x 1000 steps" in result.stdout
    assert "validation every 10 generations" in result.stdout and "restarts: up to 4, each after 3 validations" in result.stdout
    bad = run_cli("distill", "hopper", "--pairs", "4", "--population", "many", "--out", tmp_path / "run")
    assert bad.returncode == 1 and "--population must be a number or auto" in bad.stderr
    assert not (tmp_path / "run").exists()


def test_new_settings_at_their_defaults_keep_the_fingerprints_of_older_runs():
    def fingerprint_before_them(config):
        data = config.to_dict()
        data.pop("num_generations")
        for name in LATER_FIELD_DEFAULTS:
            data.pop(name)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    for config in (preset("paper", "hopper", 4), preset("cpu", "walker2d", 4, normalization="constant"),
                   preset("paper", "Breakout-MinAtar", 16)):
        assert config.fingerprint() == fingerprint_before_them(config)
        assert DistillConfig.from_dict(config.to_dict()) == config
    base = preset("cpu", "hopper", 4)
    changed = [dataclasses.replace(base, **{name: value}) for name, value in [
        ("es_lr_decay", 0.99), ("sigma_floor", 0.01), ("restarts", 1), ("extra_archs", (PolicySpec((8,)),))]]
    assert len({config.fingerprint() for config in [base, *changed]}) == 5


# -- resuming ends where an uninterrupted run ends, with every strategy -------------------------------

# Full CMA-ES (covariance, eigenbasis, paths) and OpenES's schedule counters run in the default suite; the
# other strategies' states are arrays restored the same way, and each compiles a program of its own: slow.
RESUME_CASES = [pytest.param(name, settings, id=name,
                             marks=() if name in ("cma_es", "open_es") else pytest.mark.slow)
                for name, settings in NEW_STRATEGIES]


@pytest.mark.parametrize(("strategy", "settings"), RESUME_CASES)
def test_resume_is_bit_identical_with_the_new_strategies(strategy, settings, tmp_path):
    config = tiny_config(strategy, **settings)
    full = Distiller(config, tmp_path / "full", checkpoint_every=2, num_devices=1)
    full_dataset = full.run()
    out = tmp_path / "interrupted"
    Distiller(dataclasses.replace(config, num_generations=2), out, checkpoint_every=2, num_devices=1).run()
    resumed = Distiller(config, out, checkpoint_every=2, num_devices=1)
    dataset = resumed.run(resume=True)
    assert _without_timing(resumed.history) == _without_timing(full.history)
    assert np.array_equal(dataset.states, full_dataset.states) and np.array_equal(dataset.actions, full_dataset.actions)
    assert all(math.isfinite(row["mean"]) and row["sigma"] > 0 for row in full.history)
    if strategy == "open_es":
        np.testing.assert_allclose([row["sigma"] for row in full.history], [0.1, 0.09, 0.081, 0.0729], rtol=1e-5)


# -- restarts ------------------------------------------------------------------------------------------

def _validation() -> Validation:
    return Validation(2, seeds=2, protocol=EvalProtocol(1, 50))


def test_restart_waits_for_patience_validations_without_a_new_best(tmp_path):
    distiller = Distiller(tiny_config("cma_es", restarts=2, restart_patience=2), tmp_path, validation=_validation())
    distiller.log = ValidationLog(_validation())
    arrays = {"states": np.zeros((4, 8))}
    for generation, score in [(2, 10.0), (4, 12.0), (6, 11.0)]:
        distiller.log.add(generation, np.asarray([score]), arrays)
    assert not distiller._stale()  # one validation since the best (generation 4)
    distiller.log.add(8, np.asarray([9.0]), arrays)
    assert distiller._stale()
    distiller.restarts = [{"generation": 8, "population_size": 16}]
    assert distiller.population_size == 16 and not distiller._stale()  # patience counts from the restart
    distiller.log.add(10, np.asarray([5.0]), arrays)
    distiller.log.add(12, np.asarray([5.0]), arrays)
    assert distiller._stale()
    distiller.restarts.append({"generation": 12, "population_size": 32})
    distiller.log.add(14, np.asarray([5.0]), arrays)
    distiller.log.add(16, np.asarray([5.0]), arrays)
    assert not distiller._stale()  # no restarts left
    with pytest.raises(SpecError, match="needs a validation"):
        Distiller(tiny_config("cma_es", restarts=1), tmp_path / "unvalidated").run()


def test_a_restarted_run_doubles_its_population_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    # Every validation asks for a restart while some are left, so the restart comes at generation 2.
    monkeypatch.setattr(Distiller, "_stale", lambda self: len(self.restarts) < self.config.restarts)
    config = tiny_config("cma_es", restarts=1, restart_patience=1)
    full = Distiller(config, tmp_path / "full", checkpoint_every=2, num_devices=1, validation=_validation())
    full_dataset = full.run()
    assert full.restarts == [{"generation": 2, "population_size": 16}] and full.population_size == 16
    assert [row["env_steps"] for row in full.history] == [400, 800, 1600, 2400]  # 8, then 16 candidates x 50 steps
    assert full_dataset.info["method"]["restarts"] == full.restarts
    assert full_dataset.info["method"]["env_steps"] == 2400

    out = tmp_path / "interrupted"
    Distiller(dataclasses.replace(config, num_generations=2), out, 2, num_devices=1, validation=_validation()).run()
    assert load_checkpoint(out).restarts() == full.restarts  # the restart is in the checkpoint
    resumed = Distiller(config, out, 2, num_devices=1, validation=_validation())
    dataset = resumed.run(resume=True)
    assert _without_timing(resumed.history) == _without_timing(full.history)
    assert _without_timing(resumed.validation_history) == _without_timing(full.validation_history)
    assert np.array_equal(dataset.states, full_dataset.states)
    assert np.array_equal(resumed.last_dataset.states, full.last_dataset.states)
    with pytest.raises(SettingsMismatchError, match="restarts follow the validation"):
        Distiller(config, out, 2, num_devices=1, validation=Validation(4, seeds=2, protocol=EvalProtocol(1, 50))).run(
            resume=True)


# -- datasets that train several architectures ---------------------------------------------------------

def test_several_architectures_average_their_fitness_and_the_card_records_them(tmp_path):
    extra = (PolicySpec((8,), "relu"),)
    multi = preset("cpu", "hopper", 4, **TINY, extra_archs=extra)
    assert multi.architectures == (TINY["recipe"].arch, *extra)
    assert multi.env_steps_per_generation == 2 * preset("cpu", "hopper", 4, **TINY).env_steps_per_generation
    rng = np.random.default_rng(0)
    population = {name: rng.normal(size=(4, *shape)).astype(np.float32) for name, shape in solution_layout(multi).items()}
    keys = jax.random.split(jax.random.PRNGKey(1), 1), jax.random.split(jax.random.PRNGKey(2), 1)
    stats = np.zeros(11, np.float32), np.ones(11, np.float32)
    mean, episodes = jax.jit(make_fitness(multi, *stats))(population, *keys)
    singles = [jax.jit(make_fitness(preset("cpu", "hopper", 4, **{**TINY, "recipe": dataclasses.replace(
        TINY["recipe"], arch=arch)}), *stats))(population, *keys) for arch in multi.architectures]
    np.testing.assert_allclose(mean, np.mean([single[0] for single in singles], 0), rtol=1e-5)
    np.testing.assert_array_equal(episodes, sum(single[1] for single in singles))
    assert not np.allclose(mean, singles[0][0])  # every architecture counts

    # Validation trains the fresh inits with every architecture too: seeds per architecture, in order.
    settings = Validation(5, seeds=2, protocol=EvalProtocol(1, 50))
    states, actions = population["states"][0], population["actions"][0]
    returns = make_validate(multi, settings, *stats)(states, actions)
    extra_only = preset("cpu", "hopper", 4, **{**TINY, "recipe": dataclasses.replace(TINY["recipe"], arch=extra[0])})
    assert returns.shape == (4,)
    np.testing.assert_allclose(returns[2:], make_validate(extra_only, settings, *stats)(states, actions), rtol=1e-5)

    # The card: the first architecture is its recipe, the method records them all.
    distiller = Distiller(multi, tmp_path / "run")
    distiller.history = [{"generation": 1, "mean": 1.0, "max": 1.0, "env_steps": multi.env_steps_per_generation}]
    arrays = {name: value[0] for name, value in population.items()}
    dataset = distiller._dataset(arrays, *stats)
    method = dataset.info["method"]
    assert dataset.info["recipe"] == TINY["recipe"].to_dict()
    assert method["architectures"] == ["16,16:tanh:orthogonal", "8:relu:orthogonal"]
    assert DistillConfig.from_dict(method["config"]).extra_archs == extra
    assert method["env_steps"] == multi.env_steps_per_generation
    selected = {"generation": 1, "validation_mean": 1.0, "validation_std": 0.0, "validations": 1,
                "seeds": "1000000-1000001", "protocol": EvalProtocol(1, 50).to_dict()}
    kept = distiller._dataset(arrays, *stats, selected=selected)
    assert kept.info["method"]["selected"] == {**selected, "architectures": 2}
    assert "fresh inits with seeds 1000000-1000001 for each of the 2 architectures" in kept.card(kept.sha256)
