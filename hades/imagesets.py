"""Labelled image sets, the tasks of supervised dataset distillation.

A name says where the images come from:

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, 16 grey levels);
  a fixed fifth of each class (seed 0) is the test set.
* ``fashion-mnist``: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``, or the folder ``HADES_FASHION_MNIST_DIR`` names).
* ``mnist``: MNIST in the same IDX layout, from ``HADES_MNIST_DIR`` or ``/usr/share/datasets/mnist``.
* a folder of class-named subfolders of images (or ``train/`` and ``test/`` folders of them),
* an ``.npz`` file with ``images`` and ``labels`` (optional ``test_images``, ``test_labels``,
  ``class_names``),
* ``hf://ORG/NAME``: a ``datasets`` Hub dataset with an image and a class-label column (online).

A set without its own test split gets a fixed one: a fifth of each class's images, seed 0.
Pixels become float32 in [0, 1] (8-bit values / 255); labels are int32 ``0..classes-1``. The environment name of
a set (what a distilled dataset's card records) is the set's own name for the built-in ones and
``images-HxWxC-Kclasses`` for the others; :func:`image_spec` resolves both without reading data.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hades.envs import EnvSpec
from hades.errors import FormatError, NotFoundError, SpecError

BUILTIN_SETS = {"digits": ((8, 8, 1), 10), "mnist": ((28, 28, 1), 10), "fashion-mnist": ((28, 28, 1), 10)}
_ALIASES = {"fashionmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist"}
_GENERIC = re.compile(r"^images-(\d+)x(\d+)x(\d+)-(\d+)classes$")
IDX_DIRS = {"fashion-mnist": ("HADES_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"),
            "mnist": ("HADES_MNIST_DIR", "/usr/share/datasets/mnist")}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
TEST_FRACTION = 0.2  # of a set without a test split of its own
TEST_SPLIT_SEED = 0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
BACKEND = "classification"  # what an image task's EnvSpec names as its backend


def builtin_name(name: str) -> str | None:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in BUILTIN_SETS else None


def spec_name(shape: tuple[int, int, int], classes: int) -> str:
    height, width, channels = shape
    return f"images-{height}x{width}x{channels}-{classes}classes"


def make_spec(name: str, shape: tuple[int, int, int], classes: int) -> EnvSpec:
    return EnvSpec(name, "images", int(np.prod(shape)), classes, "discrete", 1, obs_shape=tuple(shape),
                   default_backend=BACKEND)


def image_spec(name: str) -> EnvSpec | None:
    """The EnvSpec of an image task name (``digits``, ``images-28x28x1-10classes``), or None."""
    builtin = builtin_name(name)
    if builtin is not None:
        return make_spec(builtin, *BUILTIN_SETS[builtin])
    match = _GENERIC.match(str(name).strip().lower())
    if match:
        height, width, channels, classes = (int(group) for group in match.groups())
        if min(height, width, channels) >= 1 and classes >= 2:
            return make_spec(spec_name((height, width, channels), classes), (height, width, channels), classes)
    return None


def is_image_source(text: str) -> bool:
    """Whether ``text`` names an image set rather than an environment (a path, an npz, hf://, a built-in set)."""
    from hades.envs import ENVS

    text = str(text)
    if text.lower() in {name.lower() for name in ENVS}:
        return False
    return (builtin_name(text) is not None or _GENERIC.match(text.lower()) is not None or text.startswith("hf://")
            or text.lower().endswith(".npz") or "/" in text or os.sep in text or Path(text).is_dir())


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Train and test images float32 [N, H, W, C] in [0, 1], int32 labels, class names, and where they came from."""

    name: str  # the environment name datasets distilled from it record
    source: str  # what the user named
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    description: str
    test_split: str  # how the test set was made
    license: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    @property
    def classes(self) -> int:
        return len(self.class_names)

    @property
    def spec(self) -> EnvSpec:
        return make_spec(self.name, self.shape, self.classes)

    def holdout_split(self, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices (rest, held out) of the training images: ``size`` held out, a fixed permutation by ``seed``."""
        count = len(self.train_labels)
        if not 1 <= size < count:
            raise SpecError(f"the held-out split must hold 1 to {count - 1} of the {count} training images, got {size}")
        order = np.random.default_rng(seed).permutation(count)
        return np.sort(order[size:]), np.sort(order[:size])

    def card_info(self) -> dict:
        return {"source": self.source, "description": self.description, "classes": list(self.class_names),
                "image_shape": list(self.shape), "pixels": "float32 in [0, 1]",
                "train_images": int(len(self.train_labels)), "test_images": int(len(self.test_labels)),
                "test_split": self.test_split, "data_license": self.license}


def open_image_set(source: str) -> ImageSet:
    """Load the image set ``source`` names (see the module doc); bad input raises a :mod:`hades.errors` class."""
    builtin = builtin_name(source)
    if builtin is None and _GENERIC.match(str(source).lower()):
        raise SpecError(f"{source} names only the shape of an image set; name the folder or file the images are in")
    if builtin in IDX_DIRS:  # the folder is part of the key: another folder is another set
        variable, default = IDX_DIRS[builtin]
        return _open_cached(builtin, os.environ.get(variable) or default)
    return _open_cached(builtin or _resolve(source))


def _resolve(source: str) -> str:
    if str(source).startswith("hf://"):
        return str(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise NotFoundError(f"no image set at {source}: give a folder of class folders, an .npz file, "
                            f"hf://ORG/NAME or one of {', '.join(BUILTIN_SETS)}")
    return str(path.resolve())


@functools.lru_cache(maxsize=4)
def _open_cached(source: str, folder: str | None = None) -> ImageSet:
    if source == "digits":
        images, labels, names = _digits()
        return split_off_test(source, source, images, labels, names, "scikit-learn's bundled 8x8 digits "
                                "(load_digits: 1797 images, pixel values 0-16, scaled to [0, 1])", "BSD-3-Clause")
    if source in IDX_DIRS:
        return _idx_set(source, Path(folder))
    if source.startswith("hf://"):
        from hades.imagehub import hub_image_set

        return _checked(hub_image_set(source[len("hf://"):]))
    path = Path(source)
    if path.is_dir():
        return _folder_set(path)
    if path.suffix.lower() == ".npz":
        return _npz_set(path)
    raise FormatError(f"{source} is neither a folder of class folders nor an .npz file")


def _digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise NotFoundError("the digits image set comes with scikit-learn: pip install scikit-learn") from None
    data = load_digits()
    return (data.images[..., None] / 16.0).astype(np.float32), data.target.astype(np.int32), \
        tuple(str(name) for name in data.target_names)


def split_off_test(name: str, source: str, images, labels, names, description: str, license: str | None = None):
    """A set whose test split is a fixed fifth of each class's images (seed 0); a class of one image keeps it."""
    _check_labels(source, "", labels, len(names))
    rng = np.random.default_rng(TEST_SPLIT_SEED)
    test = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        share = max(1, int(round(TEST_FRACTION * len(members)))) if len(members) > 1 else 0
        test.extend(rng.permutation(members)[:share])
    test = np.sort(np.asarray(test, np.int64))
    train = np.setdiff1d(np.arange(len(labels)), test)
    if len(test) == 0:
        raise FormatError(f"{source} holds {len(labels)} image(s): too few to split off a test set")
    split = f"a fixed {TEST_FRACTION:.0%} of each class's images (seed {TEST_SPLIT_SEED}), {len(test)} images"
    return _checked(ImageSet(name, source, images[train], labels[train], images[test], labels[test], tuple(names),
                             description, split, license))


def _checked(image_set: ImageSet) -> ImageSet:
    """Every class has training images, labels lie in range, images are finite; arrays become read-only."""
    source, classes = image_set.source, image_set.classes
    for split, images, labels in (("training", image_set.train_images, image_set.train_labels),
                                  ("test", image_set.test_images, image_set.test_labels)):
        if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
            raise FormatError(f"{source}: the {split} split has images of shape {list(images.shape)} and "
                              f"{len(labels)} labels; it needs [N, height, width, channels] and one label per image")
        _check_labels(source, f"{split} ", labels, classes)
        if not np.isfinite(images).all():
            raise FormatError(f"{source}: the {split} images hold NaN or infinite values")
    if image_set.test_images.shape[1:] != image_set.train_images.shape[1:]:
        raise FormatError(f"{source}: test images are {list(image_set.test_images.shape[1:])}, training images "
                          f"{list(image_set.train_images.shape[1:])}; all images must have one size")
    missing = sorted(set(range(classes)) - set(np.unique(image_set.train_labels).tolist()))
    if missing:
        names = ", ".join(f"{index} ({image_set.class_names[index]})" for index in missing)
        raise FormatError(f"{source}: class {names} has no training image; every class needs at least one")
    for array in (image_set.train_images, image_set.train_labels, image_set.test_images, image_set.test_labels):
        array.setflags(write=False)
    return image_set


def _check_labels(source: str, split: str, labels: np.ndarray, classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise FormatError(f"{source}: {split}labels must lie in 0..{classes - 1} ({classes} classes), "
                          f"found {int(labels.min())}..{int(labels.max())}")


# -- IDX files (MNIST, Fashion-MNIST) ------------------------------------------------------------------
def _idx_set(name: str, folder: Path) -> ImageSet:
    variable, _ = IDX_DIRS[name]
    package = "dataset-fashion-mnist" if name == "fashion-mnist" else None
    if not folder.is_dir():
        how = f"install the Debian package {package} (apt-get install {package})" if package else \
            "put train-images-idx3-ubyte.gz and its three sibling files there"
        raise NotFoundError(f"{name} is not on this machine: no folder {folder}; {how}, or set {variable} to a "
                            "folder holding the four IDX files")
    arrays = [_read_idx(folder, f"{prefix}-{kind}") for prefix in ("train", "t10k")
              for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    images = [(array[..., None] / 255.0).astype(np.float32) for array in arrays[0::2]]
    labels = [array.astype(np.int32) for array in arrays[1::2]]
    names = FASHION_CLASSES if name == "fashion-mnist" else tuple(str(digit) for digit in range(10))
    title = "Fashion-MNIST (Zalando Research)" if name == "fashion-mnist" else "MNIST"
    return _checked(ImageSet(name, name, images[0], labels[0], images[1], labels[1], names,
                             f"{title}, 28x28 grey levels scaled to [0, 1], from {folder}", "the official test set",
                             "MIT" if name == "fashion-mnist" else None))


def _read_idx(folder: Path, stem: str) -> np.ndarray:
    for path in (folder / f"{stem}.gz", folder / stem):
        if path.is_file():
            break
    else:
        raise NotFoundError(f"{folder} holds no {stem}.gz (nor {stem}); it needs the four MNIST-layout IDX files")
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 8:
        raise FormatError(f"{path} is not an IDX file of bytes")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise FormatError(f"{path} is truncated: its header says {list(shape)}, it holds {body.size} values")
    return body.reshape(shape)


# -- folders and npz files -----------------------------------------------------------------------------
def _folder_set(root: Path) -> ImageSet:
    if (root / "train").is_dir() and (root / "test").is_dir():
        names, train_images, train_labels = _read_class_folders(root / "train")
        _, test_images, test_labels = _read_class_folders(root / "test", names)
        if test_images.shape[1:] != train_images.shape[1:]:
            raise FormatError(f"{root}: test images are {_size(test_images)}, training images {_size(train_images)}; "
                              "all images must have one size")
        return _checked(ImageSet(spec_name(train_images.shape[1:], len(names)), str(root), train_images,
                                 train_labels, test_images, test_labels, names, f"the images of {root}",
                                 f"the images of {root / 'test'}"))
    names, images, labels = _read_class_folders(root)
    return split_off_test(spec_name(images.shape[1:], len(names)), str(root), images, labels, names,
                            f"the images of {root}")


def _read_class_folders(root: Path, names: tuple[str, ...] | None = None):
    """(class names, images [N, H, W, C], labels) from ``root/CLASS/*.png``; classes in name order."""
    from PIL import Image

    folders = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not folders:
        raise FormatError(f"{root} holds no class folders: put each class's images in a subfolder named after it")
    found = tuple(folder.name for folder in folders)
    if names is not None and set(found) - set(names):
        raise FormatError(f"{root} has class folder(s) {', '.join(sorted(set(found) - set(names)))} that the "
                          "training images do not have")
    names = names or found
    pictures, labels = [], []
    for folder in folders:
        files = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FormatError(f"class {folder.name!r} ({folder}) holds no images; every class needs at least one")
        for path in files:
            try:
                with Image.open(path) as image:
                    pictures.append((str(path), pil_pixels(image)))
            except OSError as exc:
                raise FormatError(f"{path} is not a readable image ({exc})") from None
            labels.append(names.index(folder.name))
    return names, stack_pictures(pictures), np.asarray(labels, np.int32)


def pil_pixels(image) -> np.ndarray:
    """A PIL image as float32 [H, W, C] in [0, 1]: one channel for grey levels, three for colour."""
    grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
    pixels = np.asarray(image.convert("L" if grey else "RGB"), np.float32) / 255.0
    return pixels[..., None] if pixels.ndim == 2 else pixels


def stack_pictures(pictures: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """[N, H, W, C] from (name, pixels) pairs of one size; grey images join colour ones as three equal channels."""
    first_name, first = pictures[0]
    for name, pixels in pictures:
        if pixels.shape[:2] != first.shape[:2]:
            raise FormatError(f"images of different sizes: {name} is {_size(pixels[None])}, {first_name} is "
                              f"{_size(first[None])}; all images must have one size")
    channels = max(pixels.shape[-1] for _, pixels in pictures)
    return np.stack([np.repeat(pixels, channels // pixels.shape[-1], -1) for _, pixels in pictures]).astype(np.float32)


def _size(images: np.ndarray) -> str:
    return f"{images.shape[2]}x{images.shape[1]}"  # width x height, as image tools say it


def _npz_set(path: Path) -> ImageSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path} is not a readable .npz file ({exc})") from None
    for key in ("images", "labels"):
        if key not in arrays:
            raise FormatError(f"{path} has no {key!r} array; an image set .npz holds 'images' and 'labels' "
                              "(and optionally 'test_images', 'test_labels', 'class_names')")
    train_images, train_labels = _npz_pair(path, arrays, "images", "labels")
    names = arrays.get("class_names")
    if names is not None:
        names = tuple(str(name) for name in np.asarray(names).reshape(-1))
    else:
        names = tuple(str(index) for index in range(int(train_labels.max(initial=-1)) + 1))
    if "test_images" in arrays:
        test_images, test_labels = _npz_pair(path, arrays, "test_images", "test_labels")
        if test_images.shape[1:] != train_images.shape[1:]:
            raise FormatError(f"{path}: test images are {_size(test_images)}, training images {_size(train_images)}; "
                              "all images must have one size")
        return _checked(ImageSet(spec_name(train_images.shape[1:], len(names)), str(path), train_images, train_labels,
                                 test_images, test_labels, names, f"the images of {path}", "test_images of the file"))
    return split_off_test(spec_name(train_images.shape[1:], len(names)), str(path), train_images, train_labels,
                            names, f"the images of {path}")


def _npz_pair(path: Path, arrays: dict, images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = arrays[images_key], arrays.get(labels_key)
    if labels is None:
        raise FormatError(f"{path} has {images_key!r} but no {labels_key!r}")
    if images.dtype == object or images.ndim not in (3, 4):
        raise FormatError(f"{path}: {images_key} must be one array [N, height, width(, channels)] (images of one "
                          f"size), got {images.dtype} of shape {list(images.shape)}")
    if labels.dtype.kind not in "iu" or labels.shape != images.shape[:1]:
        raise FormatError(f"{path}: {labels_key} must be integers, one per image; got {labels.dtype} "
                          f"{list(labels.shape)} for {len(images)} images")
    images = images[..., None] if images.ndim == 3 else images
    if images.dtype == np.uint8:
        images = images / 255.0
    elif images.dtype.kind != "f":
        raise FormatError(f"{path}: {images_key} must be uint8 (0-255) or floats in [0, 1], got {images.dtype}")
    return images.astype(np.float32), labels.astype(np.int64).astype(np.int32)
