"""Noise schedules, the forward (noising) process and the SR3 training loss.

Notation follows SR3 (Saharia et al. 2021): ``α_t = 1 − β_t``, ``γ̄_t = ∏_{s≤t} α_s`` and the
forward process ``y_t = √γ̄_t·y₀ + √(1−γ̄_t)·ε``, ``ε ~ N(0, I)``. Steps are numbered
``t = 1 … T``; a schedule stores them at indices ``0 … T−1``, with ``γ̄_0 := 1`` (the clean
image) in ``gammas_prev[0]``. The model is trained on continuous noise levels ``√γ̄`` (not step
indices), so inference may use any re-spaced schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cryodiff.errors import CryodiffError

SCHEDULES = ("linear", "cosine")
LOSSES = ("l1", "l2")
# What the network's output stands for: ε (SR3, the paper) or v = √γ̄·ε − √(1−γ̄)·y₀
# (Salimans & Ho 2022), which is −y₀ at the noisiest levels and ε at the cleanest, so every
# level trains the network to say something about the clean image.
PREDICTIONS = ("eps", "v")


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A discrete noise schedule: ``(T,)`` float32 tensors built in float64.

    ``timesteps`` are the steps (1-based, of the schedule this one was re-spaced from, or its
    own) that the entries stand for. ``gammas_exact`` is the float64 ``γ̄`` curve, kept on the
    CPU for re-spacing and for the samplers' step coefficients: near ``γ̄ = 1`` float32 keeps
    only a digit or two of ``1 − γ̄`` and of ``β``; ``sqrt_one_minus_gammas`` is stored for
    the same reason.
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    gammas: torch.Tensor
    gammas_prev: torch.Tensor
    sqrt_gammas: torch.Tensor
    sqrt_gammas_prev: torch.Tensor
    sqrt_one_minus_gammas: torch.Tensor
    timesteps: torch.Tensor
    gammas_exact: torch.Tensor

    @property
    def n_steps(self) -> int:
        return int(self.betas.shape[0])

    @property
    def noisiest_level(self) -> float:
        """``√γ̄_T``, the noise level of the first reverse step (float64 precision)."""
        return math.sqrt(float(self.gammas_exact[-1]))

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio ``γ̄ / (1 − γ̄)`` per step, ``(T,)``."""
        return self.gammas / (1 - self.gammas)  # 1 − γ̄ is exact in float32 for γ̄ ≥ ½

    @classmethod
    def from_gammas(cls, gammas: torch.Tensor,
                    timesteps: torch.Tensor | None = None) -> NoiseSchedule:
        """Schedule with the given ``γ̄_1 … γ̄_T`` (strictly decreasing, in (0, 1))."""
        g = gammas.double()
        if g.ndim != 1 or g.numel() == 0 or not torch.all((g > 0) & (g < 1)):
            raise ValueError("gammas must be a non-empty 1D tensor with values in (0, 1)")
        if torch.any(g[1:] >= g[:-1]):
            raise ValueError("gammas must be strictly decreasing")
        prev = torch.cat([g.new_ones(1), g[:-1]])
        alphas = g / prev
        if timesteps is None:
            timesteps = torch.arange(1, g.numel() + 1)
        return cls(betas=(1 - alphas).float(), alphas=alphas.float(), gammas=g.float(),
                   gammas_prev=prev.float(), sqrt_gammas=g.sqrt().float(),
                   sqrt_gammas_prev=prev.sqrt().float(),
                   sqrt_one_minus_gammas=(1 - g).sqrt().float(), timesteps=timesteps.long(),
                   gammas_exact=g.cpu())

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> NoiseSchedule:
        """Schedule with ``γ̄_t = ∏ (1 − β_s)``."""
        return cls.from_gammas(torch.cumprod(1 - betas.double(), dim=0))

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """The same schedule with its float32 tensors on ``device`` (``gammas_exact`` stays
        on the CPU: not every accelerator has float64)."""
        return NoiseSchedule(**{name: getattr(self, name).to(device)
                                for name in self.__dataclass_fields__ if name != "gammas_exact"},
                             gammas_exact=self.gammas_exact)


def linear_schedule(n_steps: int = 2000, beta_start: float = 1e-6,
                    beta_end: float = 1e-2) -> NoiseSchedule:
    """β linear from ``beta_start`` to ``beta_end`` (SR3's training schedule by default)."""
    betas = torch.linspace(beta_start, beta_end, n_steps, dtype=torch.float64)
    return NoiseSchedule.from_betas(betas)


def cosine_schedule(n_steps: int = 2000, s: float = 0.008,
                    max_beta: float = 0.999) -> NoiseSchedule:
    """``γ̄(t) ∝ cos²((t/T + s)/(1 + s)·π/2)`` (Nichol & Dhariwal 2021, eq. 17), with
    β clipped to ``max_beta``."""
    t = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return NoiseSchedule.from_betas(betas)


def respace(schedule: NoiseSchedule, n_steps: int) -> NoiseSchedule:
    """``n_steps`` evenly spaced steps of ``schedule``, keeping its ``γ̄`` at those steps.

    The first (least noisy) and last (noisiest) steps are always kept; β is recomputed from
    consecutive kept ``γ̄`` (``β = 1 − γ̄_k / γ̄_{k'}``), as improved-diffusion's ``respace``.
    ``n_steps == T`` returns the original schedule.
    """
    total = schedule.n_steps
    if not 1 <= n_steps <= total:
        raise CryodiffError(f"cannot re-space a {total}-step schedule to {n_steps} steps "
                            f"(choose 1 … {total})")
    if n_steps == 1:
        keep = torch.tensor([total - 1])
    else:
        keep = torch.round(torch.linspace(0, total - 1, n_steps, dtype=torch.float64)).long()
    return NoiseSchedule.from_gammas(schedule.gammas_exact[keep], schedule.timesteps.cpu()[keep])


def make_schedule(name: str = "linear", n_steps: int = 2000) -> NoiseSchedule:
    """Schedule by name: ``"linear"`` (SR3, β 1e-6 → 1e-2) or ``"cosine"``."""
    if name == "linear":
        return linear_schedule(n_steps)
    if name == "cosine":
        return cosine_schedule(n_steps)
    raise CryodiffError(f"unknown noise schedule {name!r} (choose from {', '.join(SCHEDULES)})")


def _per_image(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``(B,)`` (or a scalar) to broadcast against ``(B, ...)`` in ``like``'s dtype."""
    return value.to(like).reshape(-1, *([1] * (like.ndim - 1)))


def _sqrt_one_minus_square(s: torch.Tensor) -> torch.Tensor:
    """``√(1 − s²)`` written as ``√((1 − s)(1 + s))``: ``1 − s`` is exact in floating point for
    s in [½, 1], so small noise levels keep full relative precision even in float32."""
    return ((1 - s) * (1 + s)).clamp(min=0).sqrt()


def sample_noise_levels(schedule: NoiseSchedule, batch: int,
                        generator: torch.Generator | None = None,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """SR3 training noise levels ``√γ̄``, ``(batch,)`` float32.

    For a uniform step ``t`` in 1 … T, ``√γ̄`` is drawn uniformly between ``√γ̄_t`` and
    ``√γ̄_{t−1}`` (Saharia et al. 2021, §2.4), so the model sees a continuum of levels.
    Random numbers come from ``generator`` (on its device) and are moved to ``device``.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    t = torch.randint(0, schedule.n_steps, (batch,), generator=generator, device=gen_device)
    u = torch.rand(batch, generator=generator, device=gen_device)
    low = schedule.sqrt_gammas.to(gen_device)[t]
    high = schedule.sqrt_gammas_prev.to(gen_device)[t]
    return (low + u * (high - low)).to(device if device is not None else gen_device)


def q_sample(y0: torch.Tensor, sqrt_gamma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Forward process ``y_t = √γ̄·y₀ + √(1−γ̄)·ε`` for ``y0 (B, ...)`` and ``sqrt_gamma (B,)``."""
    s = _per_image(sqrt_gamma, y0)
    return s * y0 + _sqrt_one_minus_square(s) * noise


def predict_y0_from_eps(y_t: torch.Tensor, eps: torch.Tensor,
                        sqrt_gamma: torch.Tensor) -> torch.Tensor:
    """``ŷ₀ = (y_t − √(1−γ̄)·ε̂) / √γ̄``."""
    s = _per_image(sqrt_gamma, y_t)
    return (y_t - _sqrt_one_minus_square(s) * eps) / s


def predict_eps_from_y0(y_t: torch.Tensor, y0: torch.Tensor,
                        sqrt_gamma: torch.Tensor) -> torch.Tensor:
    """``ε̂ = (y_t − √γ̄·ŷ₀) / √(1−γ̄)`` (the inverse of :func:`predict_y0_from_eps`)."""
    s = _per_image(sqrt_gamma, y_t)
    return (y_t - s * y0) / _sqrt_one_minus_square(s)


def v_target(y0: torch.Tensor, noise: torch.Tensor, sqrt_gamma: torch.Tensor) -> torch.Tensor:
    """``v = √γ̄·ε − √(1−γ̄)·y₀``, the v-prediction target for ``y_t = q_sample(y0, …, ε)``."""
    s = _per_image(sqrt_gamma, y0)
    return s * noise - _sqrt_one_minus_square(s) * y0


def eps_from_v(y_t: torch.Tensor, v: torch.Tensor, sqrt_gamma: torch.Tensor) -> torch.Tensor:
    """``ε̂ = √(1−γ̄)·y_t + √γ̄·v̂`` (exact for the v of :func:`v_target`; float32 or wider)."""
    s = _per_image(sqrt_gamma, y_t)
    return _sqrt_one_minus_square(s) * y_t + s * v.to(y_t.dtype)


def y0_from_v(y_t: torch.Tensor, v: torch.Tensor, sqrt_gamma: torch.Tensor) -> torch.Tensor:
    """``ŷ₀ = √γ̄·y_t − √(1−γ̄)·v̂`` (exact for the v of :func:`v_target`, at every noise level
    and schedule; no division by ``√γ̄``)."""
    s = _per_image(sqrt_gamma, y_t)
    return s * y_t - _sqrt_one_minus_square(s) * v.to(y_t.dtype)


def check_prediction(prediction: str) -> str:
    """``prediction`` if it is one of :data:`PREDICTIONS`, else :class:`CryodiffError`."""
    if prediction not in PREDICTIONS:
        raise CryodiffError(f"unknown prediction {prediction!r} (choose from "
                            f"{', '.join(PREDICTIONS)})")
    return prediction


def diffusion_loss(model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                   y0: torch.Tensor, condition: torch.Tensor, schedule: NoiseSchedule,
                   loss: str = "l1", generator: torch.Generator | None = None,
                   shard: tuple[int, int] = (0, 1), prediction: str = "eps",
                   readout_fraction: float = 0.0) -> torch.Tensor:
    """SR3 training objective: mean L1 (SR3's choice) or L2 between ε and the model's ε̂
    (``prediction="eps"``), or between v (:func:`v_target`) and the model's raw output
    (``"v"``: the model is called with ``raw=True``, see :class:`~cryodiff.models.unet.SR3UNet`).

    ``y0`` is the clean target ``(B, 1, L, L)``, ``condition`` the noisy particle; noise
    levels come from :func:`sample_noise_levels` and ``ε`` from ``generator``. With
    ``shard = (rank, world)`` they are drawn for the global batch of ``world · B`` images and
    this process keeps rows ``rank, rank + world, …``: ``world`` data-parallel processes then
    draw exactly what one process with the global batch draws.

    ``readout_fraction`` (v only): the first ``round(f · world · B)`` rows of the global batch
    train the one-pass readout instead (:func:`readout_rows`); the loss is then the mean over
    rows of each row's own loss. The random draws do not depend on it.
    """
    if loss not in LOSSES:
        raise CryodiffError(f"unknown diffusion loss {loss!r} (choose from {', '.join(LOSSES)})")
    check_prediction(prediction)
    check_readout_fraction(readout_fraction, prediction)
    rank, world = shard
    total = y0.shape[0] * world
    sqrt_gamma = sample_noise_levels(schedule, total, generator, device=y0.device)[rank::world]
    gen_device = generator.device if generator is not None else y0.device
    noise = torch.randn((total, *y0.shape[1:]), generator=generator, device=gen_device,
                        dtype=y0.dtype)
    noise = noise[rank::world].to(y0.device)
    # Decided on the host: a test of the mask's values would make the CPU wait for the GPU.
    with_readout = round(readout_fraction * total) > 0
    if with_readout:  # per row, and broadcast over each row's pixels
        readout = readout_rows(total, readout_fraction, y0.device)[rank::world]
        readout_pixels = readout.reshape(-1, *([1] * (y0.ndim - 1)))
        sqrt_gamma = torch.where(readout, schedule.noisiest_level, sqrt_gamma)
    y_t = q_sample(y0, sqrt_gamma, noise)
    if with_readout:  # the readout's input is pure noise, as one_pass_x0 draws it
        y_t = torch.where(readout_pixels, noise, y_t)
    if prediction == "v":
        output, target = model(y_t, condition, sqrt_gamma, raw=True), v_target(y0, noise,
                                                                               sqrt_gamma)
    else:
        output, target = model(y_t, condition, sqrt_gamma), noise
    if not with_readout:
        return F.l1_loss(output, target) if loss == "l1" else F.mse_loss(output, target)
    error = (output - target).abs() if loss == "l1" else (output - target).square()
    x0_error = (y0_from_v(y_t, output, sqrt_gamma) - y0).square()
    per_row = torch.where(readout_pixels, x0_error, error)
    return per_row.float().mean()


def readout_rows(total: int, fraction: float, device: torch.device | str | None = None
                 ) -> torch.Tensor:
    """Which rows of a global batch of ``total`` train the readout, ``(total,)`` bool: the
    first ``round(fraction · total)``. Such a row is shown pure noise ``y_T = ε`` at the
    schedule's noisiest level ``√γ̄_T`` and scored by the squared error of its
    ``x̂₀ = √γ̄_T·ε − √(1−γ̄_T)·v̂`` against the clean image, the objective of
    :func:`cryodiff.training.x0_finetune.finetune_x0` (the posterior mean, read out in one
    pass by :func:`cryodiff.denoise.one_pass_x0`)."""
    rows = torch.zeros(total, dtype=torch.bool, device=device)
    rows[:round(fraction * total)] = True
    return rows


def check_readout_fraction(fraction: float, prediction: str) -> float:
    """``fraction`` if it is in [0, 1) and, when positive, ``prediction`` is ``"v"`` (an
    ε-network's x̂₀ at the noisiest level is useless); else :class:`CryodiffError`."""
    if not 0.0 <= fraction < 1.0:
        raise CryodiffError(f"readout_fraction must be in [0, 1), not {fraction}")
    if fraction > 0 and prediction != "v":
        raise CryodiffError("readout_fraction needs a v-predicting network (prediction 'v')")
    return fraction
