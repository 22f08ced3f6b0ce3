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
# # 04 · 3D reconstruction and Fourier shell correlation
#
# The paper's headline claim is that maps reconstructed from *denoised* particles reach a
# better resolution. This notebook builds the instrument that measures it:
#
# 1. **Direct Fourier inversion.** By the central-slice theorem, the 2D Fourier transform of
#    a particle image is a plane through the 3D transform of the map, oriented by the
#    particle's pose. Inserting every image's transform into a 3D grid (with trilinear
#    weights, on a 2× oversampled grid) and dividing by the accumulated weights gives the
#    map's transform. The microscope multiplied each image by its CTF, so we insert
#    `CTF · F` and divide by `Σ CTF²` (plus a small Wiener-like constant): particles at
#    different defoci fill each other's CTF zeros.
# 2. **Gold-standard FSC.** Split the particles at random into two halves, reconstruct each,
#    and correlate the two maps shell by shell in Fourier space. Where the correlation
#    drops below 0.143 the half maps stop sharing signal: that frequency is the resolution.
#
# Here we reconstruct from clean projections (the best possible case), from the noisy
# particles, and — when notebook 03 has produced them — from the denoised particles and, for a
# fair comparison, from the same particles before denoising (`same particles, raw`).

# %% tags=["parameters"]
run_dir = "runs/notebooks"  # relative to the repository root (also when the kernel runs in notebooks/)
device = "auto"
box = 32
n_particles = 1500
snr = 0.1
seed = 0
batch_size = 512
denoised_star = ""  # a STAR of denoised particles; default: {run_dir}/compare/denoised.star
show_solutions = False  # True prints the exercises' solutions (for teachers)

# %%
from cryodiff.threads import configure_threads

configure_threads()  # before torch loads: one thread per idle core (cryodiff/threads.py)

import json
from pathlib import Path

from cryodiff.course.display import rounded
from cryodiff.fsc import fsc
from cryodiff.io.atomic import write_json_atomic
from cryodiff.io.star import read_particles
from cryodiff.notebook_runner import resolve_run_dir
from cryodiff.plots.fsc import plot_fsc
from cryodiff.plots.maps import plot_maps
from cryodiff.reconstruct import reconstruct_particles, with_image_stack
from cryodiff.simulate import SimulationConfig, load_map_or_phantom, simulate_dataset
from cryodiff.widgets.slices import slice_viewer

run = resolve_run_dir(run_dir)
data_dir = run / "data"
out_dir = run / "reconstruct"
out_dir.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The particles
# Notebook 01 writes a simulated dataset to `{run_dir}/data`. If it is not there, we simulate
# one now: projections of the built-in phantom with CTF and noise at the chosen SNR.

# %%
if not (data_dir / "particles.star").exists():
    volume, pixel_size_A = load_map_or_phantom("phantom", box)
    config = SimulationConfig(box=box, n_particles=n_particles, snr=snr, seed=seed)
    simulate_dataset(volume, pixel_size_A, config, data_dir, map_source="phantom", progress=False)
summary = json.loads((data_dir / "simulation.json").read_text())
truth, pixel_size_A = load_map_or_phantom(summary["map_source"], summary["box"],
                                          pixel_size_A=summary["pixel_size_A"]
                                          if summary["map_source"] != "phantom" else None)
particles = read_particles(data_dir / "particles.star")
print(f"{len(particles)} particles, box {particles.box}, {pixel_size_A:.2f} Å/px, "
      f"measured SNR {summary['measured_snr']:.4f}")

# %% [markdown]
# ## Reconstruct
# `clean.mrcs` holds the projections before CTF and noise (reconstructed without CTF);
# `particles.mrcs` the noisy, CTF-modulated particles (reconstructed with CTF weighting).
# Each reconstruction also makes two half maps from a random split.

# %%
sources = {
    "clean": (with_image_stack(particles, data_dir / "clean.mrcs"), False),
    "noisy": (particles, True),
}
denoised_path = Path(denoised_star) if denoised_star else run / "compare" / "denoised.star"
if denoised_path.exists():
    sources["denoised"] = (read_particles(denoised_path), True)
    # Notebook 03 denoised its own held-out particles (other poses, fewer of them): compare
    # like with like by reconstructing the very same particles before denoising too.
    if (denoised_path.parent / "raw.star").exists():
        sources["same particles, raw"] = (read_particles(denoised_path.parent / "raw.star"), True)

results = {}
for name, (stack, use_ctf) in sources.items():
    results[name] = reconstruct_particles(stack, use_ctf=use_ctf, half_maps=True, seed=seed,
                                          batch_size=batch_size, device=device, progress=False)

# %% [markdown]
# ## The maps beside the truth
# Central slices through each map (each with its own grey scale). Noise and the CTF's
# missing information blur the noisy reconstruction.

# %%
maps = {"truth": truth} | {name: r.volume.cpu() for name, r in results.items()}
plot_maps(maps, kind="slice");

# %%
plot_maps(maps, kind="projection");

# %% [markdown]
# Drag the slider to move through the maps slice by slice (a saved notebook and the course
# site show the central slice). Each map keeps one grey scale for all its slices, so the
# nearly empty slices at the edge of the box look empty.

# %%
slice_viewer(maps)

# %% [markdown]
# ## FSC curves
# Solid: the gold-standard FSC between half maps (what one measures in practice, without
# a ground truth). The FSC against the truth is also available here because the data are
# simulated; for a half-map pair the 0.143 threshold corresponds to FSC 0.5 against truth.

# %%
gold = {name: r.half_map_fsc() for name, r in results.items()}
versus_truth = {name: fsc(r.volume.cpu(), truth, pixel_size_A) for name, r in results.items()}
plot_fsc({f"{name} half maps": curve for name, curve in gold.items()},
         title="gold-standard FSC");

# %%
plot_fsc({f"{name} vs truth": curve for name, curve in versus_truth.items()},
         threshold=0.5, title="FSC against the true map");

# %%
record = {
    "n_particles": len(particles),
    "n_particles_by_source": {name: len(stack) for name, (stack, _) in sources.items()},
    "box": particles.box,
    "pixel_size_A": pixel_size_A,
    "nyquist_A": 2 * pixel_size_A,
    "resolution_0143_A": {name: curve.resolution_0143_A for name, curve in gold.items()},
    "resolution_vs_truth_05_A": {name: c.resolution_05_A for name, c in versus_truth.items()},
}
write_json_atomic(run / "04_reconstruct_and_fsc.json", record)
rounded(record)

# %% [markdown]
# ## Half maps against the truth: why denoised particles can claim a resolution they lack
# The gold-standard FSC assumes that whatever the two half maps share is signal, because
# their *noise* is independent. A denoiser breaks that assumption: it replaces noise by its
# own estimate, and the part of that estimate that is wrong — its **bias** — comes from the
# same prior for every particle, so both halves inherit it. The half maps then agree on
# detail that is not in the molecule, and the half-map FSC reports it as resolution. Only the
# truth (available here because the data are simulated) can tell the two apart.
#
# To see the effect in its purest form we play an extreme denoiser: one that returns, for
# every particle, the noise-free projection of a map it *believes* in — the true map at low
# resolution, plus invented high-resolution detail with the right power spectrum but random
# phases (`phase_randomized`, the same operation that corrects masked FSCs below). Its
# output looks perfectly plausible, and it is wrong beyond a quarter of Nyquist.
#
# Half maps are judged RELION's way: under a soft spherical mask, corrected for what the
# mask itself adds by phase randomisation (`masked_half_map_fsc`), read at 0.143. The full
# map is judged against the truth under the same mask at 0.5, the matching criterion.

# %%
import torch

from cryodiff.ctf import apply_ctf, ctf_2d
from cryodiff.fsc import phase_randomized
from cryodiff.geometry import euler_to_matrix
from cryodiff.plots.fsc import plot_halfmap_vs_truth
from cryodiff.projection import project, relion_shifts_px
from cryodiff.reconstruct import reconstruct, spherical_support

box_px = particles.box
support = spherical_support(box_px)
believed = support * phase_randomized(truth, box_px // 8,
                                      torch.Generator().manual_seed(seed))
rotations = euler_to_matrix(torch.as_tensor(particles.eulers_deg, dtype=torch.float64)).float()
shifts_px = relion_shifts_px(torch.as_tensor(particles.shifts_A, dtype=torch.float64),
                             pixel_size_A, box_px).float()
invented = apply_ctf(project(believed, rotations, shifts_px),
                     ctf_2d(particles.ctf, box_px, pixel_size_A))
judged = dict(results)
judged["invented detail"] = reconstruct(invented, rotations, pixel_size_A, shifts_px,
                                        particles.ctf, half_maps=True, seed=seed)
halfmap = {name: r.masked_half_map_fsc(support).corrected for name, r in judged.items()}
against_truth = {name: fsc(r.volume.cpu(), truth, pixel_size_A, mask=support)
                 for name, r in judged.items()}
plot_halfmap_vs_truth({"the same particles": (halfmap, against_truth)});

# %%
halfmap_vs_truth = {
    name: {"halfmap_0143_A": halfmap[name].resolution_0143_A,
           "truth_05_A": against_truth[name].resolution_05_A,
           "halfmap_minus_truth_A": halfmap[name].resolution_0143_A
           - against_truth[name].resolution_05_A}
    for name in judged}
record["halfmap_vs_truth"] = halfmap_vs_truth
write_json_atomic(run / "04_reconstruct_and_fsc.json", record)
rounded(halfmap_vs_truth)

# %% [markdown]
# For clean and raw particles the two readings agree to within a shell or so: the half maps'
# 0.143 and the truth's 0.5 are the same criterion. The invented detail is claimed up to
# Nyquist by its half maps while the truth says the map stops at the quarter of Nyquist where
# the invention began. A real denoiser sits in between: its bias is smaller, but it is still
# common to both halves. That is why `cryodiff benchmark` reports both readings
# (`fsc_halfmap_0143_A` and `fsc_05_A`) and their difference for every method, and why a
# paper's half-map FSC of denoised particles proves nothing on its own.

# %% [markdown] tags=["course"]
# ## Exercises
#
# From "change a parameter and predict" to "write a function". Write your prediction down
# *before* you check it. Set `show_solutions = True` in the parameters cell to print the
# solutions (they live in `cryodiff/course/reconstruct.py`, where the test suite checks
# them).

# %% tags=["course"]
import matplotlib.pyplot as plt

from cryodiff.course import show_solution
from cryodiff.course import reconstruct as course

# %% [markdown] tags=["exercise"]
# **Exercise 1 — change a parameter and predict.** Each half map's spectral SNR grows in
# proportion to the number of particles, and `FSC = SSNR / (1 + SSNR)`. Predict the
# gold-standard resolution of the noisy particles with twice as many particles. Check by
# rerunning notebooks 01 and 04 with `n_particles` doubled.

# %% tags=["exercise"]
my_prediction_A = None
if show_solutions:
    show_solution(course.fsc_with_more_particles)
    curve = gold["noisy"]
    doubled = course.fsc_with_more_particles(curve.fsc, 2.0)
    predicted_A = course.resolution_where_below(curve.frequency_A_inv, doubled, 0.143)
    print(f"{len(particles)} particles: {curve.resolution_0143_A:.1f} Å; "
          f"{2 * len(particles)} particles (predicted): {predicted_A:.1f} Å")
    figure, axis = plt.subplots(figsize=(5, 3.2))
    axis.plot(curve.frequency_A_inv, curve.fsc, label=f"{len(particles)} particles (measured)")
    axis.plot(curve.frequency_A_inv, doubled, "--", label=f"{2 * len(particles)} (predicted)")
    axis.axhline(0.143, color="gray", linewidth=0.8)
    axis.set(xlabel="spatial frequency (1/Å)", ylabel="half-map FSC")
    axis.legend();

# %% [markdown] tags=["exercise"]
# **Exercise 2 — predict.** The FSC of the *full* map against the truth can be predicted
# from the half-map FSC `F` alone: `sqrt(2F / (1 + F))`. What is it at `F = 0.143`? Compare
# the prediction with the measured FSC against the truth above.

# %% tags=["exercise"]
my_prediction = None
if show_solutions:
    show_solution(course.fsc_full_map_vs_truth)
    print(f"F = 0.143 → {float(course.fsc_full_map_vs_truth(0.143)):.3f} against the truth")
    figure, axis = plt.subplots(figsize=(5, 3.2))
    axis.plot(versus_truth["noisy"].frequency_A_inv, versus_truth["noisy"].fsc,
              label="noisy vs truth (measured)")
    axis.plot(gold["noisy"].frequency_A_inv,
              course.fsc_full_map_vs_truth(gold["noisy"].fsc), "--",
              label="predicted from the half maps")
    axis.set(xlabel="spatial frequency (1/Å)", ylabel="FSC")
    axis.legend();

# %% [markdown] tags=["exercise"]
# **Exercise 3 — write a function.** Write `resolution_where_below(frequency_A_inv, curve,
# threshold)`: the resolution (Å) where the curve first drops below the threshold,
# interpolating linearly between the two shells around the crossing. Compare with
# `gold["noisy"].resolution_0143_A`.

# %% tags=["exercise"]
def resolution_where_below(frequency_A_inv, curve, threshold):
    ...  # your code


if show_solutions:
    show_solution(course.resolution_where_below)
    curve = gold["noisy"]
    print(f"{course.resolution_where_below(curve.frequency_A_inv, curve.fsc, 0.143):.2f} Å "
          f"(cryodiff: {curve.resolution_0143_A:.2f} Å)")

# %% [markdown] tags=["concept-check"]
# ## Concept checks
#
# 1. Why are the two half maps reconstructed from disjoint halves of the particles?
#    <details><summary>Answer</summary>Their noise is then independent, so whatever the two
#    maps share is signal; a correlation computed from overlapping data would count noise as
#    signal and overstate the resolution.</details>
# 2. Why 0.143 for half maps but 0.5 against the truth?
#    <details><summary>Answer</summary>The full map averages both halves; with
#    `FSC_truth = sqrt(2F / (1 + F))`, a half-map FSC of 0.143 corresponds to 0.5 against a
#    noise-free reference (Rosenthal & Henderson 2003).</details>
# 3. Why does the reconstruction divide by `Σ CTF²` instead of by the number of particles?
#    <details><summary>Answer</summary>Each particle measured each frequency with weight
#    CTF(k); inserting `CTF·F` and dividing by `Σ CTF²` is the least-squares (Wiener-like)
#    estimate, which trusts particles in proportion to what their CTF transferred.</details>
# 4. Can the clean projections give a resolution better than the Nyquist limit 2 × pixel size?
#    <details><summary>Answer</summary>No: the sampling holds no frequency above 1/(2 pixel
#    size); the best possible is the Nyquist resolution.</details>
