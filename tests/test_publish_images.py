"""Image datasets in the catalogue: publish scores them by test accuracy, train-from classifies, listings say so."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from hades.errors import NotFoundError
from hades.publish import publish
from hades.registry import find_entry, load_catalogue


def digits_source(tmp_path: Path) -> Path:
    """The class means of the digits set with a tiny MLP recipe: a dataset folder that trains in seconds."""
    from hades.imagedistill import class_mean_start
    from hades.imagetask import image_preset
    from hades.policy import parse_arch

    config = image_preset("cpu", "digits", 10, population_size=8, num_generations=1, num_inits=1, holdout=200)
    recipe = dataclasses.replace(config.recipe, arch=parse_arch("32:relu"), steps=30)
    start = class_mean_start(dataclasses.replace(config, recipe=recipe))
    dataset = start.replace(info={**start.info, "recipe": recipe.to_dict(), "method": {"name": "hades-r"}})
    folder = tmp_path / "digits-means"
    dataset.save(folder)
    return folder


def fake_mnist_source(tmp_path: Path) -> Path:
    """An mnist dataset (10 blank images): its image set is not on this machine."""
    import numpy as np

    from hades.dataset import Dataset
    from hades.learn import Recipe
    from hades.policy import parse_arch

    recipe = Recipe(arch=parse_arch("16:relu"), loss="cross_entropy", lr=0.01, steps=5)
    dataset = Dataset(np.zeros((10, 784), np.float32), np.arange(10), "mnist", "none",
                      info={"recipe": recipe.to_dict(), "method": {"name": "hades-r"}})
    folder = tmp_path / "mnist-blank"
    dataset.save(folder)
    return folder


def test_an_image_dataset_is_published_with_its_test_accuracy(tmp_path, hades_env):
    from hades.imagetask import evaluate_test_accuracy

    catalogue = tmp_path / "catalogue"
    result = publish(digits_source(tmp_path), "digits-means", "1.0", seeds=2, transfer=("16:relu",),
                     catalogue=catalogue)
    evaluation = result.evaluation
    assert evaluation["metric"] == "test_accuracy" and len(evaluation["accuracies"]) == 2
    assert evaluation["mean"] > 0.5  # class means alone classify digits well above chance (10%)
    assert evaluation["accuracies"] == evaluate_test_accuracy(result.dataset, 2)["accuracies"]
    assert [row["arch"] for row in result.architectures] == ["16:relu:orthogonal"]
    entry = find_entry("digits-means", entries=load_catalogue(catalogue))
    assert entry.evaluation.metric == "test_accuracy" and entry.evaluation.mean == pytest.approx(evaluation["mean"])
    assert str(entry.evaluation).endswith("%") and "test accuracy" in entry.evaluation.protocol
    card = (result.folder / "README.md").read_text()
    assert "mean test accuracy" in card and "image set | `digits`" in card and "mean return" not in card
    assert "paper_comparison" not in result.dataset.info


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """The CLI in this process: (exit code, stdout, stderr)."""
    from hades.cli import main

    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_from_an_image_dataset_prints_test_accuracy(tmp_path, hades_env, capsys):
    source = digits_source(tmp_path)
    code, out, err = run_main(["train-from", str(source), "--seeds", "2", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["metric"] == "test_accuracy" and len(report["accuracies"]) == 2 and report["mean"] > 0.5
    assert report["dataset"]["pairs"] == 10 and report["env"] == "digits"
    code, out, err = run_main(["train-from", str(source), "--seeds", "1", "--arch", "8:relu"], capsys)
    assert code == 0 and "test accuracy" in out and "8:relu" in out, err
    for flag in (["--greedy"], ["--episodes", "2"], ["--save", str(tmp_path / "p")]):
        code, out, err = run_main(["train-from", str(source), *flag], capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1 and f"{flag[0]} does not apply to image datasets" in lines[0]
    assert not (tmp_path / "p").exists()


def test_hades_publish_reports_an_image_dataset_by_its_accuracy(tmp_path, hades_env, capsys):
    code, out, err = run_main(["publish", str(digits_source(tmp_path)), "--name", "digits-means", "--version", "1.0",
                               "--catalogue", str(tmp_path / "catalogue"), "--seeds", "2", "--transfer", "16:relu"],
                              capsys)
    assert code == 0, err
    assert "digits-means@1.0: digits, 10 images, test accuracy" in out and "(2 fresh classifiers)" in out
    assert "16:relu:orthogonal: " in out and out.count("%") >= 4


def test_an_image_set_not_on_this_machine_refuses_or_publishes_unmeasured(tmp_path, hades_env, monkeypatch):
    from hades.cli import main

    monkeypatch.setenv("HADES_MNIST_DIR", str(tmp_path / "no-mnist-here"))
    source = fake_mnist_source(tmp_path)
    catalogue = tmp_path / "catalogue"
    with pytest.raises(NotFoundError, match="mnist is not on this machine"):
        publish(source, "mnist-blank", "1.0", seeds=1, transfer=(), catalogue=catalogue)
    assert not (catalogue / "mnist-blank").exists()
    result = publish(source, "mnist-blank", "1.0", seeds=1, transfer=(), catalogue=catalogue, allow_unmeasured=True)
    assert result.evaluation["measured"] is False and "mnist is not on this machine" in result.evaluation["reason"]
    entry = find_entry("mnist-blank", entries=load_catalogue(catalogue))
    assert entry.evaluation is None
    card = (result.folder / "README.md").read_text()
    assert "Not measured" in card and "| protocol |" not in card
    monkeypatch.setenv("HADES_REGISTRY", str(catalogue))
    try:
        main(["verify", "mnist-blank@1.0"])
    except SystemExit as exc:
        assert exc.code in (0, None)


def test_the_published_image_runs_are_named_in_the_namespace(tmp_path):
    from hades.iclr2024 import find_runs

    for relative in ("mnist/FashionMNIST/D10/seed2/data_final.pkl", "mnist/MNIST/D10/seed0/data_final.pkl",
                     "brax/distill/hopper/D4/seed1/data_final.pkl"):
        (tmp_path / relative).parent.mkdir(parents=True)
        (tmp_path / relative).write_bytes(b"")
    names = sorted(run.name for run in find_runs(tmp_path))
    assert names == ["fashion-mnist-10images-hades-r-seed2", "hopper-4pairs-hades-r-seed1", "mnist-10images-hades-r-seed0"]
    image = next(run for run in find_runs(tmp_path) if run.family == "mnist" and run.env == "MNIST")
    assert (image.pairs, image.seed, image.greedy, image.sweep) == (10, 0, None, False)
