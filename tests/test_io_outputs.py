"""Output guards: no output replaces an input, bad places get one line, a failed write
(disk full) keeps the old file, and temporary files of killed runs are removed."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import (atomic_path, remove_stale_temps, temp_path_for,
                                write_json_atomic, write_text_atomic)
from cryodiff.io.outputs import check_outputs, same_file


def test_output_equal_to_an_input_is_refused_through_any_path(tmp_path):
    source = tmp_path / "in.mrc"
    source.write_text("data")
    (tmp_path / "link.mrc").symlink_to(source)
    for output in (source, tmp_path / "sub" / ".." / "in.mrc", tmp_path / "link.mrc"):
        with pytest.raises(CryodiffError, match="refusing to overwrite"):
            check_outputs([output], inputs=[source])
    assert source.read_text() == "data"
    check_outputs([tmp_path / "out.mrc"], inputs=[source, None])


def test_same_file_for_missing_paths_compares_resolved_names(tmp_path):
    assert same_file(tmp_path / "a" / ".." / "x", tmp_path / "x")
    assert not same_file(tmp_path / "x", tmp_path / "y")


def test_folder_where_a_file_is_wanted_and_the_reverse(tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(CryodiffError, match="existing folder"):
        check_outputs([tmp_path / "adir"])
    with pytest.raises(CryodiffError, match="existing file; the output must be a folder"):
        check_outputs(folder=tmp_path / "afile")
    with pytest.raises(CryodiffError, match="is a file, not a folder"):
        check_outputs([tmp_path / "afile" / "x.mrc"])
    with pytest.raises(CryodiffError, match="existing folder"), atomic_path(tmp_path / "adir"):
        pass
    assert (tmp_path / "afile").read_text() == "keep"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(CryodiffError, match="not writable"):
            check_outputs([locked / "out.mrc"])
        with pytest.raises(CryodiffError, match="not writable"):
            check_outputs(folder=locked)
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on the device"),
                                         (errno.EACCES, "permission denied"),
                                         (errno.EROFS, "read-only file system")])
def test_write_failure_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch, code, words):
    target = tmp_path / "out.json"
    target.write_text("old")

    def failing_replace(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(CryodiffError) as error:
        write_json_atomic(target, {"a": 1})
    assert words in str(error.value) and str(target) in str(error.value)
    assert "\n" not in str(error.value)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.json"]


def test_disk_full_during_writing(tmp_path):
    """A real ENOSPC from the kernel: /dev/full refuses every write."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(CryodiffError, match="no space left"), atomic_path(target) as tmp:
        with open("/dev/full", "w") as full:
            tmp.write_text("partial")
            full.write("x" * 10)
            full.flush()
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_errors_about_other_files_are_not_blamed_on_the_output(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "out.txt"):
        open(tmp_path / "missing-input.txt").read()


def test_json_is_strict_and_non_finite_floats_become_null(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"res": float("inf"), "c": [1.0, float("nan")]})
    text = (tmp_path / "a.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"res": None, "c": [1.0, None]}


def test_temporary_files_of_killed_runs_are_removed_on_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # that process has exited: its pid is free (or reused)
    target = tmp_path / "particles.mrcs"
    leftover = tmp_path / f".particles.tmp-{dead_pid}.mrcs"
    other = tmp_path / f".clean.tmp-{dead_pid}.mrcs"
    live = tmp_path / f".particles.tmp-{os.getppid()}.mrcs"  # a live process: kept
    for path in (leftover, other, live):
        path.write_text("half")
    alive = _alive(dead_pid)
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert leftover.exists() == alive and other.exists() and live.exists()
    assert remove_stale_temps(tmp_path / "clean.mrcs") == ([] if alive else [other])
    assert temp_path_for(target).name == f".particles.tmp-{os.getpid()}.mrcs"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
