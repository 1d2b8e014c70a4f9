"""Supervised dataset distillation: image sets, the image task in the runner, bad input, converted pickles."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FASHION_DIR, run_cli



def tiny_digits_config(**overrides):
    """Digits with a tiny MLP, population and held-out split: compiles and runs in seconds."""
    from hades.imagetask import image_preset
    from hades.policy import parse_arch

    config = image_preset("cpu", "digits", 10, population_size=8, num_generations=4, num_inits=1, holdout=200,
                          **overrides)
    return dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, arch=parse_arch("32:relu"), steps=30))


def with_class_means(config):
    from hades.imagedistill import class_mean_start

    start = class_mean_start(config)
    return dataclasses.replace(config, init_from=start.sha256), start


def test_digits_distilled_above_chance(tmp_path):
    from hades.dataset import Dataset
    from hades.files import FITNESS_CSV, FITNESS_PLOT, STATES_PLOT, VALIDATION_CSV
    from hades.imagedistill import distill_images
    from hades.validation import Validation

    config, start = with_class_means(tiny_digits_config())
    result = distill_images(config, tmp_path / "run", checkpoint_every=2, final_seeds=3, start=start,
                            start_source="class means", validation=Validation(2, 2))
    assert result.evaluation["mean"] > 0.1  # chance is 10%
    assert len(result.evaluation["accuracies"]) == 3 and result.selected is not None
    dataset = Dataset.load(tmp_path / "run")
    assert dataset.env == "digits" and dataset.states.shape == (10, 64) and dataset.actions.tolist() == list(range(10))
    info = dataset.info
    assert info["images"]["classes"] == [str(digit) for digit in range(10)]
    assert info["images"]["image_shape"] == [8, 8, 1] and info["images"]["holdout"] == {"images": 200, "seed": 0}
    assert info["evaluation"]["protocol"]["inits"] == 3 and "test accuracy" in info["description"].lower()
    assert info["recipe"]["arch"]["hidden"] == [32]
    for name in (STATES_PLOT, FITNESS_PLOT, FITNESS_CSV, VALIDATION_CSV):
        assert (tmp_path / "run" / name).is_file()
    assert len((tmp_path / "run" / FITNESS_CSV).read_text().splitlines()) == 1 + 4


def test_image_run_resumes_bit_identical(tmp_path):
    from hades.runner import Distiller

    config, start = with_class_means(tiny_digits_config(fitness="loss"))
    uninterrupted = Distiller(config, tmp_path / "whole", 2, start=start)
    whole = uninterrupted.run()
    Distiller(dataclasses.replace(config, num_generations=2), tmp_path / "parts", 2, start=start).run()
    resumed = Distiller(config, tmp_path / "parts", 2, start=start)
    parts = resumed.run(resume=True)
    assert whole.states.tobytes() == parts.states.tobytes()
    assert [row["mean"] for row in resumed.history] == [row["mean"] for row in uninterrupted.history]


def test_conv_classifier_and_sgd_recipe_keep_old_dicts():
    from hades.learn import Recipe
    from hades.policy import PolicySpec, format_arch, parse_arch

    spec = parse_arch("c16,128:relu:lecun")
    assert spec.conv == (16,) and spec.hidden == (128,) and format_arch(spec) == "c16,128:relu:lecun"
    assert parse_arch(format_arch(spec)) == spec
    assert PolicySpec((64, 64)).to_dict() == {"hidden": [64, 64], "activation": "tanh", "init": "orthogonal"}
    assert "optimizer" not in Recipe().to_dict()
    sgd = Recipe(spec, "cross_entropy", 0.01, 5, None, optimizer="sgd")
    assert Recipe.from_dict(json.loads(json.dumps(sgd.to_dict()))) == sgd


def test_cnn_trains_on_images():
    from hades.imagesets import open_image_set
    from hades.imagetask import bind_recipe, evaluate_test_accuracy
    from hades.dataset import Dataset
    from hades.learn import Recipe
    from hades.policy import parse_arch

    image_set = open_image_set("digits")
    picks = [int(np.flatnonzero(image_set.train_labels == label)[0]) for label in range(10)]
    recipe = Recipe(parse_arch("c4,16:relu:lecun"), "cross_entropy", 0.05, 20, None, optimizer="sgd")
    dataset = Dataset(image_set.train_images[picks].reshape(10, -1), np.arange(10), "digits", "none",
                      info={"recipe": bind_recipe(recipe, image_set.spec).to_dict()})
    evaluation = evaluate_test_accuracy(dataset, seeds=2)
    assert evaluation["protocol"]["classifier"] == "c4,16:relu:lecun" and evaluation["mean"] > 0.1


# -- bad input: one clear line each --------------------------------------------------------------------
def _png_folder(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> Path:
    from PIL import Image

    for name, shapes in sizes.items():
        (root / name).mkdir(parents=True)
        for index, (width, height) in enumerate(shapes):
            Image.fromarray(np.full((height, width), 40 * index, np.uint8), "L").save(root / name / f"{index}.png")
    return root


def test_bad_image_sets_say_what_is_wrong(tmp_path):
    from hades.errors import FormatError
    from hades.imagesets import open_image_set

    images = np.zeros((6, 4, 4), np.uint8)
    np.savez(tmp_path / "missing.npz", images=images, labels=np.array([0, 0, 2, 2, 2, 0]),
             class_names=np.array(["a", "b", "c"]))
    with pytest.raises(FormatError, match=r"class 1 \(b\) has no training image"):
        open_image_set(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "range.npz", images=images, labels=np.array([0, 1, 2, 5, 1, 0]),
             class_names=np.array(["a", "b", "c"]))
    with pytest.raises(FormatError, match=r"labels must lie in 0\.\.2 \(3 classes\), found 0\.\.5"):
        open_image_set(str(tmp_path / "range.npz"))
    folder = _png_folder(tmp_path / "sizes", {"cat": [(8, 8), (8, 8)], "dog": [(8, 8), (9, 8)]})
    with pytest.raises(FormatError, match="images of different sizes: .*1.png is 9x8"):
        open_image_set(str(folder))
    empty = _png_folder(tmp_path / "empty", {"cat": [(8, 8)] * 3, "dog": []})
    with pytest.raises(FormatError, match="class 'dog' .* holds no images"):
        open_image_set(str(empty))


def test_cli_refuses_bad_image_sets_in_one_line(tmp_path, hades_env):
    folder = _png_folder(tmp_path / "sizes", {"cat": [(8, 8), (8, 8)], "dog": [(8, 8), (9, 8)]})
    np.savez(tmp_path / "range.npz", images=np.zeros((4, 4, 4), np.uint8), labels=np.array([0, 1, -1, 1]),
             class_names=np.array(["a", "b"]))
    for args, wanted in (((folder, "--pairs", "2"), "images of different sizes"),
                         ((tmp_path / "range.npz", "--pairs", "2"), "labels must lie in 0..1"),
                         (("digits", "--pairs", "4"), "--pairs must be at least 10"),
                         (("digits", "--pairs", "10", "--backend", "mjx"), "--backend does not apply")):
        result = run_cli("distill", *args, "--preset", "cpu", "--dry-run", env=hades_env, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and wanted in lines[0], result.stderr


def test_cli_plans_an_image_run(tmp_path, hades_env):
    result = run_cli("distill", "digits", "--pairs", "20", "--preset", "cpu", "--arch", "c4,16:relu:lecun",
                     "--population", "16", "--dry-run", "--json", env=hades_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["action"] == "start" and plan["config"]["env"] == "digits" and plan["config"]["population_size"] == 16
    assert plan["config"]["recipe"]["arch"]["conv"] == [4] and plan["config"]["recipe"]["arch"]["image_shape"] == [8, 8, 1]
    assert plan["config"]["init_from"] is not None  # the class means


def test_folder_and_npz_sets_are_read(tmp_path):
    from hades.imagesets import open_image_set

    folder = _png_folder(tmp_path / "set", {name: [(6, 5)] * 5 for name in ("ant", "bee")})
    image_set = open_image_set(str(folder))
    assert image_set.name == "images-5x6x1-2classes" and image_set.class_names == ("ant", "bee")
    assert len(image_set.train_labels) + len(image_set.test_labels) == 10 and image_set.train_images.max() <= 1.0
    np.savez(tmp_path / "set.npz", images=np.ones((4, 3, 3, 3), np.float32), labels=np.array([0, 1, 0, 1]),
             test_images=np.ones((2, 3, 3, 3), np.float32), test_labels=np.array([1, 0]))
    image_set = open_image_set(str(tmp_path / "set.npz"))
    assert image_set.name == "images-3x3x3-2classes" and image_set.test_split == "test_images of the file"


def test_mnist_from_a_local_copy_of_the_idx_files(tmp_path, monkeypatch):
    import gzip

    from hades.errors import NotFoundError
    from hades.imagesets import open_image_set

    monkeypatch.setenv("HADES_MNIST_DIR", str(tmp_path / "absent"))
    with pytest.raises(NotFoundError, match="mnist is not on this machine"):
        open_image_set("mnist")
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, count in (("train", 20), ("t10k", 10)):
        header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (count, 28, 28))
        pixels = np.random.default_rng(count).integers(0, 256, (count, 28, 28), np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + pixels.tobytes()))
        labels = bytes([0, 0, 8, 1]) + count.to_bytes(4, "big") + bytes(np.arange(count, dtype=np.uint8) % 10)
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    monkeypatch.setenv("HADES_MNIST_DIR", str(folder))
    image_set = open_image_set("MNIST")
    assert image_set.train_images.shape == (20, 28, 28, 1) and image_set.test_labels.tolist() == list(range(10))
    assert image_set.spec.obs_dim == 784 and image_set.train_images.max() <= 1.0


# -- the Debian package's Fashion-MNIST, and the published result files ---------------------------------
@pytest.mark.fashion
@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST is not installed ({FASHION_DIR}: "
                    "apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_from_the_debian_package():
    from hades.imagesets import open_image_set

    image_set = open_image_set("fashion-mnist")
    assert image_set.train_images.shape == (60000, 28, 28, 1) and image_set.test_images.shape == (10000, 28, 28, 1)
    assert image_set.class_names[0] == "T-shirt/top" and image_set.test_split == "the official test set"
    assert 0.0 == image_set.train_images.min() and image_set.train_images.max() == 1.0
    assert np.bincount(image_set.test_labels).tolist() == [1000] * 10


@pytest.mark.reference
def test_converted_mnist_pickle_loads(reference_dir, tmp_path):
    from hades.convert import convert
    from hades.dataset import Dataset

    pickle = reference_dir / "iclr2024-results" / "mnist" / "MNIST" / "D10" / "seed0" / "data_final.pkl"
    conversion, target = convert(pickle, tmp_path / "mnist")
    dataset = Dataset.load(target)
    assert conversion.run_name == "mnist-D10-seed0" and dataset.env == "mnist"
    assert dataset.states.shape == (10, 784) and dataset.actions.tolist() == list(range(10))
    recipe = dataset.recipe
    assert recipe.arch.conv == (16,) and recipe.arch.hidden == (128,) and recipe.arch.image_shape == (28, 28, 1)
    assert (recipe.optimizer, recipe.lr, recipe.steps) == ("sgd", pytest.approx(0.01), 1000)
    method = dataset.info["method"]
    assert method["generations"] == 1000 and method["final_train_accuracy"] == pytest.approx(0.8963, abs=1e-4)
    assert dataset.info["images"]["image_shape"] == [28, 28, 1] and "Lupu" in dataset.info["citation"]
    assert -1.0 < dataset.states.min() and dataset.states.max() < 2.0
