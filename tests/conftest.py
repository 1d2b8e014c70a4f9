"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The published datasets and result files (test material only, never copied into the repository).
REFERENCE_DIR = Path(os.environ.get("HADES_REFERENCE_DIR", Path(__file__).resolve().parents[2] / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference folder; tests that need it are skipped where it is absent."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE_DIR} (set HADES_REFERENCE_DIR to the shared/reference folder)")
    return REFERENCE_DIR
