"""Pictures of datasets and of policies acting: state grids, rollout GIFs and fitness curves.

* :func:`render_states` draws every synthetic state of a dataset as one tile of a PNG grid
  (Brax bodies through brax's image renderer, MinAtar grids as colour images).
* :func:`rollout_gif` records a trained policy acting in its environment.
* :func:`fitness_plot` plots a distillation fitness curve.

Brax pictures go through ``brax.io.image.render_array``, which draws with MuJoCo's OpenGL
renderer. Without a display, a headless OpenGL platform is picked automatically (EGL, then
OSMesa) unless ``MUJOCO_GL`` says which one to use. Every file is written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hades.dataset import Dataset
from hades.envs import NORM_EPS, EnvSpec
from hades.errors import FormatError, HadesError, NotFoundError, SpecError
from hades.files import FITNESS_CSV, FITNESS_CURVE_COLUMNS

# Layout of a grid of tiles (pixels).
GUTTER = 4
TILE_BACKGROUND = (255, 255, 255)
GRID_BACKGROUND = (236, 236, 236)
TEXT_COLOUR = (20, 20, 20)
MAX_RENDER_SIZE = 2048

# Steps and envs of the random-action rollout that stands in for running statistics.
RUNNING_ESTIMATE_STEPS = 256
RUNNING_ESTIMATE_ENVS = 4

# MinAtar: what each observation channel holds (gymnax's layout) and the names of the actions.
MINATAR_CHANNELS = {
    "Asterix-MinAtar": ("player", "enemy", "trail", "gold"),
    "Breakout-MinAtar": ("paddle", "ball", "trail", "brick"),
    "SpaceInvaders-MinAtar": ("cannon", "alien", "alien left", "alien right", "own bullet", "enemy bullet"),
    "Freeway-MinAtar": ("chicken", "car", "speed 1", "speed 2", "speed 3", "speed 4", "speed 5"),
}
MINATAR_ACTIONS = {
    "Asterix-MinAtar": ("noop", "left", "up", "right", "down"),
    "Breakout-MinAtar": ("noop", "left", "right"),
    "SpaceInvaders-MinAtar": ("noop", "left", "right", "fire"),
    "Freeway-MinAtar": ("noop", "up", "down"),
}
CHANNEL_COLOURS = (
    (0.12, 0.47, 0.71), (1.00, 0.50, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
    (0.58, 0.40, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.50, 0.50, 0.50),
)
MINATAR_BACKGROUND = (0.08, 0.08, 0.10)

# How a Brax observation starts: the leading coordinates of q that it leaves out.
_ROOT_DROPPED = {"hopper": 1, "walker2d": 1, "halfcheetah": 1, "ant": 2, "humanoid": 2, "humanoidstandup": 2}
# Envs whose observation replaces q[1] (the root's slide along z) with the torso's height.
_HEIGHT_OBSERVED = ("hopper", "walker2d")
# Envs with a free root joint: q[3:7] is a quaternion.
_FREE_ROOT = ("ant", "humanoid", "humanoidstandup")
RENDERABLE_BRAX_ENVS = (*_ROOT_DROPPED, "reacher", "inverted_double_pendulum")


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
    _check_size(width, height)
    spec = dataset.env_spec
    raw, note = raw_observations(dataset)
    if spec.library == "brax":
        images = _render_brax_poses(spec, dataset.backend, raw, width, height)
    else:
        images = [_minatar_image(spec, obs, width, height) for obs in raw]
    captions = [_state_caption(spec, index, dataset.actions[index]) for index in range(dataset.pairs)]
    title = f"{spec.name}: {dataset.pairs} synthetic states, {dataset.normalization} normalisation"
    lines = [title] + ([note] if note else [])
    grid = _compose_grid(images, captions, lines, columns, _legend(spec))
    return _save_png(grid, path)


def rollout_gif(dataset: Dataset, result, path: str | Path, seed_index: int = 0, steps: int = 200,
                width: int = 240, height: int = 240, backend: str | None = None) -> Path:
    """A GIF of one trained policy acting in one env for ``steps`` steps (one frame per step).

    The policy is ``result.params`` at index ``seed_index`` (``train_from(..., keep_params=True)``
    stacks parameters over seeds). Actions are greedy (the Gaussian mean, or the most likely
    discrete action), observations are normalised as the dataset says (running statistics start
    afresh, as in evaluation), and episodes that end restart at once. Brax envs are drawn with
    brax's renderer, MinAtar envs as colour grids.
    """
    path = Path(path)
    _check_size(width, height)
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
    pictures = [_caption_frame(image, f"step {t}  return {returns[t]:.1f}") for t, image in enumerate(images)]
    return _save_gif(pictures, path, duration)


def fitness_plot(csv_path_or_rows: str | Path | Iterable[Mapping[str, Any]], path: str | Path,
                 title: str | None = None, validation: Iterable[Mapping[str, Any]] | None = None,
                 selected: int | None = None) -> Path:
    """Plot a distillation fitness curve (PNG): the population mean, with max and min when present.

    Takes a CSV file or rows (mappings) with a ``generation`` column and ``mean``, ``max``,
    ``min`` columns: a run's fitness.csv, or the ``mean_fitness``, ``max_fitness`` curves of a
    converted run (:data:`hades.files.FITNESS_CURVE_COLUMNS`).
    ``validation``: rows (generation, mean, std) scoring the ES mean itself with fresh inits,
    drawn as points with error bars; ``selected`` marks the generation the run kept.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    columns = _fitness_columns(csv_path_or_rows)
    generation = columns["generation"]
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if "min" in columns and "max" in columns:
        axes.fill_between(generation, columns["min"], columns["max"], color="tab:blue", alpha=0.18,
                          linewidth=0, label="population min-max")
    if "max" in columns:
        axes.plot(generation, columns["max"], color="tab:orange", linewidth=1.2, label="max")
    axes.plot(generation, columns["mean"], color="tab:blue", linewidth=1.8, label="mean")
    if "min" in columns:
        axes.plot(generation, columns["min"], color="tab:blue", linewidth=0.8, alpha=0.6, label="min")
    rows = list(validation or [])
    if rows:
        axes.errorbar([row["generation"] for row in rows], [row["mean"] for row in rows],
                      yerr=[row.get("std", 0.0) for row in rows], fmt="o", markersize=3, color="tab:green",
                      elinewidth=0.8, label="ES mean, fresh inits")
    if selected is not None:
        axes.axvline(selected, color="tab:green", linestyle="--", linewidth=1.0, label=f"kept (gen {selected})")
    axes.set_xlabel("generation")
    axes.set_ylabel("fitness (return)")
    axes.set_title(title or "distillation fitness")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return _write_atomic(path, buffer.getvalue())


# -- observations back to environment states --------------------------------------------------------

def raw_observations(dataset: Dataset) -> tuple[np.ndarray, str]:
    """The dataset's states in the env's own observation space, and a note on how they were obtained."""
    states = np.asarray(dataset.states, dtype=np.float64)
    if dataset.normalization == "constant":
        mean, var = dataset.normalization_arrays()
        return states * np.sqrt(np.asarray(var, np.float64) + NORM_EPS) + mean, ""
    if dataset.normalization == "running":
        mean, var = estimate_observation_stats(dataset.env_spec, dataset.backend)
        note = (f"running normalisation: statistics estimated from a {RUNNING_ESTIMATE_ENVS}x"
                f"{RUNNING_ESTIMATE_STEPS}-step random-action rollout")
        return states * np.sqrt(var + NORM_EPS) + mean, note
    return states, ""


def estimate_observation_stats(spec: EnvSpec, backend: str | None = None, steps: int = RUNNING_ESTIMATE_STEPS,
                               num_envs: int = RUNNING_ESTIMATE_ENVS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of observations along a random-action rollout (uniform actions).

    Computed once per process for each env, backend and rollout size (compiling the rollout
    dominates the cost).
    """
    mean, var = _estimate_observation_stats(spec.name, spec.check_backend(backend), steps, num_envs, seed)
    return mean.copy(), var.copy()


@functools.lru_cache(maxsize=None)
def _estimate_observation_stats(env_name: str, backend: str, steps: int, num_envs: int, seed: int):
    import jax
    import jax.numpy as jnp

    from hades.envs import VecEnv, get_env_spec

    spec = get_env_spec(env_name)
    env = VecEnv(spec, num_envs, backend)

    def sample_action(key):
        if spec.discrete:
            return jax.random.randint(key, (num_envs,), 0, spec.action_dim)
        return jax.random.uniform(key, (num_envs, spec.action_dim), minval=-1.0, maxval=1.0)

    @jax.jit
    def run(key):
        reset_key, key = jax.random.split(key)
        obs, state = env.reset(reset_key)

        def step(carry, step_key):
            state, obs = carry
            action_key, env_key = jax.random.split(step_key)
            next_obs, state, _, _ = env.step(env_key, state, sample_action(action_key))
            return (state, next_obs), obs

        _, seen = jax.lax.scan(step, (state, obs), jax.random.split(key, steps))
        seen = seen.reshape(-1, spec.obs_dim)
        return jnp.mean(seen, 0), jnp.var(seen, 0)

    mean, var = run(jax.random.PRNGKey(seed))
    return np.asarray(mean, np.float64), np.asarray(var, np.float64)


def brax_poses(env_name: str, obs: np.ndarray, mj_model) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions and velocities (q, qd) that produce raw observations ``obs`` [N, obs_dim].

    Coordinates an observation leaves out (the root's x, and y for 3-D bodies) are set to 0;
    velocities the observation does not hold are set to 0 (they do not change a picture).
    """
    if env_name not in RENDERABLE_BRAX_ENVS:
        raise SpecError(f"rendering is not supported for {env_name}")
    obs = np.asarray(obs, np.float64).reshape(len(obs), -1)
    nq, nv = int(mj_model.nq), int(mj_model.nv)
    count = len(obs)
    q = np.zeros((count, nq))
    qd = np.zeros((count, nv))
    if env_name in _ROOT_DROPPED:
        dropped = _ROOT_DROPPED[env_name]
        q[:, dropped:] = obs[:, : nq - dropped]
        qd[:] = obs[:, nq - dropped : nq - dropped + nv]
        if env_name in _HEIGHT_OBSERVED:
            q[:, 1] = obs[:, 0] - _torso_height(mj_model, q)
        if env_name in _FREE_ROOT:
            q[:, 3:7] = _unit_quaternions(q[:, 3:7])
    elif env_name == "reacher":
        # obs: cos(theta) [2], sin(theta) [2], target x, y, tip velocity [2], tip - target [3]
        q[:, 0:2] = np.arctan2(obs[:, 2:4], obs[:, 0:2])
        q[:, 2:4] = obs[:, 4:6]
    elif env_name == "inverted_double_pendulum":
        # obs: cart x, sin(hinges) [2], cos(hinges) [2], qd [3]
        q[:, 0] = obs[:, 0]
        q[:, 1:3] = np.arctan2(obs[:, 1:3], obs[:, 3:5])
        qd[:] = obs[:, 5:8]
    else:
        raise SpecError(f"rendering is not supported for {env_name}")
    return q, qd


def _torso_height(mj_model, q: np.ndarray) -> np.ndarray:
    """Height of the torso (the first body) for each pose with its root z slide at 0."""
    import mujoco

    data = mujoco.MjData(mj_model)
    heights = np.zeros(len(q))
    for index, pose in enumerate(q):
        data.qpos[:] = pose
        data.qpos[1] = 0.0
        mujoco.mj_kinematics(mj_model, data)
        heights[index] = data.xpos[1, 2]
    return heights


def _unit_quaternions(quats: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(quats, axis=-1, keepdims=True)
    identity = np.array([1.0, 0.0, 0.0, 0.0])
    return np.where(norms > 1e-6, quats / np.maximum(norms, 1e-6), identity)


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


# -- composing and saving --------------------------------------------------------------------------

def grid_layout(count: int, width: int, height: int, columns: int | None = None) -> dict[str, int]:
    """Where the tiles of a state grid go: columns, rows, and the caption and header heights."""
    columns = max(1, min(count, columns or math.ceil(math.sqrt(count))))
    rows = math.ceil(count / columns)
    font_size = _font_size(width)
    return {"columns": columns, "rows": rows, "caption": 2 * font_size + 8, "font": font_size,
            "cell_width": width + GUTTER, "cell_height": height + 2 * font_size + 8 + GUTTER}


def _compose_grid(images: list[np.ndarray], captions: list[tuple[str, str]], title_lines: list[str],
                  columns: int | None, legend: list[tuple[str, tuple[int, int, int]]]):
    from PIL import Image, ImageDraw

    height, width = images[0].shape[:2]
    layout = grid_layout(len(images), width, height, columns)
    font = _font(layout["font"])
    header_font = _font(max(12, layout["font"] + 1))
    line_height = max(12, layout["font"] + 1) + 6
    header = GUTTER + line_height * (len(title_lines) + (1 if legend else 0)) + GUTTER
    grid_width = max(GUTTER + layout["columns"] * layout["cell_width"], 360)
    grid_height = header + layout["rows"] * layout["cell_height"] + GUTTER
    grid = Image.new("RGB", (grid_width, grid_height), GRID_BACKGROUND)
    draw = ImageDraw.Draw(grid)
    y = GUTTER
    for line in title_lines:
        draw.text((GUTTER + 2, y), line, fill=TEXT_COLOUR, font=header_font)
        y += line_height
    if legend:
        x = GUTTER + 2
        for name, colour in legend:
            draw.rectangle([x, y + 2, x + line_height - 8, y + line_height - 6], fill=colour)
            x += line_height - 4
            draw.text((x, y), name, fill=TEXT_COLOUR, font=header_font)
            x += int(draw.textlength(name, font=header_font)) + 12
    for index, (picture, (first, second)) in enumerate(zip(images, captions)):
        row, column = divmod(index, layout["columns"])
        left = GUTTER + column * layout["cell_width"]
        top = header + row * layout["cell_height"]
        draw.rectangle([left, top, left + width - 1, top + layout["caption"] - 1], fill=TILE_BACKGROUND)
        draw.text((left + 3, top + 2), first, fill=TEXT_COLOUR, font=font)
        draw.text((left + 3, top + 4 + layout["font"]), _fit(draw, second, font, width - 6), fill=TEXT_COLOUR, font=font)
        grid.paste(Image.fromarray(picture[..., :3]), (left, top + layout["caption"]))
    return grid


def _state_caption(spec: EnvSpec, index: int, action) -> tuple[str, str]:
    if spec.discrete:
        label = int(action)
        names = MINATAR_ACTIONS.get(spec.name)
        name = f" ({names[label]})" if names and label < len(names) else ""
        return f"#{index}", f"action {label}{name}"
    values = ", ".join(f"{float(v):+.2f}" for v in np.asarray(action).reshape(-1))
    return f"#{index}", f"a = [{values}]"


def _caption_frame(picture: np.ndarray, text: str):
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.asarray(picture)[..., :3])
    draw = ImageDraw.Draw(image)
    font = _font(_font_size(image.width))
    box = draw.textbbox((4, 3), text, font=font)
    draw.rectangle([box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2], fill=(255, 255, 255))
    draw.text((4, 3), text, fill=TEXT_COLOUR, font=font)
    return image


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _font_size(width: int) -> int:
    return int(min(14, max(9, width // 14)))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def _check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, (int, np.integer)) or not 16 <= value <= MAX_RENDER_SIZE:
            raise SpecError(f"{name} must be a whole number of pixels between 16 and {MAX_RENDER_SIZE}, got {value!r}")


def _save_png(image, path: Path) -> Path:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return _write_atomic(path, buffer.getvalue())


def _save_gif(images: list, path: Path, duration_ms: int) -> Path:
    buffer = io.BytesIO()
    from PIL import Image

    frames = [image.convert("P", palette=Image.Palette.ADAPTIVE, colors=255) for image in images]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms,
                   loop=0, optimize=False, disposal=1)
    return _write_atomic(path, buffer.getvalue())


def _write_atomic(path: Path, data: bytes) -> Path:
    from hades.formats import atomic_write_bytes

    if path.is_dir():
        raise SpecError(f"{path} is a folder; give a file name for the picture")
    atomic_write_bytes(path, data)
    return path


# -- fitness curves --------------------------------------------------------------------------------

def _fitness_columns(source) -> dict[str, np.ndarray]:
    where = "fitness rows"
    if isinstance(source, (str, os.PathLike)):
        where = str(source)
        try:
            with open(source, newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except FileNotFoundError:
            raise NotFoundError(f"{where} does not exist; give the {FITNESS_CSV} of a distillation run") from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise FormatError(f"{where} could not be read as CSV: {exc}") from None
    else:
        rows = [dict(row) for row in source]
    if not rows:
        raise FormatError(f"{where} holds no rows; there is no fitness curve to plot")
    keys = {str(key).strip().lower(): key for key in rows[0]}
    found = {}
    for column, aliases in FITNESS_CURVE_COLUMNS.items():
        key = next((keys[alias] for alias in aliases if alias in keys), None)
        if key is None:
            continue
        try:
            values = np.asarray([float(row[key]) for row in rows], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{where}: column {key!r} holds a value that is not a number ({exc})") from None
        found[column] = values
    for required in ("generation", "mean"):
        if required not in found:
            raise FormatError(f"{where} has no {required!r} column (columns: {', '.join(map(str, rows[0]))}); "
                              "expected generation, mean, max, min")
    return found
