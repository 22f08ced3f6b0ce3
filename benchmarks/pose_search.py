"""3D at searched poses for a finished benchmark run that saved its denoised particles.

    python benchmarks/pose_search.py RUN_DIR --preset cpu-small --map phantom --snr 0.01
        [--pixel-size A] [--seed 0] [--label sr3+pp_10]

``cryodiff benchmark`` reconstructs every 3D set at the known poses and, since the pose search
was added, at poses found by projection matching. This script gives the second figure to a run
made before that (or with ``--no-pose-search``) from what ``--save-denoised`` left in RUN_DIR:
it re-simulates the run's test split from the same preset, map, SNR and seed (the simulation
is deterministic; the saved ``raw.mrcs`` must equal it, which is checked), loads
``denoised.mrcs`` and scores the clean targets, the raw particles and the denoised ones exactly
as the benchmark does. Writes ``RUN_DIR/pose_search.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from cryodiff.benchmark.conditions import make_condition
from cryodiff.benchmark.config import get_preset
from cryodiff.benchmark.evaluate import (fsc_to_truth, pose_band_A, reconstruct_split,
                                         reconstruct_with_pose_search)
from cryodiff.io.atomic import write_json_atomic
from cryodiff.io.mrc import read_stack


def score_3d(images: torch.Tensor, condition, config) -> dict:
    """FSC-0.143 (Å) at known and at searched poses, and the median pose error (degrees)."""
    test, px, truth = condition.test, condition.pixel_size_A, condition.volume
    known = fsc_to_truth(reconstruct_split(images, test, px), truth, px).resolution_0143_A
    volume, error = reconstruct_with_pose_search(images, test, truth, px, config)
    return {"fsc_0143_A": known,
            "fsc_0143_A_pose_search": fsc_to_truth(volume, truth, px).resolution_0143_A,
            "median_pose_error_deg": error}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--map", default="phantom")
    parser.add_argument("--pixel-size", type=float)
    parser.add_argument("--snr", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="sr3+pp_10", help="name of the denoised row")
    args = parser.parse_args(argv)

    config = dataclasses.replace(get_preset(args.preset), maps=(args.map,), snrs=(args.snr,),
                                 pixel_size_A=args.pixel_size, seed=args.seed)
    condition = make_condition(args.map, args.snr, config)
    raw = read_stack(args.run_dir / "raw.mrcs")
    denoised = read_stack(args.run_dir / "denoised.mrcs")
    if raw.shape != condition.test.noisy.shape or \
            not torch.allclose(raw.float(), condition.test.noisy.float(), atol=1e-5, rtol=1e-5):
        print(f"pose_search: {args.run_dir / 'raw.mrcs'}: not the test split of this preset, "
              "map, SNR and seed", file=sys.stderr)
        return 2
    rows = []
    for method, images in (("clean", condition.test.clean_ctf), ("noisy", raw.float()),
                           (args.label, denoised.float())):
        rows.append({"method": method, "map": condition.map_name, "snr": args.snr,
                     "n_test_3d": len(images), **score_3d(images, condition, config)})
    write_json_atomic(args.run_dir / "pose_search.json",
                      {"command": "python benchmarks/pose_search.py " + " ".join(sys.argv[1:]),
                       "pose_band_A": pose_band_A(config, condition.pixel_size_A),
                       "pose_grid_deg": config.pose_grid_deg,
                       "pose_refine_rounds": config.pose_refine_rounds, "rows": rows})
    print("| method | FSC-0.143, known poses (Å) | FSC-0.143, searched poses (Å) | "
          "median pose error (°) |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['fsc_0143_A']:.2f} | {row['fsc_0143_A_pose_search']:.2f} "
              f"| {row['median_pose_error_deg']:.2f} |")
    print(json.dumps({"pose_band_A": pose_band_A(config, condition.pixel_size_A)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
