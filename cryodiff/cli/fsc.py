"""``cryodiff fsc``: Fourier shell correlation between two maps and the resolution in Å."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map1", type=Path, help="first map (MRC)")
    parser.add_argument("map2", type=Path, help="second map (MRC), same box")
    parser.add_argument("--mask-radius", type=float, default=None,
                        help="soft spherical mask radius in pixels (3-pixel cosine edge)")
    parser.add_argument("--pixel-size", type=float, default=None,
                        help="Å per pixel (default: from the map header)")
    parser.add_argument("--plot", type=Path, default=None, help="write the FSC curve (PNG/PDF)")
    parser.add_argument("--json", type=Path, default=None,
                        help="write frequency (1/Å), fsc, resolution_0143, resolution_05")


def main(args: argparse.Namespace) -> int:
    from cryodiff.errors import CryodiffError
    from cryodiff.fsc import fsc
    from cryodiff.io.atomic import write_json_atomic
    from cryodiff.io.mrc import read_map

    map1, pixel1 = read_map(args.map1)
    map2, pixel2 = read_map(args.map2)
    if map1.shape != map2.shape:
        raise CryodiffError(f"box {map2.shape[-1]} differs from {args.map1}'s box "
                            f"{map1.shape[-1]}", path=args.map2)
    pixel_size_A = args.pixel_size or pixel1 or pixel2
    if not pixel_size_A or pixel_size_A <= 0:
        raise CryodiffError("the header has no pixel size: pass --pixel-size", path=args.map1)
    if args.pixel_size is None and pixel1 and pixel2 and abs(pixel1 - pixel2) > 1e-3 * pixel1:
        raise CryodiffError(f"pixel size {pixel2:g} Å differs from {args.map1}'s {pixel1:g} Å",
                            path=args.map2)
    if args.mask_radius is not None and args.mask_radius <= 0:
        raise CryodiffError(f"--mask-radius must be positive, got {args.mask_radius}")
    result = fsc(map1, map2, pixel_size_A, mask_radius_px=args.mask_radius)
    print(f"resolution (FSC 0.143): {result.resolution_0143_A:.2f} Å")
    print(f"resolution (FSC 0.5): {result.resolution_05_A:.2f} Å")
    if args.json is not None:
        write_json_atomic(args.json, result.as_dict())
    if args.plot is not None:
        from cryodiff.plots.fsc import save_fsc_plot

        save_fsc_plot(args.plot, {f"{args.map1.name} vs {args.map2.name}": result})
    return 0
