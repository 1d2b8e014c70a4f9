"""The environment catalogue and batched, auto-resetting environments.

The catalogue is plain data (importing this module does not import jax), so listings and
validation stay fast. :func:`make_vec_env` builds the jittable batched environment lazily.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable

from hades.errors import SpecError, UnknownEnvError

BRAX_BACKENDS = ("positional", "generalized", "spring", "mjx")
NORMALIZATIONS = ("none", "constant", "running")
LIBRARIES = ("brax", "gymnax", "images")
# Both normalisations divide by sqrt(var + NORM_EPS), as the published code does.
NORM_EPS = 1e-8


@dataclass(frozen=True)
class EnvSpec:
    """What fixes the shapes of a dataset and a policy for one environment."""

    name: str
    library: str  # "brax", "gymnax" or "images" (labelled images: :mod:`hades.imagesets`)
    obs_dim: int
    action_dim: int  # continuous: size of the action vector; discrete: number of actions
    action_type: str  # "continuous" or "discrete"
    episode_length: int
    obs_shape: tuple[int, ...] = ()
    default_backend: str = "positional"

    def __post_init__(self):
        if self.library not in LIBRARIES:
            raise ValueError(f"library must be one of {', '.join(LIBRARIES)}, got {self.library!r}")
        if self.action_type not in ("continuous", "discrete"):
            raise ValueError(f"action_type must be continuous or discrete, got {self.action_type!r}")
        if not self.obs_shape:
            object.__setattr__(self, "obs_shape", (self.obs_dim,))
        if math.prod(self.obs_shape) != self.obs_dim:
            raise ValueError(f"obs_shape {self.obs_shape} does not hold {self.obs_dim} values")

    @property
    def discrete(self) -> bool:
        return self.action_type == "discrete"

    def check_backend(self, backend: str | None) -> str:
        """Return the backend to use, refusing one the library does not have."""
        backend = backend or self.default_backend
        allowed = BRAX_BACKENDS if self.library == "brax" else (self.default_backend,)
        if backend not in allowed:
            raise SpecError(
                f"backend {backend!r} is not available for {self.name}; choose one of {', '.join(allowed)}"
            )
        return backend


def _brax(name, obs, act):
    return EnvSpec(name, "brax", obs, act, "continuous", 1000)


def _minatar(name, n_actions, channels, episode_length=1000, grid=(10, 10)):
    return EnvSpec(
        name, "gymnax", grid[0] * grid[1] * channels, n_actions, "discrete", episode_length,
        obs_shape=(*grid, channels), default_backend="gymnax",
    )


ENVS: dict[str, EnvSpec] = {
    spec.name: spec
    for spec in (
        _brax("hopper", 11, 3),
        _brax("walker2d", 17, 6),
        _brax("halfcheetah", 17, 6),
        _brax("ant", 27, 8),
        _brax("humanoid", 244, 17),
        _brax("humanoidstandup", 244, 17),
        _brax("reacher", 11, 2),
        _brax("inverted_double_pendulum", 8, 1),
        _minatar("Asterix-MinAtar", 5, 4),
        _minatar("Breakout-MinAtar", 3, 4),
        _minatar("SpaceInvaders-MinAtar", 4, 6),
        _minatar("Freeway-MinAtar", 3, 7, episode_length=2500),
        _minatar("Pong-misc", 3, 3, grid=(30, 40)),  # gymnax's grid Pong against its built-in opponent
    )
}


def get_env_spec(name: str) -> EnvSpec:
    """Look an environment up by name (case-insensitive), with a suggestion when it is unknown."""
    by_lower = {key.lower(): spec for key, spec in ENVS.items()}
    spec = by_lower.get(str(name).lower())
    if spec is None:
        from hades.imagesets import BUILTIN_SETS, image_spec

        spec = image_spec(str(name))  # an image-classification task (supervised dataset distillation)
    if spec is None:
        close = difflib.get_close_matches(str(name), [*ENVS, *BUILTIN_SETS], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownEnvError(
            f"unknown environment {name!r}: {hint}known environments are {', '.join(ENVS)}; "
            f"image datasets: {', '.join(BUILTIN_SETS)}, a folder of class folders or an .npz file"
        )
    return spec


class VecEnv:
    """A batch of auto-resetting environments behind two pure functions.

    ``reset(key) -> (obs, state)`` and ``step(key, state, action) -> (obs, state, reward, done)``,
    observations flattened to ``[num_envs, obs_dim]``. Continuous actions are clipped to
    [-1, 1] here, so policies regress unbounded targets as the published method does.
    """

    def __init__(self, spec: EnvSpec, num_envs: int, backend: str | None = None,
                 episode_length: int | None = None):
        self.spec = spec
        self.num_envs = num_envs
        self.backend = spec.check_backend(backend)
        self.episode_length = episode_length or spec.episode_length
        if spec.library == "images":
            raise SpecError(f"{spec.name} is an image-classification task, not an environment: its datasets are "
                            "scored by test accuracy (hades.test_accuracy)")
        if spec.library == "brax":
            self._reset, self._step = _brax_fns(spec.name, self.backend, self.episode_length)
        else:
            self._reset, self._step = _gymnax_fns(spec.name, self.episode_length)

    def reset(self, key):
        import jax

        return jax.vmap(self._reset)(jax.random.split(key, self.num_envs))

    def step(self, key, state, action):
        import jax
        import jax.numpy as jnp

        if not self.spec.discrete:
            action = jnp.clip(action, -1.0, 1.0)
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self._step)(keys, state, action)


def import_brax():
    """Import brax quietly: mujoco prints optional-backend notices to stdout, which would corrupt --json."""
    import contextlib
    import io
    import warnings

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import brax.envs
        import brax.envs.wrappers.training
    return brax.envs


def _brax_fns(name: str, backend: str, episode_length: int) -> tuple[Callable, Callable]:
    import warnings

    brax_envs = import_brax()
    from brax.envs.wrappers.training import AutoResetWrapper, EpisodeWrapper

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Brax System")
        env = brax_envs.get_environment(env_name=name, backend=backend)
    env = AutoResetWrapper(EpisodeWrapper(env, episode_length=episode_length, action_repeat=1))

    def reset(key):
        state = env.reset(key)
        return state.obs, state

    def step(key, state, action):
        del key  # brax physics is deterministic; resets reuse the first state
        state = env.step(state, action)
        return state.obs, state, state.reward, state.done > 0.5

    return reset, step


def _gymnax_fns(name: str, episode_length: int) -> tuple[Callable, Callable]:
    import gymnax
    import jax.numpy as jnp

    env, params = gymnax.make(name)
    params = params.replace(max_steps_in_episode=episode_length)

    def reset(key):
        obs, state = env.reset(key, params)
        return obs.reshape(-1).astype("float32"), state

    def step(key, state, action):
        # gymnax 1.x returns (obs, state, reward, terminated, truncated, info)
        obs, state, reward, terminated, truncated, _ = env.step(key, state, action, params)
        return obs.reshape(-1).astype("float32"), state, reward, jnp.logical_or(terminated, truncated)

    return reset, step


def env_library_versions(spec: EnvSpec) -> dict[str, Any]:
    """The versions of the simulator packages that define the environment's dynamics."""
    from importlib.metadata import PackageNotFoundError, version

    names = {"brax": ["brax", "mujoco"], "gymnax": ["gymnax"]}.get(spec.library, [])
    found = {}
    for package in names:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found
