"""HaDES, the pure part: the configuration, the ES strategy and one jitted chunk of generations.

The search space is the synthetic dataset itself (states, and actions for continuous envs), a flat
vector whose ES mean starts at zero (or at an earlier dataset: a warm start). Each generation every candidate dataset trains fresh policies
(k inits shared by the whole population for HaDES-R, one fixed init for HaDES-F), which are rolled
out with sampled actions; the fitness is the mean return over completed episodes. evosax minimises,
so :func:`make_generation` negates the fitness in exactly one place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hades.envs import NORMALIZATIONS, get_env_spec
from hades.errors import SpecError
from hades.evaluate import EvalProtocol
from hades.formats import SHA256_PATTERN
from hades.learn import Recipe, paper_recipe
from hades.policy import PolicySpec

METHODS = ("hades-r", "hades-f")
STRATEGIES = ("open_es", "snes", "pgpe", "simple_es", "sep_cma_es", "xnes")
SHAPINGS = ("raw", "centered_rank", "standardize", "softmax_rank")
# evosax strategies whose update weights the population by its shaped fitness (rank weights by default),
# and the shapings they stay stable with (unbounded utilities blow their step sizes up).
UTILITY_STRATEGIES = ("snes", "xnes", "simple_es", "sep_cma_es")
UTILITY_SHAPINGS = {"snes": ("centered_rank", "softmax_rank"), "xnes": ("centered_rank", "softmax_rank"),
                    "simple_es": ("softmax_rank",), "sep_cma_es": ("softmax_rank",)}


@dataclass(frozen=True)
class DistillConfig:
    """Everything that determines a distillation run (and so its checkpoint and result)."""

    env: str
    pairs: int
    method: str = "hades-r"
    strategy: str = "open_es"
    population_size: int = 2048
    num_generations: int = 2000
    num_inits: int = 2  # policy inits per generation (HaDES-R); HaDES-F always uses 1
    recipe: Recipe = field(default_factory=Recipe)
    protocol: EvalProtocol = field(default_factory=EvalProtocol)
    normalization: str = "running"
    sigma: float = 0.03
    es_lr: float = 0.05
    adam_beta1: float = 0.99
    fitness_shaping: str = "raw"
    temperature: float = 20.0
    learned_labels: bool = False
    fixed_init_seed: int = 0  # the init used by HaDES-F
    backend: str | None = None
    seed: int = 0
    preset: str | None = None
    init_from: str | None = None  # sha256 of the dataset the ES mean starts from (None: zeros)

    def __post_init__(self):
        spec = get_env_spec(self.env)
        object.__setattr__(self, "env", spec.name)
        checks = [
            (self.pairs >= 1, f"pairs must be at least 1, got {self.pairs}"),
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, got {self.method!r}"),
            (self.strategy in STRATEGIES, f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}"),
            (self.population_size >= 2 and self.population_size % 2 == 0,
             f"population size must be an even number >= 2, got {self.population_size}"),
            (self.num_generations >= 1, f"generations must be at least 1, got {self.num_generations}"),
            (self.num_inits >= 1, f"inits must be at least 1, got {self.num_inits}"),
            (self.normalization in NORMALIZATIONS,
             f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {self.normalization!r}"),
            (self.sigma > 0 and self.es_lr > 0, "sigma and the ES learning rate must be positive"),
            (self.fitness_shaping in SHAPINGS, f"fitness shaping must be one of {', '.join(SHAPINGS)}"),
            (self.fitness_shaping in UTILITY_SHAPINGS.get(self.strategy, SHAPINGS),
             f"{self.strategy} needs fitness shaping {' or '.join(UTILITY_SHAPINGS.get(self.strategy, SHAPINGS))}, "
             f"got {self.fitness_shaping!r}"),
            (not spec.discrete or self.pairs >= spec.action_dim or self.learned_labels,
             f"{spec.name} has {spec.action_dim} actions: fixed labels need at least that many pairs"),
            (self.init_from is None or bool(SHA256_PATTERN.fullmatch(self.init_from)),
             f"init_from must be the sha256 (64 hex digits) of the starting dataset, got {self.init_from!r}"),
            ((self.recipe.loss == "cross_entropy") == spec.discrete,
             f"loss {self.recipe.loss!r} does not fit the {spec.action_type} actions of {spec.name}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        spec.check_backend(self.backend)

    @property
    def inits_per_generation(self) -> int:
        return 1 if self.method == "hades-f" else self.num_inits

    @property
    def env_steps_per_generation(self) -> int:
        return self.population_size * self.inits_per_generation * self.protocol.num_envs * self.protocol.num_steps

    def to_dict(self) -> dict:
        data = asdict(self)
        data["recipe"] = self.recipe.to_dict()
        data["protocol"] = self.protocol.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "DistillConfig":
        data = dict(data)
        data["recipe"] = Recipe.from_dict(data["recipe"])
        data["protocol"] = EvalProtocol(**data["protocol"])
        return cls(**data)

    def fingerprint(self) -> str:
        """Identifies the run for checkpoints; ``num_generations`` is left out so a run can be extended."""
        data = self.to_dict()
        data.pop("num_generations")
        if data["init_from"] is None:  # runs started from zeros keep the fingerprint they always had
            data.pop("init_from")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def preset(name: str, env: str, pairs: int, **overrides: Any) -> DistillConfig:
    """Named starting points. ``paper``: the published settings. ``cpu``: small enough for a laptop."""
    spec = get_env_spec(env)
    if name == "paper":
        if spec.discrete:
            base = dict(strategy="snes", population_size=2048, num_generations=2000,
                        recipe=paper_recipe(spec.name, True), normalization="constant", sigma=0.5,
                        fitness_shaping="softmax_rank", temperature=20.0,
                        protocol=EvalProtocol(num_envs=8, num_steps=1024), preset="paper")
        else:
            base = dict(recipe=paper_recipe(spec.name, False), preset="paper")
    elif name == "cpu":
        recipe = paper_recipe(spec.name, spec.discrete)
        recipe = replace(recipe, arch=PolicySpec((64, 64), recipe.arch.activation))
        strategy = "snes" if spec.discrete else "open_es"
        base = dict(strategy=strategy, population_size=64, num_generations=200,
                    recipe=recipe, protocol=EvalProtocol(num_envs=1, num_steps=1000),
                    sigma=0.5 if spec.discrete else 0.03, fitness_shaping="centered_rank",
                    es_lr=0.05, preset="cpu")
    else:
        raise SpecError(f"unknown preset {name!r}; choose paper or cpu")
    try:  # one construction, so the settings are checked together (e.g. learned labels with few pairs)
        return DistillConfig(spec.name, pairs, **{**base, **overrides})
    except ValueError as exc:
        raise SpecError(f"bad distillation settings: {exc}") from None


# -- the pure, jitted part ----------------------------------------------------------------------

def solution_layout(config: DistillConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays the ES searches over."""
    spec = get_env_spec(config.env)
    layout = {"states": (config.pairs, spec.obs_dim)}
    if not spec.discrete:
        layout["actions"] = (config.pairs, spec.action_dim)
    elif config.learned_labels:
        layout["label_logits"] = (config.pairs, spec.action_dim)
    return layout


def start_arrays(config: DistillConfig, dataset) -> dict:
    """The ES mean that starts a run from ``dataset`` (a warm start), in :func:`solution_layout`'s shapes.

    Raises SpecError when the dataset cannot seed this run (other env, pair count, normalisation
    or label layout).
    """
    import numpy as np

    spec = get_env_spec(config.env)
    problems = []
    if dataset.env != spec.name:
        problems.append(f"it is a {dataset.env} dataset, this run distils {spec.name}")
    if dataset.normalization != config.normalization:
        problems.append(f"its normalisation is {dataset.normalization}, this run's {config.normalization} "
                        f"(pass --normalization {dataset.normalization})")
    if problems:
        raise SpecError(f"cannot start from that dataset: {'; '.join(problems)}")
    states = np.asarray(dataset.states, np.float32)
    if (not spec.discrete or config.learned_labels) and dataset.pairs != config.pairs:
        raise SpecError(f"cannot start from that dataset: it has {dataset.pairs} pairs, this run {config.pairs} "
                        f"(pass --pairs {dataset.pairs})")
    if not spec.discrete:
        return {"states": states, "actions": np.asarray(dataset.actions, np.float32)}
    labels = np.asarray(dataset.actions)
    if config.learned_labels:
        return {"states": states, "label_logits": np.eye(spec.action_dim, dtype=np.float32)[labels]}
    # Fixed labels: the dataset keeps only the labelled states, in label order.
    wanted = fixed_labels(config)
    keep = wanted >= 0
    if labels.shape != wanted[keep].shape or not (labels == wanted[keep]).all():
        raise SpecError("cannot start from that dataset: its labels are not the fixed layout of this run "
                        f"({config.pairs // spec.action_dim} states per action, in order); try --learned-labels")
    full = np.zeros(solution_layout(config)["states"], np.float32)
    full[keep] = states
    return {"states": full}


def fixed_labels(config: DistillConfig):
    """D // n_actions states per action, in order; leftover states get label -1 and are unused."""
    import numpy as np

    n_actions = get_env_spec(config.env).action_dim
    per_action = config.pairs // n_actions
    labels = np.full(config.pairs, -1, np.int32)
    labels[: per_action * n_actions] = np.repeat(np.arange(n_actions), per_action)
    return labels


def make_strategy(config: DistillConfig):
    """The evosax 0.3 strategy and its params, configured as the config says."""
    import jax.numpy as jnp
    import optax
    from evosax import algorithms
    from evosax.core import fitness_shaping as shaping

    solution = {name: jnp.zeros(shape) for name, shape in solution_layout(config).items()}
    shaping_fn = {
        "raw": shaping.identity_fitness_shaping_fn,
        "centered_rank": shaping.centered_rank_fitness_shaping_fn,
        "standardize": shaping.standardize_fitness_shaping_fn,
        "softmax_rank": shaping.weights_fitness_shaping_fn,
    }[config.fitness_shaping]
    if config.strategy in UTILITY_STRATEGIES and config.fitness_shaping != "softmax_rank":
        # These strategies read the shaped fitness as utilities (higher is better), while the other
        # shapings keep evosax's minimising order (lower is better): flip it, or they climb the loss.
        minimising_shaping = shaping_fn

        def shaping_fn(population, fitness, state, params):
            return -minimising_shaping(population, fitness, state, params)
    size = config.population_size
    if config.strategy == "open_es":
        strategy = algorithms.Open_ES(
            size, solution, use_antithetic_sampling=True,
            optimizer=optax.adam(config.es_lr, b1=config.adam_beta1),
            std_schedule=optax.constant_schedule(config.sigma), fitness_shaping_fn=shaping_fn)
        params = strategy.default_params
    elif config.strategy == "snes":
        strategy = algorithms.SNES(size, solution, fitness_shaping_fn=shaping_fn)
        params = strategy.default_params.replace(std_init=jnp.asarray(config.sigma))
        if config.fitness_shaping == "softmax_rank":
            # Softmax over ranks (rank 0 = best, as evosax minimises), minus the mean as a baseline.
            ranks = jnp.arange(size) / (size - 1)
            weights = jnp.exp(-config.temperature * ranks)
            params = params.replace(weights=weights / weights.sum() - 1.0 / size)
    else:
        cls = {"pgpe": algorithms.PGPE, "simple_es": algorithms.SimpleES,
               "sep_cma_es": algorithms.Sep_CMA_ES, "xnes": algorithms.xNES}[config.strategy]
        strategy = cls(size, solution, fitness_shaping_fn=shaping_fn)
        params = strategy.default_params
        if hasattr(params, "std_init"):
            params = params.replace(std_init=jnp.asarray(config.sigma))
    if config.fitness_shaping == "softmax_rank" and not hasattr(params, "weights"):
        raise SpecError(f"softmax_rank shaping needs a strategy with rank weights (snes, xnes), not {config.strategy}")
    return strategy, params


# On CPU, candidates whose inner policies together hold about this many parameters train side by
# side (vmapped); a larger population trains batch after batch (lax.map), so that a batch's weights
# and Adam state stay in a core's cache. bench/train_batch.py measures it: for 2x256 tanh policies,
# batches of 3 ran 2.8x faster than all 32 candidates of a device at once; 2x64 policies (5k
# parameters each) are fastest all at once.
TRAIN_CACHE_PARAMS = 262_144


def policy_param_count(config: DistillConfig) -> int:
    """Parameters of one inner policy, read from the network's shapes (nothing is computed)."""
    import jax
    import jax.numpy as jnp

    from hades.policy import make_network

    spec = get_env_spec(config.env)
    network = make_network(config.recipe.arch, spec.action_dim, spec.discrete)
    shapes = jax.eval_shape(network.init, jax.random.PRNGKey(0), jnp.zeros((1, spec.obs_dim)))
    return sum(leaf.size for leaf in jax.tree.leaves(shapes))


def default_train_batch(config: DistillConfig, platform: str) -> int | None:
    """Candidates trained at once per device: all of them (None) on accelerators, a cache-sized batch on CPU."""
    if platform != "cpu":
        return None
    return max(1, TRAIN_CACHE_PARAMS // policy_param_count(config))


def make_fitness(config: DistillConfig, obs_mean, obs_var, train_batch: int | None = None):
    """``fitness(population, init_keys, eval_keys) -> (mean return, episodes)``, one value per candidate.

    Every candidate trains one policy per init and rolls each out. Training runs ``train_batch``
    candidates at a time (``lax.map``; None: all at once), rollouts run the whole population at once.
    """
    if hasattr(config, "make_task_fitness"):  # a supervised task (hades.imagetask) scores candidates itself
        return config.make_task_fitness(obs_mean, obs_var, train_batch)
    import jax
    import jax.numpy as jnp

    from hades.evaluate import make_evaluate
    from hades.learn import make_train

    spec = get_env_spec(config.env)
    train = make_train(config.recipe, spec.obs_dim, spec.action_dim, spec.discrete)
    evaluate = make_evaluate(spec, config.recipe.arch, config.protocol, config.normalization, config.backend)
    labels = jnp.asarray(fixed_labels(config)) if spec.discrete and not config.learned_labels else None

    def targets_of(candidate):
        if not spec.discrete:
            return candidate["states"], candidate["actions"]
        if config.learned_labels:
            return candidate["states"], jnp.argmax(candidate["label_logits"], -1)
        used = int((fixed_labels(config) >= 0).sum())
        return candidate["states"][:used], labels[:used]

    def fitness(population, init_keys, eval_keys):
        def train_candidate(candidate):  # one policy per init, stacked
            states, targets = targets_of(candidate)
            return jax.lax.map(lambda init_key: train(init_key, states, targets)[0], init_keys)

        size = jax.tree.leaves(population)[0].shape[0]
        if train_batch is None or train_batch >= size:
            params = jax.vmap(train_candidate)(population)
        else:
            params = jax.lax.map(train_candidate, population, batch_size=train_batch)

        def evaluate_candidate(candidate_params):
            return jax.lax.map(lambda item: evaluate(item[0], item[1], obs_mean, obs_var), (candidate_params, eval_keys))

        metrics = jax.vmap(evaluate_candidate)(params)  # [population, inits]
        episodes = metrics["episodes"].sum(-1)
        # Pooled over inits: the mean return of all completed episodes (partial returns if none).
        mean = jnp.where(episodes > 0, metrics["return_sum"].sum(-1) / jnp.maximum(episodes, 1),
                         metrics["mean_return"].mean(-1))
        return mean, episodes

    return fitness


def _strong(x):
    """The same value without weak typing: carries must keep one exact type across chunks."""
    import jax.numpy as jnp

    x = jnp.asarray(x)
    return jnp.asarray(x, dtype=x.dtype)


def make_generation(config: DistillConfig, obs_mean, obs_var, mesh=None, start=None, train_batch="auto"):
    """Return ``(init_state(key), run_chunk(state, length))``; ``run_chunk`` is one jitted scan.

    ``start`` (arrays in :func:`solution_layout`'s shapes) is where the ES mean begins; zeros if None.
    ``train_batch``: candidates trained at once on each device (see :func:`make_fitness`); "auto"
    picks :func:`default_train_batch` for the platform.
    """
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P

    strategy, es_params = make_strategy(config)
    if train_batch == "auto":
        train_batch = default_train_batch(config, jax.default_backend())
    population_fitness = make_fitness(config, obs_mean, obs_var, train_batch)
    inits = config.inits_per_generation

    if mesh is not None and mesh.size > 1:
        population_fitness = jax.shard_map(
            population_fitness, mesh=mesh, in_specs=(P("population"), P(), P()),
            out_specs=(P("population"), P("population")), check_vma=False)

    def init_state(key):
        key, init_key = jax.random.split(key)
        layout = solution_layout(config)
        if start is None:
            mean = {name: jnp.zeros(shape) for name, shape in layout.items()}
        else:
            mean = {name: jnp.asarray(start[name], jnp.float32).reshape(shape) for name, shape in layout.items()}
        state = {"key": key, "es": strategy.init(init_key, mean, es_params)}
        # Give the state the exact (strong) dtypes a chunk returns, so the first chunk, later
        # chunks and a resumed run all use one compiled program.
        return jax.tree.map(_strong, state)

    def generation(state, _):
        key, ask_key, init_key, eval_key, tell_key = jax.random.split(state["key"], 5)
        population, es_state = strategy.ask(ask_key, state["es"], es_params)
        if config.method == "hades-f":
            init_keys = jax.random.PRNGKey(config.fixed_init_seed)[None]
        else:
            init_keys = jax.random.split(init_key, inits)  # shared by the whole population
        eval_keys = jax.random.split(eval_key, inits)  # common random numbers, as for the inits
        fitness, episodes = population_fitness(population, init_keys, eval_keys)
        es_state, _ = strategy.tell(tell_key, population, -fitness, es_state, es_params)  # evosax minimises
        es_state = jax.tree.map(_strong, es_state)
        metrics = {"mean": fitness.mean(), "max": fitness.max(), "min": fitness.min(),
                   "sigma": jnp.mean(es_state.std), "episodes": episodes.sum()}
        return {"key": key, "es": es_state}, metrics

    def run_chunk(state, length):
        return jax.lax.scan(generation, state, None, length=length)

    def dataset_arrays(state):
        return strategy.get_mean(state["es"])

    return init_state, jax.jit(run_chunk, static_argnums=1), dataset_arrays
