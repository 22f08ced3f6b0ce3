"""SR3 + an L2/EMA post-processor and the one-pass x̂₀ against the paper's SR3 + post-processor
and the supervised U-Net, over training seeds, on one `ci` condition.

    OMP_NUM_THREADS=1 python benchmarks/sr3_mse_pp.py [--work runs/calibration_ci]
        [--map phantom] [--snr 0.1] [--seeds 0 1 2] [--out benchmarks/results/sr3_mse_pp_ci.md]

The condition's data (benchmark seed 0: the same train / validation / test particles for every
seed) is simulated once; for every training seed SR3 + its paper-faithful post-processor
(``train_sr3``, as ``cryodiff benchmark --preset ci`` trains them; seed 0 reuses
``benchmarks/calibration.py``'s run in the same work folder), the supervised U-Net and the new
post-processor are trained with that seed, and all rows are scored on the first 64 test
particles (PSNR / SSIM against the clean image with CTF). Reports the mean over seeds, the
spread (sample std and min–max), and each row's paired gap to the supervised U-Net.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from cryodiff.benchmark.conditions import make_condition
from cryodiff.benchmark.config import get_preset
from cryodiff.benchmark.methods import MethodOutput, run_baseline, run_sr3, train_sr3
from cryodiff.benchmark.sr3_mse import run_sr3_mse
from cryodiff.denoise import one_pass_x0
from cryodiff.io.atomic import write_text_atomic
from cryodiff.metrics import psnr, ssim
from cryodiff.training.postprocess_mse import MsePostConfig

RIBOSOME_PIXEL_SIZE_A = 2.0


def scores_for_seed(condition, base, seed: int, work: Path, post_steps: int) -> dict:
    config = base.for_training_seed(seed)  # the data keep the base's seed
    run_dir = work / f"sr3_{condition.tag}_seed{seed}"
    start = time.perf_counter()
    denoiser, _ = train_sr3(condition, config, run_dir, progress=False)
    rows = run_sr3(denoiser, condition, config)
    rows += run_sr3_mse(denoiser, condition,
                        dataclasses.replace(config, post_train_steps=post_steps), rows)
    n = config.n_test_2d
    rows.append(MethodOutput("sr3-x0_1", "sr3-x0", one_pass_x0(
        denoiser, condition.test.noisy[:n], seed=seed), note="one network pass: x̂₀ from pure "
        "noise at the noisiest level"))
    rows.append(run_baseline("supervised", condition, config, torch.device("cpu"),
                             cache_dir=work / f"seed{seed}"))
    truth = condition.test.clean_ctf
    out = {}
    for row in rows:
        if row.images is None:
            print(f"seed {seed}: {row.method} {row.status}: {row.note}")
            continue
        n = len(row.images)
        out[row.method] = {"psnr": psnr(row.images, truth[:n]).tolist(),
                           "ssim": ssim(row.images, truth[:n]).tolist(), "note": row.note}
    print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return out


def summary(per_seed: dict[int, dict]) -> list[dict]:
    methods = list(next(iter(per_seed.values())))
    rows = []
    for method in methods:
        psnrs = [statistics.fmean(s[method]["psnr"]) for s in per_seed.values()]
        ssims = [statistics.fmean(s[method]["ssim"]) for s in per_seed.values()]
        gaps = [statistics.fmean(a - b for a, b in zip(s[method]["psnr"], s["supervised"]["psnr"]))
                for s in per_seed.values()]
        rows.append({"method": method, "psnr": psnrs, "ssim": ssims, "gap_supervised": gaps,
                     "note": next(iter(per_seed.values()))[method]["note"]})
    return rows


def _ms(values: list[float], digits: int) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f} "
            f"[{min(values):.{digits}f}, {max(values):.{digits}f}]")


def markdown(rows: list[dict], args, minutes: float, n: int) -> str:
    lines = [f"# SR3 with an L2 + EMA post-processor (`ci`, {args.map}, SNR {args.snr:g})", "",
             f"`OMP_NUM_THREADS=1 python benchmarks/sr3_mse_pp.py --map {args.map} --snr "
             f"{args.snr:g} --seeds {' '.join(map(str, args.seeds))}` ({minutes:.1f} min "
             "wall, sharing 2 CPU cores with other jobs). Same simulated data for every seed; "
             f"the seed changes every trained method's initialisation and batches. {n} "
             "held-out test particles. Mean ± sample std over seeds [min, max]; the gap is "
             "the per-particle PSNR difference to the supervised U-Net of the same seed, "
             "averaged.", "",
             "| method | PSNR (dB) | SSIM | PSNR − supervised (dB) | what |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {_ms(r['psnr'], 2)} | {_ms(r['ssim'], 3)} "
                     f"| {_ms(r['gap_supervised'], 2)} | {r['note']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/calibration_ci")
    parser.add_argument("--map", default="phantom")
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--post-steps", type=int, default=MsePostConfig().steps)
    parser.add_argument("--out", default="benchmarks/results/sr3_mse_pp_ci.md")
    args = parser.parse_args()
    # The calibration benchmark's settings, so seed 0 reuses its trained SR3.
    pixel_size_A = None if args.map == "phantom" else RIBOSOME_PIXEL_SIZE_A
    base = dataclasses.replace(get_preset("ci"), maps=(args.map,), snrs=(args.snr,),
                               pixel_size_A=pixel_size_A,
                               n_test_3d=128, device="cpu", sr3_steps=(10,), methods_3d=())
    condition = make_condition(args.map, args.snr, base)
    work = Path(args.work)
    start = time.perf_counter()
    per_seed = {}
    for seed in args.seeds:
        per_seed[seed] = scores_for_seed(condition, base, seed, work, args.post_steps)
        write_text_atomic(work / f"sr3_mse_pp_{condition.tag}.json", json.dumps(per_seed))
    rows = summary(per_seed)
    text = markdown(rows, args, (time.perf_counter() - start) / 60, base.n_test_2d)
    write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
