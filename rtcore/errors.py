"""The library's exception types, one home for all of them.

Each message names the bad value and the fix; the CLI maps them to exit code 2.
"""

from __future__ import annotations


class RtcoreError(Exception):
    """Base class of the errors rtcore raises on purpose (bad input, missing data)."""


class BackboneUnavailableError(RtcoreError, RuntimeError):
    """Weights that are needed are not on this machine and cannot be downloaded."""


class CheckpointError(RtcoreError, ValueError):
    """A checkpoint file is not safetensors, is corrupt, or does not fit the architecture."""


class TaskUnavailableError(RtcoreError, RuntimeError):
    """A task's data is not available here; the message says what is missing and how to provide it."""


class InputTooLargeError(RtcoreError, ValueError):
    """An input would take more memory once decoded than the input memory budget (:mod:`rtcore.budget`)."""


class CacheDirError(RtcoreError, ValueError):
    """The chosen cache folder cannot be used (it is a file, or not writable)."""
