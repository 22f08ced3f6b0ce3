"""Poses: RELION ZYZ Euler angles ↔ rotation matrices, and uniform random rotations.

Convention (RELION's ``Euler_angles2matrix``, stated once here). For Euler angles
(rot, tilt, psi) in degrees,

    A = R_z(psi) · R_y(tilt) · R_z(rot),   R_z(a) = [[ cos a, sin a, 0],
                                                    [-sin a, cos a, 0],
                                                    [     0,     0, 1]],
                                            R_y(b) = [[cos b, 0, -sin b],
                                                      [    0, 1,      0],
                                                      [sin b, 0,  cos b]].

``A`` maps coordinates of the map's frame to the particle image's frame: a point ``r`` of the
map (column vector ordered x, y, z) lands at ``A · r``, and the image is the projection along
the image z axis of the map rotated that way. Equivalently (what the Fourier-slice projector
uses) the image frequency ``(kx, ky)`` samples the map's Fourier transform at ``Aᵀ · (kx, ky, 0)``,
i.e. ``kx · A[0, :] + ky · A[1, :]``. :mod:`cryodiff.projection` checks this against projections
made by ``relion_project``.

Angles returned by :func:`matrix_to_euler` follow RELION's ranges: tilt in [0, 180], rot and psi
in (-180, 180]. At gimbal lock (tilt 0 or 180) only rot ± psi is defined; rot is set to 0.
"""

from __future__ import annotations

import math

import torch

# Below this sin(tilt) rot and psi are not separable; single precision needs a looser bound.
_GIMBAL_EPS = {torch.float64: 1e-9, torch.float32: 1e-5}


def euler_to_matrix(eulers_deg: torch.Tensor) -> torch.Tensor:
    """RELION rotation matrices ``(..., 3, 3)`` from (rot, tilt, psi) in degrees ``(..., 3)``.

    Integer or float inputs are accepted; the result is floating point (float32 for integers).
    """
    if not torch.is_floating_point(eulers_deg):
        eulers_deg = eulers_deg.to(torch.get_default_dtype())
    rot, tilt, psi = torch.deg2rad(eulers_deg).unbind(-1)
    ca, sa = torch.cos(rot), torch.sin(rot)
    cb, sb = torch.cos(tilt), torch.sin(tilt)
    cg, sg = torch.cos(psi), torch.sin(psi)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    rows = [
        torch.stack([cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb], dim=-1),
        torch.stack([-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb], dim=-1),
        torch.stack([sc, ss, cb], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def matrix_to_euler(rotations: torch.Tensor) -> torch.Tensor:
    """RELION (rot, tilt, psi) in degrees ``(..., 3)`` from rotation matrices ``(..., 3, 3)``.

    Inverse of :func:`euler_to_matrix` up to the usual ambiguities: tilt is chosen in
    [0, 180]; at gimbal lock rot = 0 and psi carries the whole in-plane angle.
    """
    a = rotations
    eps = _GIMBAL_EPS.get(a.dtype, 1e-5)
    sin_tilt = torch.hypot(a[..., 0, 2], a[..., 1, 2])
    tilt = torch.atan2(sin_tilt, a[..., 2, 2])
    regular = sin_tilt > eps
    rot_regular = torch.atan2(a[..., 2, 1], a[..., 2, 0])
    psi_regular = torch.atan2(a[..., 1, 2], -a[..., 0, 2])
    # tilt = 0: A = R_z(rot + psi); tilt = 180: A = R_z(psi) diag(-1, 1, -1) R_z(rot).
    flipped = a[..., 2, 2] < 0
    psi_locked = torch.where(flipped, torch.atan2(a[..., 0, 1], -a[..., 0, 0]),
                             torch.atan2(a[..., 0, 1], a[..., 0, 0]))
    tilt_locked = torch.where(flipped, torch.full_like(tilt, math.pi), torch.zeros_like(tilt))
    rot = torch.where(regular, rot_regular, torch.zeros_like(rot_regular))
    psi = torch.where(regular, psi_regular, psi_locked)
    tilt = torch.where(regular, tilt, tilt_locked)
    return torch.rad2deg(torch.stack([rot, tilt, psi], dim=-1))


def random_rotations(n: int, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """``n`` rotation matrices ``(n, 3, 3)`` drawn uniformly (Haar measure) on SO(3).

    Uses normalised 4D Gaussian vectors as unit quaternions, which are uniform on S³ and
    therefore give uniform rotations. Draws happen in float64 on the generator's device.
    """
    gen_device = generator.device if generator is not None else device
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64, device=gen_device)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ]
    return torch.stack(rows, dim=-2).to(dtype=dtype, device=device)


def random_eulers_deg(n: int, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """RELION Euler angles ``(n, 3)`` in degrees of ``n`` uniform random rotations."""
    return matrix_to_euler(random_rotations(n, generator, torch.float64, device)).to(dtype)


def rotation_about_z(angle_deg: float | torch.Tensor, dtype: torch.dtype = torch.float64,
                     device=None) -> torch.Tensor:
    """Active rotation matrix ``(..., 3, 3)`` turning vectors by ``angle_deg`` about +z.

    ``R · (1, 0, 0) = (cos a, sin a, 0)``; note RELION's ``R_z(a)`` above is its transpose.
    """
    angle = torch.deg2rad(torch.as_tensor(angle_deg, dtype=dtype, device=device))
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    rows = [torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1),
            torch.stack([zero, zero, one], -1)]
    return torch.stack(rows, dim=-2)
