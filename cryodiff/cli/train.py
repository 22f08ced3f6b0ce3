"""``cryodiff train``: train the conditional diffusion denoiser (and its post-processor)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cryodiff.errors import CryodiffError


def add_args(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="DIR", help="a `cryodiff simulate` output folder")
    source.add_argument("--map", metavar="PATH|phantom",
                        help="simulate training pairs on the fly from this map (or the phantom)")
    parser.add_argument("--out", required=True, metavar="RUN",
                        help="run folder (checkpoints, config.json, metrics)")
    parser.add_argument("--preset", default="ci", help="ci, cpu-small or gpu-paper (default ci)")
    parser.add_argument("--steps", type=int, help="total training steps (overrides the preset)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its latest checkpoint")
    parser.add_argument("--postprocess", action="store_true",
                        help="after training, train the post-processing U-Net")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--batch-size", type=int, help="images per step and process")
    parser.add_argument("--snr", type=float, help="SNR of pairs simulated with --map")
    parser.add_argument("--target", choices=("clean_ctf", "clean"),
                        help="clean_ctf: denoise only (default); clean: also undo the CTF")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _config(args: argparse.Namespace):
    from cryodiff.training.config import TrainConfig, get_preset, with_overrides

    saved = Path(args.out) / "config.json"
    if args.resume:
        if not saved.is_file():
            raise CryodiffError("--resume given but the run has no config.json", path=args.out)
        try:
            base = TrainConfig.from_json(saved.read_text())
        except (json.JSONDecodeError, TypeError) as error:
            raise CryodiffError(f"unreadable config ({error})", path=saved) from None
        return with_overrides(base, steps=args.steps, device=args.device)
    return with_overrides(get_preset(args.preset), steps=args.steps, device=args.device,
                          batch_size=args.batch_size, snr=args.snr, target=args.target,
                          seed=args.seed)


def main(args: argparse.Namespace) -> int:
    from cryodiff.training.config import with_overrides
    from cryodiff.training.data import open_training_data
    from cryodiff.training.loop import train
    from cryodiff.training.postprocess import train_postprocessor

    if args.data is None and args.map is None:
        raise CryodiffError("give the training data with --data DIR or --map PATH|phantom")
    config = _config(args)
    data = open_training_data(config, data_dir=args.data, map_spec=args.map)
    if data.box != config.box:
        print(f"cryodiff: the data are {data.box} px; using box {data.box} "
              f"(the preset says {config.box})")
        config = with_overrides(config, box=data.box)
    result = train(config, args.out, data, resume=args.resume, progress=not args.no_progress)
    last = next((r for r in reversed(result.metrics) if "val_psnr" in r), None)
    if last is not None:
        print(f"cryodiff: step {last['step']}: validation PSNR {last['val_psnr']:.2f} dB "
              f"(noisy input {last['val_input_psnr']:.2f} dB), SSIM {last['val_ssim']:.3f}")
    if args.postprocess:
        train_postprocessor(args.out, data, device=config.device, progress=not args.no_progress)
        print(f"cryodiff: post-processor stored in the latest checkpoint of {args.out}")
    return 0
