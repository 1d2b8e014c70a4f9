"""Supervised learning of a policy on a (synthetic) dataset: pure, jittable, vmappable.

``make_train(...)`` returns ``train(key, states, targets) -> params``: one fresh policy
initialised from ``key`` and trained full-batch with optax. vmap it over keys for many seeds,
or over datasets for an ES population.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from hades.policy import PolicySpec

LOSSES = ("gaussian_nll", "mse", "cross_entropy")
OPTIMIZERS = ("adam", "sgd")
MAX_STEPS = 10_000_000  # gradient steps of one training: beyond this a typo, not a recipe


@dataclass(frozen=True)
class Recipe:
    """How a policy is trained from a dataset: architecture, loss and optimiser settings."""

    arch: PolicySpec = field(default_factory=PolicySpec)
    loss: str = "gaussian_nll"
    lr: float = 5e-3
    steps: int = 200
    max_grad_norm: float | None = 0.5
    adam_eps: float = 1e-5
    optimizer: str = "adam"  # or "sgd" (plain, or with ``momentum``)
    momentum: float = 0.0  # sgd only

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("lr", "adam_eps", "momentum") + (("max_grad_norm",) if self.max_grad_norm is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int):
            raise ValueError(f"steps must be a whole number, got {self.steps!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.steps > MAX_STEPS:
            raise ValueError(f"steps must be at most {MAX_STEPS}, got {self.steps}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive or None, got {self.max_grad_norm}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not 0 <= self.momentum < 1 or (self.momentum and self.optimizer != "sgd"):
            raise ValueError(f"momentum must lie in [0, 1) and goes with sgd only, got {self.momentum}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["arch"] = self.arch.to_dict()
        if self.optimizer == "adam":  # Adam recipes keep the dict (and the checksums) they always had
            del data["optimizer"], data["momentum"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        """The recipe a dict describes; any malformed field (unknown, missing, wrong type) is a ValueError."""
        try:
            data = dict(data)
            data["arch"] = PolicySpec.from_dict(data.get("arch", {}))
            return cls(**data)
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a recipe ({type(exc).__name__}: {exc})") from None


def paper_recipe(env_name: str, discrete: bool) -> Recipe:
    """The inner loop the published datasets were evolved for."""
    if discrete:
        return Recipe(PolicySpec((512, 512), "relu"), "cross_entropy", 0.03, 64, None)
    steps = 200 if env_name in ("hopper", "inverted_double_pendulum") else 400
    return Recipe(PolicySpec((512, 512), "tanh"), "gaussian_nll", 5e-3, steps, 0.5)


def make_optimizer(recipe: Recipe):
    import optax

    if recipe.optimizer == "sgd":
        step = optax.sgd(recipe.lr, momentum=recipe.momentum or None)
    else:
        step = optax.adam(recipe.lr, eps=recipe.adam_eps)
    if recipe.max_grad_norm is None:
        return step
    return optax.chain(optax.clip_by_global_norm(recipe.max_grad_norm), step)


def _pair_losses(network, loss: str):
    """``pair_losses(params, states, targets, mask) -> [D]``: each pair's loss. ``mask`` ([D, A],
    or None for all) marks the outputs that are real; the others count for nothing."""
    import jax.numpy as jnp
    import optax

    def gaussian_nll(params, states, actions, mask):
        mean, log_std = network.apply(params, states)
        z = (actions - mean) * jnp.exp(-log_std)
        log_prob = -0.5 * jnp.square(z) - log_std - 0.5 * jnp.log(2 * jnp.pi)
        return -jnp.sum(log_prob if mask is None else jnp.where(mask, log_prob, 0.0), axis=-1)

    def mse(params, states, actions, mask):
        mean, _ = network.apply(params, states)
        error = jnp.square(mean - actions)
        return jnp.sum(error if mask is None else jnp.where(mask, error, 0.0), axis=-1)

    def cross_entropy(params, states, labels, mask):
        logits = network.apply(params, states)
        if mask is not None:  # padded classes get no probability
            logits = jnp.where(mask, logits, -1e9)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

    return {"gaussian_nll": gaussian_nll, "mse": mse, "cross_entropy": cross_entropy}[loss]


def make_loss(network, loss: str):
    """``loss_fn(params, states, targets) -> scalar``, averaged over the dataset."""
    import jax.numpy as jnp

    pair_losses = _pair_losses(network, loss)
    return lambda params, states, targets: jnp.mean(pair_losses(params, states, targets, None))


def make_masked_loss(network, loss: str):
    """``loss_fn(params, states, (targets, mask, weights)) -> scalar``: the ``weights``-weighted sum
    of each pair's loss over the outputs ``mask`` marks real (padded outputs of a multi-task head)."""
    import jax.numpy as jnp

    pair_losses = _pair_losses(network, loss)

    def loss_fn(params, states, targets):
        actions, mask, weights = targets
        return jnp.sum(weights * pair_losses(params, states, actions, mask))

    return loss_fn


def make_train(recipe: Recipe, obs_dim: int, action_dim: int, discrete: bool, masked: bool = False):
    """Return ``train(key, states, targets) -> (params, final_loss)``, pure and jittable.

    ``masked``: targets are ``(targets, mask, weights)`` and the loss is :func:`make_masked_loss`'s."""
    import jax
    import jax.numpy as jnp
    import optax

    from hades.policy import make_network

    if discrete != (recipe.loss == "cross_entropy"):
        kind = "discrete" if discrete else "continuous"
        raise ValueError(f"loss {recipe.loss!r} does not fit {kind} actions")
    network = make_network(recipe.arch, action_dim, discrete)
    optimizer = make_optimizer(recipe)
    loss_fn = (make_masked_loss if masked else make_loss)(network, recipe.loss)

    def train(key, states, targets):
        params = network.init(key, jnp.zeros((obs_dim,), jnp.float32))
        opt_state = optimizer.init(params)

        def update_step(carry, _):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, states, targets)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(update_step, (params, opt_state), None, recipe.steps)
        return params, losses[-1]

    return train
