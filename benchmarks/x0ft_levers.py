"""Levers on ``sr3v-x0ft-ssim_1`` at ``cpu-small`` that keep its 8,400-step budget.

``sr3v-x0ft-ssim_1`` spends the budget of ``supervised-large-2x-ssim`` as SR3 4,000 steps
(v-prediction, SR3's L1 loss on v) + x̂₀ fine-tuning 4,000 steps (L2) + the 400-step SSIM
stage. Two levers change only how that budget is spent, for one condition and training seed:

- ``--sr3-loss l2``: SR3 trains with the squared error on v instead of L1. At the noisiest
  levels v ≈ −x₀, so L1 teaches the readout the posterior median and the fine-tuning then
  has to move it to the mean that PSNR rewards;
- ``--from-step N``: the fine-tuning starts from SR3's step-N checkpoint (this script keeps
  every one, each 500 steps; the preset keeps the last three) and trains ``8,000 − N`` steps, so fewer diffusion steps
  and more regression steps share the same total. The learning rate is constant after the
  warm-up and the EMA ramp depends on the step only, so SR3's step-N checkpoint is what an
  N-step SR3 run would have ended with; ``--sr3-stops-there`` trains a new SR3 only to
  step N (the split as one would run it). ``--from-step 0`` trains no SR3 at all: the
  fine-tuning starts from SR3's initial weights (seeded as SR3's training seeds them), a
  from-scratch regression with SR3's architecture and inputs (the noise image and level it
  is then shown are the readout's), which separates that architecture from the diffusion
  pre-training;
- ``--readout-fraction F``: one network trained once, for the whole budget (8,000 steps), on
  SR3's objective with the share ``F`` of every batch training the one-pass readout instead
  (:func:`cryodiff.diffusion.readout_rows`; ``cryodiff train --readout-fraction``), then
  the SSIM stage on a copy; no separate fine-tuning. The network still samples: its
  10-step DDPM draws (one, ``sr3v_10``, and the mean of four, ``sr3v_mean4_10``, as the
  benchmark names them) are scored beside the readout, and the calibration of its posterior
  std from eight draws (:func:`posterior_calibration`).

SR3 trains in ``RUN_DIR`` exactly as ``benchmarks/x0ft_rows.py`` trains it (its
``train_sr3_alone``: the preset's ``cpu-small`` recipe, resuming an interrupted run), with the
loss chosen and every checkpoint kept; a run folder trained with another configuration is
refused (an ``x0ft_rows.py`` or benchmark run's folder of the same loss is used as it is). The fine-tuning and the stage are the benchmark's
(:func:`cryodiff.training.x0_finetune.finetune_x0`, :func:`~cryodiff.training.x0_finetune.
x0ft_recipe`, :func:`~cryodiff.baselines.regression.ssim_stage_recipe`) with only the step
count changed. Scores the SR3 readout, the fine-tuned and the staged network on the
``n_test_2d`` test particles (PSNR dB, SSIM, both per image, for pairing with the committed
rows of the same particles; the raw particles' row checks the pairing) and writes JSON. The
fine-tuned and the staged networks' weights are kept in ``RUN_DIR/x0ft_levers_from<N>.pt``
(keys ``x0ft``, ``x0ft-ssim``) for other readouts of them (``readout_draws.py``).

``OMP_NUM_THREADS=1 python benchmarks/x0ft_levers.py phantom 0.1 none runs/lever_ph out.json
--sr3-loss l2 [--from-step 3000] [--seed 0] [--device cuda]`` (MAP SNR PIXEL_SIZE|none
RUN_DIR OUT; on ``cuda`` SR3 and the fine-tuning train in the preset's bf16 autocast, as the
benchmark's rows do there).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from cryodiff.benchmark.conditions import make_condition
from cryodiff.benchmark.config import get_preset
from cryodiff.benchmark.methods import one_pass_row, sr3_train_config, train_config_for
from cryodiff.benchmark.post_cache import training_particles
from cryodiff.denoise import Denoiser, denoise_images, load_denoiser
from cryodiff.diffusion import make_schedule
from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import atomic_path, write_json_atomic
from cryodiff.metrics import psnr
from cryodiff.training.config import TrainConfig, with_overrides
from cryodiff.training.data import Normalisation
from cryodiff.training.loop import device_label, initial_model, select_device
from cryodiff.training.x0_finetune import SSIM_WEIGHT, finetune_x0, ssim_stage_recipe, x0ft_recipe
from cryodiff.uncertainty import calibration, finite_sample_factor, fit_sigma_scale
from x0ft_rows import scores, train_sr3_alone

CALIBRATION_DRAWS = 8  # as benchmarks/calibration.py
CALIBRATION_KEYS = ("coverage_1sigma", "coverage_2sigma", "spearman", "rms_error", "rms_sigma")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("map"), parser.add_argument("snr", type=float)
    parser.add_argument("pixel_size"), parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sr3-loss", choices=("l1", "l2"), default="l1")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast there)")
    parser.add_argument("--from-step", type=int, default=None,
                        help="SR3 checkpoint step the fine-tuning starts from (default: last)")
    parser.add_argument("--sr3-stops-there", action="store_true",
                        help="train SR3 only up to --from-step (a new run folder; the split "
                             "as one would run it, without SR3's unused later steps)")
    parser.add_argument("--readout-fraction", type=float, default=0.0,
                        help="train one network for the whole budget with this share of "
                             "every batch on the one-pass readout (no fine-tuning)")
    args = parser.parse_args(argv)
    if args.sr3_stops_there and args.from_step is None:  # before the data are simulated
        parser.error("--sr3-stops-there needs --from-step")
    if args.from_step is not None and args.from_step < 0:
        parser.error("--from-step must be at least 0")
    if not 0 <= args.readout_fraction < 1:
        parser.error("--readout-fraction must be in [0, 1)")
    if args.readout_fraction and (args.from_step is not None or args.sr3_stops_there):
        parser.error("--readout-fraction trains one network for the whole budget: no "
                     "--from-step or --sr3-stops-there")
    return args


def initial_denoiser(condition, sr3_config: TrainConfig, device: str) -> Denoiser:
    """SR3's network at step 0 (the weights :func:`cryodiff.training.loop.train` starts
    from), with the normalisation its training pairs would give it."""
    model = initial_model(sr3_config).to(device).eval()
    normalisation = Normalisation.measure(condition.train.noisy.float(),
                                          condition.train.clean_ctf.float())
    return Denoiser(model, None, normalisation,
                    make_schedule(sr3_config.schedule, sr3_config.timesteps),
                    sr3_config, 0, pixel_size_A=condition.pixel_size_A)


def posterior_calibration(denoiser: Denoiser, noisy: torch.Tensor, target: torch.Tensor,
                          seed: int, device: str, draws: int = CALIBRATION_DRAWS) -> dict:
    """How far the network's per-pixel posterior std can be trusted, as
    ``benchmarks/calibration.py`` measures it: ``draws`` 10-step DDPM samples per particle
    (as ``cryodiff denoise --samples K``), σ = their std × √(1 + 1/K) against the error of
    their mean; coverage at ±1σ / ±2σ (ideal 0.683 / 0.954) and the correlation of σ with
    |error| over every particle, then the σ scale fitted on the first half of the particles
    and the coverage it gives on the second."""
    drawn = denoise_images(denoiser.model, noisy, denoiser.normalisation, denoiser.schedule,
                           steps=10, n_samples=draws, seed=seed + 1, device=device)
    error, sigma = target - drawn.mean, drawn.std * finite_sample_factor(draws)
    half = len(noisy) // 2
    scale = fit_sigma_scale(error[:half], sigma[:half])
    held_out = calibration(error[half:], scale * sigma[half:])
    return {"draws": draws, "steps": 10, "mean_psnr": float(psnr(drawn.mean.double(),
                                                                  target).mean()),
            **{key: value for key, value in dataclasses.asdict(calibration(error, sigma)).items()
               if key in CALIBRATION_KEYS},
            "scale_fitted_on_first_half": scale,
            "second_half_after_scale": {key: getattr(held_out, key)
                                        for key in CALIBRATION_KEYS}}


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:  # a wrong or absent device is refused now, not after an hour of training
        device = str(select_device(args.device, verbose=False))
    except CryodiffError as error:
        raise SystemExit(f"x0ft_levers.py: {error}") from None
    torch.set_num_threads(1)
    config = dataclasses.replace(
        get_preset("cpu-small"), maps=(args.map,), snrs=(args.snr,),
        pixel_size_A=None if args.pixel_size == "none" else float(args.pixel_size),
        training_seeds=(args.seed,), sr3_prediction="v", device=device,
        methods=("sr3", "sr3-x0ft", "sr3-x0ft-ssim"), pose_search=False)
    condition = make_condition(args.map, args.snr, config)
    sr3_config = sr3_train_config(config, condition)  # every checkpoint kept, for --from-step
    sr3_config = with_overrides(sr3_config, loss=args.sr3_loss, keep_checkpoints=-(
        -sr3_config.steps // sr3_config.checkpoint_every))
    budget_sr3_steps = sr3_config.steps  # SR3's share of sr3v-x0ft_1's budget
    base = x0ft_recipe(train_config_for(config, condition))
    budget = budget_sr3_steps + base.steps  # what SR3 + fine-tuning spend in sr3v-x0ft_1
    if args.readout_fraction:  # one network, trained for the whole budget
        sr3_config = with_overrides(sr3_config, steps=budget,
                                    readout_fraction=args.readout_fraction,
                                    keep_checkpoints=-(-budget // sr3_config.checkpoint_every))
    from_step = args.from_step if args.from_step is not None else sr3_config.steps
    start = time.perf_counter()
    if from_step == 0:  # no diffusion training: SR3's initial weights
        sr3_trained_on, denoiser = None, initial_denoiser(condition, sr3_config, device)
    else:
        if args.sr3_stops_there:
            sr3_config = with_overrides(sr3_config, steps=from_step)
        sr3_trained_on = train_sr3_alone(condition, config, args.run_dir, sr3_config)
        checkpoint = args.run_dir / "checkpoints" / f"step_{from_step:08d}.pt"
        if not checkpoint.is_file():
            raise SystemExit(f"{checkpoint}: no SR3 checkpoint at step {from_step}")
        denoiser = load_denoiser(checkpoint, device)
    sr3_seconds = time.perf_counter() - start
    recipe = dataclasses.replace(base, steps=budget - from_step)
    m = training_particles(config, condition)
    noisy_train, clean_train = condition.train.noisy[:m], condition.train.clean_ctf[:m]
    start = time.perf_counter()
    tuned = (finetune_x0(denoiser, noisy_train, clean_train, recipe) if recipe.steps
             else denoiser.model)  # --readout-fraction: the network itself
    finetune_seconds = time.perf_counter() - start
    staged = finetune_x0(denoiser, noisy_train, clean_train, ssim_stage_recipe(base),
                         ssim_weight=SSIM_WEIGHT, start=tuned)
    stage_seconds = time.perf_counter() - start - finetune_seconds
    args.run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.run_dir / f"x0ft_levers_from{from_step}.pt") as kept:
        torch.save({name: {k: v.cpu() for k, v in net.state_dict().items()}  # other readouts
                    for name, net in (("x0ft", tuned), ("x0ft-ssim", staged))}, kept)
    n = config.n_test_2d
    noisy, target = condition.test.noisy[:n], condition.test.clean_ctf[:n]
    result = {"command": "python benchmarks/x0ft_levers.py " + " ".join(argv),
              "training_seed": args.seed, "device": device_label(torch.device(device)),
              "sr3_loss": args.sr3_loss if from_step else None, "sr3_trained_on": sr3_trained_on,
              "sr3_steps": from_step, "readout_fraction": args.readout_fraction,
              "finetune_steps": recipe.steps,
              "ssim_stage_steps": ssim_stage_recipe(base).steps,
              "sr3_training_seconds_this_call": sr3_seconds,
              "finetune_seconds": finetune_seconds, "ssim_stage_seconds": stage_seconds,
              "rows": {"noisy": scores(noisy, target)}}
    for name, network in (("sr3v-x0_1", denoiser.model), ("x0ft", tuned),
                          ("x0ft-ssim", staged)):
        read = dataclasses.replace(denoiser, model=network)
        result["rows"][name] = scores(one_pass_row(read, noisy, config, None).images, target)
    if from_step:  # the diffusion network still samples (10 DDPM steps, as sr3v_10)
        for name, draws in (("sr3v_10", 1), ("sr3v_mean4_10", 4)):
            drawn = denoise_images(denoiser.model, noisy, denoiser.normalisation,
                                   denoiser.schedule, steps=10, n_samples=draws,
                                   seed=args.seed, device=device)
            result["rows"][name] = scores(drawn.mean, target)
        result["calibration"] = posterior_calibration(denoiser, noisy, target, args.seed, device)
    write_json_atomic(args.out, result, indent=1)
    print({k: (round(v["psnr"], 3), round(v["ssim"], 4)) for k, v in result["rows"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
