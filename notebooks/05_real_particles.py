# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # 05 — Real particles
#
# Notebooks 01–04 worked on simulated particles, where the clean image is known. Real
# particles are different in three ways that matter to a learnt denoiser:
#
# * **their noise is not the simulator's** — it is coloured (the detector, the ice, the
#   neighbours of each particle) and its level is whatever the microscope gave;
# * **their grey levels have arbitrary units** — each package normalises differently;
# * **there is no clean image** to train on, or to score against.
#
# The paper (Zhang et al., ICASSP 2024) answers the first and third points with a *matched
# simulation*: estimate the real particles' SNR and noise spectrum, simulate training pairs
# from a map of the same molecule with exactly those, train on them, and apply the model to
# the real particles. Where the real particles have refined poses, each one's *closest
# projection* (the map projected at its pose, with its CTF) serves as its ground truth.
#
# This notebook runs that pipeline at CPU size on the bundled real particles
# (`data/real_particles/empiar_10076_7.star`: 7 particles of a 50S ribosome assembly
# intermediate, EMPIAR-10076, 320² at 1.31 Å/px) with the bundled ribosome map. Two honest
# caveats about the bundled pair: the map is a *Plasmodium falciparum* 80S ribosome
# (EMD-2660, downsampled), not the particles' bacterial 50S — a stand-in of similar size and
# composition, not the same molecule — and the particles have **no poses**, so there is no
# closest projection: here we can look at the outputs and describe them, not score them.
# The `gpu-paper` preset points the same notebook at the paper's real data (EMPIAR-10081,
# HCN1, with its map EMD-8511; see the end).

# %% tags=["parameters"]
run_dir = "runs/notebooks"  # relative to the repository root (also when the kernel runs in notebooks/)
device = "auto"
star = "data/real_particles/empiar_10076_7.star"  # real particles (RELION STAR + stack)
map_path = "data/ribosome70S/ribosome70S_65.mrc"  # a map of (nearly) the same molecule
map_pixel_size_A = 7.4  # the bundled map's header has none (data/README.md); None: the header's
particle_diameter_A = 260.0  # for the noise estimate from the background (STAR without poses)
box = 32  # particles are Fourier-cropped to this box before anything else (320 → 32: 13.1 Å/px)
n_simulated = 256  # matched-simulation particles (training + validation)
train_preset = "ci"
train_steps = 150  # SR3 optimiser steps (the ci preset's model)
post_train_steps = 30  # post-processor steps (0: no post-processor)
post_n_samples = 32  # SR3 samples the post-processor learns from
sampling_steps = 10
n_particles = None  # real particles to denoise (None: all)
seed = 0
show_solutions = False  # True prints the exercises' solutions (for teachers)

# %%
from cryodiff.threads import configure_threads

configure_threads()  # before torch loads: one thread per idle core (cryodiff/threads.py)

import dataclasses
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from cryodiff.benchmark import get_preset as benchmark_preset
from cryodiff.benchmark.real import run_real_benchmark
from cryodiff.benchmark.real_compare import background_ratio, denoise_real
from cryodiff.cli import main as cryodiff_cli
from cryodiff.denoise import load_denoiser
from cryodiff.errors import CryodiffError
from cryodiff.fourier import fft2_centered
from cryodiff.io.atomic import write_json_atomic
from cryodiff.io.images import load_images
from cryodiff.io.star import read_particles
from cryodiff.noise import radial_power_spectrum
from cryodiff.noise_estimate import estimate_noise
from cryodiff.notebook_runner import resolve_run_dir
from cryodiff.plots.ctf import plot_ctf
from cryodiff.plots.images import plot_power_spectra, show_image_rows
from cryodiff.plots.noise import plot_noise_spectrum
from cryodiff.resample import resample_particles
from cryodiff.simulate_like import simulate_like
from cryodiff.training.config import get_preset, with_overrides
from cryodiff.training.data import PairedStackData
from cryodiff.training.loop import select_device, train
from cryodiff.training.postprocess import train_postprocessor

run = resolve_run_dir(run_dir)
out_dir = run / "real"
out_dir.mkdir(parents=True, exist_ok=True)
repository = resolve_run_dir(".")
star_path, map_file = (Path(p).expanduser() for p in (star, map_path))
star_path = star_path if star_path.is_absolute() else repository / star_path
map_file = map_file if map_file.is_absolute() else repository / map_file
started = time.perf_counter()

# %% [markdown]
# ## Look at the particles
# The raw particles at their own size. At this defocus and a few electrons per Å² a particle
# is barely visible; its power spectrum shows more: the rings are the zeros of the CTF
# (Thon rings), where the microscope transferred no signal and only noise is left.

# %%
particles = read_particles(star_path)
raw = load_images(particles, range(len(particles) if n_particles is None
                                   else min(n_particles, len(particles))))
raw_pixel_A = float(particles.pixel_size_A[0])
print(f"{len(particles)} particles, {particles.box}² at {raw_pixel_A} Å/px; poses: "
      f"{'yes' if particles.eulers_deg is not None else 'no'}; CTF: "
      f"{'yes' if particles.ctf is not None else 'no'}")
show_image_rows({"raw": raw}, n=6)
plt.show()

# %%
power_2d = fft2_centered(raw.double()).abs().square().mean(0)
figure, axis = plt.subplots(figsize=(4, 4))
axis.imshow(power_2d.log().cpu(), cmap="gray", origin="lower")
axis.set_title("mean power spectrum (log): Thon rings", fontsize=9)
axis.set_xticks([])
axis.set_yticks([])
plt.show()
if particles.ctf is not None:
    plot_ctf(particles.ctf, particles.box, raw_pixel_A, index=0)
    plt.show()

# %% [markdown]
# ## A CPU-sized copy
# A 320² particle is far more than a CPU-trained model can take in a minute. Fourier
# cropping to `box` pixels keeps the whole field of view and drops the frequencies beyond
# the new Nyquist limit (no aliasing); the pixel size grows by `320 / box`. The STAR written
# beside the new stack keeps the input's optics table and particle columns, with the new box,
# pixel size and image names. A model trained at this box and pixel size can only be applied
# to particles at this box and pixel size (`cryodiff denoise` refuses others).

# %%
small_star = resample_particles(star_path, out_dir / f"particles_{box}px.mrcs", box)
small = read_particles(small_star)
pixel_size_A = float(small.pixel_size_A[0])
print(f"resampled to {box}² at {pixel_size_A:.3g} Å/px -> {small_star}")

# %% [markdown]
# ## The noise: estimated, and compared with white noise
# Without poses, the noise is estimated from the pixels outside the particle (a disk of
# `particle_diameter_A`); with poses and a map, from the residual after subtracting each
# particle's fitted closest projection (`cryodiff.noise_estimate`). The dotted line is white
# noise of the same variance, which is what a simple simulator would add: the real noise
# is not flat.

# %%
estimate = estimate_noise(small_star, map_file if small.eulers_deg is not None else None,
                          particle_diameter_A=particle_diameter_A,
                          map_pixel_size_A=map_pixel_size_A)
plot_noise_spectrum(estimate)
plt.show()
spectrum = torch.as_tensor(estimate.noise_spectrum)
half = len(spectrum) // 2
colour = float(spectrum[1:half].mean() / spectrum[half:].mean())
print(f"SNR {estimate.snr:.3g} ({estimate.method}); noise power below half Nyquist is "
      f"{colour:.2f}× the power above it (1 for white noise)")
small_images = load_images(small, range(len(small)))
plot_power_spectra({"real particles": radial_power_spectrum(small_images),
                    "noise estimate": spectrum}, box, pixel_size_A)
plt.show()

# %% [markdown]
# ## A matched simulation, and a model trained on it
# `simulate_like` draws random poses of the map, takes each simulated particle's CTF from a
# real particle, and adds Gaussian noise with the estimated spectrum at the estimated SNR
# (`cryodiff simulate --like` on the command line). The model is the `ci` preset, trained
# for `train_steps` steps — a minute on a CPU, nowhere near converged.

# %%
matched = simulate_like(small_star, map_file, out_dir / "matched", n_simulated, seed=seed,
                        particle_diameter_A=particle_diameter_A,
                        map_pixel_size_A=map_pixel_size_A, progress=False)
simulation = json.loads((matched / "simulation.json").read_text())
print(f"matched simulation: {n_simulated} particles, measured SNR "
      f"{simulation['measured_snr']:.3g} (estimate {estimate.snr:.3g})")
config = with_overrides(get_preset(train_preset), box=box, steps=train_steps,
                        post_train_steps=post_train_steps, post_n_samples=post_n_samples,
                        n_val=min(64, n_simulated // 5), val_every=max(1, train_steps),
                        checkpoint_every=max(1, train_steps), seed=seed, device=device)
data = PairedStackData.from_folder(matched, config)
train_dir = out_dir / f"train_{box}px_{train_steps}steps"
if not (train_dir / "checkpoints").is_dir():  # a rerun into the same run_dir reuses the model
    train(config, train_dir, data, progress=False)
    if post_train_steps > 0:
        train_postprocessor(train_dir, data, device=device, progress=False)
denoiser = load_denoiser(train_dir, select_device(device, verbose=False))
validation = next(r for r in reversed(json.loads((train_dir / "metrics.json").read_text()))
                  if "val_psnr" in r)
print(f"on simulated validation particles: {validation['val_psnr']:.2f} dB "
      f"(noisy {validation['val_input_psnr']:.2f} dB)")

# %% [markdown]
# ## Denoise the real particles
# With the command line, as a user would: the output STAR keeps every column of the input
# (poses, CTF, micrographs…) and points `rlnImageName` at the denoised stack; RELION,
# cryoSPARC and ASPIRE read it. Each particle is mapped to the simulation's grey levels,
# denoised and mapped back (`--keep-scale` turns that off).

# %%
denoised_stack = out_dir / "denoised.mrcs"
assert cryodiff_cli(["denoise", str(small_star), "--checkpoint", str(train_dir), "--out",
                     str(denoised_stack), "--steps", str(sampling_steps), "--device",
                     str(select_device(device, verbose=False))]) == 0
print(read_particles(denoised_stack.with_suffix(".star")).table.columns.tolist())

# %% [markdown]
# ## Side by side: SR3, Wiener and Topaz-Denoise
# * **Wiener** — the CTF-aware linear filter, its signal and noise spectra measured on the
#   matched simulation.
# * **Topaz-Denoise** — a pretrained network shipped with `topaz-em` (of its 2D models, the
#   one scoring best on the matched simulation), trained by Noise2Noise on *real
#   micrographs* of other samples: the one method here that learnt from real noise; its
#   weights never saw this simulation.
# * **SR3** (+ post-processor) — trained on the matched simulation.
#
# Without poses there is no reference to score against. What can be measured is how much
# each method flattened the background outside the particle (`background_ratio`: its std
# after / before); a method can score well on it by erasing everything, so read it with the
# images.

# %%
methods = ["wiener", "topaz"]
try:
    outputs = denoise_real(small_star, matched, methods, denoiser, steps=sampling_steps,
                           n_particles=n_particles, seed=seed)
except CryodiffError as error:  # Topaz is an optional peer (topaz-em): go on without it
    print(f"Topaz-Denoise unavailable ({error}); comparing without it")
    methods = ["wiener"]
    outputs = denoise_real(small_star, matched, methods, denoiser, steps=sampling_steps,
                           n_particles=n_particles, seed=seed)
show_image_rows(outputs, n=6)
plt.show()
radius_px = particle_diameter_A / 2 / pixel_size_A
ratios = {name: background_ratio(images, outputs["noisy"], radius_px)
          for name, images in outputs.items() if name != "noisy"}
ratios

# %% [markdown]
# ## Scores against the closest projections (particles with poses only)
# With refined poses and the map they were refined against, `cryodiff benchmark --particles
# STAR --map MAP` scores every method (also the trained baselines) against each particle's
# closest projection, with PSNR, SSIM and FRC. The bundled particles have no poses, so this
# cell runs only for a STAR that has them.

# %%
benchmark_rows = None
if small.eulers_deg is not None:
    bench = dataclasses.replace(
        benchmark_preset("ci"), box=box, n_val=config.n_val, train_steps=train_steps,
        sr3_steps=(sampling_steps,), sr3_fast_steps=sampling_steps, posterior_samples=1,
        methods=("lowpass", "wiener", "topaz", "sr3"), device=device, seed=seed)
    benchmark_rows = run_real_benchmark(small_star, map_file, bench, out_dir / "benchmark",
                                        training_dir=matched, n_particles=n_particles,
                                        map_pixel_size_A=map_pixel_size_A,
                                        checkpoint=train_dir, progress=False)
    display(pd.DataFrame(benchmark_rows)[["method", "psnr", "ssim", "frc_0143", "status"]])
else:
    print("no poses in the STAR: no closest projections, no PSNR/SSIM/FRC on real particles")

# %%
summary = {
    "star": str(star), "map": str(map_path), "n_particles": len(outputs["noisy"]),
    "box_original": int(particles.box), "pixel_size_original_A": raw_pixel_A,
    "box": box, "pixel_size_A": pixel_size_A, "has_poses": particles.eulers_deg is not None,
    "snr_estimate": estimate.snr, "noise_method": estimate.method,
    "noise_low_over_high": colour, "simulated_snr": simulation["measured_snr"],
    "n_simulated": n_simulated, "train_steps": train_steps,
    "val_psnr": validation["val_psnr"], "val_input_psnr": validation["val_input_psnr"],
    "methods": sorted(ratios), "background_ratio": ratios,
    "denoised_star": str(denoised_stack.with_suffix(".star")),
    "benchmark_rows": benchmark_rows, "seconds": time.perf_counter() - started,
}
write_json_atomic(run / "05_real_particles.json", summary)
{k: v for k, v in summary.items() if k != "benchmark_rows"}

# %% [markdown]
# ## What this shows, and the paper's real experiment
# On the bundled particles the numbers above describe, they do not score: the 7 particles
# have no poses, the map is a related ribosome rather than theirs, and the model is a
# one-minute CPU model. How coloured the noise is depends on the scale: at the `ci` size
# (13.1 Å/px, where the cropping has removed everything finer than 26 Å) the background's
# spectrum was measured nearly flat (low/high power ratio ≈ 1.1); the matched simulation
# uses the measured spectrum whatever its shape. `docs/benchmarks.md` ("Real particles")
# records the numbers of a run.
#
# The paper's real experiment uses EMPIAR-10081 (human HCN1) and its map EMD-8511:
#
# ```bash
# cryodiff fetch EMD-8511                       # ~/.cache/cryodiff/EMD-8511/emd_8511.map
# cryodiff fetch EMPIAR-10081 --particles 2000  # .../EMPIAR-10081/particles_first2000.star
# cryodiff notebooks --preset gpu-paper         # this notebook at the paper's size, on a GPU
# ```
#
# The `gpu-paper` preset (`cryodiff/notebook_runner.py`) sets `star`, `map_path` to those
# files, `box = 128`, `n_simulated = 50000` and the `gpu-paper` training preset. Check the
# particle diameter and the box against the fetched data first: the registry notes that the
# EMPIAR-10081 layout and pixel size were inferred from ASPIRE's example, not confirmed.
# If that STAR carries refined poses, the last section scores every method against the
# closest projections; otherwise `cryodiff benchmark --particles` needs a STAR from a
# refinement (RELION `run_data.star`) of those particles.

# %% [markdown] tags=["course"]
# ## Exercises
#
# From "change a parameter and predict" to "write a function". Write your prediction down
# *before* you check it. Each exercise cell runs as it is; set `show_solutions = True` in the
# parameters cell to print the solutions (they live in `cryodiff/course/real.py`, where the
# test suite checks them).

# %% tags=["course"]
from cryodiff.course import real as course
from cryodiff.course import show_solution

# %% [markdown] tags=["exercise"]
# **Exercise 1 — predict, then look.** The STAR gives each particle's defocus
# (`rlnDefocusU`/`V`), voltage, Cs and amplitude contrast. At what spatial frequency (1/Å)
# should the first zero of particle 0's CTF lie, and at what ring radius (pixels) of the raw
# particles' power spectrum above? Is the first dark Thon ring there? Will it still be there
# in the `box`-pixel copy the rest of the notebook works on?

# %% tags=["exercise"]
my_prediction = {"first zero (1/Å)": None, "ring radius in the raw spectrum (px)": None,
                 "visible after cropping": None}
if show_solutions:
    show_solution(course.first_zero_of_particle)
    show_solution(course.thon_ring_minimum_px)
    zero = course.first_zero_of_particle(particles, 0)
    seen_px = course.thon_ring_minimum_px(raw, zero["first_zero_radius_px"])
    print(f"defocus {zero['defocus_A']:.0f} Å: first zero at {zero['first_zero_A_inv']:.4f} 1/Å "
          f"({zero['first_zero_period_A']:.1f} Å), ring {zero['first_zero_radius_px']:.1f} px "
          f"of the raw {particles.box}² spectrum; the darkest ring near it: {seen_px} px")
    small_zero = course.first_zero_of_particle(particles, 0, box=box, pixel_size_A=pixel_size_A)
    print(f"in the {box}² copy it would be ring {small_zero['first_zero_radius_px']:.1f}, "
          f"Nyquist is ring {box // 2}")

# %% [markdown] tags=["exercise"]
# **Exercise 2 — change a parameter and predict.** The SNR above was estimated from the
# background outside a disk of `particle_diameter_A` Å. Predict how the estimate changes if
# the disk is half the particle's size, and if it is 15 % larger: higher, lower, unchanged?
# Why? Then look at what the bundled particles give, and explain what you see.

# %% tags=["exercise"]
diameters_A = [f * particle_diameter_A for f in (0.5, 0.75, 1.0, 1.15)]
my_prediction = dict.fromkeys(diameters_A)  # SNR for each diameter (Å)
if show_solutions:
    show_solution(course.snr_by_diameter)
    for diameter_A, snr in course.snr_by_diameter(small, diameters_A).items():
        print(f"particle diameter {diameter_A:.0f} Å: SNR {snr:.3g}")

# %% [markdown] tags=["exercise"]
# **Exercise 3 — write a function.** Write `background_noise_spectrum(images, radius_px)`:
# the radial noise power spectrum of `images (N, L, L)` from the pixels outside the centred
# disk of `radius_px` pixels (`cryodiff.masks.disk_mask`). Remove each image's background
# mean, zero the disk, take `|FFT|²` (`cryodiff.fourier.fft2_centered`) and divide it by the
# number of background pixels, so that white noise of variance σ² gives σ² at every
# frequency; then average over images and rings. Compare it with `estimate.noise_spectrum`
# (`cryodiff.noise_estimate`, which tapers its window): where do they differ, and why?

# %% tags=["exercise"]
def background_noise_spectrum(images, radius_px):
    ...  # your code


if show_solutions:
    show_solution(course.background_noise_spectrum)
    mine = course.background_noise_spectrum(small_images, radius_px)
    plot_power_spectra({"outside the disk (hard edge)": mine,
                        "estimate_noise (tapered window)": spectrum}, box, pixel_size_A)
    plt.show()

# %% [markdown] tags=["exercise"]
# **Exercise 4 — write a function.** Write `background_std(images, radius_px)`: the std of
# the pixels outside the disk, pooled over the images after removing each image's own
# background mean. Before you run it on the outputs above: can the Wiener filter, which keeps
# the fraction `C²S / (C²S + N) ≤ 1` of each frequency, raise the background's std? What would
# a ratio of 0 mean? Check that `background_std(denoised) / background_std(noisy)` gives the
# `ratios` table.

# %% tags=["exercise"]
def background_std(images, radius_px):
    ...  # your code


if show_solutions:
    show_solution(course.background_std)
    before = course.background_std(outputs["noisy"], radius_px)
    for name, images in outputs.items():
        if name != "noisy":
            print(f"{name}: {course.background_std(images, radius_px) / before:.3f} "
                  f"(background_ratio {ratios[name]:.3f})")

# %% [markdown] tags=["concept-check"]
# ## Concept checks
#
# 1. The first CTF zero of these particles is near 17 Å. What happens to the Thon rings in the
#    32² copy at 13.1 Å/px, and what does it mean for what the small model can learn about
#    the CTF? <details><summary>Answer</summary>Fourier cropping keeps only the frequencies
#    below the new Nyquist limit, 1/(2 × 13.1 Å) = 1/26 Å: every Thon ring is cropped away.
#    The small copy sees only the CTF's first lobe, where it is a smooth low-frequency
#    attenuation; correcting the CTF's sign flips is a problem only at the full size.
#    </details>
# 2. Why can the noise be estimated from the pixels outside the particle, and what does the
#    estimate assume? <details><summary>Answer</summary>Outside the particle the image holds
#    noise alone, if the particle diameter is right and nothing else (a neighbour, the edge of
#    the box) is there. It assumes the noise is stationary — the same spectrum under the
#    particle as around it — and uncorrelated with the signal, so that the disk's signal
#    variance is the image's disk variance minus the noise's.</details>
# 3. Why does the matched simulation draw its noise with the measured spectrum instead of
#    white noise of the same variance? <details><summary>Answer</summary>A denoiser learns the
#    statistics of the noise it was trained on. Coloured noise has more power at some
#    frequencies than white noise of the same variance; a model trained on white noise would
#    take that excess for signal and keep it (or over-smooth where the real noise is weaker).
#    </details>
# 4. A denoiser flattens the background to 10 % of its std. Is that evidence that it
#    denoised well? <details><summary>Answer</summary>No: erasing everything, or blurring
#    hard, flattens the background too. The ratio measures how much was removed, not whether
#    the particle was kept; only a reference — the closest projection, which needs poses —
#    can score fidelity (PSNR, SSIM, FRC).</details>
