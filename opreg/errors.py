"""The exceptions opreg raises.

Every message names the op and the plugin that registered it, because the person reading it is often not the
person who wrote the op: a student calling a built-in, or a user of somebody else's op package.
"""

from __future__ import annotations


class OpregError(Exception):
    """Base class of every error opreg raises on purpose."""


class RegistrationError(OpregError):
    """A plugin tried to register an op that is invalid or whose name is taken."""


class PluginLoadError(RegistrationError):
    """Strict loading (``OPREG_STRICT=1``, ``opreg.load_plugins(strict=True)``) found an installed plugin, or an op
    of one, that had to be skipped; the message names each and says why."""


class SkippedPluginError(OpregError, AssertionError):
    """A check (``pytest --opreg-gradcheck``) found an installed plugin or op that loading skipped, so that it could
    not be checked; the message says why it was skipped and where (an ``AssertionError``, so pytest shows it)."""


class UnknownOpError(OpregError, KeyError):
    """An op name that no loaded plugin registered.

    A ``KeyError`` too, since the registry is a mapping; ``__str__`` is overridden so the message is not shown
    wrapped in quotes as ``KeyError`` would do.
    """

    def __str__(self) -> str:
        return str(self.args[0])


class OpUsageError(OpregError, ValueError):
    """An op was called or recorded with arguments that do not fit its declaration."""


class OpContractError(OpregError):
    """An op's forward or backward returned something that breaks the op contract (count or shape of gradients)."""


class EngineStateError(OpregError, RuntimeError):
    """The engine was asked for something its current state cannot give (backward on an empty tape, twice)."""


class BackwardError(OpregError, RuntimeError):
    """An op's backward raised. The message names the op, its plugin and what backward was given, and says that no
    gradient was applied; the exception backward raised is the ``__cause__``. A ``RuntimeError`` too, as PyTorch's
    errors in backward are."""


class ModifiedInPlaceError(EngineStateError):
    """An array that an op's backward reads was changed in place after the op was recorded, so its gradient
    would be wrong (PyTorch's "modified by an inplace operation"); the message names the op and the array."""


class GradcheckError(OpregError, AssertionError):
    """An op's analytic gradient disagrees with finite differences (an ``AssertionError``, so pytest shows it)."""


class NotComposableError(OpUsageError):
    """``create_graph=True`` reached an op whose backward is not built from registered ops, so it cannot be
    differentiated again; the message names the op."""
