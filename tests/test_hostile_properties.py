"""Property-based hostile input (Hypothesis): generated MRC headers and CLI arguments.

Each generated case must end either in exit 0 with a finite output of the right shape, or in
exit 2 with one line on stderr and the file already at the output path untouched.
(Generated STAR rows: tests/test_io_star_checks.py.)
"""

from __future__ import annotations

import json
import math

import mrcfile.constants
import mrcfile.dtypes
import mrcfile.utils
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cryodiff.cli import main as cli
from cryodiff.io.mrc import read_map
from hostile_helpers import BOX, tiny_dataset

# Derandomized (the same cases on every run, no flakiness) and no example database on disk.
FIXTURES_OK = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                       suppress_health_check=[HealthCheck.function_scoped_fixture])
SENTINEL = b"an older file that must survive"


def _check_outcome(code: int, capsys) -> str:
    captured = capsys.readouterr()
    assert code in (0, 2), (code, captured.err)
    if code == 2:
        err = captured.err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("cryodiff: error:"), err
    return captured.out


def _mrc_file(path, shape, mode, cell_x, id_ok, cut_values, nan):
    header = np.zeros((), dtype=mrcfile.dtypes.HEADER_DTYPE.newbyteorder("<"))
    nz, ny, nx = shape
    header["nx"], header["ny"], header["nz"] = nx, ny, nz
    header["mode"] = mode
    header["mx"], header["my"], header["mz"] = nx, ny, nz
    header["cella"] = (cell_x, cell_x, cell_x)
    header["cellb"] = (90.0, 90.0, 90.0)
    header["mapc"], header["mapr"], header["maps"] = 1, 2, 3
    header["map"] = mrcfile.constants.MAP_ID if id_ok else b"JUNK"
    header["machst"] = mrcfile.utils.machine_stamp_from_byte_order("<")
    header["nversion"] = 20140
    data = np.linspace(-1, 1, max(nx * ny * nz, 0)).astype(np.float32)
    if mode == 2 and data.size and nan:
        data[data.size // 2] = np.nan
    payload = header.tobytes() + data.tobytes()
    path.write_bytes(payload[:len(payload) - cut_values * 4])
    return path


@FIXTURES_OK
@given(shape=st.one_of(st.integers(1, 5).map(lambda n: (n, n, n)),
                       st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5))),
       mode=st.sampled_from([2, 2, 2, 0, 1, 6, 12, 99]),
       cell_x=st.one_of(st.sampled_from([0.0, -5.0, float("nan"), float("inf")]),
                        st.floats(0.1, 1000.0), st.floats(0.1, 1000.0)),
       id_ok=st.sampled_from([True, True, True, False]),
       cut_values=st.sampled_from([0, 0, 0, 1, 7]), nan=st.sampled_from([False, False, True]))
def test_generated_mrc_headers_read_or_refuse_in_one_line(tmp_path, capsys, shape, mode,
                                                          cell_x, id_ok, cut_values, nan):
    path = _mrc_file(tmp_path / "gen.mrc", shape, mode, cell_x, id_ok, cut_values, nan)
    out = _check_outcome(cli(["info", str(path), "--json"]), capsys)
    event("read" if out else "refused")
    if out:
        summary = json.loads(out)  # strict JSON: no NaN / Infinity
        assert summary["pixel_size_A"] >= 0 and math.isfinite(summary["pixel_size_A"])
        assert all(v is None or math.isfinite(v) for v in
                   (summary["min"], summary["max"], summary["mean"]))
    try:
        volume, pixel_size_A = read_map(path)
    except Exception as error:  # only the package error is allowed
        from cryodiff.errors import CryodiffError

        assert isinstance(error, CryodiffError), repr(error)
        assert "\n" not in str(error)
        return
    assert volume.ndim == 3 and len(set(volume.shape)) == 1
    assert torch.isfinite(volume).all() and pixel_size_A >= 0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("hostile") / "data")


BAD_NUMBERS = st.sampled_from(["0", "-3", "nan", "inf", "-inf", "1e309", "abc", "", "2.5"])


def _mostly(valid, bad):
    """``valid`` three times in four, else ``bad``: about a third of the runs succeed."""
    return st.integers(0, 3).flatmap(lambda k: valid if k < 3 else bad)


batches = _mostly(st.integers(1, 40).map(str), BAD_NUMBERS)
seeds = _mostly(st.integers(0, 5).map(str), BAD_NUMBERS)
regularizations = _mostly(st.floats(0, 10).map(repr), st.one_of(
    BAD_NUMBERS, st.floats(allow_nan=True, allow_infinity=True).map(repr)))
devices = _mostly(st.sampled_from(["cpu", "auto", "cpu:0"]),
                  st.sampled_from(["cuda:7", "gpu", "mps", "tpu:1"]))


@FIXTURES_OK
@given(batch=batches, regularization=regularizations, seed=seeds, device=devices)
def test_generated_reconstruct_arguments(dataset, tmp_path, capsys, batch, regularization,
                                         seed, device):
    out = tmp_path / "map.mrc"
    out.write_bytes(SENTINEL)
    argv = ["reconstruct", str(dataset / "particles.star"), "--out", str(out), "--quiet",
            f"--batch-size={batch}", f"--regularization={regularization}", f"--seed={seed}",
            f"--device={device}"]
    try:
        code = cli(argv)
    except SystemExit as exit_:  # argparse's own usage errors (e.g. an empty value)
        code = exit_.code
        capsys.readouterr()
        assert code == 2
        assert out.read_bytes() == SENTINEL
        return
    _check_outcome(code, capsys)
    event(f"exit {code}")
    if code == 2:
        assert out.read_bytes() == SENTINEL
        return
    volume, pixel_size_A = read_map(out)
    assert volume.shape == (BOX,) * 3 and torch.isfinite(volume).all() and pixel_size_A == 3.0
