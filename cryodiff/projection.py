"""Fourier-slice projector (any box size, even or odd, sub-pixel shifts), RELION-accurate.

An image is the projection along z of the map rotated by the pose matrix ``A`` (see
:mod:`cryodiff.geometry`); by the central-slice theorem its 2D Fourier transform at
``(kx, ky)`` is the map's 3D transform at ``Aᵀ · (kx, ky, 0)``. The recipe follows RELION's
``relion_project`` so that its projections are reproduced to well under 2 %:

1. *Gridding pre-correction*: the real-space map is divided by ``sinc²(r / (pad · L))``
   (``r`` = distance in voxels from the box origin), the transform of the trilinear kernel
   on the padded grid, so that trilinear interpolation in Fourier space does not attenuate
   the edges of the box.
2. The corrected map is zero-padded to ``pad · L`` voxels (pad = 2) and Fourier transformed;
   frequencies beyond ``pad · (L // 2)`` padded voxels (Nyquist) are zeroed.
3. For every image, the half plane ``kx ≥ 0`` inside the disk ``|k| ≤ L // 2`` is sampled by
   trilinear interpolation (Hermitian symmetry supplies ``kx < 0``), phase ramps place the
   origin at ``L // 2`` and apply the shifts, and an inverse real FFT gives the image.

Intensities are line integrals: for the identity pose a band-limited map projects to
``volume.sum(dim=0)`` (unit-sum projector). RELION's images use another overall scale.

Shifts are in pixels, ordered (x, y); a positive x moves the content towards larger column
indices (the same sign as :func:`cryodiff.fourier.phase_shift`). RELION's origins enter with
the opposite sign: ``shifts_px = -origin_A / pixel_size_A`` (see :func:`relion_shifts_px`).

RELION's odd boxes: ``relion_project`` centres its odd-sized output images at index
``L // 2 + 1`` (its ``CenterFFT`` rolls by ``-(L // 2)`` after the inverse transform), one pixel
off the ``L // 2`` convention that its own maps (and cryodiff) use. cryodiff keeps ``L // 2``;
:func:`relion_shifts_px` adds that pixel when asked to mimic ``relion_project`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cryodiff.fourier import coordinate_grid, fft2_centered
from cryodiff.threads import adapt_threads

PADDING = 2


@dataclass(frozen=True)
class PreparedVolume:
    """A map ready for projection: half of the padded, gridding-corrected 3D transform.

    ``data`` is complex ``(2R + 3, 2R + 3, R + 2)`` indexed ``[kz + R + 1, ky + R + 1, kx]`` in
    padded-grid frequency units, with ``R = pad · (box // 2)``; it is zero beyond radius ``R``
    and one voxel of margin keeps every trilinear neighbour inside the array.
    """

    data: torch.Tensor
    box: int
    pad: int

    @property
    def radius(self) -> int:
        return self.pad * (self.box // 2)

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def real_dtype(self) -> torch.dtype:
        return self.data.real.dtype


def gridding_correction(box: int, pad: int = PADDING, device=None,
                        dtype=torch.float32) -> torch.Tensor:
    """``sinc²(r / (pad · box))`` on the ``(box,)*3`` grid, ``r`` in voxels from ``box // 2``.

    Dividing a map by this pre-compensates the trilinear interpolation done later on the
    ``pad``-times oversampled Fourier grid (the trilinear kernel's transform is a sinc²).
    """
    r = coordinate_grid(box, 3, device, torch.float64).norm(dim=-1) / (pad * box)
    return torch.sinc(r).square().to(dtype)


def prepare_volume(volume: torch.Tensor, pad: int = PADDING) -> PreparedVolume:
    """Pre-correct, pad and Fourier transform ``volume`` ``(L, L, L)`` (indexed z, y, x).

    The result keeps the input's device; float64 maps give complex128 data, others complex64.
    """
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise ValueError(f"volume must be a cubic (L, L, L) tensor, got {tuple(volume.shape)}")
    box = volume.shape[-1]
    real_dtype = torch.float64 if volume.dtype == torch.float64 else torch.float32
    corrected = volume.to(real_dtype) / gridding_correction(box, pad, volume.device, real_dtype)
    size = pad * box  # even, so the padded origin pad·box/2 is unambiguous
    padded = corrected.new_zeros((size,) * 3)
    start = size // 2 - box // 2
    padded[start:start + box, start:start + box, start:start + box] = corrected
    # Origin of the padded box to index 0, then a half transform along x.
    spectrum = torch.fft.rfftn(torch.fft.ifftshift(padded), dim=(0, 1, 2))
    spectrum = torch.fft.fftshift(spectrum, dim=(0, 1))  # ky, kz = 0 at index size // 2
    radius = pad * (box // 2)
    keep = radius + 1
    centre = size // 2
    # The padded grid holds frequencies -size/2 … size/2 - 1; anything else stays zero.
    lo, hi = min(keep, centre), min(keep, centre - 1)
    data = spectrum.new_zeros(2 * keep + 1, 2 * keep + 1, keep + 1)
    cols = min(keep + 1, spectrum.shape[-1])
    data[keep - lo:keep + hi + 1, keep - lo:keep + hi + 1, :cols] = \
        spectrum[centre - lo:centre + hi + 1, centre - lo:centre + hi + 1, :cols]
    k = torch.arange(-keep, keep + 1, device=volume.device)
    r2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, keep:] ** 2
    data = torch.where(r2 <= radius * radius, data, torch.zeros_like(data)).contiguous()
    return PreparedVolume(data=data, box=box, pad=pad)


def _half_plane(box: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequencies ``(P, 2)`` (kx ≥ 0, |k| ≤ box // 2) and their flat rfft2 indices ``(P,)``."""
    half = box // 2 + 1
    kx = torch.arange(half, device=device)
    ky = torch.arange(box, device=device) - box // 2
    grid_y, grid_x = torch.meshgrid(ky, kx, indexing="ij")
    inside = grid_x ** 2 + grid_y ** 2 <= (box // 2) ** 2
    freqs = torch.stack([grid_x[inside], grid_y[inside]], dim=-1)
    flat = (freqs[:, 1] % box) * half + freqs[:, 0]
    return freqs, flat


def _sample(prepared: PreparedVolume, rotations: torch.Tensor,
            freqs: torch.Tensor) -> torch.Tensor:
    """Trilinear samples ``(N, P)`` of the prepared transform at ``pad · Aᵀ (kx, ky, 0)``."""
    data = prepared.data
    dtype = prepared.real_dtype
    _, span_y, span_x = data.shape
    keep = span_x - 1
    a = rotations.to(device=data.device, dtype=dtype) * prepared.pad
    points = freqs.to(dtype) @ a[:, :2, :]  # (N, P, 3) = kx·A[0] + ky·A[1], ordered x, y, z
    # Only kx ≥ 0 is stored: use F(-p) = conj F(p) for the other half.
    sign = torch.where(points[..., 0] < 0, -1.0, 1.0).to(dtype)
    points.mul_(sign[..., None])
    base = torch.floor(points)
    frac = points.sub_(base)
    # One flat index per point (float matmul is exact: indices are far below 2**24), then
    # the 8 trilinear neighbours at fixed offsets, ordered [z][y][x].
    strides = torch.tensor([1, span_x, span_x * span_y], dtype=dtype, device=data.device)
    origin = (keep * span_y + keep) * span_x
    flat = (base @ strides).to(torch.int64).add_(origin)
    plane, row = span_x * span_y, span_x
    corners = torch.tensor([0, 1, row, row + 1, plane, plane + 1, plane + row, plane + row + 1],
                           device=data.device)
    values = data.reshape(-1).take(flat[..., None] + corners)
    values = torch.view_as_real(values).view(*flat.shape, 2, 4, 2)  # (N, P, z, y·x, re/im)
    fx, fy, fz = (frac[..., i, None, None] for i in range(3))
    # Lerps on the real view: real weights on complex tensors would be promoted (copied).
    values = torch.lerp(values[..., 0, :, :], values[..., 1, :, :], fz).view(*flat.shape, 2, 2, 2)
    values = torch.lerp(values[..., 0, :, :], values[..., 1, :, :], fy)
    values = torch.lerp(values[..., 0, :], values[..., 1, :], fx[..., 0])
    values[..., 1].mul_(sign)
    return torch.view_as_complex(values)


def _phase(freqs: torch.Tensor, shifts_px: torch.Tensor, box: int) -> torch.Tensor:
    """``exp(-2πi k·s / L)`` ``(N, P)``: moves content by ``s`` (x, y) pixels."""
    angle = (freqs.to(shifts_px.dtype) @ shifts_px.transpose(0, 1)).transpose(0, 1)
    angle = angle * (-2 * math.pi / box)
    return torch.polar(torch.ones_like(angle), angle)


def project(volume: torch.Tensor | PreparedVolume, rotations: torch.Tensor,
            shifts_px: torch.Tensor | None = None, chunk_size: int = 256) -> torch.Tensor:
    """Project a map at poses ``rotations`` ``(N, 3, 3)`` (RELION ``A`` matrices).

    ``volume`` is an ``(L, L, L)`` map or a :class:`PreparedVolume` (reuse it across calls).
    ``shifts_px`` ``(N, 2)`` (x, y) pixels translate each image (positive x → larger columns).
    Returns real images ``(N, L, L)`` on the prepared volume's device, float32 (float64 for
    float64 maps). Images are made ``chunk_size`` at a time to bound memory.
    """
    prepared = volume if isinstance(volume, PreparedVolume) else prepare_volume(volume)
    box, device, dtype = prepared.box, prepared.device, prepared.real_dtype
    n = rotations.shape[0]
    freqs, flat = _half_plane(box, device)
    # irfft2 puts the image origin at index 0: a phase ramp moves it to L // 2, together
    # with the requested shifts.
    centre = float(box // 2)
    base_phase = _phase(freqs, torch.full((1, 2), centre, dtype=dtype, device=device), box)[0]
    if shifts_px is not None:
        shifts_px = torch.as_tensor(shifts_px).to(device=device, dtype=dtype).reshape(n, 2)
    half = box // 2 + 1
    out = torch.empty(n, box, box, dtype=dtype, device=device)
    for start in range(0, n, chunk_size):
        adapt_threads(out.device)
        stop = min(start + chunk_size, n)
        phase = (base_phase if shifts_px is None
                 else _phase(freqs, shifts_px[start:stop] + centre, box))
        values = _sample(prepared, rotations[start:stop], freqs).mul_(phase)
        spectrum = values.new_zeros(stop - start, box * half)
        spectrum[:, flat] = values
        out[start:stop] = torch.fft.irfft2(spectrum.reshape(-1, box, half), s=(box, box))
    return out


def project_fourier(volume: torch.Tensor | PreparedVolume, rotations: torch.Tensor,
                    shifts_px: torch.Tensor | None = None, chunk_size: int = 256) -> torch.Tensor:
    """Centred 2D Fourier transforms ``(N, L, L)`` (complex) of :func:`project`'s images."""
    return fft2_centered(project(volume, rotations, shifts_px, chunk_size))


def relion_shifts_px(origins_A: torch.Tensor, pixel_size_A: float | torch.Tensor,
                     box: int, odd_box_offset: bool = False) -> torch.Tensor:
    """Projector shifts ``(N, 2)`` pixels from RELION origins ``(N, 2)`` (rlnOriginX/YAngst).

    RELION translates the projection by minus its origin. With ``odd_box_offset`` the extra
    one-pixel (x, y) offset of ``relion_project``'s odd-sized images is added (see module doc).
    """
    pixel = torch.as_tensor(pixel_size_A, dtype=origins_A.dtype, device=origins_A.device)
    shifts = -origins_A / (pixel[..., None] if pixel.ndim else pixel)
    if odd_box_offset and box % 2 == 1:
        shifts = shifts + 1.0
    return shifts
