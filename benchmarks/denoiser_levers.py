"""Levers for a cryodiff denoiser that no peer beats (issue 16), measured side by side.

Takes the SR3 networks a protocol run of ``cryodiff benchmark`` trained (one per training
seed, in ``RUN/work/sr3_<condition>_seed<S>``) and the same condition's data, and scores on
the run's own 2D test particles (its first ``n_test_2d``):

* ``sr3+pp-mse_10`` as the benchmark trains it (the preset's ``post_train_steps``);
* the same post-processor given the supervised U-Nets' budget (the preset's ``steps``);
* the mean of ``--draws`` samples refined by a post-processor trained on such means;
* the supervised U-Nets (L2 and L1, the benchmark's network and recipe) at ``steps`` and at
  twice that, which equals SR3 + post-processor's total optimiser steps;
* each of the above with a dihedral self-ensemble at test time (the 8 flips and 90°
  rotations of the input, undone on the outputs and averaged: the test-time counterpart of
  the training augmentation every network gets).

Every learnt row is trained once per seed on the same data; rows give the mean over seeds,
their sample SD and the per-seed means. CWF (fitted on the 3D test set) and the benchmark's
own rows are read from ``RUN/results.json`` for reference.

``OMP_NUM_THREADS=1 python benchmarks/denoiser_levers.py --run runs/protocol_ci_phantom
--snr 0.1 --out benchmarks/results/denoiser_levers_ci_phantom_0.1.json``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from cryodiff.baselines.base import DenoisingData
from cryodiff.baselines.regression import RegressionRecipe
from cryodiff.baselines.supervised import SupervisedUNet, SupervisedUNetL1
from cryodiff.benchmark.conditions import make_condition
from cryodiff.benchmark.config import PRESETS
from cryodiff.benchmark.methods import data_settings, train_config_for
from cryodiff.benchmark.sr3_pm import TEST_DRAW_SEED_OFFSET
from cryodiff.denoise import load_denoiser
from cryodiff.metrics import psnr, ssim
from cryodiff.self_ensemble import self_ensemble
from cryodiff.training.postprocess_mse import (fit_mse_postprocessor, mse_post_config, refine,
                                               sampler_draws)


def score(images: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    return float(psnr(images, target).mean()), float(ssim(images, target).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a cryodiff benchmark --out DIR")
    parser.add_argument("--preset", default="ci")
    parser.add_argument("--map", default="phantom")
    parser.add_argument("--pixel-size", type=float, default=None)
    parser.add_argument("--snr", type=float, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    base = PRESETS[args.preset]
    config = dataclasses.replace(base, maps=(args.map,), snrs=(args.snr,),
                                 pixel_size_A=args.pixel_size or base.pixel_size_A)
    condition = make_condition(args.map, args.snr, config)
    n = config.n_test_2d
    noisy, target = condition.test.noisy[:n], condition.test.clean_ctf[:n]
    fit_data = DenoisingData(noisy=condition.train.noisy, clean_ctf=condition.train.clean_ctf,
                             clean=condition.train.clean, ctf=condition.train.ctf_grid,
                             pixel_size_A=condition.pixel_size_A)
    per_seed: dict[str, list[tuple[float, float]]] = {}
    seconds: dict[str, list[float]] = {}

    def record(name, images, fit_s):
        per_seed.setdefault(name, []).append(score(images, target))
        seconds.setdefault(name, []).append(fit_s)
        print(f"  {name}: {per_seed[name][-1][0]:.3f} dB, SSIM {per_seed[name][-1][1]:.3f}",
              flush=True)

    for seed in args.seeds:
        seeded = config.for_training_seed(seed)
        train = train_config_for(seeded, condition)
        run_dir = args.run / "work" / f"sr3_{condition.tag}_seed{seed}"
        recorded = json.loads((run_dir / "benchmark_data.json").read_text()) \
            if (run_dir / "benchmark_data.json").is_file() else None
        if recorded is not None and recorded != data_settings(condition, seeded):
            sys.exit(f"{run_dir}: trained on other data than this condition")
        denoiser = load_denoiser(run_dir, "cpu")
        print(f"seed {seed}: {run_dir}", flush=True)
        steps = config.sr3_fast_steps
        post = mse_post_config(train, steps, config.sr3_sampler, seed, draws=args.draws)
        start = time.perf_counter()
        train_samples = sampler_draws(denoiser, condition.train.noisy, post, torch.device("cpu"))
        sampling_s = time.perf_counter() - start
        test_samples = sampler_draws(
            denoiser, noisy, dataclasses.replace(post, seed=seed + TEST_DRAW_SEED_OFFSET),
            torch.device("cpu"))
        norm = denoiser.normalisation
        test_raw = norm.denormalise(test_samples)
        for label, budget, inputs, test_in, draws_used in (
                (f"sr3+pp-mse_{steps} (post_train_steps)", train.post_train_steps,
                 train_samples[:1], test_raw[0], 1),
                (f"sr3+pp-mse_{steps} (steps)", train.steps, train_samples[:1], test_raw[0], 1),
                (f"sr3 mean of {args.draws} + pp-mse (steps)", train.steps,
                 train_samples.mean(0, keepdim=True), test_raw.mean(0), args.draws)):
            start = time.perf_counter()
            net = fit_mse_postprocessor(denoiser, inputs, condition.train.noisy,
                                        condition.train.clean_ctf,
                                        dataclasses.replace(post, steps=budget), "cpu")
            # training time, with the training draws this row used
            fit_s = time.perf_counter() - start + sampling_s * draws_used / args.draws
            record(label, refine(net, denoiser, test_in, noisy), fit_s)
            record(label + " + dihedral TTA",
                   self_ensemble(lambda s, y: refine(net, denoiser, s, y), test_in, noisy), fit_s)
        for cls, loss in ((SupervisedUNet, "L2"), (SupervisedUNetL1, "L1")):
            for factor in (1, 2):
                recipe = RegressionRecipe.from_train_config(
                    dataclasses.replace(train, steps=factor * train.steps), loss.lower())
                model = cls(recipe, config=dataclasses.replace(train.postprocess,
                                                               condition_channels=0))
                start = time.perf_counter()
                model.fit(fit_data)
                fit_s = time.perf_counter() - start
                label = f"supervised {loss} ({factor}× steps)"
                record(label, model.denoise(noisy), fit_s)
                record(label + " + dihedral TTA", self_ensemble(model.denoise, noisy), fit_s)

        write(args, condition, n, per_seed, seconds)
    return 0


def write(args, condition, n, per_seed, seconds) -> None:
    """Write the rows measured so far (means over the seeds done) to ``args.out``."""
    rows = []
    for name, values in per_seed.items():
        p = [v[0] for v in values]
        s = [v[1] for v in values]
        rows.append({"method": name, "psnr": statistics.fmean(p), "ssim": statistics.fmean(s),
                     "psnr_seed_sd": statistics.stdev(p) if len(p) > 1 else None,
                     "ssim_seed_sd": statistics.stdev(s) if len(s) > 1 else None,
                     "seed_psnrs": p, "fit_seconds": statistics.fmean(seconds[name])})
    reference = []
    results = args.run / "results.json"
    if results.is_file():
        for row in json.loads(results.read_text()):
            if row.get("snr") == args.snr and row.get("psnr") is not None:
                reference.append({k: row.get(k) for k in ("method", "psnr", "ssim",
                                                          "psnr_seed_sd")})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"condition": condition.tag, "preset": args.preset,
                                    "seeds": args.seeds[:len(next(iter(per_seed.values())))],
                                    "draws": args.draws, "n_test": n,
                                    "rows": rows, "benchmark_rows": reference}, indent=1))
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
