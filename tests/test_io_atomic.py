"""Atomic writes: the target appears only complete; failures leave nothing behind."""

from __future__ import annotations

import json
import os

import pytest

from cryodiff.io.atomic import atomic_path, temp_path_for, write_json_atomic, write_text_atomic


def test_temp_path_keeps_suffix_and_folder(tmp_path):
    tmp = temp_path_for(tmp_path / "particles.mrcs")
    assert tmp.parent == tmp_path
    assert tmp.name == f".particles.tmp-{os.getpid()}.mrcs"
    assert temp_path_for(tmp_path / "README").name == f".README.tmp-{os.getpid()}"


def test_success_renames_over_target(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert os.listdir(target.parent) == ["out.txt"]


def test_failure_keeps_old_target_and_removes_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_json_and_text(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"b": 1, "a": [1.5, "x"]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"b": 1, "a": [1.5, "x"]}
    write_text_atomic(tmp_path / "t.txt", "Å\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "Å\n"
