"""What a distillation run has done so far, read from its checkpoint (the run need not be finished).

The report groups generations in blocks and gives, per block, the mean, median and maximum of the
population's mean fitness and the median seconds per generation. The median shows the typical
generation; the mean drops when some generations draw inits that every candidate fails with. Runs
with validation also get the ES mean's validation scores in each block and the generation kept,
and every run the commands that started and resumed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hades.errors import CheckpointError


@dataclass(frozen=True)
class HistoryBlock:
    first: int
    last: int
    mean: float
    median: float
    max: float
    seconds_per_generation: float
    validated_mean: float | None = None
    validated_best: float | None = None

    def to_dict(self) -> dict:
        return {key: (round(value, 3) if isinstance(value, float) else value) for key, value in self.__dict__.items()}


@dataclass(frozen=True)
class RunHistory:
    out: Path
    generations: int
    env_steps: int
    blocks: tuple[HistoryBlock, ...]
    kept: dict | None  # the validated mean the run keeps: generation, mean, std, seeds, first_seed, validations
    commands: tuple[dict, ...] = ()  # generation and command: the one that started the run, then each resumption

    def to_dict(self) -> dict:
        return {"out": str(self.out), "generations": self.generations, "env_steps": self.env_steps,
                "blocks": [block.to_dict() for block in self.blocks], "kept": self.kept,
                "commands": list(self.commands)}


def run_history(out: str | Path, every: int = 100) -> RunHistory:
    """The fitness history of the run in ``out``, in blocks of ``every`` generations."""
    from hades.checkpoint import load_checkpoint

    if every < 1:
        raise ValueError(f"blocks need at least 1 generation, got {every}")
    checkpoint = load_checkpoint(out)
    history, validation = checkpoint.history(), checkpoint.validation()
    if not history:
        raise CheckpointError(f"the checkpoint in {out} holds no generations yet")
    means = np.array([row["mean"] for row in history], np.float64)
    seconds = np.array([row["seconds"] for row in history], np.float64)
    scored = validation["history"] if validation else []
    blocks = []
    for first in range(0, len(history), every):
        last = min(first + every, len(history))
        inside = [row["mean"] for row in scored if first < row["generation"] <= last]
        part = means[first:last]
        blocks.append(HistoryBlock(
            first + 1, last, float(part.mean()), float(np.median(part)), float(part.max()),
            float(np.median(seconds[first:last])),
            float(np.mean(inside)) if inside else None, float(max(inside)) if inside else None))
    kept = None
    if validation and validation.get("best"):
        best, settings = validation["best"], validation["settings"]
        kept = {"generation": best["generation"], "mean": best["mean"], "std": best["std"],
                "seeds": settings["seeds"], "first_seed": settings["first_seed"], "validations": len(scored)}
    return RunHistory(Path(out), len(history), int(history[-1]["env_steps"]), tuple(blocks), kept,
                      tuple(checkpoint.commands()))
