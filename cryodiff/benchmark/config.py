"""What one benchmark run compares, and at which size: :class:`BenchmarkConfig` and presets.

A preset fixes the data (box, maps, SNRs, split sizes), the training preset shared by every
trained method (SR3 + post-processor, Noise2Noise, supervised U-Nets: same training pairs,
same number of optimiser steps and batch size) and its training seeds, the sampling steps
tried and which methods
are also reconstructed in 3D. Slow methods (BM3D, SR3 with many steps) are evaluated in 2D
on the first ``n_test_slow`` test particles only; the report says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cryodiff.diffusion import PREDICTIONS
from cryodiff.errors import CryodiffError

# Every method the benchmark knows, in table order. "sr3" stands for the family of SR3 rows
# (plain at each step count, with post-processor, posterior mean).
BASELINE_METHODS = ("lowpass", "wiener", "bm3d", "topaz", "noise2noise", "supervised",
                    "supervised-l1", "supervised-large", "supervised-2x",
                    "supervised-large-2x", "supervised-2x-ssim", "supervised-large-2x-ssim",
                    "supervised-large-direct-2x", "supervised-large-direct-2x-ssim",
                    "cwf", "cwf-2d")
# "sr3-mse": the SR3 samples refined by a post-processor trained for the mean (L2 + EMA),
# one per step count (:mod:`cryodiff.benchmark.sr3_mse`); it needs "sr3" (the same model).
# "sr3-pm": cryodiff's own denoiser for PSNR, the mean of several SR3 samples refined by a
# post-processor trained on such means (:mod:`cryodiff.benchmark.sr3_pm`); it needs "sr3".
# "sr3-x0ft": a v-predicting SR3's one-pass x̂₀ with its network fine-tuned at the noisiest
# level for the posterior mean (:mod:`cryodiff.benchmark.sr3_x0ft`); it needs "sr3" and v.
# "sr3-x0ft-ssim": that fine-tuned network trained on for a short stage with an SSIM term
# (the same module); it needs "sr3" and v, and trains sr3-x0ft's network when no run has.
# "sr3-joint": one v-network trained on SR3's objective with a share of every batch on its
# one-pass readout, read out as it is and after the SSIM stage (:mod:`cryodiff.benchmark.
# sr3_joint`); it trains its own network (SR3's size, twice the preset's steps).
ALL_METHODS = BASELINE_METHODS + ("sr3", "sr3-mse", "sr3-pm", "sr3-x0ft", "sr3-x0ft-ssim",
                                  "sr3-joint")
# Run only when named (``--only``): each trains an SR3-sized network for the preset's steps
# ("sr3-x0ft", on top of SR3) or twice them ("supervised-large-2x", its equal-size,
# equal-budget peer), which would double a default run's time; the lease script and the
# commands of docs/benchmarks.md name them.
OPT_IN_METHODS = ("supervised-large-2x", "supervised-2x-ssim", "supervised-large-2x-ssim",
                  "supervised-large-direct-2x", "supervised-large-direct-2x-ssim",
                  "sr3-x0ft", "sr3-x0ft-ssim", "sr3-joint")
DEFAULT_METHODS = tuple(m for m in ALL_METHODS if m not in OPT_IN_METHODS)
SLOW_METHODS = ("bm3d",)


@dataclass(frozen=True)
class BenchmarkConfig:
    """Sizes and choices of a benchmark run.

    Data: ``box`` (pixels), ``maps`` (``"phantom"`` or MRC paths), ``pixel_size_A`` (Å,
    overrides a map header's; None: the header's), ``snrs`` (total SNR), ``structural_snr``.
    Splits (disjoint, independently seeded poses): ``n_train`` training pairs, ``n_val``
    validation particles (σ of the low-pass, Wiener spectra, BM3D's noise scale, the SR3
    run's own validation), ``n_test_3d`` held-out particles reconstructed in 3D whose first
    ``n_test_2d`` give the 2D metrics (the first ``n_test_slow`` for slow methods).
    Training: ``train_preset`` (a :data:`cryodiff.training.config.PRESETS` name) with
    ``train_steps`` optimiser steps (None: the preset's) for every trained method.
    SR3: ``sr3_steps`` step counts of ``sr3_sampler``, ``sr3_fast_steps`` the count used for the main
    row, the post-processor and 3D, ``posterior_samples`` K for the posterior mean, and
    ``slow_step_threshold`` above which a step count counts as slow.
    ``methods`` to run (default :data:`DEFAULT_METHODS`: all but :data:`OPT_IN_METHODS`);
    ``methods_3d`` also reconstructed (``"sr3"`` there means the
    ``sr3_fast_steps`` rows with and without post-processor).
    Seeds: ``seed`` fixes the simulated data (maps, poses, noise, splits); every learnt
    method (SR3 and its rows, the trained baselines) is trained and applied once per seed in
    ``training_seeds`` (weights, batches, augmentations and sampler draws) on those same data,
    and its row reports the mean over seeds with the spread between them
    (:mod:`cryodiff.benchmark.seeds`). ``"sr3-mse"``: one post-processor per step count up to
    ``mse_post_max_steps`` (None: every one of ``sr3_steps``), each learning from samples of
    the first ``mse_post_samples`` training particles (None: the whole training split);
    sampling them costs ``samples × steps`` network passes, hence the bounds.
    ``"sr3-pm"``: the mean of ``pm_draws`` samples of ``sr3_fast_steps`` steps, refined by
    a post-processor trained on such means of the training split (it is in 3D when
    ``"sr3-pm"`` is in ``methods_3d``). ``self_ensemble``: every network trained here and
    applied in one pass (the trained baselines, the ``"sr3-mse"`` and ``"sr3-pm"``
    post-processors) denoises with the dihedral self-ensemble (:mod:`cryodiff.self_ensemble`);
    Topaz is applied once, as shipped, and the paper-faithful SR3 rows as the paper has them.
    ``sr3_prediction``: what SR3's network is trained to output, ``"eps"`` (the paper's) or
    ``"v"``; a v run names its SR3 rows ``sr3v…`` (:meth:`sr3_row`), so that its table
    combines with an ε run of the same data.
    Pose search (:mod:`cryodiff.alignment`): with ``pose_search`` every 3D set is also
    reconstructed with orientations found by projection matching against the true map, up
    to ``pose_band_A`` Å (None: ``4 ×`` the pixel size, half the Nyquist frequency), from a
    ``pose_grid_deg`` grid refined in ``pose_refine_rounds`` halving local rounds.
    """

    preset: str = "custom"
    box: int = 32
    maps: tuple[str, ...] = ("phantom",)
    pixel_size_A: float | None = None
    snrs: tuple[float, ...] = (0.1,)
    structural_snr: float = 1.4
    n_train: int = 1024
    n_val: int = 64
    n_test_2d: int = 64
    n_test_slow: int = 16
    n_test_3d: int = 2000
    train_preset: str = "ci"
    train_steps: int | None = None
    post_train_steps: int | None = None
    sr3_steps: tuple[int, ...] = (10, 50, 250)
    sr3_fast_steps: int = 10
    sr3_sampler: str = "ddpm"
    slow_step_threshold: int = 50
    posterior_samples: int = 4
    methods: tuple[str, ...] = DEFAULT_METHODS
    methods_3d: tuple[str, ...] = ("lowpass", "wiener", "topaz", "noise2noise", "supervised",
                                   "cwf", "sr3", "sr3-pm")
    pose_search: bool = True
    pose_band_A: float | None = None
    pose_grid_deg: float = 15.0
    pose_refine_rounds: int = 4
    seed: int = 0
    training_seeds: tuple[int, ...] = (0,)
    mse_post_samples: int | None = None
    mse_post_max_steps: int | None = None
    pm_draws: int = 4
    self_ensemble: bool = True
    sr3_prediction: str = "eps"
    device: str = "auto"

    @property
    def sr3_name(self) -> str:
        """The SR3 family's name in row names and work folders: ``"sr3"`` for the paper's
        ε-prediction, ``"sr3v"`` for a v-predicting SR3 (``sr3_prediction``)."""
        return "sr3" if self.sr3_prediction == "eps" else f"sr3{self.sr3_prediction}"

    def sr3_row(self, name: str) -> str:
        """A row name of the SR3 family (``"sr3_10"``, ``"sr3+pp_10"``, ``"sr3-pm4_10"``) as
        this configuration names it: ``"sr3v-pm4_10"`` for a v-predicting SR3. A name that
        already carries this configuration's prefix is returned as it is."""
        if name.startswith(self.sr3_name) or not name.startswith("sr3"):
            return name
        return self.sr3_name + name[3:]

    @property
    def training_seed(self) -> int:
        """The training seed of a run that trains each learnt method once: the first."""
        return self.training_seeds[0]

    def for_training_seed(self, seed: int) -> BenchmarkConfig:
        """This configuration with the learnt methods trained under ``seed`` alone."""
        return dataclasses.replace(self, training_seeds=(seed,))

    def validate(self) -> None:
        """Raise :class:`CryodiffError` for settings no run can use."""
        unknown = sorted((set(self.methods) | set(self.methods_3d)) - set(ALL_METHODS))
        if unknown:
            raise CryodiffError(f"unknown method(s) {', '.join(unknown)}; "
                                f"choose from {', '.join(ALL_METHODS)}")
        for method in ("sr3-x0ft", "sr3-x0ft-ssim", "sr3-joint"):
            if method in self.methods_3d:
                raise CryodiffError(f"{method} is scored in 2D only: leave it out of methods_3d")
        if not self.snrs or any(not s > 0 for s in self.snrs):
            raise CryodiffError(f"SNRs must be positive, got {list(self.snrs)}")
        if not self.maps:
            raise CryodiffError("no map to benchmark on")
        if not 0 < self.n_test_slow <= self.n_test_2d <= self.n_test_3d:
            raise CryodiffError("need 0 < n_test_slow <= n_test_2d <= n_test_3d")
        if self.n_train < 8 or self.n_val < 4:
            raise CryodiffError("need at least 8 training and 4 validation particles")
        if self.pose_band_A is not None and not self.pose_band_A > 0:
            raise CryodiffError(f"pose_band_A must be positive, got {self.pose_band_A}")
        if not 0 < self.pose_grid_deg <= 90 or self.pose_refine_rounds < 0:
            raise CryodiffError("need 0 < pose_grid_deg <= 90 and pose_refine_rounds >= 0")
        seeds = self.training_seeds
        if (not seeds or len(set(seeds)) != len(seeds)
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)):
            raise CryodiffError(f"training seeds must be distinct integers >= 0, at least one; "
                                f"got {list(seeds)}")
        if self.sr3_prediction not in PREDICTIONS:
            raise CryodiffError(f"unknown SR3 prediction {self.sr3_prediction!r} (choose from "
                                f"{', '.join(PREDICTIONS)})")
        if self.pm_draws < 1:
            raise CryodiffError(f"pm_draws must be at least 1, got {self.pm_draws}")
        for name in ("mse_post_samples", "mse_post_max_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise CryodiffError(f"{name} must be positive, got {getattr(self, name)}")
        if self.sr3_fast_steps not in self.sr3_steps:
            raise CryodiffError(f"sr3_fast_steps ({self.sr3_fast_steps}) must be one of "
                                f"sr3_steps {list(self.sr3_steps)}")

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


PRESETS: dict[str, BenchmarkConfig] = {
    # One SNR, 32² boxes, 2000 particles in 3D; BM3D in 2D only: ≈ 40 min on one CPU core
    # with every method (sr3-pm and supervised-2x included). sr3-mse: sampling 1024 training
    # particles costs ≈ 1 min per 10 steps here (ci model, 32², one loaded CPU core), so only
    # the 10-step post-processor is trained; sr3-pm samples them pm_draws (4) times.
    "ci": BenchmarkConfig(preset="ci", mse_post_max_steps=10),
    "cpu-small": BenchmarkConfig(
        preset="cpu-small", box=64, snrs=(0.1, 0.05, 0.01), n_train=4096, n_val=128,
        n_test_2d=128, n_test_slow=32, n_test_3d=4000, train_preset="cpu-small",
        # sr3-mse: sampling 4096 training particles costs ≈ 20 min per 10 steps (cpu-small
        # model, 64², one loaded CPU core): post-processors for 10 and 50 steps only; sr3-pm
        # samples them 4 times (≈ 80 min per seed on one core: this preset wants a GPU).
        training_seeds=(0, 1, 2), mse_post_max_steps=50, sr3_steps=(10, 50, 250), methods_3d=("lowpass", "wiener", "topaz", "noise2noise",
                                             "supervised", "cwf", "sr3", "sr3-pm")),
    # 128² in one GPU lease (≈ 10 min per trained network, estimated from the H100 rates, see
    # the training preset): one SNR, half of gpu-paper's test sets.
    "gpu-medium": BenchmarkConfig(
        preset="gpu-medium", box=128, snrs=(0.05,), n_train=20_000, n_val=256,
        n_test_2d=256, n_test_slow=32, n_test_3d=5000, train_preset="gpu-medium",
        training_seeds=(0, 1, 2), sr3_steps=(10, 50, 250)),
    "gpu-paper": BenchmarkConfig(
        preset="gpu-paper", box=128, snrs=(0.1, 0.05, 0.01), n_train=50_000, n_val=512,
        n_test_2d=512, n_test_slow=64, n_test_3d=10_000, train_preset="gpu-paper",
        training_seeds=(0, 1, 2), sr3_steps=(10, 50, 250, 2000), posterior_samples=8,
        methods_3d=("lowpass", "wiener", "topaz", "noise2noise", "supervised", "cwf", "sr3",
                    "sr3-pm")),
}


def get_preset(name: str) -> BenchmarkConfig:
    """The preset called ``name``; :class:`CryodiffError` listing the choices otherwise."""
    if name not in PRESETS:
        raise CryodiffError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name]
