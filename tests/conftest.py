"""Shared fixtures: the location of the RELION/real-data reference set in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def reference_data_dir() -> Path:
    """``$CRYODIFF_REFERENCE_DATA`` or ``../shared/data`` next to the repository root."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("CRYODIFF_REFERENCE_DATA", default))


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """Path of the reference data folder; skips the test when it is absent."""
    path = reference_data_dir()
    if not path.is_dir():
        pytest.skip(f"reference data not found at {path}: set CRYODIFF_REFERENCE_DATA")
    return path
