"""``cryodiff train``: train the conditional diffusion denoiser (and its post-processor)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cryodiff.cli.arguments import (device, nonnegative_float, nonnegative_int, positive_float,
                                    positive_int)
from cryodiff.errors import CryodiffError


def add_args(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="DIR", help="a `cryodiff simulate` output folder")
    source.add_argument("--map", metavar="PATH|phantom",
                        help="simulate training pairs on the fly from this map (or the phantom)")
    parser.add_argument("--out", required=True, metavar="RUN",
                        help="run folder (checkpoints, config.json, metrics)")
    parser.add_argument("--preset", default="ci",
                        help="ci, cpu-small, gpu-medium or gpu-paper (default ci)")
    parser.add_argument("--steps", type=positive_int,
                        help="total training steps (overrides the preset)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its latest checkpoint")
    parser.add_argument("--postprocess", action="store_true",
                        help="after training, train the post-processing U-Net (the paper's: "
                             "`cryodiff denoise --method sr3+pp`)")
    pm = parser.add_argument_group("sr3-pm: the mean of K samples, refined (best PSNR)")
    pm.add_argument("--pm-postprocess", action="store_true",
                    help="after training, train the post-processor of the mean of K samples "
                         "(`cryodiff denoise --method sr3-pm`; costs about as much as the "
                         "training itself)")
    pm.add_argument("--pm-draws", type=positive_int, metavar="K",
                    help="samples averaged per particle (default 4)")
    pm.add_argument("--pm-particles", type=positive_int, metavar="N",
                    help="training particles it learns from (default: all of --data; the "
                         "preset's post_n_samples with --map)")
    pm.add_argument("--pm-steps", type=positive_int, metavar="N",
                    help="its training steps (default: the run's --steps)")
    x0ft = parser.add_argument_group("x0ft: a v-model's one-pass x̂₀, fine-tuned (one pass "
                                     "per view)")
    x0ft.add_argument("--x0-finetune", action="store_true",
                      help="after training a v-predicting model (--prediction v), fine-tune "
                           "a copy of its network for its one-pass x̂₀ (`cryodiff denoise "
                           "--method x0ft`; costs about as much as the training itself)")
    x0ft.add_argument("--x0-particles", type=positive_int, metavar="N",
                      help="training particles it learns from (default: all of --data; the "
                           "preset's post_n_samples with --map)")
    x0ft.add_argument("--x0-steps", type=positive_int, metavar="N",
                      help="its fine-tuning steps (default: the run's --steps)")
    x0ft.add_argument("--x0-ssim", action="store_true",
                      help="then train it on for a tenth more steps with an SSIM term beside "
                           "the squared error (a flatter background: higher SSIM at the same "
                           "PSNR; the benchmark's sr3v-x0ft-ssim_1)")
    parser.add_argument("--device", type=device, help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--batch-size", type=positive_int, help="images per step and process")
    parser.add_argument("--snr", type=positive_float, help="SNR of pairs simulated with --map")
    parser.add_argument("--target", choices=("clean_ctf", "clean"),
                        help="clean_ctf: denoise only (default); clean: also undo the CTF")
    parser.add_argument("--seed", type=nonnegative_int)
    parser.add_argument("--prediction", choices=("eps", "v"),
                        help="what the network learns to output: eps (ε, the paper's; "
                             "default) or v (√γ̄·ε − √(1−γ̄)·clean, which keeps the noisiest "
                             "levels informative about the clean image)")
    parser.add_argument("--readout-fraction", type=nonnegative_float, metavar="F",
                        help="with --prediction v: that share of every batch (in [0, 1)) trains "
                             "the one-pass x̂₀ readout with the squared error, so the network "
                             "both samples and reads out the posterior mean (`cryodiff "
                             "denoise --method x0`); default 0, SR3's objective")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--compile", choices=("none", "default", "reduce-overhead", "max-autotune"),
                        help="torch.compile the training step (reduce-overhead: CUDA graphs, "
                             "for small models on a GPU); default none")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="NHWC memory layout (faster convolutions on tensor-core GPUs)")
    parser.add_argument("--simulate-on-device", action=argparse.BooleanOptionalAction,
                        default=None, help="with --map: simulate the pairs on the GPU")
    like = parser.add_argument_group("matched to real particles")
    like.add_argument("--like", metavar="STAR",
                      help="first simulate pairs like these real particles from --map (an MRC "
                      "map) into RUN/data (`cryodiff simulate --like`), then train on them")
    like.add_argument("--n", type=int, default=2000, metavar="N",
                      help="particles to simulate with --like (default 2000)")
    like.add_argument("--particle-diameter", type=float, metavar="A",
                      help="particle diameter in Å (noise from the background: STAR without poses)")
    like.add_argument("--map-pixel-size", type=float, metavar="A",
                      help="pixel size of --map in Å (overrides its header)")


def _config(args: argparse.Namespace):
    from cryodiff.training.config import TrainConfig, get_preset, with_overrides

    saved = Path(args.out) / "config.json"
    if args.resume:
        if not saved.is_file():
            raise CryodiffError("--resume given but the run has no config.json", path=args.out)
        try:
            base = TrainConfig.from_json(saved.read_text())
        except (json.JSONDecodeError, TypeError, CryodiffError) as error:
            raise CryodiffError(f"unreadable config ({error})", path=saved) from None
        if args.readout_fraction not in (None, base.readout_fraction):
            raise CryodiffError(f"the run's readout fraction is {base.readout_fraction}; "
                                "--readout-fraction cannot change it on --resume", path=saved)
        if args.prediction not in (None, base.model.prediction):
            raise CryodiffError(f"the run predicts {base.model.prediction}; --prediction "
                                f"{args.prediction} cannot change it on --resume", path=saved)
        return with_overrides(base, steps=args.steps, device=args.device, compile=args.compile,
                              channels_last=args.channels_last,
                              simulate_on_device=args.simulate_on_device)
    return with_overrides(get_preset(args.preset), steps=args.steps, device=args.device,
                          batch_size=args.batch_size, snr=args.snr, target=args.target,
                          seed=args.seed, compile=args.compile,
                          channels_last=args.channels_last,
                          simulate_on_device=args.simulate_on_device,
                          prediction=args.prediction, readout_fraction=args.readout_fraction)


def _simulate_like(args: argparse.Namespace) -> Path:
    """RUN/data simulated like ``--like`` (kept when resuming a run that already has it)."""
    from cryodiff.simulate_like import simulate_like

    if args.map is None or args.map == "phantom":
        raise CryodiffError("--like needs --map: an MRC map of the particles' molecule")
    if args.n < 1:
        raise CryodiffError(f"--n must be a positive number of particles, got {args.n}")
    data_dir = Path(args.out) / "data"
    if args.resume and (data_dir / "simulation.json").is_file():
        return data_dir
    simulate_like(args.like, args.map, data_dir, args.n, seed=args.seed or 0,
                  particle_diameter_A=args.particle_diameter,
                  map_pixel_size_A=args.map_pixel_size, progress=not args.no_progress)
    return data_dir


def main(args: argparse.Namespace) -> int:
    from cryodiff.training.config import with_overrides
    from cryodiff.training.data import open_training_data
    from cryodiff.training.loop import train
    from cryodiff.training.postprocess import train_postprocessor

    if args.data is None and args.map is None:
        raise CryodiffError("give the training data with --data DIR or --map PATH|phantom")
    pm_options = [flag for flag, value in (("--pm-draws", args.pm_draws),
                                           ("--pm-particles", args.pm_particles),
                                           ("--pm-steps", args.pm_steps)) if value is not None]
    if pm_options and not args.pm_postprocess:
        raise CryodiffError(f"{', '.join(pm_options)} set the sr3-pm post-processor: add "
                            "--pm-postprocess")
    x0_options = [flag for flag, value in (("--x0-particles", args.x0_particles),
                                           ("--x0-steps", args.x0_steps),
                                           ("--x0-ssim", args.x0_ssim or None))
                  if value is not None]
    if x0_options and not args.x0_finetune:
        raise CryodiffError(f"{', '.join(x0_options)} set the x̂₀ fine-tuning: add "
                            "--x0-finetune")
    from cryodiff.io.outputs import check_outputs

    check_outputs(folder=args.out)
    config = _config(args)
    if args.x0_finetune and config.model.prediction != "v":
        raise CryodiffError("--x0-finetune needs a v-predicting model: train with --prediction v")
    if args.like is not None:
        data = open_training_data(config, data_dir=_simulate_like(args))
    else:
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
    if args.pm_postprocess:
        from cryodiff.training.pm_postprocess import (DEFAULT_DRAWS, pm_summary,
                                                      train_pm_postprocessor)

        metrics = train_pm_postprocessor(args.out, data, draws=args.pm_draws or DEFAULT_DRAWS,
                                         particles=args.pm_particles, steps=args.pm_steps,
                                         device=config.device, progress=not args.no_progress)
        print(f"cryodiff: sr3-pm post-processor stored in the latest checkpoint of "
              f"{args.out}; {pm_summary(metrics)}")
    if args.x0_finetune:
        from cryodiff.training.x0_finetune import train_x0_finetune, x0ft_summary

        metrics = train_x0_finetune(args.out, data, particles=args.x0_particles,
                                    steps=args.x0_steps, ssim_stage=args.x0_ssim,
                                    device=config.device, progress=not args.no_progress)
        print(f"cryodiff: fine-tuned x̂₀ network stored in the latest checkpoint of "
              f"{args.out}; {x0ft_summary(metrics)}")
    return 0
