"""Image-to-image regression with a U-Net: the training loop shared by the Noise2Noise and
supervised baselines, and the denoiser object they both are.

The backbone is the post-processing U-Net (:class:`cryodiff.models.postprocess.
PostProcessUNet`) built without a condition input, so it maps a noisy image to
``noisy + correction``. Training minimises the L2 loss with Adam on random mini-batches with
random dihedral transforms (rotations by 90° and flips, which commute with the isotropic
noise and keep input/target pairs aligned). Everything random is seeded.
"""

from __future__ import annotations

import torch
from torch import nn

from cryodiff.baselines.base import DenoisingData, check_images, check_target
from cryodiff.models.postprocess import PostProcessConfig, PostProcessUNet


def _dihedral(x: torch.Tensor, index: int) -> torch.Tensor:
    """One of the 8 symmetries of the square (``index`` in 0..7) on the last two dims."""
    x = torch.rot90(x, index % 4, dims=(-2, -1))
    return x.flip(-1) if index >= 4 else x


def fit_image_to_image(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                       steps: int, batch_size: int = 16, lr: float = 1e-3, seed: int = 0,
                       augment: bool = True) -> list[float]:
    """Train ``model`` (``(B, 1, L, L) -> (B, 1, L, L)``) to map ``inputs`` to ``targets``.

    ``inputs``, ``targets``: ``(N, L, L)`` on the model's device. Runs ``steps`` Adam steps
    of mean squared error on mini-batches drawn with replacement by a generator seeded with
    ``seed``. Returns the loss of every step.
    """
    if inputs.shape != targets.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} differ")
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        index = torch.randint(len(inputs), (min(batch_size, len(inputs)),), generator=generator)
        x, y = inputs[index.to(inputs.device)][:, None], targets[index.to(targets.device)][:, None]
        if augment:
            symmetry = int(torch.randint(8, (), generator=generator))
            x, y = _dihedral(x, symmetry), _dihedral(y, symmetry)
        loss = (model(x) - y).square().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    model.eval()
    return losses


def default_backbone_config(image_size: int) -> PostProcessConfig:
    """The post-processor's shape with no condition input, for ``image_size`` boxes."""
    return PostProcessConfig(condition_channels=0, image_size=image_size)


class UNetRegressor:
    """A U-Net denoiser trained on ``(input, target)`` image pairs that subclasses choose.

    Images are standardised with the mean and std of the training inputs (the same affine
    map is applied to targets and undone on outputs). ``config`` defaults to
    :func:`default_backbone_config` for the training box size.
    """

    name = "unet-regressor"

    def __init__(self, steps: int = 500, batch_size: int = 16, lr: float = 1e-3, seed: int = 0,
                 config: PostProcessConfig | None = None, target: str = "clean_ctf",
                 device: str | torch.device = "cpu"):
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
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

    def fit(self, data: DenoisingData) -> UNetRegressor:
        """Build a seeded backbone and train it for ``steps`` steps on ``training_pairs``."""
        check_images(data.noisy)
        inputs, targets = self.training_pairs(data)
        self._shift = float(data.noisy.mean())
        self._scale = float(data.noisy.std()) or 1.0
        config = self.config or default_backbone_config(data.noisy.shape[-1])
        # Seed the weight initialisation without touching the caller's global RNG stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model = PostProcessUNet(config).to(self.device)
        inputs = ((inputs - self._shift) / self._scale).float().to(self.device)
        targets = ((targets - self._shift) / self._scale).float().to(self.device)
        self.losses = fit_image_to_image(self.model, inputs, targets, self.steps,
                                         self.batch_size, self.lr, self.seed)
        return self

    def state(self) -> dict:
        """What :meth:`load_state` needs to rebuild the trained denoiser (tensors, numbers)."""
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}.state called before fit()")
        return {"model": self.model.state_dict(), "config": self.model.config.to_dict(),
                "shift": self._shift, "scale": self._scale, "losses": list(self.losses)}

    def load_state(self, state: dict) -> UNetRegressor:
        """Restore a denoiser saved with :meth:`state` instead of training it again."""
        self.model = PostProcessUNet(PostProcessConfig.from_dict(state["config"]))
        self.model.load_state_dict(state["model"])
        self.model.to(self.device).eval()
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
