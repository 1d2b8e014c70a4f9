"""Multi-task policies on disk: one ``policy.safetensors`` for several envs, and its model card.

The metadata holds what a single-task policy's does (``format_version``, ``kind: policy``,
``recipe``, ``seed``, ``provenance``) and, instead of one env:

* ``env``: the task envs joined by ``+`` (what listings show);
* ``multitask``: the layout (:meth:`hades.multitask.TaskLayout.to_dict`): ``input_dim``,
  ``obs_padding`` (every observation is zero-padded to this length), ``indicator_offset`` and
  ``indicator_size`` (the one-hot task indicator follows the padding), ``head_dim``;
* ``tasks``: one entry per task, in indicator order: ``index``, ``env`` (id, library, backend,
  obs_dim, action_dim, action_type, versions), ``normalization``, ``dataset``, ``evaluation``
  (this policy on the env), ``seeds`` (the multi-task policies of every seed of the run) and
  ``single_task`` (the single-task policies trained on that dataset alone).

Tensors: ``params/...`` and, for each task whose dataset has statistics, ``tasks/I/obs_mean``
and ``tasks/I/obs_var`` (I the task's index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hades.envs import NORMALIZATIONS, env_library_versions, get_env_spec
from hades.errors import FormatError, UnknownEnvError
from hades.formats import FORMAT_VERSION, tensors_to_bytes
from hades.learn import Recipe
from hades.multitask import Task, TaskLayout
from hades.policy_io import PolicyEvaluation, hub_dataset_repo, param_tensors, reward_result, write_policy_folder

_LAYOUT_KEYS = ("input_dim", "obs_padding", "indicator_offset", "indicator_size", "head_dim")


@dataclass(frozen=True, eq=False)
class MultiTaskPolicy:
    """One trained policy for several envs. ``info["tasks"]`` holds each task's card record
    (dataset, evaluation, seeds, single_task); the rest of ``info`` is the seed, provenance, license."""

    params: Any
    recipe: Recipe
    layout: TaskLayout
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def envs(self) -> tuple[str, ...]:
        return self.layout.envs

    def task_records(self) -> list[dict]:
        records = self.info.get("tasks") or []
        return [dict(records[index]) if index < len(records) else {} for index in range(len(self.layout.tasks))]

    def metadata(self) -> dict:
        tasks = []
        for index, (task, record) in enumerate(zip(self.layout.tasks, self.task_records())):
            spec = task.spec
            env = {"id": spec.name, "library": spec.library, "backend": task.backend or spec.default_backend,
                   "obs_dim": spec.obs_dim, "action_dim": spec.action_dim, "action_type": spec.action_type,
                   "versions": env_library_versions(spec)}
            tasks.append({"index": index, "env": env, "normalization": task.normalization, **record})
        meta = {"format_version": FORMAT_VERSION, "kind": "policy", "env": "+".join(self.envs),
                "multitask": self.layout.to_dict(), "tasks": tasks, "recipe": self.recipe.to_dict()}
        meta.update({key: value for key, value in sorted(self.info.items()) if key != "tasks"})
        return meta

    def to_bytes(self) -> bytes:
        tensors = param_tensors(self.params)
        for index, task in enumerate(self.layout.tasks):
            if task.obs_mean is not None:
                tensors[f"tasks/{index}/obs_mean"], tensors[f"tasks/{index}/obs_var"] = task.normalization_arrays()
        return tensors_to_bytes(tensors, self.metadata())

    def card_data(self, sha256: str) -> dict:
        """The model card's front matter: a ``model-index`` with one result per env."""
        from hades.policy import format_arch

        meta = self.metadata()
        meta["sha256"] = sha256
        data = {"license": self.info.get("license", "apache-2.0"),
                "tags": ["hades", "behaviour-distillation", "reinforcement-learning", "multi-task", *self.envs],
                "library_name": "hades-zoo", "hades": meta}
        records = self.task_records()
        repos = [hub_dataset_repo((record.get("dataset") or {}).get("name")) for record in records]
        if any(repos):
            data["datasets"] = [repo for repo in repos if repo]
        results = [reward_result(env, record["evaluation"]) for env, record in zip(self.envs, records)
                   if isinstance((record.get("evaluation") or {}).get("mean_return"), (int, float))]
        if results:
            data["model_name"] = f"multi-task {'+'.join(self.envs)} {format_arch(self.recipe.arch)} policy"
            data["eval_results"] = results
        return data

    def save(self, folder: str | Path, extra_files: dict[str, Path] | None = None) -> Path:
        """Write ``policy.safetensors`` and the model card into ``folder``, atomically."""
        return write_policy_folder(folder, self.to_bytes(), self.card_data, "multitask_policy", extra_files)

    @classmethod
    def load(cls, path: str | Path) -> "MultiTaskPolicy":
        from hades.policy_io import Policy

        policy = Policy.load(path)
        if not isinstance(policy, cls):
            raise FormatError(f"{path} holds a single-task policy for {policy.env}; load it with hades.Policy.load")
        return policy

    @classmethod
    def from_parts(cls, params, recipe: Recipe, tensors: dict, meta: dict, source: str) -> "MultiTaskPolicy":
        """Build from what :meth:`hades.policy_io.Policy.load` read, checking the layout against the tasks."""
        entries = meta.get("tasks")
        if not isinstance(entries, list) or len(entries) < 2 or not all(isinstance(e, dict) for e in entries):
            raise FormatError(f"{source}: its 'tasks' metadata must list two or more tasks")
        tasks, records = [], []
        for index, entry in enumerate(entries):
            env = entry.get("env") if isinstance(entry.get("env"), dict) else {}
            normalization = entry.get("normalization", "none")
            if entry.get("index") != index or "id" not in env or normalization not in NORMALIZATIONS:
                raise FormatError(f"{source}: task {index} of its metadata is malformed (index, env id, normalization)")
            mean, var = tensors.get(f"tasks/{index}/obs_mean"), tensors.get(f"tasks/{index}/obs_var")
            if normalization == "constant" and (mean is None or var is None):
                raise FormatError(f"{source}: task {index} ({env['id']}) has constant normalisation but no statistics")
            try:
                get_env_spec(env["id"])
            except UnknownEnvError as exc:
                raise FormatError(f"{source}: task {index}: {exc}") from None
            tasks.append(Task(env["id"], normalization, mean, var, env.get("backend")))
            records.append({key: value for key, value in entry.items() if key not in ("index", "env", "normalization")})
        layout = TaskLayout(tuple(tasks))
        _check_layout(layout, meta.get("multitask"), params, source)
        info = {key: value for key, value in meta.items()
                if key not in ("format_version", "kind", "env", "multitask", "tasks", "recipe", "sha256")}
        info["tasks"] = records
        return cls(params, recipe, layout, info)

    def evaluate(self, env: str, protocol, num_runs: int = 1, first_seed: int = 0) -> PolicyEvaluation:
        """Evaluate the policy on one of its envs ``num_runs`` times (different env and action noise)."""
        from hades.evaluate import make_evaluate
        from hades.policy_io import run_evaluations

        index = self.layout.index(env)
        task = self.layout.tasks[index]
        evaluate = make_evaluate(task.spec, self.recipe.arch, protocol, task.normalization, task.backend,
                                 self.layout.inputs(index), self.layout.head_dim)
        return run_evaluations(evaluate, self.params, task.normalization_arrays(), task.env, protocol, num_runs,
                               first_seed)


def _check_layout(layout: TaskLayout, recorded, params, source: str) -> None:
    if len({task.spec.action_type for task in layout.tasks}) > 1:
        raise FormatError(f"{source}: its tasks mix continuous and discrete actions, which one head cannot serve")
    expected = layout.to_dict()
    if not isinstance(recorded, dict) or any(recorded.get(key) != expected[key] for key in _LAYOUT_KEYS):
        raise FormatError(f"{source}: its 'multitask' layout does not match its tasks "
                          f"(expected {', '.join(f'{key} {expected[key]}' for key in _LAYOUT_KEYS)})")
    kernel = ((params.get("params") or {}).get("Dense_0") or {}).get("kernel") if isinstance(params, dict) else None
    if kernel is None or kernel.shape[0] != layout.input_dim:
        raise FormatError(f"{source}: its first layer does not take the {layout.input_dim} inputs of its layout")


def policy_from_result(result, index: int) -> MultiTaskPolicy:
    """The policy of ``result.seeds[index]`` (a :class:`hades.multitask.MultiTaskResult`), with
    every task's card record: its dataset, this policy's score, every seed's and the baseline's."""
    import jax

    from hades.provenance import provenance

    if result.params is None:
        raise ValueError("this result kept no parameters: train with keep_params=True to get its policies")
    if not -len(result.seeds) <= index < len(result.seeds):
        raise IndexError(f"seed index {index} is out of range for {len(result.seeds)} seeds")
    records = []
    for task in range(len(result.envs)):
        dataset = result.dataset_record(task)
        record = {"dataset": {"name": dataset["id"], "sha256": dataset["sha256"], "pairs": dataset["pairs"]},
                  "evaluation": {"protocol": result.protocol.to_dict(), "mean_return": float(result.returns[task, index]),
                                 "std_return": float(result.episode_stds[task, index]),
                                 "episodes": int(result.episodes[task, index])},
                  "seeds": _summary(result.seeds, result.returns[task])}
        if result.single_task:
            baseline = result.single_task[task]
            record["single_task"] = _summary(baseline.seeds, baseline.returns)
        records.append(record)
    seed = result.seeds[index]
    params = jax.tree.map(lambda x: np.asarray(x[index]), result.params)
    info = {"seed": seed, "tasks": records, "provenance": provenance(seed)}
    return MultiTaskPolicy(params, result.recipe, result.layout, info)


def _summary(seeds, returns) -> dict:
    returns = np.asarray(returns, np.float64)
    return {"seeds": [int(seed) for seed in seeds], "returns": [round(float(r), 3) for r in returns],
            "mean": round(float(returns.mean()), 3), "std": round(float(returns.std()), 3)}
