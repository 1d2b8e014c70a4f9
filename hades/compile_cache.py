"""A persistent XLA compilation cache, so a command compiles a program once per machine, not once per run.

Compiling dominates short commands (``hades train-from`` spends most of its time there). jax can
keep compiled programs on disk; the cache lives next to the store (``$HADES_HOME/xla-cache``),
``$HADES_XLA_CACHE`` names another folder, and ``HADES_XLA_CACHE=off`` turns it off. jax writes
each entry atomically, so concurrent processes share one folder safely.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "HADES_XLA_CACHE"
_OFF = ("0", "off", "false", "no", "none")


def cache_dir() -> Path | None:
    """Where compiled programs are kept; None when the cache is turned off."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    from hades.store import home

    return home() / "xla-cache"


def enable_compilation_cache(folder: str | Path | None = None) -> Path | None:
    """Point jax's persistent cache at ``folder`` (default :func:`cache_dir`); returns it, or None when off.

    Before jax is imported this only sets jax's own environment variables, so commands that never
    compile pay nothing for it. Programs that compile in under a tenth of a second are not worth
    a file; everything else is kept. A folder the user already gave jax is left alone.
    """
    folder = Path(folder) if folder is not None else cache_dir()
    if folder is None:
        return None
    settings = {"JAX_COMPILATION_CACHE_DIR": str(folder), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.1",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable cache folder only costs compile time; the command still works
    if not os.access(folder, os.W_OK | os.X_OK):
        return None
    import sys

    if "jax" in sys.modules:
        import jax

        for name, value in settings.items():
            jax.config.update(name.lower(), type(getattr(jax.config, name.lower()))(value))
    else:
        os.environ.update(settings)
    return folder


@dataclass(frozen=True)
class CacheUsage:
    folder: Path | None
    entries: int
    bytes: int

    def to_dict(self) -> dict:
        return {"folder": None if self.folder is None else str(self.folder), "entries": self.entries, "bytes": self.bytes}


def cache_usage(folder: str | Path | None = None) -> CacheUsage:
    """How many compiled programs the cache holds and their size on disk."""
    folder = Path(folder) if folder is not None else cache_dir()
    if folder is None or not folder.is_dir():
        return CacheUsage(folder, 0, 0)
    files = [path for path in folder.rglob("*") if path.is_file()]
    return CacheUsage(folder, len(files), sum(path.stat().st_size for path in files))


def clear_cache(folder: str | Path | None = None) -> CacheUsage:
    """Delete every cached program; returns what was removed."""
    usage = cache_usage(folder)
    if usage.folder is not None and usage.folder.is_dir():
        for item in usage.folder.iterdir():
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
    return usage
