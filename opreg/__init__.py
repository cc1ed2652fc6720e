"""opreg: reverse-mode automatic differentiation for NumPy in which every operation is a plugin.

The engine (:mod:`opreg.engine`) records operations by the name they were registered under; the registry
(:mod:`opreg.registry`) fills the name -> op table from pluggy plugins (:mod:`opreg.hookspecs`); the built-in ops
are such plugins (the ``opreg_builtins`` package); the modules and the MLP (:mod:`opreg.nn`) are assembled from
registered ops.
"""

from opreg import data, func, nn, ops, optim
from opreg.anomaly import AnomalyError, detect_anomaly
from opreg.checkmode import apply_environment as _apply_check_environment
from opreg.checkmode import checking
from opreg.compiled import CaptureWarning, CompiledStep, compile
from opreg.engine import Autograd, GradientBuffer, Operation
from opreg.errors import (
    BackwardError,
    EngineStateError,
    GradcheckError,
    ModifiedInPlaceError,
    NotComposableError,
    OpContractError,
    OpregError,
    OpUsageError,
    PluginLoadError,
    RegistrationError,
    SkippedPluginError,
    UnknownOpError,
)
from opreg.hookspecs import Register, hookimpl, hookspec
from opreg.opcheck import check_op, gradcheck
from opreg.opdef import OpDef, Sample
from opreg.random import manual_seed
from opreg.registry import (
    OpRegistry,
    get_registry,
    load_plugins,
    register_plugin,
    reload_plugins,
    unregister_plugin,
)
from opreg.tensor import Tensor, grad, no_grad

_apply_check_environment()  # OPREG_CHECK=1: checking mode for the whole run

__all__ = [
    "AnomalyError",
    "Autograd",
    "BackwardError",
    "CaptureWarning",
    "CompiledStep",
    "EngineStateError",
    "GradcheckError",
    "GradientBuffer",
    "ModifiedInPlaceError",
    "NotComposableError",
    "OpContractError",
    "OpDef",
    "OpRegistry",
    "OpUsageError",
    "Operation",
    "OpregError",
    "PluginLoadError",
    "Register",
    "RegistrationError",
    "Sample",
    "SkippedPluginError",
    "Tensor",
    "UnknownOpError",
    "check_op",
    "checking",
    "compile",
    "data",
    "detect_anomaly",
    "func",
    "get_registry",
    "grad",
    "gradcheck",
    "hookimpl",
    "hookspec",
    "load_plugins",
    "manual_seed",
    "nn",
    "no_grad",
    "ops",
    "optim",
    "register_plugin",
    "reload_plugins",
    "unregister_plugin",
]
