"""What a killed process leaves behind (staging folders, temporary files) is named after its pid,
so the next operation of the same kind can tell a dead writer's leftovers from a live one's and
remove them."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def owned_prefix(prefix: str) -> str:
    """``prefix`` + this process's pid: the name of a temporary thing :func:`clean_dead` can judge."""
    return f"{prefix}{os.getpid()}-"


def left_by_dead(item: Path, prefix: str) -> bool:
    """Whether ``item`` is named ``prefix`` + PID + ``-...`` and that process is gone."""
    if not item.name.startswith(prefix):
        return False
    pid = item.name[len(prefix):].split("-", 1)[0]
    return pid.isdigit() and not alive(int(pid))


def clean_dead(parent: str | Path, prefix: str) -> list[Path]:
    """Remove the entries of ``parent`` named ``prefix`` + PID + ``-...`` whose process is gone."""
    removed = []
    try:
        candidates = list(Path(parent).glob(f"{prefix}*"))
    except OSError:
        return removed
    for item in candidates:
        if not left_by_dead(item, prefix):
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            try:
                item.unlink()
            except OSError:
                continue
        removed.append(item)
    return removed


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory:
    """A TemporaryDirectory in TMPDIR whose name carries the pid; leftovers of dead ones go first."""
    clean_dead(tempfile.gettempdir(), prefix)
    return tempfile.TemporaryDirectory(prefix=owned_prefix(prefix))
