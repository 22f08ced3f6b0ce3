"""``cryodiff project``: project a map at the poses (and origins) of a STAR file.

Like ``relion_project --i MAP --ang STAR --o OUT [--ctf]``: one image per particle, in STAR
order, written as an MRC stack with the STAR's pixel size. The map is prepared once and the
images are streamed to disk ``--batch-size`` at a time (memory stays bounded).

The map's pixel size (when its header has one) must be the particles' (within
``PIXEL_TOLERANCE``): projecting a 1 Å map onto 2 Å particles would silently scale the images.
The output may not be the map, the STAR file or any stack it names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryodiff.cli.arguments import positive_int

PIXEL_TOLERANCE = 1e-3  # relative; headers store float32 and STAR files round


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map", type=Path, help="the 3D map (MRC) to project")
    parser.add_argument("--star", type=Path, required=True,
                        help="RELION particle STAR file with rlnAngleRot/Tilt/Psi (and origins)")
    parser.add_argument("--out", type=Path, required=True, help="output stack (.mrcs)")
    parser.add_argument("--ctf", action="store_true",
                        help="multiply each projection by its CTF from the STAR file")
    parser.add_argument("--batch-size", type=positive_int, default=1024, metavar="B",
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
    from cryodiff.io.outputs import check_outputs
    from cryodiff.io.star import read_particles
    from cryodiff.projection import prepare_volume, project, relion_shifts_px

    volume, map_pixel_A = read_map(args.map)
    particles = read_particles(args.star)
    check_outputs([args.out], inputs=[args.map, args.star, *set(particles.image_paths)])
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
    _check_pixel_sizes(map_pixel_A, pixel_A, args.map, args.star)
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


def _check_pixel_sizes(map_pixel_A: float, pixel_A, map_path: Path, star: Path) -> None:
    """The map (if its header has a pixel size) and every particle share one pixel size."""
    from cryodiff.errors import CryodiffError

    sizes = sorted(set(pixel_A.tolist()))
    reference = map_pixel_A if map_pixel_A > 0 else sizes[0]
    off = [s for s in sizes if abs(s - reference) > PIXEL_TOLERANCE * reference]
    if off and map_pixel_A > 0:
        raise CryodiffError(f"particle pixel size {off[0]:g} Å differs from the map's "
                            f"{map_pixel_A:g} Å ({map_path}); resample the map to the "
                            "particles' pixel size first", path=star)
    if off:
        raise CryodiffError(f"particles have several pixel sizes ({sizes[0]:g} and {off[0]:g} "
                            "Å); project each optics group separately", path=star)


def _apply_particle_ctf(images, ctf, rows: slice, pixel_A):
    """Multiply ``images`` by the CTFs of particles ``rows`` (RELION convention)."""
    from dataclasses import fields

    import torch

    from cryodiff.ctf import CtfParams, apply_ctf, ctf_2d

    subset = CtfParams(**{f.name: getattr(ctf, f.name)[rows] for f in fields(CtfParams)})
    values = ctf_2d(subset, images.shape[-1], torch.from_numpy(pixel_A), dtype=images.dtype)
    return apply_ctf(images, values)
