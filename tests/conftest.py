"""Shared fixtures: the reference data in the repository's data/, and a maker of bad MRC files."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest


def reference_data_dir() -> Path:
    """``$CRYODIFF_REFERENCE_DATA`` (an override) or the repository's bundled ``data/``."""
    default = Path(__file__).resolve().parents[1] / "data"
    return Path(os.environ.get("CRYODIFF_REFERENCE_DATA", default))


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """Path of the reference data folder; skips the test when it is absent."""
    path = reference_data_dir()
    if not path.is_dir():
        pytest.skip(f"reference data not found at {path}: set CRYODIFF_REFERENCE_DATA")
    return path


def _mrc_bytes(tmp_path: Path, shape=(10, 16, 16)) -> bytes:
    from cryodiff.io.mrc import write_stack

    write_stack(tmp_path / "good.mrcs", np.ones(shape, np.float32), 1.0)
    return (tmp_path / "good.mrcs").read_bytes()


def _make_bad_mrc(tmp_path: Path, kind: str) -> Path:
    """Write a bad MRC file of ``kind`` in ``tmp_path``; return its path."""
    if kind == "missing":
        return tmp_path / "missing.mrc"
    if kind == "not_mrc":
        path = tmp_path / "notes.mrc"
        path.write_text("this is not an MRC file\n" * 100)
        return path
    if kind == "truncated":
        path = tmp_path / "truncated.mrcs"
        path.write_bytes(_mrc_bytes(tmp_path)[:-100])
        return path
    path = tmp_path / f"{kind}.mrc"
    data = {"nan": np.ones((6, 6, 6), np.float32), "non_cubic": np.ones((6, 6, 8), np.float32),
            "image_2d": np.ones((6, 6), np.float32)}[kind]
    if kind == "nan":
        data[2, 3, 4] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile warns about the NaN we want
        with mrcfile.new(path) as mrc:
            mrc.set_data(data)
    return path


@pytest.fixture
def make_bad_mrc():
    """``make_bad_mrc(folder, kind)`` writes a bad MRC file and returns its path; kinds:
    missing, not_mrc, truncated (header promises more data), nan, non_cubic, image_2d."""
    return _make_bad_mrc
