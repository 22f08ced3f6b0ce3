"""The benchmark on real particles: each particle's closest projection is its ground truth.

Real particles have no clean image. Following Zhang et al. (ICASSP 2024), a particle with a
refined pose is compared with the map projected at that pose and origin, modulated by its
CTF — the *closest projection* ``c_i = CTF_i ⊛ P(A_i) V``. The grey levels of an image are
an arbitrary affine function of the projected density, so the reference is the least-squares
fit ``r_i = a_i c_i + b_i`` to the noisy image ``x_i`` (:func:`fit_references`); ``a_i``
absorbs a little noise (its relative error is about ``1 / sqrt(SNR · pixels)``), which is
the same for every method scored against ``r_i``.

The learnt methods are trained on a *matched simulation*: particles simulated from the same
map at the real particles' box, pixel size, CTFs, SNR and noise spectrum
(:mod:`cryodiff.simulate_like`, or any simulated folder given with ``training_dir``). Every
method of the benchmark's registry then denoises the real particles, which are first put on
the simulation's grey-level scale image by image (:func:`cryodiff.denoise.match_training_scale`),
and is scored in 2D against the references: PSNR, SSIM and FRC (as on simulated data; no 3D
here). Learnt methods train once per training seed, as on simulated data, and their rows give
the mean over the seeds with the spread between them. A STAR without poses cannot be scored
this way and is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryodiff.benchmark.conditions import Condition, Split
from cryodiff.benchmark.config import BASELINE_METHODS, BenchmarkConfig
from cryodiff.benchmark.evaluate import finite_or_none
from cryodiff.ctf import CtfParams, apply_ctf, ctf_2d
from cryodiff.errors import CryodiffError


@dataclass(frozen=True)
class RealReferences:
    """Real particles ``noisy (N, L, L)`` and their references (see the module docstring).

    ``reference`` ``a_i c_i + b_i`` (the CTF in it), ``reference_no_ctf`` ``a_i P_i + b_i``;
    ``scale`` ``a_i`` and ``offset`` ``b_i`` ``(N,)``; ``correlation`` ``(N,)`` between the
    image and its closest projection; ``indices`` the particles' rows in the STAR file.
    """

    noisy: torch.Tensor
    reference: torch.Tensor
    reference_no_ctf: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor
    correlation: torch.Tensor
    indices: np.ndarray


def closest_projections(volume: torch.Tensor, rotations: torch.Tensor, shifts_px: torch.Tensor,
                        ctf: CtfParams | None, pixel_size_A: float,
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(CTF ⊛ projection, projection)``, each ``(N, L, L)``, of ``volume (L, L, L)`` at
    RELION matrices ``rotations (N, 3, 3)`` and ``shifts_px (N, 2)`` (as
    :func:`cryodiff.projection.project` takes them); without ``ctf`` both are the projection."""
    from cryodiff.projection import project

    projection = project(volume, rotations.to(volume.dtype), shifts_px.to(volume.dtype))
    if ctf is None:
        return projection, projection
    grid = ctf_2d(ctf, volume.shape[-1], pixel_size_A, dtype=projection.dtype,
                  device=projection.device)
    return apply_ctf(projection, grid), projection


def fit_references(images: torch.Tensor, model: torch.Tensor,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares ``a, b (N,)`` minimising ``‖x_i − (a_i m_i + b_i)‖²`` per image.

    ``a_i = cov(x_i, m_i) / var(m_i)``, ``b_i = mean(x_i) − a_i mean(m_i)`` (over pixels).
    Returns ``(a, b, corr)`` with ``corr`` the Pearson correlation of ``x_i`` and ``m_i``.
    """
    x = images.double() - images.double().mean(dim=(-2, -1), keepdim=True)
    m = model.double() - model.double().mean(dim=(-2, -1), keepdim=True)
    cross, energy = (x * m).sum(dim=(-2, -1)), (m * m).sum(dim=(-2, -1))
    tiny = torch.finfo(torch.float64).tiny
    a = cross / energy.clamp_min(tiny)
    b = images.double().mean(dim=(-2, -1)) - a * model.double().mean(dim=(-2, -1))
    corr = cross / (energy * (x * x).sum(dim=(-2, -1))).sqrt().clamp_min(tiny)
    return a, b, corr


def _ctf_rows(ctf: CtfParams | None, rows: np.ndarray) -> CtfParams | None:
    if ctf is None:
        return None
    index = torch.as_tensor(rows)
    return CtfParams(**{f.name: torch.as_tensor(getattr(ctf, f.name))[index]
                        if torch.as_tensor(getattr(ctf, f.name)).ndim else getattr(ctf, f.name)
                        for f in dataclasses.fields(CtfParams)})


def _checked_particles(star: str | os.PathLike):
    from cryodiff.io.star import read_particles

    particles = read_particles(star)
    if particles.eulers_deg is None:
        raise CryodiffError("the STAR file has no poses (rlnAngleRot/Tilt/Psi): real particles "
                            "are scored against their closest projection, which needs refined "
                            "poses", path=star)
    sizes = np.unique(particles.pixel_size_A)
    if len(sizes) != 1 or particles.box is None:
        raise CryodiffError("the real-particle benchmark needs one box and one pixel size",
                            path=star)
    return particles, float(sizes[0])


def load_references(star: str | os.PathLike, map_path: str | os.PathLike, box: int,
                    n_particles: int | None = None, map_pixel_size_A: float | None = None,
                    ) -> tuple[RealReferences, Split, torch.Tensor, float]:
    """Read the first ``n_particles`` (all if None) particles of ``star``, Fourier-resized to
    ``box`` pixels, and their references from ``map_path`` (resampled to the particles' box
    and pixel size; ``map_pixel_size_A`` overrides its header).

    Returns ``(references, split, volume, pixel_size_A)``: ``split`` is the test
    :class:`~cryodiff.benchmark.conditions.Split` (noisy = the real images, ``clean_ctf`` /
    ``clean`` = the references), ``volume`` the map at ``box`` and the new pixel size.
    """
    from cryodiff.fourier import fourier_resize
    from cryodiff.geometry import euler_to_matrix
    from cryodiff.io.images import iter_image_batches
    from cryodiff.map_resample import load_map_for
    from cryodiff.projection import relion_shifts_px

    particles, pixel_size_A = _checked_particles(star)
    n = len(particles) if n_particles is None else min(n_particles, len(particles))
    rows = np.arange(n)
    pixel_size_A = pixel_size_A * particles.box / box
    noisy = torch.cat([fourier_resize(images.double(), box, 2)
                       for _, images in iter_image_batches(particles, 256, rows)])
    volume = load_map_for(map_path, box, pixel_size_A, map_pixel_size_A)[0].double()
    eulers = torch.as_tensor(np.asarray(particles.eulers_deg)[rows], dtype=torch.float64)
    shifts_A = torch.as_tensor(np.asarray(particles.shifts_A)[rows], dtype=torch.float64)
    rotations = euler_to_matrix(eulers)
    shifts_px = relion_shifts_px(shifts_A, pixel_size_A, box)
    ctf = _ctf_rows(particles.ctf, rows)
    with_ctf, projection = closest_projections(volume, rotations, shifts_px, ctf, pixel_size_A)
    a, b, corr = fit_references(noisy, with_ctf)
    reference = a[:, None, None] * with_ctf + b[:, None, None]
    reference_no_ctf = a[:, None, None] * projection + b[:, None, None]
    references = RealReferences(noisy.float(), reference.float(), reference_no_ctf.float(),
                                a, b, corr, rows)
    grid = None if ctf is None else ctf_2d(ctf, box, pixel_size_A).float()
    split = Split(noisy.float(), reference_no_ctf.float(), reference.float(), ctf, grid,
                  rotations.float(), shifts_px.float(), eulers, shifts_A)
    return references, split, volume.float(), pixel_size_A


def _rescaled(split: Split, like: torch.Tensor) -> Split:
    """``split`` with each image (and its references, by the same affine map) put at the
    mean and std of the simulated particles ``like``: the methods fitted on the simulation
    see real particles on its grey-level scale."""
    from cryodiff.denoise import match_training_scale
    from cryodiff.training.data import Normalisation

    norm = Normalisation(float(like.double().mean()), float(like.double().std()), 0.0, 1.0)
    noisy, a, b = match_training_scale(split.noisy, norm)
    return dataclasses.replace(
        split, noisy=noisy.float(), clean=(a * split.clean.double() + b).float(),
        clean_ctf=(a * split.clean_ctf.double() + b).float())


def read_simulated_split(folder: str | os.PathLike, rows: slice) -> Split:
    """The particles ``rows`` of a simulated data-set folder (``particles.mrcs``,
    ``clean_ctf.mrcs``, ``clean.mrcs``, ``particles.star``) as a
    :class:`~cryodiff.benchmark.conditions.Split`."""
    from cryodiff.geometry import euler_to_matrix
    from cryodiff.io.mrc import read_stack
    from cryodiff.io.star import read_particles
    from cryodiff.projection import relion_shifts_px

    folder = Path(folder)
    files = [folder / f for f in ("particles.mrcs", "clean_ctf.mrcs", "clean.mrcs",
                                  "particles.star")]
    for file in files:
        if not file.is_file():
            raise CryodiffError(f"missing {file.name} (expected a simulated data-set folder)",
                                path=folder)
    noisy, clean_ctf, clean = (read_stack(f)[rows].float() for f in files[:3])
    particles = read_particles(files[3])
    index = np.arange(len(particles))[rows]
    box, pixel_size_A = noisy.shape[-1], float(particles.pixel_size_A[0])
    eulers = torch.as_tensor(np.asarray(particles.eulers_deg)[index], dtype=torch.float64)
    shifts_A = torch.as_tensor(np.asarray(particles.shifts_A)[index], dtype=torch.float64)
    ctf = _ctf_rows(particles.ctf, index)
    grid = None if ctf is None else ctf_2d(ctf, box, pixel_size_A).float()
    return Split(noisy, clean, clean_ctf, ctf, grid, euler_to_matrix(eulers).float(),
                 relion_shifts_px(shifts_A, pixel_size_A, box).float(), eulers, shifts_A)


def matched_simulation(star: str | os.PathLike, map_path: str | os.PathLike, work_dir: Path,
                       box: int, n_particles: int, seed: int = 0,
                       map_pixel_size_A: float | None = None) -> Path:
    """A simulated folder matched to ``star`` at ``box`` pixels (:mod:`cryodiff.simulate_like`),
    made in ``work_dir`` (reused when it is complete)."""
    from cryodiff.resample import resample_particles
    from cryodiff.simulate_like import simulate_like

    particles, _ = _checked_particles(star)
    source = Path(star)
    if particles.box != box:
        source = resample_particles(star, work_dir / f"particles_{box}px.mrcs", box)
    out = work_dir / "matched"
    if (out / "simulation.json").is_file():
        return out
    return Path(simulate_like(source, map_path, out, n_particles, seed=seed,
                              map_pixel_size_A=map_pixel_size_A))


def real_condition(star: str | os.PathLike, map_path: str | os.PathLike, training_dir: Path,
                   config: BenchmarkConfig, n_particles: int | None = None,
                   map_pixel_size_A: float | None = None,
                   ) -> tuple[Condition, RealReferences]:
    """The benchmark :class:`Condition` of real particles: training and validation splits from
    the simulated ``training_dir`` (its last ``config.n_val`` particles validate), the test
    split the real particles against their references."""
    references, test, volume, pixel_size_A = load_references(
        star, map_path, config.box, n_particles, map_pixel_size_A)
    simulated = Path(training_dir)
    train = read_simulated_split(simulated, slice(0, -config.n_val))
    val = read_simulated_split(simulated, slice(-config.n_val, None))
    if train.noisy.shape[-1] != config.box:
        raise CryodiffError(f"the simulated particles are {train.noisy.shape[-1]} px, the "
                            f"benchmark uses {config.box} px", path=simulated)
    summary = simulated / "simulation.json"
    snr = float(json.loads(summary.read_text()).get("snr", 0.0)) if summary.is_file() else 0.0
    # Real particles have no simulation settings or noise levels (unused by the methods).
    condition = Condition(f"real_{Path(star).stem}", str(map_path), snr, volume, pixel_size_A,
                          None, None, train, val, _rescaled(test, train.noisy))
    return condition, references


def score_real(outputs, test: Split, pixel_size_A: float, tag: str) -> list[dict]:
    """2D rows (PSNR, SSIM, FRC-0.143, gain over the raw particles, paired gap to the best)
    of every method output against the references ``test.clean_ctf``; a learnt method
    trained under several seeds gets their means, the spread between seeds and, for the
    paired gap, each particle's PSNR averaged over the seeds
    (:func:`~cryodiff.benchmark.seeds.seed_metrics`)."""
    from cryodiff.benchmark.evaluate import paired_difference
    from cryodiff.benchmark.run import SEED_KEYS, _json_ready
    from cryodiff.benchmark.seeds import (images_per_seed, per_image_psnr, seed_metrics,
                                          training_seeds_of)

    rows, per_image = [], {}
    noisy_psnr = None
    for output in outputs:
        row = {"method": output.method, "family": output.family, "map": tag, "snr": None,
               "psnr": None, "ssim": None, "frc_0143": None, **dict.fromkeys(SEED_KEYS),
               "training_seeds": training_seeds_of(output), "psnr_gain_db": None,
               "psnr_vs_best_db": None, "psnr_vs_best_sem": None, "n_test_2d": None,
               "seconds_per_image": finite_or_none(output.seconds_per_image),
               "fit_seconds": finite_or_none(output.fit_seconds), "fsc_0143_A": None,
               "fsc_05_A": None, "n_test_3d": None, "status": output.status,
               "note": output.note}
        if output.images is not None:
            n = min(len(output.images), len(test))
            row |= seed_metrics(output, test.clean_ctf[:n], pixel_size_A)
            row["n_test_2d"] = n
            if output.method == "noisy":
                noisy_psnr = row["psnr"]
            if n == len(test):
                per_image[output.method] = per_image_psnr(images_per_seed(output),
                                                          test.clean_ctf)
        rows.append(row)
    for row in rows:
        if row["psnr"] is not None and noisy_psnr is not None:
            row["psnr_gain_db"] = row["psnr"] - noisy_psnr
    full = [r for r in rows if r["method"] in per_image and r["method"] != "noisy"
            and math.isfinite(r["psnr"])]
    if full:
        best = max(full, key=lambda r: r["psnr"])
        for row in rows:
            if row["method"] in per_image:
                row["psnr_vs_best_db"], row["psnr_vs_best_sem"] = paired_difference(
                    per_image[row["method"]], per_image[best["method"]])
    return [{k: _json_ready(v) for k, v in row.items()} for row in rows]


def run_real_benchmark(star: str | os.PathLike, map_path: str | os.PathLike,
                       config: BenchmarkConfig, out_dir: str | os.PathLike,
                       training_dir: str | os.PathLike | None = None,
                       n_particles: int | None = None, map_pixel_size_A: float | None = None,
                       checkpoint: str | os.PathLike | None = None, command: str | None = None,
                       progress: bool = True, log: Callable[[str], None] = print) -> list[dict]:
    """Score every method of ``config`` on real particles (see the module docstring).

    ``training_dir``: a simulated folder at ``config.box`` to train and fit the methods on
    (default: a matched simulation of ``config.n_train + config.n_val`` particles made in
    ``out_dir/work``). ``n_particles``: real particles scored (default ``config.n_test_2d``).
    Writes ``out_dir/results.json`` and ``results.md``; returns the rows.
    """
    from cryodiff.benchmark.methods import (MethodOutput, check_sr3_checkpoint, load_sr3,
                                            noisy_output)
    from cryodiff.benchmark.run import REFINED_ROWS, baseline_output, seeded_sr3_outputs
    from cryodiff.denoise import check_particles_fit
    from cryodiff.training.loop import select_device

    out = Path(out_dir)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if training_dir is None:
        training_dir = matched_simulation(star, map_path, work, config.box,
                                          config.n_train + config.n_val, config.seed,
                                          map_pixel_size_A)
        log(f"matched simulation in {training_dir} ({time.perf_counter() - start:.0f} s)")
    n = config.n_test_2d if n_particles is None else n_particles
    condition, references = real_condition(star, map_path, Path(training_dir), config, n,
                                           map_pixel_size_A)
    count = len(condition.test)
    # Every method denoises all the scored particles; nothing is reconstructed in 3D.
    config = dataclasses.replace(config, n_test_3d=count, n_test_2d=count,
                                 n_test_slow=min(config.n_test_slow, count), methods_3d=(),
                                 pose_search=False)
    device = select_device(config.device, verbose=False)
    if checkpoint is not None and "sr3" in config.methods:  # refuse a misfit before training
        loaded = load_sr3(checkpoint, config.device)
        check_particles_fit(loaded, config.box, condition.pixel_size_A)
        check_sr3_checkpoint(loaded.config, config, checkpoint)
    outputs = [noisy_output(condition)]
    for name in BASELINE_METHODS:  # trained baselines: once per training seed
        if name in config.methods:
            outputs.append(baseline_output(name, condition, config, device, work))
            log(f"  {name}: {outputs[-1].status}")
    if "sr3" in config.methods:
        # sr3-mse's post-processors need many samples of the training particles at every
        # step count: not run here (a skipped row below).
        sr3_config = dataclasses.replace(
            config, methods=tuple(m for m in config.methods if m != "sr3-mse"))
        sr3_outputs, _ = seeded_sr3_outputs(condition, sr3_config, work, checkpoint,
                                            progress, log)
        outputs += sr3_outputs
    for method, family in REFINED_ROWS:
        if family in config.methods and not any(o.family == family for o in outputs):
            note = ("builds on SR3: needs sr3" if "sr3" not in config.methods else
                    "not run on real particles (its post-processors need many samples of the "
                    "training particles at every step count)")
            outputs.append(MethodOutput(config.sr3_row(method), family, None,
                                        status="skipped", note=note))
    rows = score_real(outputs, condition.test, condition.pixel_size_A, condition.map_name)
    _write(out, rows, config, references, condition, star, map_path, Path(training_dir),
           command, time.perf_counter() - start)
    return rows


def _write(out: Path, rows: list[dict], config: BenchmarkConfig, references: RealReferences,
           condition: Condition, star, map_path, training_dir: Path, command: str | None,
           seconds: float) -> None:
    from cryodiff.benchmark.report import table
    from cryodiff.io.atomic import write_json_atomic, write_text_atomic

    summary = {"particles": str(star), "map": str(map_path), "training": str(training_dir),
               "box": config.box, "pixel_size_A": condition.pixel_size_A,
               "n_particles": len(references.indices),
               "median_reference_correlation": float(references.correlation.median()),
               "median_reference_scale": float(references.scale.median()),
               "training_snr": condition.snr, "wall_seconds": seconds, "command": command,
               "config": config.to_dict(), "rows": rows}
    write_json_atomic(out / "results.json", summary)
    lines = ["# Real particles against their closest projections", "",
             f"Particles `{star}` ({len(references.indices)} scored, resampled to "
             f"{config.box} px at {condition.pixel_size_A:.4g} Å/px), map `{map_path}`; "
             f"learnt methods trained on `{training_dir}`.",
             f"Median correlation of a particle with its closest projection: "
             f"{summary['median_reference_correlation']:.3f}. 2D only: PSNR, SSIM and FRC "
             "against the references; the 3D columns are empty.", "",
             table(rows), ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    write_text_atomic(out / "results.md", "\n".join(lines))
