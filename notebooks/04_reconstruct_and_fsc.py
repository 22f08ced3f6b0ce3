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
run_dir = "runs/notebooks"
device = "auto"
box = 32
n_particles = 1500
snr = 0.1
seed = 0
batch_size = 512
denoised_star = ""  # a STAR of denoised particles; default: {run_dir}/compare/denoised.star

# %%
import json
from pathlib import Path

from cryodiff.fsc import fsc
from cryodiff.io.atomic import write_json_atomic
from cryodiff.io.star import read_particles
from cryodiff.plots.fsc import plot_fsc
from cryodiff.plots.maps import plot_maps
from cryodiff.reconstruct import reconstruct_particles, with_image_stack
from cryodiff.simulate import SimulationConfig, load_map_or_phantom, simulate_dataset
from cryodiff.widgets.slices import slice_viewer

run = Path(run_dir)
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
    simulate_dataset(volume, pixel_size_A, config, data_dir, map_source="phantom")
summary = json.loads((data_dir / "simulation.json").read_text())
truth, pixel_size_A = load_map_or_phantom(summary["map_source"], summary["box"],
                                          pixel_size_A=summary["pixel_size_A"]
                                          if summary["map_source"] != "phantom" else None)
particles = read_particles(data_dir / "particles.star")
print(f"{len(particles)} particles, box {particles.box}, {pixel_size_A:.2f} Å/px, "
      f"measured SNR {summary['measured_snr']}")

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
                                          batch_size=batch_size, device=device)

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
# Drag the slider to move through the maps slice by slice.

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
record
