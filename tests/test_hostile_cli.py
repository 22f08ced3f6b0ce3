"""Hostile but realistic use of the CLI: one test per fault class of docs/reliability.md.

Every run ends with exit 0 and a correct output, or exit 2 (130/143 when interrupted) with
one line on stderr and nothing that was already there lost.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import time

import numpy as np
import pytest
import torch

from cryodiff.cli import main as cli
from cryodiff.io.mrc import read_map, write_map, write_stack
from hostile_helpers import BOX, tiny_dataset


def _one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("cryodiff: error:") and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture
def data(tmp_path):
    return tiny_dataset(tmp_path / "data")


# 1. values read from files ---------------------------------------------------------------

@pytest.mark.parametrize("old, new, words", [
    (" 300.0 ", " 0.0 ", "column rlnVoltage, optics group 1"),
    (" 0.1 ", " 1.5 ", "column rlnAmplitudeContrast"),
    (" 3.0 16 ", " nan 16 ", "column rlnImagePixelSize"),
])
def test_impossible_star_values_stop_before_any_map_is_written(data, capsys, old, new, words):
    star = data / "particles.star"
    star.write_text(star.read_text().replace(old, new, 1))
    out = data / "map_out.mrc"
    assert cli(["reconstruct", str(star), "--out", str(out), "--quiet"]) == 2
    _one_line_error(capsys, words, str(star))
    assert not out.exists()


def test_nan_pixel_is_refused_or_skipped_never_averaged(tmp_path, capsys):
    folder = tiny_dataset(tmp_path, nan_image=4)
    out = tmp_path / "out.mrc"
    assert cli(["reconstruct", str(folder / "particles.star"), "--out", str(out),
                "--quiet"]) == 2
    _one_line_error(capsys, "image 5 has NaN", "--skip-bad")
    assert not out.exists()
    assert cli(["reconstruct", str(folder / "particles.star"), "--out", str(out), "--quiet",
                "--skip-bad"]) == 0
    assert "skipped 1 of 12 images" in capsys.readouterr().out
    volume, _ = read_map(out)
    assert volume.shape == (BOX,) * 3 and torch.isfinite(volume).all() and volume.abs().max() > 0


# 2. outputs ----------------------------------------------------------------------------

def test_outputs_never_overwrite_inputs(data, capsys):
    star, stack, volume = data / "particles.star", data / "particles.mrcs", data / "map.mrc"
    before = {p: p.read_bytes() for p in (star, stack, volume)}
    cases = [
        ["reconstruct", str(star), "--out", str(stack)],
        ["reconstruct", str(star), "--out", str(data / "sub" / ".." / "particles.mrcs")],
        ["project", str(volume), "--star", str(star), "--out", str(stack)],
        ["fsc", str(volume), str(volume), "--json", str(volume)],
        ["fsc", str(volume), str(volume), "--plot", str(data / "map.png"), "--json",
         str(data / "map.png")],
    ]
    for argv in cases:
        assert cli(argv) == 2, argv
        _one_line_error(capsys)
    assert {p: p.read_bytes() for p in before} == before


def test_output_folder_or_file_in_the_wrong_place(data, tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("keep")
    star = str(data / "particles.star")
    assert cli(["reconstruct", star, "--out", str(tmp_path / "adir")]) == 2
    _one_line_error(capsys, "existing folder")
    assert cli(["reconstruct", star, "--out", str(tmp_path / "afile" / "m.mrc")]) == 2
    _one_line_error(capsys, "is a file, not a folder")
    assert cli(["simulate", "--map", "phantom", "--box", "32", "--n", "4", "--snr", "1",
                "--out", str(tmp_path / "afile")]) == 2
    _one_line_error(capsys, "must be a folder")
    assert (tmp_path / "afile").read_text() == "keep"


def test_disk_full_keeps_the_old_output(data, capsys, monkeypatch):
    out = data / "fsc.json"
    out.write_text("old")

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    assert cli(["fsc", str(data / "map.mrc"), str(data / "map.mrc"), "--json", str(out)]) == 2
    _one_line_error(capsys, "no space left", str(out))
    assert out.read_text() == "old"
    assert not [p for p in os.listdir(data) if ".tmp-" in p]


# 3. multi-file outputs and interruptions ---------------------------------------------------

def test_simulation_killed_while_renaming_leaves_a_refused_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sim"
    base = ["simulate", "--map", "phantom", "--box", "32", "--n", "6", "--snr", "1",
            "--out", str(out)]
    assert cli(base) == 0
    capsys.readouterr()
    import cryodiff.io.star as star_module
    import cryodiff.simulate as simulate_module
    from cryodiff.io.dataset import check_dataset

    def stopped(*args, **kwargs):  # while simulating, before any file is replaced
        raise KeyboardInterrupt

    monkeypatch.setattr(simulate_module, "simulate_at_poses", stopped)
    assert cli(base[:6] + ["9"] + base[7:]) == 130
    monkeypatch.undo()
    check_dataset(out, ["particles.mrcs", "clean_ctf.mrcs"])  # the old set is still whole

    def killed(*args, **kwargs):  # after the new stacks are in place, before the STAR
        raise KeyboardInterrupt

    monkeypatch.setattr(star_module, "write_particles", killed)
    assert cli(base[:6] + ["9"] + base[7:]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert not [p for p in os.listdir(out) if ".tmp-" in p]
    assert cli(["train", "--data", str(out), "--out", str(tmp_path / "run"), "--device", "cpu",
                "--steps", "1"]) == 2
    _one_line_error(capsys, "incomplete data set")


def test_sigterm_removes_temporary_files_like_ctrl_c(tmp_path, capsys, monkeypatch):
    import cryodiff.cli.info as info
    from cryodiff.io.atomic import atomic_path

    target = tmp_path / "out.txt"

    def slow_writer(args):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted by the handler long before
        return 0

    monkeypatch.setattr(info, "main", slow_writer)
    previous = signal.getsignal(signal.SIGTERM)
    assert cli(["info", str(tmp_path)]) == 143
    assert "terminated" in capsys.readouterr().err
    assert os.listdir(tmp_path) == [] and signal.getsignal(signal.SIGTERM) is previous


# 4. arguments, empty inputs, JSON, pixel sizes --------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["train", "--map", "phantom", "--out", "{t}/r", "--steps", "0"], "argument --steps"),
    (["train", "--map", "phantom", "--out", "{t}/r", "--snr", "-1"], "argument --snr"),
    (["simulate", "--map", "phantom", "--box", "32", "--n", "0", "--snr", "1", "--out", "{t}/s"],
     "argument --n"),
    (["simulate", "--map", "phantom", "--box", "32", "--n", "5", "--snr", "nan", "--out",
      "{t}/s"], "argument --snr"),
    (["simulate", "--map", "{t}/data/map.mrc", "--box", "16", "--n", "5", "--snr", "1",
      "--pixel-size", "0", "--out", "{t}/s"], "argument --pixel-size"),
    (["fsc", "{t}/data/map.mrc", "{t}/data/map.mrc", "--plot", "{t}/out.xyz"],
     "unknown figure format"),
    (["reconstruct", "{t}/data/particles.star", "--out", "{t}/m.mrc", "--device", "tpu"],
     "unknown device"),
    (["reconstruct", "{t}/data/particles.star", "--out", "{t}/m.mrc", "--batch-size", "-3"],
     "argument --batch-size"),
])
def test_bad_arguments_get_one_line(tmp_path, data, capsys, argv, words):
    argv = [a.replace("{t}", str(tmp_path)) for a in argv]
    assert cli(argv) == 2
    _one_line_error(capsys, words)
    assert not (tmp_path / "s").exists() and not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it(data, capsys):
    assert cli(["reconstruct", str(data / "particles.star"), "--out", str(data / "m.mrc"),
                "--device", "cuda"]) == 2
    _one_line_error(capsys, "CUDA is not available")


def test_empty_inputs_and_strict_json(tmp_path, capsys):
    write_stack(tmp_path / "empty.mrcs", np.zeros((0, 8, 8), np.float32), 1.0)
    assert cli(["info", str(tmp_path / "empty.mrcs"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)  # strict: no Infinity / NaN tokens
    assert summary["shape"][0] == 0 and summary["min"] is None
    star = tmp_path / "empty.star"
    star.write_text("data_particles\n\nloop_\n_rlnImageName #1\n")
    assert cli(["info", str(star)]) == 2
    _one_line_error(capsys, "no rows")


def test_fsc_json_without_a_finite_resolution_says_why(tmp_path, capsys):
    g = torch.Generator().manual_seed(1)
    write_map(tmp_path / "a.mrc", torch.randn(16, 16, 16, generator=g), 2.0)
    write_map(tmp_path / "b.mrc", -torch.randn(16, 16, 16, generator=g), 2.0)
    assert cli(["fsc", str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc"), "--json",
                str(tmp_path / "f.json")]) == 0
    text = (tmp_path / "f.json").read_text()
    payload = json.loads(text)
    assert "Infinity" not in text and "NaN" not in text
    nulls = [k for k in ("resolution_0143", "resolution_05") if payload[k] is None]
    assert set(payload.get("notes", {})) == set(nulls)


def test_project_refuses_a_map_at_another_pixel_size(data, capsys):
    volume, _ = read_map(data / "map.mrc")
    write_map(data / "map_1A.mrc", volume, 1.0)
    out = data / "proj.mrcs"
    assert cli(["project", str(data / "map_1A.mrc"), "--star", str(data / "particles.star"),
                "--out", str(out)]) == 2
    _one_line_error(capsys, "pixel size 3 Å differs from the map's 1 Å")
    assert not out.exists()
    assert cli(["project", str(data / "map.mrc"), "--star", str(data / "particles.star"),
                "--out", str(out)]) == 0


# 5. checkpoints ----------------------------------------------------------------------------

class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoints_never_run_code_and_fail_in_plain_words(tmp_path, data, capsys):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "cryodiff-checkpoint-1", "model": _Payload(marker)}, evil)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x1b[31mPK\x03\x04" + bytes(range(256)))
    truncated = tmp_path / "truncated.pt"
    torch.save({"w": torch.ones(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    folder = tmp_path / "empty_run"
    folder.mkdir()
    out = str(tmp_path / "den.mrcs")
    for checkpoint, words in [(evil, "refused without running them"),
                              (garbage, "not a readable checkpoint"),
                              (truncated, "truncated or damaged"),
                              (folder, "no checkpoint found")]:
        assert cli(["denoise", str(data / "particles.mrcs"), "--checkpoint", str(checkpoint),
                    "--out", out, "--device", "cpu"]) == 2
        err = _one_line_error(capsys, words, str(checkpoint))
        assert "\x1b" not in err and len(err) < 300
    assert not marker.exists()
    assert not (tmp_path / "den.mrcs").exists()
    control = tmp_path / "control"  # the payload really is active under plain pickle
    pickle.loads(pickle.dumps(_Payload(control))).close()
    assert control.exists()
