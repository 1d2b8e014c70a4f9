"""Policy architectures: a compact spec the user writes, and the flax module it builds.

Spec grammar: ``HIDDEN[:ACTIVATION[:INIT]]`` where HIDDEN is comma-separated widths
(``512,512``) or ``DEPTHxWIDTH`` (``2x512``). Examples: ``512,512:tanh``, ``2x64:relu``,
``3x256:relu:lecun``. ``format_arch`` writes the canonical form back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hades.errors import SpecError

ACTIVATIONS = ("tanh", "relu", "gelu", "elu", "silu", "leaky_relu", "sigmoid")
INITS = ("orthogonal", "lecun", "glorot", "he")


@dataclass(frozen=True)
class PolicySpec:
    """An MLP policy: hidden widths, activation and weight initialisation."""

    hidden: tuple[int, ...] = (512, 512)
    activation: str = "tanh"
    init: str = "orthogonal"

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(width) for width in self.hidden))
        if any(width < 1 for width in self.hidden):
            raise ValueError(f"hidden widths must be positive, got {self.hidden}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")

    def to_dict(self) -> dict:
        return {"hidden": list(self.hidden), "activation": self.activation, "init": self.init}

    @classmethod
    def from_dict(cls, data: dict) -> "PolicySpec":
        return cls(tuple(data["hidden"]), data.get("activation", "tanh"), data.get("init", "orthogonal"))


_HIDDEN = re.compile(r"^(?:(\d+)x(\d+)|\d+(?:,\d+)*|)$")


def parse_arch(text: str) -> PolicySpec:
    """Parse ``512,512:tanh`` / ``2x512:tanh:orthogonal``; bad specs raise :class:`SpecError`."""
    parts = str(text).strip().lower().split(":")
    if len(parts) > 3:
        raise SpecError(f"architecture {text!r} has too many ':' parts; write HIDDEN[:ACTIVATION[:INIT]], e.g. 512,512:tanh")
    hidden_text = parts[0].replace(" ", "")
    match = _HIDDEN.match(hidden_text)
    if not match:
        raise SpecError(f"architecture {text!r}: hidden layers must look like 512,512 or 2x512")
    if match.group(1):
        hidden = (int(match.group(2)),) * int(match.group(1))
    else:
        hidden = tuple(int(width) for width in hidden_text.split(",") if width)
    try:
        return PolicySpec(hidden, *parts[1:])
    except ValueError as exc:
        raise SpecError(f"architecture {text!r}: {exc}") from None


def format_arch(spec: PolicySpec) -> str:
    """The canonical spec string, so ``parse_arch(format_arch(s)) == s``."""
    return f"{','.join(map(str, spec.hidden))}:{spec.activation}:{spec.init}"


def make_network(spec: PolicySpec, action_dim: int, discrete: bool):
    """Build the flax module: logits for discrete actions, (mean, log_std) for continuous ones.

    The Gaussian has a learned state-independent log-std initialised at 0, as in the
    published method; orthogonal init uses gain sqrt(2) on hidden layers and 0.01 on the head.
    """
    import flax.linen as nn
    import jax.numpy as jnp

    activation = {"leaky_relu": nn.leaky_relu}.get(spec.activation) or getattr(nn, spec.activation)
    hidden_init, head_init = _initializers(spec.init)

    class MLPPolicy(nn.Module):
        @nn.compact
        def __call__(self, obs):
            x = obs
            for width in spec.hidden:
                x = activation(nn.Dense(width, kernel_init=hidden_init, bias_init=nn.initializers.zeros)(x))
            out = nn.Dense(action_dim, kernel_init=head_init, bias_init=nn.initializers.zeros)(x)
            if discrete:
                return out
            log_std = self.param("log_std", nn.initializers.zeros, (action_dim,))
            return out, jnp.broadcast_to(log_std, out.shape)

    return MLPPolicy()


def _initializers(name: str):
    import jax.numpy as jnp
    from flax.linen import initializers as init

    if name == "orthogonal":
        return init.orthogonal(jnp.sqrt(2.0)), init.orthogonal(0.01)
    fn = {"lecun": init.lecun_normal, "glorot": init.glorot_uniform, "he": init.he_normal}[name]
    return fn(), fn()
