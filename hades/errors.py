"""Every error hades raises on purpose.

Each class also inherits the builtin a caller would naturally catch (``ValueError`` for bad
content, ``FileNotFoundError`` for missing things, ...), so library users are not forced to
import ours. The CLI turns any :class:`HadesError` into one line and exit code 1.
"""

from __future__ import annotations


class HadesError(Exception):
    """Base class: a problem the user can fix, with a message saying how."""


class FormatError(HadesError, ValueError):
    """A dataset or policy file is corrupt, truncated or does not match the format."""


class VersionError(FormatError):
    """The file was written by a format version this release cannot read."""


class ShapeError(FormatError):
    """Arrays do not have the shapes the environment requires."""


class ChecksumError(FormatError):
    """File bytes do not match the sha256 recorded for them."""


class CardError(FormatError):
    """The metadata card (README.md) is missing or malformed."""


class UnknownEnvError(HadesError, LookupError):
    """An environment name that the catalogue does not know."""


class SpecError(HadesError, ValueError):
    """A malformed architecture, identifier or other user-written specification."""


class MultiHostError(SpecError):
    """Multi-host settings that are missing or do not fit together (the coordinator, the process count, the id)."""


class NotFoundError(HadesError, FileNotFoundError):
    """A dataset, policy, file or Hub repository that is not there."""


class HubError(HadesError, ConnectionError):
    """The Hub could not be reached or refused the request."""


class AuthError(HubError, PermissionError):
    """The Hub refused the credentials (or their absence)."""


class CheckpointError(HadesError, RuntimeError):
    """A checkpoint that cannot be resumed (missing, corrupt, or from another config)."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """A run was asked to resume, but its output folder holds no checkpoint."""


class SettingsMismatchError(CheckpointError):
    """The checkpoint was made with other settings than the run that would resume it."""


class OutputInUseError(SpecError, FileExistsError):
    """A fresh run's output folder already holds files (resume it, or write elsewhere)."""


class OutputPathError(HadesError, OSError):
    """An output path that cannot be written (a file where a folder should be, no permission, ...)."""

    def __str__(self) -> str:  # OSError's own would print the args tuple of a one-argument error
        return str(self.args[0]) if self.args else "cannot write the output"


class HubTimeoutError(HubError, TimeoutError):
    """A Hub operation ran past its time limit (a Hub that accepts connections and never answers)."""
