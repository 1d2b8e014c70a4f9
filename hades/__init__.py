"""hades-zoo: behaviour distillation (HaDES) as a tool.

The public API: ``hades.load``, ``hades.pull``, ``hades.push``, ``hades.train_from``,
``hades.test_accuracy`` (image datasets), ``hades.train_multitask``, ``hades.evaluate``, ``hades.distill`` and ``hades.publish``, the
classes they take and the results they return. Everything loads lazily, so ``import hades`` and
the CLI start fast (no jax).
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    # functions
    "load": "hades.api",
    "pull": "hades.api",
    "push": "hades.api",
    "train_from": "hades.api",
    "test_accuracy": "hades.api",
    "train_multitask": "hades.multitask",
    "evaluate": "hades.api",
    "distill": "hades.api",
    "neuroevolve": "hades.neuroevolution",
    "publish": "hades.publish",
    # what they take
    "Dataset": "hades.dataset",
    "Policy": "hades.policy_io",
    "EnvSpec": "hades.envs",
    "get_env_spec": "hades.envs",
    "PolicySpec": "hades.policy",
    "parse_arch": "hades.policy",
    "Recipe": "hades.learn",
    "EvalProtocol": "hades.evaluate",
    "DistillConfig": "hades.distillation",
    "ParamsConfig": "hades.neuroevolution",
    "Validation": "hades.validation",
    # what they return
    "PullResult": "hades.api",
    "PushResult": "hades.hub",
    "TrainFromResult": "hades.trainfrom",
    "MultiTaskResult": "hades.multitask",
    "MultiTaskPolicy": "hades.multitask_policy",
    "PolicyEvaluation": "hades.policy_io",
    "DistillResult": "hades.api",
    "ParamsResult": "hades.neuroevolution",
    "PublishResult": "hades.publish",
    "errors": "hades.errors",
}

# Functions named like a submodule of the package (hades/evaluate.py, hades/publish.py): once that
# submodule is imported, ``hades.NAME`` is the module, so the module itself is made callable.
_CALLABLE_MODULES = {"evaluate": "hades.api", "publish": "hades.publish"}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from hades.api import DistillResult, PullResult, distill, evaluate, load, pull, push, test_accuracy, train_from
    from hades.dataset import Dataset
    from hades.distillation import DistillConfig
    from hades.envs import EnvSpec, get_env_spec
    from hades.evaluate import EvalProtocol
    from hades.hub import PushResult
    from hades.learn import Recipe
    from hades.multitask import MultiTaskResult, train_multitask
    from hades.multitask_policy import MultiTaskPolicy
    from hades.neuroevolution import ParamsConfig, ParamsResult, neuroevolve
    from hades.policy import PolicySpec, parse_arch
    from hades.policy_io import Policy, PolicyEvaluation
    from hades.publish import PublishResult, publish
    from hades.trainfrom import TrainFromResult
    from hades.validation import Validation


class _CallableModule(types.ModuleType):
    """``hades.evaluate`` and ``hades.publish``: modules that are also the package's functions."""

    def __call__(self, *args, **kwargs):
        name = self.__name__.rpartition(".")[2]
        return getattr(import_module(_CALLABLE_MODULES[name]), name)(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        # The import system binds every imported submodule to its package with setattr.
        if name in _CALLABLE_MODULES and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'hades' has no attribute {name!r}")
    if name in _CALLABLE_MODULES:
        return import_module(f"hades.{name}")  # binds the callable module as hades.NAME
    module = import_module(_LAZY[name])
    return module if name == "errors" else getattr(module, name)
