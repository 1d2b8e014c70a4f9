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
from hades.files import CARD_FILE, POLICY_FILE
from hades.formats import (
    FORMAT_VERSION, atomic_dir, read_bytes, read_card, render_card, tensors_from_bytes,
    tensors_to_bytes, verify_checksum,
)
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
        from flax.traverse_util import flatten_dict

        tensors = {_PARAM_PREFIX + name: np.asarray(value, np.float32)
                   for name, value in flatten_dict(self.params, sep="/").items()}
        if self.obs_mean is not None:
            tensors["obs_mean"] = np.asarray(self.obs_mean, np.float32)
            tensors["obs_var"] = np.asarray(self.obs_var, np.float32)
        return tensors_to_bytes(tensors, self.metadata())

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        data = self.to_bytes()
        meta = self.metadata()
        meta["sha256"] = verify_checksum(data, None, "policy")
        card_data = {"license": self.info.get("license", "apache-2.0"),
                     "tags": ["hades", "behaviour-distillation", "reinforcement-learning", self.env],
                     "library_name": "hades-zoo", "hades": meta}
        with atomic_dir(folder) as tmp:
            (tmp / POLICY_FILE).write_bytes(data)
            (tmp / CARD_FILE).write_text(render_card("policy", card_data, meta=meta), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        from flax.traverse_util import unflatten_dict

        path = Path(path)
        expected = None
        if path.is_dir():
            section, _ = read_card(path)
            if section.get("kind", "policy") != "policy":
                raise FormatError(f"{path} holds a {section.get('kind')!r}, not a policy; give a folder written by train-from --save")
            expected = section.get("sha256")
            path = path / POLICY_FILE
        data = read_bytes(path)
        verify_checksum(data, expected, str(path))
        tensors, meta = tensors_from_bytes(data, str(path))
        if meta.get("kind") != "policy":
            raise FormatError(f"{path} holds a {meta.get('kind')!r}, not a policy")
        params = unflatten_dict({name[len(_PARAM_PREFIX):]: value for name, value in tensors.items()
                                 if name.startswith(_PARAM_PREFIX)}, sep="/")
        env = meta["env"]
        info = {key: value for key, value in meta.items()
                if key not in ("format_version", "kind", "env", "normalization", "recipe", "sha256")}
        info["backend"] = env.get("backend")
        try:
            recipe = Recipe.from_dict(meta["recipe"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{path}: its recipe metadata is malformed ({exc})") from None
        return cls(params, env["id"], recipe, meta.get("normalization", "none"),
                   tensors.get("obs_mean"), tensors.get("obs_var"), info)


def evaluate_policy(policy: Policy, protocol, num_runs: int = 1, first_seed: int = 0) -> dict:
    """Evaluate one saved policy ``num_runs`` times (different env and action noise)."""
    import jax

    from hades.evaluate import make_evaluate
    from hades.trainfrom import seed_keys

    evaluate = make_evaluate(policy.env_spec, policy.recipe.arch, protocol, policy.normalization,
                             policy.info.get("backend"))
    obs_mean, obs_var = policy.normalization_arrays()
    params = jax.tree.map(np.asarray, policy.params)
    run = jax.jit(jax.vmap(lambda key: evaluate(params, key, obs_mean, obs_var)))
    metrics = run(seed_keys(list(range(first_seed, first_seed + num_runs))))
    returns = np.asarray(metrics["mean_return"])
    return {"returns": returns.tolist(), "episodes": np.asarray(metrics["episodes"]).tolist(),
            "mean": float(returns.mean()), "std": float(returns.std()), "protocol": protocol.to_dict()}
