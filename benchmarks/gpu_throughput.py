"""Training throughput and model FLOPs utilisation (MFU) of the presets, per speed option.

    python benchmarks/gpu_throughput.py [--presets cpu-small gpu-medium gpu-paper]
        [--options eager fp32 channels-last compile cuda-graphs batch-x4 best]
        [--device cuda] [--warmup 10] [--steps 40] [--peak-tflops T] [--json out.json]

Each (preset, option) pair runs the real training loop (:func:`cryodiff.training.loop.train`)
for ``warmup`` steps (compilation, cuDNN autotuning, CUDA-graph recording) and then ``steps``
timed steps, on pairs simulated once and held in memory (so the CPU-side simulation does not
bound the GPU; ``--simulate`` draws fresh pairs every step instead, as ``--map`` training
does). Options (``OPTIONS``) override the preset: ``eager`` is the preset with neither
channels-last nor compilation, ``fp32`` turns bf16 autocast off (what bf16 gives),
``batch-x4`` quadruples the batch, ``best`` combines channels-last, CUDA graphs and the
larger batch, ``device-simulation`` simulates the pairs on the GPU (meaningful with
``--simulate``; the default option list leaves it out). MFU is training FLOPs per image
(forward + backward, counted by ``torch.utils.flop_counter`` on the meta device) × images/s
÷ the device's peak (``--peak-tflops``; default the dense bf16 peak of a known GPU:
H100/H200 989, A100 312).
Prints a Markdown table (and ``--json``); pastes go to ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch

from cryodiff.training.config import get_preset, with_overrides
from cryodiff.training.data import PairedStackData, SimulatedData
from cryodiff.training.loop import train

OPTIONS: dict[str, dict] = {
    "eager": {"channels_last": False, "compile": "none"},
    "fp32": {"channels_last": False, "compile": "none", "amp": "none"},
    "channels-last": {"channels_last": True, "compile": "none"},
    "compile": {"channels_last": False, "compile": "default"},
    "cuda-graphs": {"channels_last": False, "compile": "reduce-overhead"},
    "batch-x4": {"channels_last": False, "compile": "none", "batch_factor": 4},
    "best": {"channels_last": True, "compile": "reduce-overhead", "batch_factor": 4},
    "device-simulation": {"channels_last": False, "compile": "none", "simulate_on_device": True},
}
# Dense bf16 tensor-core peaks (TFLOP/s) by a substring of torch.cuda.get_device_name().
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def training_flops_per_image(preset: str) -> float:
    """FLOPs of one forward + backward pass of the preset's U-Net on one image (meta device:
    shapes only, nothing is computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    from cryodiff.models.unet import SR3UNet

    config = get_preset(preset)
    with torch.device("meta"):
        model = SR3UNet(config.model)
        x = torch.randn(1, 1, config.box, config.box)
        gamma = torch.rand(1)
    with FlopCounterMode(display=False) as counter:
        model(x, x, gamma).sum().backward()
    return float(counter.get_total_flops())


def peak_tflops(device: str, override: float | None) -> float | None:
    """The peak to divide by: ``override``, else the table's entry for this GPU, else None."""
    if override is not None:
        return override
    if torch.device(device).type != "cuda":
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


def measure(preset: str, option: str, device: str, warmup: int, steps: int,
            simulate: bool = False, data_cache: dict | None = None) -> dict:
    """Images/s of ``steps`` timed training steps of ``preset`` with ``option`` applied."""
    overrides = dict(OPTIONS[option])
    base = get_preset(preset)
    batch = base.batch_size * overrides.pop("batch_factor", 1)
    # Log exactly at the end of the warm-up and of the timed steps; never validate or save
    # in between (the loop validates and saves once more at the very end, after the clock).
    config = with_overrides(base, device=device, batch_size=batch, steps=warmup + steps,
                            log_every=math.gcd(warmup, steps),
                            val_every=10 ** 9, checkpoint_every=10 ** 9, n_val=8, val_steps=1,
                            **overrides)
    key = (preset, simulate)
    cache = {} if data_cache is None else data_cache
    if key not in cache:
        source = SimulatedData("phantom", config, n_normalisation=64)
        if simulate:
            cache[key] = source
        else:
            condition, target = source.fixed_pairs(max(4 * batch, 256))
            cache[key] = PairedStackData(condition, target, config)
    data = cache[key]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        result = train(config, Path(folder) / "run", data, progress=False)
        wall = time.perf_counter() - start
    timed = [r for r in result.metrics if r["step"] > warmup]
    images = sum((r["step"] - p["step"]) * batch for p, r in zip(result.metrics, timed))
    seconds = sum((r["step"] - p["step"]) * batch / r["images_per_s"]
                  for p, r in zip(result.metrics, timed))
    return {"preset": preset, "option": option, "device": device, "batch_size": batch,
            "box": config.box, "img_s": images / seconds, "wall_s": wall,
            "final_loss": result.metrics[-1]["loss"]}


def table(rows: list[dict]) -> str:
    lines = ["| preset | option | batch | img/s | × eager | GFLOP/img (fwd+bwd) | TFLOP/s | MFU |",
             "|---|---|---|---|---|---|---|---|"]
    eager = {r["preset"]: r["img_s"] for r in rows if r["option"] == "eager"}
    for r in rows:
        speedup = f"{r['img_s'] / eager[r['preset']]:.2f}" if r["preset"] in eager else ""
        mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") is not None else "—"
        lines.append(f"| {r['preset']} | {r['option']} | {r['batch_size']} | {r['img_s']:.1f} | "
                     f"{speedup} | {r['gflop_per_img']:.1f} | {r['tflop_s']:.2f} | {mfu} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["cpu-small", "gpu-medium", "gpu-paper"])
    parser.add_argument("--options", nargs="+", default=list(OPTIONS)[:-1], choices=list(OPTIONS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40, help="timed steps")
    parser.add_argument("--simulate", action="store_true",
                        help="simulate fresh pairs every step (on the CPU) instead of from memory")
    parser.add_argument("--peak-tflops", type=float, help="device peak for the MFU column")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    peak = peak_tflops(args.device, args.peak_tflops)
    rows, cache = [], {}
    for preset in args.presets:
        flops = training_flops_per_image(preset)
        for option in args.options:
            row = measure(preset, option, args.device, args.warmup, args.steps, args.simulate,
                          cache)
            row |= {"gflop_per_img": flops / 1e9, "tflop_s": flops * row["img_s"] / 1e12,
                    "mfu": flops * row["img_s"] / (peak * 1e12) if peak else None}
            rows.append(row)
            print(f"{preset} {option}: {row['img_s']:.1f} img/s", flush=True)
    device_name = (torch.cuda.get_device_name(torch.device(args.device))
                   if torch.device(args.device).type == "cuda" else f"CPU ({os.cpu_count()} cores)")
    print(f"\n{device_name}, torch {torch.__version__}, peak {peak or 'unknown'} TFLOP/s, "
          f"{args.warmup} warm-up + {args.steps} timed steps, "
          f"{'simulated' if args.simulate else 'in-memory'} pairs\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
