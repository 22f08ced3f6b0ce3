"""Centred discrete Fourier transforms, frequency grids and Fourier resampling.

Conventions used everywhere in cryodiff (stated once, here):

* A box of side L (even or odd) has its origin at index ``L // 2`` on every axis, as in
  RELION. Real-space pixel ``(i, j)`` of an image sits at ``x = j - L//2``, ``y = i - L//2``
  pixels; a volume indexed ``[k, i, j]`` (MRC order z, y, x) has ``z = k - L//2``.
* ``fft*_centered`` put the zero frequency at index ``L // 2`` too, and measure phases from the
  real-space origin (``ifftshift`` before, ``fftshift`` after). Forward transforms are
  unnormalised (NumPy "backward" norm), so the central-slice theorem holds exactly for
  discrete data: ``fft2(sum_z V) == fft3(V)[z=0 plane]``.
* Frequency vectors are ordered ``(x, y[, z])`` in the last dimension — the same order as the
  coordinate vectors that rotation matrices act on (see :mod:`cryodiff.geometry`).

All functions are pure, batched over leading dimensions, and follow the input's device/dtype.
"""

from __future__ import annotations

import math

import torch


def _last_dims(ndim: int) -> tuple[int, ...]:
    return tuple(range(-ndim, 0))


def fftn_centered(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Centred FFT over the last ``ndim`` dimensions (zero frequency at index L//2)."""
    dims = _last_dims(ndim)
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims), dim=dims)


def ifftn_centered(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Inverse of :func:`fftn_centered` (complex output; take ``.real`` for real data)."""
    dims = _last_dims(ndim)
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(x, dim=dims), dim=dims), dim=dims)


def fft2_centered(images: torch.Tensor) -> torch.Tensor:
    """Centred 2D FFT of images ``(..., L, L)``."""
    return fftn_centered(images, 2)


def ifft2_centered(images_ft: torch.Tensor) -> torch.Tensor:
    """Real part of the centred inverse 2D FFT of ``(..., L, L)``."""
    return ifftn_centered(images_ft, 2).real


def fft3_centered(volume: torch.Tensor) -> torch.Tensor:
    """Centred 3D FFT of volumes ``(..., L, L, L)``."""
    return fftn_centered(volume, 3)


def ifft3_centered(volume_ft: torch.Tensor) -> torch.Tensor:
    """Real part of the centred inverse 3D FFT of ``(..., L, L, L)``."""
    return ifftn_centered(volume_ft, 3).real


def centered_coordinates(size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Integer offsets ``-(size//2) … size-1-size//2`` from the box origin, as ``dtype``."""
    return torch.arange(size, device=device, dtype=dtype) - size // 2


def coordinate_grid(size: int, ndim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel coordinates of a centred box, shape ``(size,)*ndim + (ndim,)`` ordered (x, y[, z]).

    In Fourier space the same grid holds frequencies in cycles per box (divide by ``size`` for
    cycles per pixel, and by the pixel size in Å for 1/Å).
    """
    axis = centered_coordinates(size, device, dtype)
    grids = torch.meshgrid(*([axis] * ndim), indexing="ij")  # array order: (z,) y, x
    return torch.stack(grids[::-1], dim=-1)


def frequency_grid(size: int, ndim: int, pixel_size_A: float = 1.0, device=None,
                   dtype=torch.float32) -> torch.Tensor:
    """Spatial frequencies in 1/Å for a centred FFT of a box of ``size`` pixels.

    Returns shape ``(size,)*ndim + (ndim,)`` with components (x, y[, z]).
    """
    return coordinate_grid(size, ndim, device, dtype) / (size * pixel_size_A)


def radius_grid(size: int, ndim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Distance in pixels (or Fourier voxels) from the box origin, shape ``(size,)*ndim``."""
    return coordinate_grid(size, ndim, device, dtype).norm(dim=-1)


def phase_shift(images_ft: torch.Tensor, shifts_px: torch.Tensor) -> torch.Tensor:
    """Translate images by ``shifts_px`` (pixels, ``(..., 2)`` as (x, y)) via a phase ramp.

    ``images_ft`` is ``(..., L, L)`` from :func:`fft2_centered`. A positive x shift moves the
    content towards larger column indices: ``out(r) = in(r - s)``, i.e. multiplying by
    ``exp(-2πi k·s / L)``. Sub-pixel shifts are exact for band-limited images.
    """
    size = images_ft.shape[-1]
    freqs = coordinate_grid(size, 2, images_ft.device, shifts_px.dtype) / size  # cycles/pixel
    phase = (freqs[..., 0] * shifts_px[..., 0, None, None]
             + freqs[..., 1] * shifts_px[..., 1, None, None])
    return images_ft * torch.polar(torch.ones_like(phase), -2 * math.pi * phase).to(images_ft.dtype)


def apply_centrosymmetric_filter(images: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
    """Multiply real images ``(..., L, L)`` in Fourier space by a real filter ``(..., L, L)``.

    ``transfer`` is on the centred grid (zero frequency at L//2) and must satisfy
    ``H(k) = H(-k)`` — true of CTFs (astigmatic ones too) and radial spectra. That makes the
    result independent of where the origin is, so real FFTs on the uncentred grid suffice
    (about twice as fast as the centred complex transforms).
    """
    box = images.shape[-1]
    half = torch.fft.ifftshift(transfer, dim=(-2, -1))[..., : box // 2 + 1]
    return torch.fft.irfft2(torch.fft.rfft2(images) * half.to(images.dtype), s=(box, box))


def shift_images(images: torch.Tensor, shifts_px: torch.Tensor) -> torch.Tensor:
    """Real-space wrapper of :func:`phase_shift` for images ``(..., L, L)``."""
    return ifft2_centered(phase_shift(fft2_centered(images), shifts_px.to(images.dtype)))


def fourier_resize(x: torch.Tensor, new_size: int, ndim: int) -> torch.Tensor:
    """Resample the last ``ndim`` dims to ``new_size`` by Fourier cropping or zero-padding.

    The physical field of view is kept, so the pixel size scales by ``old_size / new_size``;
    intensities are rescaled so that the mean value (and a constant map) is preserved.
    """
    old_size = x.shape[-1]
    if new_size == old_size:
        return x.clone()
    x_ft = fftn_centered(x, ndim)
    keep = min(old_size, new_size)
    src = slice(old_size // 2 - keep // 2, old_size // 2 - keep // 2 + keep)
    dst = slice(new_size // 2 - keep // 2, new_size // 2 - keep // 2 + keep)
    out = x_ft.new_zeros(x.shape[:-ndim] + (new_size,) * ndim)
    out[(Ellipsis,) + (dst,) * ndim] = x_ft[(Ellipsis,) + (src,) * ndim]
    scale = (new_size / old_size) ** ndim
    return ifftn_centered(out, ndim).real.to(x.dtype) * scale
