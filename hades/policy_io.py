"""Trained policies on disk: ``policy.safetensors`` + a model card, like datasets.

A policy file carries everything needed to act: the parameters, the architecture, the env and the
observation normalisation it was trained for. ``hades eval`` evaluates it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hades.envs import EnvSpec, env_library_versions, get_env_spec
from hades.errors import FormatError
from hades.evaluate import EvalProtocol, ReturnStats
from hades.files import CARD_FILE, POLICY_FILE, REPLAY_GIF, REPLAY_MP4
from hades.formats import (
    FORMAT_VERSION, atomic_dir, check_card_matches, read_bytes, read_card, render_card, tensors_from_bytes,
    tensors_to_bytes, verify_checksum,
)
from hades.metadata import check_policy
from hades.learn import Recipe

_PARAM_PREFIX = "params/"


@dataclass(frozen=True, eq=False)
class Policy:
    """One trained policy. ``params`` is the flax parameter tree (numpy leaves)."""

    params: Any
    env: str
    recipe: Recipe
    normalization: str = "none"
    obs_mean: np.ndarray | None = None
    obs_var: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def env_spec(self) -> EnvSpec:
        return get_env_spec(self.env)

    def normalization_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        spec = self.env_spec
        mean = self.obs_mean if self.obs_mean is not None else np.zeros(spec.obs_dim, np.float32)
        var = self.obs_var if self.obs_var is not None else np.ones(spec.obs_dim, np.float32)
        return mean, var

    def metadata(self) -> dict:
        spec = self.env_spec
        meta = {
            "format_version": FORMAT_VERSION, "kind": "policy",
            "env": {"id": spec.name, "library": spec.library,
                    "backend": self.info.get("backend") or spec.default_backend,
                    "obs_dim": spec.obs_dim, "action_dim": spec.action_dim, "action_type": spec.action_type,
                    "versions": env_library_versions(spec)},
            "normalization": self.normalization, "recipe": self.recipe.to_dict(),
        }
        meta.update({key: value for key, value in sorted(self.info.items()) if key != "backend"})
        return meta

    def to_bytes(self) -> bytes:
        tensors = param_tensors(self.params)
        if self.obs_mean is not None:
            tensors["obs_mean"] = np.asarray(self.obs_mean, np.float32)
            tensors["obs_var"] = np.asarray(self.obs_var, np.float32)
        return tensors_to_bytes(tensors, self.metadata())

    def card_data(self, sha256: str) -> dict:
        """The model card's front matter: tags, the dataset it was trained on, and its evaluation
        as a ``model-index`` the way huggingface_sb3 writes one (task reinforcement-learning, the
        env id as the dataset, ``mean_reward`` as "mean +/- std" over the completed episodes)."""
        from hades.policy import format_arch

        meta = self.metadata()
        meta["sha256"] = sha256
        data = {"license": self.info.get("license", "apache-2.0"),
                "tags": ["hades", "behaviour-distillation", "reinforcement-learning", self.env],
                "library_name": "hades-zoo", "hades": meta}
        repo = hub_dataset_repo((self.info.get("dataset") or {}).get("name"))
        if repo:
            data["datasets"] = [repo]
        evaluation = self.info.get("evaluation") or {}
        if isinstance(evaluation.get("mean_return"), (int, float)):
            data["model_name"] = f"{self.env} {format_arch(self.recipe.arch)} policy"
            data["eval_results"] = [reward_result(self.env, evaluation)]
        return data

    def save(self, folder: str | Path, extra_files: dict[str, Path] | None = None) -> Path:
        """Write ``policy.safetensors`` and the model card into ``folder``, atomically.

        ``extra_files`` (name -> file) go in beside them; ``replay.gif`` and ``replay.mp4`` show on the card."""
        return write_policy_folder(folder, self.to_bytes(), self.card_data, "policy", extra_files)

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        """Load and verify a policy folder or file; one trained for several envs comes back as a
        :class:`hades.multitask_policy.MultiTaskPolicy`."""
        from flax.traverse_util import unflatten_dict

        path = Path(path)
        expected, section = None, None
        if path.is_dir():
            section, _ = read_card(path)
            if section.get("kind", "policy") != "policy":
                raise FormatError(f"{path} holds a {section.get('kind')!r}, not a policy; give a folder written by train-from --save")
            expected = section.get("sha256")
            path = path / POLICY_FILE
        data = read_bytes(path)
        verify_checksum(data, expected, str(path))
        tensors, meta = tensors_from_bytes(data, str(path))
        recipe = check_policy(tensors, meta, str(path), _PARAM_PREFIX)
        if section is not None:
            check_card_matches(section, meta, str(path.parent / CARD_FILE))
        params = unflatten_dict({name[len(_PARAM_PREFIX):]: value for name, value in tensors.items()
                                 if name.startswith(_PARAM_PREFIX)}, sep="/")
        if "tasks" in meta:  # one policy for several envs
            from hades.multitask_policy import MultiTaskPolicy

            return MultiTaskPolicy.from_parts(params, recipe, tensors, meta, str(path))
        env = meta["env"]
        info = {key: value for key, value in meta.items()
                if key not in ("format_version", "kind", "env", "normalization", "recipe", "sha256")}
        info["backend"] = env.get("backend")
        return cls(params, env["id"], recipe, meta.get("normalization", "none"),
                   tensors.get("obs_mean"), tensors.get("obs_var"), info)


def param_tensors(params) -> dict[str, np.ndarray]:
    """A flax parameter tree as the ``params/...`` tensors of ``policy.safetensors``."""
    from flax.traverse_util import flatten_dict

    return {_PARAM_PREFIX + name: np.asarray(value, np.float32) for name, value in flatten_dict(params, sep="/").items()}


def reward_result(env: str, evaluation: dict):
    """A ``model-index`` entry as huggingface_sb3 writes one: task reinforcement-learning, the env
    id as the dataset, ``mean_reward`` as "mean +/- std" of the completed episodes."""
    from huggingface_hub import EvalResult

    value = f"{evaluation['mean_return']:.2f} +/- {float(evaluation.get('std_return') or 0.0):.2f}"
    return EvalResult(task_type="reinforcement-learning", task_name="reinforcement-learning", dataset_type=env,
                      dataset_name=env, metric_type="mean_reward", metric_name="mean_reward", metric_value=value)


def write_policy_folder(folder: str | Path, data: bytes, card_data, template: str,
                        extra_files: dict[str, Path] | None = None) -> Path:
    """Write ``policy.safetensors`` (``data``), ``extra_files`` and the card rendered from
    ``cards/{template}_card.md`` with ``card_data(sha256)`` into ``folder``, atomically."""
    folder = Path(folder)
    card = card_data(verify_checksum(data, None, "policy"))
    replay = [name for name in (REPLAY_GIF, REPLAY_MP4) if name in (extra_files or {})]
    with atomic_dir(folder) as tmp:
        (tmp / POLICY_FILE).write_bytes(data)
        for name, source in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(Path(source).read_bytes())
        (tmp / CARD_FILE).write_text(render_card(template, card, meta=card["hades"], replay=replay), encoding="utf-8")
    return folder


def hub_dataset_repo(identifier) -> str | None:
    """``ORG/NAME`` of a Hugging Face Hub dataset id (``hf://[datasets/]ORG/NAME[@REV]``); None for other ids."""
    from hades.errors import SpecError
    from hades.ids import parse_id

    if not isinstance(identifier, str) or not identifier.startswith("hf://"):
        return None
    try:
        did = parse_id(identifier)
    except SpecError:
        return None
    return did.name if did.repo_type in (None, "dataset") else None


@dataclass(frozen=True)
class PolicyEvaluation(ReturnStats):
    """A policy evaluated ``len(returns)`` times under one protocol (one score per run)."""

    env: str
    protocol: EvalProtocol
    returns: tuple[float, ...]
    episodes: tuple[int, ...]
    episode_stds: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"returns": list(self.returns), "episodes": list(self.episodes), "episode_stds": list(self.episode_stds),
                "mean": self.mean, "std": self.std, "protocol": self.protocol.to_dict()}


def evaluate_policy(policy: Policy, protocol, num_runs: int = 1, first_seed: int = 0) -> PolicyEvaluation:
    """Evaluate one saved policy ``num_runs`` times (different env and action noise)."""
    from hades.evaluate import make_evaluate

    evaluate = make_evaluate(policy.env_spec, policy.recipe.arch, protocol, policy.normalization,
                             policy.info.get("backend"))
    return run_evaluations(evaluate, policy.params, policy.normalization_arrays(), policy.env, protocol,
                           num_runs, first_seed)


def run_evaluations(evaluate, params, stats: tuple, env: str, protocol, num_runs: int,
                    first_seed: int) -> PolicyEvaluation:
    """``evaluate(params, key, obs_mean, obs_var)`` (from :func:`hades.evaluate.make_evaluate`) run
    ``num_runs`` times, from the keys of seeds ``first_seed``, ``first_seed + 1``, ..."""
    import jax

    from hades.trainfrom import seed_keys

    obs_mean, obs_var = stats
    params = jax.tree.map(np.asarray, params)
    run = jax.jit(jax.vmap(lambda key: evaluate(params, key, obs_mean, obs_var)))
    metrics = run(seed_keys(list(range(first_seed, first_seed + num_runs))))
    return PolicyEvaluation(env, protocol, tuple(np.asarray(metrics["mean_return"], float).tolist()),
                            tuple(int(count) for count in np.asarray(metrics["episodes"])),
                            tuple(np.asarray(metrics["return_std"], float).tolist()))
