"""Learnt methods trained once per training seed: one table row from several runs.

Each learnt method (SR3 and its rows, the trained baselines) is trained and applied once per
seed of ``BenchmarkConfig.training_seeds``, on the same simulated data (``config.seed``).
Its row reports the mean over seeds of each 2D figure, the sample standard deviation between
seeds beside it, and for the paired comparison with the best row each test image's PSNR
averaged over seeds. 3D reconstructions, half maps and the pose search use the first seed's
images only.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch

from cryodiff.benchmark.evaluate import metrics_2d
from cryodiff.benchmark.methods import MethodOutput
from cryodiff.metrics import psnr


@dataclass
class SeededOutput(MethodOutput):
    """A learnt method's row over training ``seeds``: ``images`` are the first seed's (all the
    test particles it denoised, for 3D), ``seed_images`` each seed's first ``n_test_2d``."""

    seeds: tuple[int, ...] = ()
    seed_images: tuple[torch.Tensor, ...] = ()


def combine_seeds(runs: list[MethodOutput], seeds: tuple[int, ...],
                  n_2d: int) -> MethodOutput:
    """One output from the runs of one method under ``seeds`` (same order): mean seconds
    per image and fit seconds; a seed that failed or was skipped makes the row so, its
    note naming the seed (its ``seeds`` are still all of them)."""
    first = runs[0]
    for seed, run in zip(seeds, runs):
        if run.images is None:
            note = run.note if len(runs) == 1 else f"training seed {seed}: {run.note}"
            return SeededOutput(first.method, first.family, None, status=run.status,
                                note=note, seeds=tuple(seeds))
    note = first.note
    if len(runs) > 1:
        others = {run.note for run in runs[1:]} - {first.note}
        note += f" (seed {seeds[0]}; other seeds differ)" if others else ""
        note += f"; mean of {len(runs)} training seeds {list(seeds)}"
    return SeededOutput(first.method, first.family, first.images,
                        _mean([run.seconds_per_image for run in runs]),
                        _mean([run.fit_seconds for run in runs]), "ok", note, tuple(seeds),
                        tuple(run.images[:n_2d].clone() if i else run.images[:n_2d]
                              for i, run in enumerate(runs)))


def combine_seed_rows(runs: list[dict[str, MethodOutput]], seeds: tuple[int, ...],
                      n_2d: int) -> list[MethodOutput]:
    """One output per row name from the ``{method: row}`` of each training seed (same order as
    ``seeds``), in the order the names first appear. A row one seed produced and another did
    not (a failure upstream names its row otherwise, or drops a row built from it) fails,
    naming that seed, instead of being dropped or ending the condition."""
    names = dict.fromkeys(name for rows in runs for name in rows)
    out = []
    for name in names:
        family = next(rows[name].family for rows in runs if name in rows)
        out.append(combine_seeds(
            [rows.get(name) or MethodOutput(name, family, None, status="failed",
                                            note="not produced (a row it depends on failed)")
             for rows in runs], seeds, n_2d))
    return out


def _mean(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)


def _sd(values: list[float]) -> float | None:
    """Sample standard deviation (n − 1); None for fewer than two values or a value that is
    not finite (a diverged seed)."""
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return None
    return statistics.stdev(values)


def training_seeds_of(output: MethodOutput) -> list[int] | None:
    """The training seeds a row records for ``output`` (None for a method not trained per
    seed), whatever its status."""
    return list(output.seeds) if isinstance(output, SeededOutput) else None


def images_per_seed(output: MethodOutput) -> tuple[torch.Tensor, ...]:
    """The images of each training seed (one entry for a method trained once or not at all)."""
    return output.seed_images if isinstance(output, SeededOutput) else (output.images,)


def per_image_psnr(seed_images: tuple[torch.Tensor, ...], target: torch.Tensor) -> torch.Tensor:
    """``(n,)`` PSNR (dB) of each of the ``n`` target images ``(n, L, L)``, averaged over the
    seeds' denoised images (each at least ``n`` long)."""
    n, target = len(target), target.double()
    return torch.stack([psnr(images[:n].double(), target) for images in seed_images]).mean(0)


def seed_metrics(output: MethodOutput, target: torch.Tensor, pixel_size_A: float) -> dict:
    """2D row keys of ``output`` on the ``n = len(target)`` first test images: ``psnr``,
    ``ssim``, ``frc_0143`` (means over seeds; FRC None if a seed's is not finite) and, for a
    learnt method, ``n_seeds``, ``training_seeds``, ``seed_psnrs`` and the sample standard
    deviations ``psnr_seed_sd``, ``ssim_seed_sd`` (None with one seed)."""
    n = len(target)
    per_seed = [metrics_2d(images[:n], target, pixel_size_A) for images in images_per_seed(output)]
    frc = [m["frc_0143"] for m in per_seed]
    row = {"psnr": _mean([m["psnr"] for m in per_seed]),
           "ssim": _mean([m["ssim"] for m in per_seed]),
           "frc_0143": None if any(f is None or not math.isfinite(f) for f in frc)
           else _mean(frc)}
    if isinstance(output, SeededOutput):
        psnrs = [m["psnr"] for m in per_seed]
        row |= {"n_seeds": len(per_seed), "training_seeds": list(output.seeds),
                "seed_psnrs": psnrs, "psnr_seed_sd": _sd(psnrs),
                "ssim_seed_sd": _sd([m["ssim"] for m in per_seed])}
    return row
