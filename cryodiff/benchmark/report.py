"""Writing a benchmark's outputs: ``results.json``, ``results.md`` and the four figures."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import torch

from cryodiff import __version__
from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.io.atomic import write_json_atomic, write_text_atomic
from cryodiff.metrics import psnr

# What each method assumes, for the notes under the table (students read these).
ASSUMPTIONS = {
    "noisy": "the raw particles: the baseline every denoiser must beat.",
    "lowpass": "signal lives at low frequencies, noise everywhere; one Gaussian width σ for "
               "all particles, chosen to minimise the error on the validation split.",
    "wiener": "Gaussian signal and noise with radially symmetric spectra, the CTF of each "
              "particle known; the linear minimum-MSE filter from spectra measured on "
              "validation.",
    "bm3d": "white Gaussian noise of known level and an image made of repeating patches; "
            "the noise level is measured outside the particle and scaled on validation.",
    "topaz": "the pretrained Topaz-Denoise network (Noise2Noise on micrograph movie frames, "
             "other microscopes and samples); not retrained on these particles.",
    "noise2noise": "two independent noisy images of each projection (zero-mean noise), no "
                   "clean image; same backbone and budget as the supervised U-Net.",
    "supervised": "clean targets for training (like SR3); one deterministic regression to "
                  "the posterior mean, the post-processor's backbone without a condition.",
    "cwf": "the clean images share a low-rank, rotation-invariant covariance (ASPIRE "
           "DenoiserCov2D) estimated from the test images themselves; CTF re-applied to "
           "compare with the clean_ctf target.",
    "sr3": "SR3 conditional diffusion trained on clean targets; a sample from the learnt "
           "posterior, with the ancestral (DDPM) sampler at the stated step count.",
    "sr3+pp": "an SR3 sample refined by the post-processing U-Net (trained on few-step "
              "samples against the clean targets).",
    "sr3-mean": "the average of K posterior samples (each post-processed) — approaches the "
                "posterior mean, the MSE-optimal estimate.",
    "reference": "the clean CTF-modulated projections: what a perfect denoiser returns.",
}


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"
    return str(value)


def _signed(value: float | None) -> str:
    """``−1.2`` / ``+0.3`` (Å), or ``—``."""
    return "—" if value is None else f"{value:+.1f}"


def _halfmap(row: dict) -> str:
    """The mask-corrected half-map FSC-0.143, marked ``(mask-limited; unmasked X)`` where the
    phase-randomised FSC there exceeds 0.1 (the correction is not to be trusted)."""
    text = _fmt(row.get("fsc_halfmap_0143_A"), 1)
    randomized = row.get("halfmap_randomized_fsc")
    if randomized is not None and randomized > 0.1:
        text += f" (mask-limited; unmasked {_fmt(row.get('fsc_halfmap_unmasked_0143_A'), 1)})"
    return text


def _vs_best(row: dict) -> str:
    """``−0.11 ± 0.04``: the row's paired PSNR difference from the best denoiser."""
    if row.get("psnr_vs_best_db") is None:
        return "—"
    if not row.get("psnr_vs_best_sem"):
        return _fmt(row["psnr_vs_best_db"])
    return f"{row['psnr_vs_best_db']:.2f} ± {row['psnr_vs_best_sem']:.2f}"


def table(rows: list[dict]) -> str:
    """Markdown table of one condition's rows."""
    head = ("| method | PSNR (dB) | ΔPSNR vs noisy | ΔPSNR vs best, paired (dB) | SSIM | "
            "FRC-0.143 (Å) | s / image | FSC-0.143 (Å) | FSC-0.5 (Å) | "
            "half-map FSC-0.143 (Å) | half maps − truth (Å) | "
            "FSC-0.143, pose search (Å) | pose error (°) | n 2D | n 3D | status |")
    lines = [head, "|" + "---|" * 16]
    for r in rows:
        lines.append(f"| {r['method']} | {_fmt(r['psnr'])} | {_fmt(r['psnr_gain_db'])} | "
                     f"{_vs_best(r)} | "
                     f"{_fmt(r['ssim'], 3)} | {_fmt(r['frc_0143'], 1)} | "
                     f"{_fmt(r['seconds_per_image'], 4)} | {_fmt(r['fsc_0143_A'], 1)} | "
                     f"{_fmt(r['fsc_05_A'], 1)} | {_halfmap(r)} | "
                     f"{_signed(r.get('halfmap_minus_truth_A'))} | "
                     f"{_fmt(r.get('fsc_0143_A_pose_search'), 1)} | "
                     f"{_fmt(r.get('median_pose_error_deg'), 1)} | {_fmt(r['n_test_2d'])} | "
                     f"{_fmt(r['n_test_3d'])} | {r['status']} |")
    return "\n".join(lines)


def verdict(rows: list[dict], main: str) -> str:
    """Which method wins PSNR, SSIM and FSC on one condition, said plainly.

    PSNR and SSIM compare only rows measured on the full 2D test set (rows of slow methods,
    on fewer particles, are not comparable); the 3D winners (known poses, and poses found by
    the pose search) are set beside the raw particles.
    """
    ok = [r for r in rows if r["status"] == "ok" and r["method"] != "noisy"]
    full_2d = max((r["n_test_2d"] for r in ok if r["psnr"] is not None), default=None)
    noisy = next((r for r in rows if r["method"] == "noisy" and r["status"] == "ok"), None)
    parts = []
    in_3d = ("fsc_0143_A", "fsc_05_A", "fsc_halfmap_0143_A", "fsc_0143_A_pose_search")
    for key, label, best in (("psnr", "PSNR", max), ("ssim", "SSIM", max),
                             ("fsc_0143_A", "3D FSC-0.143", min),
                             ("fsc_05_A", "3D FSC-0.5 against the truth", min),
                             ("fsc_halfmap_0143_A", "3D half-map FSC-0.143 (claimed)", min),
                             ("fsc_0143_A_pose_search", "3D FSC-0.143 with searched poses", min)):
        scored = [r for r in ok if r.get(key) is not None
                  and (key in in_3d or r["n_test_2d"] == full_2d)]
        if not scored:
            continue
        winner = best(scored, key=lambda r: r[key])
        mine = next((r for r in scored if r["method"] == main), None)
        text = f"best {label}: **{winner['method']}** ({_fmt(winner[key], 3)})"
        if mine is not None and mine is not winner:
            text += f"; {main} {_fmt(mine[key], 3)}"
            if key == "psnr" and mine.get("psnr_vs_best_sem") is not None:
                text += (f" ({mine['psnr_vs_best_db']:+.3f} ± {mine['psnr_vs_best_sem']:.3f} dB, "
                         f"paired over {mine['n_test_2d']} images)")
        if key in in_3d and noisy is not None and noisy.get(key) is not None:
            text += f"; raw particles {_fmt(noisy[key], 3)}"
            if noisy[key] < winner[key]:
                text += " (no denoiser beats them)"
        parts.append(text)
    note = f" (PSNR/SSIM over the {full_2d} particles every fast method was scored on)" \
        if full_2d is not None and any(r["n_test_2d"] != full_2d for r in ok
                                       if r["psnr"] is not None) else ""
    return "; ".join(parts) + "." + note


def _pose_band_text(config: BenchmarkConfig) -> str:
    if config.pose_band_A is not None:
        return f"{config.pose_band_A:g} Å"
    return "4 × the pixel size, half the Nyquist frequency"


def _budget(config: BenchmarkConfig, results) -> list[str]:
    from cryodiff.benchmark.methods import train_config_for

    if not results:
        return []
    t = train_config_for(config, results[0].condition)
    return [
        f"- Training pairs: {config.n_train} simulated particles (+ {config.n_val} validation) "
        f"per condition, identical for every trained method; SR3 sets its own {config.n_val} "
        f"validation pairs aside from train ∪ validation.",
        f"- SR3 (`{config.train_preset}` preset): {t.steps} AdamW steps × batch "
        f"{t.batch_size} (lr {t.lr:g}, EMA); post-processor: {t.post_train_steps} steps on "
        f"{t.post_n_samples} {t.post_sampling_steps}-step samples.",
        f"- Noise2Noise and supervised U-Net: the post-processor's backbone (no condition "
        f"input), {t.steps} Adam steps × batch {t.batch_size}, lr {t.lr:g} — the same "
        f"optimiser budget as SR3 (Noise2Noise sees both noisy copies of each training "
        f"projection, i.e. twice as many inputs, no clean image).",
        "- Low-pass σ, Wiener spectra, BM3D noise scale and CWF noise variance are set on the "
        "validation split; Topaz is used as shipped.",
    ]


def _psnr_curves(results, config: BenchmarkConfig) -> dict:
    """PSNR vs steps on one common subset (the first ``n_test_slow`` test particles)."""
    curves = {}
    n = config.n_test_slow
    for result in results:
        test = result.condition.test
        target = test.clean_ctf[:n].double()
        by_name = {o.method: o for o in result.outputs if o.images is not None}
        steps = [s for s in config.sr3_steps if f"sr3_{s}" in by_name]
        if not steps:
            continue

        def mean_psnr(name: str) -> float:
            return float(psnr(by_name[name].images[:n].double(), target).mean())

        curves[result.condition.tag] = {
            "steps": steps, "plain": [mean_psnr(f"sr3_{s}") for s in steps],
            "postprocessed": [mean_psnr(f"sr3+pp_{s}") for s in steps
                              if f"sr3+pp_{s}" in by_name] or None,
            "noisy": float(psnr(test.noisy[:n].double(), target).mean()), "n_images": n}
    return curves


def write_figures(out: Path, config: BenchmarkConfig, results) -> dict:
    """Write gallery.png, reconstructions.png, fsc.png, fsc_halfmap_vs_truth.png,
    fsc_pose_search.png (with a pose search) and psnr_vs_steps.png; return the PSNR-vs-steps
    curves."""
    from cryodiff.plots.gallery import (plot_fsc_panels, plot_gallery, plot_map_slices,
                                        plot_psnr_vs_steps, save_figure)

    rows_per = 4 if len(results) == 1 else 2
    columns: dict[str, list[torch.Tensor]] = {}
    labels = []
    slow_max = max(config.sr3_steps)
    keep = {"noisy", "lowpass", "wiener", "bm3d", "topaz", "noise2noise", "supervised", "cwf",
            f"sr3_{slow_max}", f"sr3+pp_{config.sr3_fast_steps}",
            f"sr3_mean{config.posterior_samples}_{config.sr3_fast_steps}"}
    for result in results:
        test = result.condition.test
        for o in result.outputs:
            if o.images is not None and o.method in keep:
                columns.setdefault(o.method, []).append(o.images[:rows_per])
        columns.setdefault("truth (clean_ctf)", []).append(test.clean_ctf[:rows_per])
        labels += [f"{result.condition.tag} #{i}" for i in range(rows_per)]
    full = {k: torch.cat(v) for k, v in columns.items() if len(v) == len(results)}
    save_figure(plot_gallery(full, n_rows=len(labels), row_labels=labels), out / "gallery.png")
    save_figure(plot_map_slices({r.condition.tag: r.maps for r in results}),
                out / "reconstructions.png")
    save_figure(plot_fsc_panels({r.condition.tag: r.fsc_curves for r in results}),
                out / "fsc.png")
    if any(r.fsc_curves_halfmap for r in results):
        from cryodiff.plots.fsc import plot_halfmap_vs_truth

        save_figure(plot_halfmap_vs_truth(
            {r.condition.tag: ({m: g.corrected for m, g in r.fsc_curves_halfmap.items()},
                               r.fsc_curves) for r in results}), out / "fsc_halfmap_vs_truth.png")
    if any(r.fsc_curves_pose_search for r in results):
        save_figure(plot_fsc_panels({f"{r.condition.tag}, searched poses": r.fsc_curves_pose_search
                                     for r in results}), out / "fsc_pose_search.png")
    curves = _psnr_curves(results, config)
    if curves:
        save_figure(plot_psnr_vs_steps(curves), out / "psnr_vs_steps.png")
    return curves


def choose_denoised(result, preferred: str) -> str | None:
    """The method whose 3D-set output is saved: ``preferred`` if it covered the whole test
    set, else the best-PSNR method that did (None if only the noisy input did)."""
    full = {o.method: o for o in result.outputs
            if o.images is not None and len(o.images) == len(result.condition.test)}
    if preferred in full:
        return preferred
    scored = [r for r in result.rows if r["method"] in full and r["method"] != "noisy"
              and r["psnr"] is not None]
    return max(scored, key=lambda r: r["psnr"])["method"] if scored else None


def write_denoised_star(folder: Path, result, method: str) -> Path:
    """Write ``denoised.mrcs`` (the method's output for the whole test set) and
    ``denoised.star`` (its poses, origins and CTFs) into ``folder``, and the same particles
    before denoising as ``raw.mrcs``/``raw.star`` (for a like-for-like 3D comparison);
    returns the denoised STAR path. The images keep the CTF (clean_ctf target): reconstruct
    them with CTF correction."""
    images = next(o.images for o in result.outputs if o.method == method)
    _write_test_stack(folder, result, result.condition.test.noisy, "raw")
    return _write_test_stack(folder, result, images, "denoised")


def _write_test_stack(folder: Path, result, images: torch.Tensor, stem: str) -> Path:
    from cryodiff.io.mrc import write_stack
    from cryodiff.io.star import particles_from_arrays, write_particles

    condition = result.condition
    test, sim = condition.test, condition.simulation
    write_stack(folder / f"{stem}.mrcs", images, condition.pixel_size_A)
    stack = particles_from_arrays(f"{stem}.mrcs", test.eulers_deg, test.shifts_A, test.ctf,
                                  condition.pixel_size_A, sim.box, sim.voltage_kV, sim.cs_mm,
                                  sim.amplitude_contrast, base_dir=folder)
    write_particles(folder / f"{stem}.star", stack)
    return folder / f"{stem}.star"


def write_outputs(out: Path, config: BenchmarkConfig, results, command: str | None,
                  wall_seconds: float, load: tuple, checkpoint=None, figures: bool = True,
                  save_denoised: bool = False, in_progress: str | None = None) -> None:
    """``results.json`` (all rows), ``results.md`` (tables and notes), the figures and, with
    ``save_denoised``, ``denoised.star`` + ``.mrcs`` for the first condition's test set.
    ``in_progress`` (e.g. "2 of 6 conditions done") marks the files of an unfinished run."""
    rows = [row for result in results for row in result.rows]
    write_json_atomic(out / "results.json", rows)
    curves = write_figures(out, config, results) if figures else {}
    main = f"sr3+pp_{config.sr3_fast_steps}"
    saved = choose_denoised(results[0], main) if save_denoised and results else None
    if saved is not None:
        write_denoised_star(out, results[0], saved)
    md = [f"# cryodiff benchmark (`{config.preset}` preset)", "",
          f"Command: `{command or 'run_benchmark(...)'}`", "",
          *([f"**Unfinished run: {in_progress}; figures come when every condition is done.**",
             ""] if in_progress else []),
          f"cryodiff {__version__}, {datetime.datetime.now().isoformat(timespec='seconds')}, "
          f"{platform.machine()} with {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads). Wall time {wall_seconds / 60:.1f} min; "
          f"load average at start / end: {_fmt(load[0])} / {_fmt(load[1])} "
          "(other jobs on the machine slow every timing below).", "",
          "## Set-up", "",
          f"- Maps: {', '.join(config.maps)}; box {config.box} px; total SNR "
          f"{', '.join(f'{s:g}' for s in config.snrs)} with CTF (defocus 1–2.5 µm) and "
          f"structural noise (structural SNR {config.structural_snr:g}).",
          f"- Splits per condition (independently seeded poses, so test poses never occur in "
          f"training): train {config.n_train}, validation {config.n_val}, test "
          f"{config.n_test_3d}. 2D metrics use the first {config.n_test_2d} test particles "
          f"(slow methods — BM3D, SR3 above {config.slow_step_threshold} steps — the first "
          f"{config.n_test_slow}); ΔPSNR is against the noisy input on the same particles. "
          "'ΔPSNR vs best' is each row's PSNR minus the best denoiser's, per image, ± its "
          "standard error over the images: a gap within about two standard errors is not "
          "resolved by this test set.",
          f"- 3D: methods {', '.join(config.methods_3d)} (SR3 at {config.sr3_fast_steps} "
          f"steps) denoise all {config.n_test_3d} test particles, which are reconstructed "
          "with known poses, shifts and CTFs (the outputs still carry the CTF: the target "
          "is clean_ctf); FSC against the true map under a soft spherical mask of radius "
          "0.45·L, read at 0.5 (the criterion for a map against the truth) with 0.143 "
          "beside it. The other methods are too slow for the 3D set at this preset and have "
          "2D rows only.",
          f"- Half maps (what a cryo-EM user reports): the same particles split at random "
          f"(seed {config.seed}) into two halves reconstructed on their own; their FSC under "
          "a soft spherical mask of radius 0.45·L, corrected for the mask by phase "
          "randomisation beyond the shell where the unmasked FSC falls below 0.8 (RELION's "
          "post-processing), read at 0.143. 'half maps − truth' is that figure minus the "
          "FSC-0.5 against the truth: negative when the half maps claim detail the map does "
          "not have (a denoiser's bias is common to both halves). CWF, whose covariance comes "
          "from the particles it denoises, is run on each half alone for its half maps. "
          "'mask-limited' marks a corrected figure where the phase-randomised FSC exceeds 0.1 "
          "(RELION's warning of a mask that decides the FSC): typical of maps with almost no "
          "power left at high frequency; the unmasked half-map figure is given beside it.",
          *([f"- Pose search: each 3D set is also reconstructed at the orientations found by "
             f"projection matching against the true map (CTF-aware, whitened normalised "
             f"cross-correlation up to {_pose_band_text(config)}; "
             f"{config.pose_grid_deg:g}° global grid, {config.pose_refine_rounds} local "
             "rounds halving the step; translations known). 'pose error' is the median "
             "angle between found and true orientations (random ones are ≈ 126° off). Known "
             "poses favour the raw particles, whose noise the reconstruction averages away; a "
             "real data set must find its poses, which is where denoising could help. Inside "
             "the band the searched-pose FSC is inflated by reference bias (noise aligned to "
             "the true map reproduces it): an FSC-0.143 near the band limit means the search "
             "failed."] if config.pose_search else []),
          "- Metrics: PSNR with each clean image's own range as peak, SSIM (Gaussian "
          "window 11, σ 1.5), FRC-0.143 of the mean FRC curve; seconds per image of the "
          "denoising call only (training/fitting time is `fit_seconds` in results.json).",
          ]
    if saved is not None:
        md.append(f"- `denoised.star`/`.mrcs`: the {saved} output for the "
                  f"{results[0].condition.tag} test set (poses, origins, CTFs); "
                  "`raw.star`/`.mrcs`: the same particles before denoising.")
    if checkpoint is not None:
        md.append(f"- SR3 was not trained here: checkpoint `{checkpoint}` was used.")
    md += ["", "## Budgets of the trained methods", ""] + _budget(config, results)
    for result in results:
        c = result.condition
        md += ["", f"## {c.map_name}, SNR {c.snr:g} ({c.pixel_size_A:.2f} Å/px)", "",
               table(result.rows), "", verdict(result.rows, main), "", "Notes:", ""]
        for r in result.rows:
            if r["note"]:
                fit = f" (fit/training {r['fit_seconds']:.0f} s)" if r["fit_seconds"] else ""
                md.append(f"- {r['method']} [{r['status']}]: {r['note']}{fit}")
        curve = curves.get(c.tag)
        if curve:
            pairs = ", ".join(f"{s}: {p:.2f}" + (f" / {q:.2f}" if curve["postprocessed"] else "")
                              for s, p, q in zip(curve["steps"], curve["plain"],
                                                 curve["postprocessed"] or curve["plain"]))
            md += ["", f"PSNR vs sampling steps on the first {curve['n_images']} test particles "
                   f"(SR3 / SR3 + post-processor): {pairs}; noisy {curve['noisy']:.2f} dB."]
    md += ["", "## What each method assumes", ""]
    md += [f"- **{name}**: {text}" for name, text in ASSUMPTIONS.items()]
    md += ["", "Figures: `gallery.png` (held-out particles: noisy / methods / truth), "
           "`reconstructions.png` (central z slices of the maps), `fsc.png` (FSC against "
           "the true map, one panel per condition; `fsc_pose_search.png` the same at searched "
           "poses), `fsc_halfmap_vs_truth.png` (the paper's Figure 5 both ways: half-map FSC "
           "beside FSC against the truth, per condition), `psnr_vs_steps.png`.", ""]
    write_text_atomic(out / "results.md", "\n".join(md))
