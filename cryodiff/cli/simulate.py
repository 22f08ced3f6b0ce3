"""``cryodiff simulate``: noisy particle images, their clean versions and a RELION STAR file."""

from __future__ import annotations

import argparse

from cryodiff.simulate import SimulationConfig

_DEFAULTS = SimulationConfig()


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--map", required=True, metavar="PATH|phantom",
                        help="an MRC map, or 'phantom' for the built-in protein-like map")
    parser.add_argument("--box", type=int, required=True, metavar="L",
                        help="image size in pixels (the map is Fourier-resampled to it)")
    parser.add_argument("--n", type=int, required=True, metavar="N", help="number of particles")
    parser.add_argument("--snr", type=float, required=True, metavar="S",
                        help="total SNR: var(clean_ctf) / var(particles - clean_ctf) in the disk")
    parser.add_argument("--structural-snr", type=float, default=_DEFAULTS.structural_snr,
                        metavar="S", help="SNR of the structural noise alone "
                        f"(default {_DEFAULTS.structural_snr}; 0 = none)")
    parser.add_argument("--no-ctf", action="store_true", help="simulate without a CTF")
    parser.add_argument("--defocus-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                        default=_DEFAULTS.defocus_range_um, help="defocus range in µm "
                        f"(default {_DEFAULTS.defocus_range_um[0]} {_DEFAULTS.defocus_range_um[1]})")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed, metavar="K")
    parser.add_argument("--belt", action="store_true",
                        help="add a per-particle disordered detergent belt (and the phantom's belt)")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="A",
                        help="pixel size of the input map in Å (overrides its header)")
    parser.add_argument("--chunk-size", type=int, default=_DEFAULTS.chunk_size, metavar="C",
                        help="particles made and written at a time (bounds memory)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")


def main(args: argparse.Namespace) -> int:
    from cryodiff.simulate import load_map_or_phantom, simulate_dataset

    config = SimulationConfig(
        box=args.box, n_particles=args.n, snr=args.snr,
        structural_snr=args.structural_snr or None, use_ctf=not args.no_ctf,
        defocus_range_um=tuple(args.defocus_range), seed=args.seed, belt=args.belt,
        chunk_size=args.chunk_size)
    config.validate()
    volume, pixel_size_A = load_map_or_phantom(args.map, args.box, args.pixel_size,
                                               belt=args.belt, seed=args.seed)
    summary = simulate_dataset(volume, pixel_size_A, config, args.out, map_source=args.map)
    structural = summary["measured_structural_snr"]
    print(f"wrote {summary['n_particles']} particles ({args.box}² px, {pixel_size_A:.3f} Å/px) "
          f"to {args.out}")
    print(f"measured SNR {summary['measured_snr']:.4g} (target {args.snr:g}); structural SNR "
          + ("none" if structural is None else f"{structural:.4g}"))
    return 0
