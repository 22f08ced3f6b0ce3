"""``cryodiff project``: project a map at the poses (and origins) of a STAR file.

Like ``relion_project --i MAP --ang STAR --o OUT [--ctf]``: one image per particle, in STAR
order, written as an MRC stack with the STAR's pixel size. The map is prepared once and the
images are streamed to disk ``--batch-size`` at a time (memory stays bounded).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map", type=Path, help="the 3D map (MRC) to project")
    parser.add_argument("--star", type=Path, required=True,
                        help="RELION particle STAR file with rlnAngleRot/Tilt/Psi (and origins)")
    parser.add_argument("--out", type=Path, required=True, help="output stack (.mrcs)")
    parser.add_argument("--ctf", action="store_true",
                        help="multiply each projection by its CTF from the STAR file")
    parser.add_argument("--batch-size", type=int, default=1024, metavar="B",
                        help="images projected and written per batch (default 1024)")
    parser.add_argument("--relion-odd-box", action="store_true",
                        help="for odd boxes, put the image centre at L//2+1 as relion_project "
                             "does (cryodiff's convention is L//2; even boxes are unaffected)")


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from cryodiff.errors import CryodiffError
    from cryodiff.geometry import euler_to_matrix
    from cryodiff.io.mrc import StackWriter, read_map
    from cryodiff.io.star import read_particles
    from cryodiff.projection import prepare_volume, project, relion_shifts_px

    if args.batch_size < 1:
        raise CryodiffError(f"--batch-size must be at least 1, got {args.batch_size}")
    volume, map_pixel_A = read_map(args.map)
    particles = read_particles(args.star)
    box = volume.shape[-1]
    if particles.box is not None and particles.box != box:
        raise CryodiffError(f"particle box {particles.box} does not match the map's box {box} "
                            f"({args.map})", path=args.star)
    if particles.eulers_deg is None:
        raise CryodiffError("no rlnAngleRot/rlnAngleTilt/rlnAnglePsi columns to project at",
                            path=args.star)
    if args.ctf and particles.ctf is None:
        raise CryodiffError("--ctf needs CTF columns (rlnDefocusU, …)", path=args.star)
    pixel_A = np.array(particles.pixel_size_A, dtype=np.float64)
    out_pixel_A = float(pixel_A[0]) if len(pixel_A) else map_pixel_A

    rotations = euler_to_matrix(torch.from_numpy(np.asarray(particles.eulers_deg, np.float64)))
    origins = torch.from_numpy(np.asarray(particles.shifts_A, dtype=np.float64))
    shifts = relion_shifts_px(origins, torch.from_numpy(pixel_A), box,
                              odd_box_offset=args.relion_odd_box)
    has_shifts = bool(shifts.abs().max() > 0) if len(shifts) else False
    prepared = prepare_volume(volume)
    with StackWriter(args.out, box, out_pixel_A) as writer:
        for start in range(0, len(particles), args.batch_size):
            rows = slice(start, min(start + args.batch_size, len(particles)))
            images = project(prepared, rotations[rows], shifts[rows] if has_shifts else None)
            if args.ctf:
                images = _apply_particle_ctf(images, particles.ctf, rows, pixel_A[rows])
            writer.write(images)
    return 0


def _apply_particle_ctf(images, ctf, rows: slice, pixel_A):
    """Multiply ``images`` by the CTFs of particles ``rows`` (RELION convention)."""
    from dataclasses import fields

    import torch

    from cryodiff.ctf import CtfParams, apply_ctf, ctf_2d

    subset = CtfParams(**{f.name: getattr(ctf, f.name)[rows] for f in fields(CtfParams)})
    values = ctf_2d(subset, images.shape[-1], torch.from_numpy(pixel_A), dtype=images.dtype)
    return apply_ctf(images, values)
