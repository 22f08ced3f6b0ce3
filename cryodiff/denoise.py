"""Apply a trained checkpoint to particle images: normalise, sample, refine, de-normalise.

:func:`load_denoiser` reads a checkpoint (a file or a run folder) into a :class:`Denoiser`
holding the EMA weights, the optional post-processing U-Nets and the normalisation;
:func:`denoise_images` runs it on a tensor of images in batches and returns the posterior
mean (and the per-pixel standard deviation when several samples are drawn per particle).
Two refinements exist: the paper's (``sr3+pp``: each sample refined by the post-processor,
:func:`denoise_with`) and cryodiff's ``sr3-pm`` (the mean of the ``K`` samples its
post-processor was trained on, refined once, :func:`denoise_posterior_mean`; it scores the
best PSNR of the two, ``docs/benchmarks.md`` section 10).
The output is in the units of the training target — with the default ``clean_ctf`` target
the CTF is still in the images.

Images from elsewhere (real particles, whose grey levels have arbitrary units) are first put
on the training data's scale: :func:`match_training_scale` maps each image affinely to the
mean and standard deviation of the training conditions, and the output is mapped back. A
model is applied only to images of its box and pixel size (:func:`check_particles_fit`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from cryodiff.diffusion import NoiseSchedule, make_schedule, respace
from cryodiff.errors import CryodiffError
from cryodiff.models.postprocess import PostProcessUNet
from cryodiff.models.unet import SR3UNet
from cryodiff.sampling import posterior_samples
from cryodiff.training.checkpoint import load_checkpoint, weights_mismatch
from cryodiff.training.config import TrainConfig
from cryodiff.training.data import Normalisation, generator_for


@dataclass(frozen=True)
class MeanRefiner:
    """The ``sr3-pm`` post-processor of a checkpoint: ``net`` refines the mean of ``draws``
    samples of ``sampling_steps`` steps of ``sampler`` (what it was trained on)."""

    net: PostProcessUNet
    draws: int
    sampling_steps: int
    sampler: str


@dataclass
class Denoiser:
    """A trained model ready for inference (EMA weights, eval mode)."""

    model: SR3UNet
    postprocessor: PostProcessUNet | None
    normalisation: Normalisation
    schedule: NoiseSchedule
    config: TrainConfig
    step: int
    checkpoint: str = ""
    pixel_size_A: float | None = None  # Å of the training images; None in older checkpoints
    mean_refiner: MeanRefiner | None = None  # sr3-pm's post-processor, if trained
    x0_model: SR3UNet | None = None  # x0ft's fine-tuned copy of the network, if trained


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
    model = _loaded(SR3UNet(config.model), state["ema"], "", state["path"], device)
    postprocessor = None
    if state.get("postprocess") is not None:
        postprocessor = _loaded(PostProcessUNet(config.postprocess), state["postprocess"], "",
                                state["path"], device)
    pixel_size_A = state.get("pixel_size_A")
    return Denoiser(model, postprocessor, Normalisation.from_dict(state["normalisation"]),
                    make_schedule(config.schedule, config.timesteps), config, int(state["step"]),
                    state["path"], None if pixel_size_A is None else float(pixel_size_A),
                    _mean_refiner(state, config, device), _x0_model(state, config, device))


def _x0_model(state: dict, config: TrainConfig, device: str | torch.device) -> SR3UNet | None:
    """The checkpoint's ``x0_finetune`` entry (``cryodiff train --x0-finetune``): SR3's
    network fine-tuned for its one-pass x̂₀; None if absent."""
    saved = state.get("x0_finetune")
    if saved is None:
        return None
    return _loaded(SR3UNet(config.model), saved["weights"], "fine-tuned x̂₀ network ",
                   state["path"], device)


def _mean_refiner(state: dict, config: TrainConfig, device: str | torch.device
                  ) -> MeanRefiner | None:
    """The checkpoint's ``pm_postprocess`` entry as a :class:`MeanRefiner` (None if absent;
    its values were checked when the checkpoint was loaded)."""
    saved = state.get("pm_postprocess")
    if saved is None:
        return None
    net = _loaded(PostProcessUNet(config.postprocess), saved["weights"],
                  "sr3-pm post-processor ", state["path"], device)
    return MeanRefiner(net, int(saved["draws"]), int(saved["sampling_steps"]),
                       str(saved["sampler"]))


def _loaded(module: torch.nn.Module, weights: dict, what: str, path: str,
            device: str | torch.device) -> torch.nn.Module:
    """``module`` with ``weights`` (a one-line error naming ``what`` and the checkpoint
    ``path`` when they do not fit), on ``device``, in eval mode, without gradients."""
    problem = weights_mismatch(module, weights)
    if problem is not None:
        raise CryodiffError(f"{what}weights do not fit the stored configuration: {problem}",
                            path=path)
    module.load_state_dict(weights)
    return module.to(device).eval().requires_grad_(False)


PIXEL_SIZE_TOLERANCE = 5e-3  # relative; headers store float32 and STAR files round


def check_particles_fit(denoiser: Denoiser, box: int, pixel_size_A: float | None,
                        particles: str | os.PathLike | None = None) -> None:
    """Raise :class:`CryodiffError` (one line naming the checkpoint and both values) unless
    images of ``box`` pixels at ``pixel_size_A`` Å are what the model was trained on.

    The pixel size is compared (to 0.5 %) when both are known: ``pixel_size_A`` None or not
    positive (a stack header without one) or a checkpoint that does not record it skips it.
    """
    trained_A = denoiser.pixel_size_A
    same_box = box == denoiser.config.box
    same_pixel = (trained_A is None or pixel_size_A is None or not pixel_size_A > 0
                  or abs(pixel_size_A / trained_A - 1) <= PIXEL_SIZE_TOLERANCE)
    if same_box and same_pixel:
        return
    where = f" ({particles})" if particles is not None else ""
    raise CryodiffError(f"the model was trained on {_size(denoiser.config.box, trained_A)} "
                        f"images, the particles{where} are {_size(box, pixel_size_A)}; "
                        f"resample them to the model's box and pixel size first",
                        path=denoiser.checkpoint)


def _size(box: int, pixel_size_A: float | None) -> str:
    """``64 px at 6.55 Å/px`` (``64 px`` when the pixel size is unknown)."""
    known = pixel_size_A is not None and pixel_size_A > 0
    return f"{box} px" + (f" at {pixel_size_A:.4g} Å/px" if known else "")


def match_training_scale(images: torch.Tensor, normalisation: Normalisation,
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Put each image at the mean and standard deviation of the training conditions.

    ``images (N, L, L)`` in any units → ``(scaled, a, b)`` with ``scaled = a·images + b`` and
    ``a, b (N, 1, 1)`` chosen per image so that ``scaled`` has mean ``condition_mean`` and std
    ``condition_std``. An affine change of grey levels maps signal and noise alike, so a
    denoised ``y'`` in training units is ``(y' − b) / a`` in the input's units (a std: ``/ a``).
    Per image rather than per stack because real stacks vary in scale from micrograph to
    micrograph, and a noise-dominated particle's std is mostly its noise level.
    """
    x = images.double()
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    a = normalisation.condition_std / std
    b = normalisation.condition_mean - a * mean
    return (a * x + b).to(images.dtype), a, b


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
                 batch_size: int = 64, seed: int = 0, match_scale: bool = False,
                 progress: bool = False) -> DenoiseResult:
    """:func:`denoise_images` with a loaded :class:`Denoiser` (post-processor if present
    and ``postprocess``).

    ``match_scale``: the images are not in the training data's units (e.g. real particles):
    map them there per image (:func:`match_training_scale`) and the results back. The box
    must be the model's (a fully convolutional U-Net would run, but on features of another
    scale than it learnt).
    """
    return _in_training_units(denoiser, images, match_scale, lambda x: denoise_images(
        denoiser.model, x, denoiser.normalisation, denoiser.schedule, steps=steps,
        sampler=sampler, n_samples=n_samples,
        postprocessor=denoiser.postprocessor if postprocess else None,
        batch_size=batch_size, seed=seed, device=next(denoiser.model.parameters()).device,
        progress=progress))


def _in_training_units(denoiser: Denoiser, images: torch.Tensor, match_scale: bool,
                       denoise) -> DenoiseResult:
    """``denoise(images)`` after checking the box, with ``match_scale`` on the training
    data's scale (:func:`match_training_scale`) and the result mapped back."""
    check_particles_fit(denoiser, images.shape[-1], None)
    if not match_scale:
        return denoise(images)
    images, a, b = match_training_scale(images, denoiser.normalisation)
    result = denoise(images)
    mean = ((result.mean.double() - b) / a).to(result.mean.dtype)
    std = None if result.std is None else (result.std.double() / a).to(result.std.dtype)
    return DenoiseResult(mean, std)


def denoise_posterior_mean(denoiser: Denoiser, images: torch.Tensor, *,
                           steps: int | None = None, sampler: str | None = None,
                           self_ensemble: bool = True, batch_size: int = 64, seed: int = 0,
                           match_scale: bool = False) -> DenoiseResult:
    """``sr3-pm`` of ``images (N, L, L)`` (raw units): the mean of the ``K`` samples the
    checkpoint's mean refiner was trained on (``steps`` and ``sampler`` default to its own),
    refined by it (:func:`refine_mean`).

    Returns the refined mean and, for ``K > 1``, the standard deviation of the ``K`` raw
    samples (the posterior spread before refinement; not recalibrated), in the images' units.
    ``match_scale`` as in :func:`denoise_with`. Raises :class:`CryodiffError` when the
    checkpoint has no mean refiner (``cryodiff train --pm-postprocess`` trains one).
    """
    refiner = denoiser.mean_refiner
    if refiner is None:
        raise CryodiffError("the checkpoint has no sr3-pm post-processor; train one with "
                            "`cryodiff train --resume --pm-postprocess`",
                            path=denoiser.checkpoint)

    def denoise(x: torch.Tensor) -> DenoiseResult:
        draws = denoise_with(denoiser, x, steps=steps or refiner.sampling_steps,
                             sampler=sampler or refiner.sampler, n_samples=refiner.draws,
                             postprocess=False, batch_size=batch_size, seed=seed)
        refined = refine_mean(denoiser, draws.mean, x, self_ensemble)
        return DenoiseResult(refined.to(draws.mean.dtype), draws.std)

    return _in_training_units(denoiser, images, match_scale, denoise)


@torch.no_grad()
def one_pass_x0(denoiser: Denoiser, noisy: torch.Tensor, seed: int = 0,
                batch_size: int = 256, draws: int = 1) -> torch.Tensor:
    """x̂₀ of the first reverse step from ``y_T ~ N(0, I)`` for ``noisy (N, L, L)``; raw units.

    One network evaluation at the schedule's noisiest level ``γ̄_T``. With an exact model this
    is ``E[y₀ | y_T, particle]``, and at ``γ̄_T → 0`` the posterior mean. A v-predicting model
    (``prediction="v"``) gives it directly, ``√γ̄_T·y_T − √(1−γ̄_T)·v̂`` (there ``v ≈ −y₀``);
    an ε-model's ``(y_T − √(1−γ̄_T)·ε̂) / √γ̄_T`` divides its error by ``√γ̄_T`` (≈ 150× for
    SR3's schedule). ``y_T`` is drawn as the first step of the sampler draws it, per batch.
    ``draws`` > 1 averages the x̂₀ of that many ``y_T`` drawn one after another from the
    batch's generator (the first is the one ``draws = 1`` uses): ``y_T`` carries almost no
    signal at ``γ̄_T``, so the average removes the part of the output that a trained network
    still takes from the noise it starts from, at ``draws`` passes per image (measured on the
    benchmark's fine-tuned readouts: under 0.001 dB; ``docs/benchmarks.md``, section 10).
    """
    from cryodiff.diffusion import predict_y0_from_eps, y0_from_v
    from cryodiff.threads import adapt_threads

    if draws < 1:
        raise CryodiffError(f"draws must be at least 1, got {draws}")
    norm, device = denoiser.normalisation, next(denoiser.model.parameters()).device
    sqrt_gamma = denoiser.schedule.noisiest_level
    v_model = denoiser.config.model.prediction == "v"
    out = []
    for number, start in enumerate(range(0, len(noisy), batch_size)):
        condition = norm.condition(noisy[start:start + batch_size].float())[:, None].to(device)
        adapt_threads(condition.device)
        generator = generator_for(seed, number, device=device)
        level = condition.new_full((len(condition),), sqrt_gamma)
        total = None
        for _ in range(draws):
            y_t = torch.randn(condition.shape, generator=generator, device=generator.device,
                              dtype=condition.dtype).to(condition.device)
            if v_model:
                y0 = y0_from_v(y_t, denoiser.model(y_t, condition, level, raw=True), level)
            else:
                y0 = predict_y0_from_eps(y_t, denoiser.model(y_t, condition, level)
                                         .to(y_t.dtype), level)
            total = y0 if total is None else total + y0
        y0 = total / draws  # exact for one draw
        out.append(norm.denormalise(y0[:, 0]).cpu())
    return torch.cat(out)


def check_one_pass(denoiser: Denoiser, method: str = "x0") -> None:
    """Raise :class:`CryodiffError` (naming the checkpoint and ``method``, the one-pass
    method asked for) unless ``denoiser`` predicts v: an ε-model's one-pass x̂₀ divides its
    error by ``√γ̄_T``."""
    if denoiser.config.model.prediction != "v":
        raise CryodiffError(f"{method} needs a v-predicting model; this one predicts "
                            f"{denoiser.config.model.prediction} (train with `cryodiff train "
                            f"--prediction v`)", path=denoiser.checkpoint)


def check_x0ft(denoiser: Denoiser) -> None:
    """Raise :class:`CryodiffError` (naming the checkpoint) unless ``denoiser`` holds the
    fine-tuned x̂₀ network that ``x0ft`` reads (``cryodiff train --x0-finetune``)."""
    if denoiser.x0_model is None:
        raise CryodiffError("the checkpoint has no fine-tuned x̂₀ network for x0ft; train it "
                            "with `cryodiff train --resume --x0-finetune`",
                            path=denoiser.checkpoint)


def denoise_one_pass(denoiser: Denoiser, images: torch.Tensor, *, self_ensemble: bool = True,
                     batch_size: int = 64, seed: int = 0, match_scale: bool = False,
                     finetuned: bool = False, draws: int = 1) -> DenoiseResult:
    """``x0`` of ``images (N, L, L)`` (raw units): a v-predicting model's :func:`one_pass_x0`,
    through the dihedral self-ensemble (8 passes) when ``self_ensemble``; no std.
    ``match_scale`` as in :func:`denoise_with`. ``finetuned``: ``x0ft``, the same readout of
    the checkpoint's fine-tuned network (``cryodiff train --x0-finetune``). ``draws``: the
    readout averaged over that many starting noises per view (:func:`one_pass_x0`). Raises
    :class:`CryodiffError` for an ε-predicting checkpoint (``cryodiff train --prediction v``
    trains one that fits) or, with ``finetuned``, one without that network."""
    from cryodiff.self_ensemble import self_ensemble as dihedral_mean

    check_one_pass(denoiser, "x0ft" if finetuned else "x0")
    if finetuned:
        check_x0ft(denoiser)
        denoiser = dataclasses.replace(denoiser, model=denoiser.x0_model)

    def x0(x: torch.Tensor) -> torch.Tensor:
        return one_pass_x0(denoiser, x, seed=seed, batch_size=batch_size, draws=draws)

    def denoise(x: torch.Tensor) -> DenoiseResult:
        return DenoiseResult(dihedral_mean(x0, x) if self_ensemble else x0(x), None)

    return _in_training_units(denoiser, images, match_scale, denoise)


# Added to the seed of ``pm+x0``'s one-pass x̂₀, so its ``y_T`` is never the first draw of
# the sr3-pm samples it is averaged with (those use the seed itself).
PM_X0_SEED_OFFSET = 7_919


def denoise_pm_x0(denoiser: Denoiser, images: torch.Tensor, *, steps: int | None = None,
                  sampler: str | None = None, self_ensemble: bool = True,
                  batch_size: int = 64, seed: int = 0,
                  match_scale: bool = False) -> DenoiseResult:
    """``pm+x0`` of ``images (N, L, L)`` (raw units): the pixelwise mean of
    :func:`denoise_posterior_mean` (sr3-pm) and :func:`denoise_one_pass` (x0), the benchmark's
    ``sr3v-pm+x0`` row (equal weights). Needs a v-predicting checkpoint with an sr3-pm
    post-processor (``cryodiff train --prediction v --pm-postprocess``); raises
    :class:`CryodiffError` otherwise. Returns no std."""
    check_one_pass(denoiser, "pm+x0")
    pm = denoise_posterior_mean(denoiser, images, steps=steps, sampler=sampler,
                                self_ensemble=self_ensemble, batch_size=batch_size, seed=seed,
                                match_scale=match_scale)
    x0 = denoise_one_pass(denoiser, images, self_ensemble=self_ensemble, batch_size=batch_size,
                          seed=seed + PM_X0_SEED_OFFSET, match_scale=match_scale)
    return DenoiseResult((pm.mean + x0.mean.to(pm.mean.dtype)) / 2, None)


def refine_mean(denoiser: Denoiser, mean: torch.Tensor, images: torch.Tensor,
                self_ensemble: bool = True) -> torch.Tensor:
    """The checkpoint's mean refiner applied to ``mean (N, L, L)``, the mean of its ``K``
    samples of ``images (N, L, L)`` (both in training units), through the dihedral
    self-ensemble (8 passes, as measured in the benchmark) when ``self_ensemble``."""
    from cryodiff.training.postprocess_mse import refine_views

    return refine_views(denoiser.mean_refiner.net, denoiser, mean, images, self_ensemble)
