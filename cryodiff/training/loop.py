"""The diffusion training loop: device choice, AMP, EMA, warm-up, clipping, DDP, resume.

Every random draw of step ``s`` on rank ``r`` comes from streams seeded with
``(seed, s, r)`` (batch, augmentation, diffusion noise, dropout), so the run is a pure
function of its configuration: resuming from a checkpoint at step ``s`` reproduces the
losses and weights of an uninterrupted run exactly (on the same hardware and thread count).

With ``WORLD_SIZE > 1`` in the environment (``torchrun``) the process group is initialised
from the environment (gloo on CPU, NCCL on CUDA), the model is wrapped in
``DistributedDataParallel``, each rank draws its shard of the global batch, and only rank 0
writes files. On-disk pairs, their augmentation and the diffusion noise are drawn for the
global batch and sharded (rank ``r`` takes rows ``r, r + world, …``), so with dropout 0
``N`` processes of batch ``B`` follow one process of batch ``N·B`` up to rounding
(``tests/test_ddp.py``); pairs simulated on the fly and dropout masks are drawn per rank.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from cryodiff.diffusion import diffusion_loss, make_schedule
from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import write_json_atomic, write_text_atomic
from cryodiff.models.unet import SR3UNet
from cryodiff.threads import adapt_threads
from cryodiff.training import checkpoint as ckpt
from cryodiff.training.config import TrainConfig
from cryodiff.training.data import (PURPOSE_DROPOUT, PURPOSE_INIT, PURPOSE_NOISE, Normalisation,
                                    SimulatedData, TrainingData, generator_for, stream_seed)

METRIC_COLUMNS = ("step", "loss", "lr", "images_per_s", "elapsed_s",
                  "val_psnr", "val_ssim", "val_input_psnr")


def select_device(name: str = "auto", verbose: bool = True) -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; an explicit name is checked."""
    if name == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise CryodiffError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise CryodiffError(f"device {name!r} requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise CryodiffError(f"device {name!r} requested but MPS is not available")
    if verbose:
        detail = (f"{torch.get_num_threads()} threads" if device.type == "cpu"
                  else hardware_name(device))
        print(f"cryodiff: training on {device} ({detail})")
    return device


def hardware_name(device: torch.device) -> str | None:
    """The model of a GPU (``"NVIDIA H200"``, ``"Apple GPU"``); None for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "Apple GPU" if device.type == "mps" else None


def device_label(device: torch.device) -> str:
    """What a benchmark row records as its ``device``: the device type, with the GPU's model
    in brackets (``"cuda (NVIDIA H200)"``), so that tables from two GPU models are not
    mixed unnoticed."""
    name = hardware_name(device)
    return f"{device.type} ({name})" if name else device.type


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (``None``: full precision)."""
    if amp == "none" or device.type != "cuda":
        return None
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistributedContext:
    """Join the process group described by torchrun's environment, if ``WORLD_SIZE > 1``."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size())


def initial_model(config: TrainConfig) -> SR3UNet:
    """SR3's U-Net with the weights every run of ``config`` starts from (seeded by
    ``config.seed``; on the CPU, in train mode)."""
    torch.manual_seed(stream_seed(config.seed, PURPOSE_INIT))
    return SR3UNet(config.model)


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay ramped as ``min(decay, (1 + s) / (10 + s))`` (early weights fade fast)."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``ema ← decay·ema + (1 − decay)·model`` for parameters; buffers are copied."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def warmup_lr(lr: float, step: int, warmup_steps: int) -> float:
    """Learning rate of step ``step`` (0-based): a linear warm-up to ``lr`` over
    ``warmup_steps`` steps (0: none), then constant. Every learnt method uses it."""
    return lr * min(1.0, (step + 1) / max(warmup_steps, 1))


def _lr_at(step: int, config: TrainConfig) -> float:
    return warmup_lr(config.lr, step, config.warmup_steps)


def optimiser_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, model: torch.nn.Module, grad_clip: float,
                   ema: torch.nn.Module | None = None, step: int = 0,
                   ema_decay: float = 0.0) -> None:
    """One update of the shared recipe: backward through ``scaler`` (a GradScaler, disabled
    unless fp16), gradient-norm clipping at ``grad_clip`` (0: none), the optimiser step, and
    the EMA of ``model`` into ``ema`` at :func:`ema_decay_at` of ``step``."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    if ema is not None:
        update_ema(ema, model, ema_decay_at(step, ema_decay))


@dataclass
class TrainResult:
    """What :func:`train` leaves behind: the run folder, final step, metrics rows, models."""

    run_dir: Path
    step: int
    metrics: list[dict[str, Any]]
    checkpoint: Path | None
    model: torch.nn.Module = field(repr=False)
    ema: torch.nn.Module = field(repr=False)
    normalisation: Normalisation | None = None


def _write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    write_json_atomic(run_dir / "metrics.json", rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(run_dir / "metrics.csv", buffer.getvalue())


def _resumable(saved: TrainConfig, config: TrainConfig) -> bool:
    """A run may be resumed with a different length, device, precision, speed options or
    number of checkpoints kept."""
    free = {"steps": config.steps, "device": config.device, "amp": config.amp,
            "channels_last": config.channels_last, "compile": config.compile,
            "simulate_on_device": config.simulate_on_device,
            "keep_checkpoints": config.keep_checkpoints}
    return saved.to_dict() | free == config.to_dict() | free


def validate(ema: torch.nn.Module, data: TrainingData, normalisation: Normalisation,
             config: TrainConfig, device: torch.device) -> dict[str, float]:
    """Validation PSNR/SSIM (dB, SSIM) of the EMA model with ``config.val_steps`` sampling
    steps, and the PSNR of the noisy input, on the held-out particles."""
    from cryodiff.denoise import denoise_images
    from cryodiff.metrics import psnr, ssim

    out = denoise_images(ema, data.val_condition, normalisation, make_schedule(config.schedule, config.timesteps),
                         steps=config.val_steps, sampler=config.val_sampler, seed=config.seed,
                         device=device, batch_size=max(config.batch_size, 32))
    target = data.val_target
    return {"val_psnr": float(psnr(out.mean, target).mean()),
            "val_ssim": float(ssim(out.mean, target).mean()),
            "val_input_psnr": float(psnr(data.val_condition, target).mean())}


def train(config: TrainConfig, run_dir: str | os.PathLike, data: TrainingData, *,
          resume: bool = False, stop_at: int | None = None, progress: bool = True,
          on_log: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train the SR3 U-Net on ``data`` into ``run_dir`` for ``config.steps`` steps.

    ``resume`` continues from the run's latest checkpoint (its configuration must match
    ``config`` except for the length, device, precision, speed options and number of
    checkpoints kept: :func:`_resumable`). ``stop_at`` ends the loop after
    that many steps without a final checkpoint, as if the run had been killed (used by the
    resume test). ``on_log(row)`` sees each metrics row (the notebook's live loss plot).
    Writes ``config.json``, ``metrics.csv``/``metrics.json`` and ``checkpoints/``.
    """
    run_dir = Path(run_dir)
    ctx = init_distributed(config.device)
    device = select_device(config.device, verbose=ctx.is_main)
    schedule = make_schedule(config.schedule, config.timesteps).to(device)
    if config.simulate_on_device and isinstance(data, SimulatedData):
        data.use_device(device)
    model = initial_model(config).to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    # One fused kernel for the whole update on CUDA instead of a dozen per parameter group.
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay,
                                  **({"fused": True} if device.type == "cuda" else {}))
    normalisation = data.normalisation
    start, rows = 0, []
    if resume:
        latest = ckpt.latest_checkpoint(run_dir)
        if latest is None:
            raise CryodiffError("--resume given but the run has no checkpoint", path=run_dir)
        state = ckpt.load_checkpoint(latest, map_location=device)
        saved = TrainConfig.from_json(state["config"])
        if not _resumable(saved, config):
            raise CryodiffError("the run was started with a different configuration; resume "
                                "with the same preset and options (only --steps may change)",
                                path=latest)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        normalisation = Normalisation.from_dict(state["normalisation"])
        ckpt.set_rng_state(state["rng"])
        start = int(state["step"])
        metrics_file = run_dir / "metrics.json"
        if metrics_file.is_file():
            rows = [r for r in json.loads(metrics_file.read_text()) if r["step"] <= start]
    elif ctx.is_main and ckpt.latest_checkpoint(run_dir) is not None:
        raise CryodiffError("run folder already holds checkpoints; use --resume or a new --out",
                            path=run_dir)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "config.json", config.to_dict())

    raw_model = model
    if ctx.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    step_model = model if config.compile == "none" else torch.compile(model, mode=config.compile)
    amp_dtype = autocast_dtype(config.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                else nullcontext())

    def save(step: int) -> Path:
        path = ckpt.save_checkpoint(ckpt.checkpoint_path(run_dir, step), {
            "step": step, "config": config.to_json(), "normalisation": normalisation.to_dict(),
            "model": raw_model.state_dict(), "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(), "rng": ckpt.rng_state(),
            **({"pixel_size_A": float(data.pixel_size_A)}
               if getattr(data, "pixel_size_A", None) is not None else {})})
        ckpt.prune_checkpoints(run_dir, config.keep_checkpoints)
        return path

    end = config.steps if stop_at is None else min(stop_at, config.steps)
    bar = tqdm(total=config.steps, initial=start, disable=not (progress and ctx.is_main),
               desc="training", unit="step", dynamic_ncols=True)
    # elapsed_s counts training time across resumes: it goes on from the last kept row.
    elapsed_before = float(rows[-1]["elapsed_s"]) if rows else 0.0
    # The window's loss stays on the device until it is logged: reading it every step would
    # make the CPU wait for the GPU, which bounds small models by launch latency.
    window_loss = torch.zeros((), device=device)
    window_steps, window_start, t0 = 0, time.perf_counter(), time.perf_counter()
    last_checkpoint = None
    model.train()
    for step in range(start, end):
        adapt_threads(device)  # a busy process may have started since the last step
        condition, target = data.train_batch(step, config.batch_size, ctx.rank, ctx.world)
        condition = normalisation.condition(condition)[:, None].to(
            device, non_blocking=True, memory_format=memory_format)
        target = normalisation.target(target)[:, None].to(
            device, non_blocking=True, memory_format=memory_format)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        # Dropout draws from the global generator: reseed it per step so resume is exact.
        torch.manual_seed(stream_seed(config.seed, PURPOSE_DROPOUT, step, ctx.rank))
        with autocast:
            loss = diffusion_loss(step_model, target, condition, schedule, config.loss,
                                  generator_for(config.seed, PURPOSE_NOISE, step, 0),
                                  shard=(ctx.rank, ctx.world),
                                  prediction=config.model.prediction,
                                  readout_fraction=config.readout_fraction)
        optimiser_step(loss, optimizer, scaler, raw_model, config.grad_clip, ema, step,
                       config.ema_decay)
        window_loss += loss.detach().float()
        window_steps += 1
        done = step + 1
        bar.update(1)
        if done % config.log_every == 0 or done == config.steps:
            mean_loss = window_loss / window_steps  # on the device: NCCL reduces CUDA tensors
            if ctx.world > 1:
                dist.all_reduce(mean_loss)
                mean_loss /= ctx.world
            loss_value = float(mean_loss)  # waits for the window's GPU work, timed below
            now = time.perf_counter()
            row = {"step": done, "loss": loss_value, "lr": _lr_at(step, config),
                   "images_per_s": window_steps * config.batch_size * ctx.world
                   / max(now - window_start, 1e-9),
                   "elapsed_s": elapsed_before + now - t0}
            if ctx.is_main and (done % config.val_every == 0 or done == config.steps):
                row |= validate(ema, data, normalisation, config, device)
            bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.1f}")
            if ctx.is_main:
                rows.append(row)
                _write_metrics(run_dir, rows)
                if on_log is not None:
                    on_log(row)
            window_loss, window_steps, window_start = window_loss.zero_(), 0, time.perf_counter()
        if ctx.is_main and (done % config.checkpoint_every == 0 or done == config.steps):
            last_checkpoint = save(done)
    bar.close()
    if ctx.world > 1:
        dist.barrier()
    return TrainResult(run_dir, end, rows, last_checkpoint, raw_model, ema, normalisation)
