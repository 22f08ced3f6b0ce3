"""Image-to-image regression with a U-Net: the training recipe shared by the Noise2Noise and
supervised baselines, and the denoiser object they all are.

The recipe (:class:`RegressionRecipe`) is the diffusion model's (issue 16, "a fair table"):
AdamW with weight decay, a linear learning-rate warm-up, gradient-norm clipping, an
exponential moving average (EMA) of the weights ramped as
:func:`cryodiff.training.loop.ema_decay_at` — the EMA network is the one that denoises —
random dihedral transforms per pair (rotations by 90° and flips, which commute with isotropic
noise and keep input/target pairs aligned), and autocast precision on CUDA resolved from
``amp`` as the diffusion loop resolves it. The loss is ``"l2"`` (its minimiser is the
posterior mean, which PSNR rewards) or ``"l1"`` (the posterior median). Everything random is
seeded.

The default network is the post-processing U-Net (:class:`cryodiff.models.postprocess.
PostProcessUNet`) built without a condition input, so it maps a noisy image to
``noisy + correction``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from cryodiff.baselines.base import DenoisingData, check_images, check_target
from cryodiff.errors import CryodiffError
from cryodiff.metrics import ssim
from cryodiff.models.postprocess import PostProcessConfig, PostProcessUNet
from cryodiff.training.config import AMP_MODES, LOSSES, TrainConfig
from cryodiff.training.data import augment_pairs
from cryodiff.threads import adapt_threads
from cryodiff.training.loop import autocast_dtype, optimiser_step, warmup_lr


@dataclass(frozen=True)
class RegressionRecipe:
    """How a regression U-Net is trained.

    ``steps`` AdamW steps on mini-batches of ``batch_size`` pairs drawn with replacement, at
    learning rate ``lr`` reached by a linear warm-up over ``warmup_steps`` (0: none), with
    decoupled ``weight_decay``, gradient-norm clipping at ``grad_clip`` (0: none) and an EMA
    of the weights with ``ema_decay`` (ramped as ``min(decay, (1+s)/(10+s))``; 0: the EMA is
    the raw network). ``loss``: ``"l2"`` or ``"l1"``. ``amp``: one of
    :data:`cryodiff.training.config.AMP_MODES` (autocast applies on CUDA only). ``seed``
    seeds the batches, augmentation, dropout and initial weights. The defaults are a plain
    constant-rate run; the benchmark uses :meth:`from_train_config`.
    """

    steps: int = 500
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 0.0
    ema_decay: float = 0.0
    loss: str = "l2"
    amp: str = "none"
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.loss in LOSSES, f"loss must be one of {LOSSES}, not {self.loss!r}"),
            (self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, not {self.amp!r}"),
            (self.steps >= 0 and self.batch_size >= 1, "steps must be >= 0, batch_size >= 1"),
            (self.lr > 0 and self.weight_decay >= 0 and self.grad_clip >= 0
             and self.warmup_steps >= 0, "lr must be > 0; weight_decay, grad_clip and "
             "warmup_steps >= 0"),
            (0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), not {self.ema_decay}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CryodiffError(message)

    @classmethod
    def from_train_config(cls, train: TrainConfig, loss: str = "l2") -> RegressionRecipe:
        """The diffusion model's optimiser recipe, budget and precision from ``train``, with
        the regression ``loss`` (``train.loss`` is the diffusion ε-loss, not used here)."""
        return cls(steps=train.steps, batch_size=train.batch_size, lr=train.lr,
                   weight_decay=train.weight_decay, warmup_steps=train.warmup_steps,
                   grad_clip=train.grad_clip, ema_decay=train.ema_decay, loss=loss,
                   amp=train.amp, seed=train.seed)

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): linear warm-up, then constant."""
        return warmup_lr(self.lr, step, self.warmup_steps)

    def describe(self, device: str | torch.device = "cpu") -> str:
        """A short human-readable summary on ``device``, e.g.
        ``"AdamW + warm-up + clip + EMA, L2, fp32"`` (``"bf16 autocast"`` on a GPU)."""
        parts = ["AdamW"] + [label for label, on in (
            ("warm-up", self.warmup_steps > 0), ("clip", self.grad_clip > 0),
            ("EMA", self.ema_decay > 0)) if on]
        dtype = autocast_dtype(self.amp, torch.device(device))
        precision = "fp32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
        return f"{' + '.join(parts)}, {self.loss.upper()}, {precision}"


@dataclass
class RegressionFit:
    """What :func:`fit_image_to_image` returns: the EMA network (eval mode, no gradients),
    the loss of every step and the learning rate each step used."""

    ema: nn.Module
    losses: list[float]
    lrs: list[float]


def fit_image_to_image(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                       recipe: RegressionRecipe = RegressionRecipe(),
                       augment: bool = True, ssim_weight: float = 0.0,
                       to_raw: Callable[[torch.Tensor], torch.Tensor] | None = None
                       ) -> RegressionFit:
    """Train ``model`` (``(B, 1, L, L) -> (B, 1, L, L)``) to map ``inputs`` to ``targets``.

    ``inputs``, ``targets``: ``(N, L, L)`` on the model's device. Runs ``recipe.steps``
    steps of the recipe's loss on mini-batches drawn with replacement from a generator seeded
    with ``recipe.seed``; dropout draws from the global generator, reseeded with
    ``recipe.seed`` inside a forked RNG state so the caller's stream is untouched.
    ``model`` ends with the raw trained weights; the returned EMA copy is the denoiser.
    ``ssim_weight`` > 0 adds ``ssim_weight · (1 − SSIM)`` to the loss: the mean SSIM
    (:func:`cryodiff.metrics.ssim`, the benchmark's metric) of the batch's predictions
    against its targets, both mapped by ``to_raw`` first (SSIM's luminance term depends on
    the images' offset, so it is taken in the metric's units, not the normalised ones).
    """
    if inputs.shape != targets.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} differ")
    if ssim_weight < 0:
        raise CryodiffError(f"ssim_weight must be >= 0, not {ssim_weight}")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(recipe.seed)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.lr,
                                  weight_decay=recipe.weight_decay)
    amp_dtype = autocast_dtype(recipe.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                else nullcontext())
    error = torch.abs if recipe.loss == "l1" else torch.square
    batch = min(recipe.batch_size, len(inputs))
    losses, lrs = [], []
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(recipe.seed)
        model.train()
        for step in range(recipe.steps):
            adapt_threads(device)
            index = torch.randint(len(inputs), (batch,), generator=generator).to(
                inputs.device, non_blocking=True)  # no wait for the GPU
            x, y = inputs[index], targets[index]
            if augment:
                x, y = augment_pairs(x, y, generator)
            lrs.append(recipe.lr_at(step))
            for group in optimiser.param_groups:
                group["lr"] = lrs[-1]
            with autocast:
                prediction = model(x[:, None])
            loss = error(prediction.float() - y[:, None]).mean()
            if ssim_weight > 0:
                loss = loss + ssim_weight * ssim_loss(prediction.float()[:, 0], y, to_raw)
            optimiser_step(loss, optimiser, scaler, model, recipe.grad_clip, ema, step,
                           recipe.ema_decay)
            # Kept on the device: reading each loss would make the CPU wait for the GPU.
            losses.append(loss.detach())
        model.eval()
    return RegressionFit(ema, torch.stack(losses).tolist() if losses else [], lrs)


# The weight of ``1 − SSIM`` beside the squared error in units of the target's variance in
# the SSIM stage: checked (the only weight tried) on the validation particles of the phantom
# at SNR 0.01 (docs/benchmarks.md §10).
SSIM_WEIGHT = 0.3


def ssim_stage_recipe(recipe: RegressionRecipe, budget_steps: int | None = None
                      ) -> RegressionRecipe:
    """The SSIM stage after a network trained with ``recipe``: a tenth of ``budget_steps``
    (default the recipe's steps; at least one), at a fifth of its learning rate, without
    warm-up (it continues a trained network), and the next seed; the rest (batch, AdamW,
    clipping, EMA, precision, loss) is the recipe's. Trained with ``SSIM_WEIGHT · (1 − SSIM)``
    added to the squared error in units of the target's variance (see
    :meth:`UNetRegressor.ssim_stage`). The benchmark gives every method the same stage
    steps: a tenth of the training preset's ``steps``."""
    steps = recipe.steps if budget_steps is None else budget_steps
    return dataclasses.replace(recipe, steps=max(1, steps // 10), lr=recipe.lr / 5,
                               warmup_steps=0, seed=recipe.seed + 1)


def ssim_loss(prediction: torch.Tensor, target: torch.Tensor,
              to_raw: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``1 − mean SSIM`` of ``prediction`` against ``target`` (both ``(B, L, L)``), after
    ``to_raw`` (identity when None); differentiable."""
    if to_raw is not None:
        prediction, target = to_raw(prediction), to_raw(target)
    return 1 - ssim(prediction, target).mean()


def default_backbone_config(image_size: int) -> PostProcessConfig:
    """The post-processor's shape with no condition input, for ``image_size`` boxes."""
    return PostProcessConfig(condition_channels=0, image_size=image_size)


class UNetRegressor:
    """A U-Net denoiser trained on ``(input, target)`` image pairs that subclasses choose.

    ``recipe`` (:class:`RegressionRecipe`) says how it is trained; keywords naming recipe
    fields (``steps=…, lr=…, loss=…``) override single fields of it. ``config``: the network's
    shape (a condition-free :class:`PostProcessConfig`), defaulting to
    :meth:`default_config` for the training box size. Images are standardised with the mean
    and std of the training inputs (the same affine map is applied to targets and undone on
    outputs). The EMA network denoises and is what :meth:`state` saves.
    """

    name = "unet-regressor"
    default_loss = "l2"
    network_class: type[PostProcessUNet] = PostProcessUNet  # input + correction

    def __init__(self, recipe: RegressionRecipe | None = None, *,
                 config: PostProcessConfig | None = None, target: str = "clean_ctf",
                 device: str | torch.device = "cpu", **recipe_fields):
        fields = {f.name for f in dataclasses.fields(RegressionRecipe)}
        unknown = sorted(set(recipe_fields) - fields)
        if unknown:
            raise CryodiffError(f"unknown option(s) for {self.name}: {', '.join(unknown)}")
        base = recipe if recipe is not None else RegressionRecipe(loss=self.default_loss)
        self.recipe = dataclasses.replace(base, **recipe_fields)
        self.config = config
        self.target = check_target(target)
        self.device = torch.device(device)
        self.model: PostProcessUNet | None = None
        self.losses: list[float] = []
        self._shift = 0.0
        self._scale = 1.0

    def training_pairs(self, data: DenoisingData) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, each ``(M, L, L)``, to train on; subclasses define it."""
        raise NotImplementedError

    def default_config(self, image_size: int) -> PostProcessConfig:
        """The network's shape when none was given: :func:`default_backbone_config`."""
        return default_backbone_config(image_size)

    def parameter_count(self) -> int:
        """Number of trainable parameters of the trained network."""
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}.parameter_count called before fit()")
        return sum(p.numel() for p in self.model.parameters())

    def fit(self, data: DenoisingData) -> UNetRegressor:
        """Build a seeded network and train it with the recipe on ``training_pairs``."""
        check_images(data.noisy)
        inputs, targets = self.training_pairs(data)
        self._shift = float(data.noisy.mean())
        self._scale = float(data.noisy.std()) or 1.0
        config = self.config or self.default_config(data.noisy.shape[-1])
        # Seed the weight initialisation without touching the caller's global RNG stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.recipe.seed)
            network = self.network_class(config).to(self.device)
        inputs = ((inputs - self._shift) / self._scale).float().to(self.device)
        targets = ((targets - self._shift) / self._scale).float().to(self.device)
        result = fit_image_to_image(network, inputs, targets, self.recipe)
        self.model, self.losses = result.ema, result.losses
        return self

    def ssim_stage(self, data: DenoisingData, weight: float = SSIM_WEIGHT,
                   budget_steps: int | None = None) -> UNetRegressor:
        """A copy of this fitted denoiser trained on from its (EMA) network for
        :func:`ssim_stage_recipe`'s steps (a tenth of ``budget_steps``, default the recipe's
        steps) with ``weight · (1 − SSIM)`` beside the squared error, SSIM taken in the
        images' units: the stage ``sr3v-x0ft-ssim_1`` adds to SR3's fine-tuned readout,
        offered to the regression U-Nets too (issue 16's fair protocol). SR3's squared error
        is in units of the target's variance; this one standardises by the *noisy* images'
        std, so the weight is scaled by the standardised targets' variance to mean the same
        balance. The training pairs are this fit's; this denoiser is untouched."""
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}.ssim_stage called before fit()")
        inputs, targets = self.training_pairs(data)
        inputs = ((inputs - self._shift) / self._scale).float().to(self.device)
        targets = ((targets - self._shift) / self._scale).float().to(self.device)
        shift, scale = self._shift, self._scale
        network = copy.deepcopy(self.model).float().requires_grad_(True)
        result = fit_image_to_image(network, inputs, targets,
                                    ssim_stage_recipe(self.recipe, budget_steps),
                                    ssim_weight=weight * float(targets.var()),
                                    to_raw=lambda x: x * scale + shift)
        staged = copy.copy(self)
        staged.model, staged.losses = result.ema, self.losses + result.losses
        return staged

    def state(self) -> dict:
        """What :meth:`load_state` needs to rebuild the trained (EMA) denoiser."""
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}.state called before fit()")
        return {"model": self.model.state_dict(), "config": self.model.config.to_dict(),
                "recipe": dataclasses.asdict(self.recipe),
                "shift": self._shift, "scale": self._scale, "losses": list(self.losses)}

    def load_state(self, state: dict) -> UNetRegressor:
        """Restore a denoiser saved with :meth:`state` instead of training it again."""
        self.model = self.network_class(PostProcessConfig.from_dict(state["config"]))
        self.model.load_state_dict(state["model"])
        self.model.to(self.device).eval().requires_grad_(False)
        if "recipe" in state:
            self.recipe = RegressionRecipe(**state["recipe"])
        self._shift, self._scale = float(state["shift"]), float(state["scale"])
        self.losses = [float(v) for v in state["losses"]]
        return self

    @torch.no_grad()
    def denoise(self, images: torch.Tensor, ctf: torch.Tensor | None = None,
                batch_size: int = 64) -> torch.Tensor:
        """Apply the trained network to ``(N, L, L)`` images (``ctf`` is ignored)."""
        check_images(images, ctf)
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}.denoise called before fit()")
        out = torch.empty_like(images)
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            x = ((chunk - self._shift) / self._scale).float().to(self.device)[:, None]
            y = self.model(x)[:, 0] * self._scale + self._shift
            out[start:start + batch_size] = y.to(out)
        return out
