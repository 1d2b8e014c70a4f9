"""Image sets from the Hugging Face Hub: a ``datasets`` dataset with an image and a class-label column.

Only ``hf://ORG/NAME`` reaches here (:func:`hades.imagesets.open_image_set`), and only online: the
``train`` split is read, and the ``test`` split when the dataset has one.
"""

from __future__ import annotations

import os

import numpy as np

from hades.errors import FormatError, HubError


def hub_image_set(repo: str):
    """The :class:`~hades.imagesets.ImageSet` of Hub dataset ``repo`` (ORG/NAME)."""
    from hades.imagesets import ImageSet, pil_pixels, spec_name, stack_pictures, split_off_test

    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise HubError(f"hf://{repo} is on the Hub, and HF_HUB_OFFLINE is set; use a local folder or .npz")
    import datasets

    try:
        loaded = datasets.load_dataset(repo)
    except Exception as exc:  # the datasets library raises many kinds; all mean the same to the user
        raise HubError(f"could not load hf://{repo} from the Hub: {str(exc).splitlines()[0]}") from None
    if "train" not in loaded:
        raise FormatError(f"hf://{repo} has no train split (it has {', '.join(loaded)})")
    features = loaded["train"].features
    image_column = next((name for name, kind in features.items() if isinstance(kind, datasets.Image)), None)
    label_column = next((name for name, kind in features.items() if isinstance(kind, datasets.ClassLabel)), None)
    if image_column is None or label_column is None:
        raise FormatError(f"hf://{repo} needs an image column and a class-label column; its columns are "
                          f"{', '.join(features)}")
    names = tuple(features[label_column].names)

    def arrays(split):
        rows = loaded[split]
        pictures = [(f"hf://{repo} {split}[{index}]", pil_pixels(image)) for index, image in enumerate(rows[image_column])]
        return stack_pictures(pictures), np.asarray(rows[label_column], np.int32)

    images, labels = arrays("train")
    description = f"the Hub dataset {repo} (columns {image_column}, {label_column})"
    if "test" not in loaded:
        return split_off_test(spec_name(images.shape[1:], len(names)), f"hf://{repo}", images, labels, names,
                              description)
    test_images, test_labels = arrays("test")
    return ImageSet(spec_name(images.shape[1:], len(names)), f"hf://{repo}", images, labels, test_images, test_labels,
                    names, description, "the dataset's test split")
