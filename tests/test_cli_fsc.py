"""``cryodiff fsc``: resolution printed, JSON keys, plot written, mismatched maps refused."""

from __future__ import annotations

import json

import pytest
import torch

from cryodiff.cli import main
from cryodiff.fsc import fsc, mask_corrected_fsc
from cryodiff.io.mrc import write_map
from cryodiff.masks import soft_round_mask


@pytest.fixture()
def maps(tmp_path):
    gen = torch.Generator().manual_seed(0)
    signal = torch.randn(24, 24, 24, generator=gen)
    a = signal + 0.5 * torch.randn(24, 24, 24, generator=gen)
    b = signal + 0.5 * torch.randn(24, 24, 24, generator=gen)
    write_map(tmp_path / "a.mrc", a, 1.7)
    write_map(tmp_path / "b.mrc", b, 1.7)
    return tmp_path, a, b


def test_fsc_prints_resolution_and_writes_json_and_plot(maps, capsys):
    folder, a, b = maps
    code = main(["fsc", str(folder / "a.mrc"), str(folder / "b.mrc"),
                 "--json", str(folder / "fsc.json"), "--plot", str(folder / "fsc.png")])
    assert code == 0
    assert "Å" in capsys.readouterr().out
    payload = json.loads((folder / "fsc.json").read_text())
    assert set(payload) == {"frequency", "fsc", "resolution_0143", "resolution_05"}
    expected = fsc(a, b, 1.7)
    assert payload["resolution_0143"] == pytest.approx(expected.resolution_0143_A)
    assert payload["fsc"] == pytest.approx(expected.fsc.tolist(), abs=1e-6)
    assert payload["frequency"][-1] == pytest.approx(12 / (24 * 1.7))
    assert (folder / "fsc.png").read_bytes()[:4] == b"\x89PNG"


def test_mask_radius_gives_the_mask_corrected_fsc(maps, capsys):
    folder, a, b = maps
    code = main(["fsc", str(folder / "a.mrc"), str(folder / "b.mrc"), "--mask-radius", "9",
                 "--json", str(folder / "fsc.json"), "--plot", str(folder / "fsc.png")])
    assert code == 0
    assert "mask-corrected" in capsys.readouterr().out
    payload = json.loads((folder / "fsc.json").read_text())
    expected = mask_corrected_fsc(a, b, soft_round_mask(24, 3, 9.0, 3.0), 1.7)
    assert payload["fsc"] == pytest.approx(expected.corrected.fsc.tolist(), abs=1e-6)
    assert payload["fsc_masked"] == pytest.approx(fsc(a, b, 1.7, mask_radius_px=9).fsc.tolist(),
                                                  abs=1e-6)
    assert payload["randomized_from_shell"] == expected.randomized_from_shell
    assert payload["resolution_0143"] == pytest.approx(expected.corrected.resolution_0143_A)
    assert (folder / "fsc.png").read_bytes()[:4] == b"\x89PNG"


def test_mask_map_is_used_and_a_bad_mask_refused(maps, capsys):
    folder, a, b = maps
    mask = soft_round_mask(24, 3, 7.0, 2.0)
    write_map(folder / "mask.mrc", mask, 1.7)
    assert main(["fsc", str(folder / "a.mrc"), str(folder / "b.mrc"), "--mask",
                 str(folder / "mask.mrc"), "--json", str(folder / "m.json")]) == 0
    payload = json.loads((folder / "m.json").read_text())
    expected = mask_corrected_fsc(a, b, mask, 1.7)
    assert payload["fsc"] == pytest.approx(expected.corrected.fsc.tolist(), abs=1e-6)
    write_map(folder / "bad.mrc", 3 * mask, 1.7)
    capsys.readouterr()
    assert main(["fsc", str(folder / "a.mrc"), str(folder / "b.mrc"), "--mask",
                 str(folder / "bad.mrc")]) == 2
    err = capsys.readouterr().err
    assert "bad.mrc" in err and "[0, 1]" in err


def test_maps_of_different_boxes_are_refused(maps, capsys):
    folder, _, _ = maps
    write_map(folder / "small.mrc", torch.zeros(20, 20, 20), 1.7)
    assert main(["fsc", str(folder / "a.mrc"), str(folder / "small.mrc")]) == 2
    err = capsys.readouterr().err
    assert "small.mrc" in err and "box" in err
