"""``cryodiff fsc``: resolution printed, JSON keys, plot written, mismatched maps refused."""

from __future__ import annotations

import json

import pytest
import torch

from cryodiff.cli import main
from cryodiff.fsc import fsc
from cryodiff.io.mrc import write_map


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
    code = main(["fsc", str(folder / "a.mrc"), str(folder / "b.mrc"), "--mask-radius", "9",
                 "--json", str(folder / "fsc.json"), "--plot", str(folder / "fsc.png")])
    assert code == 0
    assert "Å" in capsys.readouterr().out
    payload = json.loads((folder / "fsc.json").read_text())
    assert set(payload) == {"frequency", "fsc", "resolution_0143", "resolution_05"}
    expected = fsc(a, b, 1.7, mask_radius_px=9)
    assert payload["resolution_0143"] == pytest.approx(expected.resolution_0143_A)
    assert payload["fsc"] == pytest.approx(expected.fsc.tolist(), abs=1e-6)
    assert payload["frequency"][-1] == pytest.approx(12 / (24 * 1.7))
    assert (folder / "fsc.png").read_bytes()[:4] == b"\x89PNG"


def test_maps_of_different_boxes_are_refused(maps, capsys):
    folder, _, _ = maps
    write_map(folder / "small.mrc", torch.zeros(20, 20, 20), 1.7)
    assert main(["fsc", str(folder / "a.mrc"), str(folder / "small.mrc")]) == 2
    err = capsys.readouterr().err
    assert "small.mrc" in err and "box" in err
