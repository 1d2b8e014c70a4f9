"""A whole distillation run as one call: :func:`distill` (also ``hades.distill``).

What ``hades distill`` does after parsing its options: run (or resume) the search, score the
result with the standard final evaluation, write the output folder, and leave the multi-host run
once the shared work is done. The command only adds a progress bar and a summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from hades.dataset import Dataset
    from hades.distillation import DistillConfig
    from hades.evaluate import EvalProtocol
    from hades.runner import Progress
    from hades.validation import Validation

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
            on_stage: Callable[[str], None] | None = None) -> DistillResult:
    """Distil a dataset with ``config`` into ``out``, checkpointing every ``checkpoint_every`` generations.

    ``resume``: continue the checkpoint in ``out`` (a fresh run refuses a folder that holds files).
    ``num_devices``: devices to shard the population over (default all; per process in a
    multi-host run). ``final_seeds`` fresh inits score the result under ``final_protocol`` (the
    standard one by default; 0 skips it). ``start``/``start_source``: the warm-start dataset and
    the name it was opened by. ``validation``: keep the best-validated ES mean instead of the last.
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
                          validation=validation)
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
