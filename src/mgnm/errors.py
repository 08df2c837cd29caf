"""User-facing errors.

Every problem a user can cause (bad data, a misspelt config key, a corrupt checkpoint) is
raised as a :class:`MgnmError` subclass whose message names the file, line or key. The CLI
prints the message alone and exits with status 2; Python callers can catch the class.
"""

from __future__ import annotations


class MgnmError(Exception):
    """Base class for errors caused by the user's input, with a message meant for people."""

    exit_code = 2


class DataError(MgnmError):
    """A dataset directory, interaction file or feature file is missing or malformed."""


class ConfigError(MgnmError):
    """An unknown key, an out-of-range value, an unknown model or preset."""


class CheckpointError(MgnmError):
    """A run directory or checkpoint is missing, incomplete or corrupt."""


class StorageError(MgnmError):
    """The operating system refused a read or write (no permission, disk full, a path under a
    file); the message names the path and the reason."""


def os_error_message(path: object, exc: OSError, action: str = "cannot write") -> str:
    """``<path>: cannot write (<reason>)``, the one line an :class:`OSError` becomes."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{path}: {action} ({reason})"


class TrainingError(MgnmError):
    """Training cannot continue (for example a loss that became NaN)."""


class UnsupportedError(MgnmError):
    """The run's model has no method for the requested placement of a new user or item
    (HTTP 501)."""
