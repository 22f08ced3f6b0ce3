"""Direct Fourier inversion: insert central slices into a padded 3D grid, then divide.

The inverse of :mod:`cryodiff.projection`, following RELION's ``BackProjector``:

1. Each image's centred 2D transform ``F(k)`` (half plane ``kx ≥ 0``, ``|k| ≤ L // 2``) is
   placed at the 3D frequency ``q = pad · Aᵀ (kx, ky, 0)`` of a grid oversampled ``pad`` (=2)
   times, after undoing the image's shift. Only the half ``qx ≥ 0`` is stored (a point with
   ``qx < 0`` goes to ``-q`` as ``conj F``, by Hermitian symmetry).
2. Trilinear weights spread every point over its 8 neighbouring voxels; the grid accumulates
   ``Σ w · CTF · F`` (``data``) and ``Σ w · CTF²`` (``weight``) with ``index_add_`` on flat
   indices, a batch of images at a time.
3. :func:`finalize` divides, ``data / (weight + λ · ⟨weight⟩_shell)``: a Wiener-like filter
   whose constant is ``λ`` (``regularization``) times the mean weight of the voxel's Fourier
   shell, so it scales with the number of particles and stops division by ~0 at CTF zeros
   (RELION similarly floors the weight at 1/1000 of its shell average). The inverse FFT of
   the padded grid is cropped to L³ and divided by ``sinc²(r / (pad · L))``, the transform of
   the trilinear kernel (gridding correction).

Images use the centred-FFT convention of :mod:`cryodiff.fourier` (origin at ``L // 2``) and the
poses of :mod:`cryodiff.geometry`; ``shifts_px`` are the shifts the images carry, in the sense
of :func:`cryodiff.projection.project` (positive x = content moved to larger columns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cryodiff.projection import PADDING, gridding_correction

# Points (image pixels × batch) handled per scatter pass: bounds the temporary memory
# (about 100 bytes per point) independently of the image batch size.
_POINTS_PER_PASS = 1 << 21


@dataclass
class FourierAccumulator:
    """Running sums of the direct Fourier inversion (mutable: it is an accumulator).

    ``data`` (complex) and ``weight`` (real) have shape ``(2K + 1, 2K + 1, K + 1)`` indexed
    ``[qz + K, qy + K, qx]`` in padded-grid frequency units, ``K = pad · (box // 2) + 1``
    (one voxel of margin keeps every trilinear neighbour inside the array).
    """

    data: torch.Tensor
    weight: torch.Tensor
    box: int
    pad: int = PADDING
    n_images: int = 0

    @property
    def radius(self) -> int:
        """Largest inserted frequency in padded-grid voxels, ``pad · (box // 2)``."""
        return self.pad * (self.box // 2)

    def __add__(self, other: FourierAccumulator) -> FourierAccumulator:
        if (self.box, self.pad) != (other.box, other.pad):
            raise ValueError("cannot add accumulators of different box or padding")
        return FourierAccumulator(self.data + other.data, self.weight + other.weight,
                                  self.box, self.pad, self.n_images + other.n_images)


def new_accumulator(box: int, pad: int = PADDING, device=None,
                    dtype: torch.dtype = torch.float32) -> FourierAccumulator:
    """An empty accumulator for images of side ``box`` (real ``dtype`` float32/float64)."""
    keep = pad * (box // 2) + 1
    shape = (2 * keep + 1, 2 * keep + 1, keep + 1)
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    return FourierAccumulator(torch.zeros(shape, dtype=complex_dtype, device=device),
                              torch.zeros(shape, dtype=dtype, device=device), box, pad)


def half_plane(box: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One point of every Hermitian pair of a ``box²`` transform inside ``|k| ≤ box // 2``.

    Returns ``(freqs (M, 2) int64 (kx, ky), rfft_index (M,), centred_index (M,))``: the flat
    index of each point in ``rfft2`` output ``(box, box//2 + 1)`` of an ``ifftshift``-ed image
    and in a centred ``(box, box)`` grid (e.g. :func:`cryodiff.ctf.ctf_2d`). Points with
    ``0 < kx < L - L//2``, plus ``kx = 0, ky ≥ 0``.
    """
    half = box // 2 + 1
    kx = torch.arange(half, device=device)
    ky = torch.arange(box, device=device) - box // 2
    grid_y, grid_x = torch.meshgrid(ky, kx, indexing="ij")
    keep = ((grid_x ** 2 + grid_y ** 2 <= (box // 2) ** 2) & ((grid_x > 0) | (grid_y >= 0))
            & (grid_x < box - box // 2))  # even boxes: kx = L/2 has no centred-grid twin
    freqs = torch.stack([grid_x[keep], grid_y[keep]], dim=-1)
    rfft_index = (freqs[:, 1] % box) * half + freqs[:, 0]
    centred_index = (freqs[:, 1] + box // 2) * box + freqs[:, 0] + box // 2
    return freqs, rfft_index, centred_index


def _insert_points(acc: FourierAccumulator, values: torch.Tensor, weights: torch.Tensor | None,
                   freqs: torch.Tensor, rotations: torch.Tensor) -> None:
    """Scatter ``values`` ``(B, M)`` (and ``weights`` ``(B, M)``, 1 if None) at ``pad·Aᵀk``."""
    span_z, span_y, span_x = acc.data.shape
    keep = span_x - 1
    real = acc.weight.dtype
    a = rotations.to(real) * acc.pad
    points = freqs.to(real) @ a[:, :2, :]  # (B, M, 3) ordered (x, y, z)
    flip = points[..., 0] < 0
    points = torch.where(flip[..., None], -points, points)
    values = torch.where(flip, values.conj(), values)
    base = torch.floor(points)
    frac = points - base
    index = base.to(torch.int64)
    flat = ((index[..., 2] + keep) * span_y + index[..., 1] + keep) * span_x + index[..., 0]
    flat = flat.reshape(-1)
    fx, fy, fz = (frac[..., i].reshape(-1) for i in range(3))
    values = values.reshape(-1)
    weights = None if weights is None else weights.reshape(-1)
    data = acc.data.view(-1)
    weight = acc.weight.view(-1)
    for dz in (0, 1):
        wz = fz if dz else 1 - fz
        for dy in (0, 1):
            wzy = wz * (fy if dy else 1 - fy)
            for dx in (0, 1):
                w = wzy * (fx if dx else 1 - fx)
                corner = flat + (dz * span_y + dy) * span_x + dx
                data.index_add_(0, corner, values * w)
                weight.index_add_(0, corner, w if weights is None else weights * w)


def backproject(acc: FourierAccumulator, images: torch.Tensor, rotations: torch.Tensor,
                shifts_px: torch.Tensor | None = None,
                ctf: torch.Tensor | None = None) -> FourierAccumulator:
    """Insert ``images`` ``(B, L, L)`` at poses ``rotations`` ``(B, 3, 3)`` into ``acc``.

    ``shifts_px`` ``(B, 2)`` (x, y) are the shifts the images carry (undone here); ``ctf``
    ``(B, L, L)`` is each image's CTF on the centred Fourier grid (None: images without CTF,
    or already corrected). Work happens on ``acc``'s device in its precision; returns ``acc``
    (updated in place).
    """
    box, device, real = acc.box, acc.data.device, acc.weight.dtype
    if images.ndim != 3 or images.shape[-2:] != (box, box):
        raise ValueError(f"images must be (B, {box}, {box}), got {tuple(images.shape)}")
    n = images.shape[0]
    freqs, rfft_index, centred_index = half_plane(box, device)
    chunk = max(1, _POINTS_PER_PASS // len(freqs))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        batch = images[start:stop].to(device=device, dtype=real)
        spectrum = torch.fft.rfft2(torch.fft.ifftshift(batch, dim=(-2, -1)))
        values = spectrum.reshape(stop - start, -1)[:, rfft_index]
        if shifts_px is not None:
            shift = shifts_px[start:stop].to(device=device, dtype=real)
            # The image was made with exp(-2πi k·s/L); multiply by the conjugate ramp.
            angle = (freqs.to(real) @ shift.T).T * (2 * math.pi / box)
            values = values * torch.polar(torch.ones_like(angle), angle)
        weights = None
        if ctf is not None:
            c = ctf[start:stop].to(device=device, dtype=real).reshape(stop - start, -1)
            c = c[:, centred_index]
            values = values * c
            weights = c * c
        _insert_points(acc, values, weights, freqs, rotations[start:stop].to(device))
    acc.n_images += n
    return acc


def _symmetrised(grid: torch.Tensor) -> torch.Tensor:
    """Add to the ``qx = 0`` plane its Hermitian mirror (points of ``qx ∈ (-1, 0)``)."""
    out = grid.clone()
    mirror = torch.flip(grid[:, :, 0], dims=(0, 1))
    out[:, :, 0] += mirror.conj() if grid.is_complex() else mirror
    return out


def shell_mean(grid: torch.Tensor, shells: torch.Tensor, n_shells: int) -> torch.Tensor:
    """Mean of real ``grid`` over each integer shell ``shells`` (same shape) → ``(n_shells,)``."""
    flat_shells = shells.reshape(-1)
    total = grid.new_zeros(n_shells).index_add_(0, flat_shells, grid.reshape(-1))
    count = grid.new_zeros(n_shells).index_add_(0, flat_shells, torch.ones_like(grid).reshape(-1))
    return total / count.clamp_min(1)


def finalize(acc: FourierAccumulator, regularization: float = 1e-3) -> torch.Tensor:
    """The reconstructed map ``(L, L, L)`` (indexed z, y, x) from an accumulator.

    ``regularization`` λ: the denominator is ``Σ w CTF² + λ · ⟨Σ w CTF²⟩_shell`` (see the
    module docstring). The map has the intensity scale of the images' projector (a unit-sum
    projection along z of the map reproduces the images).
    """
    box, pad = acc.box, acc.pad
    data = _symmetrised(acc.data)
    weight = _symmetrised(acc.weight)
    span_x = data.shape[-1]
    keep = span_x - 1
    device, real = weight.device, weight.dtype
    k = torch.arange(-keep, keep + 1, device=device)
    radius = torch.sqrt((k[:, None, None] ** 2 + k[None, :, None] ** 2
                         + k[None, None, keep:] ** 2).to(real))
    shells = torch.round(radius).long()
    mean_weight = shell_mean(weight, shells, int(shells.max()) + 1)
    denominator = weight + regularization * mean_weight[shells]
    inside = (radius <= acc.radius) & (denominator > 0)
    spectrum = torch.where(inside, data / torch.where(inside, denominator, 1.0),
                           torch.zeros_like(data))

    size = pad * box
    lo, hi = size // 2, size - 1 - size // 2  # padded grid frequencies -lo … hi
    grid = spectrum.new_zeros(size, size, size // 2 + 1)
    n_x = min(size // 2 + 1, span_x)
    src = slice(keep - lo, keep + hi + 1)
    grid[:, :, :n_x] = spectrum[src, src, :n_x]
    padded = torch.fft.irfftn(torch.fft.ifftshift(grid, dim=(0, 1)), s=(size,) * 3,
                              dim=(0, 1, 2))
    padded = torch.fft.fftshift(padded)
    start = size // 2 - box // 2
    volume = padded[start:start + box, start:start + box, start:start + box]
    return volume / gridding_correction(box, pad, device, real)
