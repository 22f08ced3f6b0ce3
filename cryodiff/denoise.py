"""Apply a trained checkpoint to particle images: normalise, sample, refine, de-normalise.

:func:`load_denoiser` reads a checkpoint (a file or a run folder) into a :class:`Denoiser`
holding the EMA weights, the optional post-processing U-Net and the normalisation;
:func:`denoise_images` runs it on a tensor of images in batches and returns the posterior
mean (and the per-pixel standard deviation when several samples are drawn per particle).
The output is in the units of the training target — with the default ``clean_ctf`` target
the CTF is still in the images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from cryodiff.diffusion import NoiseSchedule, make_schedule, respace
from cryodiff.errors import CryodiffError
from cryodiff.models.postprocess import PostProcessUNet
from cryodiff.models.unet import SR3UNet
from cryodiff.sampling import posterior_samples
from cryodiff.training.checkpoint import load_checkpoint
from cryodiff.training.config import TrainConfig
from cryodiff.training.data import Normalisation, generator_for


@dataclass
class Denoiser:
    """A trained model ready for inference (EMA weights, eval mode)."""

    model: SR3UNet
    postprocessor: PostProcessUNet | None
    normalisation: Normalisation
    schedule: NoiseSchedule
    config: TrainConfig
    step: int


@dataclass(frozen=True)
class DenoiseResult:
    """``mean (N, L, L)`` denoised images; ``std (N, L, L)`` per-pixel posterior standard
    deviation (``None`` for one sample per particle), both in target units."""

    mean: torch.Tensor
    std: torch.Tensor | None


def load_denoiser(checkpoint: str | os.PathLike, device: str | torch.device = "cpu") -> Denoiser:
    """Build the EMA model (and post-processor, if trained) from a checkpoint or run folder."""
    state = load_checkpoint(checkpoint, map_location=device)
    config = TrainConfig.from_json(state["config"])
    model = SR3UNet(config.model)
    try:
        model.load_state_dict(state["ema"])
        postprocessor = None
        if state.get("postprocess") is not None:
            postprocessor = PostProcessUNet(config.postprocess)
            postprocessor.load_state_dict(state["postprocess"])
    except RuntimeError as error:
        raise CryodiffError(f"weights do not fit the stored configuration "
                            f"({str(error).splitlines()[0][:100]})", path=state["path"]) from None
    model.to(device).eval().requires_grad_(False)
    if postprocessor is not None:
        postprocessor.to(device).eval().requires_grad_(False)
    return Denoiser(model, postprocessor, Normalisation.from_dict(state["normalisation"]),
                    make_schedule(config.schedule, config.timesteps), config, int(state["step"]))


@torch.no_grad()
def denoise_images(model: torch.nn.Module, images: torch.Tensor, normalisation: Normalisation,
                   schedule: NoiseSchedule, *, steps: int = 10, sampler: str = "ddpm",
                   n_samples: int = 1, postprocessor: torch.nn.Module | None = None,
                   batch_size: int = 64, seed: int = 0, device: str | torch.device | None = None,
                   progress: bool = False) -> DenoiseResult:
    """Denoise ``images (N, L, L)`` (raw units) with ``steps`` sampling steps of ``schedule``.

    Each batch of ``batch_size`` images uses its own generator seeded with ``(seed, batch)``,
    so results do not depend on what ran before. ``n_samples > 1`` returns the posterior
    mean and standard deviation over that many samples per particle; ``postprocessor`` is
    applied to every sample before averaging. The model's mode is left unchanged but
    sampling runs it in eval mode.
    """
    if images.ndim != 3:
        raise CryodiffError(f"expected images of shape (N, L, L), got {tuple(images.shape)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    short = respace(schedule, steps).to(device)
    means, stds = [], []
    chunk = max(1, batch_size // n_samples)
    try:
        for batch, start in enumerate(tqdm(range(0, images.shape[0], chunk), disable=not progress,
                                           desc="denoising", unit="batch")):
            condition = normalisation.condition(images[start:start + chunk].float())
            condition = condition[:, None].to(device)
            mean, std = posterior_samples(
                model, condition, short, n_samples, sampler,
                generator=generator_for(seed, batch, device=device), batch_size=batch_size,
                postprocess=postprocessor)
            means.append(normalisation.denormalise(mean[:, 0]).cpu())
            stds.append((std[:, 0] * normalisation.target_std).cpu())
    finally:
        model.train(was_training)
    mean = torch.cat(means) if means else images.new_zeros(images.shape)
    std = torch.cat(stds) if (stds and n_samples > 1) else None
    return DenoiseResult(mean, std)


def denoise_with(denoiser: Denoiser, images: torch.Tensor, *, steps: int = 10,
                 sampler: str = "ddpm", n_samples: int = 1, postprocess: bool = True,
                 batch_size: int = 64, seed: int = 0, progress: bool = False) -> DenoiseResult:
    """:func:`denoise_images` with a loaded :class:`Denoiser` (post-processor if present
    and ``postprocess``)."""
    if images.shape[-1] != denoiser.config.box:
        # The U-Net is fully convolutional, but a different box changes the scale of features
        # the model has learnt; say so rather than silently produce poor output.
        print(f"cryodiff: warning: images are {images.shape[-1]} px, the model was trained "
              f"on {denoiser.config.box} px")
    return denoise_images(
        denoiser.model, images, denoiser.normalisation, denoiser.schedule, steps=steps,
        sampler=sampler, n_samples=n_samples,
        postprocessor=denoiser.postprocessor if postprocess else None,
        batch_size=batch_size, seed=seed, device=next(denoiser.model.parameters()).device,
        progress=progress)
