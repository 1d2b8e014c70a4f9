"""Pictures of datasets and of policies acting: state grids and rollout GIFs.

* :func:`render_states` draws every synthetic state of a dataset as one tile of a PNG grid
  (Brax bodies through brax's image renderer, MinAtar grids as colour images).
* :func:`rollout_gif` records a trained policy acting in its environment.

Fitness curves are :mod:`hades.curves`; states back to env states, :mod:`hades.poses`; composing
and writing the files, :mod:`hades.pictures`.

Brax pictures go through ``brax.io.image.render_array``, which draws with MuJoCo's OpenGL
renderer. Without a display, a headless OpenGL platform is picked automatically (EGL, then
OSMesa) unless ``MUJOCO_GL`` says which one to use. Every file is written atomically.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import numpy as np

from hades.dataset import Dataset
from hades.envs import NORM_EPS, EnvSpec
from hades.errors import HadesError, SpecError
from hades.pictures import caption_frame, check_size, compose_grid, save_gif, save_mp4, save_png
from hades.poses import RENDERABLE_BRAX_ENVS, brax_poses, drawn_dims, raw_observations

# MinAtar: what each observation channel holds (gymnax's layout) and the names of the actions.
MINATAR_CHANNELS = {
    "Asterix-MinAtar": ("player", "enemy", "trail", "gold"),
    "Breakout-MinAtar": ("paddle", "ball", "trail", "brick"),
    "SpaceInvaders-MinAtar": ("cannon", "alien", "alien left", "alien right", "own bullet", "enemy bullet"),
    "Freeway-MinAtar": ("chicken", "car", "speed 1", "speed 2", "speed 3", "speed 4", "speed 5"),
    "Pong-misc": ("paddles", "ball", "ball before"),
}
MINATAR_ACTIONS = {
    "Asterix-MinAtar": ("noop", "left", "up", "right", "down"),
    "Breakout-MinAtar": ("noop", "left", "right"),
    "SpaceInvaders-MinAtar": ("noop", "left", "right", "fire"),
    "Freeway-MinAtar": ("noop", "up", "down"),
    "Pong-misc": ("stay", "up", "down"),
}
CHANNEL_COLOURS = (
    (0.12, 0.47, 0.71), (1.00, 0.50, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
    (0.58, 0.40, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.50, 0.50, 0.50),
)
MINATAR_BACKGROUND = (0.08, 0.08, 0.10)


class RenderError(HadesError, RuntimeError):
    """A picture could not be drawn (for example, no OpenGL platform is available)."""


# -- public API ------------------------------------------------------------------------------------

def render_states(dataset: Dataset, path: str | Path, width: int = 160, height: int = 160,
                  columns: int | None = None) -> Path:
    """Draw every synthetic state of ``dataset`` into one PNG grid, one labelled tile per state.

    States are un-normalised first: constant statistics come from the dataset; running
    statistics are not stored, so they are estimated from a short random-action rollout in the
    env (the picture's title says so). Brax states become body poses (joint positions; the
    unobserved root x/y are set to 0); MinAtar states become 10x10 grids, one colour per channel.
    """
    path = Path(path)
    check_size(width, height)
    spec = dataset.env_spec
    if spec.library == "images":  # synthetic images with their labels
        from hades.imagedistill import render_images

        return render_images(dataset, path, columns)
    raw, note = raw_observations(dataset)
    lines = [f"{spec.name}: {dataset.pairs} synthetic states, {dataset.normalization} normalisation"]
    if spec.library == "brax":
        images = _render_brax_poses(spec, dataset.backend, raw, width, height)
        lines.append(drawn_dims(spec.name, spec.obs_dim, int(_brax_env(spec, dataset.backend).sys.mj_model.nq)))
    else:
        images = [_minatar_image(spec, obs, width, height) for obs in raw]
        lines.append(f"drawn: every obs dim ({'x'.join(map(str, spec.obs_shape))})")
    captions = [_state_caption(spec, index, dataset.actions[index]) for index in range(dataset.pairs)]
    if not spec.discrete and np.any(np.abs(dataset.actions) > 1.0):
        lines.append("* = action outside [-1, 1] (clipped)")
    lines += [note] if note else []
    grid = compose_grid(images, captions, lines, columns, _legend(spec))
    return save_png(grid, path)


def rollout_gif(dataset: Dataset, result, path: str | Path, seed_index: int = 0, steps: int = 200,
                width: int = 240, height: int = 240, backend: str | None = None, mp4: str | Path | None = None) -> Path:
    """A GIF of one trained policy acting in one env for ``steps`` steps (one frame per step);
    ``mp4`` names an MP4 file to write with the same frames too.

    The policy is ``result.params`` at index ``seed_index`` (``train_from(..., keep_params=True)``
    stacks parameters over seeds). Actions are greedy (the Gaussian mean, or the most likely
    discrete action), observations are normalised as the dataset says (running statistics start
    afresh, as in evaluation), and episodes that end restart at once. Brax envs are drawn with
    brax's renderer, MinAtar envs as colour grids.
    """
    path = Path(path)
    check_size(width, height)
    if steps < 1:
        raise SpecError(f"a rollout GIF needs at least 1 step, got {steps}")
    spec = dataset.env_spec
    if getattr(result, "env", spec.name) != spec.name:
        raise SpecError(f"the policies were trained for {result.env}, but the dataset is for {spec.name}")
    params = _select_seed(result, seed_index)
    frames, rewards, dones = _rollout(dataset, result.recipe.arch, params, steps, backend or dataset.backend)
    if spec.library == "brax":
        q, qd = frames
        images = _render_brax(spec, backend or dataset.backend, q, qd, width, height)
        duration = _brax_frame_ms(spec, backend or dataset.backend)
    else:
        images = [_minatar_image(spec, obs, width, height) for obs in frames]
        duration = 100
    returns = _episode_returns(rewards, dones)
    pictures = [caption_frame(image, f"step {t}  return {returns[t]:.1f}") for t, image in enumerate(images)]
    if mp4 is not None:
        save_mp4(pictures, Path(mp4), duration)
    return save_gif(pictures, path, duration)


# -- Brax drawing ----------------------------------------------------------------------------------

def _brax_env(spec: EnvSpec, backend: str | None):
    return _cached_brax_env(spec.name, spec.check_backend(backend))


@functools.lru_cache(maxsize=8)
def _cached_brax_env(env_name: str, backend: str):
    import warnings

    from hades.envs import import_brax

    brax_envs = import_brax()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return brax_envs.get_environment(env_name=env_name, backend=backend)


def _render_brax_poses(spec: EnvSpec, backend: str | None, raw: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    if spec.name not in RENDERABLE_BRAX_ENVS:
        raise SpecError(f"rendering is not supported for {spec.name}")
    env = _brax_env(spec, backend)
    q, qd = brax_poses(spec.name, raw, env.sys.mj_model)
    return _draw_brax(spec.name, env.sys, q, qd, width, height)


def _render_brax(spec: EnvSpec, backend: str | None, q: np.ndarray, qd: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    return _draw_brax(spec.name, _brax_env(spec, backend).sys, q, qd, width, height)


def _draw_brax(env_name: str, sys, q: np.ndarray, qd: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    """Render poses with brax's image renderer (it runs MuJoCo's forward kinematics on q, qd)."""
    from brax import base
    from brax.io import image

    model = sys.mj_model
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
    states = [base.State(q=np.asarray(pose, np.float64), qd=np.asarray(vel, np.float64), x=None, xd=None, contact=None)
              for pose, vel in zip(q, qd)]
    with _gl_platform():
        try:
            frames = image.render_array(sys, states, height=height, width=width, camera=_camera(env_name, model))
        except Exception as exc:  # the GL stack reports failures with many exception types
            raise RenderError(f"could not draw {len(states)} frame(s) with MuJoCo's renderer: {exc}") from exc
    return [np.asarray(frame, np.uint8) for frame in frames]


def _camera(env_name: str, model):
    """The model's tracking camera when it has one; else a fixed free camera framing the mechanism."""
    import mujoco

    for index in range(model.ncam):
        if model.camera(index).name == "track":
            return "track"
    camera = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, camera)
    lookat, distance, elevation, azimuth = _FREE_CAMERAS.get(
        env_name, (tuple(model.stat.center), 1.6 * float(model.stat.extent), -20.0, 90.0))
    camera.lookat[:] = lookat
    camera.distance, camera.elevation, camera.azimuth = distance, elevation, azimuth
    return camera


# lookat, distance, elevation, azimuth for envs without a tracking camera
_FREE_CAMERAS = {
    "reacher": ((0.0, 0.0, 0.0), 0.85, -90.0, 90.0),  # the planar arm seen from above, arena included
    "inverted_double_pendulum": ((0.0, 0.0, 0.5), 2.8, 0.0, 90.0),  # side view of the x-z plane
}


@contextlib.contextmanager
def _gl_platform():
    """Give MuJoCo's renderer a usable OpenGL platform while drawing.

    MuJoCo chooses its platform (``MUJOCO_GL``) when it is imported, defaulting to GLFW, which
    needs a display. When the user chose none and there is no display, EGL (then OSMesa) is
    used for the duration of the drawing.
    """
    try:
        from mujoco.rendering.classic import gl_context
    except ImportError:
        yield
        return
    headless = os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if os.environ.get("MUJOCO_GL") or not headless:
        yield
        return
    previous = getattr(gl_context, "GLContext", None)
    gl_context.GLContext = _headless_context_class()
    try:
        yield
    finally:
        gl_context.GLContext = previous


_HEADLESS_CONTEXT = None


def _headless_context_class():
    global _HEADLESS_CONTEXT
    if _HEADLESS_CONTEXT is not None:
        return _HEADLESS_CONTEXT
    problems = []
    for platform in ("egl", "osmesa"):
        try:
            module = __import__(f"mujoco.{platform}", fromlist=["GLContext"])
            context = module.GLContext(8, 8)
            context.free()
        except Exception as exc:  # a missing library shows up as ImportError, OSError or a GL error
            problems.append(f"{platform}: {type(exc).__name__}: {exc}".strip())
            continue
        _HEADLESS_CONTEXT = module.GLContext
        return _HEADLESS_CONTEXT
    raise RenderError(
        "drawing Brax envs needs OpenGL, and no headless platform works here ("
        + "; ".join(problems)
        + "); install EGL or OSMesa (e.g. apt-get install libegl1 libgl1-mesa-dri, or libosmesa6) "
        "or set MUJOCO_GL to a platform that works"
    )


def _brax_frame_ms(spec: EnvSpec, backend: str | None) -> int:
    dt = float(_brax_env(spec, backend).dt)
    return int(max(20, 10 * round(dt * 100)))


# -- MinAtar drawing -------------------------------------------------------------------------------

def _minatar_image(spec: EnvSpec, obs: np.ndarray, width: int, height: int) -> np.ndarray:
    """A 10x10xC observation as an RGB image: each channel adds its colour, weighted by its value in [0, 1]."""
    from PIL import Image, ImageDraw

    rows, cols, channels = spec.obs_shape
    grid = np.clip(np.asarray(obs, np.float64).reshape(rows, cols, channels), 0.0, 1.0)
    colours = np.asarray([CHANNEL_COLOURS[c % len(CHANNEL_COLOURS)] for c in range(channels)])
    rgb = np.asarray(MINATAR_BACKGROUND) + grid @ colours
    pixels = (np.clip(rgb, 0.0, 1.0) * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels, "RGB").resize((width, height), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    for index in range(1, cols):
        x = round(index * width / cols)
        draw.line([(x, 0), (x, height)], fill=(50, 50, 56))
    for index in range(1, rows):
        y = round(index * height / rows)
        draw.line([(0, y), (width, y)], fill=(50, 50, 56))
    return np.asarray(picture)


def _legend(spec: EnvSpec) -> list[tuple[str, tuple[int, int, int]]]:
    if spec.library != "gymnax":
        return []
    names = MINATAR_CHANNELS.get(spec.name) or tuple(f"channel {c}" for c in range(spec.obs_shape[-1]))
    return [(name, tuple(int(255 * v) for v in CHANNEL_COLOURS[c % len(CHANNEL_COLOURS)])) for c, name in enumerate(names)]


# -- rollouts --------------------------------------------------------------------------------------

def _select_seed(result, seed_index: int):
    import jax

    if getattr(result, "params", None) is None:
        raise SpecError("the result holds no trained parameters; train with keep_params=True to record a rollout")
    seeds = len(getattr(result, "seeds", ())) or int(jax.tree.leaves(result.params)[0].shape[0])
    if not -seeds <= seed_index < seeds:
        raise SpecError(f"seed_index {seed_index} is out of range: the result holds {seeds} policies")
    return jax.tree.map(lambda x: x[seed_index], result.params)


def _rollout(dataset: Dataset, arch, params, steps: int, backend: str | None):
    """Run one env for ``steps`` steps; frames[t] is the state the policy acts on at step t."""
    import jax
    import jax.numpy as jnp

    from hades.envs import VecEnv
    from hades.evaluate import make_act, normalize_running

    spec = dataset.env_spec
    env = VecEnv(spec, 1, backend)
    act = make_act(spec, arch, greedy=True)
    obs_mean, obs_var = (jnp.asarray(x) for x in dataset.normalization_arrays())
    normalization = dataset.normalization

    def normalize(stats, obs):
        if normalization == "running":
            return normalize_running(stats, obs)
        if normalization == "constant":
            return stats, (obs - obs_mean) / jnp.sqrt(obs_var + NORM_EPS)
        return stats, obs

    def picture(state, obs):
        if spec.library == "brax":
            return state.pipeline_state.q[0], state.pipeline_state.qd[0]
        return obs[0]

    @jax.jit
    def run(params, key):
        reset_key, key = jax.random.split(key)
        obs, state = env.reset(reset_key)
        stats = (jnp.zeros(spec.obs_dim), jnp.ones(spec.obs_dim), jnp.asarray(1e-4))

        def step(carry, step_key):
            state, obs, stats = carry
            stats, seen = normalize(stats, obs)
            frame = picture(state, obs)
            act_key, env_key = jax.random.split(step_key)
            next_obs, state, reward, done = env.step(env_key, state, act(params, seen, act_key))
            return (state, next_obs, stats), (frame, reward[0], done[0])

        _, (frames, rewards, dones) = jax.lax.scan(step, (state, obs, stats), jax.random.split(key, steps))
        return frames, rewards, dones

    frames, rewards, dones = run(params, jax.random.PRNGKey(0))
    frames = jax.tree.map(np.asarray, frames)
    return frames, np.asarray(rewards, np.float64), np.asarray(dones, bool)


def _episode_returns(rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
    """The return collected in the current episode before each step."""
    returns = np.zeros(len(rewards))
    running = 0.0
    for t in range(len(rewards)):
        returns[t] = running
        running = 0.0 if dones[t] else running + float(rewards[t])
    return returns


def _state_caption(spec: EnvSpec, index: int, action) -> tuple[str, str]:
    if spec.discrete:
        label = int(action)
        names = MINATAR_ACTIONS.get(spec.name)
        name = f" ({names[label]})" if names and label < len(names) else ""
        return f"#{index}", f"action {label}{name}"
    values = ", ".join(f"{float(v):+.2f}" + ("*" if abs(float(v)) > 1.0 else "") for v in np.asarray(action).reshape(-1))
    return f"#{index}", f"a = [{values}]"
