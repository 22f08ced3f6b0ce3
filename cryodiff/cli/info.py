"""``cryodiff info``: describe a STAR particle file or an MRC map/stack (``--json`` for scripts).

``--noise`` estimates the particles' SNR and noise power spectrum instead
(:mod:`cryodiff.noise_estimate`): from the residual to the map's projections when the STAR has
poses and ``--map`` is given, else from the background outside ``--particle-diameter``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cryodiff.cli.arguments import plot_path, positive_float, positive_int
from cryodiff.noise_estimate import DEFAULT_MAX_PARTICLES


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a RELION .star particle file or an MRC map/stack")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    noise = parser.add_argument_group("noise estimate (STAR files)")
    noise.add_argument("--noise", action="store_true",
                       help="estimate the SNR and noise power spectrum of the particles")
    noise.add_argument("--map", metavar="MRC", help="map of the molecule (with poses in the STAR: "
                       "noise = particle − fitted CTF-modulated projection)")
    noise.add_argument("--map-pixel-size", type=positive_float, metavar="A",
                       help="pixel size of --map in Å (overrides its header)")
    noise.add_argument("--particle-diameter", type=positive_float, metavar="A",
                       help="particle diameter in Å (noise from the background outside it)")
    noise.add_argument("--method", choices=("auto", "poses", "background"), default="auto",
                       help="auto (default): poses when the STAR has them and --map is given")
    noise.add_argument("--max-particles", type=positive_int, default=DEFAULT_MAX_PARTICLES,
                       metavar="N", help=f"particles read (default {DEFAULT_MAX_PARTICLES})")
    noise.add_argument("--plot", type=plot_path, metavar="PNG",
                       help="also save a figure of the noise spectrum")


def describe_star(path: Path) -> dict:
    """Particles, box, pixel size, optics groups and stacks of a STAR file.

    Existing stacks are checked (headers only); missing ones are listed, not an error.
    """
    import numpy as np

    from cryodiff.io.images import check_stacks
    from cryodiff.io.star import read_particles

    particles = read_particles(path)
    missing = check_stacks(particles)
    groups = {}
    for group in np.unique(particles.optics_group).tolist():
        members = particles.optics_group == group
        entry = {"particles": int(members.sum()),
                 "pixel_size_A": float(particles.pixel_size_A[members][0])}
        if particles.ctf is not None:
            first = int(np.flatnonzero(members)[0])
            for name in ("voltage_kV", "cs_mm", "amplitude_contrast"):
                # CtfParams holds float32; print its shortest decimal (2.7, not 2.70000005).
                entry[name] = float(str(getattr(particles.ctf, name)[first].numpy()))
        groups[str(group)] = entry
    return {
        "path": str(path), "kind": "star", "particles": len(particles), "box": particles.box,
        "pixel_size_A": sorted(set(particles.pixel_size_A.tolist())),
        "optics_groups": groups,
        "stacks": len(set(particles.image_paths)), "missing_stacks": [str(p) for p in missing],
        "has_poses": particles.eulers_deg is not None, "has_ctf": particles.ctf is not None,
    }


def _format(summary: dict) -> str:
    lines = []
    for key, value in summary.items():
        if key == "optics_groups":
            lines.append(f"optics_groups: {len(value)}")
            lines += [f"  group {name}: " + ", ".join(f"{k} {v}" for k, v in entry.items())
                      for name, entry in value.items()]
        elif key == "missing_stacks":
            lines.append(f"missing_stacks: {len(value)}")
            lines += [f"  {p}" for p in value[:5]] + (["  ..."] if len(value) > 5 else [])
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def describe_noise(args: argparse.Namespace) -> dict:
    """The noise estimate of ``args.path`` as a JSON-ready dict (``--noise``)."""
    from cryodiff.noise_estimate import estimate_noise

    estimate = estimate_noise(args.path, args.map, args.particle_diameter, args.map_pixel_size,
                              method=args.method, max_particles=args.max_particles)
    if args.plot is not None:
        from cryodiff.plots.gallery import save_figure
        from cryodiff.plots.noise import plot_noise_spectrum

        save_figure(plot_noise_spectrum(estimate), args.plot)
    return {"path": str(args.path), **estimate.to_dict()}


def _format_noise(summary: dict) -> str:
    lines = [f"path: {summary['path']}",
             f"method: {summary['method']} ({summary['n_particles']} particles, box "
             f"{summary['box']}, {summary['pixel_size_A']:g} Å/px"
             + (f", particle diameter {summary['particle_diameter_A']:g} Å)"
                if summary["particle_diameter_A"] is not None else ")"),
             f"snr: {summary['snr']:.4g}",
             f"  definition: {summary['snr_definition']} "
             f"(radius_fraction {summary['radius_fraction']:g})",
             f"signal variance (disk): {summary['signal_variance']:.4g}",
             f"noise variance (disk): {summary['noise_variance']:.4g}; per pixel "
             f"{summary['pixel_variance']:.4g}",
             "noise spectrum (frequency 1/Å: power):"]
    frequency, power = summary["frequency"], summary["noise_spectrum"]
    step = max(1, (len(frequency) - 1) // 8)
    lines += [f"  {frequency[i]:.4f}: {power[i]:.4g}" for i in range(0, len(frequency), step)]
    return "\n".join(lines)


def _strict_json(summary: dict) -> str:
    """Valid JSON: NaN/inf become null (e.g. the statistics of an empty stack)."""
    from cryodiff.io.atomic import json_safe

    return json.dumps(json_safe(summary), indent=2, allow_nan=False)


def main(args: argparse.Namespace) -> int:
    from cryodiff.errors import CryodiffError
    from cryodiff.io.mrc import describe_mrc

    path = args.path
    if args.noise:
        if path.suffix.lower() != ".star":
            raise CryodiffError("--noise needs a STAR file of particles", path=path)
        summary = describe_noise(args)
        print(_strict_json(summary) if args.json else _format_noise(summary))
        return 0
    summary = describe_star(path) if path.suffix.lower() == ".star" else describe_mrc(path)
    print(_strict_json(summary) if args.json else _format(summary))
    return 0
