"""The supervised runs of the original code (``distill_dataset.py``: MNIST, FashionMNIST) as format v1.

Those runs evolved ``{"images": [D, 1, 28, 28, 1]}`` (a CNN's input layout; flat ``[D, 784]`` for
an MLP) from the class-mean images, pixels scaled to [0, 1] (``NORMALIZE``), with fixed labels,
``D // classes`` per class in order. Their classifier: a 3x3 conv of 16 feature maps, relu, a dense
layer of ``WIDTH`` (128), relu, the class logits; trained by SGD (``LR`` 0.1, no momentum) for
``UPDATE_EPOCHS`` (1000) full-batch steps on the cross-entropy averaged over images *and classes*,
the same updates as lr ``LR / classes`` on the usual per-image mean. A candidate's fitness was
that loss on all 60000 training images (lower is better); the run also kept the last generation's
mean training accuracy. Read by :func:`hades.convert.convert_pickle`, which hands such files over.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hades.convert import (CITATION, LICENSE, LICENSE_NOTICE, SOURCE_REPOSITORY, Conversion, _float_or_none,
                           _int_or_none, _method)
from hades.dataset import Dataset
from hades.errors import FormatError
from hades.imagesets import BUILTIN_SETS, FASHION_CLASSES, make_spec, spec_name
from hades.learn import Recipe
from hades.policy import PolicySpec

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The original DATASET names: (hades image set, image shape, class names).
IMAGE_SETS = {
    "MNIST": ("mnist", BUILTIN_SETS["mnist"][0], tuple(str(digit) for digit in range(10))),
    "FashionMNIST": ("fashion-mnist", BUILTIN_SETS["fashion-mnist"][0], FASHION_CLASSES),
    "CIFAR-10": (spec_name((32, 32, 3), 10), (32, 32, 3), CIFAR_CLASSES),
}


def convert_image_run(source: str, content: dict, config: dict, es_config: dict, state,
                      source_sha: str) -> Conversion:
    """A :class:`~hades.convert.Conversion` of one supervised result pickle (already read safely)."""
    from hades.provenance import provenance

    name, shape, classes = _image_set(source, config)
    if es_config.get("learn_labels"):
        raise FormatError(f"{source}: the run learned its labels (learn_labels), which hades cannot read yet")
    if not config.get("NORMALIZE"):
        raise FormatError(f"{source}: the run kept pixels in 0..255 (NORMALIZE off); hades image sets are in [0, 1]")
    if float(config.get("DATA_NOISE") or 0.0):
        raise FormatError(f"{source}: the run added noise to the images at every training step (DATA_NOISE), "
                          "which a hades recipe cannot express")
    mean = state.fields["mean"]
    per_image = int(np.prod(shape))
    if mean.dtype.kind != "f" or mean.ndim != 1 or mean.size % per_image:
        raise FormatError(f"{source}: the ES mean is {mean.dtype} of shape {list(mean.shape)}, not a whole number of "
                          f"{'x'.join(map(str, shape))} images")
    count = mean.size // per_image
    per_class = count // len(classes)
    if per_class < 1:
        raise FormatError(f"{source}: {count} images are too few to give each of {len(classes)} classes one")
    labels = np.repeat(np.arange(len(classes), dtype=np.int32), per_class)
    states = mean.reshape(count, per_image)[: labels.size]
    method = _method(content, config, es_config, state)
    recorded = _float_or_none(content.get(f"{config['DATASET']}:train_accuracy"))
    method.update(
        final_fitness_note=("the population's mean training loss in the last generation (cross-entropy averaged "
                            "over images and classes, on all training images; lower is better), as the run recorded it"),
        final_train_accuracy=recorded,
        final_train_accuracy_note="the population's mean accuracy on the training images in the last generation")
    seed = _int_or_none(config.get("SEED"))
    recipe = _recipe(source, config, shape, len(classes))
    info = {
        "backend": make_spec(name, shape, len(classes)).default_backend,
        "name": f"{name} {labels.size} images ({method['name']}, ICLR 2024 result, seed {seed})",
        "description": (
            f"Supervised dataset distillation: {labels.size} synthetic {'x'.join(map(str, shape))} images of "
            f"{config['DATASET']}, {per_class} per class, converted by `hades convert` from the result file of run "
            f"`{method['run'] or source}` published by the authors of Behaviour Distillation (Lupu et al., ICLR 2024) "
            f"in {SOURCE_REPOSITORY} under the Apache-2.0 license. The run's last generation had a mean training "
            f"accuracy of {_percent(recorded)}; its classifier is the recipe below (SGD lr {recipe.lr:g}, the "
            f"original {config.get('LR')} on a loss averaged over the {len(classes)} classes too)."),
        "license": LICENSE, "license_notice": LICENSE_NOTICE, "citation": CITATION,
        "original": {"repository": SOURCE_REPOSITORY, "path": method["run"] and f"{method['run']}/data_final.pkl",
                     "sha256": source_sha},
        "method": method,
        "recipe": recipe.to_dict(),
        "images": {"source": name, "classes": list(classes), "image_shape": list(shape), "pixels": "float32 in [0, 1]"},
        "provenance": provenance(seed, source=source, converted_by="hades convert",
                                 sha256_of_source=source_sha, source_repository=SOURCE_REPOSITORY),
    }
    try:
        dataset = Dataset(states, labels, name, "none", info=info)
    except FormatError as exc:
        raise type(exc)(f"{source}: {exc}") from None
    run_name = f"{name}-D{count}" + ("-hades-f" if method["name"] == "hades-f" else "") + (
        f"-seed{seed}" if seed is not None else "")
    return Conversion(dataset, run_name, source_sha)


def _image_set(source: str, config: dict) -> tuple[str, tuple[int, int, int], tuple[str, ...]]:
    known = IMAGE_SETS.get(str(config.get("DATASET")))
    if known is None:
        raise FormatError(f"{source}: its DATASET {config.get('DATASET')!r} is none of {', '.join(IMAGE_SETS)}")
    return known


def _recipe(source: str, config: dict, shape: tuple[int, int, int], classes: int) -> Recipe:
    try:
        width, activation, net = int(config["WIDTH"]), str(config["ACTIVATION"]), str(config["NET"]).lower()
        if net == "cnn":
            arch = PolicySpec((width,), activation, "lecun", conv=(16,), image_shape=shape)
        elif net == "mlp":
            arch = PolicySpec((width, width), activation, "lecun")
        else:
            raise ValueError(f"network {config['NET']!r} is neither CNN nor MLP")
        # ANNEAL_LR's schedule, LR * (1 - step // UPDATE_EPOCHS), stays at LR for every step of the run.
        return Recipe(arch, "cross_entropy", float(config["LR"]) / classes, int(config["UPDATE_EPOCHS"]), None,
                      optimizer="sgd", momentum=float(config.get("MOMENTUM") or 0.0))
    except KeyError as exc:
        raise FormatError(f"{source}: its config has no {exc.args[0]}, needed for the training recipe") from None
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{source}: its config gives a training recipe hades cannot express ({exc})") from None


def _percent(value: Any) -> str:
    return "unrecorded" if value is None else f"{value:.1%}"
