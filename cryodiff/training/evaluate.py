"""Held-out evaluation of a trained denoiser: PSNR against the number of sampling steps, and
one particle's reverse-process trajectory for the notebook's viewer.

Both work in the target's units (de-normalised), so images compare directly with the clean
targets of the simulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from cryodiff.denoise import Denoiser, denoise_with
from cryodiff.diffusion import respace
from cryodiff.metrics import psnr
from cryodiff.sampling import sample_progressive
from cryodiff.training.data import generator_for


@dataclass(frozen=True)
class StepsSweep:
    """Mean PSNR (dB) of held-out particles for each number of sampling steps.

    ``plain[s]`` is the sampler alone, ``postprocessed[s]`` the sampler followed by the
    post-processor (empty when the denoiser has none); ``noisy`` is the input's PSNR.
    """

    steps: list[int]
    noisy: float
    plain: dict[int, float]
    postprocessed: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: step counts become string keys."""
        return {"steps": self.steps, "noisy": self.noisy,
                "plain": {str(k): v for k, v in self.plain.items()},
                "postprocessed": {str(k): v for k, v in self.postprocessed.items()}}


@torch.no_grad()
def psnr_vs_steps(denoiser: Denoiser, noisy: torch.Tensor, clean: torch.Tensor,
                  steps: Sequence[int] = (1, 2, 5, 10, 25, 50), sampler: str = "ddpm",
                  seed: int = 0, batch_size: int = 64, progress: bool = False) -> StepsSweep:
    """Denoise ``noisy (N, L, L)`` with each number of ``steps`` and compare with ``clean
    (N, L, L)``, before and after the post-processor (if the denoiser has one).

    One sample per particle; the post-processor refines the very samples that give the
    ``plain`` curve (what :func:`~cryodiff.denoise.denoise_with` does with one sample), so
    the two curves differ by the post-processor alone. Every step count uses ``seed``.
    """
    norm, post = denoiser.normalisation, denoiser.postprocessor
    device = next(denoiser.model.parameters()).device
    condition = norm.condition(noisy.float())[:, None]

    def mean_psnr(images: torch.Tensor) -> float:
        return float(psnr(images, clean).mean())

    plain, refined = {}, {}
    for n in steps:
        samples = denoise_with(denoiser, noisy, steps=n, sampler=sampler, postprocess=False,
                               seed=seed, batch_size=batch_size, progress=progress).mean
        plain[n] = mean_psnr(samples)
        if post is not None:
            chunks = [norm.denormalise(post(norm.target(samples[i:i + batch_size])[:, None]
                                            .to(device),
                                            condition[i:i + batch_size].to(device))[:, 0]).cpu()
                      for i in range(0, samples.shape[0], batch_size)]
            refined[n] = mean_psnr(torch.cat(chunks))
    return StepsSweep(list(steps), mean_psnr(noisy), plain, refined)


@torch.no_grad()
def reverse_trajectory(denoiser: Denoiser, image: torch.Tensor, steps: int = 50,
                       sampler: str = "ddpm", seed: int = 0) -> list[dict[str, Any]]:
    """The reverse process for one noisy particle ``image (L, L)`` with ``steps`` steps.

    Returns one dict per step (see :func:`cryodiff.sampling.sample_progressive`) whose
    ``y_t`` and ``y0`` are de-normalised ``(1, L, L)`` CPU tensors (a batch of one, as
    :func:`cryodiff.plots.diffusion.plot_reverse_process` expects); the last ``y_t`` is the
    sample (before any post-processing).
    """
    model = denoiser.model
    device = next(model.parameters()).device
    norm = denoiser.normalisation
    condition = norm.condition(image.float()).reshape(1, 1, *image.shape[-2:]).to(device)
    schedule = respace(denoiser.schedule, steps).to(device)
    was_training = model.training
    model.eval()
    try:
        frames = []
        for frame in sample_progressive(model, condition, schedule, sampler,
                                        generator=generator_for(seed, 0, device=device)):
            frames.append(frame | {"y_t": norm.denormalise(frame["y_t"][:, 0]).cpu(),
                                   "y0": norm.denormalise(frame["y0"][:, 0]).cpu()})
    finally:
        model.train(was_training)
    return frames
