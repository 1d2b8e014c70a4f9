"""What a catalogue entry's card says it scores, measured when the entry is published.

An environment dataset is scored by returns (the standard protocol of :mod:`hades.trainfrom`), an
image dataset by the test accuracy of fresh classifiers (:mod:`hades.imagetask`). Both get a
transfer table over other architectures when asked; a HaDES-F dataset is also scored from the one
init it was evolved for; a converted run's figure is set against what the original run recorded.
An image set that is not on this machine can leave an entry unmeasured, saying why, when the
caller allows it: the card then tells its reader how to measure it where the images are.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from hades.dataset import Dataset
from hades.errors import NotFoundError
from hades.evaluate import EvalProtocol

# The architectures every entry's transfer table reports (the issue of tanh-only datasets shows here).
TRANSFER_ARCHS = ("2x64:relu", "2x256:tanh", "2x512:tanh", "3x256:relu")
# Below this fraction of what the paper's run recorded, a card says that our figure falls short.
SHORTFALL = 0.9

Progress = Callable[[str, int, int], None]


def is_image_dataset(dataset: Dataset) -> bool:
    return dataset.env_spec.library == "images"


def measure_steps(dataset: Dataset, archs=()) -> int:
    """How many stages :func:`measure` reports: the standard evaluation, one per architecture, the own init."""
    return 1 + len(archs) + int(hades_f_init(dataset) is not None)


def measure(dataset: Dataset, seeds: int = 8, protocol: EvalProtocol | None = None, archs=(),
            notify: Progress | None = None, done: int = 0, total: int | None = None,
            allow_unmeasured: bool = False) -> dict:
    """The evaluation section of ``dataset``'s card: the standard evaluation with its card's recipe, a row per
    transfer architecture, and a HaDES-F dataset's own-init score.

    ``allow_unmeasured``: an image dataset whose image set is not on this machine gets an evaluation
    that says so (``measured: False``) instead of an error.
    """
    notify = notify or (lambda stage, done, total: None)
    total = total if total is not None else done + measure_steps(dataset, archs)
    notify("standard evaluation", done, total)
    if is_image_dataset(dataset):
        try:
            evaluation = _image_evaluation(dataset, seeds, archs, notify, done + 1, total)
        except NotFoundError as exc:
            if not allow_unmeasured:
                raise
            return unmeasured(str(exc))
        return evaluation
    from hades.policy import format_arch
    from hades.trainfrom import fixed_init_evaluation, standard_evaluation, train_from

    evaluation = standard_evaluation(dataset, seeds, protocol)
    done += 1
    rows = []
    for policy in archs:
        notify(f"transfer {format_arch(policy)}", done, total)
        recipe = dataclasses.replace(dataset.recipe, arch=policy)
        result = train_from(dataset, recipe, protocol=protocol, num_seeds=seeds)
        rows.append({"arch": format_arch(policy), "mean": round(result.mean, 1), "std": round(result.std, 1),
                     "returns": [round(float(r), 1) for r in result.returns]})
        done += 1
    if rows:
        evaluation["architectures"] = rows
    own_init = hades_f_init(dataset)
    if own_init is not None:
        notify("its own fixed init", done, total)
        evaluation["own_init"] = fixed_init_evaluation(dataset, own_init[0], seeds, protocol, legacy_prng=own_init[1])
    return evaluation


def _image_evaluation(dataset: Dataset, seeds: int, archs, notify: Progress, done: int, total: int) -> dict:
    from hades.imagetask import evaluate_test_accuracy, image_set_of
    from hades.policy import format_arch

    image_set = image_set_of(dataset)
    evaluation = evaluate_test_accuracy(dataset, seeds, image_set=image_set)
    rows = []
    for classifier in archs:
        notify(f"transfer {format_arch(classifier)}", done, total)
        recipe = dataclasses.replace(dataset.recipe, arch=classifier)
        scored = evaluate_test_accuracy(dataset, seeds, recipe, image_set=image_set)
        rows.append({"arch": format_arch(classifier), "mean": scored["mean"], "std": scored["std"],
                     "accuracies": scored["accuracies"]})
        done += 1
    if rows:
        evaluation["architectures"] = rows
    return evaluation


def unmeasured(reason: str) -> dict:
    """The evaluation section of an image dataset whose image set this machine does not have."""
    return {"metric": "test_accuracy", "measured": False, "reason": reason,
            "summary": (f"Not measured: the machine that published this entry lacked the image set ({reason}). "
                        "Where the images are, `hades train-from` on this dataset prints the test accuracy of fresh "
                        "classifiers.")}


def is_measured(evaluation: dict) -> bool:
    return evaluation.get("measured", True) is not False


# -- against what an original run recorded ---------------------------------------------------------
def paper_comparison(dataset: Dataset, evaluation: dict) -> dict | None:
    """A converted run's recorded final fitness against our figure (its own init for HaDES-F); None when there
    is nothing comparable (our own runs, image runs whose recorded fitness is a training loss)."""
    recorded = recorded_fitness(dataset)
    if recorded is None or is_image_dataset(dataset) or not is_measured(evaluation):
        return None
    basis = "own_init" if "own_init" in evaluation else "fresh_inits"
    measured = evaluation["own_init"]["mean"] if basis == "own_init" else evaluation["mean"]
    return compare_with_recorded(measured, recorded, basis)


def compare_with_recorded(mean: float, recorded: float, basis: str = "fresh_inits") -> dict:
    """Our re-measured mean against the fitness the original run recorded; flags a shortfall of over 10%.

    ``basis`` says what was measured: ``fresh_inits`` (the standard evaluation) or ``own_init``.
    """
    ratio = mean / recorded if recorded > 0 else None
    short = ratio is not None and ratio < SHORTFALL
    return {"recorded_fitness": round(float(recorded), 2), "measured_mean": round(float(mean), 2), "basis": basis,
            "ratio": None if ratio is None else round(ratio, 3), "below_recorded_by_over_10_percent": short}


def hades_f_init(dataset: Dataset) -> tuple[int, bool] | None:
    """``(init seed, legacy_prng)`` of the one init a HaDES-F dataset was evolved for; None for other methods.

    A converted run drew its init with the original code's jax (pre-0.5 random bits); ours with today's.
    """
    method = dataset.info.get("method")
    if not isinstance(method, dict) or method.get("name") != "hades-f" or is_image_dataset(dataset):
        return None
    converted = (dataset.info.get("provenance") or {}).get("converted_by") == "hades convert"
    if converted and "/virtual_batch_norm/" in f"/{method.get('run') or ''}/":
        return None  # that run's network had virtual batch norm: its init is not one of our MLPs
    seed = method.get("overfit_seed") if converted else (method.get("config") or {}).get("fixed_init_seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        return None
    return seed, converted


def recorded_fitness(dataset: Dataset) -> float | None:
    """What a converted run recorded as its final population mean fitness (None for our own runs)."""
    method = dataset.info.get("method")
    if not isinstance(method, dict) or not isinstance(dataset.info.get("provenance"), dict):
        return None
    if dataset.info["provenance"].get("converted_by") != "hades convert":
        return None
    value = method.get("final_fitness")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
