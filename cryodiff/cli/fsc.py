"""``cryodiff fsc``: Fourier shell correlation between two maps and the resolution in Å.

With a mask (``--mask MAP`` or ``--mask-radius R``) the two maps are taken as independent
half maps and the masked FSC is corrected for the mask by high-resolution noise substitution,
as RELION's post-processing does (:func:`cryodiff.fsc.mask_corrected_fsc`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from cryodiff.cli.arguments import plot_path, positive_float


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map1", type=Path, help="first map (MRC)")
    parser.add_argument("map2", type=Path, help="second map (MRC), same box")
    mask = parser.add_mutually_exclusive_group()
    mask.add_argument("--mask-radius", type=positive_float, default=None,
                      help="soft spherical mask radius in pixels (3-pixel cosine edge); the "
                           "FSC is mask-corrected (phase randomisation)")
    mask.add_argument("--mask", type=Path, default=None,
                      help="mask map (MRC, values in [0, 1], same box); the FSC is "
                           "mask-corrected (phase randomisation)")
    parser.add_argument("--pixel-size", type=positive_float, default=None,
                        help="Å per pixel (default: from the map header)")
    parser.add_argument("--plot", type=plot_path, default=None,
                        help="write the FSC curve (format from the suffix: .png, .pdf, .svg…)")
    parser.add_argument("--json", type=Path, default=None,
                        help="write frequency (1/Å), fsc, resolution_0143, resolution_05 "
                             "(with a mask: the corrected curve, plus fsc_unmasked, fsc_masked, "
                             "fsc_randomized, randomized_from_shell)")


def with_null_notes(payload: dict) -> dict:
    """``payload`` plus a ``notes`` entry saying why a resolution is written as JSON null."""
    notes = {key: "null: the FSC never yields a finite resolution at this threshold "
                  "(e.g. it is below it from the first shell on)"
             for key, value in payload.items()
             if key.startswith("resolution") and isinstance(value, float)
             and not math.isfinite(value)}
    return {**payload, "notes": notes} if notes else payload


def main(args: argparse.Namespace) -> int:
    from cryodiff.errors import CryodiffError
    from cryodiff.fsc import fsc
    from cryodiff.io.atomic import write_json_atomic
    from cryodiff.io.mrc import read_map
    from cryodiff.io.outputs import check_outputs

    check_outputs([p for p in (args.json, args.plot) if p is not None],
                  inputs=[args.map1, args.map2, args.mask])
    if args.json is not None and args.plot is not None and args.json == args.plot:
        raise CryodiffError("--json and --plot name the same file", path=args.json)
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
    mask = None
    if args.mask is not None:
        from cryodiff.io.mask import read_mask

        mask = read_mask(args.mask, map1.shape[-1])
    elif args.mask_radius is not None:
        from cryodiff.masks import soft_round_mask

        mask = soft_round_mask(map1.shape[-1], 3, args.mask_radius, 3.0)
    name = f"{args.map1.name} vs {args.map2.name}"
    if mask is None:
        result = fsc(map1, map2, pixel_size_A)
        payload, curves = result.as_dict(), {name: result}
    else:
        from cryodiff.fsc import mask_corrected_fsc

        corrected = mask_corrected_fsc(map1, map2, mask, pixel_size_A)
        result, payload = corrected.corrected, corrected.as_dict()
        curves = {"unmasked": corrected.unmasked, "masked": corrected.masked,
                  "masked, phases randomised": corrected.randomized,
                  f"{name}, mask-corrected": result}
        for label in ("unmasked", "masked"):
            print(f"resolution {label} (FSC 0.143): {curves[label].resolution_0143_A:.2f} Å")
        print(f"phases randomised from shell {corrected.randomized_from_shell} on")
    label = "" if mask is None else " mask-corrected"
    print(f"resolution{label} (FSC 0.143): {result.resolution_0143_A:.2f} Å")
    print(f"resolution{label} (FSC 0.5): {result.resolution_05_A:.2f} Å")
    if args.json is not None:
        write_json_atomic(args.json, with_null_notes(payload))
    if args.plot is not None:
        from cryodiff.plots.fsc import save_fsc_plot

        save_fsc_plot(args.plot, curves)
    return 0
