"""hades-zoo: behaviour distillation (HaDES) as a tool.

Heavy modules (jax, brax) load lazily, so ``import hades`` and the CLI start fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "Dataset": "hades.dataset",
    "EnvSpec": "hades.envs",
    "get_env_spec": "hades.envs",
    "PolicySpec": "hades.policy",
    "parse_arch": "hades.policy",
    "Recipe": "hades.learn",
    "EvalProtocol": "hades.evaluate",
    "DistillConfig": "hades.distillation",
    "Validation": "hades.validation",
    "distill": "hades.api",
    "DistillResult": "hades.api",
    "errors": "hades.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from hades.api import DistillResult, distill
    from hades.dataset import Dataset
    from hades.distillation import DistillConfig
    from hades.envs import EnvSpec, get_env_spec
    from hades.evaluate import EvalProtocol
    from hades.learn import Recipe
    from hades.policy import PolicySpec, parse_arch
    from hades.validation import Validation


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'hades' has no attribute {name!r}")
    module = import_module(_LAZY[name])
    return module if name == "errors" else getattr(module, name)
