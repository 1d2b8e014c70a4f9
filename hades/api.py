"""The functions ``import hades`` offers: :func:`load`, :func:`pull`, :func:`push`,
:func:`train_from`, :func:`evaluate` and :func:`distill` (``hades.publish`` is
:func:`hades.publish.publish`). Each returns a named, typed result.

:func:`distill` is what ``hades distill`` does after parsing its options: run (or resume) the
search, score the result with the standard final evaluation, write the output folder, and leave
the multi-host run once the shared work is done. The command only adds a progress bar and a summary.

Nothing here imports jax until a function that trains or evaluates runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

from hades.debris import scratch_dir
from hades.errors import FormatError

if TYPE_CHECKING:  # pragma: no cover
    from hades.dataset import Dataset
    from hades.distillation import DistillConfig
    from hades.evaluate import EvalProtocol
    from hades.hub import PushResult
    from hades.learn import Recipe
    from hades.policy import PolicySpec
    from hades.policy_io import Policy, PolicyEvaluation
    from hades.runner import Progress
    from hades.trainfrom import TrainFromResult
    from hades.validation import Validation


@dataclass(frozen=True)
class PullResult:
    """A verified local copy: ``path`` is its folder (or file), ``id`` what was asked for."""

    id: str
    path: Path
    kind: str  # "dataset" or "policy"
    sha256: str
    env: str | None = None
    pairs: int | None = None

    @classmethod
    def from_verified(cls, identifier: str, verified) -> "PullResult":
        """From what :func:`hades.store.verify_path` found."""
        return cls(str(identifier), verified.path, verified.kind, verified.sha256, verified.env, verified.pairs)

    def to_dict(self) -> dict:
        return {"id": self.id, "path": str(self.path), "kind": self.kind, "sha256": self.sha256, "env": self.env,
                "pairs": self.pairs}


def pull(identifier: str, *, force: bool = False, progress: bool = False) -> PullResult:
    """Bring a dataset or policy into the local store (bundled ones are used in place) and verify it.

    ``identifier``: a catalogue name (``hopper-4pairs@1.5``), ``hf://datasets/ORG/NAME[@REV]``,
    ``file:///PATH/ORG/NAME[@REV]`` or a local path. ``force`` downloads a hub revision again.
    """
    from hades.registry import resolve
    from hades.store import verify_path

    return PullResult.from_verified(identifier, verify_path(resolve(str(identifier), force=force, progress=progress)))


def load(identifier: Union[str, Path]) -> Union["Dataset", "Policy"]:
    """The dataset (a :class:`hades.Dataset`) or trained policy (a :class:`hades.Policy`) an
    identifier names, pulled first when it lives on a hub, and fully verified."""
    from hades.dataset import Dataset
    from hades.policy_io import Policy

    pulled = pull(str(identifier))
    return Dataset.load(pulled.path) if pulled.kind == "dataset" else Policy.load(pulled.path)


def push(source: Union[str, Path, "Dataset", "Policy"], to: str, *, private: bool = False, tag: str | None = None,
         message: str | None = None, progress: bool = False) -> "PushResult":
    """Push a dataset or policy folder (or a :class:`hades.Dataset` / :class:`hades.Policy`) to
    ``to`` (``hf://datasets/ORG/NAME``, ``hf://models/ORG/NAME`` or ``file:///PATH/ORG/NAME``) as one
    commit, optionally tagged; the result's ``id`` pins the new revision."""
    from hades.dataset import Dataset
    from hades.hub import push as push_folder
    from hades.policy_io import Policy

    if isinstance(source, (str, Path)):
        return push_folder(source, to, private=private, tag=tag, message=message, progress=progress)
    with scratch_dir("hades-push-") as scratch:
        folder = Path(scratch) / "folder"
        if isinstance(source, Dataset):
            source.save(folder, parquet=True)
        elif isinstance(source, Policy):
            source.save(folder)
        else:
            raise TypeError(f"push takes a folder, a hades.Dataset or a hades.Policy, not {type(source).__name__}")
        return push_folder(folder, to, private=private, tag=tag, message=message, progress=progress)


def train_from(dataset: Union[str, "Dataset"], recipe: "Recipe | None" = None, *, arch: "str | PolicySpec | None" = None,
               protocol: "EvalProtocol | None" = None, num_seeds: int = 8, first_seed: int = 0,
               keep_params: bool = False, backend: str | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> "TrainFromResult":
    """Train ``num_seeds`` fresh policies on a dataset (an identifier or a :class:`hades.Dataset`)
    and evaluate each once under ``protocol`` (the standard one by default: 4 envs x 1024 steps,
    sampled actions). ``recipe`` defaults to the card's; ``arch`` (``"3x256:relu"``) replaces its
    architecture. ``keep_params`` keeps the parameters, so ``result.policies()`` gives the policies.
    """
    from hades.trainfrom import train_from as train

    dataset, recipe, source = _dataset_and_recipe(dataset, recipe, arch)
    return train(dataset, recipe, protocol, num_seeds, first_seed, backend=backend, keep_params=keep_params,
                 progress=progress, source=source)


def _dataset_and_recipe(dataset, recipe, arch) -> tuple:
    """``(dataset, recipe, source)``: the dataset opened when given by identifier (``source`` is that identifier,
    else None), the card's recipe unless one is given, ``arch`` replacing its architecture."""
    from hades.dataset import Dataset
    from hades.policy import PolicySpec, parse_arch

    source = None
    if not isinstance(dataset, Dataset):
        from hades.registry import open_dataset

        source = str(dataset)
        dataset = open_dataset(source)
    recipe = recipe or dataset.recipe
    if arch is not None:
        recipe = replace(recipe, arch=arch if isinstance(arch, PolicySpec) else parse_arch(arch))
    return dataset, recipe, source


def test_accuracy(dataset: Union[str, "Dataset"], recipe: "Recipe | None" = None, *,
                  arch: "str | PolicySpec | None" = None, num_seeds: int = 8, first_seed: int = 0) -> dict:
    """Train ``num_seeds`` fresh classifiers on an image dataset (an identifier or a :class:`hades.Dataset`) and
    score each on its image set's test split: :func:`train_from`'s counterpart for supervised distillation.
    ``recipe`` defaults to the card's; ``arch`` (``"c16,128:relu"``) replaces its classifier. The image set
    must be on this machine (``fashion-mnist``: the Debian package ``dataset-fashion-mnist``)."""
    from hades.imagetask import evaluate_test_accuracy

    dataset, recipe, _ = _dataset_and_recipe(dataset, recipe, arch)
    return evaluate_test_accuracy(dataset, num_seeds, recipe, first_seed)


test_accuracy.__test__ = False  # a library function, not a test for pytest to collect


def evaluate(policy: Union[str, Path, "Policy"], protocol: "EvalProtocol | None" = None, *, runs: int = 1,
             first_seed: int = 0) -> "PolicyEvaluation":
    """Evaluate a trained policy (an identifier, a folder or a :class:`hades.Policy`) ``runs`` times
    under ``protocol`` (the standard one by default), each run with its own env and action noise."""
    from hades.evaluate import EvalProtocol
    from hades.policy_io import Policy, evaluate_policy

    if not isinstance(policy, Policy):
        loaded = load(policy)
        if not isinstance(loaded, Policy):
            raise FormatError(f"{policy} is a dataset, not a policy; train policies from it with hades.train_from")
        policy = loaded
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    return evaluate_policy(policy, protocol or EvalProtocol(), runs, first_seed)

# The stages :func:`distill` announces to ``on_stage`` after the search, in order.
STAGE_EVALUATE = "evaluate"  # the final evaluation begins (skipped when final_seeds is 0)
STAGE_WRITE = "write"  # the output folder is written


@dataclass(frozen=True)
class DistillResult:
    """What a run produced: the dataset (as its card records it), where it lies, and what it cost.

    ``evaluation``: the final evaluation (None when skipped); ``selected``: the validated
    generation the run kept (``method.selected`` of the card; None without validation).
    """

    dataset: Dataset
    out: Path
    evaluation: dict | None
    selected: dict | None
    generations: int
    env_steps: int


def distill(config: DistillConfig, out: str | Path, *, resume: bool = False, checkpoint_every: int = 10,
            num_devices: int | None = None, final_seeds: int = 8, final_protocol: EvalProtocol | None = None,
            start: Dataset | None = None, start_source: str | None = None, validation: Validation | None = None,
            on_progress: Callable[[Progress], None] | None = None,
            on_stage: Callable[[str], None] | None = None, max_env_steps: int | None = None) -> DistillResult:
    """Distil a dataset with ``config`` into ``out``, checkpointing every ``checkpoint_every`` generations.

    ``resume``: continue the checkpoint in ``out`` (a fresh run refuses a folder that holds files).
    ``num_devices``: devices to shard the population over (default all; per process in a
    multi-host run). ``final_seeds`` fresh inits score the result under ``final_protocol`` (the
    standard one by default; 0 skips it). ``start``/``start_source``: the warm-start dataset and
    the name it was opened by. ``validation``: keep the best-validated ES mean instead of the last.
    ``max_env_steps``: stop once the search has spent this many env steps (before the last
    generation if need be; a resumed run may raise it).
    ``on_progress`` hears of every chunk, ``on_stage`` of each stage after the search
    (:data:`STAGE_EVALUATE`, :data:`STAGE_WRITE`).

    In a multi-host run every process calls this; only process 0 evaluates and writes, the others
    return the same dataset with no evaluation.
    """
    from hades.multihost import configure_devices

    configure_devices(num_devices)  # a no-op once jax is imported
    from hades.evaluate import EvalProtocol
    from hades.multihost import is_lead_process, shutdown_distributed
    from hades.runner import Distiller
    from hades.trainfrom import standard_evaluation

    stage = on_stage or (lambda name: None)
    distiller = Distiller(config, out, checkpoint_every, num_devices, start=start, start_source=start_source,
                          validation=validation, max_env_steps=max_env_steps)
    lead = is_lead_process()
    try:
        dataset = distiller.run(resume=resume, on_progress=on_progress)
    finally:
        shutdown_distributed()  # the rest is process 0's alone
    evaluation = None
    if lead:
        if final_seeds:
            stage(STAGE_EVALUATE)
            evaluation = standard_evaluation(dataset, final_seeds, final_protocol or EvalProtocol())
            dataset = dataset.replace(info={**dataset.info, "evaluation": evaluation})
        stage(STAGE_WRITE)
        distiller.write_outputs(dataset)
    method = dataset.info.get("method") or {}
    return DistillResult(dataset, distiller.out, evaluation, method.get("selected"), method["generations"],
                         method["env_steps"])
