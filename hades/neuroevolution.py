"""The neuroevolution baseline: the evolution strategy searches a policy's weights directly.

Where HaDES evolves a synthetic dataset and scores each candidate by the policies trained on it,
here each candidate IS a policy: its weights are perturbed, rolled out with sampled actions under
the run's protocol, and scored by the mean return over completed episodes. The published
baseline is OpenES (sigma 0.03) on a 2x512 tanh policy; the ES mean starts at the network's own
initialisation (orthogonal by default) drawn from the run's seed, not at zeros.

:class:`ParamsConfig` is a :class:`~hades.distillation.DistillConfig` that lays out its own search
space, start and fitness, so the runner (jitted chunks, checkpoints, resume, progress, restarts)
runs it unchanged; :class:`ParamsDistiller` turns the ES mean into a :class:`hades.Policy`, and
:func:`neuroevolve` is the whole run: search, final evaluation of the ES mean policy on several
evaluation seeds, and the output folder (``policy.safetensors``, its model card, fitness.csv,
fitness.png, and scores.csv with validation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hades.distillation import DistillConfig
from hades.envs import get_env_spec
from hades.errors import SpecError
from hades.evaluate import EvalProtocol
from hades.learn import paper_recipe
from hades.policy import PolicySpec
from hades.runner import Distiller

PARAMS_METHOD = "params"
PAPER_ARCH = PolicySpec((512, 512), "tanh")
CARD_TEMPLATE = "neuroevolution_policy"
SEP = "/"  # the flat names of the searched arrays: flax's parameter paths joined by this


@dataclass(frozen=True)
class ParamsConfig(DistillConfig):
    """A neuroevolution run: ``recipe.arch`` is the policy whose weights the ES searches.

    ``pairs``, the inits and the inner training settings of the recipe play no part; every
    candidate is rolled out once under ``protocol``.
    """

    methods = (PARAMS_METHOD,)
    searches_dataset = False

    pairs: int = 0
    method: str = PARAMS_METHOD
    fitness_shaping: str = "centered_rank"

    def __post_init__(self):
        checks = [
            (self.pairs == 0, f"a params run searches weights, not pairs: pairs must be 0, got {self.pairs}"),
            (not self.extra_archs, "a params run searches one policy: it takes no extra architectures"),
            (self.init_from is None, "a params run starts at the network's init: it takes no init_from dataset"),
            (not self.learned_labels, "a params run has no labels to learn"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        super().__post_init__()

    def num_search_dims(self) -> int:
        return int(sum(np.prod(shape) for shape in self.search_layout().values()))

    @property
    def inits_per_generation(self) -> int:
        return 1

    # -- the hooks of the runner (hades.searchspace.solution_layout, hades.distillation.make_generation,
    # hades.distillation.make_fitness, hades.validation.make_validate) --
    def network(self):
        from hades.policy import make_network

        spec = get_env_spec(self.env)
        return make_network(self.recipe.arch, spec.action_dim, spec.discrete)

    def search_layout(self) -> dict[str, tuple[int, ...]]:
        """The policy's parameter shapes, by flat name (``params/Dense_0/kernel``)."""
        import jax
        import jax.numpy as jnp

        spec = get_env_spec(self.env)
        shapes = jax.eval_shape(self.network().init, jax.random.PRNGKey(0), jnp.zeros((1, spec.obs_dim)))
        return {name: tuple(leaf.shape) for name, leaf in flatten(shapes).items()}

    def start_mean(self) -> dict[str, np.ndarray]:
        """The network's own initialisation from the run's seed: where the ES mean begins."""
        import jax
        import jax.numpy as jnp

        spec = get_env_spec(self.env)
        params = self.network().init(jax.random.PRNGKey(self.seed), jnp.zeros((1, spec.obs_dim)))
        return {name: np.asarray(value, np.float32) for name, value in flatten(params).items()}

    def make_task_fitness(self, obs_mean, obs_var, train_batch: int | None = None):
        """``fitness(population, init_keys, eval_keys)``: every candidate policy rolled out once, all
        with the same env and action noise (``eval_keys[0]``); the inits are not used."""
        import jax
        import jax.numpy as jnp

        from hades.evaluate import make_evaluate

        evaluate = make_evaluate(get_env_spec(self.env), self.recipe.arch, self.protocol, self.normalization,
                                 self.backend)

        def fitness(population, init_keys, eval_keys):
            metrics = jax.vmap(lambda flat: evaluate(unflatten(flat), eval_keys[0], obs_mean, obs_var))(population)
            episodes = metrics["episodes"]
            mean = jnp.where(episodes > 0, metrics["return_sum"] / jnp.maximum(episodes, 1), metrics["mean_return"])
            return mean, episodes

        return fitness

    def make_task_validate(self, validation, obs_mean=None, obs_var=None):
        """``validate(arrays) -> returns``: the ES mean policy evaluated once per validation seed."""
        import jax

        from hades.evaluate import make_evaluate
        from hades.trainfrom import seed_keys

        spec = get_env_spec(self.env)
        evaluate = make_evaluate(spec, self.recipe.arch, validation.protocol, self.normalization, self.backend)
        keys = seed_keys(range(validation.first_seed, validation.first_seed + validation.seeds))
        mean = np.zeros(spec.obs_dim, np.float32) if obs_mean is None else np.asarray(obs_mean, np.float32)
        var = np.ones(spec.obs_dim, np.float32) if obs_var is None else np.asarray(obs_var, np.float32)
        compiled = jax.jit(lambda flat, keys: jax.vmap(
            lambda key: evaluate(unflatten(flat), key, mean, var)["mean_return"])(keys))
        return lambda arrays: np.asarray(compiled(arrays, keys))


def flatten(tree) -> dict:
    from flax.traverse_util import flatten_dict

    return flatten_dict(tree, sep=SEP)


def unflatten(flat: dict):
    from flax.traverse_util import unflatten_dict

    return unflatten_dict(dict(flat), sep=SEP)


def params_preset(env: str, **overrides: Any) -> ParamsConfig:
    """The published baseline: OpenES, sigma 0.03, Adam lr 0.05, centred ranks, population 2048, a
    2x512 tanh policy; MinAtar rolls out 8 envs x 1024 steps per candidate, Brax 4 x 1024."""
    spec = get_env_spec(env)
    recipe = replace(paper_recipe(spec.name, spec.discrete), arch=PAPER_ARCH)
    protocol = EvalProtocol(num_envs=8, num_steps=1024) if spec.discrete else EvalProtocol()
    base = dict(strategy="open_es", population_size=2048, num_generations=2000, recipe=recipe, protocol=protocol,
                sigma=0.03, es_lr=0.05, fitness_shaping="centered_rank", normalization="running", preset="paper")
    try:
        return ParamsConfig(spec.name, **{**base, **overrides})
    except ValueError as exc:
        raise SpecError(f"bad neuroevolution settings: {exc}") from None


class ParamsDistiller(Distiller):
    """The runner for a :class:`ParamsConfig`: what it keeps and returns is a :class:`hades.Policy`."""

    def __init__(self, config: ParamsConfig, out, checkpoint_every: int = 10, num_devices: int | None = None,
                 train_batch="auto", validation=None):
        if not isinstance(config, ParamsConfig):
            raise SpecError("ParamsDistiller runs a ParamsConfig")
        super().__init__(config, out, checkpoint_every, num_devices, train_batch=train_batch, validation=validation)

    def _pairs(self, arrays: dict) -> tuple:
        return (arrays,)  # the validation scores the ES mean's arrays themselves

    def _dataset(self, arrays: dict, obs_mean, obs_var, selected: dict | None = None):
        """The ES mean as a policy, its card's ``method`` recording the search."""
        from hades.policy_io import Policy
        from hades.provenance import provenance

        config = self.config
        method = self._method_record(PARAMS_METHOD, selected, sigma=config.sigma, es_lr=config.es_lr,
                                     fitness_shaping=config.fitness_shaping,
                                     searched_parameters=config.num_search_dims())
        info = {"method": method, "backend": config.backend, "seed": config.seed, "license": "apache-2.0",
                "provenance": provenance(config.seed)}
        constant = config.normalization == "constant"
        params = unflatten({name: np.asarray(value, np.float32) for name, value in arrays.items()})
        return Policy(params, config.env, config.recipe, config.normalization,
                      np.asarray(obs_mean, np.float32) if constant else None,
                      np.asarray(obs_var, np.float32) if constant else None, info)

    def write_outputs(self, policy, evaluation: dict | None = None, pictures: bool = True) -> Path:
        """The policy folder (``policy.safetensors``, card, fitness.csv/png, scores.csv) next to the checkpoint."""
        from hades.multihost import is_lead_process

        if not is_lead_process():
            return self.out
        return write_params_outputs(self.out, policy, self.history, self.validation_history, evaluation)


def write_params_outputs(out, policy, history: list[dict], validation_history=(), evaluation: dict | None = None) -> Path:
    """Stage the policy folder next to ``out`` and move it in, the card (with the checksum) last;
    files the folder does not name (the checkpoint) are left alone."""
    from hades.curves import fitness_plot
    from hades.files import FITNESS_COLUMNS, FITNESS_CSV, FITNESS_PLOT, VALIDATION_COLUMNS, VALIDATION_CSV
    from hades.outputs import move_in, staging_beside, write_csv
    from hades.policy_io import write_policy_folder

    out = Path(out)
    if evaluation is not None:
        policy = replace(policy, info={**policy.info, "evaluation": evaluation})
    out.mkdir(parents=True, exist_ok=True)
    with staging_beside(out) as tmp:
        csv_path = write_csv(tmp / FITNESS_CSV, FITNESS_COLUMNS, history)
        selected = (policy.info.get("method") or {}).get("selected") or {}
        plot = fitness_plot(csv_path, tmp / FITNESS_PLOT, validation=validation_history,
                            selected=selected.get("generation"))
        extra = {FITNESS_CSV: csv_path, FITNESS_PLOT: plot}
        if validation_history:
            extra[VALIDATION_CSV] = write_csv(tmp / VALIDATION_CSV, VALIDATION_COLUMNS, validation_history)
        move_in(write_policy_folder(tmp / "policy", policy.to_bytes(), lambda sha: card_data(policy, sha),
                                    CARD_TEMPLATE, extra), out)
    return out


def card_data(policy, sha256: str) -> dict:
    """The policy card's front matter, tagged as a neuroevolution result."""
    data = policy.card_data(sha256)
    data["tags"] = ["hades", "neuroevolution", "evolution-strategies", "reinforcement-learning", policy.env]
    return data


def final_evaluation(policy, seeds: int = 8, protocol: EvalProtocol | None = None, first_seed: int = 0) -> dict:
    """The ES mean policy under the standard protocol (sampled actions), once per evaluation seed."""
    from hades.policy_io import evaluate_policy

    protocol = protocol or EvalProtocol()
    result = evaluate_policy(policy, protocol, seeds, first_seed)
    return {"protocol": protocol.to_dict(), "returns": [round(float(r), 2) for r in result.returns],
            "episodes": int(sum(result.episodes)), "mean_return": round(result.mean, 2),
            "std_return": round(result.std, 2), "seeds": list(range(first_seed, first_seed + seeds))}


@dataclass(frozen=True)
class ParamsResult:
    """What a neuroevolution run produced: the policy (as its card records it), where it lies, what it cost."""

    policy: Any
    out: Path
    evaluation: dict | None
    selected: dict | None
    generations: int
    env_steps: int


def neuroevolve(config: ParamsConfig, out, *, resume: bool = False, checkpoint_every: int = 10,
                num_devices: int | None = None, final_seeds: int = 8, final_protocol: EvalProtocol | None = None,
                validation=None, on_progress: Callable | None = None,
                on_stage: Callable[[str], None] | None = None) -> ParamsResult:
    """Evolve a policy's weights with ``config`` into ``out``: :func:`hades.distill`'s counterpart.

    The final evaluation scores the kept ES mean policy on ``final_seeds`` evaluation seeds
    (0, 1, ...) under ``final_protocol`` (the standard one by default; 0 seeds skips it).
    """
    from hades.api import STAGE_EVALUATE, STAGE_WRITE
    from hades.multihost import configure_devices

    configure_devices(num_devices)
    from hades.multihost import is_lead_process, shutdown_distributed

    stage = on_stage or (lambda name: None)
    distiller = ParamsDistiller(config, out, checkpoint_every, num_devices, validation=validation)
    try:
        policy = distiller.run(resume=resume, on_progress=on_progress)
    finally:
        shutdown_distributed()
    evaluation = None
    if is_lead_process():
        if final_seeds:
            stage(STAGE_EVALUATE)
            evaluation = final_evaluation(policy, final_seeds, final_protocol)
            policy = replace(policy, info={**policy.info, "evaluation": evaluation})
        stage(STAGE_WRITE)
        distiller.write_outputs(policy)
    method = policy.info["method"]
    return ParamsResult(policy, distiller.out, evaluation, method.get("selected"), method["generations"],
                        method["env_steps"])
