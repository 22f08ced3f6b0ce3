"""Direct Fourier inversion: insert central slices into a padded 3D grid, then divide.

The inverse of :mod:`cryodiff.projection`, following RELION's ``BackProjector``:

1. Each image's centred 2D transform ``F(k)`` (half plane ``kx ≥ 0``, ``|k| ≤ L // 2``) is
   placed at the 3D frequency ``q = pad · Aᵀ (kx, ky, 0)`` of a grid oversampled ``pad`` (=2)
   times, after undoing the image's shift. Only the half ``qx ≥ 0`` is stored (a point with
   ``qx < 0`` goes to ``-q`` as ``conj F``, by Hermitian symmetry).
2. Trilinear weights spread every point over its 8 neighbouring voxels; the grid accumulates
   ``Σ w · CTF · F`` (``data``) and ``Σ w · CTF²`` (``weight``) with one ``index_add_`` per
   pass on flat indices. An accumulator may hold several independent groups (the two half
   maps), so one pass over the images fills both.
3. :func:`finalize` divides, ``data / (weight + λ · ⟨weight⟩_shell)``: a Wiener-like filter
   whose constant is ``λ`` (``regularization``) times the mean weight of the voxel's Fourier
   shell, so it scales with the number of particles and stops division by ~0 at CTF zeros
   (RELION similarly floors the weight at 1/1000 of its shell average). The inverse FFT of
   the padded grid is cropped to L³ and divided by ``sinc²(r / (pad · L))``, the transform of
   the trilinear kernel (gridding correction).

Images use the centred-FFT convention of :mod:`cryodiff.fourier` (origin at ``L // 2``) and the
poses of :mod:`cryodiff.geometry`; ``shifts_px`` are the shifts the images carry, in the sense
of :func:`cryodiff.projection.project` (positive x = content moved to larger columns).

Speed: everything per point is float32 (for float32 accumulators); the CTF is evaluated only at
the inserted points (:func:`cryodiff.ctf.ctf_at_frequencies`, one small matmul and a sine); the move of the origin
to ``L // 2`` and the shift are one separable phase ramp on the ``rfft2`` output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from cryodiff.projection import PADDING, gridding_correction

# Points (image pixels × batch) handled per scatter pass: bounds the temporary memory (about
# 200 bytes per point for the 8 trilinear neighbours) independently of the image batch size.
_POINTS_PER_PASS = 1 << 17


def half_plane(box: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One point of every Hermitian pair of a ``box²`` transform inside ``|k| ≤ box // 2``.

    Returns ``(freqs (M, 2) int64 (kx, ky), rfft_index (M,), centred_index (M,))``: the flat
    index of each point in ``rfft2`` output ``(box, box//2 + 1)`` and in a centred ``(box, box)``
    grid (e.g. :func:`cryodiff.ctf.ctf_2d`). Points with ``0 < kx < L - L//2``, plus
    ``kx = 0, ky ≥ 0``.
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


@dataclass
class FourierAccumulator:
    """Running sums of the direct Fourier inversion (mutable: it is an accumulator).

    ``real``, ``imag`` (of ``Σ w · CTF · F``) and ``weight`` (``Σ w · CTF²``) have shape
    ``(G, 2K + 1, 2K + 1, K + 1)`` indexed ``[group, qz + K, qy + K, qx]`` in padded-grid
    frequency units, ``K = pad · (box // 2) + 1`` (one voxel of margin keeps every trilinear
    neighbour inside the array); ``G`` independent groups (e.g. two half maps) share one pass
    over the images. Real and imaginary parts are kept apart because three real scatters are
    faster than a complex one and a real one.
    """

    real: torch.Tensor
    imag: torch.Tensor
    weight: torch.Tensor
    box: int
    pad: int = PADDING
    n_images: int = 0
    _points: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def data(self) -> torch.Tensor:
        """``Σ w · CTF · F`` as a complex tensor ``(G, 2K + 1, 2K + 1, K + 1)``."""
        return torch.complex(self.real, self.imag)

    @property
    def radius(self) -> int:
        """Largest inserted frequency in padded-grid voxels, ``pad · (box // 2)``."""
        return self.pad * (self.box // 2)

    @property
    def groups(self) -> int:
        return self.weight.shape[0]

    def points(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(freqs (M, 2) real, rfft_index (M,), centred_index (M,))`` of :func:`half_plane`,
        on the accumulator's device (computed once)."""
        if self._points is None:
            freqs, rfft_index, centred_index = half_plane(self.box, self.weight.device)
            self._points = (freqs.to(self.weight.dtype), rfft_index, centred_index)
        return self._points

    def __add__(self, other: FourierAccumulator) -> FourierAccumulator:
        if (self.box, self.pad, self.groups) != (other.box, other.pad, other.groups):
            raise ValueError("cannot add accumulators of different box, padding or groups")
        return FourierAccumulator(self.real + other.real, self.imag + other.imag,
                                  self.weight + other.weight, self.box, self.pad,
                                  self.n_images + other.n_images)


def new_accumulator(box: int, pad: int = PADDING, device=None,
                    dtype: torch.dtype = torch.float32, groups: int = 1) -> FourierAccumulator:
    """An empty accumulator for images of side ``box`` (real ``dtype`` float32/float64)."""
    keep = pad * (box // 2) + 1
    shape = (groups, 2 * keep + 1, 2 * keep + 1, keep + 1)
    return FourierAccumulator(*(torch.zeros(shape, dtype=dtype, device=device) for _ in range(3)),
                              box, pad)


def _insert_points(acc: FourierAccumulator, re: torch.Tensor, im: torch.Tensor,
                   weights: torch.Tensor | None, freqs: torch.Tensor, rotations: torch.Tensor,
                   groups: torch.Tensor | None) -> None:
    """Scatter values ``re + i·im`` ``(B, M)`` (and ``weights`` ``(B, M)``, 1 if None) at the
    padded-grid points ``pad·Aᵀk`` of ``freqs`` ``(M, 2)``."""
    _, span_z, span_y, span_x = acc.weight.shape
    keep = span_x - 1
    real, device = acc.weight.dtype, acc.weight.device
    # Component-major layout (x, y, z first, then points): every elementwise op below runs
    # over long contiguous rows instead of broadcasting over tiny trailing dimensions.
    points = (rotations.to(real) * acc.pad)[:, :2, :].transpose(1, 2) @ freqs.T  # (B, 3, M)
    points = points.transpose(0, 1).reshape(3, -1)  # (3, P) rows x, y, z
    sign = torch.where(points[0] < 0, -1.0, 1.0).to(real)
    points.mul_(sign)
    re = re.reshape(-1)
    im = im.reshape(-1) * sign
    base = torch.floor(points)
    frac = points.sub_(base)
    # Flat index of the lower corner (float dot product is exact: indices < 2**24).
    strides = torch.tensor([1, span_x, span_x * span_y], dtype=real, device=device)
    flat = (strides @ base).to(torch.int64).add_((keep * span_y + keep) * span_x)
    if groups is not None:
        per_point = groups.to(device)[:, None].expand(-1, freqs.shape[0]).reshape(-1)
        flat.add_(per_point * (span_z * span_y * span_x))
    plane = span_x * span_y
    corners = torch.tensor([0, 1, span_x, span_x + 1, plane, plane + 1, plane + span_x,
                            plane + span_x + 1], device=device)
    lower = 1 - frac
    wz = torch.stack([lower[2], frac[2]])
    wy = torch.stack([lower[1], frac[1]])
    wx = torch.stack([lower[0], frac[0]])
    w = ((wz[:, None] * wy[None, :]).reshape(4, 1, -1) * wx[None]).reshape(8, -1)  # [z][y][x]
    index = (flat[None, :] + corners[:, None]).reshape(-1)
    acc.real.view(-1).scatter_add_(0, index, (w * re).reshape(-1))
    acc.imag.view(-1).scatter_add_(0, index, (w * im).reshape(-1))
    if weights is not None:
        w = w.mul_(weights.reshape(-1))
    acc.weight.view(-1).scatter_add_(0, index, w.reshape(-1))


def _phase_ramps(shifts_px: torch.Tensor | None, n: int, box: int, device,
                 real: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Ramps ``(n, L, 1)`` (rows) and ``(n, 1, L//2+1)`` (columns) turning ``rfft2`` of an
    image into its centred transform with the shift undone: ``exp(2πi k·(L//2 + s) / L)``."""
    move = torch.full((n, 2), float(box // 2), dtype=real, device=device)
    if shifts_px is not None:
        move = move + shifts_px.to(device=device, dtype=real)
    kx = torch.arange(box // 2 + 1, device=device, dtype=real)
    ky = torch.fft.fftfreq(box, 1.0 / box, device=device, dtype=real)  # rfft2 row order
    scale = 2 * math.pi / box
    angle_x = move[:, :1] * kx * scale
    angle_y = move[:, 1:] * ky * scale
    ramp_x = torch.polar(torch.ones_like(angle_x), angle_x)
    ramp_y = torch.polar(torch.ones_like(angle_y), angle_y)
    return ramp_y[:, :, None], ramp_x[:, None, :]


def backproject(acc: FourierAccumulator, images: torch.Tensor, rotations: torch.Tensor,
                shifts_px: torch.Tensor | None = None, ctf: torch.Tensor | None = None,
                groups: torch.Tensor | None = None) -> FourierAccumulator:
    """Insert ``images`` ``(B, L, L)`` at poses ``rotations`` ``(B, 3, 3)`` into ``acc``.

    ``shifts_px`` ``(B, 2)`` (x, y) are the shifts the images carry (undone here); ``ctf`` is
    each image's CTF, either ``(B, L, L)`` on the centred Fourier grid or ``(B, M)`` at the
    :func:`half_plane` points (see :func:`cryodiff.ctf.ctf_at_frequencies`); None: images without CTF, or
    already corrected. ``groups`` ``(B,)`` int picks each image's group (default 0). Work
    happens on ``acc``'s device in its precision; returns ``acc`` (updated in place).
    """
    box, device, real = acc.box, acc.weight.device, acc.weight.dtype
    if images.ndim != 3 or images.shape[-2:] != (box, box):
        raise ValueError(f"images must be (B, {box}, {box}), got {tuple(images.shape)}")
    n = images.shape[0]
    freqs, rfft_index, centred_index = acc.points()
    if ctf is not None and ctf.ndim == 3:
        ctf = ctf.reshape(n, -1)[:, centred_index.to(ctf.device)]
    chunk = max(1, _POINTS_PER_PASS // len(freqs))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        spectrum = torch.fft.rfft2(images[start:stop].to(device=device, dtype=real))
        ramp_y, ramp_x = _phase_ramps(None if shifts_px is None else shifts_px[start:stop],
                                      stop - start, box, device, real)
        spectrum = spectrum.mul_(ramp_y).mul_(ramp_x).reshape(stop - start, -1)
        values = spectrum.index_select(1, rfft_index)
        re, im, weights = values.real, values.imag, None
        if ctf is not None:
            c = ctf[start:stop].to(device=device, dtype=real)
            re, im, weights = re * c, im * c, c * c
        _insert_points(acc, re, im, weights, freqs, rotations[start:stop].to(device),
                       None if groups is None else groups[start:stop])
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


def finalize(acc: FourierAccumulator, regularization: float = 1e-3,
             group: int | None = None) -> torch.Tensor:
    """The reconstructed map ``(L, L, L)`` (indexed z, y, x) from an accumulator.

    ``group``: which group to reconstruct (None: all groups together). ``regularization`` λ:
    the denominator is ``Σ w CTF² + λ · ⟨Σ w CTF²⟩_shell`` (see the module docstring). The map
    has the intensity scale of the images' projector (a unit-sum projection along z of the map
    reproduces the images).
    """
    box, pad = acc.box, acc.pad
    data = acc.data.sum(0) if group is None else acc.data[group]
    weight = acc.weight.sum(0) if group is None else acc.weight[group]
    data = _symmetrised(data)
    weight = _symmetrised(weight)
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
