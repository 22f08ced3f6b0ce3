"""``cryodiff reconstruct``: a map from particles with known poses (direct Fourier inversion)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("star", type=Path, help="RELION particle STAR file (with poses)")
    parser.add_argument("--out", type=Path, required=True, help="output map MAP.mrc")
    parser.add_argument("--half-maps", action="store_true",
                        help="also write MAP_half1.mrc / MAP_half2.mrc (random seeded split) "
                             "and print the gold-standard FSC resolution")
    parser.add_argument("--no-ctf", action="store_true",
                        help="ignore CTF columns (images without CTF or already corrected)")
    parser.add_argument("--batch-size", type=int, default=512, help="images per batch")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--seed", type=int, default=0, help="seed of the half-map split")
    parser.add_argument("--regularization", type=float, default=1e-3,
                        help="Wiener-like constant, relative to the mean CTF² weight of a shell")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def half_map_paths(out: Path) -> tuple[Path, Path]:
    """``MAP_half1.mrc`` and ``MAP_half2.mrc`` beside ``out``."""
    return (out.with_name(f"{out.stem}_half1{out.suffix}"),
            out.with_name(f"{out.stem}_half2{out.suffix}"))


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
    use_ctf = not args.no_ctf
    if use_ctf and particles.ctf is None:
        print(f"cryodiff: note: {args.star} has no CTF columns; reconstructing without CTF")
        use_ctf = False
    result = reconstruct_particles(particles, use_ctf=use_ctf, half_maps=args.half_maps,
                                   seed=args.seed, batch_size=args.batch_size,
                                   regularization=args.regularization, device=args.device,
                                   progress=not args.quiet)
    write_map(args.out, result.volume.cpu(), result.pixel_size_A)
    print(f"wrote {args.out} ({result.n_particles} particles, box {result.volume.shape[-1]}, "
          f"{result.pixel_size_A:g} Å/px)")
    if args.half_maps:
        path1, path2 = half_map_paths(args.out)
        write_map(path1, result.half1.cpu(), result.pixel_size_A)
        write_map(path2, result.half2.cpu(), result.pixel_size_A)
        gold = result.half_map_fsc()
        print(f"wrote {path1} and {path2}")
        print(f"gold-standard resolution (FSC 0.143): {gold.resolution_0143_A:.2f} Å "
              f"(FSC 0.5: {gold.resolution_05_A:.2f} Å)")
    return 0
