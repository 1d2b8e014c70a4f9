"""`hades train-from` and `hades eval`."""
from __future__ import annotations

from hades.cli import app  # noqa: F401
