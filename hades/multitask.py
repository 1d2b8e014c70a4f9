"""Multi-task zero-shot policies: one policy trained on the datasets of several envs at once.

How inputs and outputs are made common (:class:`TaskLayout`), for T tasks in the order given:

* input: the observation, normalised as its own dataset defines it (constant statistics, or
  running statistics that restart at every evaluation), zero-padded to the largest ``obs_dim``
  of the tasks, then a one-hot task indicator of T entries: ``input_dim = max obs_dim + T``;
* output: one head of ``max action_dim`` outputs (means and log-stds, or logits); each env takes
  its first ``action_dim`` of them;
* loss: each pair's loss only over its task's real outputs (the padded action dims count for
  nothing in the Gaussian NLL or the MSE; padded classes get no probability in the cross-entropy),
  and each task weighs the same whatever its number of pairs: a pair of a task of D pairs
  weighs ``1 / (T * D)``.

Continuous and discrete envs cannot share one head, so they are not mixed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from hades.dataset import Dataset
from hades.envs import EnvSpec, get_env_spec
from hades.errors import SpecError
from hades.evaluate import EvalProtocol
from hades.learn import Recipe


@dataclass(frozen=True, eq=False)
class Task:
    """One env of a multi-task policy and the observation normalisation of its dataset."""

    env: str
    normalization: str = "none"
    obs_mean: np.ndarray | None = None
    obs_var: np.ndarray | None = None
    backend: str | None = None

    @property
    def spec(self) -> EnvSpec:
        return get_env_spec(self.env)

    def normalization_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        dim = self.spec.obs_dim
        mean = self.obs_mean if self.obs_mean is not None else np.zeros(dim, np.float32)
        var = self.obs_var if self.obs_var is not None else np.ones(dim, np.float32)
        return np.asarray(mean, np.float32), np.asarray(var, np.float32)

    @classmethod
    def of(cls, dataset: Dataset, backend: str | None = None) -> "Task":
        return cls(dataset.env, dataset.normalization, dataset.obs_mean, dataset.obs_var, backend or dataset.backend)


@dataclass(frozen=True, eq=False)
class TaskLayout:
    """Where each task's inputs and outputs lie in the shared network (see the module docstring)."""

    tasks: tuple[Task, ...]

    @property
    def envs(self) -> tuple[str, ...]:
        return tuple(task.env for task in self.tasks)

    @property
    def discrete(self) -> bool:
        return self.tasks[0].spec.discrete

    @property
    def obs_padding(self) -> int:
        """The length every observation is zero-padded to; the indicator starts here."""
        return max(task.spec.obs_dim for task in self.tasks)

    @property
    def input_dim(self) -> int:
        return self.obs_padding + len(self.tasks)

    @property
    def head_dim(self) -> int:
        return max(task.spec.action_dim for task in self.tasks)

    def index(self, env: str) -> int:
        name = get_env_spec(env).name
        if name not in self.envs:
            raise SpecError(f"this multi-task policy has no task {name}; its tasks are {', '.join(self.envs)}")
        return self.envs.index(name)

    def pad(self, index: int, obs, xp=np):
        """Observations ``[..., obs_dim]`` of task ``index`` as network inputs ``[..., input_dim]``."""
        batch = obs.shape[:-1]
        padding = xp.zeros(batch + (self.obs_padding - obs.shape[-1],), np.float32)
        indicator = xp.broadcast_to(xp.asarray(np.eye(len(self.tasks), dtype=np.float32)[index]),
                                    batch + (len(self.tasks),))
        return xp.concatenate([obs, padding, indicator], axis=-1)

    def inputs(self, index: int):
        """``pad`` for task ``index`` in jax: the ``inputs`` of :func:`hades.evaluate.make_evaluate`."""
        import jax.numpy as jnp

        return lambda obs: self.pad(index, obs, jnp)

    def action_mask(self, index: int) -> np.ndarray:
        """``[head_dim]`` booleans: the outputs task ``index`` uses."""
        return np.arange(self.head_dim) < self.tasks[index].spec.action_dim

    def to_dict(self) -> dict:
        return {"input_dim": self.input_dim, "obs_padding": self.obs_padding, "indicator_offset": self.obs_padding,
                "indicator_size": len(self.tasks), "head_dim": self.head_dim,
                "action_type": self.tasks[0].spec.action_type,
                "inputs": "[normalised obs, zeros up to obs_padding, one-hot task indicator]",
                "outputs": "each env takes the first action_dim outputs of the head"}


def check_tasks(datasets: Sequence[Dataset], names: Sequence[str] | None = None) -> None:
    """Refuse what one multi-task policy cannot be trained on, with a message saying what to do."""
    names = list(names or [data.info.get("name") or data.env for data in datasets])
    if len(datasets) < 2:
        shown = names[0] if names else "none"
        raise SpecError(f"a multi-task policy needs datasets of two or more envs, got one ({shown}): train on it "
                        f"alone with `hades train-from {shown}` (without --multitask)")
    for name, data in zip(names, datasets):
        if data.env_spec.library == "images":
            raise SpecError(f"{name} is an image-classification set, not an env: multi-task policies are for "
                            "Brax and MinAtar datasets")
    seen = {}
    for name, data in zip(names, datasets):
        if data.env in seen:
            raise SpecError(f"{seen[data.env]} and {name} are both {data.env} datasets: a multi-task policy takes "
                            "one dataset per env (its task indicator names the env); keep one of them")
        seen[data.env] = name
    kinds = {data.env_spec.action_type: (name, data.env) for name, data in zip(names, datasets)}
    if len(kinds) > 1:
        (c_name, c_env), (d_name, d_env) = kinds["continuous"], kinds["discrete"]
        raise SpecError(f"cannot train one policy on continuous actions ({c_name}, {c_env}) and discrete ones "
                        f"({d_name}, {d_env}): one head cannot serve both; give datasets of one action type")


def check_recipe(recipe: Recipe, layout: TaskLayout) -> None:
    if layout.discrete != (recipe.loss == "cross_entropy"):
        kind = "discrete" if layout.discrete else "continuous"
        raise SpecError(f"loss {recipe.loss!r} does not fit the {kind} actions of {', '.join(layout.envs)}")
    if recipe.arch.conv:
        raise SpecError("a multi-task policy is an MLP: its padded inputs are not images; drop the conv layers")


def training_set(datasets: Sequence[Dataset], layout: TaskLayout) -> tuple[np.ndarray, tuple]:
    """The union of the datasets in the shared layout: ``(states, (targets, mask, weights))``.

    ``states`` ``[N, input_dim]``; ``targets`` ``[N, head_dim]`` actions zero-padded (labels
    ``[N]`` for discrete envs); ``mask`` ``[N, head_dim]``, the real outputs of each pair;
    ``weights`` ``[N]``, ``1 / (T * D)`` for a pair of a task of D pairs (they sum to one).
    """
    states, targets, masks, weights = [], [], [], []
    for index, data in enumerate(datasets):
        pairs = data.pairs
        states.append(layout.pad(index, data.states))
        if layout.discrete:
            targets.append(data.actions.astype(np.int32))
        else:
            padded = np.zeros((pairs, layout.head_dim), np.float32)
            padded[:, : data.actions.shape[1]] = data.actions
            targets.append(padded)
        masks.append(np.broadcast_to(layout.action_mask(index), (pairs, layout.head_dim)))
        weights.append(np.full(pairs, 1.0 / (len(datasets) * pairs), np.float32))
    return (np.concatenate(states).astype(np.float32),
            (np.concatenate(targets), np.concatenate(masks), np.concatenate(weights)))


@dataclass(frozen=True, eq=False)
class MultiTaskResult:
    """One policy per seed trained on every task's dataset, scored on every env, beside the
    single-task policies trained on each dataset alone with the same recipe and seeds.

    ``returns``, ``episodes``, ``episode_stds``: ``[tasks, seeds]``; ``single_task``: one
    :class:`hades.trainfrom.TrainFromResult` per task, in the order of ``envs`` (empty when skipped).
    """

    envs: tuple[str, ...]
    recipe: Recipe
    protocol: EvalProtocol
    layout: TaskLayout
    seeds: tuple[int, ...]
    returns: np.ndarray
    episodes: np.ndarray
    episode_stds: np.ndarray
    final_losses: np.ndarray
    single_task: tuple = ()
    params: Any = None  # the trained parameters, stacked over seeds (when kept)
    datasets: tuple[Dataset, ...] = ()
    sources: tuple[str | None, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def means(self) -> dict[str, float]:
        """Each env's mean return over the seeds."""
        return {env: float(np.mean(row)) for env, row in zip(self.envs, self.returns)}

    @property
    def stds(self) -> dict[str, float]:
        return {env: float(np.std(row)) for env, row in zip(self.envs, self.returns)}

    def dataset_record(self, index: int) -> dict:
        data = self.datasets[index]
        source = self.sources[index] if index < len(self.sources) else None
        return {"id": source or data.info.get("name"), "sha256": data.sha256, "pairs": data.pairs}

    def to_dict(self) -> dict:
        tasks = []
        for index, env in enumerate(self.envs):
            row = self.returns[index]
            tasks.append({"env": env, "dataset": self.dataset_record(index),
                          "normalization": self.layout.tasks[index].normalization,
                          "returns": [round(float(r), 3) for r in row],
                          "episodes": [int(e) for e in self.episodes[index]],
                          "episode_stds": [round(float(s), 3) for s in self.episode_stds[index]],
                          "mean": round(float(np.mean(row)), 3), "std": round(float(np.std(row)), 3)})
        multitask = {"envs": list(self.envs), "recipe": self.recipe.to_dict(), "protocol": self.protocol.to_dict(),
                     "seeds": list(self.seeds), "layout": self.layout.to_dict(), "tasks": tasks,
                     "final_losses": [round(float(loss), 6) for loss in self.final_losses],
                     "timings": {key: round(value, 3) for key, value in self.timings.items()}}
        single = [{**result.to_dict(), "dataset": self.dataset_record(index)}
                  for index, result in enumerate(self.single_task)]
        return {"multitask": multitask, "single_task": single}

    def policy(self, index: int = 0):
        """The multi-task policy of ``seeds[index]`` (a :class:`hades.multitask_policy.MultiTaskPolicy`);
        needs ``keep_params=True`` when training."""
        from hades.multitask_policy import policy_from_result

        return policy_from_result(self, index)

    def policies(self) -> list:
        return [self.policy(index) for index in range(len(self.seeds))]


def train_multitask(datasets: Sequence[Dataset | str], recipe: Recipe | None = None,
                    protocol: EvalProtocol | None = None, num_seeds: int = 8, first_seed: int = 0,
                    backend: str | None = None, keep_params: bool = False, baselines: bool = True,
                    progress: Callable[[str, int, int], None] | None = None,
                    sources: Sequence[str | None] | None = None) -> MultiTaskResult:
    """Train ``num_seeds`` multi-task policies on the union of ``datasets`` (one per env: datasets
    or identifiers) and evaluate each on every env; with ``baselines``, also train single-task
    policies on each dataset alone (same recipe, same seeds, same evaluation noise).

    ``recipe`` defaults to the first dataset's. ``backend`` replaces every dataset's own Brax
    backend. ``progress(stage, done, total)`` hears of each stage: ``"train"``,
    ``"evaluate ENV"``, ``"single-task ENV"``, ``"done"``. ``sources``: the identifiers the datasets were
    opened by (the results and the saved policies' cards name them); an identifier given in
    ``datasets`` is opened and is its own source.
    """
    import jax

    from hades.learn import make_train
    from hades.trainfrom import seed_keys, train_from

    given = list(sources) if sources is not None else [None] * len(datasets)
    if len(given) != len(datasets):
        raise ValueError(f"got {len(given)} sources for {len(datasets)} datasets")
    sources = [item if isinstance(item, str) else source for item, source in zip(datasets, given)]
    if any(isinstance(item, str) for item in datasets):
        from hades.registry import open_dataset

        datasets = [open_dataset(item) if isinstance(item, str) else item for item in datasets]
    check_tasks(datasets, [source or data.info.get("name") or data.env for source, data in zip(sources, datasets)])
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be at least 1, got {num_seeds}")
    for data in datasets if backend is not None else ():
        data.env_spec.check_backend(backend)
    layout = TaskLayout(tuple(Task.of(data, backend) for data in datasets))
    recipe = recipe or datasets[0].recipe
    check_recipe(recipe, layout)
    protocol = protocol or EvalProtocol()
    seeds = list(range(first_seed, first_seed + num_seeds))
    keys = seed_keys(seeds)
    total = 1 + len(datasets) * (2 if baselines else 1)
    notify = progress or (lambda *args: None)

    notify("train", 0, total)
    start = time.perf_counter()
    states, targets = training_set(datasets, layout)
    train = make_train(recipe, layout.input_dim, layout.head_dim, layout.discrete, masked=True)
    params, losses = jax.jit(lambda keys: jax.lax.map(lambda key: train(jax.random.split(key)[0], states, targets),
                                                      keys))(keys)
    jax.block_until_ready(losses)
    timings = {"train_s": time.perf_counter() - start}
    metrics = []
    start = time.perf_counter()
    for index, task in enumerate(layout.tasks):
        notify(f"evaluate {task.env}", 1 + index, total)
        metrics.append(_evaluate_task(layout, index, recipe, protocol, params, keys))
    timings["evaluate_s"] = time.perf_counter() - start
    single = []
    start = time.perf_counter()
    for index, data in enumerate(datasets if baselines else ()):
        notify(f"single-task {data.env}", 1 + len(datasets) + index, total)
        single.append(train_from(data, recipe, protocol, num_seeds, first_seed, backend=backend, source=sources[index]))
    if baselines:
        timings["single_task_s"] = time.perf_counter() - start
    notify("done", total, total)
    stack = lambda name: np.stack([np.asarray(m[name], np.float64) for m in metrics])  # noqa: E731
    return MultiTaskResult(
        envs=layout.envs, recipe=recipe, protocol=protocol, layout=layout, seeds=tuple(seeds),
        returns=stack("mean_return"), episodes=stack("episodes").astype(np.int64), episode_stds=stack("return_std"),
        final_losses=np.asarray(losses), single_task=tuple(single),
        params=jax.tree.map(np.asarray, params) if keep_params else None, datasets=tuple(datasets),
        sources=tuple(sources), timings=timings)


def _evaluate_task(layout: TaskLayout, index: int, recipe: Recipe, protocol: EvalProtocol, params, keys) -> dict:
    """Every seed's policy (``params`` stacked over seeds) on task ``index``, with the evaluation
    key :func:`hades.trainfrom.train_from` gives the same seed."""
    import jax

    from hades.evaluate import make_evaluate

    task = layout.tasks[index]
    evaluate = make_evaluate(task.spec, recipe.arch, protocol, task.normalization, task.backend,
                             layout.inputs(index), layout.head_dim)
    obs_mean, obs_var = task.normalization_arrays()
    run = jax.jit(jax.vmap(lambda p, key: evaluate(p, jax.random.split(key)[1], obs_mean, obs_var)))
    return jax.tree.map(np.asarray, run(params, keys))
