"""Held-out evaluation helpers: PSNR vs sampling steps and the reverse-process trajectory."""

from __future__ import annotations

import pytest
import torch

from cryodiff.denoise import denoise_with, load_denoiser
from cryodiff.metrics import psnr
from cryodiff.training.data import PairedStackData
from cryodiff.training.evaluate import psnr_vs_steps, reverse_trajectory
from cryodiff.training.loop import train
from cryodiff.training.postprocess import train_postprocessor
from training_helpers import blob_pairs, tiny_config


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    run = tmp_path_factory.mktemp("evaluate") / "run"
    config = tiny_config(steps=3, val_every=100)
    data = PairedStackData(*blob_pairs(40, 16), config)
    train(config, run, data, progress=False)
    train_postprocessor(run, data, device="cpu", progress=False)
    return load_denoiser(run)


def test_psnr_vs_steps_matches_denoising_with_and_without_postprocessor(denoiser):
    noisy, clean = blob_pairs(5, 16, seed=7)
    sweep = psnr_vs_steps(denoiser, noisy, clean, steps=(1, 3), seed=2, batch_size=4)
    assert sweep.steps == [1, 3]
    assert sweep.noisy == pytest.approx(float(psnr(noisy, clean).mean()))
    for n in (1, 3):
        for postprocess, curve in ((False, sweep.plain), (True, sweep.postprocessed)):
            direct = denoise_with(denoiser, noisy, steps=n, seed=2, batch_size=4,
                                  postprocess=postprocess).mean
            assert curve[n] == pytest.approx(float(psnr(direct, clean).mean()), abs=1e-4)
    assert set(sweep.to_dict()["postprocessed"]) == {"1", "3"}


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_reverse_trajectory_ends_at_the_denoised_image(denoiser, sampler):
    image = blob_pairs(1, 16, seed=8)[0][0]
    frames = reverse_trajectory(denoiser, image, steps=4, sampler=sampler, seed=5)
    assert [f["step"] for f in frames] == [0, 1, 2, 3]
    assert all(f["y_t"].shape == f["y0"].shape == (1, 16, 16) for f in frames)
    # Sampling noise decreases along the trajectory: √γ̄ grows towards 1.
    assert frames[0]["sqrt_gamma"] < frames[-1]["sqrt_gamma"]
    direct = denoise_with(denoiser, image[None], steps=4, sampler=sampler, seed=5,
                          postprocess=False).mean[0]
    assert torch.allclose(frames[-1]["y_t"][0], direct, atol=1e-5)
