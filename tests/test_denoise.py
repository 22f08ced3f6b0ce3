"""Denoising with a checkpoint: shapes, posterior std, determinism, the CLI on a stack."""

from __future__ import annotations

import pytest
import torch

from cryodiff.cli import main as cli
from cryodiff.denoise import denoise_with, load_denoiser
from cryodiff.training.data import PairedStackData
from cryodiff.training.loop import train
from cryodiff.training.postprocess import train_postprocessor
from training_helpers import blob_pairs, tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("denoise") / "run"
    config = tiny_config(steps=4, val_every=100)
    data = PairedStackData(*blob_pairs(40, 16), config)
    train(config, run, data, progress=False)
    return run


def test_posterior_mean_std_and_determinism(run_dir):
    denoiser = load_denoiser(run_dir)
    images = blob_pairs(5, 16, seed=3)[0]
    one = denoise_with(denoiser, images, steps=3, n_samples=1, batch_size=2)
    assert one.mean.shape == (5, 16, 16) and one.std is None
    again = denoise_with(denoiser, images, steps=3, n_samples=1, batch_size=2)
    assert torch.equal(one.mean, again.mean)
    several = denoise_with(denoiser, images, steps=3, sampler="ddpm", n_samples=3, batch_size=6)
    assert several.std.shape == (5, 16, 16) and bool((several.std > 0).all())


def test_postprocessor_is_stored_and_applied(run_dir, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    config = tiny_config(steps=4, val_every=100)
    train_postprocessor(run, PairedStackData(*blob_pairs(40, 16), config), progress=False)
    denoiser = load_denoiser(run)
    assert denoiser.postprocessor is not None
    images = blob_pairs(3, 16, seed=4)[0]
    with_post = denoise_with(denoiser, images, steps=2)
    without = denoise_with(denoiser, images, steps=2, postprocess=False)
    assert not torch.equal(with_post.mean, without.mean)


def test_cli_denoise_stack_and_errors(run_dir, tmp_path, capsys):
    from cryodiff.io.mrc import read_stack, write_stack
    write_stack(tmp_path / "in.mrcs", blob_pairs(3, 16, seed=5)[0], 2.0)
    out = tmp_path / "out.mrcs"
    assert cli(["denoise", str(tmp_path / "in.mrcs"), "--checkpoint", str(run_dir), "--out",
                str(out), "--steps", "2", "--samples", "2"]) == 0
    assert read_stack(out).shape == (3, 16, 16)
    assert read_stack(tmp_path / "out_std.mrcs").shape == (3, 16, 16)
    assert cli(["denoise", str(tmp_path / "in.mrcs"), "--checkpoint", str(tmp_path / "nope"),
                "--out", str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
