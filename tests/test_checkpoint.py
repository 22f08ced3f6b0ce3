"""Checkpoints: atomic round trip with weights_only, folder resolution, clear errors."""

from __future__ import annotations

import pytest
import torch

from cryodiff.errors import CryodiffError
from cryodiff.training import checkpoint as ckpt
from cryodiff.training.config import PRESETS, TrainConfig
from cryodiff.training.data import PairedStackData
from cryodiff.training.loop import train
from training_helpers import blob_pairs, tiny_config


def test_round_trip_loads_with_weights_only(tmp_path):
    config = tiny_config(steps=3, val_every=100)
    data = PairedStackData(*blob_pairs(40, 16), config)
    result = train(config, tmp_path / "run", data, progress=False)
    path = ckpt.latest_checkpoint(tmp_path / "run")
    assert path == ckpt.checkpoint_path(tmp_path / "run", 3)
    raw = torch.load(path, weights_only=True)  # no pickled classes inside
    assert raw["step"] == 3 and raw["format"] == ckpt.FORMAT
    assert TrainConfig.from_json(raw["config"]) == config
    for name, value in result.model.state_dict().items():
        assert torch.equal(raw["model"][name], value)
    for name, value in result.ema.state_dict().items():
        assert torch.equal(raw["ema"][name], value)
    assert raw["normalisation"] == pytest.approx(data.normalisation.to_dict())
    assert ckpt.load_checkpoint(tmp_path / "run")["path"] == str(path)
    assert not list((tmp_path / "run" / "checkpoints").glob(".*tmp*"))


@pytest.mark.parametrize("name", list(PRESETS))
def test_config_json_round_trip(name):
    config = PRESETS[name]
    assert TrainConfig.from_json(config.to_json()) == config
    assert config.model.image_size == config.box


def test_latest_and_pruning(tmp_path):
    for step in (5, 20, 10):
        ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, step), {"step": step})
    assert ckpt.latest_checkpoint(tmp_path).name == "step_00000020.pt"
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000010.pt",
                                                                  "step_00000020.pt"]
    assert ckpt.latest_checkpoint(tmp_path / "empty") is None


def test_missing_and_corrupt_checkpoints_raise_one_line_errors(tmp_path):
    with pytest.raises(CryodiffError, match="checkpoint not found"):
        ckpt.load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CryodiffError, match="no checkpoint found"):
        ckpt.load_checkpoint(tmp_path)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a torch file")
    with pytest.raises(CryodiffError, match="not a readable checkpoint") as info:
        ckpt.load_checkpoint(corrupt)
    assert "\n" not in str(info.value) and "corrupt.pt" in str(info.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CryodiffError, match="not a cryodiff checkpoint"):
        ckpt.load_checkpoint(foreign)
    truncated = tmp_path / "truncated.pt"
    good = ckpt.save_checkpoint(tmp_path / "good.pt", {"step": 1, "model": {"w": torch.ones(1000)}})
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CryodiffError, match="not a readable checkpoint"):
        ckpt.load_checkpoint(truncated)
