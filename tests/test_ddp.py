"""`torchrun --nproc_per_node 2 cryodiff train` on CPU (gloo) against one process with the
same global batch: the same losses and weights up to rounding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cryodiff.diffusion import diffusion_loss, make_schedule
from cryodiff.io.mrc import write_stack
from cryodiff.training.data import augment_pairs
from training_helpers import blob_pairs

BIN = Path(sys.executable).parent
STEPS = 3


def _dataset(folder: Path) -> Path:
    noisy, clean = blob_pairs(60, 32)
    folder.mkdir()
    write_stack(folder / "particles.mrcs", noisy, 2.0)
    write_stack(folder / "clean_ctf.mrcs", clean, 2.0)
    return folder


def _train(launcher: list[str], data: Path, out: Path, batch_size: int) -> tuple[float, dict]:
    """Train the ``ci`` preset (dropout 0) for STEPS steps; its logged loss and weights."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([*launcher, str(BIN / "cryodiff"), "train", "--data", str(data), "--out",
                    str(out), "--preset", "ci", "--steps", str(STEPS), "--batch-size",
                    str(batch_size), "--device", "cpu", "--no-progress", "--threads", "1"],
                   env=env, check=True, capture_output=True, text=True, timeout=300)
    rows = json.loads((out / "metrics.json").read_text())
    state = torch.load(out / "checkpoints" / f"step_{STEPS:08d}.pt", weights_only=True)
    assert rows[-1]["step"] == STEPS
    return rows[-1]["loss"], state["model"]


def _max_difference(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_with_the_global_batch(tmp_path):
    data = _dataset(tmp_path / "data")
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]
    ddp_loss, ddp = _train(torchrun, data, tmp_path / "ddp", batch_size=4)
    one_loss, one = _train([sys.executable], data, tmp_path / "one", batch_size=8)
    half_loss, half = _train([sys.executable], data, tmp_path / "half", batch_size=4)

    assert ddp_loss == pytest.approx(one_loss, rel=1e-4)
    assert _max_difference(ddp, one) < 1e-5
    # Not trivially equal: one process with the per-rank batch trains to other weights, and
    # the weights moved by more than the tolerance in STEPS steps (lr 1e-3, warm-up 20).
    assert _max_difference(half, one) > 1e-4 and half_loss != pytest.approx(one_loss, rel=1e-4)
    config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert config["batch_size"] == 4  # per process: the global batch is 8
    log = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert log[-1]["images_per_s"] > 0


def test_sharded_draws_interleave_into_the_global_batch_draws():
    """Rank r of N keeps rows r, r + N, … of the draws for the global batch: the noise levels
    and ε the model sees, and the augmentation of each pair."""
    schedule = make_schedule("linear", 100)
    seen: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def recorder(shard):
        def model(y_t, condition, sqrt_gamma):
            seen[shard] = (y_t.clone(), sqrt_gamma.clone())
            return torch.zeros_like(y_t)
        return model

    global_batch, world = 6, 2
    y0 = torch.randn(global_batch, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    images = torch.randn(global_batch, 8, 8, generator=torch.Generator().manual_seed(2))
    diffusion_loss(recorder((0, 1)), y0, y0, schedule, generator=torch.Generator().manual_seed(3))
    flipped = augment_pairs(images, images, torch.Generator().manual_seed(4))[0]
    for rank in range(world):
        shard = (rank, world)
        rows = slice(rank, None, world)
        diffusion_loss(recorder(shard), y0[rows], y0[rows], schedule,
                       generator=torch.Generator().manual_seed(3), shard=shard)
        for mine, everyone in zip(seen[shard], seen[(0, 1)]):
            torch.testing.assert_close(mine, everyone[rows])
        mine = augment_pairs(images[rows], images[rows], torch.Generator().manual_seed(4),
                             shard=shard)[0]
        torch.testing.assert_close(mine, flipped[rows])
    # Without the shard, rank 1 would draw values that are not its rows of the global batch.
    diffusion_loss(recorder((1, 1)), y0[1::2], y0[1::2], schedule,
                   generator=torch.Generator().manual_seed(3))
    assert not torch.equal(seen[(1, 1)][1], seen[(0, 1)][1][1::2])
