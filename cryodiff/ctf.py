"""Contrast transfer function (RELION convention). Functions are filled in by the CTF work."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CtfParams:
    """Per-particle CTF parameters, each a tensor of shape ``(N,)`` (or broadcastable).

    Units follow RELION's STAR columns: defocus in Å (positive = underfocus), astigmatism
    angle in degrees, voltage in kV, spherical aberration in mm, B-factor in Å², phase
    shift in degrees.
    """

    defocus_u_A: torch.Tensor
    defocus_v_A: torch.Tensor
    defocus_angle_deg: torch.Tensor
    voltage_kV: torch.Tensor
    cs_mm: torch.Tensor
    amplitude_contrast: torch.Tensor
    bfactor_A2: torch.Tensor
    phase_shift_deg: torch.Tensor
