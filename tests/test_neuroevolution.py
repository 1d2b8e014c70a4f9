"""``hades neuroevolve``: the ES over a policy's weights, with the distillation runner.

One module-scoped run backs the learning, start and resume tests; the CLI test runs its own tiny
run and then scores the policy it wrote with ``hades eval``.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import yaml
from conftest import run_cli

import hades
from hades.envs import get_env_spec
from hades.errors import SpecError
from hades.evaluate import EvalProtocol
from hades.learn import Recipe
from hades.neuroevolution import ParamsConfig, ParamsDistiller, flatten, neuroevolve, params_preset
from hades.policy import PolicySpec
from hades.searchspace import solution_layout

GENERATIONS = 12
CHUNK = 4
TINY = ["--arch", "16,16:tanh", "--population", "8", "--eval-envs", "2", "--eval-steps", "50"]


def params_config(**overrides) -> ParamsConfig:
    recipe = Recipe(PolicySpec((16, 16), "tanh"), "gaussian_nll", 0.03, 20, 0.5)
    settings = dict(population_size=16, num_generations=GENERATIONS, recipe=recipe,
                    protocol=EvalProtocol(1, 100, episode_length=100), sigma=0.1, seed=0)
    settings.update(overrides)
    return params_preset("inverted_double_pendulum", **settings)


@pytest.fixture(scope="module")
def params_run(tmp_path_factory):
    config = params_config()
    distiller = ParamsDistiller(config, tmp_path_factory.mktemp("params") / "run", checkpoint_every=CHUNK, num_devices=1)
    policy = distiller.run()
    return config, distiller, policy


def test_the_search_space_is_the_policy_and_its_mean_starts_at_the_init(params_run):
    import jax
    import jax.numpy as jnp

    config, _, policy = params_run
    obs_dim = get_env_spec(config.env).obs_dim
    init = config.network().init(jax.random.PRNGKey(config.seed), jnp.zeros((1, obs_dim)))
    assert {name: value.shape for name, value in config.start_mean().items()} == solution_layout(config)
    assert all(np.array_equal(config.start_mean()[name], np.asarray(value)) for name, value in flatten(init).items())
    assert config.num_search_dims() == sum(np.asarray(value).size for value in flatten(init).values())
    # the ES moved the weights away from the init
    assert any(not np.array_equal(config.start_mean()[name], value) for name, value in flatten(policy.params).items())
    assert config.env_steps_per_generation == 16 * 1 * 100


def test_fitness_improves_over_generations(params_run):
    _, distiller, policy = params_run
    means = [row["mean"] for row in distiller.history]
    assert len(means) == GENERATIONS and all(math.isfinite(m) for m in means)
    assert float(np.mean(means[-3:])) > float(np.mean(means[:3])), means
    method = policy.info["method"]
    assert method["name"] == "params" and method["generations"] == GENERATIONS
    assert method["env_steps"] == GENERATIONS * 16 * 100


def test_resume_ends_bit_for_bit_where_an_uninterrupted_run_ends(params_run, tmp_path):
    config, full, full_policy = params_run
    out = tmp_path / "run"
    ParamsDistiller(dataclasses.replace(config, num_generations=CHUNK), out, CHUNK, num_devices=1).run()
    resumed = ParamsDistiller(config, out, CHUNK, num_devices=1)
    policy = resumed.run(resume=True)
    timeless = [[{k: v for k, v in row.items() if k != "seconds"} for row in run.history] for run in (resumed, full)]
    assert timeless[0] == timeless[1]
    mine, theirs = flatten(policy.params), flatten(full_policy.params)
    assert mine.keys() == theirs.keys() and all(np.array_equal(mine[name], theirs[name]) for name in mine)


def test_bad_settings_are_refused():
    with pytest.raises(SpecError, match="extra architectures"):
        params_config(extra_archs=(PolicySpec((8,)),))
    with pytest.raises(SpecError, match="method"):
        params_config(method="hades-r")
    with pytest.raises(SpecError, match="ParamsConfig"):
        ParamsDistiller(hades.distillation.preset("cpu", "hopper", 4), "unused")


def test_cli_writes_a_policy_that_hades_eval_scores_and_push_shares(tmp_path):
    out = tmp_path / "ne"
    result = run_cli("neuroevolve", "hopper", *TINY, "--generations", "4", "--checkpoint-every", "2",
                     "--validate-every", "2", "--validate-seeds", "2", "--final-seeds", "3", "--final-eval-envs", "2",
                     "--final-eval-steps", "50", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "over 3 evaluation seeds" in result.stdout.replace("\n", " ")
    for name in ("policy.safetensors", "README.md", "fitness.csv", "fitness.png", "scores.csv", "checkpoint/state.msgpack"):
        assert (out / name).is_file(), name

    card = yaml.safe_load((out / "README.md").read_text(encoding="utf-8").split("---\n", 2)[1])
    meta = card["hades"]
    assert meta["kind"] == "policy" and "neuroevolution" in card["tags"]
    assert meta["method"]["name"] == "params" and meta["method"]["strategy"] == "open_es"
    assert meta["method"]["generations"] == 4 and meta["method"]["env_steps"] == 4 * 8 * 2 * 50
    assert meta["method"]["selected"]["validations"] == 2
    evaluation = meta["evaluation"]
    assert evaluation["seeds"] == [0, 1, 2] and len(evaluation["returns"]) == 3
    assert evaluation["mean_return"] == pytest.approx(np.mean(evaluation["returns"]), abs=0.01)
    assert card["model-index"][0]["results"][0]["metrics"][0]["type"] == "mean_reward"

    policy = hades.load(out)
    assert isinstance(policy, hades.Policy) and policy.recipe.arch == PolicySpec((16, 16), "tanh")
    scored = run_cli("eval", out, "--envs", "2", "--eval-steps", "50", "--runs", "3", "--json")
    assert scored.returncode == 0, scored.stderr
    again = json.loads(scored.stdout)
    assert np.allclose(sorted(again["returns"]), sorted(evaluation["returns"]), atol=0.01)

    pushed = hades.push(out, f"file://{tmp_path}/hub/org/hopper-params")
    assert hades.load(pushed.id).env == "hopper"

    plan = run_cli("neuroevolve", "hopper", *TINY, "--generations", "4", "--out", out, "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["action"] == "finish"


def test_the_api_run_evaluates_and_writes(tmp_path):
    config = params_preset("hopper", population_size=8, num_generations=2,
                           recipe=dataclasses.replace(params_preset("hopper").recipe, arch=PolicySpec((8,), "tanh")),
                           protocol=EvalProtocol(2, 50))
    result = neuroevolve(config, tmp_path / "run", checkpoint_every=2, num_devices=1, final_seeds=2,
                         final_protocol=EvalProtocol(2, 50))
    assert result.generations == 2 and result.env_steps == 2 * 8 * 2 * 50
    assert hades.Policy.load(result.out).info["evaluation"]["mean_return"] == result.evaluation["mean_return"]
