"""ASPIRE's covariance Wiener filter (CWF; Bhamre, Zhang & Singer 2016) via ``DenoiserCov2D``.

CWF estimates the mean and the rotation-invariant covariance of the clean (CTF-free) images
in a steerable Fourier-Bessel basis from all the images it is given, then applies the
per-image Wiener filter that also undoes each image's CTF. It is transductive: the
statistics come from the images being denoised. Its native output is the CTF-corrected
image (target ``"clean"``); for target ``"clean_ctf"`` the CTF is re-applied afterwards.

Our CTF grids (:func:`cryodiff.ctf.ctf_2d`, centred with the origin at L//2, rows = y) are
handed to ASPIRE unchanged as ``ArrayFilter``s: ASPIRE's filter grid has the same layout
(``grid_2d(L, indexing="yx")``), and passing the grid (not ASPIRE's own ``CTFFilter``, whose
sign is opposite to ours) keeps the output's sign that of the data. :func:`aspire_ctf_filter`
converts :class:`cryodiff.ctf.CtfParams` to an equal ASPIRE filter for users who want one.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from cryodiff.baselines.base import DenoisingData, check_images, check_target
from cryodiff.ctf import CtfParams
from cryodiff.errors import CryodiffError
from cryodiff.fourier import fft2_centered, ifft2_centered

INSTALL_HINT = "pip install aspire (or cryodiff[peers])"


def _aspire():
    try:
        import aspire.denoising
        import aspire.operators
        import aspire.source
    except ImportError as error:
        raise CryodiffError(f"CWF baseline skipped: aspire is not installed ({INSTALL_HINT})"
                            ) from error
    return aspire


def aspire_ctf_filter(params: CtfParams, index: int):
    """ASPIRE filter equal to :func:`cryodiff.ctf.ctf_2d` for particle ``index`` of ``params``.

    ASPIRE's ``CTFFilter`` evaluates ``h = sqrt(1-α²) sin χ' - α cos χ'`` with
    ``χ' = -χ``, i.e. ``-CTF`` in cryodiff's convention (``CTF(0) = +A``), so it is wrapped
    in a multiplication by -1. Defocus (Å), voltage (kV), Cs (mm) and amplitude contrast
    carry over; the astigmatism angle is in radians; the envelope is ``exp(-B' s²)`` with
    ``s`` in 1/nm against ``exp(-B |k|² / 4)`` with ``k`` in 1/Å, so ``B' = B / 400``.
    ASPIRE has no phase shift.
    """
    operators = _aspire().operators

    def value(field: torch.Tensor) -> float:
        field = torch.as_tensor(field)
        return float(field.reshape(-1)[index] if field.numel() > 1 else field)

    if value(params.phase_shift_deg) != 0:
        raise CryodiffError("ASPIRE's CTFFilter has no phase shift; use the CTF grid instead")
    aspire_ctf = operators.CTFFilter(
        voltage=value(params.voltage_kV), defocus_u=value(params.defocus_u_A),
        defocus_v=value(params.defocus_v_A),
        defocus_ang=math.radians(value(params.defocus_angle_deg)), Cs=value(params.cs_mm),
        alpha=value(params.amplitude_contrast), B=value(params.bfactor_A2) / 400)
    return operators.MultiplicativeFilter(aspire_ctf, operators.ScalarFilter(dim=2, value=-1.0))


def cwf_denoise(images: torch.Tensor, ctf: torch.Tensor | None = None,
                noise_variance: float | None = None, pixel_size_A: float = 1.0,
                batch_size: int = 512) -> torch.Tensor:
    """ASPIRE CWF of ``(N, L, L)`` images with per-image centred CTFs ``(N, L, L)``.

    ``noise_variance`` is the white-noise variance per pixel (None: ASPIRE estimates it from
    the image corners). Returns the CTF-corrected estimates ``(N, L, L)`` in the input's
    dtype; ASPIRE computes in float64 here for a stable covariance estimate.
    """
    aspire = _aspire()
    # ASPIRE logs every stage at INFO and warns when the raw covariance is not PSD (it
    # projects it); neither is actionable for a baseline run.
    logger = logging.getLogger("aspire")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        array = images.detach().cpu().double().numpy()
        source = aspire.source.ArrayImageSource(array, pixel_size=pixel_size_A)
        if ctf is not None:
            ctf_np = ctf.detach().cpu().double().numpy()
            source.unique_filters = [aspire.operators.ArrayFilter(h) for h in ctf_np]
            source.filter_indices = np.arange(len(ctf_np))
        denoiser = aspire.denoising.DenoiserCov2D(source, var_noise=noise_variance,
                                                  batch_size=batch_size)
        out = denoiser.denoise[:].asnumpy()
    finally:
        logger.setLevel(level)
    return torch.from_numpy(np.array(out)).to(device=images.device, dtype=images.dtype)


class CwfDenoiser:
    """ASPIRE CWF baseline. ``fit`` measures the noise variance on a split with
    ``clean_ctf`` (otherwise ASPIRE estimates it from the test images' corners).

    The mean and covariance come from the images given to ``denoise`` (transductive), so a
    score depends on how many there are: ``n_covariance_images`` records the count of the
    last call. The benchmark's "cwf" row denoises the 3D test set in one call, "cwf-2d"
    (this class too) only the 2D test images.
    """

    name = "cwf"

    def __init__(self, target: str = "clean_ctf", noise_variance: float | None = None,
                 pixel_size_A: float = 1.0):
        self.target = check_target(target)
        self.noise_variance = noise_variance
        self.pixel_size_A = pixel_size_A
        self.n_covariance_images: int | None = None

    def describe(self) -> str:
        """One line for the results table: where the covariance and noise variance came from."""
        noise = ("noise variance from validation" if self.noise_variance is not None
                 else "noise variance estimated by ASPIRE")
        if self.n_covariance_images is None:
            return noise
        return (f"mean and covariance fitted on the {self.n_covariance_images} images it "
                f"denoises; {noise}")

    def fit(self, data: DenoisingData) -> CwfDenoiser:
        """Noise variance from ``noisy - clean_ctf`` when available; checks aspire is there."""
        _aspire()
        check_images(data.noisy, data.ctf)
        self.pixel_size_A = data.pixel_size_A
        if data.clean_ctf is not None:
            self.noise_variance = float((data.noisy - data.clean_ctf).double().var())
        return self

    def denoise(self, images: torch.Tensor, ctf: torch.Tensor | None = None) -> torch.Tensor:
        """CWF-denoise ``(N, L, L)`` images with their CTFs; output per ``self.target``."""
        check_images(images, ctf)
        clean = cwf_denoise(images, ctf, self.noise_variance, self.pixel_size_A)
        self.n_covariance_images = images.shape[0]
        if self.target == "clean" or ctf is None:
            return clean
        return ifft2_centered(fft2_centered(clean) * ctf.to(clean.dtype)).to(images.dtype)
