"""The course: every exercise solution runs and gives a result checked against analytic
values or cryodiff's own implementations; every notebook carries its exercises and concept
checks at the end."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from cryodiff.course import SOLUTION_MODULES, show_solution, solutions_for
from cryodiff.course import compare, real, reconstruct, simulate, train
from cryodiff.course.display import rounded
from cryodiff.ctf import apply_ctf, electron_wavelength_A
from cryodiff.noise_estimate import estimate_noise
from cryodiff.notebook_runner import discover_notebooks

NOTEBOOKS = discover_notebooks()


# --- notebook 01 -----------------------------------------------------------------------------

@pytest.mark.parametrize("amplitude_contrast", [0.0, 0.1])
@pytest.mark.parametrize("defocus_A", [8000.0, 25000.0])
def test_first_ctf_zero_without_cs_is_analytic(defocus_A, amplitude_contrast):
    # χ + asin(A) = π at the first zero, with χ = π λ Δf k² when Cs = 0
    wavelength = float(electron_wavelength_A(300.0))
    expected = math.sqrt((math.pi - math.asin(amplitude_contrast))
                         / (math.pi * wavelength * defocus_A))
    found = simulate.first_ctf_zero_A_inv(defocus_A, cs_mm=0.0,
                                          amplitude_contrast=amplitude_contrast)
    assert found == pytest.approx(expected, rel=1e-6)


def test_doubling_defocus_moves_the_first_zero_to_lower_frequency():
    ratio = simulate.first_ctf_zero_A_inv(30000.0) / simulate.first_ctf_zero_A_inv(15000.0)
    assert ratio == pytest.approx(1 / math.sqrt(2), rel=0.02)  # Cs barely matters this low


def test_measured_snr_matches_the_simulation_target():
    from cryodiff.simulate import (SimulationConfig, load_map_or_phantom, measure_snr,
                                   simulate_batch)
    from cryodiff.projection import prepare_volume

    volume, pixel_size_A = load_map_or_phantom("phantom", 32)
    config = SimulationConfig(box=32, n_particles=64, snr=0.05, seed=1,
                              pixel_size_A=pixel_size_A)
    batch = simulate_batch(prepare_volume(volume), config, 64, torch.Generator().manual_seed(1))
    mine = simulate.measured_snr(batch.clean_ctf, batch.particles)
    assert mine == pytest.approx(measure_snr(batch)["snr"], rel=1e-9)
    assert mine == pytest.approx(0.05, rel=0.15)


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0])
def test_power_law_exponent_is_recovered(exponent):
    from cryodiff.noise import coloured_noise, power_law_spectrum

    white = torch.randn(256, 32, 32, generator=torch.Generator().manual_seed(0))
    noise = coloured_noise(white, power_law_spectrum(32, exponent))
    assert simulate.fit_power_law_exponent(noise) == pytest.approx(exponent, abs=0.15)


@pytest.mark.parametrize("box", [16, 17])
def test_central_slice_theorem_holds_and_the_check_can_fail(box):
    volume = torch.randn(box, box, box, generator=torch.Generator().manual_seed(box),
                         dtype=torch.float64)
    assert simulate.central_slice_error(volume, volume.sum(dim=0)) < 1e-12
    # a projection along another axis is not the z = 0 plane: the check must notice
    assert simulate.central_slice_error(volume, volume.sum(dim=2)) > 0.1


# --- notebook 02 -----------------------------------------------------------------------------

def test_step_at_half_signal_of_the_cosine_schedule_is_analytic():
    from cryodiff.diffusion import cosine_schedule

    steps, s = 2000, 0.008
    # γ̄(t) = f(t) / f(0), f(t) = cos²((t/T + s)/(1 + s)·π/2): solve γ̄(t) = ½ for t
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    t = ((2 / math.pi) * math.acos(math.sqrt(0.5 * f0)) * (1 + s) - s) * steps
    assert abs(train.step_at_gamma(cosine_schedule(steps), 0.5) - math.ceil(t)) <= 1


def test_step_at_half_signal_of_the_linear_schedule():
    from cryodiff.diffusion import linear_schedule

    steps, b0, b1 = 2000, 1e-6, 1e-2
    # log γ̄_t = Σ log(1 − β_s) ≈ −Σ β_s (β ≤ 1e-2): solve −Σβ = log ½ for t
    t = np.arange(1, steps + 1)
    cumulative = t * b0 + (b1 - b0) * t * (t - 1) / (2 * (steps - 1))
    approx = int(t[np.nonzero(cumulative >= math.log(2))[0][0]])
    found = train.step_at_gamma(linear_schedule(steps), 0.5)
    assert abs(found - approx) <= 5
    assert found < train.step_at_gamma(linear_schedule(steps), 0.1)


@pytest.mark.parametrize("sqrt_gamma", [0.3, 0.5, 0.9])
def test_forward_snr_matches_a_diffused_image(sqrt_gamma):
    from cryodiff.diffusion import q_sample

    generator = torch.Generator().manual_seed(0)
    y0 = torch.randn(1, 256, 256, generator=generator, dtype=torch.float64)
    noise = torch.randn(1, 256, 256, generator=generator, dtype=torch.float64)
    y_t = q_sample(y0, torch.tensor([sqrt_gamma], dtype=torch.float64), noise)
    signal = sqrt_gamma * y0
    measured = 10 * math.log10(float(signal.var() / (y_t - signal).var()))
    assert train.forward_snr_db(sqrt_gamma) == pytest.approx(measured, abs=0.1)
    assert train.forward_snr_db(0.5) == pytest.approx(10 * math.log10(1 / 3))


def test_predict_y0_inverts_the_forward_process():
    from cryodiff.diffusion import predict_y0_from_eps, q_sample

    generator = torch.Generator().manual_seed(3)
    y0 = torch.randn(4, 8, 8, generator=generator, dtype=torch.float64)
    eps = torch.randn(4, 8, 8, generator=generator, dtype=torch.float64)
    s = 0.37
    y_t = q_sample(y0, torch.full((4,), s, dtype=torch.float64), eps)
    assert torch.allclose(train.predict_y0(y_t, eps, s), y0, atol=1e-12)
    package = predict_y0_from_eps(y_t, eps, torch.full((4,), s, dtype=torch.float64))
    assert torch.allclose(train.predict_y0(y_t, eps, s), package, atol=1e-12)


# --- notebook 03 -----------------------------------------------------------------------------

@pytest.mark.parametrize("k", [4, 16])
def test_averaging_k_copies_gains_ten_log_k_db(k):
    clean = torch.randn(32, 32, 32, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    gain = compare.psnr_gain_of_averaging(clean, noise_std=2.0, k=k)
    assert gain == pytest.approx(10 * math.log10(k), abs=0.3)


def test_wiener_gain_values_and_agreement_with_the_baseline():
    from cryodiff.baselines.wiener import wiener_filter
    from cryodiff.fourier import fft2_centered, ifft2_centered

    one = torch.ones(())
    assert float(compare.wiener_gain(torch.zeros(()), one, one)) == 0.0  # a CTF zero
    assert float(compare.wiener_gain(one, one, one)) == pytest.approx(0.5)  # C²S = N
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(3, 16, 16, generator=generator, dtype=torch.float64)
    ctf = torch.rand(3, 16, 16, generator=generator, dtype=torch.float64) * 2 - 1
    signal = torch.rand(16, 16, generator=generator, dtype=torch.float64)
    noise = torch.rand(16, 16, generator=generator, dtype=torch.float64) + 0.1
    mine = ifft2_centered(fft2_centered(images) * compare.wiener_gain(ctf, signal, noise))
    assert torch.allclose(mine, wiener_filter(images, signal, noise, ctf), atol=1e-10)


def test_best_gaussian_sigma_beats_no_filter_and_agrees_with_the_baseline():
    from cryodiff.baselines.lowpass import choose_sigma, gaussian_lowpass

    generator = torch.Generator().manual_seed(0)
    clean = gaussian_lowpass(torch.randn(32, 32, 32, generator=generator,
                                         dtype=torch.float64), 2.0)
    clean = clean / clean.std()
    noisy = clean + torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    sigmas = np.linspace(0.0, 4.0, 41)
    sigma, best = compare.best_gaussian_sigma(noisy, clean, sigmas)
    from cryodiff.metrics import psnr

    assert best > float(psnr(noisy, clean).mean()) + 3  # blurring white noise helps
    reference, _ = choose_sigma(noisy, clean)
    assert sigma == pytest.approx(reference, abs=0.15)


# --- notebook 04 -----------------------------------------------------------------------------

def _half_maps(noise_std: float, seed: int = 0):
    from cryodiff.baselines.lowpass import gaussian_lowpass

    generator = torch.Generator().manual_seed(seed)
    truth = torch.randn(24, 24, 24, generator=generator, dtype=torch.float64)
    truth = gaussian_lowpass(truth.reshape(24 * 24, 24).reshape(24, 24, 24), 1.0)
    halves = [truth + noise_std * torch.randn(truth.shape, generator=generator,
                                              dtype=torch.float64) for _ in range(2)]
    return truth, halves


def test_doubling_particles_predicts_the_measured_fsc():
    from cryodiff.fsc import fsc

    # Averaging twice as many particles halves the noise variance of each half map.
    _, halves = _half_maps(noise_std=0.3)
    _, halves_doubled = _half_maps(noise_std=0.3 / math.sqrt(2), seed=0)
    before = fsc(*halves, 2.0).fsc
    after = fsc(*halves_doubled, 2.0).fsc
    predicted = reconstruct.fsc_with_more_particles(before, 2.0)
    shells = slice(1, 12)
    assert np.abs(predicted[shells] - after[shells]).max() < 0.08
    assert np.all(predicted[shells] >= np.clip(before[shells], 0, 1) - 1e-12)
    assert np.allclose(reconstruct.fsc_with_more_particles(before, 1.0)[shells],
                       np.clip(before[shells], 0, 1))


def test_full_map_fsc_against_truth_from_the_half_maps():
    from cryodiff.fsc import fsc

    assert float(reconstruct.fsc_full_map_vs_truth(0.143)) == pytest.approx(0.5, abs=0.002)
    truth, halves = _half_maps(noise_std=0.3)
    half_curve = fsc(*halves, 2.0).fsc
    measured = fsc((halves[0] + halves[1]) / 2, truth, 2.0).fsc
    predicted = reconstruct.fsc_full_map_vs_truth(half_curve)
    shells = slice(1, 12)
    assert np.abs(predicted[shells] - measured[shells]).max() < 0.08


def test_resolution_where_below_is_analytic_and_matches_the_package():
    from cryodiff.fsc import fsc, resolution_at

    frequency = np.linspace(0, 0.25, 26)
    linear = 1 - 4 * frequency  # crosses 0.5 at 0.125 1/Å: 8 Å
    assert reconstruct.resolution_where_below(frequency, linear, 0.5) == pytest.approx(8.0)
    assert reconstruct.resolution_where_below(frequency, np.ones(26), 0.143) == pytest.approx(4.0)
    _, halves = _half_maps(noise_std=0.5)
    curve = fsc(*halves, 2.0)
    for threshold in (0.143, 0.5):
        assert reconstruct.resolution_where_below(curve.frequency_A_inv, curve.fsc, threshold) \
            == pytest.approx(resolution_at(curve.frequency_A_inv, curve.fsc, threshold))


# --- notebook 05 -----------------------------------------------------------------------------

def _first_zero_with_cs_A_inv(defocus_A, voltage_kV, cs_mm, amplitude_contrast):
    # χ(k) = π λ Δf k² − (π/2) Cs λ³ k⁴ = π − asin(A) at the first zero: a quadratic in k²
    wavelength = float(electron_wavelength_A(voltage_kV))
    cs_A = cs_mm * 1e7
    a, b, c = math.pi / 2 * cs_A * wavelength**3, math.pi * wavelength * defocus_A, \
        math.pi - math.asin(amplitude_contrast)
    return math.sqrt((b - math.sqrt(b * b - 4 * a * c)) / (2 * a))


def test_first_zero_of_a_real_particle_is_analytic(reference_data):
    from cryodiff.io.star import read_particles

    particles = read_particles(reference_data / "real_particles" / "empiar_10076_7.star")
    for index in (0, 3):
        found = real.first_zero_of_particle(particles, index)
        ctf = particles.ctf
        defocus = float(ctf.defocus_u_A[index] + ctf.defocus_v_A[index]) / 2
        expected = _first_zero_with_cs_A_inv(defocus, float(ctf.voltage_kV[index]),
                                             float(ctf.cs_mm[index]),
                                             float(ctf.amplitude_contrast[index]))
        assert found["first_zero_A_inv"] == pytest.approx(expected, rel=1e-5)
        assert found["first_zero_radius_px"] == pytest.approx(
            expected * particles.box * float(particles.pixel_size_A[index]), rel=1e-5)
    # half the box at the same pixel size: the ring is at half the radius
    halved = real.first_zero_of_particle(particles, 3, box=particles.box // 2)
    assert halved["first_zero_radius_px"] == pytest.approx(found["first_zero_radius_px"] / 2)


@pytest.mark.parametrize("defocus_A", [10000.0, 20000.0])
def test_thon_ring_minimum_of_ctf_filtered_noise_is_at_the_first_zero(defocus_A):
    from cryodiff.ctf import ctf_2d, ctf_params
    from cryodiff.io.star import particles_from_arrays

    box, pixel_size_A = 96, 1.5
    params = ctf_params(defocus_A, amplitude_contrast=0.07)
    white = torch.randn(64, box, box, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    images = apply_ctf(white, ctf_2d(params, box, pixel_size_A))
    stack = particles_from_arrays("unused.mrcs", None, None, params, pixel_size_A, box, n=1)
    expected = real.first_zero_of_particle(stack, 0)["first_zero_radius_px"]
    assert abs(real.thon_ring_minimum_px(images, expected) - expected) <= 1
    # the measured minimum follows the data, not the expectation it is given
    assert abs(real.thon_ring_minimum_px(images, expected + 4) - expected) <= 1


def test_snr_by_diameter_is_right_once_the_disk_covers_the_particle(tmp_path):
    from cryodiff.io.mrc import write_stack
    from cryodiff.io.star import particles_from_arrays
    from cryodiff.snr import disk_variance

    box, pixel_size_A, n, radius_px = 64, 4.0, 64, 18
    grid = torch.arange(box, dtype=torch.float64) - box // 2
    r2 = grid[:, None] ** 2 + grid[None, :] ** 2
    blob = torch.exp(-r2 / (2 * 12.0**2)) * (r2 <= radius_px**2)
    signal = blob / blob.std() * 0.7  # the same particle in every image
    noise = torch.randn(n, box, box, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
    write_stack(tmp_path / "p.mrcs", signal + noise, pixel_size_A)
    stack = particles_from_arrays(tmp_path / "p.mrcs", None, None, None, pixel_size_A, box, n=n)
    true_snr = float(disk_variance(signal[None])[0] / disk_variance(noise).mean())
    covering = 2 * (radius_px + 1) * pixel_size_A  # 152 Å
    snrs = real.snr_by_diameter(stack, [covering, 80.0, 40.0])
    assert snrs[covering] == pytest.approx(true_snr, rel=0.1)
    # signal in the "background" inflates the noise: the SNR falls as the disk shrinks
    assert snrs[40.0] < snrs[80.0] < snrs[covering]
    assert snrs[40.0] < 0.7 * true_snr
    reference = estimate_noise(stack, particle_diameter_A=covering).snr
    assert snrs[covering] == pytest.approx(reference, rel=1e-12)


def test_background_noise_spectrum_of_white_and_coloured_noise():
    from cryodiff.noise import coloured_noise, power_law_spectrum
    from cryodiff.noise_estimate import background_window, ring_average, windowed_periodogram

    generator = torch.Generator().manual_seed(0)
    white = 1.5 * torch.randn(128, 48, 48, generator=generator, dtype=torch.float64)
    flat = real.background_noise_spectrum(white, radius_px=12)
    assert flat.shape == (25,)
    assert torch.allclose(flat, torch.full_like(flat, 2.25), rtol=0.08)  # σ² everywhere
    shaped = coloured_noise(torch.randn(128, 48, 48, generator=generator, dtype=torch.float64),
                            power_law_spectrum(48, 1.0, dtype=torch.float64))
    mine = real.background_noise_spectrum(shaped, radius_px=12)
    truth = ring_average(power_law_spectrum(48, 1.0, dtype=torch.float64))
    assert torch.allclose(mine[2:], truth[2:], rtol=0.15)
    package = ring_average(windowed_periodogram(shaped, background_window(48, 14.0))) / 128
    assert torch.allclose(mine[2:], package[2:], rtol=0.15)
    assert mine[2] > 3 * mine[-1]  # and it is not flat


def test_background_std_is_the_noise_std_and_gives_the_background_ratio():
    from cryodiff.benchmark.real_compare import background_ratio

    generator = torch.Generator().manual_seed(0)
    noisy = 2.0 + 0.5 * torch.randn(16, 32, 32, generator=generator, dtype=torch.float64)
    assert real.background_std(noisy, 10) == pytest.approx(0.5, rel=0.03)
    smoothed = noisy * 0.3 + torch.randn(16, 32, 32, generator=generator,
                                          dtype=torch.float64) * 0.1
    assert real.background_std(smoothed, 10) / real.background_std(noisy, 10) == \
        pytest.approx(background_ratio(smoothed, noisy, 10), rel=1e-12)
    assert real.background_std(3 * noisy, 10) == pytest.approx(3 * real.background_std(noisy, 10))


# --- display ---------------------------------------------------------------------------------

def test_rounded_rounds_floats_to_significant_digits_recursively():
    record = {"snr": 0.0998765, "A": [123.456, 1e-5 * 1.23456], "n": 7, "ok": True,
              "inf": math.inf, "name": "x"}
    assert rounded(record) == {"snr": 0.0999, "A": [123.0, 1.23e-5], "n": 7, "ok": True,
                               "inf": math.inf, "name": "x"}


# --- the notebooks carry the exercises -------------------------------------------------------

def _cells(notebook):
    import nbformat

    return nbformat.read(notebook, as_version=4).cells


def _tagged(cells, tag):
    return [c for c in cells if tag in c.get("metadata", {}).get("tags", [])]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_ends_with_exercises_and_concept_checks(notebook):
    assert notebook.stem in SOLUTION_MODULES, f"{notebook.stem} has no exercises"
    cells = _cells(notebook)
    exercises = [c for c in _tagged(cells, "exercise") if c.cell_type == "markdown"]
    assert len(exercises) >= 3, "at least three exercises"
    checks = _tagged(cells, "concept-check")
    assert checks and "<details>" in checks[0].source, "concept checks with hidden answers"
    # the course section is at the end: no untagged cell after the first exercise but the
    # notebook's record cell
    first = cells.index(_tagged(cells, "exercise")[0])
    untagged = [c for c in cells[first:] if not c.get("metadata", {}).get("tags")]
    assert len(untagged) <= 2, "exercises and concept checks go at the end"
    parameters = _tagged(cells, "parameters")[0].source
    assert re.search(r"^show_solutions = False", parameters, re.M)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_solution_a_notebook_names_exists_and_is_tested(notebook):
    module = solutions_for(notebook.stem)
    assert module is not None, f"{notebook.stem} has no solutions module"
    code = "\n".join(c.source for c in _tagged(_cells(notebook), "exercise"))
    named = set(re.findall(r"\bcourse\.(\w+)", code))
    assert named, "exercise cells call their solutions through `course.NAME`"
    for name in named:
        assert callable(getattr(module, name)), f"{module.__name__}.{name} is missing"
    tested = open(__file__, encoding="utf-8").read()
    untested = sorted(n for n in named if f".{n}(" not in tested)
    assert not untested, f"solutions without a test here: {untested}"


def test_show_solution_prints_the_source(capsys):
    show_solution(train.forward_snr_db)
    assert "def forward_snr_db" in capsys.readouterr().out


def test_relative_run_dir_is_taken_from_the_repository_root(tmp_path):
    from cryodiff.notebook_runner import resolve_run_dir

    root = tmp_path / "repo"
    assert resolve_run_dir("runs/nb", cwd=root / "notebooks") == root / "runs/nb"
    assert resolve_run_dir("runs/nb", cwd=root) == root / "runs/nb"
    assert resolve_run_dir(tmp_path / "abs", cwd=root / "notebooks") == tmp_path / "abs"
