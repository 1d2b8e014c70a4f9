"""A whole supervised distillation run as one call: :func:`distill_images`.

The image counterpart of :func:`hades.distill`: the same runner (chunks, checkpoints, resume,
progress, validation), then the test-set accuracy of fresh inits as the final evaluation, and the
output folder with a card that records the image set, its classes and image shape, the classifier
recipe and the evaluation protocol, and ``states.png``: every synthetic image with its label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from hades.dataset import Dataset
from hades.distillation import fixed_labels
from hades.errors import FormatError
from hades.imagetask import ImageDistillConfig, evaluate_test_accuracy
from hades.policy import format_arch

TILE_PIXELS = 112  # the longer side of an image in states.png


def class_mean_start(config: ImageDistillConfig) -> Dataset:
    """Where the published runs started the ES mean (their init mode ``mean``): each synthetic image is
    the mean training image of its class (the held-out split left out). Deterministic, so a resumed
    run finds the same dataset again (``config.init_from`` is its sha256)."""
    image_set = config.image_set()
    rest, _ = config.split()
    images, labels = image_set.train_images[rest], image_set.train_labels[rest]
    layout = fixed_labels(config)
    if config.learned_labels:  # every image gets a label; the ones left over cycle through the classes
        layout = np.where(layout >= 0, layout, np.arange(config.pairs) % image_set.classes)
    layout = layout[layout >= 0]
    missing = sorted(set(range(image_set.classes)) - set(np.unique(labels).tolist()))
    if missing:
        raise FormatError(f"class {missing[0]} ({image_set.class_names[missing[0]]}) has no training image outside "
                          "the held-out split: give a smaller holdout")
    means = np.stack([images[labels == label].mean(0) for label in range(image_set.classes)])
    states = means[layout].reshape(len(layout), -1)
    info = {"name": f"{config.env}: class means", "license": "apache-2.0",
            "description": "The mean training image of each class (the held-out split left out).",
            "images": image_set.card_info(), "recipe": config.recipe.to_dict()}
    return Dataset(states, layout, config.env, "none", info=info)


def card_info(config: ImageDistillConfig, dataset: Dataset, evaluation: dict | None) -> dict:
    """What a distilled image dataset's card says beyond the runner's: the image set, the classifier, the scores."""
    image_set = config.image_set()
    recipe = config.recipe
    height, width, channels = image_set.shape
    optimiser = f"{recipe.optimizer} lr {recipe.lr:g}" + (f", momentum {recipe.momentum:g}" if recipe.momentum else "")
    per_class = "labels evolved with the images" if config.learned_labels else \
        f"{config.pairs // image_set.classes} per class, fixed labels"
    text = (f"Supervised dataset distillation: {dataset.pairs} synthetic {height}x{width}x{channels} images ({per_class}) "
            f"for {image_set.description}, {image_set.classes} classes ({', '.join(image_set.class_names)}). Evolved with "
            f"HaDES ({config.method}, {config.strategy}): every candidate trained fresh classifiers "
            f"({format_arch(recipe.arch)}, {optimiser}, {recipe.steps} full-batch steps on the cross-entropy) and "
            f"was scored by their {config.fitness} on {config.holdout} training images held out "
            f"(a fixed permutation, seed {config.split_seed}). The states are the flattened images "
            "(height, width, channels order), pixels in [0, 1]; the actions are their labels.")
    if evaluation:
        text += " " + evaluation["summary"]
    images = {**image_set.card_info(), "holdout": {"images": config.holdout, "seed": config.split_seed},
              "fitness": config.fitness}
    return {"images": images, "name": f"{config.env}: {dataset.pairs} synthetic images", "description": text}


def render_images(dataset: Dataset, path: str | Path, columns: int | None = None) -> Path:
    """Every synthetic image of ``dataset`` in one PNG grid, each tile captioned with its label (and class)."""
    from PIL import Image

    from hades.pictures import compose_grid, save_png

    spec = dataset.env_spec
    height, width, channels = spec.obs_shape
    scale = max(1, TILE_PIXELS // max(height, width))
    names = (dataset.info.get("images") or {}).get("classes") or []
    tiles, captions = [], []
    for index, (state, label) in enumerate(zip(dataset.states, dataset.actions)):
        pixels = np.clip(state.reshape(height, width, channels), 0.0, 1.0)
        pixels = np.repeat(pixels, 3, -1) if channels == 1 else pixels[..., :3]
        if pixels.shape[-1] < 3:
            pixels = np.concatenate([pixels, np.zeros((height, width, 3 - pixels.shape[-1]))], -1)
        image = Image.fromarray((pixels * 255).round().astype(np.uint8), "RGB")
        tiles.append(np.asarray(image.resize((width * scale, height * scale), Image.NEAREST)))
        name = f" {names[int(label)]}" if int(label) < len(names) and names[int(label)] != str(int(label)) else ""
        captions.append((f"#{index}", f"label {int(label)}{name}"))
    title = [f"{spec.name}: {dataset.pairs} synthetic {height}x{width}x{channels} images, labels below each",
             "pixels shown clipped to [0, 1]"]
    return save_png(compose_grid(tiles, captions, title, columns, []), Path(path))


def distill_images(config: ImageDistillConfig, out: str | Path, *, resume: bool = False, checkpoint_every: int = 10,
                   num_devices: int | None = None, final_seeds: int = 8, start: Dataset | None = None,
                   start_source: str | None = None, validation=None, on_progress: Callable | None = None,
                   on_stage: Callable[[str], None] | None = None):
    """Distil synthetic images with ``config`` into ``out``; the arguments are :func:`hades.distill`'s.

    ``start``: the dataset the ES mean begins at (``config.init_from`` is its sha256), e.g.
    :func:`class_mean_start`; ``final_seeds`` fresh inits score the result on the test set (0 skips it).
    Returns a :class:`hades.api.DistillResult` whose ``evaluation`` is the test accuracy.
    """
    from hades.api import STAGE_EVALUATE, STAGE_WRITE, DistillResult
    from hades.multihost import configure_devices

    configure_devices(num_devices)  # a no-op once jax is imported
    from hades.runner import Distiller

    stage = on_stage or (lambda name: None)
    distiller = Distiller(config, out, checkpoint_every, num_devices, start=start, start_source=start_source,
                          validation=validation)
    dataset = distiller.run(resume=resume, on_progress=on_progress)
    evaluation = None
    if final_seeds:
        stage(STAGE_EVALUATE)
        evaluation = evaluate_test_accuracy(dataset, final_seeds, config.recipe, image_set=config.image_set())
    dataset = dataset.replace(info={**dataset.info, **card_info(config, dataset, evaluation),
                                    **({"evaluation": evaluation} if evaluation else {})})
    stage(STAGE_WRITE)
    distiller.write_outputs(dataset)
    method = dataset.info.get("method") or {}
    return DistillResult(dataset, distiller.out, evaluation, method.get("selected"), method["generations"],
                         method["env_steps"])
