"""``cryodiff benchmark``: compare cryodiff with every baseline in 2D and 3D (issue 5), or on
real particles against their closest projections (``--particles STAR --map MAP``)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from cryodiff.cli.arguments import device, nonnegative_int, positive_int
from cryodiff.errors import CryodiffError


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="ci",
                        help="ci (default), cpu-small, gpu-medium or gpu-paper")
    parser.add_argument("--map", nargs="+", metavar="PATH|phantom",
                        help="map(s) to simulate from (default: the preset's, the phantom)")
    parser.add_argument("--pixel-size", "--map-pixel-size", dest="pixel_size", type=float,
                        metavar="A", help="pixel size of --map in Å (needed when its header "
                                          "has none)")
    parser.add_argument("--particles", metavar="REAL.star",
                        help="score on these real particles (refined poses needed) against "
                             "their closest projections through the one --map; learnt "
                             "methods train on a matched simulation (see --training)")
    parser.add_argument("--training", metavar="DIR",
                        help="with --particles: a simulated folder at the preset's box to "
                             "train and fit the methods on (default: a matched simulation of "
                             "the particles, `simulate --like`, made in OUT/work)")
    parser.add_argument("--n-particles", type=int, metavar="N",
                        help="with --particles: how many to score (default: the preset's "
                             "n_test_2d)")
    parser.add_argument("--snr", nargs="+", type=float, metavar="S",
                        help="total SNR(s) (default: the preset's)")
    parser.add_argument("--out", default="benchmark_out", metavar="DIR",
                        help="output folder (results.json, results.md, figures); run the "
                             "same command again to resume an interrupted run (trained "
                             "networks in DIR/work are reused)")
    parser.add_argument("--device", type=device, help="auto (default), cpu, cuda, cuda:N or mps")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--skip", nargs="+", default=[], metavar="METHOD",
                        help="methods to leave out (they appear in the table as skipped)")
    chosen.add_argument("--only", nargs="+", metavar="METHOD",
                        help="run only these methods (the others appear as skipped); "
                             "sr3-x0ft, sr3-x0ft-ssim, sr3-joint and the SR3-sized "
                             "supervised-large-*-2x rows run only when named here")
    parser.add_argument("--checkpoint", metavar="RUN|CKPT",
                        help="use this trained SR3 run instead of training one per condition")
    parser.add_argument("--train-steps", type=int, help="optimiser steps of every trained method")
    parser.add_argument("--seed", type=nonnegative_int,
                        help="seed of the simulated data (default 0)")
    parser.add_argument("--training-seeds", nargs="+", type=nonnegative_int, metavar="S",
                        help="train every learnt method once per seed on the same data; "
                             "rows give the mean and the spread between seeds (default: the "
                             "preset's: 0 for ci, 0 1 2 for the others)")
    parser.add_argument("--sampler", choices=("ddpm", "ddim"),
                        help="SR3 sampler for the SR3 rows (default ddpm)")
    parser.add_argument("--save-denoised", action="store_true",
                        help="also write DIR/denoised.star (+ .mrcs): SR3 + post-processor "
                             "output of the first condition's 3D test set, and DIR/raw.star, "
                             "the same particles before denoising")
    parser.add_argument("--no-pose-search", action="store_true",
                        help="reconstruct at the known poses only (no projection-matching "
                             "pose search)")
    parser.add_argument("--pm-draws", type=positive_int, metavar="K",
                        help="SR3 samples averaged by the sr3-pm denoiser (default 4)")
    parser.add_argument("--sr3-prediction", choices=("eps", "v"),
                        help="what SR3's network learns to output: eps (ε, the paper's; "
                             "default) or v (√γ̄·ε − √(1−γ̄)·clean); a v run names its SR3 rows "
                             "sr3v…, so its table combines with an eps run of the same data")
    parser.add_argument("--no-self-ensemble", action="store_true",
                        help="apply the one-pass networks once, not averaged over the 8 "
                             "dihedral flips/rotations of each particle")
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
                 "training_seeds": tuple(args.training_seeds) if args.training_seeds else None,
                 "sr3_sampler": args.sampler,
                 "pose_search": False if args.no_pose_search else None,
                 "pm_draws": args.pm_draws,
                 "sr3_prediction": args.sr3_prediction,
                 "self_ensemble": False if args.no_self_ensemble else None,
                 # --only chooses from every method (the opt-in ones too), --skip
                 # removes from the preset's
                 "methods": tuple(m for m in (ALL_METHODS if args.only else config.methods)
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
    if args.particles is not None:
        return _main_real(args, config, command)
    if args.training is not None or args.n_particles is not None:
        raise CryodiffError("--training and --n-particles go with --particles")
    rows = run_benchmark(config, args.out, checkpoint=args.checkpoint, command=command,
                         progress=not args.no_progress, save_denoised=args.save_denoised)
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"cryodiff: {ok} method rows measured, "
          f"{sum(r['status'] in ('skipped', 'failed') for r in rows)} skipped/failed; "
          f"table in {Path(args.out) / 'results.md'}")
    return 0


def _main_real(args: argparse.Namespace, config, command: str | None) -> int:
    """``--particles STAR --map MAP``: every method on real particles (2D scores only)."""
    from cryodiff.benchmark.real import run_real_benchmark

    if not Path(args.particles).is_file():
        raise CryodiffError("particles not found", path=args.particles)
    if not args.map or len(args.map) != 1 or args.map[0] == "phantom":
        raise CryodiffError("--particles needs the one map they were refined against (--map "
                            "MAP.mrc)")
    if args.training is not None and not Path(args.training).is_dir():
        raise CryodiffError("training folder not found", path=args.training)
    if args.n_particles is not None and args.n_particles < 1:
        raise CryodiffError(f"--n-particles must be positive, got {args.n_particles}")
    rows = run_real_benchmark(args.particles, args.map[0], config, args.out,
                              training_dir=args.training, n_particles=args.n_particles,
                              map_pixel_size_A=args.pixel_size, checkpoint=args.checkpoint,
                              command=command, progress=not args.no_progress)
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"cryodiff: {ok} method rows scored on real particles; table in "
          f"{Path(args.out) / 'results.md'}")
    return 0
