"""``cryodiff simulate``: noisy particle images, their clean versions and a RELION STAR file."""

from __future__ import annotations

import argparse

from cryodiff.cli.arguments import (finite_float, nonnegative_float, nonnegative_int,
                                    positive_float, positive_int)
from cryodiff.simulate import SimulationConfig

_DEFAULTS = SimulationConfig()


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--map", required=True, metavar="PATH|phantom",
                        help="an MRC map, or 'phantom' for the built-in protein-like map")
    parser.add_argument("--box", type=positive_int, metavar="L",
                        help="image size in pixels (the map is Fourier-resampled to it); "
                        "required unless --like")
    parser.add_argument("--n", type=positive_int, required=True, metavar="N", help="number of particles")
    parser.add_argument("--snr", type=positive_float, metavar="S",
                        help="total SNR: var(clean_ctf) / var(particles - clean_ctf) in the disk; "
                        "required unless --like")
    parser.add_argument("--structural-snr", type=nonnegative_float, default=_DEFAULTS.structural_snr,
                        metavar="S", help="SNR of the structural noise alone "
                        f"(default {_DEFAULTS.structural_snr}; 0 = none)")
    parser.add_argument("--no-ctf", action="store_true", help="simulate without a CTF")
    parser.add_argument("--defocus-range", type=finite_float, nargs=2, metavar=("MIN", "MAX"),
                        default=_DEFAULTS.defocus_range_um, help="defocus range in µm "
                        f"(default {_DEFAULTS.defocus_range_um[0]} {_DEFAULTS.defocus_range_um[1]})")
    parser.add_argument("--seed", type=nonnegative_int, default=_DEFAULTS.seed, metavar="K")
    parser.add_argument("--belt", action="store_true",
                        help="add a per-particle disordered detergent belt (and the phantom's belt)")
    parser.add_argument("--pixel-size", type=positive_float, default=None, metavar="A",
                        help="pixel size of the input map in Å (overrides its header)")
    parser.add_argument("--chunk-size", type=positive_int, default=_DEFAULTS.chunk_size, metavar="C",
                        help="particles made and written at a time (bounds memory)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    like = parser.add_argument_group("matched to real particles")
    like.add_argument("--like", metavar="STAR", help="take box, pixel size, CTFs, noise spectrum "
                      "and SNR from these real particles (--map: an MRC map of the molecule)")
    like.add_argument("--particle-diameter", type=positive_float, metavar="A",
                      help="particle diameter in Å: the noise comes from outside it when the "
                      "STAR has no poses")
    like.add_argument("--map-pixel-size", type=positive_float, metavar="A",
                      help="pixel size of --map in Å (overrides its header; same as --pixel-size)")


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse an --out that is a file, unwritable, or would overwrite the input map."""
    from pathlib import Path

    from cryodiff.io.outputs import check_outputs

    names = ("particles.mrcs", "clean.mrcs", "clean_ctf.mrcs", "particles.star",
             "simulation.json")
    check_outputs(files=[Path(args.out) / name for name in names], folder=args.out,
                  inputs=[] if args.map == "phantom" else [args.map])


def _main_like(args: argparse.Namespace) -> int:
    import json

    from cryodiff.errors import CryodiffError
    from cryodiff.simulate_like import NOISE_ESTIMATE_FILE, simulate_like

    if args.map == "phantom":
        raise CryodiffError("--like needs an MRC map of the particles' molecule, not the phantom")
    ignored = [flag for flag, value in (("--box", args.box), ("--snr", args.snr)) if value]
    if ignored:
        raise CryodiffError(f"{' and '.join(ignored)} come from the STAR with --like; leave "
                            "them out")
    _check_outputs(args)
    out = simulate_like(args.like, args.map, args.out, args.n, seed=args.seed,
                        particle_diameter_A=args.particle_diameter,
                        map_pixel_size_A=args.map_pixel_size or args.pixel_size,
                        chunk_size=args.chunk_size)
    summary = json.loads((out / NOISE_ESTIMATE_FILE).read_text())
    print(f"wrote {args.n} particles like {args.like} ({summary['box']}² px, "
          f"{summary['pixel_size_A']:.4g} Å/px) to {args.out}")
    print(f"noise from the {summary['method']}: SNR {summary['snr']:.4g} estimated, "
          f"{summary['measured_snr']:.4g} simulated")
    return 0


def main(args: argparse.Namespace) -> int:
    from cryodiff.errors import CryodiffError
    from cryodiff.simulate import load_map_or_phantom, simulate_dataset

    if args.like is not None:
        return _main_like(args)
    if args.box is None or args.snr is None:
        raise CryodiffError("give --box and --snr (or --like STAR to take them from real "
                            "particles)")
    config = SimulationConfig(
        box=args.box, n_particles=args.n, snr=args.snr,
        structural_snr=args.structural_snr or None, use_ctf=not args.no_ctf,
        defocus_range_um=tuple(args.defocus_range), seed=args.seed, belt=args.belt,
        chunk_size=args.chunk_size)
    config.validate()
    _check_outputs(args)
    volume, pixel_size_A = load_map_or_phantom(args.map, args.box, args.pixel_size,
                                               belt=args.belt, seed=args.seed)
    summary = simulate_dataset(volume, pixel_size_A, config, args.out, map_source=args.map)
    structural = summary["measured_structural_snr"]
    print(f"wrote {summary['n_particles']} particles ({args.box}² px, {pixel_size_A:.3f} Å/px) "
          f"to {args.out}")
    print(f"measured SNR {summary['measured_snr']:.4g} (target {args.snr:g}); structural SNR "
          + ("none" if structural is None else f"{structural:.4g}"))
    return 0
