"""The datasets published with Behaviour Distillation (ICLR 2024), as entries of the ``iclr2024`` namespace.

The authors' result files sit in their folder layout (``brax/no_virtual_batch_norm/distill/hopper/D64/seed0/
data_final.pkl`` and so on). :func:`entry_name` turns such a path into a catalogue name, one grammar
for every family of runs::

    ENV-DPAIRS-METHOD[-sweep][-sampled|-greedy]-seedN      (Brax and MinAtar)
    SET-DIMAGES-METHOD-seedN                                (MNIST, FashionMNIST: mnist-10images-hades-r-seed0)

``ENV`` is the env id in lower case without ``-MinAtar``; ``D`` is the dataset size the run was
configured with (a MinAtar run of 16 states keeps 15 labelled pairs); ``sweep`` marks the dataset-size
sweep; MinAtar runs say whether their fitness rollouts sampled or took greedy actions. ``SET`` is the
image set as hades names it (``mnist``, ``fashion-mnist``); those entries are scored by the test accuracy
of fresh classifiers, or published unmeasured (saying so) on a machine without the images.
:func:`publish_all` converts and publishes every file not yet in the catalogue, so it can be stopped
and started again.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hades.errors import FormatError, HadesError

NAMESPACE = "iclr2024"
VERSION = "1.0"
_METHODS = {"distill": "hades-r", "overfit": "hades-f"}
_PATTERN = re.compile(
    r"(?P<sweep>sweep_D/)?(?P<family>brax|minatar)/(?:(?:no_)?virtual_batch_norm/)?(?P<kind>distill|overfit)/"
    r"(?P<env>[A-Za-z0-9_-]+)/D(?P<pairs>\d+)/(?:greedy_act(?P<greedy>True|False)/)?seed(?P<seed>\d+)/data_final\.pkl")
_IMAGE_PATTERN = re.compile(r"mnist/(?P<env>MNIST|FashionMNIST)/D(?P<pairs>\d+)/seed(?P<seed>\d+)/data_final\.pkl")
_IMAGE_SETS = {"MNIST": "mnist", "FashionMNIST": "fashion-mnist"}

# The paper's published returns (final population mean fitness, mean of its 3 seeds) by (env, pairs, method).
PAPER_RETURNS = {
    ("hopper", 4, "hades-r"): 1745.0, ("hopper", 4, "hades-f"): 1803.0,
    ("hopper", 64, "hades-r"): 1787.0, ("hopper", 64, "hades-f"): 1836.0,
    ("walker2d", 64, "hades-r"): 2438.0, ("halfcheetah", 64, "hades-r"): 3318.0,
}


def paper_return(env: str, pairs: int, method: str | None) -> float | None:
    """The paper's figure for this env, dataset size and method, when it reports one."""
    return PAPER_RETURNS.get((env, int(pairs), method or "hades-r"))


# What differs between the original runs and a re-measurement here, said on every card that falls short.
NOTES = {
    "brax": ("The original runs simulated with brax 0.9 and recorded the mean over 2048 perturbed candidates; "
             "this measurement uses brax 0.14 (positional backend) and the dataset itself."),
    "minatar": ("The original runs trained their policies with virtual batch norm; the recipe here (the paper's "
                "MinAtar recipe without it) trains a plain MLP."),
    "hades-f": ("HaDES-F pairs are tuned to one init: fresh inits score lower, the card's own-init row is the "
                "figure to compare."),
}


@dataclass(frozen=True)
class PublishedRun:
    """One result file of the authors' layout and what it becomes in the catalogue."""

    path: Path
    relative: str
    family: str
    method: str
    env: str
    pairs: int
    seed: int
    sweep: bool
    greedy: bool | None

    @property
    def name(self) -> str:
        if self.family == "mnist":
            return f"{_IMAGE_SETS[self.env]}-{self.pairs}images-{self.method}-seed{self.seed}"
        env = self.env.lower().removesuffix("-minatar")
        parts = [f"{env}-{self.pairs}pairs", self.method]
        if self.sweep:
            parts.append("sweep")
        if self.greedy is not None:
            parts.append("greedy" if self.greedy else "sampled")
        parts.append(f"seed{self.seed}")
        return "-".join(parts)

    @property
    def group(self) -> tuple:
        """Runs that differ only by seed; the transfer table is measured on the lowest seed of each."""
        return (self.family, self.method, self.env, self.pairs, self.sweep, self.greedy)


def parse_layout(path: Path, root: Path) -> PublishedRun:
    """Read a result file's place in the authors' layout; FormatError for a path outside it."""
    relative = path.relative_to(root).as_posix()
    image = _IMAGE_PATTERN.fullmatch(relative)
    if image is not None:  # the paper's image runs all evolved with fresh inits (its HaDES-R)
        return PublishedRun(path, relative, "mnist", "hades-r", image["env"], int(image["pairs"]), int(image["seed"]),
                            False, None)
    match = _PATTERN.fullmatch(relative)
    if match is None:
        raise FormatError(f"{relative} is not in the layout of the published results")
    greedy = match["greedy"]
    return PublishedRun(path, relative, match["family"], _METHODS[match["kind"]], match["env"], int(match["pairs"]),
                        int(match["seed"]), bool(match["sweep"]), None if greedy is None else greedy == "True")


def find_runs(root: str | Path, skip: Callable[[str], bool] | None = None) -> list[PublishedRun]:
    """Every result file under ``root`` (Brax, MinAtar, MNIST and FashionMNIST), seed 0 of each group first."""
    root = Path(root)
    runs = []
    for path in sorted(root.glob("**/data_final.pkl")):
        relative = path.relative_to(root).as_posix()
        if skip is not None and skip(relative):
            continue
        runs.append(parse_layout(path, root))
    lowest = {}
    for run in runs:
        lowest[run.group] = min(lowest.get(run.group, run.seed), run.seed)
    return sorted(runs, key=lambda run: (run.seed != lowest[run.group], run.relative))


def publish_all(root: str | Path, catalogue: str | Path | None = None, *, seeds: int = 8,
                log: Callable[[dict], None] | None = None, only: Callable[[PublishedRun], bool] | None = None,
                limit: int | None = None) -> list[dict]:
    """Convert and publish every run under ``root`` that the catalogue does not hold yet.

    The lowest seed of each (env, pairs, method, variant) also gets the architecture-transfer table.
    ``log(row)`` is called after each entry with what was measured. Returns those rows.
    """
    from hades.evaluate import EvalProtocol
    from hades.publish import TRANSFER_ARCHS, publish
    from hades.registry import INDEX_FILE, catalogue_dir, load_catalogue

    folder = Path(catalogue) if catalogue is not None else catalogue_dir()
    held = {entry.name for entry in load_catalogue(folder)} if (folder / INDEX_FILE).exists() else set()
    runs = [run for run in find_runs(root) if only is None or only(run)]
    lowest = {}
    for run in runs:
        lowest[run.group] = min(lowest.get(run.group, run.seed), run.seed)
    rows = []
    for run in runs:
        full = f"{NAMESPACE}/{run.name}"
        if full in held:
            continue
        if limit is not None and len(rows) >= limit:
            break
        start = time.perf_counter()
        images = run.family == "mnist"
        protocol = None if images else EvalProtocol(4, 1024, bool(run.greedy))
        transfer = TRANSFER_ARCHS if run.seed == lowest[run.group] and not images else ()
        try:
            # An image run keeps the converter's description (it says what the run recorded).
            result = publish(run.path, run.name, VERSION, namespace=NAMESPACE, seeds=seeds, protocol=protocol,
                             transfer=transfer, catalogue=folder, pictures=False, parquet=False,
                             description=None if images else describe(run), allow_unmeasured=images)
        except HadesError as exc:  # a run hades cannot read (an env it does not have): reported, not fatal
            rows.append({"name": full, "relative": run.relative, "error": str(exc).splitlines()[0]})
            if log is not None:
                log(rows[-1])
            continue
        if images:
            rows.append(_image_row(run, full, result, time.perf_counter() - start))
            if log is not None:
                log(rows[-1])
            continue
        comparison = result.dataset.info.get("paper_comparison") or {}
        own = result.evaluation.get("own_init") or {}
        row = {"name": full, "relative": run.relative, "env": run.env, "pairs": result.dataset.pairs,
               "method": run.method, "seed": run.seed, "recorded": comparison.get("recorded_fitness"),
               "mean": result.evaluation["mean"], "std": result.evaluation["std"],
               "own_init_mean": own.get("mean"), "own_init_std": own.get("std"),
               "below_10_percent": comparison.get("below_recorded_by_over_10_percent"),
               "architectures": {item["arch"]: item["mean"] for item in result.architectures},
               "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        if log is not None:
            log(row)
    return rows


def _image_row(run: PublishedRun, full: str, result, seconds: float) -> dict:
    evaluation, method = result.evaluation, result.dataset.info.get("method") or {}
    return {"name": full, "relative": run.relative, "env": result.dataset.env, "pairs": result.dataset.pairs,
            "method": run.method, "seed": run.seed, "metric": "test_accuracy",
            "recorded_train_accuracy": method.get("final_train_accuracy"),
            "mean": evaluation.get("mean"), "std": evaluation.get("std"), "accuracies": evaluation.get("accuracies"),
            "measured": evaluation.get("measured", True), "seconds": round(seconds, 1)}


def describe(run: PublishedRun) -> str:
    variant = " (dataset-size sweep)" if run.sweep else ""
    actions = "" if run.greedy is None else (" Its fitness rollouts took greedy actions, and so does the evaluation here."
                                             if run.greedy else " Its fitness rollouts sampled actions.")
    notes = [NOTES[run.family]] + ([NOTES["hades-f"]] if run.method == "hades-f" else [])
    return (f"The {run.method.upper().replace('HADES', 'HaDES')} dataset of {run.env}, D={run.pairs}, seed {run.seed}"
            f"{variant}, published by the authors of Behaviour Distillation (ICLR 2024) as "
            f"`{run.relative}`, converted by `hades convert` without running anything from the file.{actions} "
            + " ".join(notes))
