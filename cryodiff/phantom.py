"""The built-in default map: a procedural, protein-like density (no download, ever).

The molecule is built once, in Å, from the seed alone: a lumpy globular envelope made of three
ellipsoidal domains of different sizes, packed with α-helices (helical backbone plus side-chain
beads), twisted β-sheets (pleated strands, side chains alternating above and below the sheet)
and loops connecting them into one chain. An optional membrane/detergent belt adds a
low-density disordered annulus around the molecule's equator (the membrane plane is ``z = 0``).
The beads are then rendered at the requested box: trilinear splatting followed by a Gaussian
blur whose width combines a physical bead size with a fraction of a pixel, so every box shows
the same molecule, band-limited to its own sampling.

The field of view is fixed in Å (:data:`FIELD_OF_VIEW_A`), so the pixel size scales with the
box (:func:`phantom_pixel_size_A`): 1.5 Å/px at box 128. The molecule spans about 60 % of the
box diameter; it has no symmetry.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cryodiff.noise import BeltGeometry, default_belt_geometry

FIELD_OF_VIEW_A = 192.0  # box side in Å whatever the box size
_MOLECULE_RADIUS_A = 0.3 * FIELD_OF_VIEW_A  # 60 % of the box diameter
_BEAD_SIGMA_A = 1.5  # physical width of a bead (a few atoms)
_BELT_BLOB_SIGMA_A = 3.0  # detergent/lipid blobs are larger and softer than atoms
_PIXEL_BLUR = 0.7  # extra Gaussian blur in pixels: keeps every box band-limited
_ATOMS_PER_A3 = 0.06  # heavy atoms per Å³ in a protein; density is in units of this
_PACKING_DISTANCE_A = 6.5  # closest allowed approach of two secondary-structure axes
_BELT_RELATIVE_DENSITY = 0.35
_MIN_BOX, _MAX_BOX = 32, 256


def phantom_pixel_size_A(box: int) -> float:
    """Pixel size (Å) at which the phantom is rendered in a box of ``box`` pixels."""
    return FIELD_OF_VIEW_A / box


def make_phantom(box: int, seed: int = 0, belt: bool = False, dtype=torch.float32,
                 device=None) -> torch.Tensor:
    """Render the seeded protein-like phantom in a ``(box, box, box)`` volume (z, y, x order).

    The density is positive, in units of the mean heavy-atom density of a protein (≈1 inside
    well-packed regions), centred on the box origin (index ``box // 2``), at
    :func:`phantom_pixel_size_A` Å/px. ``belt`` adds a disordered detergent/lipid annulus
    around the equator (about 0.35 of protein density). ``box`` must be in 32–256.
    """
    if not _MIN_BOX <= box <= _MAX_BOX:
        raise ValueError(f"phantom box must be between {_MIN_BOX} and {_MAX_BOX}, got {box}")
    rng = np.random.default_rng(seed)
    envelope = _Envelope.from_seed(seed)
    positions, weights = _protein_beads(rng, envelope)
    # Put the centre of mass on the box origin, as a particle picker would.
    centre_of_mass = weights @ positions / weights.sum()
    positions = positions - centre_of_mass
    envelope = _Envelope(envelope.centres - centre_of_mass, envelope.semi_axes, envelope.rotations)
    pixel_size = phantom_pixel_size_A(box)
    volume = _render(positions, weights, box, pixel_size, _BEAD_SIGMA_A, dtype, device)
    if belt:
        geometry = default_belt_geometry(box, pixel_size)
        belt_positions, belt_weights = _belt_blobs(rng, geometry, envelope)
        volume += _render(belt_positions, belt_weights, box, pixel_size, _BELT_BLOB_SIGMA_A,
                          dtype, device)
    return volume.clamp_min_(0)


class _Envelope:
    """Union of three rotated ellipsoids (the domains); membership tests in Å."""

    def __init__(self, centres: np.ndarray, semi_axes: np.ndarray, rotations: np.ndarray):
        self.centres, self.semi_axes, self.rotations = centres, semi_axes, rotations

    @classmethod
    def from_seed(cls, seed: int) -> _Envelope:
        rng = np.random.default_rng([seed, 1])
        sizes = np.array([[38.0, 32.0, 27.0], [29.0, 25.0, 22.0], [23.0, 19.0, 17.0]])
        semi_axes = sizes * rng.uniform(0.9, 1.1, size=sizes.shape)
        centres = np.zeros((3, 3))
        for k in (1, 2):
            direction = _unit(rng.normal(size=3))
            centres[k] = direction * (semi_axes[0, 0] * 0.4 + semi_axes[k, 0] * 0.35)
        rotations = np.stack([_random_rotation(rng) for _ in range(3)])
        envelope = cls(centres, semi_axes, rotations)
        # Recentre and scale so that the molecule just reaches the target radius.
        surface = envelope._surface_points(rng)
        centre = 0.5 * (surface.max(0) + surface.min(0))
        scale = (_MOLECULE_RADIUS_A + 2.0) / np.linalg.norm(surface - centre, axis=1).max()
        return cls((centres - centre) * scale, semi_axes * scale, rotations)

    def _surface_points(self, rng: np.random.Generator) -> np.ndarray:
        directions = np.array([_unit(v) for v in rng.normal(size=(400, 3))])
        local = directions[None] * self.semi_axes[:, None, :]
        return (np.einsum("kij,knj->kni", self.rotations, local) + self.centres[:, None]).reshape(-1, 3)

    def local(self, points: np.ndarray, k: int) -> np.ndarray:
        """Coordinates of ``points`` (…, 3) in domain k's frame, scaled by its semi-axes."""
        return ((points - self.centres[k]) @ self.rotations[k]) / self.semi_axes[k]

    def contains(self, points: np.ndarray, margin: float = 1.0) -> np.ndarray:
        inside = [np.linalg.norm(self.local(points, k), axis=-1) <= margin for k in range(3)]
        return np.any(inside, axis=0)

    def chord(self, centre: np.ndarray, direction: np.ndarray, k: int) -> tuple[float, float]:
        """Where the line ``centre + t·direction`` (unit direction) enters and leaves domain k."""
        c = self.local(centre, k)
        d = (direction @ self.rotations[k]) / self.semi_axes[k]
        a, b, cc = d @ d, 2 * c @ d, c @ c - 1
        root = math.sqrt(max(b * b - 4 * a * cc, 0.0))
        return (-b - root) / (2 * a), (-b + root) / (2 * a)


def _protein_beads(rng: np.random.Generator, envelope: _Envelope) -> tuple[np.ndarray, np.ndarray]:
    """Pack helices and sheets into the envelope and join them with loops; beads in Å.

    Each domain is filled along a hexagonal lattice of axes 10 Å apart (the helix-packing
    distance) parallel to the domain's long axis; lattice rows become either helices or
    β-sheets, cut into elements separated by gaps for loops, each slightly tilted and
    jittered. Elements that leave the envelope or clash with an earlier one are dropped.
    """
    occupied = np.zeros((0, 3))  # axis points of the elements placed so far
    elements = []
    for k in (2, 1, 0):  # small domains first, so that the big one does not crowd them out
        for is_helix, centre, direction, length, across in _domain_lattice(rng, envelope, k):
            direction = _tilt(rng, direction, max_deg=8.0)
            centre = centre + rng.normal(scale=1.0, size=3)
            if is_helix:
                element = _helix(rng, centre, direction, length)
            else:
                element = _sheet(rng, centre, direction, length, across, n_strands=5)
            axis_points = element[3]
            if not envelope.contains(axis_points, margin=1.05).all():
                continue
            gaps = np.linalg.norm(axis_points[:, None] - occupied[None], axis=-1)
            if gaps.size and gaps.min() < _PACKING_DISTANCE_A:
                continue
            occupied = np.concatenate([occupied, axis_points])
            elements.append(element)
    positions = [e[0] for e in elements]
    weights = [e[1] for e in elements]
    for start, end in _chain_order(elements):
        loop_positions, loop_weights = _loop(rng, start, end)
        positions.append(loop_positions)
        weights.append(loop_weights)
    return np.concatenate(positions), np.concatenate(weights)


def _domain_lattice(rng, envelope: _Envelope, k: int):
    """Yield ``(is_helix, centre, direction, length, across)`` for elements filling domain k."""
    long_axis, across, up = envelope.rotations[k].T
    semi_axes = envelope.semi_axes[k]
    spacing, row_step = 10.0, 10.0 * math.sqrt(3) / 2
    offset = rng.uniform(0, 1, size=2)
    n_rows, n_cols = int(semi_axes[2] / row_step) + 2, int(semi_axes[1] / spacing) + 2
    for row in range(-n_rows, n_rows + 1):
        v = (row + offset[1]) * row_step
        is_helix = rng.uniform() < 0.65
        # Sheet rows take every third lattice position: a 5-strand sheet spans about 2 of them.
        step = 1 if is_helix else 3
        for col in range(-n_cols, n_cols + 1, step):
            u = (col + offset[0] + 0.5 * (row % 2)) * spacing
            line_point = envelope.centres[k] + u * across + v * up
            enter, leave = envelope.chord(line_point, long_axis, k)
            t = enter + 2.0
            while True:
                length = rng.uniform(15.0, 40.0) if is_helix else rng.uniform(12.0, 22.0)
                length = min(length, leave - 2.0 - t)
                if length < 9.0:
                    break
                sign = rng.choice([-1.0, 1.0])
                yield is_helix, line_point + (t + length / 2) * long_axis, sign * long_axis, length, across
                t += length + rng.uniform(6.0, 10.0)  # room for a loop


def _helix(rng, centre, direction, length):
    """α-helix: 3 backbone beads per residue on a 2.0 Å-radius helix (rise 1.5 Å, 100°/res)."""
    n_res = max(int(length / 1.5), 4)
    u, v = _perpendicular_basis(direction)
    t = np.arange(3 * n_res) / 3.0  # residue index, three backbone beads per residue
    phase = rng.uniform(0, 2 * np.pi)
    angle = np.deg2rad(100.0) * t + phase
    along = (t - n_res / 2) * 1.5
    radial = np.cos(angle)[:, None] * u + np.sin(angle)[:, None] * v
    backbone = centre + along[:, None] * direction + 2.0 * radial
    ca = slice(1, None, 3)
    side = centre + along[ca, None] * direction + 4.6 * radial[ca]
    positions = np.concatenate([backbone, side])
    weights = np.concatenate([np.full(len(backbone), 1.3), _side_chain_sizes(rng, n_res)])
    axis_points = centre + np.linspace(2 - length / 2, length / 2 - 2, max(int(length / 2), 2))[:, None] * direction
    ends = (axis_points[0], axis_points[-1])
    return positions, weights, ends, axis_points


def _sheet(rng, centre, direction, length, across, n_strands):
    """Twisted β-sheet: strands 4.8 Å apart, 3.3 Å rise, pleated, side chains alternating."""
    across = _unit(across - (across @ direction) * direction)
    positions, weights, axis_points = [], [], []
    n_res = max(int(length / 3.3), 3)
    for j in range(n_strands):
        offset = (j - (n_strands - 1) / 2) * 4.8
        strand_dir = _rotate(direction, across, np.deg2rad(-18.0) * (j - (n_strands - 1) / 2))
        normal = _unit(np.cross(strand_dir, across))
        sign = 1.0 if j % 2 == 0 else -1.0  # neighbouring strands run antiparallel
        t = np.arange(3 * n_res) / 3.0
        pleat = 0.9 * np.cos(np.pi * t)
        start = centre + offset * across
        backbone = start + sign * ((t - n_res / 2) * 3.3)[:, None] * strand_dir + pleat[:, None] * normal
        ca = slice(0, None, 3)
        alternating = np.where(np.arange(n_res) % 2 == 0, 1.0, -1.0)[:, None]
        side = backbone[ca] + 3.5 * alternating * normal
        positions += [backbone, side]
        weights += [np.full(len(backbone), 1.3), _side_chain_sizes(rng, n_res)]
        axis_points.append(start + np.linspace(2 - length / 2, length / 2 - 2, 5)[:, None] * strand_dir)
    axis_points = np.concatenate(axis_points)
    first, last = positions[0], positions[-2]
    ends = (first[0], last[-1])
    return np.concatenate(positions), np.concatenate(weights), ends, axis_points


def _chain_order(elements) -> list[tuple[np.ndarray, np.ndarray]]:
    """Loop end points joining the elements greedily, nearest free end first."""
    if not elements:
        return []
    remaining = list(range(1, len(elements)))
    current_end = elements[0][2][1]
    joins = []
    while remaining:
        candidates = [(np.linalg.norm(elements[i][2][s] - current_end), i, s)
                      for i in remaining for s in (0, 1)]
        _, i, s = min(candidates)
        joins.append((current_end, elements[i][2][s]))
        current_end = elements[i][2][1 - s]
        remaining.remove(i)
    return joins


def _loop(rng, start, end):
    """A loop residue every 3.3 Å along a wiggly cubic Bézier curve from ``start`` to ``end``."""
    span = np.linalg.norm(end - start)
    bulge = _unit(rng.normal(size=3)) * (0.3 * span + 3.0)
    c1 = start + (end - start) / 3 + bulge
    c2 = start + 2 * (end - start) / 3 + bulge * rng.uniform(0.3, 1.0)
    n_res = max(int(1.4 * span / 3.3), 2)
    t = np.linspace(0, 1, 3 * n_res)[:, None]
    curve = ((1 - t) ** 3 * start + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t**2 * c2
             + t**3 * end)
    backbone = curve + rng.normal(scale=0.5, size=curve.shape)
    side = backbone[1::3] + 2.8 * np.array([_unit(v) for v in rng.normal(size=(n_res, 3))])
    weights = np.concatenate([np.full(len(backbone), 1.3), _side_chain_sizes(rng, len(side))])
    return np.concatenate([backbone, side]), weights


def _belt_blobs(rng, geometry: BeltGeometry, envelope: _Envelope):
    """Random blobs filling the annulus outside the protein, at the belt's relative density."""
    n = 6000
    radius = np.sqrt(rng.uniform(geometry.inner_radius_A**2, geometry.outer_radius_A**2, n))
    angle = rng.uniform(0, 2 * np.pi, n)
    z = rng.uniform(-geometry.half_thickness_A, geometry.half_thickness_A, n)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle), z], axis=1)
    outside = ~envelope.contains(points, margin=1.1)
    annulus_volume = (math.pi * (geometry.outer_radius_A**2 - geometry.inner_radius_A**2)
                      * 2 * geometry.half_thickness_A)
    mass = _BELT_RELATIVE_DENSITY * _ATOMS_PER_A3 * annulus_volume
    weights = rng.exponential(mass / n, n)
    return points[outside], weights[outside]


def _render(positions: np.ndarray, weights: np.ndarray, box: int, pixel_size_A: float,
            sigma_A: float, dtype, device) -> torch.Tensor:
    """Trilinear splat of beads (Å) into a box, then a Gaussian blur; density / Å³ / protein."""
    grid = torch.zeros(box**3, dtype=torch.float64, device=device)
    coords = torch.as_tensor(positions, dtype=torch.float64, device=device) / pixel_size_A + box // 2
    mass = torch.as_tensor(weights, dtype=torch.float64, device=device)
    base = coords.floor()
    frac = coords - base
    base = base.long()
    for corner in range(8):
        bits = [(corner >> axis) & 1 for axis in range(3)]
        index = base + torch.tensor(bits, device=device)
        w = mass.clone()
        for axis, bit in enumerate(bits):
            w = w * (frac[:, axis] if bit else 1 - frac[:, axis])
        valid = ((index >= 0) & (index < box)).all(dim=1)
        x, y, z = index[valid].unbind(1)
        grid.index_add_(0, (z * box + y) * box + x, w[valid])
    grid = grid.reshape(box, box, box)
    sigma_px = math.hypot(sigma_A / pixel_size_A, _PIXEL_BLUR)
    freq = torch.fft.fftfreq(box, device=device, dtype=torch.float64)
    rfreq = torch.fft.rfftfreq(box, device=device, dtype=torch.float64)
    k2 = freq[:, None, None] ** 2 + freq[None, :, None] ** 2 + rfreq[None, None, :] ** 2
    blurred = torch.fft.irfftn(torch.fft.rfftn(grid) * torch.exp(-2 * math.pi**2 * sigma_px**2 * k2),
                               s=grid.shape)
    density = blurred / (pixel_size_A**3 * _ATOMS_PER_A3)
    return density.to(dtype)


def _side_chain_sizes(rng, n: int) -> np.ndarray:
    """Heavy atoms beyond Cβ, from glycine (0) to tryptophan (~9), mean about 3.5."""
    return rng.gamma(2.0, 1.75, n)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _perpendicular_basis(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0, 0]) if abs(direction[0]) < 0.9 else np.array([0, 1.0, 0])
    u = _unit(np.cross(direction, helper))
    return u, np.cross(direction, u)


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of ``v`` about the unit ``axis`` by ``angle`` radians."""
    return (v * math.cos(angle) + np.cross(axis, v) * math.sin(angle)
            + axis * (axis @ v) * (1 - math.cos(angle)))


def _tilt(rng, axis: np.ndarray, max_deg: float) -> np.ndarray:
    u, _ = _perpendicular_basis(axis)
    u = _rotate(u, axis, rng.uniform(0, 2 * np.pi))
    return _rotate(axis, u, np.deg2rad(rng.uniform(0, max_deg)))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q * np.linalg.det(q)
