"""Checks on the paths a command will read or write, made before any work starts: a distillation
should not fail on its ``--out`` after an hour, nor a video after the training it records."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from hades.debris import owned_prefix
from hades.errors import FormatError, NotFoundError, OutputPathError

NAME_MAX = 255  # bytes per path component on the filesystems hades writes to


def check_output_folder(path: str | Path, what: str = "output folder") -> Path:
    """Refuse a folder that exists as a file, or that cannot be created and written."""
    path = Path(path)
    _check_names(path, what)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"the {what} {path} is a file, not a folder")
    _check_creatable(path, what)
    return path


def check_output_file(path: str | Path, what: str = "output file", suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse a file path whose folder cannot be written, that names a folder, or has the wrong suffix."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputPathError(f"the {what} {path} must end in {' or '.join(suffixes)}")
    _check_names(path, what)
    if path.is_dir():
        raise OutputPathError(f"the {what} {path} is a folder, not a file")
    _check_creatable(path.parent, what)
    return path


def check_input(path: str | Path, what: str = "input") -> Path:
    """Refuse what cannot be read as a file or folder: pipes and devices (reading them may never end),
    link loops, names too long, paths through a file."""
    path = Path(path)
    _check_names(path, what, exists=True)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist") from None
    except NotADirectoryError:
        raise NotFoundError(f"{path} does not exist: a part of it is a file, not a folder") from None
    except OSError as exc:
        raise FormatError(f"cannot read {path}: {exc.strerror}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise FormatError(f"{path} is not a regular file or folder (a pipe, socket or device); give a file")
    if not os.access(path, os.R_OK):
        raise FormatError(f"cannot read {path}: permission denied")
    return path


def _check_names(path: Path, what: str, exists: bool = False) -> None:
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            message = (f"the {what} name {part[:24]}... is {len(os.fsencode(part))} bytes long; "
                       f"the filesystem allows {NAME_MAX}")
            raise (NotFoundError(message) if exists else OutputPathError(message))


def _check_creatable(path: Path, what: str) -> None:
    ancestor = path
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"cannot create the {what} {path}: {ancestor} is a file, not a folder")
    try:  # os.access says yes to root everywhere, /proc included: only a real file says the truth
        handle, probe = tempfile.mkstemp(prefix=owned_prefix(".hades-") + "write-check-", dir=ancestor)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"cannot write the {what} {path}: {ancestor} is not writable "
                              f"({exc.strerror or type(exc).__name__})") from None
