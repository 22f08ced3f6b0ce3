"""A simulated data set appears whole or is refused: marker first, manifest last."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryodiff.errors import CryodiffError
from cryodiff.io.dataset import INCOMPLETE, MANIFEST, begin_dataset, check_dataset, finish_dataset
from cryodiff.io.mrc import write_stack

STACKS = ["particles.mrcs", "clean_ctf.mrcs"]


def _folder(tmp_path, n=(6, 6), box=8):
    for name, count in zip(STACKS, n):
        write_stack(tmp_path / name, np.zeros((count, box, box), np.float32), 1.0)
    return tmp_path


def test_complete_data_set_passes(tmp_path):
    folder = _folder(tmp_path)
    begin_dataset(folder)
    finish_dataset(folder, {"n_particles": 6, "box": 8})
    assert not (folder / INCOMPLETE).exists()
    check_dataset(folder, STACKS)


def test_interrupted_writer_leaves_a_refused_folder(tmp_path):
    folder = _folder(tmp_path)
    (folder / MANIFEST).write_text(json.dumps({"n_particles": 6, "box": 8}))
    begin_dataset(folder)  # a new run starts, then is killed before finish_dataset
    assert not (folder / MANIFEST).exists()
    with pytest.raises(CryodiffError, match="incomplete data set.*interrupted"):
        check_dataset(folder, STACKS)


def test_stacks_disagreeing_with_the_manifest_are_refused(tmp_path):
    folder = _folder(tmp_path, n=(9, 9))
    (folder / MANIFEST).write_text(json.dumps({"n_particles": 6, "box": 8}))
    with pytest.raises(CryodiffError, match="particles.mrcs holds 9 images of 8 px but "
                                            "simulation.json says 6"):
        check_dataset(folder, STACKS)
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(CryodiffError, match="unreadable manifest"):
        check_dataset(folder, STACKS)


def test_hand_made_folder_needs_matching_stacks(tmp_path):
    check_dataset(_folder(tmp_path / "a"), STACKS)
    with pytest.raises(CryodiffError, match="the stacks differ"):
        check_dataset(_folder(tmp_path / "b", n=(6, 5)), STACKS)
