"""Exception types raised by kdlab.

Every error a learner can cause subclasses a built-in type (``ValueError``,
``TypeError``, ``FileNotFoundError``), so ``except ValueError`` keeps working, and
its message names the parameter, the bad value and what would have been accepted.
"""

from __future__ import annotations


class KdlabError(Exception):
    """Marker base class: ``except kdlab.errors.KdlabError`` catches every kdlab error."""


class ParameterError(KdlabError, ValueError):
    """A parameter has a value outside what is accepted."""


class ParameterTypeError(KdlabError, TypeError):
    """A parameter has the wrong type."""


class DatasetNotFoundError(KdlabError, FileNotFoundError):
    """A standard dataset's files are missing and ``download=False``."""


class DataCorruptError(KdlabError, ValueError):
    """A dataset file exists but cannot be parsed."""


class CheckpointError(KdlabError, ValueError):
    """A checkpoint file is corrupted, truncated, not a kdlab checkpoint, or for another model."""


class CheckpointNotFoundError(KdlabError, FileNotFoundError):
    """A checkpoint path that does not exist."""


class DeviceUnavailableError(KdlabError, ValueError):
    """The requested device (``cuda``, ``mps``) is not available on this machine."""


class IncompatibleModelError(KdlabError, ValueError):
    """A model does not fit the dataset (classes, input shape) or its teacher."""


class NonFiniteLossError(KdlabError, FloatingPointError):
    """The training loss became NaN or inf. Carries where it happened."""

    def __init__(self, message: str, *, epoch: int, batch: int):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


class ClusterError(KdlabError, ConnectionError):
    """A Dask cluster cannot take a sweep: its scheduler is unreachable, it has no workers,
    or its workers lack this kdlab version or the shared folder (:mod:`kdlab.cluster`)."""
