"""``cryodiff simulate`` end to end: files, printed SNRs, one-line errors."""

from __future__ import annotations

import json

import pytest

from cryodiff.cli import main


def test_simulate_writes_the_dataset(tmp_path, capsys):
    out = tmp_path / "data"
    rc = main(["simulate", "--map", "phantom", "--box", "32", "--n", "20", "--snr", "0.1",
               "--structural-snr", "1.0", "--defocus-range", "1.5", "2.0", "--seed", "3",
               "--belt", "--chunk-size", "8", "--out", str(out)])
    assert rc == 0
    for name in ("particles.mrcs", "clean.mrcs", "clean_ctf.mrcs", "particles.star", "simulation.json"):
        assert (out / name).is_file()
    summary = json.loads((out / "simulation.json").read_text())
    assert summary["config"]["defocus_range_um"] == [1.5, 2.0] and summary["config"]["belt"]
    assert summary["config"]["seed"] == 3 and summary["n_particles"] == 20
    assert "measured SNR" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--map", "phantom", "--snr", "-1"], "--snr"),
    (["--map", "phantom", "--snr", "0.1", "--structural-snr", "0.05"], "--structural-snr"),
    (["--map", "phantom", "--snr", "0.1", "--defocus-range", "3", "1"], "--defocus-range"),
    (["--map", "MISSING", "--snr", "0.1"], "not found"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    args = [a.replace("MISSING", str(tmp_path / "missing.mrc")) for a in args]
    rc = main(["simulate", "--box", "32", "--n", "4", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "out" / "particles.mrcs").exists()


def test_map_without_pixel_size(tmp_path, capsys, reference_data):
    path = reference_data / "ribosome70S" / "ribosome70S_65.mrc"
    rc = main(["simulate", "--map", str(path), "--box", "32", "--n", "4", "--snr", "0.1",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--pixel-size" in err and str(path) in err
