"""Speed options of the training configuration (channels-last, torch.compile, presets sized for
GPUs) and the throughput benchmark that measures them, on the CPU."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from cryodiff.benchmark.config import get_preset as get_benchmark_preset
from cryodiff.errors import CryodiffError
from cryodiff.notebook_runner import PRESET_PARAMETERS
from cryodiff.training.config import COMPILE_MODES, PRESETS, TrainConfig, get_preset
from cryodiff.training.data import PairedStackData
from cryodiff.training.loop import _resumable, train
from training_helpers import blob_pairs, tiny_config

ROOT = Path(__file__).resolve().parents[1]


def test_speed_options_are_validated_and_round_trip_through_json():
    config = dataclasses.replace(tiny_config(), channels_last=True, compile="reduce-overhead",
                                 simulate_on_device=True)
    again = TrainConfig.from_json(config.to_json())
    assert again == config and again.compile == "reduce-overhead" and again.channels_last
    assert again.simulate_on_device
    assert TrainConfig().compile == "none" and not TrainConfig().channels_last  # CPU-safe
    with pytest.raises(CryodiffError, match="compile must be one of"):
        dataclasses.replace(config, compile="fast")
    with pytest.raises(CryodiffError, match="channels_last"):
        dataclasses.replace(config, channels_last="yes")
    # A config.json written before these fields existed still loads, with the defaults.
    old = {k: v for k, v in config.to_dict().items() if k not in ("compile", "channels_last")}
    assert TrainConfig.from_dict(old).compile == "none"
    assert "reduce-overhead" in COMPILE_MODES


def test_pairs_simulated_on_the_training_device_are_the_same_pairs():
    """On the CPU the device copy is a second volume: the plumbing, not the GPU arithmetic."""
    from cryodiff.training.data import SimulatedData

    config = tiny_config(32, n_val=4)
    data = SimulatedData("phantom", config, n_normalisation=8)
    before = data.train_batch(5, 3)
    data.use_device("cpu")
    assert data.batch_volume is not data.prepared
    after = data.train_batch(5, 3)
    for a, b in zip(before, after):
        assert torch.equal(a, b)
    assert not torch.equal(before[0], data.train_batch(6, 3)[0])


def test_speed_options_do_not_block_a_resume():
    config = tiny_config()
    assert _resumable(config, dataclasses.replace(config, channels_last=True, compile="default",
                                                  simulate_on_device=True))
    # nor does keeping more or fewer checkpoints (nothing the network learns)
    assert _resumable(config, dataclasses.replace(config, keep_checkpoints=9))
    assert not _resumable(config, dataclasses.replace(config, lr=config.lr * 2))


@pytest.mark.slow
def test_channels_last_trains_like_the_default_layout(tmp_path):
    # Without dropout: its masks are drawn in memory order, which the layout changes.
    config = tiny_config(steps=4, val_every=100, checkpoint_every=100)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, dropout=0.0))
    data = PairedStackData(*blob_pairs(40, 16), config)
    plain = train(config, tmp_path / "plain", data, progress=False)
    nhwc = train(dataclasses.replace(config, channels_last=True), tmp_path / "nhwc", data,
                 progress=False)
    losses = [[r["loss"] for r in result.metrics] for result in (plain, nhwc)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4, abs=1e-6)
    assert len(set(losses[0])) == 4  # the steps differ, so agreement is not trivial
    conv = next(m.weight for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d)
                and m.weight.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    # Adam moves each weight by about lr = 1e-3 per step; the layouts agree 10× closer.
    for a, b in zip(plain.model.parameters(), nhwc.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_gpu_medium_sits_between_cpu_small_and_gpu_paper_everywhere():
    medium, small = get_preset("gpu-medium"), get_preset("cpu-small")
    paper = get_preset("gpu-paper")
    assert medium.box == paper.box == medium.model.image_size == 128
    size = {name: sum(p.numel() for p in _unet(name).parameters()) for name in PRESETS}
    assert size["cpu-small"] < size["gpu-medium"] < size["gpu-paper"]
    assert medium.batch_size * medium.steps < paper.batch_size * paper.steps
    assert medium.batch_size > small.batch_size  # a GPU wants bigger batches
    bench = get_benchmark_preset("gpu-medium")
    bench.validate()
    assert bench.box == 128 and bench.train_preset == "gpu-medium" and bench.snrs == (0.05,)
    assert PRESET_PARAMETERS["gpu-medium"]["02_train_diffusion"]["preset"] == "gpu-medium"


def _unet(name: str) -> torch.nn.Module:
    from cryodiff.models.unet import SR3UNet

    with torch.device("meta"):
        return SR3UNet(get_preset(name).model)


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("gpu_throughput",
                                                  ROOT / "benchmarks" / "gpu_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_flop_count_follows_the_model_and_the_box():
    bench = _benchmark_module()
    flops = {name: bench.training_flops_per_image(name) for name in ("ci", "cpu-small")}
    assert flops["ci"] < flops["cpu-small"]
    # Forward + backward of the first 3×3 convolution alone (1 → C channels over L² pixels,
    # 2 FLOPs per multiply-add; backward computes the weight gradient only): a lower bound.
    ci = get_preset("ci")
    first_conv = 2 * 9 * ci.model.base_channels * 2 * ci.box ** 2
    assert flops["ci"] > first_conv


@pytest.mark.slow
def test_throughput_benchmark_runs_on_the_cpu(tmp_path):
    bench = _benchmark_module()
    out = tmp_path / "rows.json"
    rows = bench.main(["--presets", "ci", "--options", "eager", "channels-last", "batch-x4",
                       "--device", "cpu", "--warmup", "1", "--steps", "2",
                       "--peak-tflops", "1", "--json", str(out)])
    assert [r["option"] for r in rows] == ["eager", "channels-last", "batch-x4"]
    assert [r["batch_size"] for r in rows] == [16, 16, 64]
    for row in rows:
        assert row["img_s"] > 0
        assert row["mfu"] == pytest.approx(row["gflop_per_img"] * 1e9 * row["img_s"] / 1e12)
    assert json.loads(out.read_text()) == rows
    # Same data, seed and steps: the layout does not change what is learned.
    assert rows[0]["final_loss"] == pytest.approx(rows[1]["final_loss"], rel=1e-4)
