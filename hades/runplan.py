"""What a distillation run would do, read from its settings and output folder without running it."""

from __future__ import annotations

from hades.checkpoint import load_checkpoint
from hades.errors import CheckpointError, MissingCheckpointError


def plan_run(distiller) -> dict:
    """The cost of ``distiller``'s run and the state of its output folder.

    ``action`` is ``start`` (an empty or missing folder), ``resume`` (a checkpoint made with these
    settings, which ``run(resume=True)`` continues), ``refuse`` (a folder that cannot be used, with
    ``reason``) or ``finish`` (the checkpoint already holds every generation or has spent the env-step
    budget: resuming only writes the outputs). ``env_steps_total`` counts at the starting population
    (a restart grows it) and stops at the budget when there is one.
    """
    from hades.distillation import policy_param_count

    config, budget = distiller.config, distiller.max_env_steps
    per_generation = config.env_steps_per_generation
    total = per_generation * config.num_generations
    if budget is not None:
        total = min(total, -(-budget // per_generation) * per_generation)
    plan = {
        "fingerprint": config.fingerprint(),
        "config": config.to_dict(),
        "policy_parameters": policy_param_count(config),
        "env_steps_per_generation": per_generation,
        "env_steps_total": total,
        "max_env_steps": budget,
        "out": str(distiller.out),
        "checkpoint": None,
        "validation": None if distiller.validation is None else distiller.validation.to_dict(),
    }
    try:
        checkpoint = load_checkpoint(distiller.out)
    except MissingCheckpointError:
        if distiller._out_in_use():
            plan.update(action="refuse", reason=f"{distiller.out} already exists and is not empty")
        else:
            plan["action"] = "start"
        return plan
    except CheckpointError as exc:
        plan.update(action="refuse", reason=str(exc))
        return plan
    history = checkpoint.history()
    done, spent = len(history), history[-1]["env_steps"] if history else 0
    matches = checkpoint.fingerprint == plan["fingerprint"]
    plan["checkpoint"] = {"path": str(distiller.checkpoint_path), "generations": done, "env_steps": spent,
                          "restarts": checkpoint.restarts(), "fingerprint": checkpoint.fingerprint,
                          "matches": matches}
    if not matches:
        plan.update(action="refuse", reason="the checkpoint was made with other settings")
    else:
        finished = done >= config.num_generations or (budget is not None and spent >= budget)
        plan["action"] = "finish" if finished else "resume"
    return plan
