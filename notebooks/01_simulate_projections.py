# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
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
run_dir = "runs/notebooks"
device = "auto"

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from cryodiff.ctf import apply_ctf, ctf_2d
from cryodiff.io.atomic import write_json_atomic
from cryodiff.io.mrc import read_stack
from cryodiff.io.star import read_particles
from cryodiff.noise import (coloured_noise, power_law_spectrum, radial_power_spectrum,
                            shot_noise)
from cryodiff.plots.ctf import plot_ctf
from cryodiff.plots.images import plot_power_spectra, show_image_rows, show_volume
from cryodiff.projection import prepare_volume, project, relion_shifts_px
from cryodiff.simulate import (SimulationConfig, draw_poses, load_map_or_phantom,
                               measure_snr, simulate_batch, simulate_dataset)
from cryodiff.widgets.particles import particle_browser

device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
run_dir = Path(run_dir)
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
summary = simulate_dataset(volume, pixel_size_A, config, data_dir, map_source="phantom")
print(f"measured SNR {summary['measured_snr']:.4f} (target {snr}), "
      f"structural SNR {summary['measured_structural_snr']:.3f} (target {structural_snr})")
particles = read_particles(data_dir / "particles.star")
print(f"{len(particles)} particles, box {particles.box}, {particles.pixel_size_A[0]:.2f} Å/px")
particles.table.head()

# %% [markdown]
# Browse the particles: noisy, CTF-modulated and clean side by side (move the slider in a
# live notebook).

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
record
