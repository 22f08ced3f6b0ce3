"""More starting noises averaged into the one-pass x̂₀ readout (``cpu-small``, one condition).

The readout of ``sr3v-x0ft-ssim_1`` and of the split ``x0ft_levers.py`` trains is one pass of
the fine-tuned network per view from ``y_T ~ N(0, I)``. At the noisiest level ``y_T`` holds
almost no signal (``√γ̄_T`` ≈ 1/150), so whatever the output still takes from it is noise
that averaging over several ``y_T`` (:func:`cryodiff.denoise.one_pass_x0`'s ``draws``)
removes; a regression U-Net without a noise input has nothing to average. If the error of a
``K``-draw readout is ``MSE_∞ + V/K``, two values of ``K`` give ``V``, the share of the
error that the starting noise makes.

Reads the networks ``x0ft_levers.py`` kept (``RUN_DIR/x0ft_levers_from<N>.pt``) on SR3's
step-``N`` checkpoint in ``RUN_DIR`` (or that SR3 itself, ``sr3v-x0_1``), rebuilds the
condition's test particles as the benchmark does and scores each network's readout (with the
dihedral self-ensemble, as every one-pass row) for each ``K`` on the ``n_test_2d`` test
particles: PSNR (dB), SSIM, both per image. The ``K = 1`` readout must equal the
``x0ft_levers.py`` file's row (``--check FILE``, to 10⁻⁶ dB per image). Gaps are paired over
images (± SE) against ``K = 1`` and against seed 0 of
``supervised-large-2x-ssim`` (the committed H200 run of the same particles). Nothing is
trained here.

``OMP_NUM_THREADS=1 python benchmarks/readout_draws.py data/ribosome70S/ribosome70S_65.mrc 0.1
2.0 runs/split_rib01 out.json --from-step 2000 --draws 1,4,16 [--check lever.json]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from cryodiff.benchmark.conditions import make_condition
from cryodiff.benchmark.config import get_preset
from cryodiff.benchmark.evaluate import paired_difference
from cryodiff.denoise import load_denoiser, one_pass_x0
from cryodiff.io.atomic import write_json_atomic
from cryodiff.models.unet import SR3UNet
from cryodiff.self_ensemble import self_ensemble
from x0ft_levers_table import reference_rows
from x0ft_rows import scores

NETWORKS = ("sr3v-x0_1", "x0ft", "x0ft-ssim")  # SR3 itself, the fine-tuned, the staged
PEER = "supervised-large-2x-ssim"


def draw_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",")]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--draws needs positive counts, got {text!r}")
    return counts


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("map"), parser.add_argument("snr", type=float)
    parser.add_argument("pixel_size"), parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--from-step", type=int, required=True,
                        help="the SR3 step x0ft_levers.py fine-tuned from")
    parser.add_argument("--draws", type=draw_counts, default=[1, 4, 16])
    parser.add_argument("--networks", default="x0ft-ssim",
                        help=f"comma-separated, of {', '.join(NETWORKS)}")
    parser.add_argument("--seed", type=int, default=0, help="the training seed of the run")
    parser.add_argument("--check", type=Path, help="x0ft_levers.py's file of this run")
    args = parser.parse_args(argv)
    args.networks = args.networks.split(",")
    if not set(args.networks) <= set(NETWORKS):
        parser.error(f"--networks must be of {', '.join(NETWORKS)}")
    return args


def gap(row: dict, other: dict) -> list[float]:
    mean, sem = paired_difference(torch.tensor(row["psnr_per_image"]),
                                  torch.tensor(other["psnr_per_image"]))
    return [float(mean), float(sem)]


def main(argv: list[str]) -> int:
    args = parse(argv)
    torch.set_num_threads(1)
    config = dataclasses.replace(
        get_preset("cpu-small"), maps=(args.map,), snrs=(args.snr,),
        pixel_size_A=None if args.pixel_size == "none" else float(args.pixel_size),
        training_seeds=(args.seed,), sr3_prediction="v", pose_search=False)
    condition = make_condition(args.map, args.snr, config)
    checkpoint = args.run_dir / "checkpoints" / f"step_{args.from_step:08d}.pt"
    denoiser = load_denoiser(checkpoint, "cpu")
    kept = torch.load(args.run_dir / f"x0ft_levers_from{args.from_step}.pt",
                      weights_only=True)
    n = config.n_test_2d
    noisy, target = condition.test.noisy[:n], condition.test.clean_ctf[:n]
    _, peer_rows, _ = reference_rows(f"{condition.map_name}_{args.snr:g}")  # its results folder
    peer = peer_rows[PEER]
    check = json.loads(args.check.read_text())["rows"] if args.check else None
    result = {"command": "python benchmarks/readout_draws.py " + " ".join(argv),
              "training_seed": args.seed, "device": "cpu", "rows": {}, "gaps": {}}
    for name in args.networks:
        network = denoiser.model
        if name != "sr3v-x0_1":
            network = SR3UNet(denoiser.config.model)
            network.load_state_dict(kept[name])
        read = dataclasses.replace(denoiser, model=network.eval())
        single = None
        for draws in args.draws:
            start = time.perf_counter()
            images = self_ensemble(lambda x: one_pass_x0(read, x, seed=args.seed, draws=draws),
                                   noisy)
            row = {**scores(images, target), "draws": draws,
                   "seconds": time.perf_counter() - start}
            label = f"{name} ×{draws}"
            result["rows"][label] = row
            if draws == 1:
                single = row
                if check is not None:
                    drift = (torch.tensor(row["psnr_per_image"])
                             - torch.tensor(check[name]["psnr_per_image"])).abs().max()
                    if drift > 1e-6:
                        raise SystemExit(f"{args.check}: the one-draw readout of {name} "
                                         f"differs by up to {float(drift):.2e} dB per image")
            result["gaps"][label] = {"minus_peer_seed0": gap(row, peer)}
            if single is not None:
                result["gaps"][label]["minus_one_draw"] = gap(row, single)
            print(label, round(row["psnr"], 4), round(row["ssim"], 4), result["gaps"][label],
                  f"{row['seconds']:.0f} s", flush=True)
    result["peer_seed0"] = {"psnr": peer["psnr"], "ssim": peer["ssim"]}
    write_json_atomic(args.out, result, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
