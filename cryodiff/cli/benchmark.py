"""``cryodiff benchmark``: compare cryodiff with every baseline in 2D and 3D (issue 5)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from cryodiff.errors import CryodiffError


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="ci", help="ci (default), cpu-small or gpu-paper")
    parser.add_argument("--map", nargs="+", metavar="PATH|phantom",
                        help="map(s) to simulate from (default: the preset's, the phantom)")
    parser.add_argument("--pixel-size", type=float, metavar="A",
                        help="pixel size of --map in Å (needed when its header has none)")
    parser.add_argument("--snr", nargs="+", type=float, metavar="S",
                        help="total SNR(s) (default: the preset's)")
    parser.add_argument("--out", default="benchmark_out", metavar="DIR",
                        help="output folder (results.json, results.md, figures); run the "
                             "same command again to resume an interrupted run (trained "
                             "networks in DIR/work are reused)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--skip", nargs="+", default=[], metavar="METHOD",
                        help="methods to leave out (they appear in the table as skipped)")
    chosen.add_argument("--only", nargs="+", metavar="METHOD",
                        help="run only these methods (the others appear as skipped)")
    parser.add_argument("--checkpoint", metavar="RUN|CKPT",
                        help="use this trained SR3 run instead of training one per condition")
    parser.add_argument("--train-steps", type=int, help="optimiser steps of every trained method")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--sampler", choices=("ddpm", "ddim"),
                        help="SR3 sampler for the SR3 rows (default ddpm)")
    parser.add_argument("--save-denoised", action="store_true",
                        help="also write DIR/denoised.star (+ .mrcs): SR3 + post-processor "
                             "output of the first condition's 3D test set, and DIR/raw.star, "
                             "the same particles before denoising")
    parser.add_argument("--no-pose-search", action="store_true",
                        help="reconstruct at the known poses only (no projection-matching "
                             "pose search)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace):
    """The preset with the command line's overrides applied (errors for bad values)."""
    from cryodiff.benchmark.config import ALL_METHODS, get_preset

    config = get_preset(args.preset)
    flag, named = ("--only", args.only) if args.only else ("--skip", args.skip)
    unknown = sorted(set(named) - set(ALL_METHODS))
    if unknown:
        raise CryodiffError(f"unknown method(s) for {flag}: {', '.join(unknown)} "
                            f"(choose from {', '.join(ALL_METHODS)})")
    for spec in args.map or []:
        if spec != "phantom" and not Path(spec).is_file():
            raise CryodiffError("map not found", path=spec)
    if args.pixel_size is not None and not args.pixel_size > 0:
        raise CryodiffError(f"--pixel-size must be positive, got {args.pixel_size}")
    if args.train_steps is not None and args.train_steps < 1:
        raise CryodiffError(f"--train-steps must be positive, got {args.train_steps}")
    overrides = {"maps": tuple(args.map) if args.map else None,
                 "snrs": tuple(args.snr) if args.snr else None,
                 "pixel_size_A": args.pixel_size, "device": args.device,
                 "train_steps": args.train_steps, "seed": args.seed,
                 "sr3_sampler": args.sampler,
                 "pose_search": False if args.no_pose_search else None,
                 "methods": tuple(m for m in config.methods
                                  if (m in args.only if args.only else m not in args.skip))}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    config.validate()
    return config


def main(args: argparse.Namespace) -> int:
    from cryodiff.benchmark import run_benchmark

    config = config_from_args(args)
    if args.checkpoint is not None and not Path(args.checkpoint).exists():
        raise CryodiffError("checkpoint not found", path=args.checkpoint)
    command = "cryodiff " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if Path(sys.argv[0]).name in ("cryodiff", "__main__.py") else None
    rows = run_benchmark(config, args.out, checkpoint=args.checkpoint, command=command,
                         progress=not args.no_progress, save_denoised=args.save_denoised)
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"cryodiff: {ok} method rows measured, "
          f"{sum(r['status'] in ('skipped', 'failed') for r in rows)} skipped/failed; "
          f"table in {Path(args.out) / 'results.md'}")
    return 0
