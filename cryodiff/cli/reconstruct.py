"""``cryodiff reconstruct``: a map from particles with known poses (direct Fourier inversion)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cryodiff.cli.arguments import (device, nonnegative_float, nonnegative_int, positive_float,
                                    positive_int)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("star", type=Path, help="RELION particle STAR file (with poses)")
    parser.add_argument("--out", type=Path, required=True, help="output map MAP.mrc")
    parser.add_argument("--half-maps", action="store_true",
                        help="also write MAP_half1.mrc / MAP_half2.mrc (random seeded split) "
                             "and print the gold-standard FSC resolution")
    parser.add_argument("--no-ctf", action="store_true",
                        help="ignore CTF columns (images without CTF or already corrected)")
    parser.add_argument("--batch-size", type=positive_int, default=512, help="images per batch")
    parser.add_argument("--device", type=device, default="cpu",
                        help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="seed of the half-map split")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out images with NaN or infinite pixels (counted) instead "
                             "of stopping at the first")
    parser.add_argument("--regularization", type=nonnegative_float, default=1e-3,
                        help="Wiener-like constant, relative to the mean CTF² weight of a shell")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    support = parser.add_mutually_exclusive_group()
    support.add_argument("--mask-radius", type=positive_float, default=None,
                         help="radius (px) of the soft spherical support the map is confined "
                              "to (default: L/2 − max(2, L/16), edge max(2, L/16) px)")
    support.add_argument("--mask", type=Path, default=None,
                         help="support map (MRC, values in [0, 1], the data's box) instead of "
                              "the sphere")
    support.add_argument("--no-mask", action="store_true",
                         help="keep the whole box (no support); half maps are never masked")
    parser.add_argument("--mask-edge", type=nonnegative_float, default=None,
                        help="width (px) of the spherical support's raised-cosine edge")


def support_from_args(args: argparse.Namespace, box: int):
    """The support tensor ``(box,)*3`` the flags ask for, or None with ``--no-mask``."""
    from cryodiff.io.mask import read_mask
    from cryodiff.reconstruct import spherical_support

    if args.no_mask:
        return None
    if args.mask is not None:
        return read_mask(args.mask, box)
    return spherical_support(box, args.mask_radius, args.mask_edge)


def half_map_paths(out: Path) -> tuple[Path, Path]:
    """``MAP_half1.mrc`` and ``MAP_half2.mrc`` beside ``out``."""
    return (out.with_name(f"{out.stem}_half1{out.suffix}"),
            out.with_name(f"{out.stem}_half2{out.suffix}"))


def _check_outputs(args: argparse.Namespace, particles) -> None:
    from cryodiff.io.outputs import check_outputs

    outputs = [args.out, *(half_map_paths(args.out) if args.half_maps else ())]
    inputs = [args.star, *set(particles.image_paths)]
    check_outputs(outputs, inputs=inputs + ([args.mask] if args.mask is not None else []))


def _without_bad_images(particles, star: Path):
    """The particles whose images are all finite; says how many were left out."""
    import numpy as np

    from cryodiff.errors import CryodiffError
    from cryodiff.io.images import nonfinite_particles

    bad = nonfinite_particles(particles)
    if len(bad) == 0:
        return particles
    if len(bad) == len(particles):
        raise CryodiffError("every image has NaN or infinite pixels", path=star)
    print(f"cryodiff: note: skipped {len(bad)} of {len(particles)} images with NaN or "
          f"infinite pixels (first: particle {int(bad[0]) + 1})")
    return particles.subset(np.setdiff1d(np.arange(len(particles)), bad))


def main(args: argparse.Namespace) -> int:
    from cryodiff.errors import CryodiffError
    from cryodiff.io.mrc import write_map
    from cryodiff.io.star import read_particles
    from cryodiff.reconstruct import reconstruct_particles

    if args.batch_size < 1:
        raise CryodiffError(f"--batch-size must be positive, got {args.batch_size}")
    if args.regularization < 0:
        raise CryodiffError(f"--regularization must be ≥ 0, got {args.regularization}")
    particles = read_particles(args.star)
    _check_outputs(args, particles)
    if args.skip_bad:
        particles = _without_bad_images(particles, args.star)
    support = support_from_args(args, particles.box) if particles.box is not None else None
    use_ctf = not args.no_ctf
    if use_ctf and particles.ctf is None:
        print(f"cryodiff: note: {args.star} has no CTF columns; reconstructing without CTF")
        use_ctf = False
    result = reconstruct_particles(particles, use_ctf=use_ctf, half_maps=args.half_maps,
                                   seed=args.seed, batch_size=args.batch_size,
                                   regularization=args.regularization, device=args.device,
                                   progress=not args.quiet, support=support)
    write_map(args.out, result.volume.cpu(), result.pixel_size_A)
    masked = "whole box" if support is None else (
        f"confined to {args.mask}" if args.mask is not None else "confined to a soft sphere")
    print(f"wrote {args.out} ({result.n_particles} particles, box {result.volume.shape[-1]}, "
          f"{result.pixel_size_A:g} Å/px, {masked})")
    if args.half_maps:
        path1, path2 = half_map_paths(args.out)
        write_map(path1, result.half1.cpu(), result.pixel_size_A)
        write_map(path2, result.half2.cpu(), result.pixel_size_A)
        gold = result.half_map_fsc()
        print(f"wrote {path1} and {path2}")
        print(f"gold-standard resolution (FSC 0.143): {gold.resolution_0143_A:.2f} Å "
              f"(FSC 0.5: {gold.resolution_05_A:.2f} Å)")
        if support is not None:
            corrected = result.masked_half_map_fsc().corrected
            print(f"gold-standard resolution under the support, mask-corrected (FSC 0.143): "
                  f"{corrected.resolution_0143_A:.2f} Å (FSC 0.5: "
                  f"{corrected.resolution_05_A:.2f} Å)")
    return 0
