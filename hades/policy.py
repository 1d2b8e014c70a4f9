"""Policy architectures: a compact spec the user writes, and the flax module it builds.

Spec grammar: ``HIDDEN[:ACTIVATION[:INIT]]`` where HIDDEN is comma-separated widths
(``512,512``) or ``DEPTHxWIDTH`` (``2x512``). Examples: ``512,512:tanh``, ``2x64:relu``,
``3x256:relu:lecun``. ``format_arch`` writes the canonical form back.

For image classifiers HIDDEN may start with convolutions, ``cFEATURES`` each (3x3, stride 1,
same padding), before the dense layers: ``c16,128:relu:lecun`` is a conv layer of 16 feature
maps, then a dense layer of 128. Such a network needs image-shaped inputs; the image task binds
the shape (``image_shape``), which the spec string does not carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hades.errors import SpecError

ACTIVATIONS = ("tanh", "relu", "gelu", "elu", "silu", "leaky_relu", "sigmoid")
INITS = ("orthogonal", "lecun", "glorot", "he")
MAX_WIDTH = 16_384  # units (or feature maps) of one layer: beyond this a typo, not an architecture
MAX_LAYERS = 64


@dataclass(frozen=True)
class PolicySpec:
    """An MLP policy: hidden widths, activation and weight initialisation (optionally conv layers first)."""

    hidden: tuple[int, ...] = (512, 512)
    activation: str = "tanh"
    init: str = "orthogonal"
    conv: tuple[int, ...] = ()  # feature maps of 3x3 conv layers applied before the dense ones
    image_shape: tuple[int, ...] = ()  # (height, width, channels) the conv layers see the input as

    def __post_init__(self):
        for name in ("hidden", "conv", "image_shape"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or any(isinstance(width, (bool, float, str)) for width in value):
                raise ValueError(f"{name} must be a list of whole numbers, got {value!r}")
            object.__setattr__(self, name, tuple(int(width) for width in value))
        if not self.hidden and not self.conv:
            raise ValueError("a policy needs at least one hidden layer")
        if any(width < 1 for width in self.hidden):
            raise ValueError(f"hidden widths must be positive, got {self.hidden}")
        if any(width > MAX_WIDTH for width in (*self.hidden, *self.conv)) or len(self.hidden) + len(self.conv) > MAX_LAYERS:
            raise ValueError(f"at most {MAX_LAYERS} layers of at most {MAX_WIDTH} units each, got {self.hidden}")
        if any(features < 1 for features in self.conv):
            raise ValueError(f"conv feature maps must be positive, got {self.conv}")
        if self.image_shape and (len(self.image_shape) != 3 or min(self.image_shape) < 1):
            raise ValueError(f"image_shape must be (height, width, channels), got {self.image_shape}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")

    def to_dict(self) -> dict:
        data = {"hidden": list(self.hidden), "activation": self.activation, "init": self.init}
        if self.conv:  # MLPs keep the dict (and so the checksums and fingerprints) they always had
            data.update(conv=list(self.conv), image_shape=list(self.image_shape))
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PolicySpec":
        return cls(tuple(data["hidden"]), data.get("activation", "tanh"), data.get("init", "orthogonal"),
                   tuple(data.get("conv", ())), tuple(data.get("image_shape", ())))


_HIDDEN = re.compile(r"^(?:(\d+)x(\d+)|\d+(?:,\d+)*|)$")
_CONV = re.compile(r"^c\d+$")


def parse_arch(text: str) -> PolicySpec:
    """Parse ``512,512:tanh`` / ``2x512:tanh:orthogonal``; bad specs raise :class:`SpecError`."""
    parts = str(text).strip().lower().split(":")
    if len(parts) > 3:
        raise SpecError(f"architecture {text!r} has too many ':' parts; write HIDDEN[:ACTIVATION[:INIT]], e.g. 512,512:tanh")
    items = parts[0].replace(" ", "").split(",")
    convs = 0
    while convs < len(items) and items[convs].startswith("c"):
        convs += 1
    if any(not _CONV.match(item) for item in items[:convs]):
        raise SpecError(f"architecture {text!r}: conv layers must look like c16 (16 feature maps)")
    conv = tuple(int(item[1:]) for item in items[:convs])
    hidden_text = ",".join(items[convs:])
    match = _HIDDEN.match(hidden_text)
    if not match:
        raise SpecError(f"architecture {text!r}: hidden layers must look like 512,512 or 2x512")
    if match.group(1):
        hidden = (int(match.group(2)),) * int(match.group(1))
    else:
        hidden = tuple(int(width) for width in hidden_text.split(",") if width)
    try:
        return PolicySpec(hidden, *parts[1:], conv=conv)
    except ValueError as exc:
        raise SpecError(f"architecture {text!r}: {exc}") from None


def format_arch(spec: PolicySpec) -> str:
    """The canonical spec string, so ``parse_arch(format_arch(s)) == s``."""
    layers = [f"c{features}" for features in spec.conv] + [str(width) for width in spec.hidden]
    return f"{','.join(layers)}:{spec.activation}:{spec.init}"


def make_network(spec: PolicySpec, action_dim: int, discrete: bool):
    """Build the flax module: logits for discrete actions, (mean, log_std) for continuous ones.

    The Gaussian has a learned state-independent log-std initialised at 0, as in the
    published method; orthogonal init uses gain sqrt(2) on hidden layers and 0.01 on the head.
    """
    import flax.linen as nn
    import jax.numpy as jnp

    activation = {"leaky_relu": nn.leaky_relu}.get(spec.activation) or getattr(nn, spec.activation)
    hidden_init, head_init = _initializers(spec.init)
    if spec.conv and not spec.image_shape:
        raise SpecError(f"the architecture {format_arch(spec)} has conv layers, which need image inputs: "
                        "use it with an image dataset")

    class MLPPolicy(nn.Module):
        @nn.compact
        def __call__(self, obs):
            x = obs
            if spec.conv:  # flat observations back to images, through the convs, flat again
                x = x.reshape(x.shape[:-1] + spec.image_shape)
                for features in spec.conv:
                    x = activation(nn.Conv(features, (3, 3), padding="SAME", kernel_init=hidden_init,
                                           bias_init=nn.initializers.zeros)(x))
                x = x.reshape(x.shape[:-3] + (-1,))
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
