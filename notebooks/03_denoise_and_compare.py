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
# # 03 — Denoise held-out particles and compare with the baselines
#
# Notebook 02 trained the conditional diffusion denoiser (SR3) and its post-processor. Here we
# ask the question the paper's Table 1 asks: **on particles the model never saw, does it
# denoise better than the established methods — in 2D, and in the 3D map reconstructed from
# the denoised particles?**
#
# Every method gets the same simulated data (the phantom, with CTF and structural noise):
# a training split, a validation split for choosing each baseline's settings, and a test
# split of held-out poses. We score each method against the *clean CTF-modulated projection*
# (the pure-denoising target: removing the CTF is a separate problem) with
#
# * **PSNR** (dB) and **SSIM** — pixel-wise and structural similarity to the clean image;
# * **FRC-0.143** — the resolution (Å) up to which the denoised and clean images still
#   correlate, ring by ring in Fourier space;
# * **3D FSC-0.143** — reconstruct a map from each method's output with the known poses and
#   CTFs, and find where its FSC against the true map drops below 0.143. This is what a
#   structural biologist cares about: a denoiser that invents detail would look sharp in 2D
#   and still hurt the map.
#
# The full comparison at larger sizes is `cryodiff benchmark --preset cpu-small`; this
# notebook runs the same code at a size that fits in a few minutes on a laptop CPU.

# %% tags=["parameters"]
run_dir = "runs/notebooks"  # relative to the repository root (also when the kernel runs in notebooks/)
device = "auto"
snr = 0.1  # total SNR of the simulated particles
box = 32  # used only when no trained run from notebook 02 is found (else its box)
methods = ["lowpass", "wiener", "topaz", "noise2noise", "supervised", "sr3", "sr3-pm"]  # + "bm3d", "cwf"
methods_3d = ["lowpass", "wiener", "supervised", "sr3", "sr3-pm"]
n_train = 256  # training pairs for Noise2Noise and the supervised U-Net (and SR3 if trained here)
n_test_2d = 24  # held-out particles for the 2D metrics
n_test_3d = 400  # held-out particles reconstructed in 3D
train_steps = 80  # optimiser steps of every method trained here
sr3_steps = [10, 50]  # DDPM sampling steps to compare
posterior_samples = 4
seed = 0
show_solutions = False  # True prints the exercises' solutions (for teachers)

# %%
from cryodiff.threads import configure_threads

configure_threads()  # before torch loads: one thread per idle core (cryodiff/threads.py)

import dataclasses

import pandas as pd
from IPython.display import Image, Markdown, display

from cryodiff.benchmark import get_preset, run_benchmark
from cryodiff.benchmark.methods import find_trained_run
from cryodiff.course.display import rounded
from cryodiff.io.atomic import write_json_atomic
from cryodiff.notebook_runner import resolve_run_dir

run = resolve_run_dir(run_dir)
out_dir = run / "compare"

# %% [markdown]
# ## The diffusion model
# If notebook 02 left a trained run in `{run_dir}/train`, we reuse it (and its box size).
# Otherwise the comparison trains a small SR3 model and post-processor itself with the `ci`
# preset, shortened to `train_steps` steps — expect a weaker SR3 then.

# %%
trained = find_trained_run(run / "train")
checkpoint = run / "train" if trained is not None else None
if trained is not None:
    box = trained.box
    print(f"reusing {checkpoint} (trained for {trained.steps} steps on {trained.box}² images, "
          f"target {trained.target})")
else:
    print("no trained run found: SR3 will be trained here")

config = dataclasses.replace(
    get_preset("ci"), preset="notebook", box=box, snrs=(snr,), n_train=n_train,
    n_val=min(64, n_train // 4), n_test_2d=n_test_2d, n_test_slow=min(8, n_test_2d),
    n_test_3d=n_test_3d, train_steps=train_steps, post_train_steps=max(20, train_steps // 2),
    sr3_steps=tuple(sr3_steps), sr3_fast_steps=min(sr3_steps),
    slow_step_threshold=min(sr3_steps), posterior_samples=posterior_samples,
    methods=tuple(methods), methods_3d=tuple(methods_3d), seed=seed, device=device,
    # a v-predicting run from notebook 02 (prediction="v") names its rows sr3v…
    sr3_prediction=trained.model.prediction if trained is not None else "eps")

# %% [markdown]
# ## What each baseline assumes
#
# * **Gaussian low-pass** — the signal lives at low spatial frequencies and the noise
#   everywhere. One blur width σ for all particles, chosen on the validation split. It cannot
#   tell a high-frequency detail from noise, so it trades resolution for smoothness.
# * **CTF-aware Wiener filter** — signal and noise are Gaussian with radially symmetric power
#   spectra, and each particle's CTF is known. It is the best *linear* filter: per frequency
#   it keeps the fraction `C²S / (C²S + N)` of the image. It cannot use the shape of the
#   particle.
# * **BM3D** — the noise is Gaussian with a known power spectrum (measured on validation, or
#   white with a per-image level, whichever scores better there), the image made of
#   repeating patches. The particle is not a texture, so that assumption holds poorly.
# * **Topaz-Denoise** — a U-Net trained with Noise2Noise on micrograph movie frames of other
#   samples, used as shipped: a general-purpose prior, not one for this particle.
# * **Noise2Noise** — needs two independent noisy images of the same projection and no clean
#   image: the network learns to predict one from the other, whose average is the clean image.
# * **Supervised U-Net** — trained on (noisy, clean) pairs like SR3, with the same backbone as
#   the post-processor: one deterministic guess of the posterior mean.
# * **ASPIRE CWF** — the clean images share a low-rank, rotation-invariant covariance, estimated
#   from the test images themselves, then a per-image Wiener filter that also undoes the CTF.
# * **SR3 (+ post-processor)** — a conditional diffusion model *samples* a clean image given the
#   noisy one; the post-processor refines a few-step sample. Averaging several samples
#   approaches the posterior mean.
# * **sr3-pm** — cryodiff's own denoiser for PSNR: the mean of several SR3 samples (an
#   estimate of the posterior mean, the PSNR-optimal answer) refined by a post-processor
#   trained on such means with the squared error, with the supervised U-Net's recipe and
#   budget. Like every network trained here (Noise2Noise and the supervised U-Net too; not
#   Topaz, used as shipped), it averages its answers over the 8 flips and rotations of the
#   particle (the "self-ensemble").
#
# BM3D and CWF are slow on a CPU; they are left out of this notebook's default `methods`
# (the `cryodiff benchmark` presets include them).

# %% [markdown]
# ## Run the comparison
# `run_benchmark` simulates the splits, fits or trains every method, denoises the test
# particles, scores them and writes `results.json`, `results.md` and the figures into
# `{run_dir}/compare`. It also saves the SR3 + post-processor output of the 3D test set as
# `denoised.star` for notebook 04.

# %%
rows = run_benchmark(config, out_dir, checkpoint=checkpoint, command="notebook 03",
                     progress=False, save_denoised=True)
table = pd.DataFrame(rows)[["method", "psnr", "psnr_gain_db", "ssim", "frc_0143",
                            "seconds_per_image", "fsc_0143_A", "fsc_0143_A_pose_search",
                            "median_pose_error_deg", "n_test_2d", "n_test_3d", "status"]]
table.round(3)

# %% [markdown]
# ## The gallery
# Rows are held-out particles; columns the noisy input, each method and the clean target.
# Each image has its own grey scale.

# %%
display(Image(filename=str(out_dir / "gallery.png")))

# %% [markdown]
# ## PSNR against the number of sampling steps
# Few sampling steps leave the SR3 sample noisy or blurred; the post-processor is trained to
# close that gap, so that 10 steps can do what many steps do without it.

# %%
if (out_dir / "psnr_vs_steps.png").exists():
    display(Image(filename=str(out_dir / "psnr_vs_steps.png")))

# %% [markdown]
# ## 3D: maps from denoised particles
# Central slices of the maps reconstructed from the clean projections, the raw particles and
# each method's output, beside the truth; then the FSC of each map against the true map.
# A denoiser helps in 3D only if it removes noise *without* changing what the particles
# share — averaging thousands of particles already removes much of the noise.

# %%
display(Image(filename=str(out_dir / "reconstructions.png")))
display(Image(filename=str(out_dir / "fsc.png")))

# %% [markdown]
# ## 3D when the poses must be found
# Known poses are a gift a real data set never gives: RELION or cryoSPARC find each
# particle's orientation by comparing it with projections of a reference, and noise makes
# them guess wrong. The benchmark therefore also searches every particle's orientation by
# projection matching against the true map (band-limited to half the Nyquist frequency, so
# that fine detail in the reconstruction must come from the data) and reconstructs again.
# Each method is searched with the weights that suit its images (its measured transfer and
# error per Fourier shell): a linear filter then finds exactly the raw particles' poses —
# it removes no information the search could use — so only a denoiser that *adds*
# knowledge (here: of what particles look like, learnt from training data) can align better
# than the raw particles. The column `median_pose_error_deg` is the median angle between the
# found and the true orientations.

# %%
if (out_dir / "fsc_pose_search.png").exists():
    display(Image(filename=str(out_dir / "fsc_pose_search.png")))

# %%
display(Markdown((out_dir / "results.md").read_text()))

# %% [markdown]
# ## What the larger runs measured
# This notebook's size is chosen to run in minutes. At the similar `ci` benchmark size (32²,
# 1,024 training pairs, 400 steps) ASPIRE's CWF won in PSNR and SSIM, and SR3 +
# post-processor sat level with the supervised U-Net. At the `cpu-small` size
# (64² particles, 4,096 training pairs, 4,000 training steps; `cryodiff benchmark --preset
# cpu-small`, SNR 0.1, see `docs/benchmarks.md`) the measured picture was:
#
# * SR3 + post-processor (10 steps): 25.72 dB, SSIM 0.657 — above CWF (25.49 dB, 0.484),
#   BM3D, Wiener, low-pass and Topaz, level with Noise2Noise (25.74 dB), and **0.24 dB below
#   the supervised U-Net** (25.96 dB), which regresses straight to the posterior mean, the
#   PSNR-optimal answer. SR3 has the best SSIM of the single-estimate methods.
# * SR3 alone gets *worse* with more steps (23.9 dB at 10, 22.9 dB at 250): a long trajectory
#   ends on a sharper posterior sample whose invented detail costs PSNR. With the
#   post-processor 10 steps are as good as 250 (25.7 dB either way).
# * In 3D, with 4,000 particles, no denoiser beat the raw particles (7.4 Å against 9.2 Å for
#   SR3 + post-processor and CWF): the reconstruction averages noise away, but a denoiser's bias
#   is shared by every particle and survives the average.
# * At SNR 0.01 (same size) SR3 + post-processor caught up with the supervised U-Net
#   (22.68 vs 22.65 dB) and kept the best SSIM (0.548), but CWF still had the best PSNR
#   (22.79 dB), and in 3D the raw particles still won (8.8 Å against 11.3 Å).
# * On the real ribosome map (SNR 0.1, same size) the supervised U-Net won both PSNR and SSIM
#   (23.45 dB / 0.438; SR3 + post-processor 23.08 dB / 0.410), and in 3D the raw particles
#   reached 4.7 Å against 8.4 Å for the best denoiser.
# * Over all six `cpu-small` conditions (both maps at SNR 0.1, 0.05 and 0.01; the table is
#   `benchmarks/results/cpu_small_combined.md`), SR3 + post-processor never had the best
#   PSNR. It was 0.10–0.36 dB behind the winner, paired per image: the supervised U-Net at SNR
#   0.1 and 0.05, CWF at 0.01. Its gap shrank as the SNR fell. SR3's 4-sample mean had the best
#   SSIM on the phantom at every SNR, but not on the ribosome. The raw particles (or Topaz)
#   won in 3D everywhere.
#
# * With *searched* poses (`ci` size, 32², SNR 0.1, 0.05 and 0.01) no denoiser found better
#   orientations than the raw particles (median error 10.7° raw, 11.5–15.7° for the linear
#   and learnt denoisers, 21.5° for SR3 + post-processor at SNR 0.1): a search that weights
#   every frequency by its real signal-to-noise ratio already uses all the pose information a
#   particle holds, and a denoiser cannot add any. A single SR3 sample aligned at random —
#   its invented detail belongs to another view.
#
# Try it yourself: raise `train_steps` and `n_train`, lower `snr`, and watch which of these
# statements change.

# %% [markdown]
# ## Record the key numbers

# %%
by_method = {row["method"]: row for row in rows}
main = config.sr3_row(f"sr3+pp_{config.sr3_fast_steps}")
scored = [r for r in rows if r["status"] == "ok" and r["psnr"] is not None and r["method"] != "noisy"]
best = max(scored, key=lambda r: r["psnr"]) if scored else None
record = {
    "box": config.box,
    "snr": snr,
    "reused_training_run": checkpoint is not None,
    "n_methods_ok": sum(r["status"] == "ok" for r in rows),
    "psnr_noisy": by_method["noisy"]["psnr"],
    "psnr_best": best["psnr"] if best else None,
    "best_method": best["method"] if best else None,
    "psnr_sr3_pp": by_method.get(main, {}).get("psnr"),
    "ssim_sr3_pp": by_method.get(main, {}).get("ssim"),
    "fsc_clean_A": by_method["clean"]["fsc_0143_A"],
    "fsc_noisy_A": by_method["noisy"]["fsc_0143_A"],
    "fsc_sr3_pp_A": by_method.get(main, {}).get("fsc_0143_A"),
    "fsc_noisy_pose_search_A": by_method["noisy"]["fsc_0143_A_pose_search"],
    "pose_error_noisy_deg": by_method["noisy"]["median_pose_error_deg"],
    "pose_error_clean_deg": by_method["clean"]["median_pose_error_deg"],
    "fsc_sr3_pp_pose_search_A": by_method.get(main, {}).get("fsc_0143_A_pose_search"),
    "pose_error_sr3_pp_deg": by_method.get(main, {}).get("median_pose_error_deg"),
    "denoised_star": str(out_dir / "denoised.star") if (out_dir / "denoised.star").exists() else None,
    "rows": rows,
}
write_json_atomic(run / "03_denoise_and_compare.json", record)
rounded({k: v for k, v in record.items() if k != "rows"})

# %% [markdown] tags=["course"]
# ## Exercises
#
# From "change a parameter and predict" to "write a function". Write your prediction down
# *before* you check it. Set `show_solutions = True` in the parameters cell to print the
# solutions (they live in `cryodiff/course/compare.py`, where the test suite checks them).

# %% tags=["course"]
import torch

from cryodiff.course import show_solution
from cryodiff.course import compare as course
from cryodiff.projection import prepare_volume
from cryodiff.simulate import SimulationConfig, load_map_or_phantom, simulate_batch

# a small batch of particles for the exercises (the comparison keeps its own splits inside)
volume, pixel_size_A = load_map_or_phantom("phantom", box)
batch = simulate_batch(prepare_volume(volume), SimulationConfig(box=box, snr=snr, seed=seed,
                                                                pixel_size_A=pixel_size_A),
                       32, torch.Generator().manual_seed(seed))
noisy, clean_ctf = batch.particles, batch.clean_ctf

# %% [markdown] tags=["exercise"]
# **Exercise 1 — predict.** Noise2Noise and the 3D reconstruction both profit from
# averaging. If you average `k` independent noisy images of the same particle, how many dB
# of PSNR do you gain over one image, for `k = 4` and `k = 16`? What does that say about a
# map made of 4,000 particles?

# %% tags=["exercise"]
my_prediction_db = {4: None, 16: None}
if show_solutions:
    show_solution(course.psnr_gain_of_averaging)
    for k in (4, 16):
        gain = course.psnr_gain_of_averaging(clean_ctf, float(noisy.std()), k, seed=seed)
        print(f"k = {k}: +{gain:.2f} dB")

# %% [markdown] tags=["exercise"]
# **Exercise 2 — predict.** The Wiener filter keeps the fraction `C²S / (C²S + N)` of each
# frequency. What does it keep at a zero of the CTF? Where the CTF-modulated signal power
# equals the noise power? Why can it not restore what the CTF removed?

# %% tags=["exercise"]
my_prediction = {"at a CTF zero": None, "where C²S = N": None}
if show_solutions:
    show_solution(course.wiener_gain)
    one = torch.ones(())
    print(f"at a CTF zero: {float(course.wiener_gain(0 * one, one, one)):.2f}; "
          f"where C²S = N: {float(course.wiener_gain(one, one, one)):.2f}")

# %% [markdown] tags=["exercise"]
# **Exercise 3 — write a function.** Write `best_gaussian_sigma(noisy, clean, sigmas_px)`:
# blur the noisy particles with each width (`cryodiff.baselines.lowpass.gaussian_lowpass`),
# score each against the clean CTF-modulated images with `cryodiff.metrics.psnr`, and return
# the best width and its PSNR. Is the best width the same at SNR 0.01? Why not?

# %% tags=["exercise"]
def best_gaussian_sigma(noisy, clean, sigmas_px):
    ...  # your code


if show_solutions:
    show_solution(course.best_gaussian_sigma)
    sigma, best = course.best_gaussian_sigma(noisy, clean_ctf, [0, 0.5, 1, 1.5, 2, 3, 4])
    print(f"best σ = {sigma} px: {best:.2f} dB")

# %% [markdown] tags=["concept-check"]
# ## Concept checks
#
# 1. Why is each method scored against the clean *CTF-modulated* image and not against the
#    clean projection? <details><summary>Answer</summary>Denoising and CTF correction are
#    different problems: the CTF removed information at its zeros that no denoiser can
#    recover from one image. Scoring against the clean projection would mix the two.
#    </details>
# 2. Why can the supervised U-Net beat SR3 in PSNR while SR3 wins in SSIM?
#    <details><summary>Answer</summary>A network trained with a squared error regresses to
#    the posterior mean, the PSNR-optimal answer, which is blurred where it is unsure; SR3
#    samples sharp, plausible images, whose structure scores well in SSIM but whose invented
#    detail costs PSNR.</details>
# 3. Why did no denoiser beat the raw particles in 3D?
#    <details><summary>Answer</summary>Reconstruction averages thousands of particles, which
#    already removes the noise; a denoiser's bias is shared by every particle and survives the
#    average.</details>
# 4. Why can a linear filter not improve the poses found by projection matching?
#    <details><summary>Answer</summary>An invertible linear filter removes no information;
#    a search that weights every frequency by its signal-to-noise ratio already uses all the
#    pose information the particle holds.</details>
