"""Training configuration: one frozen dataclass, its presets, and its JSON form.

``TrainConfig`` is the single source of defaults. Presets are instances; the CLI flags and the
notebook's parameters cell override fields with ``dataclasses.replace`` (see
:func:`with_overrides`). The JSON form is stored in ``RUN/config.json`` and inside every
checkpoint, so a run can be resumed or applied without the preset that created it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from cryodiff.diffusion import check_readout_fraction
from cryodiff.errors import CryodiffError
from cryodiff.models.postprocess import PostProcessConfig
from cryodiff.models.unet import UNetConfig

TARGETS = ("clean_ctf", "clean")
LOSSES = ("l1", "l2")
AMP_MODES = ("auto", "bf16", "fp16", "none")
# torch.compile modes for the training step ("none": eager). "reduce-overhead" records CUDA
# graphs, which removes the per-kernel launch cost that bounds the small presets on a GPU.
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Data: ``box`` (pixels; for on-disk data the stack's box wins), ``target`` ``"clean_ctf"``
    (pure denoising, the paper's task) or ``"clean"`` (denoising + CTF restoration), ``snr``
    and ``use_ctf`` for data simulated on the fly, ``n_val`` held-out particles, ``augment``
    (random flips / 90° rotations applied identically to condition and target).
    Diffusion: ``schedule`` (``"linear"`` = SR3's 1e-6→1e-2 or ``"cosine"``) over
    ``timesteps``; ``loss`` on ε (``"l1"`` or ``"l2"``). ``readout_fraction`` (v-prediction
    only): that share of every batch trains the network's one-pass x̂₀ readout at the noisiest
    level with the squared error instead (:func:`cryodiff.diffusion.readout_rows`), so one
    network both samples and reads out the posterior mean; 0 (SR3) by default, and left out
    of the JSON form then, so the runs and caches made before it keep their keys.
    Optimiser: AdamW with ``lr``, ``weight_decay``, linear warm-up over ``warmup_steps``,
    gradient-norm clipping at ``grad_clip`` (0 disables), EMA of the weights with
    ``ema_decay`` (ramped up as ``min(decay, (1+s)/(10+s))`` so short runs are usable).
    ``batch_size`` is per process (DDP multiplies it by the world size); ``steps`` in total.
    Bookkeeping: metrics every ``log_every`` steps, validation (EMA model, ``val_steps``
    sampling steps with ``val_sampler``) every ``val_every``, checkpoint every
    ``checkpoint_every`` (keeping ``keep_checkpoints``).
    Post-processor: trained for ``post_train_steps`` on ``post_n_samples`` sampler outputs
    made with ``post_sampling_steps`` steps of ``post_sampler``.
    Runtime: ``seed``, ``device`` (``"auto"`` = CUDA > MPS > CPU), ``amp`` (``"auto"`` = bf16
    on CUDA if supported else fp16, none on CPU/MPS). Speed only (a run may be resumed with
    other values): ``channels_last`` (NHWC weights and activations, which tensor-core
    convolutions prefer), ``compile`` (a ``torch.compile`` mode for the training step, one
    of :data:`COMPILE_MODES`; ``"none"``, the default, runs eagerly, as CPUs should) and
    ``simulate_on_device`` (pairs simulated on the fly are projected, CTF-modulated and
    noise-coloured on the training device; the random draws stay on the CPU). AdamW is
    fused into one kernel on CUDA.
    """

    preset: str = "custom"
    model: UNetConfig = field(default_factory=UNetConfig)
    postprocess: PostProcessConfig = field(default_factory=PostProcessConfig)
    box: int = 64
    target: str = "clean_ctf"
    snr: float = 0.1
    use_ctf: bool = True
    n_val: int = 64
    augment: bool = True
    schedule: str = "linear"
    timesteps: int = 2000
    loss: str = "l1"
    readout_fraction: float = 0.0
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    batch_size: int = 16
    steps: int = 10_000
    log_every: int = 50
    val_every: int = 500
    val_steps: int = 10
    val_sampler: str = "ddpm"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    post_train_steps: int = 1000
    post_n_samples: int = 512
    post_sampling_steps: int = 10
    post_sampler: str = "ddpm"
    post_lr: float = 2e-4
    post_batch_size: int = 16
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = False
    compile: str = "none"
    simulate_on_device: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.target in TARGETS, f"target must be one of {TARGETS}, not {self.target!r}"),
            (self.loss in LOSSES, f"loss must be one of {LOSSES}, not {self.loss!r}"),
            (self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, not {self.amp!r}"),
            (self.compile in COMPILE_MODES,
             f"compile must be one of {COMPILE_MODES}, not {self.compile!r}"),
            (isinstance(self.channels_last, bool) and isinstance(self.simulate_on_device, bool),
             "channels_last and simulate_on_device must be true or false"),
            (self.val_sampler in ("ddpm", "ddim") and self.post_sampler in ("ddpm", "ddim"),
             "samplers must be 'ddpm' or 'ddim'"),
            (self.box >= 8, f"box must be at least 8 pixels, not {self.box}"),
            (self.batch_size >= 1 and self.steps >= 0, "batch_size must be >= 1, steps >= 0"),
            (min(self.log_every, self.val_every, self.checkpoint_every) >= 1,
             "log_every, val_every and checkpoint_every must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise CryodiffError(message)
        check_readout_fraction(self.readout_fraction, self.model.prediction)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (nested model configs as dicts, tuples as lists)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["model"] = self.model.to_dict()
        data["postprocess"] = self.postprocess.to_dict()
        if not self.readout_fraction:  # SR3's objective, as before the field existed
            del data["readout_fraction"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CryodiffError(f"unknown TrainConfig fields: {', '.join(unknown)}")
        data = dict(data)
        if "model" in data:
            data["model"] = UNetConfig.from_dict(data["model"])
        if "postprocess" in data:
            data["postprocess"] = PostProcessConfig.from_dict(data["postprocess"])
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))


def with_overrides(config: TrainConfig, **overrides: Any) -> TrainConfig:
    """``config`` with the non-``None`` overrides applied; keeps the model sizes in step with
    ``box`` (the U-Nets' ``image_size`` anchors their attention resolutions). ``prediction``
    sets the SR3 network's ``model.prediction`` (``"eps"`` or ``"v"``)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    prediction = overrides.pop("prediction", None)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise CryodiffError(f"unknown training option(s): {', '.join(unknown)}")
    if prediction is not None:  # in the same step: readout_fraction is checked against it
        overrides["model"] = dataclasses.replace(overrides.get("model", config.model),
                                                 prediction=prediction)
    config = dataclasses.replace(config, **overrides)
    if config.model.image_size != config.box or config.postprocess.image_size != config.box:
        config = dataclasses.replace(
            config, model=dataclasses.replace(config.model, image_size=config.box),
            postprocess=dataclasses.replace(config.postprocess, image_size=config.box))
    return config


def _ci() -> TrainConfig:
    return TrainConfig(
        preset="ci", box=32,
        model=UNetConfig(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1,
                         attention_resolutions=(8,), image_size=32, dropout=0.0, norm_groups=8),
        postprocess=PostProcessConfig(base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                                      image_size=32, norm_groups=8),
        n_val=64, lr=1e-3, warmup_steps=20, ema_decay=0.995, batch_size=16, steps=400,
        log_every=10, val_every=200, val_steps=10, checkpoint_every=200,
        post_train_steps=150, post_n_samples=256, post_lr=1e-3)


def _cpu_small() -> TrainConfig:
    return TrainConfig(
        preset="cpu-small", box=64,
        # Width 16 keeps 4000 steps under an hour on one CPU core (0.035 CPU s per image;
        # width 32 costs 0.09, see benchmarks/results/diffusion.md).
        model=UNetConfig(base_channels=16, channel_mults=(1, 2, 4, 4), num_res_blocks=1,
                         attention_resolutions=(8,), image_size=64, dropout=0.0, norm_groups=8),
        postprocess=PostProcessConfig(base_channels=16, channel_mults=(1, 2, 2),
                                      num_res_blocks=1, image_size=64, norm_groups=8),
        n_val=128, lr=5e-4, warmup_steps=100, ema_decay=0.999, batch_size=16, steps=4000,
        log_every=25, val_every=500, val_steps=10, checkpoint_every=500,
        post_train_steps=800, post_n_samples=1024, post_lr=5e-4)


def _gpu_paper() -> TrainConfig:
    return TrainConfig(
        preset="gpu-paper", box=128,
        model=UNetConfig(base_channels=64, channel_mults=(1, 2, 4, 8), num_res_blocks=2,
                         attention_resolutions=(16,), image_size=128, dropout=0.1,
                         norm_groups=32),
        postprocess=PostProcessConfig(base_channels=32, channel_mults=(1, 2, 2),
                                      num_res_blocks=1, image_size=128, norm_groups=8),
        n_val=256, lr=1e-4, warmup_steps=1000, ema_decay=0.9999, batch_size=32,
        steps=200_000, log_every=100, val_every=5000, val_steps=50, checkpoint_every=5000,
        post_train_steps=20_000, post_n_samples=8192, post_lr=1e-4, post_batch_size=32)


def _gpu_medium() -> TrainConfig:
    # 128² in one GPU lease: a quarter of gpu-paper's width at its depth costs 51 GFLOP per
    # training image (forward + backward) against gpu-paper's 272; gpu-paper's measured H100
    # rate (259 img/s, 7 % MFU) scaled by that ratio, less a margin for a smaller model's
    # lower utilisation, puts 8,000 steps × 64 images at ≈ 10 min (not yet measured).
    return TrainConfig(
        preset="gpu-medium", box=128,
        model=UNetConfig(base_channels=32, channel_mults=(1, 2, 4, 4), num_res_blocks=2,
                         attention_resolutions=(16,), image_size=128, dropout=0.0,
                         norm_groups=16),
        postprocess=PostProcessConfig(base_channels=32, channel_mults=(1, 2, 2),
                                      num_res_blocks=1, image_size=128, norm_groups=8),
        n_val=256, lr=2e-4, warmup_steps=500, ema_decay=0.999, batch_size=64, steps=8000,
        log_every=50, val_every=1000, val_steps=10, checkpoint_every=1000,
        post_train_steps=2000, post_n_samples=2048, post_lr=2e-4, post_batch_size=32,
        channels_last=True)


PRESETS: dict[str, TrainConfig] = {"ci": _ci(), "cpu-small": _cpu_small(),
                                   "gpu-medium": _gpu_medium(), "gpu-paper": _gpu_paper()}


def get_preset(name: str) -> TrainConfig:
    """The preset called ``name``; :class:`CryodiffError` listing the choices otherwise."""
    if name not in PRESETS:
        raise CryodiffError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name]
