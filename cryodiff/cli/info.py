"""``cryodiff info``: describe a STAR particle file or an MRC map/stack (``--json`` for scripts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a RELION .star particle file or an MRC map/stack")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


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


def main(args: argparse.Namespace) -> int:
    from cryodiff.io.mrc import describe_mrc

    path = args.path
    summary = describe_star(path) if path.suffix.lower() == ".star" else describe_mrc(path)
    print(json.dumps(summary, indent=2) if args.json else _format(summary))
    return 0
