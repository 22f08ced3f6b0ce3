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
# # 01 — From a 3D map to noisy particle images
#
# A single-particle cryo-EM image is a **projection** of the molecule's Coulomb potential
# along the beam, seen through the microscope's **contrast transfer function** (CTF) and
# buried in **noise**. This notebook builds such images step by step:
#
# 1. a 3D map (the built-in protein-like phantom),
# 2. random orientations (poses) and small origin shifts,
# 3. projections by the Fourier-slice theorem,
# 4. the CTF — its rings and zeros,
# 5. structural noise (ice, detergent) before the CTF and shot noise after it,
# 6. a dataset on disk (`particles.mrcs`, `clean.mrcs`, `clean_ctf.mrcs`, `particles.star`)
#    that the later notebooks use.
#
# All the physics lives in the `cryodiff` package; the notebook only calls it and plots.

# %% tags=["parameters"]
box = 32  # image size in pixels (32 matches the ci training preset of notebook 02)
n_particles = 2000  # particles in the saved dataset (notebook 04 reconstructs from them)
snr = 0.1  # total SNR: var(CTF·signal) / var(everything else)
structural_snr = 1.4  # SNR of the structural noise alone (ice, carbon, detergent)
belt = False  # add a disordered detergent belt around each particle
seed = 0
run_dir = "runs/notebooks"  # relative to the repository root (also when the kernel runs in notebooks/)
device = "auto"
show_solutions = False  # True prints the exercises' solutions (for teachers)

# %%
from cryodiff.threads import configure_threads

configure_threads()  # before torch loads: one thread per idle core (cryodiff/threads.py)

import torch

from cryodiff.course.display import rounded
from cryodiff.ctf import apply_ctf, ctf_2d
from cryodiff.io.atomic import write_json_atomic
from cryodiff.io.mrc import read_stack
from cryodiff.io.star import read_particles
from cryodiff.notebook_runner import resolve_run_dir
from cryodiff.noise import (coloured_noise, power_law_spectrum, radial_power_spectrum,
                            shot_noise)
from cryodiff.plots.ctf import plot_ctf
from cryodiff.plots.images import plot_power_spectra, show_image_rows, show_volume
from cryodiff.projection import prepare_volume, project, relion_shifts_px
from cryodiff.simulate import (SimulationConfig, draw_poses, load_map_or_phantom,
                               measure_snr, simulate_batch, simulate_dataset)
from cryodiff.widgets.particles import particle_browser

device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
run_dir = resolve_run_dir(run_dir)
data_dir = run_dir / "data"
generator = torch.Generator().manual_seed(seed)

# %% [markdown]
# ## 1. The map
#
# The built-in phantom is made procedurally (no download): α-helices, β-sheets and loops
# packed into an asymmetric globular envelope, rendered at a pixel size chosen so that the
# same molecule fills about 60 % of the box at any box size. Replace `"phantom"` by the path
# of an EMDB map to use a real molecule.

# %%
volume, pixel_size_A = load_map_or_phantom("phantom", box, belt=belt, seed=seed)
print(f"map {tuple(volume.shape)}, {pixel_size_A:.2f} Å/pixel, field of view {box * pixel_size_A:.0f} Å")
show_volume(volume, pixel_size_A, "the phantom");

# %% [markdown]
# ## 2. Poses
#
# Each particle lands in the ice in an unknown orientation. We draw rotations uniformly on
# SO(3) and store them as RELION Euler angles (rot, tilt, psi); a rotation matrix `A` moves a
# map point `r` to `A·r` in the image frame. Particles are also slightly off-centre: the
# *origin* shifts (Å) are what RELION's `rlnOriginXAngst/YAngst` record.

# %%
config = SimulationConfig(box=box, n_particles=n_particles, snr=snr,
                          structural_snr=structural_snr, belt=belt, seed=seed,
                          pixel_size_A=pixel_size_A)
poses = draw_poses(config, 6, generator)
for eulers, shift in zip(poses.eulers_deg.tolist(), poses.shifts_A.tolist()):
    print("rot {:7.1f}  tilt {:6.1f}  psi {:7.1f}   origin ({:5.2f}, {:5.2f}) Å".format(*eulers, *shift))

# %% [markdown]
# ## 3. Projections
#
# By the **central-slice theorem**, the 2D Fourier transform of a projection is a central
# slice (perpendicular to the beam) of the map's 3D Fourier transform. The projector
# Fourier-transforms the map once (`prepare_volume`) and then samples one slice per pose.

# %%
prepared = prepare_volume(volume.to(device))
shifts_px = relion_shifts_px(poses.shifts_A, pixel_size_A, box)
projections = project(prepared, poses.rotations.to(device), shifts_px.to(device)).cpu()
show_image_rows({"projection": projections});

# %% [markdown]
# ## 4. The contrast transfer function
#
# Biological samples are nearly transparent: contrast comes from defocusing the objective
# lens. In Fourier space the image is multiplied by
# `CTF(k) = sqrt(1−A²)·sin χ(k) + A·cos χ(k)`, with `χ(k) = π λ Δf k² − (π/2) Cs λ³ k⁴` (λ the
# electron wavelength at 300 kV, Δf the defocus, Cs the spherical aberration, A the amplitude
# contrast). Its sign flips at every **zero**: information at those frequencies is lost,
# and the contrast of the others alternates. Astigmatism makes the rings elliptical.

# %%
plot_ctf(poses.ctf, box, pixel_size_A, index=0);

# %%
ctf = ctf_2d(poses.ctf, box, pixel_size_A)
projections_ctf = apply_ctf(projections, ctf)
show_image_rows({"projection": projections, "CTF ⊛ projection": projections_ctf});

# %% [markdown]
# The CTF removes the low frequencies (only the small amplitude contrast `A` survives at
# `k = 0`) and adds fringes around the particle: the particle is "delocalised".
#
# ## 5. Noise
#
# Two kinds of noise matter:
#
# * **structural noise** — ice thickness variations, carbon, a detergent belt, flexible
#   parts: it is imaged by the microscope, so it goes through the CTF too. We model it as
#   coloured Gaussian noise with a power-law spectrum (plus, optionally, random blobs in a
#   belt around each particle);
# * **shot noise** — the counting noise of the electron dose on the detector: white,
#   added after the CTF.
#
# `particles = CTF ⊛ (projection + structural) + shot`. The total SNR is the variance of the
# clean CTF-modulated image over the variance of everything else, inside the particle disk.

# %%
white = torch.randn(64, box, box, generator=generator)
ice = coloured_noise(white, power_law_spectrum(box, config.noise_exponent))
shot = shot_noise((64, box, box), 1.0, generator)
plot_power_spectra({"structural (coloured) noise": radial_power_spectrum(ice),
                    "shot (white) noise": radial_power_spectrum(shot),
                    "clean projections": radial_power_spectrum(projections / projections.std())},
                   box, pixel_size_A);

# %% [markdown]
# `simulate_batch` does all of the above for a batch of new particles and calibrates the
# noise so that the measured SNRs hit the targets.

# %%
batch = simulate_batch(prepared, config, 6, generator)
print("measured on this batch:", {k: round(v, 4) for k, v in measure_snr(batch).items()})
show_image_rows({"noisy": batch.particles, "structural noise": batch.structural,
                 "clean ⊛ CTF": batch.clean_ctf, "clean": batch.clean});

# %% [markdown]
# At SNR 0.1 the particle is barely visible to the eye: the noise variance is ten
# times the signal's. This is the denoiser's job in notebook 02.
#
# ## 6. The dataset on disk
#
# `simulate_dataset` streams particles to disk chunk by chunk (same seed → same files) and
# writes a RELION 3.1 STAR file with the poses, origins and CTF parameters, so that the
# particles can be reconstructed with known poses (notebook 04) or opened in RELION.
# The same is available on the command line:
#
# ```
# cryodiff simulate --map phantom --box 32 --n 2000 --snr 0.1 --out runs/notebooks/data
# ```

# %%
summary = simulate_dataset(volume, pixel_size_A, config, data_dir, map_source="phantom",
                           progress=False)
print(f"measured SNR {summary['measured_snr']:.4f} (target {snr}), "
      f"structural SNR {summary['measured_structural_snr']:.3f} (target {structural_snr})")
particles = read_particles(data_dir / "particles.star")
print(f"{len(particles)} particles, box {particles.box}, {particles.pixel_size_A[0]:.2f} Å/px")
particles.table.head()

# %% [markdown]
# Browse the particles: noisy, CTF-modulated and clean side by side. Move the slider in a
# live notebook; a saved notebook (and the course site) shows a picture of particle 0.

# %%
first = slice(0, min(50, n_particles))
stacks = {name: read_stack(data_dir / f"{name}.mrcs")[first] for name in ("particles", "clean_ctf", "clean")}
titles = ["rot {:.0f}° tilt {:.0f}° psi {:.0f}°".format(*e) for e in particles.eulers_deg[first]]
particle_browser(stacks, titles)

# %%
record = {key: summary[key] for key in ("n_particles", "box", "pixel_size_A", "snr", "structural_snr",
                                        "measured_snr", "measured_structural_snr")}
record["data_dir"] = str(data_dir)
write_json_atomic(run_dir / "01_simulate_projections.json", record)
rounded(record)

# %% [markdown] tags=["course"]
# ## Exercises
#
# From "change a parameter and predict" to "write a function". Write your prediction down
# *before* you check it. Each exercise cell runs as it is; set `show_solutions = True` in the
# parameters cell to print the solutions (they live in `cryodiff/course/simulate.py`, where
# the test suite checks them).

# %% tags=["course"]
from cryodiff.course import show_solution
from cryodiff.course import simulate as course

# %% [markdown] tags=["exercise"]
# **Exercise 1 — predict, then check.** Particle 0 above was imaged at the defocus printed
# below. Double the defocus: does the first zero of the CTF move to a lower or a higher
# spatial frequency, and by roughly what factor? (Hint: χ(k) ≈ π λ Δf k² at low k.) Check
# with `plot_ctf(ctf_params(2 * defocus_A), box, pixel_size_A)`.

# %% tags=["exercise"]
defocus_A = float(poses.ctf.defocus_u_A[0])
print(f"particle 0: defocus {defocus_A:,.0f} Å")
my_prediction = None  # e.g. ("lower", 0.7)
# plot_ctf(ctf_params(2 * defocus_A), box, pixel_size_A);
if show_solutions:
    show_solution(course.first_ctf_zero_A_inv)
    for defocus in (defocus_A, 2 * defocus_A):
        print(f"defocus {defocus:,.0f} Å: first zero at "
              f"{1 / course.first_ctf_zero_A_inv(defocus):.1f} Å")

# %% [markdown] tags=["exercise"]
# **Exercise 2 — change a parameter, predict, measure.** Rerun the notebook with
# `snr = 0.01` (or simulate a batch below with `dataclasses.replace(config, snr=0.01)`).
# By what factor must the noise's standard deviation grow compared with SNR 0.1? Then write
# `measured_snr(clean_ctf, particles)`: the variance of the signal over the variance of
# everything else, inside the disk of radius 0.4 L (`cryodiff.masks.disk_mask`), and
# compare with `measure_snr(batch)`.

# %% tags=["exercise"]
def measured_snr(clean_ctf, particles):
    ...  # your code


if show_solutions:
    import dataclasses

    show_solution(course.measured_snr)
    for target_snr in (0.1, 0.01):
        check = simulate_batch(prepared, dataclasses.replace(config, snr=target_snr), 64,
                               generator)
        print(f"target SNR {target_snr}: measured "
              f"{course.measured_snr(check.clean_ctf, check.particles):.4f}")

# %% [markdown] tags=["exercise"]
# **Exercise 3 — write a function.** The structural noise `ice` of section 5 has a power
# spectrum `P(f) ∝ f^−a` with `a = config.noise_exponent`. Write `fit_exponent(noise)` that
# recovers `a` from the images alone: take `radial_power_spectrum(noise)` and fit a straight
# line to log P against log f (`numpy.polyfit`). Which rings should you leave out, and why?

# %% tags=["exercise"]
def fit_exponent(noise):
    ...  # your code


if show_solutions:
    show_solution(course.fit_power_law_exponent)
    print(f"fitted exponent {course.fit_power_law_exponent(ice):.2f}, "
          f"true {config.noise_exponent}")

# %% [markdown] tags=["exercise"]
# **Exercise 4 — write a function.** Check the central-slice theorem yourself: write
# `central_slice_error(volume, projection)` returning the largest difference between the 2D
# FFT of a projection and the central (`z = 0`) plane of the volume's 3D FFT
# (`cryodiff.fourier.fft2_centered`, `fft3_centered`), relative to the plane's largest value.
# It should be ~1e-15 for `volume.sum(0)`. What does it give for `volume.sum(2)`, and why?

# %% tags=["exercise"]
def central_slice_error(volume, projection):
    ...  # your code


if show_solutions:
    show_solution(course.central_slice_error)
    exact = volume.double()
    print(f"projection along z: {course.central_slice_error(exact, exact.sum(0)):.1e}; "
          f"along x: {course.central_slice_error(exact, exact.sum(2)):.2f}")

# %% [markdown] tags=["concept-check"]
# ## Concept checks
#
# 1. Why does the CTF leave only a small fraction of the signal at the lowest frequencies?
#    <details><summary>Answer</summary>At k = 0 the phase shift χ is 0, so the phase-contrast
#    term sin χ vanishes and only the amplitude contrast A (≈ 0.1) survives: CTF(0) = A.
#    Cryo-EM samples are weak phase objects; contrast comes from defocus.</details>
# 2. Why is the structural noise added *before* the CTF and the shot noise *after* it?
#    <details><summary>Answer</summary>Ice, carbon and detergent are in the specimen, so the
#    microscope images them like the particle (through the CTF); shot noise arises when
#    electrons are counted on the detector, after the optics.</details>
# 3. At SNR 0.1, how large is the noise's standard deviation compared with the signal's?
#    <details><summary>Answer</summary>√(1/0.1) ≈ 3.2 times larger (SNR is a ratio of
#    variances).</details>
# 4. Why does a dataset use many different defoci?
#    <details><summary>Answer</summary>Each defocus puts the CTF zeros at other frequencies;
#    information lost at one particle's zero is measured by particles at other defoci, so
#    the reconstruction (notebook 04) can fill every frequency.</details>
