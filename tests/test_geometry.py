"""RELION Euler convention, round trips (incl. gimbal lock) and uniform random rotations."""

from __future__ import annotations

import math

import pytest
import torch

from cryodiff.geometry import (euler_to_matrix, matrix_to_euler, random_eulers_deg,
                               random_rotations, rotation_about_z)


def _relion_rz(angle_deg: float) -> torch.Tensor:
    a = math.radians(angle_deg)
    return torch.tensor([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0],
                         [0, 0, 1]], dtype=torch.float64)


def _relion_ry(angle_deg: float) -> torch.Tensor:
    a = math.radians(angle_deg)
    return torch.tensor([[math.cos(a), 0, -math.sin(a)], [0, 1, 0],
                         [math.sin(a), 0, math.cos(a)]], dtype=torch.float64)


@pytest.mark.parametrize("angles", [(10.0, 20.0, 30.0), (235.8, 113.1, 50.5), (-90.0, 90.0, 0.0)])
def test_matrix_is_rz_psi_ry_tilt_rz_rot(angles):
    rot, tilt, psi = angles
    expected = _relion_rz(psi) @ _relion_ry(tilt) @ _relion_rz(rot)
    got = euler_to_matrix(torch.tensor(angles, dtype=torch.float64))
    torch.testing.assert_close(got, expected)


def test_simple_poses_act_as_documented():
    # rot = 90: A = R_z(90) maps x to -y (RELION's passive rotation).
    a = euler_to_matrix(torch.tensor([90.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(a @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                               torch.tensor([0.0, -1.0, 0], dtype=torch.float64))
    # tilt = 90 views the map along x: the image z axis is the map's x axis.
    a = euler_to_matrix(torch.tensor([0.0, 90.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(a[2], torch.tensor([1.0, 0, 0], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_random(dtype):
    g = torch.Generator().manual_seed(1)
    rots = random_rotations(500, g, dtype=dtype)
    eulers = matrix_to_euler(rots)
    assert eulers.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(euler_to_matrix(eulers), rots, atol=tol, rtol=0)
    assert bool((eulers[:, 1] >= 0).all() and (eulers[:, 1] <= 180).all())
    assert bool((eulers[:, [0, 2]].abs() <= 180 + 1e-9).all())
    # Regular angles come back unchanged.
    again = matrix_to_euler(euler_to_matrix(eulers))
    torch.testing.assert_close(again, eulers, atol=1e-3 if dtype == torch.float32 else 1e-9,
                               rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("angles", [(30.0, 0.0, 40.0), (-120.0, 0.0, 10.0), (30.0, 180.0, 40.0),
                                    (170.0, 180.0, -100.0), (0.0, 0.0, 0.0), (25.0, 1e-7, 5.0)])
def test_round_trip_gimbal_lock(angles, dtype):
    a = euler_to_matrix(torch.tensor(angles, dtype=dtype))
    eulers = matrix_to_euler(a)
    assert torch.isfinite(eulers).all()
    if angles[1] in (0.0, 180.0):
        assert eulers[0].item() == 0.0  # rot carries nothing at gimbal lock
        assert eulers[1].item() == angles[1]
    torch.testing.assert_close(euler_to_matrix(eulers), a, atol=1e-5, rtol=0)


def test_matrices_are_rotations_and_batched():
    eulers = torch.rand(4, 5, 3, dtype=torch.float64) * 360
    a = euler_to_matrix(eulers)
    assert a.shape == (4, 5, 3, 3)
    eye = torch.eye(3, dtype=torch.float64).expand(4, 5, 3, 3)
    torch.testing.assert_close(a @ a.transpose(-1, -2), eye)
    torch.testing.assert_close(torch.linalg.det(a), torch.ones(4, 5, dtype=torch.float64))


def test_random_rotations_uniform_and_seeded():
    rots = random_rotations(20000, torch.Generator().manual_seed(0), dtype=torch.float64)
    again = random_rotations(20000, torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(rots, again)
    # Haar measure: E[R] = 0, viewing directions uniform on the sphere, cos(tilt) uniform.
    assert rots.mean(0).abs().max() < 0.02
    cos_tilt = rots[:, 2, 2]
    hist = torch.histc(cos_tilt, bins=10, min=-1, max=1) / len(cos_tilt)
    assert (hist - 0.1).abs().max() < 0.01
    eulers = random_eulers_deg(2000, torch.Generator().manual_seed(3))
    assert eulers.shape == (2000, 3) and eulers.dtype == torch.float64


def test_rotation_about_z_is_active():
    r = rotation_about_z(90.0)
    torch.testing.assert_close(r @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                               torch.tensor([0.0, 1.0, 0], dtype=torch.float64))
    torch.testing.assert_close(r.T, _relion_rz(90.0))
