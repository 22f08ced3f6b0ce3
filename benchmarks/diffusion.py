"""Diffusion benchmark: training and denoising throughput of the presets, and the
post-processor goal.

    python benchmarks/diffusion.py speed [--presets ci cpu-small] [--train-steps 20]
    python benchmarks/diffusion.py goal RUN [--n 64] [--many 250] [--few 10]
        [--train-preset cpu-small [--train-steps N] [--post-n-samples N] [--post-train-steps N]]

``speed`` measures, per preset, the model sizes, training images/s (the real training loop
on pairs simulated on the fly, after one warm-up step) and denoising images·steps/s of the EMA
U-Net (DDIM, batch 64) plus the post-processor's images/s — wall clock and CPU time, with the
load average, since other jobs may share the machine. ``goal`` evaluates a trained run
(``cryodiff train --map phantom --preset cpu-small --postprocess``, or trained here with
``--train-preset``) on its held-out
particles: PSNR of ``few`` steps of ``--sampler`` (DDPM by default) + post-processor against
``many`` steps without it
(the issue's goal: within 0.2 dB). Both print Markdown to paste into
benchmarks/results/diffusion.md (``--json`` also writes the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from cryodiff.denoise import denoise_images, load_denoiser
from cryodiff.diffusion import make_schedule
from cryodiff.models.postprocess import PostProcessUNet
from cryodiff.training.config import get_preset, with_overrides
from cryodiff.training.data import SimulatedData
from cryodiff.training.evaluate import psnr_vs_steps
from cryodiff.training.loop import train
from cryodiff.training.postprocess import train_postprocessor


def _clock() -> tuple[float, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # GPU work launched before the clock is read counts
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def _parameters(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def speed(preset: str, train_steps: int, n_denoise: int, denoise_steps: int,
          device: str = "cpu") -> dict:
    """Throughput of one preset on ``device`` (see the module docstring)."""
    config = with_overrides(get_preset(preset), device=device, steps=train_steps + 1,
                            log_every=train_steps + 1, val_every=10 ** 9,
                            checkpoint_every=10 ** 9)
    data = SimulatedData("phantom", config, n_normalisation=64)
    with tempfile.TemporaryDirectory() as folder:
        warm = with_overrides(config, steps=1)
        train(warm, Path(folder) / "warm", data, progress=False)
        start = _clock()
        result = train(config, Path(folder) / "run", data, progress=False)
        wall, cpu = _since(start)
    # The first step of this run is another warm-up; the loop's own counter covers all steps.
    train_wall = result.metrics[-1]["elapsed_s"]
    images = config.batch_size * (train_steps + 1)
    ema = result.ema.eval().to(device)
    post = PostProcessUNet(config.postprocess).eval().to(device)
    noisy = data.fixed_pairs(n_denoise)[0]
    schedule = make_schedule(config.schedule, config.timesteps)
    denoise_images(ema, noisy[:4], data.normalisation, schedule, steps=1,
                   device=device)  # warm-up
    start = _clock()
    denoise_images(ema, noisy, data.normalisation, schedule, steps=denoise_steps,
                   sampler="ddim", batch_size=64, device=device)
    den_wall, den_cpu = _since(start)
    with torch.no_grad():
        x = data.normalisation.condition(noisy)[:, None].to(device)
        post(x[:4], x[:4])
        start = _clock()
        for i in range(0, len(x), 64):
            post(x[i:i + 64], x[i:i + 64])
        post_wall, _ = _since(start)
    return {
        "preset": preset, "device": device, "box": config.box, "batch_size": config.batch_size,
        "unet_M": _parameters(ema), "post_M": _parameters(post),
        "train_img_s": images / train_wall, "train_cpu_s_per_img": cpu / images,
        "train_wall_s": wall,
        "denoise_img_steps_s": n_denoise * denoise_steps / den_wall,
        "denoise_cpu_ms_per_img_step": 1000 * den_cpu / (n_denoise * denoise_steps),
        "post_img_s": n_denoise / post_wall,
        "preset_steps": get_preset(preset).steps,
        "preset_train_estimate_min": get_preset(preset).steps * get_preset(preset).batch_size
        / (images / train_wall) / 60,
    }


def speed_table(rows: list[dict]) -> str:
    lines = ["| preset | device | box | U-Net (M params) | post-proc. (M) | training img/s | "
             "training CPU s/img | denoising img·steps/s | CPU ms per img·step | "
             "post-proc. img/s | preset training (est. min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['device']} | {r['box']} | {r['unet_M']:.2f} | {r['post_M']:.2f} | "
            f"{r['train_img_s']:.1f} | {r['train_cpu_s_per_img']:.3f} | "
            f"{r['denoise_img_steps_s']:.0f} | {r['denoise_cpu_ms_per_img_step']:.2f} | "
            f"{r['post_img_s']:.0f} | {r['preset_train_estimate_min']:.1f} "
            f"({r['preset_steps']} steps × {r['batch_size']}) |")
    return "\n".join(lines)


def train_run(run: str, preset: str, steps: int | None, post_n_samples: int | None,
              post_train_steps: int | None, device: str = "cpu") -> None:
    """Train ``preset`` (optionally shortened) on the fly from the phantom into ``run``, then
    its post-processor — what ``cryodiff train --map phantom --postprocess`` does."""
    config = with_overrides(get_preset(preset), steps=steps, device=device,
                            post_n_samples=post_n_samples, post_train_steps=post_train_steps)
    data = SimulatedData("phantom", config)
    train(config, run, data, progress=False)
    train_postprocessor(run, data, device=device, progress=False)


def goal(run: str, n: int, many: int, few: int, sampler: str = "ddpm",
         device: str = "cpu") -> dict:
    """PSNR on the run's held-out particles: ``few`` steps + post-processor vs ``many`` without."""
    denoiser = load_denoiser(run, device=device)
    if denoiser.postprocessor is None:
        raise SystemExit(f"{run}: the run has no post-processor (train with --postprocess)")
    data = SimulatedData("phantom", denoiser.config, n_normalisation=8)
    noisy, clean = data.val_condition[:n], data.val_target[:n]
    start = _clock()
    sweep_few = psnr_vs_steps(denoiser, noisy, clean, steps=(few,), sampler=sampler)
    few_wall, _ = _since(start)
    start = _clock()
    sweep_many = psnr_vs_steps(denoiser, noisy, clean, steps=(many,), sampler=sampler)
    many_wall, _ = _since(start)
    return {"run": run, "sampler": sampler, "device": device, "step": denoiser.step, "n": len(noisy), "noisy": sweep_few.noisy,
            f"plain_{few}": sweep_few.plain[few], f"post_{few}": sweep_few.postprocessed[few],
            f"plain_{many}": sweep_many.plain[many],
            f"post_{many}": sweep_many.postprocessed[many],
            "gap_db": sweep_many.plain[many] - sweep_few.postprocessed[few],
            "few_wall_s": few_wall, "many_wall_s": many_wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p_speed = sub.add_parser("speed")
    p_speed.add_argument("--presets", nargs="+", default=["ci", "cpu-small"])
    p_speed.add_argument("--train-steps", type=int, default=20)
    p_speed.add_argument("--n-denoise", type=int, default=64)
    p_speed.add_argument("--denoise-steps", type=int, default=5)
    p_goal = sub.add_parser("goal")
    p_goal.add_argument("run")
    p_goal.add_argument("--n", type=int, default=64)
    p_goal.add_argument("--many", type=int, default=250)
    p_goal.add_argument("--few", type=int, default=10)
    p_goal.add_argument("--train-preset", help="first train this preset into RUN")
    p_goal.add_argument("--train-steps", type=int, help="shorten the preset's training")
    p_goal.add_argument("--post-n-samples", type=int)
    p_goal.add_argument("--post-train-steps", type=int)
    for p in (p_speed, p_goal):
        p.add_argument("--json", type=Path, help="also write the numbers here")
        p.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    p_goal.add_argument("--sampler", default="ddpm", choices=("ddpm", "ddim"))
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    header = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{os.cpu_count()} CPUs, load average {load_before:.1f} before")
    if args.mode == "speed":
        rows = [speed(p, args.train_steps, args.n_denoise, args.denoise_steps, args.device)
                for p in args.presets]
        out: dict | list = rows
        text = speed_table(rows)
    else:
        if args.train_preset:
            train_run(args.run, args.train_preset, args.train_steps, args.post_n_samples,
                      args.post_train_steps, args.device)
        out = goal(args.run, args.n, args.many, args.few, args.sampler, args.device)
        text = "\n".join(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |"
                         for k, v in out.items())
        text = "| quantity | value |\n|---|---|\n" + text
    print(f"{header}, {os.getloadavg()[0]:.1f} after\n")
    print(text)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
