"""Writing a benchmark's outputs: ``results.json``, ``results.md`` and the four figures."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import torch

from cryodiff import __version__
from cryodiff.baselines.regression import SSIM_WEIGHT
from cryodiff.benchmark.combine import markdown_bold, with_seed_sd
from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.benchmark.ranking import (SEED_TIED, TWO_D, best_row, full_2d_count, ranked_2d,
                                        winners)
from cryodiff.benchmark.sr3_joint import JOINT_SHARE
from cryodiff.io.atomic import write_json_atomic, write_text_atomic
from cryodiff.metrics import psnr

# What each method assumes, for the notes under the table (students read these). Keys are
# row families; the fair protocol (issue 16, docs/benchmarks.md) is what they share.
ASSUMPTIONS = {
    "noisy": "the raw particles: the baseline every denoiser must beat.",
    "lowpass": "signal lives at low frequencies, noise everywhere; one Gaussian width σ for "
               "all particles, chosen to minimise the error on the validation split (the σ "
               "grid is extended until the choice is not at an edge).",
    "wiener": "Gaussian signal and noise with radially symmetric spectra, the CTF of each "
              "particle known; the linear minimum-MSE filter from spectra measured on "
              "validation.",
    "bm3d": "Gaussian noise of known power spectrum (measured on validation as noisy − "
            "clean_ctf; or white, its std measured per image outside the particle, whichever "
            "scores better on validation: the note says which) and an image made of "
            "repeating patches; the noise scale is chosen on validation from a grid extended "
            "until the choice is not at an edge.",
    "topaz": "a pretrained Topaz-Denoise network (Noise2Noise on micrograph movie frames, "
             "other microscopes and samples), not retrained on these particles; every model "
             "topaz-em ships is scored on validation and the best is used (the note names it).",
    "noise2noise": "two independent noisy images of each projection (zero-mean noise), no "
                   "clean image; the supervised U-Net's backbone, loss L2, and the shared "
                   "training recipe.",
    "supervised": "clean targets for training (like SR3); one deterministic regression to "
                  "the posterior mean (L2), the post-processor's backbone without a condition.",
    "supervised-l1": "as supervised, with the L1 loss: a regression to the posterior median "
                     "(the post-processor's original loss), not the PSNR-optimal mean.",
    "supervised-large": "as supervised, with SR3's own U-Net backbone (its training preset's "
                        "size) without the noise-level input and the condition channel: a "
                        "regressor as large as SR3.",
    "supervised-2x": "as supervised, trained for twice the steps: as many optimiser steps "
                     "as SR3 and the sr3-pm post-processor together (equal budget).",
    "supervised-large-2x": "as supervised-large (SR3's size), trained for twice the steps: "
                           "SR3's and the sr3-x0ft fine-tuning's together (equal budget, "
                           "equal size).",
    "supervised-2x-ssim": "supervised-2x trained on for the SSIM stage sr3-x0ft-ssim gets (a "
                          f"tenth of the preset's steps more, L2 + {SSIM_WEIGHT:g} · (1 − "
                          "SSIM)): the same lever offered to the regression U-Net.",
    "supervised-large-2x-ssim": "supervised-large-2x trained on for that SSIM stage.",
    "supervised-large-direct-2x": "as supervised-large-2x with a direct output: the "
                                  "network's output is the estimate, not input + "
                                  "correction (SR3's one-pass x̂₀ is direct).",
    "supervised-large-direct-2x-ssim": "supervised-large-direct-2x trained on for that SSIM "
                                       "stage.",
    "cwf": "the clean images share a low-rank, rotation-invariant covariance (ASPIRE "
           "DenoiserCov2D) estimated from the images it denoises (the whole 3D test set); "
           "CTF re-applied to compare with the clean_ctf target.",
    "cwf-2d": "as cwf, the covariance fitted on the 2D test images alone, so its 2D score does "
              "not depend on the size of the 3D test set.",
    "sr3": "SR3 conditional diffusion trained on clean targets; a sample from the learnt "
           "posterior, with the ancestral (DDPM) sampler at the stated step count.",
    "sr3+pp": "an SR3 sample refined by the post-processing U-Net (the paper's design: "
              "trained with L1 on few-step samples against the clean targets).",
    "sr3+pp-mse": "the same SR3 samples refined by a post-processor trained for the mean (L2 + "
                  "EMA, all training pairs, one post-processor per sampling step count).",
    "sr3-mean": "the average of K posterior samples (each post-processed) — approaches the "
                "posterior mean, the MSE-optimal estimate.",
    "sr3-pm": "cryodiff's denoiser for PSNR: the mean of K SR3 samples (the posterior mean, "
              "estimated) refined by a post-processor trained on such means with L2 + EMA and "
              "the regression U-Nets' recipe and budget.",
    "sr3-x0": "a v-predicting SR3's own x̂₀ at the noisiest level, one pass from pure noise: "
              "there the network regresses the clean image, so this is a free posterior-mean "
              "estimate (v-runs only).",
    "sr3-x0ft": "as sr3-x0, with a copy of SR3's network fine-tuned at the noisiest level for "
                "that readout (L2 + EMA, the regression U-Nets' recipe and budget, on top of "
                "SR3: as many optimiser steps in all as supervised-2x; v-runs only).",
    "sr3-x0ft-ssim": "as sr3-x0ft, its fine-tuned network trained on for a tenth more steps "
                     f"with an SSIM term beside the squared error (L2 + {SSIM_WEIGHT:g} · (1 − "
                     "SSIM)), for the flat background that SSIM rewards (v-runs only).",
    "sr3-joint": "one v-network of SR3's size trained once, for SR3's and the sr3-x0ft "
                 "fine-tuning's steps together, on SR3's diffusion objective on v with "
                 "the squared error (SR3's rows: L1) and "
                 f"{JOINT_SHARE:g} of every batch on its own one-pass x̂₀ from pure noise "
                 "(L2): it samples as SR3 and reads out the posterior mean in one pass; "
                 "scored as that readout, with no post-processor or fine-tuning.",
    "sr3-joint-ssim": "sr3-joint's network trained on for the SSIM stage every -ssim row "
                      "gets.",
    "sr3-pm+x0": "the pixelwise mean of sr3v-pm and sr3v-x0_1, a v-predicting SR3's two "
                 "posterior-mean estimates, with equal weights fixed in advance (v-runs with "
                 "sr3-pm only).",
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


def _per_seed(row: dict) -> str:
    """``PSNR per training seed: 25.61, 25.70, 25.79 dB`` (empty for one seed or none)."""
    values = row.get("seed_psnrs") or []
    if len(values) < 2:
        return ""
    return "PSNR per training seed: " + ", ".join(f"{v:.2f}" for v in values) + " dB"


SPREAD_LEGEND = (
    "Two spreads: '± SD' after a PSNR or SSIM is the sample standard deviation of the "
    "condition's mean over the training seeds (how much retraining the network moves the "
    "figure; learnt rows trained with several seeds only); '± SE' in 'ΔPSNR vs best' is the "
    "standard error of the per-image PSNR difference from the best row, paired over the test "
    "images (per-image PSNR averaged over the seeds first): how precisely this test set "
    "measures the gap for these trained networks. Bold: best or tied — in PSNR, a mean within "
    "the larger seed SD of the two rows of the best mean; in SSIM and 3D, equal as printed; "
    "3D at known poses is decided by the FSC-0.5 against the true map.")


def table(rows: list[dict]) -> str:
    """Markdown table of one condition's rows (best-or-tied values in bold, see
    :mod:`cryodiff.benchmark.ranking`)."""
    won = winners(rows, ("psnr", "ssim", "fsc_05_A"))
    head = ("| method | PSNR (dB) ± seed SD | ΔPSNR vs noisy | "
            "ΔPSNR vs best, paired ± SE (dB) | SSIM ± seed SD | FRC-0.143 (Å) | s / image | "
            "FSC-0.5 vs truth (Å) | FSC-0.143 (Å) | half-map FSC-0.143 (Å) | "
            "half maps − truth (Å) | FSC-0.143, pose search (Å) | pose error (°) | n 2D | "
            "n 3D | seeds | status |")
    lines = [head, "|" + "---|" * 17]
    for r in rows:
        def bold(text: str, key: str) -> str:
            return markdown_bold(text, r["method"] in won.get(key, ()))

        lines.append(f"| {r['method']} | {bold(with_seed_sd(r, 'psnr', 2), 'psnr')} | "
                     f"{_fmt(r.get('psnr_gain_db'))} | {_vs_best(r)} | "
                     f"{bold(with_seed_sd(r, 'ssim', 3), 'ssim')} | "
                     f"{_fmt(r.get('frc_0143'), 1)} | {_fmt(r.get('seconds_per_image'), 4)} | "
                     f"{bold(_fmt(r.get('fsc_05_A'), 1), 'fsc_05_A')} | "
                     f"{_fmt(r.get('fsc_0143_A'), 1)} | {_halfmap(r)} | "
                     f"{_signed(r.get('halfmap_minus_truth_A'))} | "
                     f"{_fmt(r.get('fsc_0143_A_pose_search'), 1)} | "
                     f"{_fmt(r.get('median_pose_error_deg'), 1)} | {_fmt(r.get('n_test_2d'))} | "
                     f"{_fmt(r.get('n_test_3d'))} | {_fmt(r.get('n_seeds'))} | {r['status']} |")
    return "\n".join(lines)


# (metric, label) in the order the verdict states them; 3D against the truth at 0.5 first.
VERDICT_METRICS = (("psnr", "PSNR"), ("ssim", "SSIM"),
                   ("fsc_05_A", "3D FSC-0.5 against the truth (primary)"),
                   ("fsc_0143_A", "3D FSC-0.143"),
                   ("fsc_halfmap_0143_A", "3D half-map FSC-0.143 (claimed)"),
                   ("fsc_0143_A_pose_search", "3D FSC-0.143 with searched poses"))


def verdict(rows: list[dict], main: str) -> str:
    """Which method wins PSNR, SSIM and FSC on one condition, said plainly.

    Winners follow :func:`cryodiff.benchmark.ranking.winners` among the denoisers: PSNR and
    SSIM compare only rows measured on the full 2D test set (rows of slow methods, on fewer
    particles, are not comparable), PSNR ties within the seed spread; 3D is led by the FSC-0.5
    against the truth, and each 3D winner (known poses, half maps, searched poses) is set
    beside the raw particles.
    """
    ok = [r for r in rows if r["status"] == "ok" and r["method"] != "noisy"]
    full_2d = full_2d_count(rows)
    noisy = next((r for r in rows if r["method"] == "noisy" and r["status"] == "ok"), None)
    won = winners(rows, tuple(key for key, _ in VERDICT_METRICS), denoisers_only=True)
    parts = []
    for key, label in VERDICT_METRICS:
        if key not in won:
            continue
        winner = best_row(rows, key, denoisers_only=True)
        text = f"best {label}: **{winner['method']}** ({_fmt(winner[key], 3)})"
        others = [r for r in ok if r["method"] in won[key] and r is not winner]
        if others:
            how = "within the seed spread" if key in SEED_TIED else "as printed in the table"
            text += f"; tied {how}: " + ", ".join(
                f"**{r['method']}** ({_fmt(r[key], 3)})" for r in others)
        mine = next((r for r in ok if r["method"] == main and r.get(key) is not None
                     and (key not in TWO_D or ranked_2d(r, full_2d))), None)
        if mine is not None and mine["method"] not in won[key]:
            text += f"; {main} {_fmt(mine[key], 3)}"
            if key == "psnr" and mine.get("psnr_vs_best_sem") is not None:
                text += (f" ({mine['psnr_vs_best_db']:+.3f} ± {mine['psnr_vs_best_sem']:.3f} dB, "
                         f"paired over {mine['n_test_2d']} images")
                if mine.get("psnr_seed_sd") is not None and (mine.get("n_seeds") or 1) > 1:
                    text += f"; seed SD {mine['psnr_seed_sd']:.3f} dB over {mine['n_seeds']} seeds"
                text += ")"
        if key not in TWO_D and noisy is not None and noisy.get(key) is not None:
            text += f"; raw particles {_fmt(noisy[key], 3)}"
            if noisy[key] < winner[key]:
                text += " (no denoiser beats them)"
        parts.append(text)
    note = f" (PSNR/SSIM over the {full_2d} particles every fast method was scored on)" \
        if full_2d is not None and any(r.get("n_test_2d") != full_2d for r in ok
                                       if r.get("psnr") is not None) else ""
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
    seeds = config.training_seeds
    return [
        f"- Training pairs: {config.n_train} simulated particles (+ {config.n_val} validation) "
        f"per condition, identical for every trained method; SR3 trains on the training "
        f"split and validates on the validation split.",
        f"- One recipe for every learnt network (SR3, Noise2Noise, the supervised U-Nets, the "
        f"L2 post-processors of the sr3+pp-mse rows; `{config.train_preset}` training "
        f"preset): AdamW (lr {t.lr:g}, "
        f"weight decay {t.weight_decay:g}), linear warm-up over {t.warmup_steps} steps, "
        f"gradient-norm clipping at {t.grad_clip:g}, EMA of the weights (decay {t.ema_decay:g}, "
        f"ramped) used to denoise, random dihedral augmentation, precision `amp={t.amp}` "
        f"(bf16 autocast on CUDA, fp32 on the CPU); {t.steps} steps × batch {t.batch_size}. "
        f"The post-processors train {t.post_train_steps} more steps on top of SR3 (the "
        f"paper's design; their time is in `fit_seconds`); the paper-faithful one (the "
        f"sr3+pp rows) keeps the paper's plain AdamW with L1, no warm-up, clipping or EMA. "
        f"The sr3-pm post-processor trains like a regression U-Net ({t.steps} steps × batch "
        f"{t.batch_size}) on top of SR3, and so does the sr3-x0ft fine-tuning of SR3's own "
        f"network; supervised-2x, supervised-large-2x, supervised-large-direct-2x and the "
        f"sr3-joint network train {2 * t.steps} steps, the same total. The SSIM stage "
        f"(sr3-x0ft-ssim, sr3-joint-ssim and the supervised-*-2x-ssim rows) "
        f"trains each of those networks on for {max(1, t.steps // 10)} more steps with L2 + "
        f"{SSIM_WEIGHT:g} · (1 − SSIM). No network gets the CTF as an input (Wiener and CWF "
        f"do).",
        "- Test time: " + ("every network trained here and applied in one pass "
                           "(Noise2Noise, the supervised U-Nets, the sr3+pp-mse and sr3-pm "
                           "post-processors, a v-SR3's one-pass x̂₀ and its fine-tuned "
                           "sr3-x0ft) averages the 8 dihedral flips/rotations of its "
                           "input (self-ensemble); Topaz runs once, as shipped, and the "
                           "paper-faithful SR3 rows are single passes as in the paper."
                           if config.self_ensemble else "single passes, no self-ensemble."),
        f"- Training seeds {', '.join(map(str, seeds))} (the simulated data stay those of "
        f"seed {config.seed}): a learnt row is the mean over seeds ± their sample SD; 3D, "
        f"half maps and the pose search use the first seed's outputs only.",
        "- Low-pass σ, Wiener spectra, BM3D noise model and scale, CWF noise variance and "
        "the Topaz model are chosen on the validation split.",
    ]


def devices_line(rows: list[dict]) -> str | None:
    """``Device: …`` for the rows that record one (None when none does); a run whose rows
    name several devices is flagged."""
    devices = sorted({r["device"] for r in rows if r.get("device")})
    if not devices:
        return None
    if len(devices) == 1:
        return f"Device: {devices[0]} (every row)."
    return ("**Mixed devices: " + ", ".join(devices) + "** — timings and precision differ "
            "between rows; not one table under the protocol.")


def _psnr_curves(results, config: BenchmarkConfig) -> dict:
    """PSNR vs steps on one common subset (the first ``n_test_slow`` test particles)."""
    curves = {}
    n = config.n_test_slow
    for result in results:
        test = result.condition.test
        target = test.clean_ctf[:n].double()
        by_name = {o.method: o for o in result.outputs if o.images is not None}
        name = config.sr3_row
        steps = [s for s in config.sr3_steps if name(f"sr3_{s}") in by_name]
        if not steps:
            continue

        def mean_psnr(row: str) -> float:
            return float(psnr(by_name[row].images[:n].double(), target).mean())

        curves[result.condition.tag] = {
            "steps": steps, "plain": [mean_psnr(name(f"sr3_{s}")) for s in steps],
            "postprocessed": [mean_psnr(name(f"sr3+pp_{s}")) for s in steps
                              if name(f"sr3+pp_{s}") in by_name] or None,
            "postprocessed_mse": [(s, mean_psnr(name(f"sr3+pp-mse_{s}"))) for s in steps
                                  if name(f"sr3+pp-mse_{s}") in by_name] or None,
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
    fast = config.sr3_fast_steps
    keep = {"noisy", "lowpass", "wiener", "bm3d", "topaz", "noise2noise", "supervised",
            "supervised-l1", "supervised-large", "supervised-2x", "supervised-large-2x",
            "cwf", "cwf-2d",
            *map(config.sr3_row, (f"sr3_{slow_max}", f"sr3+pp_{fast}", f"sr3+pp-mse_{fast}",
                                  f"sr3_mean{config.posterior_samples}_{fast}",
                                  f"sr3-pm{config.pm_draws}_{fast}", "sr3-x0ft_1",
                                  "sr3-x0ft-ssim_1")), "sr3v-joint-ssim_1"}
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
    save_figure(plot_fsc_panels({r.condition.tag: r.fsc_curves for r in results},
                                threshold=0.5), out / "fsc.png")
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
    main = config.sr3_row(f"sr3+pp_{config.sr3_fast_steps}")
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
          *([device, ""] if (device := devices_line(rows)) else []),
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
          "0.45·L, read at 0.5 (the criterion for a map against the truth: the primary "
          "figure, which decides the 3D winner) with 0.143 beside it. The other methods are "
          "too slow for the 3D set at this preset and have 2D rows only.",
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
               table(result.rows), "", SPREAD_LEGEND, "", verdict(result.rows, main), "",
               "Notes:", ""]
        for r in result.rows:
            per_seed = _per_seed(r)
            if r["note"] or per_seed:
                fit = f" (fit/training {r['fit_seconds']:.0f} s)" if r["fit_seconds"] else ""
                text = "; ".join(t for t in (r["note"], per_seed) if t)
                md.append(f"- {r['method']} [{r['status']}]: {text}{fit}")
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
           "the true map, one panel per condition, resolutions at 0.5 in the legend; "
           "`fsc_pose_search.png` the same at searched poses, at 0.143), "
           "`fsc_halfmap_vs_truth.png` (the paper's Figure 5 both ways: half-map FSC "
           "beside FSC against the truth, per condition), `psnr_vs_steps.png`.", ""]
    write_text_atomic(out / "results.md", "\n".join(md))
