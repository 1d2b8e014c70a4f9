"""The search space of HaDES: the arrays a synthetic dataset is made of, as the ES sees them.

States (D x obs_dim) always; actions (D x act_dim) for continuous envs; label logits for discrete
envs with learned labels, else fixed labels (D // n_actions states per action, in order). A warm
start turns a dataset back into these arrays (:func:`start_arrays`).
"""

from __future__ import annotations

from hades.envs import get_env_spec
from hades.errors import SpecError


def search_dims(env: str, pairs: int, learned_labels: bool = False) -> int:
    """How many numbers the ES searches over: the states, plus actions (continuous) or label logits."""
    spec = get_env_spec(env)
    dims = pairs * spec.obs_dim
    if not spec.discrete or learned_labels:
        dims += pairs * spec.action_dim
    return dims


def solution_layout(config) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays the ES searches over (a config may lay out its own: ``search_layout``)."""
    if hasattr(config, "search_layout"):
        return config.search_layout()
    spec = get_env_spec(config.env)
    layout = {"states": (config.pairs, spec.obs_dim)}
    if not spec.discrete:
        layout["actions"] = (config.pairs, spec.action_dim)
    elif config.learned_labels:
        layout["label_logits"] = (config.pairs, spec.action_dim)
    return layout


def start_arrays(config, dataset) -> dict:
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


def fixed_labels(config):
    """D // n_actions states per action, in order; leftover states get label -1 and are unused."""
    import numpy as np

    n_actions = get_env_spec(config.env).action_dim
    per_action = config.pairs // n_actions
    labels = np.full(config.pairs, -1, np.int32)
    labels[: per_action * n_actions] = np.repeat(np.arange(n_actions), per_action)
    return labels
