"""Supervised dataset distillation: HaDES with an image-classification task instead of an environment.

The search space is a set of synthetic images (``pairs`` x height*width*channels) whose labels are
fixed, ``pairs // classes`` per class in order (or learned), as for MinAtar. Each candidate trains
fresh classifiers with the recipe (an MLP, or a small CNN: ``c16,128:relu:lecun``) and is scored by
their accuracy (or minus their cross-entropy) on a fixed, seeded held-out split of the training
images. A distilled dataset's final score is the test-set accuracy of fresh inits.

:class:`ImageDistillConfig` is a :class:`~hades.distillation.DistillConfig` that brings its own
fitness and validation, so the runner (jitted chunks, checkpoints, resume, progress, validation)
runs it unchanged; :func:`hades.imagedistill.distill_images` is the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hades.dataset import Dataset
from hades.distillation import DistillConfig, fixed_labels, map_candidates
from hades.errors import FormatError, SpecError
from hades.imagesets import BUILTIN_SETS, ImageSet, image_spec, open_image_set
from hades.learn import Recipe
from hades.policy import PolicySpec, format_arch

FITNESSES = ("accuracy", "loss")
SCORE_CHUNK = 1000  # held-out or test images classified at once
# The classifier of the published MNIST/FashionMNIST runs: conv 16 (3x3) then dense 128, relu; SGD on the
# cross-entropy averaged over images and classes with lr 0.1, i.e. lr 0.1 / classes on the usual mean.
PAPER_ARCH = PolicySpec((128,), "relu", "lecun", conv=(16,))
CPU_ARCH = PolicySpec((128,), "relu", "lecun")


@dataclass(frozen=True)
class ImageDistillConfig(DistillConfig):
    """A distillation run on an image set: ``env`` is the set's name (``digits``, ``images-32x32x3-10classes``).

    ``source``: where the images are when ``env`` is not a built-in set (a folder, an .npz, hf://...);
    ``holdout`` training images (a fixed permutation by ``split_seed``) score the candidates by
    ``fitness``: ``accuracy``, or ``loss`` (minus the mean cross-entropy).
    """

    normalization: str = "none"
    source: str | None = None
    holdout: int = 1000
    split_seed: int = 0
    fitness: str = "accuracy"

    def __post_init__(self):
        spec = image_spec(self.env)
        if spec is None:
            raise ValueError(f"{self.env!r} is not an image dataset")
        checks = [
            (self.normalization == "none", f"image tasks take no observation normalisation, got {self.normalization!r}"),
            (self.fitness in FITNESSES, f"fitness must be one of {', '.join(FITNESSES)}, got {self.fitness!r}"),
            (self.holdout >= 1, f"the held-out split needs at least 1 image, got {self.holdout}"),
            (self.pairs >= spec.action_dim or self.learned_labels,
             f"{spec.name} has {spec.action_dim} classes: --pairs must be at least {spec.action_dim} "
             "(one image per class)"),
            (self.source is not None or spec.name in BUILTIN_SETS,
             f"{spec.name} names only a shape; give the folder or file of the images as source"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        object.__setattr__(self, "recipe", bind_recipe(self.recipe, spec))
        super().__post_init__()

    @property
    def env_steps_per_generation(self) -> int:
        """Classifiers trained per generation: an image task has no env steps, the runner's cost counts these."""
        return self.population_size * self.inits_per_generation * len(architectures(self))

    def image_set(self) -> ImageSet:
        image_set = open_image_set(self.source or self.env)
        if image_set.name != self.env:
            raise SpecError(f"{self.source} holds {image_set.name} images, but the run distils {self.env}")
        return image_set

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices (rest, held out) of the training images."""
        return self.image_set().holdout_split(self.holdout, self.split_seed)

    # -- the hooks the runner calls (hades.distillation.make_fitness, hades.validation.make_validate) --
    def make_task_fitness(self, obs_mean=None, obs_var=None, train_batch: int | None = None):
        return make_image_fitness(self, train_batch)

    def make_task_validate(self, validation, obs_mean=None, obs_var=None):
        """``validate(images, labels) -> accuracies`` of ``validation.seeds`` fresh inits on the held-out split."""
        import jax

        image_set = self.image_set()
        _, held = self.split()
        run = make_train_and_score(self.recipe, config_spec(self), image_set.train_images[held],
                                   image_set.train_labels[held], "accuracy")
        keys = init_keys(range(validation.first_seed, validation.first_seed + validation.seeds))
        compiled = jax.jit(lambda states, labels: run(states, labels, keys))
        return lambda states, labels: np.asarray(compiled(states, labels))


def bind_recipe(recipe: Recipe, spec) -> Recipe:
    """The recipe with its conv layers bound to the task's image shape (MLPs are left as they are)."""
    arch = recipe.arch
    if not arch.conv or tuple(arch.image_shape) == tuple(spec.obs_shape):
        return recipe
    if arch.image_shape:
        raise ValueError(f"the classifier's conv layers expect {list(arch.image_shape)} images, "
                         f"{spec.name} has {list(spec.obs_shape)}")
    return replace(recipe, arch=replace(arch, image_shape=tuple(spec.obs_shape)))


def image_preset(name: str, source: str, pairs: int, **overrides: Any) -> ImageDistillConfig:
    """Named starting points for an image set (``source``: a name :func:`~hades.imagesets.open_image_set` takes).

    ``paper``: the published MNIST/FashionMNIST runs (GPU-sized): OpenES, population 512, 2 inits,
    1000 generations, sigma 0.02 and Adam lr 0.01 both decaying x0.999 per generation down to 0.001,
    raw fitness; the CNN ``c16,128:relu:lecun`` trained by SGD for 1000 steps; fitness minus the
    cross-entropy on held-out training images (the runs scored all 60000 training images; here
    10000 held out). ``cpu``: a 128 relu MLP trained by Adam (lr 0.01, 100 steps), population 64,
    100 generations, centered ranks, fitness the accuracy on 1000 held-out images.
    """
    image_set = open_image_set(source)
    available = len(image_set.train_labels) // 4
    if name == "paper":
        base = dict(population_size=512, num_generations=1000, num_inits=2, sigma=0.02, es_lr=0.01,
                    sigma_decay=0.999, sigma_floor=0.001, es_lr_decay=0.999, es_lr_floor=0.001,
                    fitness_shaping="raw", holdout=min(10_000, available), fitness="loss",
                    recipe=Recipe(PAPER_ARCH, "cross_entropy", 0.1 / image_set.classes, 1000, None, optimizer="sgd"))
    elif name == "cpu":
        base = dict(population_size=64, num_generations=100, num_inits=2, sigma=0.02, es_lr=0.01,
                    fitness_shaping="centered_rank", holdout=min(1000, available), fitness="accuracy",
                    recipe=Recipe(CPU_ARCH, "cross_entropy", 0.01, 100, None))
    else:
        raise SpecError(f"unknown preset {name!r} for image sets; choose paper or cpu")
    base.update(strategy="open_es", preset=name, source=None if image_set.name == image_set.source else image_set.source)
    try:
        return ImageDistillConfig(image_set.name, pairs, **{**base, **overrides})
    except ValueError as exc:
        raise SpecError(f"bad distillation settings: {exc}") from None


# -- the pure, jitted part ----------------------------------------------------------------------
def make_scorer(network, images: np.ndarray, labels: np.ndarray, metric: str = "accuracy"):
    """``score(params)``: accuracy (or minus the mean cross-entropy) of ``network`` on ``images``, chunk by chunk."""
    import jax
    import jax.numpy as jnp
    import optax

    count = len(labels)
    flat = np.asarray(images, np.float32).reshape(count, -1)
    size = min(SCORE_CHUNK, count)
    chunks = -(-count // size)
    pad = chunks * size - count
    x = jnp.asarray(np.concatenate([flat, np.zeros((pad, flat.shape[1]), np.float32)]).reshape(chunks, size, -1))
    y = jnp.asarray(np.concatenate([np.asarray(labels, np.int32), np.zeros(pad, np.int32)]).reshape(chunks, size))
    mask = jnp.asarray((np.arange(chunks * size) < count).reshape(chunks, size), jnp.float32)

    def score(params):
        def one(batch):
            xb, yb, mb = batch
            logits = network.apply(params, xb)
            correct = jnp.sum((jnp.argmax(logits, -1) == yb) * mb)
            return correct, jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, yb) * mb)

        correct, nll = jax.lax.map(one, (x, y, mask))
        return correct.sum() / count if metric == "accuracy" else -nll.sum() / count

    return score


def make_train_and_score(recipe: Recipe, spec, images: np.ndarray, labels: np.ndarray, metric: str = "accuracy"):
    """``run(states, labels, keys) -> scores``: one classifier per init key, trained on the synthetic pairs
    and scored on ``images`` (pure and jittable; the inits run one after another)."""
    import jax

    from hades.learn import make_train
    from hades.policy import make_network

    train = make_train(recipe, spec.obs_dim, spec.action_dim, True)
    score = make_scorer(make_network(recipe.arch, spec.action_dim, True), images, labels, metric)

    def run(states, targets, keys):
        return jax.lax.map(lambda key: score(train(key, states, targets)[0]), keys)

    return run


def candidate_pairs(config: ImageDistillConfig, candidate: dict):
    """The (images, labels) a candidate of the ES trains on: labelled images only with fixed labels."""
    import jax.numpy as jnp

    if config.learned_labels:
        return candidate["states"], jnp.argmax(candidate["label_logits"], -1)
    labels = fixed_labels(config)
    used = int((labels >= 0).sum())
    return candidate["states"][:used], jnp.asarray(labels[:used])


def make_image_fitness(config: ImageDistillConfig, train_batch: int | None = None):
    """``fitness(population, init_keys, eval_keys) -> (mean score, images scored)``, one value per candidate.

    Every candidate trains one classifier per init (and architecture) and scores it on the held-out split;
    ``train_batch`` candidates at a time (``lax.map``; None: all at once).
    """
    import jax
    import jax.numpy as jnp

    image_set = config.image_set()
    _, held = config.split()
    spec = config_spec(config)
    runs = [make_train_and_score(bind_recipe(replace(config.recipe, arch=arch), spec), spec,
                                 image_set.train_images[held], image_set.train_labels[held], config.fitness)
            for arch in architectures(config)]

    def fitness(population, init_keys, eval_keys):
        del eval_keys  # scoring held-out images draws no randomness

        def score_candidate(candidate):  # [inits], averaged over the architectures
            pairs = candidate_pairs(config, candidate)
            return sum(run(*pairs, init_keys) for run in runs) / len(runs)

        size = jax.tree.leaves(population)[0].shape[0]
        scores = map_candidates(score_candidate, population, train_batch)
        return scores.mean(-1), jnp.full((size,), len(held) * init_keys.shape[0] * len(runs), jnp.int32)

    return fitness


def architectures(config: DistillConfig) -> tuple[PolicySpec, ...]:
    """The classifiers every candidate trains: the recipe's, then any extra ones the config names."""
    return getattr(config, "architectures", (config.recipe.arch,))


def config_spec(config: DistillConfig):
    from hades.envs import get_env_spec

    return get_env_spec(config.env)


def init_keys(seeds):
    """The init key of each seed, drawn as :func:`hades.trainfrom.train_from` draws it."""
    import jax

    from hades.trainfrom import seed_keys

    return jax.vmap(lambda key: jax.random.split(key)[0])(seed_keys(list(seeds)))


# -- scoring a distilled dataset ----------------------------------------------------------------
def image_set_of(dataset: Dataset, source: str | None = None) -> ImageSet:
    """The image set ``dataset`` was distilled from (its card's source, else its env name), checked against it."""
    spec = dataset.env_spec
    if spec.library != "images":
        raise SpecError(f"{dataset.env} is an environment, not an image dataset: score it with hades train-from")
    source = source or (dataset.info.get("images") or {}).get("source") or dataset.env
    image_set = open_image_set(source)
    if (image_set.spec.obs_shape, image_set.classes) != (spec.obs_shape, spec.action_dim):
        raise FormatError(f"{source} holds {list(image_set.shape)} images of {image_set.classes} classes, but the "
                          f"dataset's are {list(spec.obs_shape)}, {spec.action_dim} classes")
    return image_set


def evaluate_test_accuracy(dataset: Dataset, seeds: int = 8, recipe: Recipe | None = None, first_seed: int = 0,
                    image_set: ImageSet | None = None) -> dict:
    """Test-set accuracy of ``seeds`` fresh inits trained on ``dataset`` with its card's recipe, as a card records it."""
    import jax

    from hades.provenance import device_record

    if seeds < 1:
        raise SpecError(f"the evaluation needs at least 1 init, got {seeds}")
    image_set = image_set or image_set_of(dataset)
    spec = dataset.env_spec
    try:
        recipe = bind_recipe(recipe or dataset.recipe, spec)
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    run = make_train_and_score(recipe, spec, image_set.test_images, image_set.test_labels, "accuracy")
    numbers = list(range(first_seed, first_seed + seeds))
    accuracies = np.asarray(jax.jit(run)(dataset.states, dataset.actions, init_keys(numbers)), np.float64)
    protocol = {"metric": "test accuracy", "inits": seeds, "seeds": f"{numbers[0]}-{numbers[-1]}",
                "test_images": int(len(image_set.test_labels)), "test_split": image_set.test_split,
                "images": image_set.source, "classifier": format_arch(recipe.arch)}
    return {"metric": "test_accuracy", "accuracies": [round(float(a), 4) for a in accuracies],
            "mean": round(float(accuracies.mean()), 4), "std": round(float(accuracies.std()), 4),
            "seeds": numbers, "protocol": protocol, "device": device_record(),
            "summary": (f"Test accuracy of {seeds} fresh classifier inits (seeds {protocol['seeds']}) trained with this "
                        f"card's recipe, on the {protocol['test_images']} test images ({image_set.test_split}): "
                        f"{accuracies.mean():.1%} ± {accuracies.std():.1%}.")}
