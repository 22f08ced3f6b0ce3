"""MRC maps and stacks: round trips, partial and streamed I/O, and every kind of bad file."""

from __future__ import annotations

import os

import mrcfile
import numpy as np
import pytest
import torch

from cryodiff.errors import CryodiffError
from cryodiff.io.mrc import (StackFile, StackWriter, describe_mrc, read_map, read_stack,
                             stack_info, write_map, write_stack)


@pytest.mark.parametrize("box", [16, 17])
def test_map_round_trip(tmp_path, box):
    volume = torch.randn(box, box, box, generator=torch.Generator().manual_seed(box))
    write_map(tmp_path / "m.mrc", volume, 1.7)
    read, pixel_size_A = read_map(tmp_path / "m.mrc")
    assert read.dtype == torch.float32 and torch.equal(read, volume)
    assert pixel_size_A == 1.7


def test_map_in_nonstandard_axis_order_is_transposed(tmp_path):
    volume = np.arange(4 * 4 * 4, dtype=np.float32).reshape(4, 4, 4)  # [z, y, x]
    with mrcfile.new(tmp_path / "swapped.mrc") as mrc:
        # Store with columns = z, rows = y, sections = x: data axes (x, y, z).
        mrc.set_data(np.ascontiguousarray(volume.transpose(2, 1, 0)))
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
    read, _ = read_map(tmp_path / "swapped.mrc")
    assert torch.equal(read, torch.from_numpy(volume))


@pytest.mark.parametrize("box", [8, 9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stack_round_trip_and_partial_read(tmp_path, box, dtype):
    images = torch.randn(12, box, box, dtype=dtype)
    write_stack(tmp_path / "s.mrcs", images, 2.5)
    assert stack_info(tmp_path / "s.mrcs") == (12, box, 2.5)
    assert torch.equal(read_stack(tmp_path / "s.mrcs"), images.float())
    picked = read_stack(tmp_path / "s.mrcs", [7, 0, 7, 11])
    assert torch.equal(picked, images.float()[[7, 0, 7, 11]])
    with mrcfile.open(tmp_path / "s.mrcs") as mrc:
        assert mrc.is_image_stack()


def test_stack_writer_streams_chunks_with_valid_header(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3.0, 2.0, size=(n, 10, 10)).astype(np.float32) for n in (4, 0, 7, 1)]
    path = tmp_path / "stream.mrcs"
    with StackWriter(path, 10, 1.25) as writer:
        for chunk in chunks:
            writer.write(torch.from_numpy(chunk))
            assert not path.exists()
    full = np.concatenate(chunks)
    assert writer.n_written == 12
    assert mrcfile.validate(str(path), print_file=open(os.devnull, "w"))
    with mrcfile.open(path) as mrc:
        np.testing.assert_array_equal(mrc.data, full)
        assert mrc.voxel_size.x == pytest.approx(1.25)
        assert mrc.header.dmin == full.min() and mrc.header.dmax == full.max()
        assert mrc.header.dmean == pytest.approx(full.mean(), rel=1e-5)
        assert mrc.header.rms == pytest.approx(full.std(), rel=1e-5)


def test_stack_writer_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), StackWriter(tmp_path / "s.mrcs", 4, 1.0) as writer:
        writer.write(np.zeros((3, 4, 4), np.float32))
        raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_stack_writer_rejects_wrong_box(tmp_path):
    with pytest.raises(ValueError), StackWriter(tmp_path / "s.mrcs", 4, 1.0) as writer:
        writer.write(np.zeros((3, 5, 5), np.float32))
    assert os.listdir(tmp_path) == []


def test_describe(tmp_path):
    write_stack(tmp_path / "s.mrcs", torch.arange(2 * 3 * 3.0).reshape(2, 3, 3), 1.0)
    summary = describe_mrc(tmp_path / "s.mrcs")
    assert summary["kind"] == "stack" and summary["shape"] == [2, 3, 3]
    assert (summary["min"], summary["max"], summary["mean"]) == (0.0, 17.0, 8.5)
    write_map(tmp_path / "m.mrc", torch.ones(5, 5, 5), 3.0)
    assert describe_mrc(tmp_path / "m.mrc")["kind"] == "map"
    with mrcfile.new(tmp_path / "stack_group.mrc") as mrc:
        mrc.set_data(np.ones((5, 5, 5), np.float32))
        mrc.header.ispg = 0  # some programs write maps like this: cubic means map
    assert describe_mrc(tmp_path / "stack_group.mrc")["kind"] == "map"
    with mrcfile.new(tmp_path / "image.mrc") as mrc:
        mrc.set_data(np.ones((4, 4), np.float32))
    assert describe_mrc(tmp_path / "image.mrc")["shape"] == [1, 4, 4]  # a stack of one
    assert describe_mrc(tmp_path / "image.mrc")["kind"] == "stack"


def test_reference_files_read(reference_data):
    volume, _ = read_map(reference_data / "relion_reference" / "ribosome70S_65.mrc")
    assert volume.shape == (65, 65, 65)
    n, box, pixel_size_A = stack_info(reference_data / "real_particles" / "empiar_10076_7.mrcs")
    assert (n, box) == (7, 320)
    with StackFile(reference_data / "relion_reference" / "rln_proj_64_centered.mrcs") as stack:
        assert (stack.n_images, stack.box, stack.pixel_size_A) == (4, 64, 1.0)


# Bad files (from conftest's make_bad_mrc): the library raises CryodiffError naming the file.

@pytest.mark.parametrize("kind, reader, message", [
    ("missing", read_map, "file not found"),
    ("not_mrc", read_map, "not an MRC file"),
    ("truncated", read_stack, "truncated"),
    ("truncated", stack_info, "truncated"),
    ("nan", read_map, "NaN"),
    ("non_cubic", read_map, "not cubic"),
    ("image_2d", read_map, "2D image"),
])
def test_bad_files_raise(tmp_path, make_bad_mrc, kind, reader, message):
    path = make_bad_mrc(tmp_path, kind)
    with pytest.raises(CryodiffError, match=message) as error:
        reader(path)
    assert error.value.path == str(path)


def test_index_past_end_raises(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.zeros((3, 4, 4), np.float32), 1.0)
    with pytest.raises(CryodiffError, match="image 4 requested but the stack has only 3"):
        read_stack(tmp_path / "s.mrcs", [0, 3])
