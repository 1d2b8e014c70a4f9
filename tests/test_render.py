"""Pictures: state grids (Brax and MinAtar), rollout GIFs and fitness curves."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

import hades
from hades import curves, pictures, poses, render
from hades.errors import FormatError, NotFoundError, SpecError

TILE = 96


@pytest.fixture(scope="module")
def brax_drawing():
    """Skip where no OpenGL platform can draw Brax bodies (the rest of the module still runs)."""
    import os

    try:
        if not os.environ.get("MUJOCO_GL") and not os.environ.get("DISPLAY"):
            render._headless_context_class()
    except render.RenderError as exc:
        pytest.skip(str(exc))


def hopper_dataset(normalization: str, pairs: int = 4, seed: int = 0) -> hades.Dataset:
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(pairs, 11)).astype("float32")
    actions = rng.normal(size=(pairs, 3)).astype("float32")
    stats = {}
    if normalization == "constant":
        # Roughly the statistics of a hopper in motion: the torso near 1.25 m, joints within a radian.
        stats = {"obs_mean": np.r_[1.25, np.zeros(10)].astype("float32"),
                 "obs_var": np.r_[0.01, np.full(4, 0.1), np.ones(6)].astype("float32")}
    return hades.Dataset(states, actions, "hopper", normalization, **stats)


def breakout_dataset(normalization: str = "none", pairs: int = 6) -> hades.Dataset:
    rng = np.random.default_rng(1)
    states = rng.uniform(-0.5, 1.5, size=(pairs, 400)).astype("float32")
    labels = (np.arange(pairs) % 3).astype("int32")
    return hades.Dataset(states, labels, "Breakout-MinAtar", normalization)


def assert_picture(image: Image.Image, size: tuple[int, int] | None = None) -> None:
    if size is not None:
        assert image.size == size
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 10.0, "the picture is (nearly) blank"
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 1


def grid_size(count: int, width: int, height: int) -> tuple[int, int]:
    layout = pictures.grid_layout(count, width, height)
    return layout["columns"], layout["rows"]


def no_leftovers(folder) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# -- state grids -----------------------------------------------------------------------------------

@pytest.mark.parametrize("normalization", ["none", "constant"])
def test_hopper_states_grid(tmp_path, brax_drawing, normalization):
    dataset = hopper_dataset(normalization)
    out = render.render_states(dataset, tmp_path / "states.png", width=TILE, height=TILE)
    assert out == tmp_path / "states.png"
    image = Image.open(out)
    assert image.format == "PNG"
    columns, rows = grid_size(4, TILE, TILE)
    assert (columns, rows) == (2, 2)
    assert image.width >= columns * TILE and image.height >= rows * TILE
    assert_picture(image)
    # Every tile holds a drawn body, not an empty frame.
    layout = pictures.grid_layout(4, TILE, TILE)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    header = image.height - rows * layout["cell_height"] - pictures.GUTTER
    for index in range(4):
        row, column = divmod(index, columns)
        left = pictures.GUTTER + column * layout["cell_width"]
        top = header + row * layout["cell_height"] + layout["caption"]
        tile = pixels[top : top + TILE, left : left + TILE]
        assert tile.std() > 10.0
    no_leftovers(tmp_path)


def test_hopper_observation_maps_back_to_the_pose():
    import mujoco

    env = render._brax_env(hades.envs.get_env_spec("hopper"), "positional")
    model = env.sys.mj_model
    data = mujoco.MjData(model)
    q = np.array([0.0, -0.1, 0.3, -0.4, -0.5, 0.2])
    qd = np.linspace(-1.0, 1.0, 6)
    data.qpos[:] = q
    mujoco.mj_kinematics(model, data)
    # hopper observes the torso's height instead of its z slide, then q[2:] and qd
    obs = np.concatenate([[data.xpos[1, 2]], q[2:], qd])[None]
    got_q, got_qd = poses.brax_poses("hopper", obs, model)
    np.testing.assert_allclose(got_q[0, 1:], q[1:], atol=1e-9)
    np.testing.assert_allclose(got_qd[0], qd)


def test_minatar_states_grid(tmp_path):
    dataset = breakout_dataset()
    out = render.render_states(dataset, tmp_path / "breakout.png", width=80, height=80)
    image = Image.open(out)
    columns, rows = grid_size(dataset.pairs, 80, 80)
    assert (columns, rows) == (3, 2)
    assert image.width >= columns * 80 and image.height >= rows * 80
    assert_picture(image)
    # the four channel colours show up (a legend plus the cells themselves)
    colours = {tuple(c) for c in np.asarray(image.convert("RGB")).reshape(-1, 3)}
    assert len(colours) > 8
    no_leftovers(tmp_path)


def test_minatar_running_normalisation_says_how_it_was_undone(tmp_path):
    dataset = breakout_dataset("running", pairs=3)
    raw, note = poses.raw_observations(dataset)
    assert raw.shape == (3, 400) and np.isfinite(raw).all()
    assert "estimated" in note and "random-action" in note
    assert_picture(Image.open(render.render_states(dataset, tmp_path / "running.png", width=64, height=64)))


def test_constant_normalisation_is_undone():
    dataset = hopper_dataset("constant")
    raw, note = poses.raw_observations(dataset)
    assert note == ""
    np.testing.assert_allclose(raw, dataset.states * np.sqrt(dataset.obs_var + 1e-8) + dataset.obs_mean, rtol=1e-6)


def test_an_existing_picture_is_replaced_whole(tmp_path):
    target = tmp_path / "states.png"
    target.write_bytes(b"old")
    render.render_states(breakout_dataset(pairs=2), target, width=48, height=48)
    assert Image.open(target).format == "PNG"
    no_leftovers(tmp_path)


def test_unsupported_env_and_bad_sizes_are_refused(tmp_path):
    with pytest.raises(SpecError, match="rendering is not supported for pusher"):
        poses.brax_poses("pusher", np.zeros((1, 23)), None)
    with pytest.raises(SpecError, match="width"):
        render.render_states(breakout_dataset(pairs=1), tmp_path / "x.png", width=4)
    with pytest.raises(SpecError, match="folder"):
        render.render_states(breakout_dataset(pairs=1), tmp_path, width=32, height=32)
    assert list(tmp_path.iterdir()) == []


# -- rollout GIFs ----------------------------------------------------------------------------------

def tiny_result(dataset: hades.Dataset, seeds: int = 1):
    from hades.evaluate import EvalProtocol
    from hades.learn import Recipe
    from hades.policy import PolicySpec
    from hades.trainfrom import train_from

    recipe = Recipe(arch=PolicySpec((16, 16)), steps=5,
                    loss="cross_entropy" if dataset.env_spec.discrete else "gaussian_nll")
    return train_from(dataset, recipe, EvalProtocol(num_envs=1, num_steps=10), num_seeds=seeds, keep_params=True)


def gif_frames(path) -> list[Image.Image]:
    image = Image.open(path)
    assert image.format == "GIF"
    frames = []
    for index in range(image.n_frames):
        image.seek(index)
        frames.append(image.convert("RGB"))
    return frames


@pytest.mark.slow  # compiles the brax physics twice (training's evaluation, then the recorded rollout)
def test_hopper_rollout_gif(tmp_path, brax_drawing):
    dataset = hopper_dataset("constant")
    result = tiny_result(dataset)
    out = render.rollout_gif(dataset, result, tmp_path / "hopper.gif", steps=5, width=96, height=80)
    frames = gif_frames(out)
    assert len(frames) == 5
    for frame in frames:
        assert_picture(frame, (96, 80))
    no_leftovers(tmp_path)


def test_minatar_rollout_gif_and_seed_choice(tmp_path):
    dataset = breakout_dataset("running", pairs=3)
    result = tiny_result(dataset, seeds=2)
    out = render.rollout_gif(dataset, result, tmp_path / "breakout.gif", seed_index=1, steps=4, width=60, height=60,
                             mp4=tmp_path / "breakout.mp4")
    frames = gif_frames(out)
    assert len(frames) == 4
    assert_picture(frames[0], (60, 60))
    video = (tmp_path / "breakout.mp4").read_bytes()
    assert video[4:8] == b"ftyp" and b"avc1" in video  # an H.264 MP4, as browsers and the Hub play
    assert sorted(p.name for p in tmp_path.iterdir()) == ["breakout.gif", "breakout.mp4"]  # no temporary files left
    with pytest.raises(SpecError, match="out of range"):
        render.rollout_gif(dataset, result, tmp_path / "bad.gif", seed_index=2, steps=2)
    with pytest.raises(SpecError, match="keep_params"):
        render.rollout_gif(dataset, _without_params(result), tmp_path / "bad.gif", steps=2)
    assert not (tmp_path / "bad.gif").exists()


def _without_params(result):
    import dataclasses

    return dataclasses.replace(result, params=None)


# -- fitness curves --------------------------------------------------------------------------------

def test_fitness_plot_from_rows_and_csv(tmp_path):
    generations = np.arange(40)
    mean = 1000 * (1 - np.exp(-generations / 10))
    rows = [{"generation": int(g), "mean": float(m), "max": float(m + 80), "min": float(m - 120)}
            for g, m in zip(generations, mean)]
    out = curves.fitness_plot(rows, tmp_path / "fitness.png")
    image = Image.open(out)
    assert image.format == "PNG"
    assert_picture(image)

    csv_path = tmp_path / "fitness.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["generation", "mean_fitness", "max_fitness"])
        writer.writerows([g, m, m + 50] for g, m in zip(generations, mean))
    assert_picture(Image.open(curves.fitness_plot(csv_path, tmp_path / "from_csv.png")))
    no_leftovers(tmp_path)


def test_fitness_plot_refuses_bad_input(tmp_path):
    with pytest.raises(FormatError, match="mean"):
        curves.fitness_plot([{"generation": 0, "best": 1.0}], tmp_path / "a.png")
    with pytest.raises(FormatError, match="no rows"):
        curves.fitness_plot([], tmp_path / "a.png")
    with pytest.raises(FormatError, match="not a number"):
        curves.fitness_plot([{"generation": 0, "mean": "lots"}], tmp_path / "a.png")
    with pytest.raises(NotFoundError):
        curves.fitness_plot(tmp_path / "missing.csv", tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()


def test_fitness_plot_runs_on_env_steps_with_the_papers_figure(tmp_path):
    from conftest import make_hopper_dataset

    from hades.curves import fitness_plot
    from hades.outputs import paper_figure

    rows = [{"generation": g, "mean": 10.0 * g, "max": 12.0 * g, "min": 8.0 * g, "env_steps": 64000 * g} for g in range(1, 21)]
    plain = fitness_plot([{k: v for k, v in row.items() if k != "env_steps"} for row in rows], tmp_path / "plain.png")
    steps = fitness_plot(rows, tmp_path / "steps.png", validation=[{"generation": 10, "mean": 90.0, "std": 4.0}],
                         selected=10, reference=1745.0)
    assert steps.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and steps.read_bytes() != plain.read_bytes()
    dataset = make_hopper_dataset()
    ours = dataset.replace(info={**dataset.info, "method": {"name": "hades-r", "config": {"pairs": 4}}})
    assert paper_figure(ours) == 1745.0
    assert paper_figure(ours.replace(info={**ours.info, "method": {"name": "hades-f", "config": {"pairs": 4}}})) == 1803.0
    assert paper_figure(make_hopper_dataset(pairs=5)) is None


def test_states_picture_says_which_dims_it_draws_and_marks_clipped_actions():
    import numpy as np

    from hades.envs import get_env_spec
    from hades.poses import drawn_dims
    from hades.render import _state_caption

    assert drawn_dims("hopper", 11, 6) == "drawn: obs dims 0-4 (positions), not 5-10"
    assert drawn_dims("reacher", 11, 4) == "drawn: obs dims 0-5 (positions), not 6-10"
    assert _state_caption(get_env_spec("hopper"), 0, np.array([0.5, -1.5, 2.0]))[1] == "a = [+0.50, -1.50*, +2.00*]"
