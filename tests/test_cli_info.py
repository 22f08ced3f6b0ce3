"""``cryodiff info``: summaries of STAR and MRC files, and one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cryodiff.cli import main
from cryodiff.io.mrc import write_map, write_stack
from cryodiff.io.star import particles_from_arrays, write_particles


def _run_json(capsys, path) -> dict:
    assert main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_star_summary(reference_data, capsys):
    summary = _run_json(capsys, reference_data / "star_formats/relion31_6opticsgroups.star")
    assert (summary["particles"], summary["box"]) == (139, 196)
    assert summary["pixel_size_A"] == [1.24, 1.25]
    assert len(summary["optics_groups"]) == 6
    assert summary["optics_groups"]["4"]["cs_mm"] == 2.6
    assert sum(g["particles"] for g in summary["optics_groups"].values()) == 139
    assert len(summary["missing_stacks"]) == summary["stacks"] == 139


def test_real_star_summary_text(reference_data, capsys):
    assert main(["info", str(reference_data / "real_particles/empiar_10076_7.star")]) == 0
    out = capsys.readouterr().out
    assert "particles: 7" in out and "box: 320" in out and "pixel_size_A: [1.31]" in out
    assert "missing_stacks: 0" in out


@pytest.mark.parametrize("box", [6, 7])
def test_mrc_summaries(tmp_path, capsys, box):
    volume = torch.arange(box**3, dtype=torch.float32).reshape(box, box, box)
    write_map(tmp_path / "m.mrc", volume, 2.0)
    summary = _run_json(capsys, tmp_path / "m.mrc")
    assert summary["kind"] == "map" and summary["shape"] == [box] * 3
    assert (summary["min"], summary["max"]) == (0.0, box**3 - 1.0)
    assert summary["mean"] == pytest.approx((box**3 - 1) / 2)
    assert summary["pixel_size_A"] == 2.0
    write_stack(tmp_path / "s.mrcs", -volume, 1.5)
    summary = _run_json(capsys, tmp_path / "s.mrcs")
    assert summary["kind"] == "stack" and summary["pixel_size_A"] == 1.5
    assert (summary["min"], summary["max"]) == (1.0 - box**3, 0.0)


def _star_with_stack(tmp_path, name, stack_images, star_box, n):
    write_stack(tmp_path / f"{name}.mrcs", torch.zeros(stack_images, 8, 8), 1.0)
    particles = particles_from_arrays(tmp_path / f"{name}.mrcs", np.zeros((n, 3)), None, None,
                                      1.0, star_box)
    write_particles(tmp_path / f"{name}.star", particles)
    return tmp_path / f"{name}.star"


def _bad_input(tmp_path, kind, make_bad_mrc):
    """(file to pass to info, the file the message must name)."""
    if kind == "no_image_name":
        star = tmp_path / "columns.star"
        star.write_text("data_particles\n\nloop_\n_rlnAngleRot #1\n10.0\n")
        return star, star
    if kind == "index_past_end":
        star = _star_with_stack(tmp_path, "short", 3, 8, 5)
        return star, tmp_path / "short.mrcs"
    if kind == "box_mismatch":
        star = _star_with_stack(tmp_path, "boxed", 3, 10, 3)
        return star, tmp_path / "boxed.mrcs"
    path = make_bad_mrc(tmp_path, kind)
    return path, path


@pytest.mark.parametrize("kind", ["missing", "not_mrc", "truncated", "nan", "non_cubic",
                                  "no_image_name", "index_past_end", "box_mismatch"])
def test_bad_input_prints_one_line(tmp_path, capsys, make_bad_mrc, kind):
    path, named = _bad_input(tmp_path, kind, make_bad_mrc)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cryodiff: error: ")
    assert str(named) in err and "Traceback" not in err


def test_noise_estimate_json_text_and_plot(reference_data, tmp_path, capsys):
    """``--noise`` on the bundled EMPIAR-10076 particles (no poses: the background)."""
    star = reference_data / "real_particles/empiar_10076_7.star"
    plot = tmp_path / "noise.png"
    assert main(["info", str(star), "--noise", "--particle-diameter", "250", "--json",
                 "--plot", str(plot)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "background" and summary["n_particles"] == 7
    assert len(summary["frequency"]) == len(summary["noise_spectrum"]) == 161
    assert summary["frequency"][-1] == pytest.approx(160 / (320 * 1.31))
    assert 0 < summary["snr"] < 1 and "disk" in summary["snr_definition"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["info", str(star), "--noise", "--particle-diameter", "250"]) == 0
    text = capsys.readouterr().out
    assert f"snr: {summary['snr']:.4g}" in text and "definition:" in text


def test_noise_estimate_errors_are_one_line(reference_data, capsys):
    star = reference_data / "real_particles/empiar_10076_7.star"
    ribosome = reference_data / "ribosome70S/ribosome70S_65.mrc"
    cases = [(["--noise"], "--particle-diameter"),
             (["--noise", "--method", "poses", "--map", str(ribosome)], "no poses")]
    for extra, message in cases:
        assert main(["info", str(star), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert main(["info", str(ribosome), "--noise"]) == 2
    assert "needs a STAR file" in capsys.readouterr().err
