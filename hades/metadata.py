"""What the ``hades`` metadata of a tensor file may say, checked when the file is read: a file
whose env, pair count, normalisation, recipe or evaluation is malformed is refused at load, with
the field named, instead of failing later inside training or a template. No jax here: ``verify``
runs these checks without importing it."""

from __future__ import annotations

import math

import numpy as np

from hades.envs import NORMALIZATIONS, EnvSpec, get_env_spec
from hades.errors import FormatError, HadesError

# Free-form sections of a card that must at least be JSON objects when present.
OBJECT_FIELDS = ("evaluation", "method", "provenance", "original", "paper_comparison", "recipe", "cost")
TEXT_FIELDS = ("license", "name", "description", "catalogue_name", "citation", "license_notice")


def check_env(meta: dict, source: str) -> EnvSpec:
    """The env section: an object whose id is known and whose recorded sizes and backend fit it."""
    env = meta.get("env")
    if not isinstance(env, dict) or not isinstance(env.get("id"), str):
        raise FormatError(f"{source}: its metadata has no env id (an object with an 'id' text field)")
    try:
        spec = get_env_spec(env["id"])
    except HadesError as exc:  # UnknownEnvError stays one: a caller may look for it
        raise type(exc)(f"{source}: {exc}") from None
    for key in ("obs_dim", "action_dim"):
        if key in env and env[key] != getattr(spec, key):
            raise FormatError(f"{source}: its metadata says {key} {env[key]!r}, but {spec.name} has {getattr(spec, key)}")
    if env.get("backend") is not None:
        try:
            spec.check_backend(env["backend"])
        except HadesError as exc:
            raise FormatError(f"{source}: {exc}") from None
    return spec


def check_fields(meta: dict, source: str) -> None:
    """Types of the free-form fields, and a recipe that parses."""
    for key in OBJECT_FIELDS:
        if key in meta and not isinstance(meta[key], dict):
            raise FormatError(f"{source}: its metadata field {key!r} must be an object, got {type(meta[key]).__name__}")
    for key in TEXT_FIELDS:
        if key in meta and not isinstance(meta[key], str):
            raise FormatError(f"{source}: its metadata field {key!r} must be text, got {type(meta[key]).__name__}")
    normalization = meta.get("normalization", "none")
    if normalization not in NORMALIZATIONS:
        raise FormatError(f"{source}: its normalization must be one of {', '.join(NORMALIZATIONS)}, "
                          f"got {normalization!r}")
    evaluation = meta.get("evaluation")
    if isinstance(evaluation, dict):
        for key in ("mean", "std"):
            value = evaluation.get(key)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise FormatError(f"{source}: its evaluation {key} must be a finite number, got {value!r}")
    if "recipe" in meta:
        parse_recipe(meta["recipe"], source)


def check_pairs(meta: dict, pairs: int, source: str) -> None:
    recorded = meta.get("pairs")
    if recorded is not None and (not isinstance(recorded, int) or isinstance(recorded, bool) or recorded != pairs):
        raise FormatError(f"{source}: its metadata says {recorded!r} pairs, but it holds {pairs}")


def parse_recipe(data, source: str):
    """The recipe metadata as a :class:`hades.learn.Recipe`; anything malformed is a FormatError."""
    from hades.learn import Recipe

    if not isinstance(data, dict):
        raise FormatError(f"{source}: its recipe metadata must be an object, got {type(data).__name__}")
    try:
        return Recipe.from_dict(data)
    except ValueError as exc:
        raise FormatError(f"{source}: its recipe metadata is malformed ({exc})") from None


def check_statistics(tensors: dict, normalization: str, spec: EnvSpec, source: str, prefix: str = "") -> None:
    mean, var = tensors.get(f"{prefix}obs_mean"), tensors.get(f"{prefix}obs_var")
    if normalization == "constant" and (mean is None or var is None):
        raise FormatError(f"{source}: constant normalisation needs obs_mean and obs_var, which are missing")
    for name, value in ((f"{prefix}obs_mean", mean), (f"{prefix}obs_var", var)):
        if value is None:
            continue
        if value.shape != (spec.obs_dim,):
            raise FormatError(f"{source}: {name} has shape {list(value.shape)}, but {spec.name} needs [{spec.obs_dim}]")
        if not np.isfinite(value).all():
            raise FormatError(f"{source}: {name} holds NaN or infinite values")
    if var is not None and (var < 0).any():
        raise FormatError(f"{source}: {prefix}obs_var has negative entries; a variance cannot be negative")


def expected_param_shapes(arch, obs_dim: int, action_dim: int, discrete: bool) -> dict[str, tuple[int, ...]]:
    """The parameter shapes :func:`hades.policy.make_network` gives ``arch`` (flax's own names)."""
    shapes: dict[str, tuple[int, ...]] = {}
    features = obs_dim
    if arch.conv:
        height, width, channels = arch.image_shape
        for index, maps in enumerate(arch.conv):
            shapes[f"Conv_{index}/kernel"], shapes[f"Conv_{index}/bias"] = (3, 3, channels, maps), (maps,)
            channels = maps
        features = height * width * channels
    for index, width in enumerate((*arch.hidden, action_dim)):
        shapes[f"Dense_{index}/kernel"], shapes[f"Dense_{index}/bias"] = (features, width), (width,)
        features = width
    if not discrete:
        shapes["log_std"] = (action_dim,)
    return shapes


def check_policy(tensors: dict, meta: dict, source: str, prefix: str = "params/"):
    """A policy file's metadata and parameters: env, normalisation and its statistics, a recipe
    that parses, and parameters of exactly the shapes that recipe's network has, all finite.
    Returns the recipe. Multi-task files keep their own layout check."""
    if meta.get("kind") != "policy":
        raise FormatError(f"{source} holds a {meta.get('kind')!r}, not a policy")
    for name, value in tensors.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise FormatError(f"{source}: tensor {name!r} holds NaN or infinite values; the policy is unusable")
    if "recipe" not in meta:
        raise FormatError(f"{source}: its metadata has no recipe; it is not a trained policy")
    check_fields(meta, source)
    recipe = parse_recipe(meta["recipe"], source)
    params = {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}
    if not params:
        raise FormatError(f"{source} holds no parameters ({prefix}... tensors); it is not a trained policy")
    for name, value in params.items():  # finite already: every tensor was checked above
        if value.dtype != np.float32:
            raise FormatError(f"{source}: parameter {name} is {value.dtype}, not float32; the policy is unusable")
    if "tasks" in meta:
        return recipe
    spec = check_env(meta, source)
    check_statistics(tensors, meta.get("normalization", "none"), spec, source)
    expected = expected_param_shapes(recipe.arch, spec.obs_dim, spec.action_dim, spec.discrete)
    found = {name: tuple(value.shape) for name, value in params.items()}
    if all(name.startswith("params/") for name in found):  # a whole flax variables dict: {"params": {...}}
        found = {name[len("params/"):]: shape for name, shape in found.items()}
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or sorted(n for n in found if found[n] != expected[n])
        raise FormatError(f"{source}: its parameters do not fit its recipe's network for {spec.name} "
                          f"(first difference: {wrong[0]}); the file was edited or damaged")
    return recipe
