"""HaDES, the pure part: the configuration, the presets, the fitness and one jitted chunk of generations.

The search space is the synthetic dataset itself (states, and actions for continuous envs), a flat
vector whose ES mean starts at zero (or at an earlier dataset: a warm start). Each generation every candidate dataset trains fresh policies
(k inits shared by the whole population for HaDES-R, one fixed init for HaDES-F), which are rolled
out with sampled actions; the fitness is the mean return over completed episodes. evosax minimises,
so :func:`make_generation` negates the fitness in exactly one place. The strategies are built by
:mod:`hades.strategies`, the arrays of the search space laid out by :mod:`hades.searchspace`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

from hades.envs import NORMALIZATIONS, get_env_spec
from hades.errors import SpecError
from hades.evaluate import EvalProtocol
from hades.formats import SHA256_PATTERN
from hades.learn import Recipe, paper_recipe
from hades.limits import MAX_PAIRS, check_search_numbers
from hades.policy import PolicySpec
from hades.searchspace import fixed_labels, search_dims, solution_layout, start_arrays  # noqa: F401 (also imported from here)
from hades.strategies import (FLOORED_STRATEGIES, FULL_COVARIANCE_MAX_DIMS, check_settings, default_population_size,
                              fits, make_strategy, strategy_defaults)

METHODS = ("hades-r", "hades-f")
# Fields added after runs were checkpointed: at these values they stay out of the fingerprint, so
# those checkpoints keep resuming (a run started from zeros leaves out init_from the same way).
LATER_FIELD_DEFAULTS = {"init_from": None, "es_lr_decay": 1.0, "es_lr_floor": 0.0, "sigma_decay": 1.0,
                        "sigma_floor": 0.0, "restarts": 0, "restart_patience": 3, "restart_factor": 2,
                        "extra_archs": []}


@dataclass(frozen=True)
class DistillConfig:
    """Everything that determines a distillation run (and so its checkpoint and result)."""

    methods: ClassVar[tuple[str, ...]] = METHODS
    searches_dataset: ClassVar[bool] = True  # False: a subclass searches something else (hades.neuroevolution)

    env: str
    pairs: int
    method: str = "hades-r"
    strategy: str = "open_es"
    population_size: int | None = 2048  # None: sized to the search space (default_population_size)
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
    es_lr_decay: float = 1.0  # OpenES: learning rate x this every generation (1: constant) ...
    es_lr_floor: float = 0.0  # ... down to this
    sigma_decay: float = 1.0  # OpenES: sigma x this every generation (1: constant) ...
    sigma_floor: float = 0.0  # ... down to this (CMA-ES, Sep-CMA-ES: the least step size they adapt to)
    restarts: int = 0  # IPOP restarts: at most this many (0: none); they watch the validated ES mean
    restart_patience: int = 3  # restart after this many validations without a new best
    restart_factor: int = 2  # each restart multiplies the population by this
    # More inner policies: the fitness and the validation are the mean over every architecture; the
    # card's recipe keeps the first (recipe.arch).
    extra_archs: tuple[PolicySpec, ...] = ()

    def __post_init__(self):
        spec = get_env_spec(self.env)
        object.__setattr__(self, "env", spec.name)
        object.__setattr__(self, "extra_archs", tuple(self.extra_archs))
        if self.population_size is None:
            object.__setattr__(self, "population_size", default_population_size(self.num_search_dims()))
        dataset = self.searches_dataset
        checks = [
            (self.pairs >= 1 or not dataset, f"pairs must be at least 1, got {self.pairs}"),
            (self.pairs <= MAX_PAIRS, f"pairs must be at most {MAX_PAIRS}, got {self.pairs}"),
            (not self.learned_labels or spec.discrete,
             f"learned labels are for discrete actions; {spec.name}'s actions are continuous and always evolved"),
            (self.method in self.methods, f"method must be one of {', '.join(self.methods)}, got {self.method!r}"),
            *check_settings(self),
            (self.population_size >= 2 and self.population_size % 2 == 0,
             f"population size must be an even number >= 2, got {self.population_size}"),
            (self.num_generations >= 1, f"generations must be at least 1, got {self.num_generations}"),
            (self.num_inits >= 1, f"inits must be at least 1, got {self.num_inits}"),
            (self.normalization in NORMALIZATIONS,
             f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {self.normalization!r}"),
            (self.sigma > 0 and self.es_lr > 0, "sigma and the ES learning rate must be positive"),
            (self.restarts >= 0 and self.restart_patience >= 1 and self.restart_factor >= 2,
             "restarts must be non-negative, their patience at least 1 and their population factor at least 2"),
            (all(isinstance(arch, PolicySpec) for arch in self.extra_archs), "extra_archs must be PolicySpecs"),
            (not dataset or not spec.discrete or self.pairs >= spec.action_dim or self.learned_labels,
             f"{spec.name} has {spec.action_dim} actions: fixed labels need at least that many pairs"),
            (self.init_from is None or bool(SHA256_PATTERN.fullmatch(self.init_from)),
             f"init_from must be the sha256 (64 hex digits) of the starting dataset, got {self.init_from!r}"),
            ((self.recipe.loss == "cross_entropy") == spec.discrete,
             f"loss {self.recipe.loss!r} does not fit the {spec.action_type} actions of {spec.name}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        check_search_numbers(self)  # then ceilings and finiteness, which the checks above leave open
        spec.check_backend(self.backend)

    def num_search_dims(self) -> int:
        """How many numbers the ES searches over (what an automatic population is sized to)."""
        return search_dims(self.env, self.pairs, self.learned_labels) if self.pairs >= 1 else 1

    @property
    def inits_per_generation(self) -> int:
        return 1 if self.method == "hades-f" else self.num_inits

    @property
    def architectures(self) -> tuple[PolicySpec, ...]:
        """The inner policies every candidate trains: the recipe's first (the card's), then the extra ones."""
        return (self.recipe.arch, *self.extra_archs)

    @property
    def env_steps_per_generation(self) -> int:
        return (self.population_size * self.inits_per_generation * len(self.architectures)
                * self.protocol.num_envs * self.protocol.num_steps)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["recipe"] = self.recipe.to_dict()
        data["protocol"] = self.protocol.to_dict()
        data["extra_archs"] = [arch.to_dict() for arch in self.extra_archs]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "DistillConfig":
        data = dict(data)
        data["recipe"] = Recipe.from_dict(data["recipe"])
        data["protocol"] = EvalProtocol(**data["protocol"])
        data["extra_archs"] = tuple(PolicySpec.from_dict(arch) for arch in data.get("extra_archs", ()))
        return cls(**data)

    def fingerprint(self) -> str:
        """Identifies the run for checkpoints; ``num_generations`` is left out so a run can be extended."""
        data = self.to_dict()
        data.pop("num_generations")
        for name, default in LATER_FIELD_DEFAULTS.items():
            if data[name] == default:
                data.pop(name)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


PRESETS = ("paper", "cpu", "fast")


def preset(name: str, env: str, pairs: int, **overrides: Any) -> DistillConfig:
    """Named starting points. ``paper``: the published settings. ``cpu``: small enough for a laptop.

    ``fast``: the settings that reached a good dataset in the fewest env steps on a few CPU cores
    in ``bench/efficiency.py``'s comparisons (the README has the curves). Brax: full CMA-ES (Sep-CMA-ES beyond
    :data:`~hades.strategies.FULL_COVARIANCE_MAX_DIMS` numbers) with its own rank weights, initial
    step 0.1 and least step 0.01, population 4 + 3 ln n (n: the numbers searched), IPOP restarts
    (up to 4, each doubling the population, after 3 validations without a new best), 2 inits and
    one 1000-step episode per candidate, inner policy 2x256 tanh with the paper's optimiser and
    steps, constant normalisation. MinAtar: OpenES with centred ranks, sigma 0.1, Adam lr 0.02,
    population 256, no restarts, 1 init and 4 envs x 1000 steps per candidate, inner policy 2x64
    relu, constant normalisation (SNES, sigma 0.5, population 64, led at 10M env steps on Breakout
    and then stalled). Restarts watch the validated ES mean: ``hades distill`` validates every 10
    generations when a run has them.

    Picking a ``strategy`` that the preset's fitness shaping does not suit, without saying
    ``fitness_shaping``, takes :func:`~hades.strategies.strategy_defaults` for the shaping (and
    for sigma unless given).
    """
    spec = get_env_spec(env)
    recipe = paper_recipe(spec.name, spec.discrete)
    if name == "paper":
        if spec.discrete:
            base = dict(strategy="snes", population_size=2048, num_generations=2000,
                        recipe=recipe, normalization="constant", sigma=0.5,
                        fitness_shaping="softmax_rank", temperature=20.0,
                        protocol=EvalProtocol(num_envs=8, num_steps=1024), preset="paper")
        else:
            base = dict(recipe=recipe, preset="paper")
    elif name == "cpu":
        recipe = replace(recipe, arch=PolicySpec((64, 64), recipe.arch.activation))
        strategy = "snes" if spec.discrete else "open_es"
        base = dict(strategy=strategy, population_size=64, num_generations=200,
                    recipe=recipe, protocol=EvalProtocol(num_envs=1, num_steps=1000),
                    sigma=0.5 if spec.discrete else 0.03, fitness_shaping="centered_rank",
                    es_lr=0.05, preset="cpu")
    elif name == "fast":
        common = dict(fitness_shaping="rank_weights", num_generations=2000, normalization="constant",
                      restart_patience=3, restart_factor=2, preset="fast")
        if spec.discrete:
            base = dict(common, strategy="open_es", fitness_shaping="centered_rank", population_size=256,
                        sigma=0.1, es_lr=0.02, num_inits=1, restarts=0,
                        recipe=replace(recipe, arch=PolicySpec((64, 64), "relu")),
                        protocol=EvalProtocol(num_envs=4, num_steps=1000))
        else:
            dims = search_dims(spec.name, pairs) if pairs >= 1 else 1
            base = dict(common, strategy="cma_es" if dims <= FULL_COVARIANCE_MAX_DIMS else "sep_cma_es",
                        population_size=None, sigma=0.1, sigma_floor=0.01, num_inits=2, restarts=4,
                        recipe=replace(recipe, arch=PolicySpec((256, 256), "tanh")),
                        protocol=EvalProtocol(num_envs=1, num_steps=1000))
    else:
        raise SpecError(f"unknown preset {name!r}; choose {', '.join(PRESETS)}")
    strategy = overrides.get("strategy", base.get("strategy", "open_es"))
    if "fitness_shaping" not in overrides and not fits(strategy, base.get("fitness_shaping", "raw")):
        defaults = strategy_defaults(strategy, spec.discrete)
        base.update({key: value for key, value in defaults.items() if key not in overrides})
        if strategy not in FLOORED_STRATEGIES:
            base.pop("sigma_floor", None)
    try:  # one construction, so the settings are checked together (e.g. learned labels with few pairs)
        return DistillConfig(spec.name, pairs, **{**base, **overrides})
    except ValueError as exc:
        raise SpecError(f"bad distillation settings: {exc}") from None


# -- the pure, jitted part ----------------------------------------------------------------------

# On CPU, candidates whose inner policies together hold about this many parameters train side by
# side (vmapped); a larger population trains batch after batch (lax.map), so that a batch's weights
# and Adam state stay in a core's cache. bench/train_batch.py measures it: for 2x256 tanh policies,
# batches of 3 ran 2.8x faster than all 32 candidates of a device at once; 2x64 policies (5k
# parameters each) are fastest all at once. Batches hold at least 2 candidates: vmapped over one,
# XLA:CPU trains 2x512 policies 2.3x slower than unbatched, while batches of 2 train them 1.16x
# faster than unbatched (bench/train_batch.py --loops).
TRAIN_CACHE_PARAMS = 262_144
MIN_TRAIN_BATCH = 2


def policy_param_count(config: DistillConfig, arch: PolicySpec | None = None) -> int:
    """Parameters of one inner policy (``arch``, default the recipe's), read from the network's shapes."""
    import jax
    import jax.numpy as jnp

    from hades.policy import make_network

    spec = get_env_spec(config.env)
    network = make_network(arch or config.recipe.arch, spec.action_dim, spec.discrete)
    shapes = jax.eval_shape(network.init, jax.random.PRNGKey(0), jnp.zeros((1, spec.obs_dim)))
    return sum(leaf.size for leaf in jax.tree.leaves(shapes))


def default_train_batch(config: DistillConfig, platform: str) -> int | None:
    """Candidates trained at once per device: all of them (None) on accelerators, a cache-sized batch on CPU
    (sized for the largest of the run's architectures, which train one after the other)."""
    if platform != "cpu":
        return None
    return max(MIN_TRAIN_BATCH, TRAIN_CACHE_PARAMS // max(policy_param_count(config, arch)
                                                          for arch in config.architectures))


def map_candidates(fn, population, train_batch: int | None):
    """``fn`` over the population's candidates: all at once (vmap) where ``train_batch`` is None or covers
    them, else ``train_batch`` at a time (``lax.map``). Batches of one run unbatched: XLA:CPU runs the
    inner training vmapped over a batch of one 2.3x slower than the same loop without vmap
    (bench/train_batch.py --loops)."""
    import jax

    size = jax.tree.leaves(population)[0].shape[0]
    if train_batch is not None and min(train_batch, size) == 1:
        return jax.lax.map(fn, population)
    if train_batch is None or train_batch >= size:
        return jax.vmap(fn)(population)
    return jax.lax.map(fn, population, batch_size=train_batch)


def make_fitness(config: DistillConfig, obs_mean, obs_var, train_batch: int | None = None):
    """``fitness(population, init_keys, eval_keys) -> (mean return, episodes)``, one value per candidate.

    Every candidate trains one policy per init and architecture and rolls each out; its fitness is
    the mean over the architectures of the return pooled over that architecture's inits. Training
    runs ``train_batch`` candidates at a time (``lax.map``; None: all at once), rollouts run the
    whole population at once.
    """
    if hasattr(config, "make_task_fitness"):  # a supervised task (hades.imagetask) scores candidates itself
        return config.make_task_fitness(obs_mean, obs_var, train_batch)
    import jax
    import jax.numpy as jnp

    from hades.evaluate import make_evaluate
    from hades.learn import make_train

    spec = get_env_spec(config.env)
    members = [(make_train(replace(config.recipe, arch=arch), spec.obs_dim, spec.action_dim, spec.discrete),
                make_evaluate(spec, arch, config.protocol, config.normalization, config.backend))
               for arch in config.architectures]
    labels = jnp.asarray(fixed_labels(config)) if spec.discrete and not config.learned_labels else None

    def targets_of(candidate):
        if not spec.discrete:
            return candidate["states"], candidate["actions"]
        if config.learned_labels:
            return candidate["states"], jnp.argmax(candidate["label_logits"], -1)
        used = int((fixed_labels(config) >= 0).sum())
        return candidate["states"][:used], labels[:used]

    def arch_fitness(train, evaluate, population, init_keys, eval_keys):
        def train_candidate(candidate):  # one policy per init, stacked
            states, targets = targets_of(candidate)
            return jax.lax.map(lambda init_key: train(init_key, states, targets)[0], init_keys)

        params = map_candidates(train_candidate, population, train_batch)

        def evaluate_candidate(candidate_params):
            return jax.lax.map(lambda item: evaluate(item[0], item[1], obs_mean, obs_var), (candidate_params, eval_keys))

        metrics = jax.vmap(evaluate_candidate)(params)  # [population, inits]
        episodes = metrics["episodes"].sum(-1)
        # Pooled over inits: the mean return of all completed episodes (partial returns if none).
        mean = jnp.where(episodes > 0, metrics["return_sum"].sum(-1) / jnp.maximum(episodes, 1),
                         metrics["mean_return"].mean(-1))
        return mean, episodes

    def fitness(population, init_keys, eval_keys):
        scores = [arch_fitness(*member, population, init_keys, eval_keys) for member in members]
        if len(scores) == 1:
            return scores[0]
        return jnp.stack([mean for mean, _ in scores]).mean(0), sum(episodes for _, episodes in scores)

    return fitness


def _strong(x):
    """The same value without weak typing: carries must keep one exact type across chunks."""
    import jax.numpy as jnp

    x = jnp.asarray(x)
    return jnp.asarray(x, dtype=x.dtype)


def make_generation(config: DistillConfig, obs_mean, obs_var, mesh=None, start=None, train_batch="auto",
                    observe=None):
    """Return ``(init_state(key), run_chunk(state, length))``; ``run_chunk`` is one jitted scan.

    ``start`` (arrays in :func:`solution_layout`'s shapes) is where the ES mean begins; zeros if None.
    ``train_batch``: candidates trained at once on each device (see :func:`make_fitness`); "auto"
    picks :func:`default_train_batch` for the platform. ``observe(generation, population, fitness)``,
    if given, hears every generation's whole population and fitness on the host, not necessarily in
    order (a host callback in the program: for benchmarks and tests that compare runs candidate by
    candidate; ``generation`` counts from 0 since the strategy started).
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
        begin = start
        if begin is None and hasattr(config, "start_mean"):  # a search space with its own starting point
            begin = config.start_mean()
        if begin is None:
            mean = {name: jnp.zeros(shape) for name, shape in layout.items()}
        else:
            mean = {name: jnp.asarray(begin[name], jnp.float32).reshape(shape) for name, shape in layout.items()}
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
        if observe is not None:
            jax.debug.callback(observe, state["es"].generation_counter, population, fitness)
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
