"""The benchmark run: for every map × SNR, simulate, run every method, score in 2D and 3D.

Learnt methods (the trained baselines, SR3's rows, the ``"sr3-mse"`` and ``"sr3-pm"`` rows)
are trained and applied once per training seed on the same data; their rows are means over
seeds with the spread between seeds (:mod:`cryodiff.benchmark.seeds`), and their 3D figures
come from the first seed's images. The other methods run once. Every row records the ``device`` (the
torch device type the methods ran on, with the GPU's model: ``"cuda (NVIDIA H200)"``), so
tables from different devices are not mixed.
:func:`run_benchmark` returns the result rows and writes ``results.json``, ``results.md`` and
the figures into the output folder (see :mod:`cryodiff.benchmark.report`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cryodiff.baselines.base import DenoisingData
from cryodiff.benchmark.conditions import Condition, make_condition
from cryodiff.benchmark.config import BASELINE_METHODS, BenchmarkConfig
from cryodiff.benchmark import methods as bench_methods
from cryodiff.benchmark.evaluate import (finite_or_none, fsc_to_truth, halfmap_fsc,
                                         halves_denoised_apart, metrics_2d,
                                         paired_difference, reconstruct_halves,
                                         reconstruct_split, reconstruct_with_pose_search)
from cryodiff.benchmark.methods import (TRAINED_BASELINES, MethodOutput, blend_row,
                                        failed_output, noisy_output, run_baseline, run_sr3,
                                        train_sr3)
from cryodiff.benchmark.seed_merge import CHECKPOINT_NOTE
from cryodiff.benchmark.seeds import (SeededOutput, combine_seed_rows, combine_seeds,
                                      images_per_seed, per_image_psnr, seed_metrics,
                                      training_seeds_of)
from cryodiff.fsc import FscResult, MaskedFsc

# Methods whose statistics come from the very images they denoise (CWF's covariance): for
# the half maps they are run on each half alone, or the halves would not be independent.
TRANSDUCTIVE_METHODS = ("cwf",)


@dataclass
class ConditionResult:
    """Everything measured on one condition: rows, outputs, maps and FSC curves."""

    condition: Condition
    outputs: list[MethodOutput]
    rows: list[dict] = field(default_factory=list)
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    fsc_curves: dict[str, FscResult] = field(default_factory=dict)
    fsc_curves_pose_search: dict[str, FscResult] = field(default_factory=dict)
    fsc_curves_halfmap: dict[str, MaskedFsc] = field(default_factory=dict)
    halfmap_images: dict[str, torch.Tensor | None] = field(default_factory=dict)
    train_seconds: float | None = None
    device: str = "cpu"


NOT_REQUESTED = "not requested (--skip, --only or the preset's method list)"
# The rows that refine or fine-tune SR3 (row name, method family): each needs "sr3".
REFINED_ROWS = (("sr3+pp-mse", "sr3-mse"), ("sr3-pm", "sr3-pm"), ("sr3-x0ft_1", "sr3-x0ft"),
                ("sr3-x0ft-ssim_1", "sr3-x0ft-ssim"))


# Row keys of a learnt method's training seeds (None for methods not trained here).
SEED_KEYS = ("n_seeds", "training_seeds", "seed_psnrs", "psnr_seed_sd", "ssim_seed_sd")


def _row(output: MethodOutput, condition: Condition, device: str) -> dict:
    return {"method": output.method, "family": output.family, "map": condition.map_name,
            "snr": condition.snr, "psnr": None, "ssim": None, "frc_0143": None,
            **dict.fromkeys(SEED_KEYS), "training_seeds": training_seeds_of(output),
            "device": device,
            "seconds_per_image": finite_or_none(output.seconds_per_image),
            "fsc_0143_A": None, "fsc_05_A": None, "fsc_halfmap_0143_A": None,
            "halfmap_minus_truth_A": None, "fsc_halfmap_unmasked_0143_A": None,
            "halfmap_randomized_fsc": None, "fsc_0143_A_pose_search": None,
            "median_pose_error_deg": None, "psnr_gain_db": None, "psnr_vs_best_db": None,
            "psnr_vs_best_sem": None, "n_test_2d": None, "psnr_per_image": None,
            "n_test_3d": None, "fit_seconds": finite_or_none(output.fit_seconds),
            "status": output.status, "note": output.note}


def _pose_search(result: ConditionResult, method: str, images: torch.Tensor,
                 config: BenchmarkConfig) -> dict:
    """Row keys of the reconstruction at searched poses (empty without a pose search)."""
    if not config.pose_search:
        return {}
    condition = result.condition
    volume, error = reconstruct_with_pose_search(images, condition.test, condition.volume,
                                                 condition.pixel_size_A, config)
    curve = fsc_to_truth(volume, condition.volume, condition.pixel_size_A)
    result.fsc_curves_pose_search[method] = curve
    return {"fsc_0143_A_pose_search": curve.resolution_0143_A, "median_pose_error_deg": error}


def _three_d(result: ConditionResult, method: str, images: torch.Tensor,
              config: BenchmarkConfig) -> dict:
    """Full map against the truth and gold-standard half maps for one 3D set: fills the maps
    and curves of ``result`` and returns the row keys."""
    condition = result.condition
    test, px, truth = condition.test, condition.pixel_size_A, condition.volume
    apart = result.halfmap_images.get(method)
    halves = reconstruct_halves(images if apart is None else apart, test, px, config.seed)
    volume = halves.volume if apart is None else reconstruct_split(images, test, px)
    curve = fsc_to_truth(volume, truth, px)
    gold = halfmap_fsc(halves, config.seed)
    result.maps[method] = volume
    result.fsc_curves[method] = curve
    result.fsc_curves_halfmap[method] = gold
    claimed = gold.corrected.resolution_0143_A
    return {"fsc_0143_A": curve.resolution_0143_A, "fsc_05_A": curve.resolution_05_A,
            "fsc_halfmap_0143_A": claimed,
            "halfmap_minus_truth_A": claimed - curve.resolution_05_A,
            "fsc_halfmap_unmasked_0143_A": gold.unmasked.resolution_0143_A,
            "halfmap_randomized_fsc": finite_or_none(gold.randomized_at_resolution())}


def halfmap_inputs(result: ConditionResult, config: BenchmarkConfig) -> None:
    """Denoise the 3D set of each :data:`TRANSDUCTIVE_METHODS` row one half at a time into
    ``result.halfmap_images`` (fitted as :func:`run_baseline` fits it); a failure leaves
    the row's half maps out and says so in its note."""
    condition = result.condition
    test, val = condition.test, condition.val
    for output in result.outputs:
        if (output.method not in TRANSDUCTIVE_METHODS or output.images is None
                or len(output.images) != len(test)):
            continue
        try:
            baseline = bench_methods.make_baseline(output.method)
            baseline.fit(DenoisingData(noisy=val.noisy, clean_ctf=val.clean_ctf,
                                       clean=val.clean, ctf=val.ctf_grid,
                                       noisy_pair=val.noisy_pair,
                                       pixel_size_A=condition.pixel_size_A))
            result.halfmap_images[output.method] = halves_denoised_apart(
                baseline.denoise, test.noisy, test.ctf_grid, config.seed)
            output.note += ("; " if output.note else "") + \
                "half maps: each half denoised on its own"
        except Exception as error:  # the full-map row stays; its half maps are omitted
            output.note += ("; " if output.note else "") + f"half maps not measured: {error}"
            result.halfmap_images[output.method] = None


def score(result: ConditionResult, config: BenchmarkConfig,
          log: Callable[[str], None] = print) -> None:
    """Fill ``result.rows`` (2D metrics, 3D FSC at known and searched poses), ``maps`` and the
    FSC curves."""
    condition, test = result.condition, result.condition.test
    px, truth = condition.pixel_size_A, condition.volume
    result.maps = {"truth": truth}
    reference = {"method": "clean", "family": "reference", "map": condition.map_name,
                 "snr": condition.snr, "psnr": None, "ssim": None, "frc_0143": None,
                 **dict.fromkeys(SEED_KEYS), "device": result.device,
                 "seconds_per_image": None,
                 **_three_d(result, "clean", test.clean_ctf, config),
                 "fsc_0143_A_pose_search": None, "median_pose_error_deg": None,
                 "psnr_gain_db": None, "psnr_vs_best_db": None, "psnr_vs_best_sem": None,
                 "n_test_2d": None, "psnr_per_image": None, "n_test_3d": len(test),
                 "fit_seconds": None, "status": "reference",
                 "note": "the clean target itself (upper bound for any denoiser in 3D)"}
    reference |= _pose_search(result, "clean", test.clean_ctf, config)
    for output in result.outputs:
        row = _row(output, condition, result.device)
        if output.images is not None:
            n = min(len(output.images), config.n_test_2d)
            row |= seed_metrics(output, test.clean_ctf[:n], px)
            row["n_test_2d"] = n
            # Per-image PSNR (dB, mean over seeds): pairs rows of runs made apart on the same
            # particles image by image (``cryodiff combine-results``).
            row["psnr_per_image"] = [round(float(v), 4) for v in per_image_psnr(
                images_per_seed(output), test.clean_ctf[:n])]
            noisy_psnr = metrics_2d(test.noisy[:n], test.clean_ctf[:n], px)["psnr"]
            row["psnr_gain_db"] = row["psnr"] - noisy_psnr
            if len(output.images) == len(test):
                row |= _three_d(result, output.method, output.images, config)
                row["n_test_3d"] = len(test)
                if isinstance(output, SeededOutput) and len(output.seeds) > 1:
                    row["note"] += (f"; 3D, half maps and pose search from training seed "
                                    f"{output.seeds[0]}'s images")
                if output.method in result.halfmap_images \
                        and result.halfmap_images[output.method] is None:
                    for key in ("fsc_halfmap_0143_A", "halfmap_minus_truth_A",
                                "fsc_halfmap_unmasked_0143_A", "halfmap_randomized_fsc"):
                        row[key] = None
                    result.fsc_curves_halfmap.pop(output.method, None)
                row |= _pose_search(result, output.method, output.images, config)
        result.rows.append({k: _json_ready(v) for k, v in row.items()})
        if output.method == "noisy":
            result.rows.append(reference)
        log(f"  {output.method:<16} {output.status:<8} PSNR {row['psnr']}  FSC {row['fsc_0143_A']}"
            f"  half maps {row['fsc_halfmap_0143_A']}"
            f"  FSC (pose search) {row['fsc_0143_A_pose_search']}")
    _compare_with_best(result, config)


def _json_ready(value):
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def _compare_with_best(result: ConditionResult, config: BenchmarkConfig) -> None:
    """``psnr_vs_best_db`` ± ``psnr_vs_best_sem``: each row's PSNR minus the best denoiser's,
    paired image by image over the full 2D test set (rows scored on fewer images get none);
    a learnt method's per-image PSNR is its mean over training seeds."""
    outputs = {o.method: o for o in result.outputs if o.images is not None}
    full = [r for r in result.rows if r["status"] == "ok" and r["psnr"] is not None
            and r["n_test_2d"] == min(config.n_test_2d, len(result.condition.test))]
    denoisers = [r for r in full if r["method"] != "noisy"]
    if not denoisers:
        return
    best = max(denoisers, key=lambda r: r["psnr"])
    target = result.condition.test.clean_ctf[:best["n_test_2d"]]
    best_psnr = per_image_psnr(images_per_seed(outputs[best["method"]]), target)
    for row in full:
        mean, sem = paired_difference(
            per_image_psnr(images_per_seed(outputs[row["method"]]), target), best_psnr)
        row["psnr_vs_best_db"], row["psnr_vs_best_sem"] = finite_or_none(mean), \
            finite_or_none(sem)


def run_condition(condition: Condition, config: BenchmarkConfig, work_dir: Path,
                  checkpoint: str | os.PathLike | None = None, progress: bool = True,
                  log: Callable[[str], None] = print) -> ConditionResult:
    """Run every method of ``config`` on ``condition`` and score it.

    The learnt methods run once per training seed (trained baselines cached in
    ``work_dir/baselines/seed<S>``, SR3 runs in ``work_dir/sr3_<condition>_seed<S>``, the
    sr3-joint networks in ``work_dir/sr3joint_<condition>_seed<S>``); with a
    ``checkpoint``, SR3 and the rows built on it (:data:`REFINED_ROWS`) use it under the first
    training seed only.
    """
    from cryodiff.training.loop import device_label, select_device

    device = select_device(config.device, verbose=False)
    outputs = [noisy_output(condition)]
    for name in BASELINE_METHODS:
        if name not in config.methods:
            outputs.append(MethodOutput(name, name, None, status="skipped",
                                        note=NOT_REQUESTED))
            continue
        start = time.perf_counter()
        outputs.append(baseline_output(name, condition, config, device, work_dir))
        log(f"  {name}: {outputs[-1].status} ({time.perf_counter() - start:.0f} s)")
    train_seconds = None
    if "sr3" in config.methods:
        sr3_outputs, train_seconds = seeded_sr3_outputs(condition, config, work_dir,
                                                        checkpoint, progress, log)
        outputs += sr3_outputs
        for method, family in REFINED_ROWS:
            if family not in config.methods:
                outputs.append(MethodOutput(config.sr3_row(method), family, None, status="skipped",
                                            note=NOT_REQUESTED))
    else:
        outputs.append(MethodOutput(config.sr3_row("sr3+pp"), "sr3+pp", None, status="skipped",
                                    note=NOT_REQUESTED))
        for method, family in REFINED_ROWS:
            outputs.append(MethodOutput(
                config.sr3_row(method), family, None, status="skipped",
                note="builds on SR3: needs sr3" if family in config.methods
                else NOT_REQUESTED))
    outputs += joint_outputs(condition, config, work_dir, progress, log)
    result = ConditionResult(condition, outputs, train_seconds=train_seconds,
                             device=device_label(device))
    halfmap_inputs(result, config)
    score(result, config, log)
    return result


def joint_outputs(condition: Condition, config: BenchmarkConfig, work_dir: Path,
                  progress: bool, log: Callable[[str], None]) -> list[MethodOutput]:
    """The ``sr3-joint`` rows (:mod:`cryodiff.benchmark.sr3_joint`): trained and applied
    once per training seed, skipped when not requested, failed (with the error) when the
    training or the readout fails."""
    from cryodiff.benchmark.sr3_joint import FAMILY, ROW, SSIM_FAMILY, SSIM_ROW, run_sr3_joint

    names = ((ROW, FAMILY), (SSIM_ROW, SSIM_FAMILY))
    if "sr3-joint" not in config.methods:
        return [MethodOutput(name, family, None, status="skipped", note=NOT_REQUESTED)
                for name, family in names]
    start = time.perf_counter()
    try:
        outputs = run_sr3_joint(condition, config, work_dir, progress)
    except Exception as error:  # the rows already measured stay in the table
        outputs = [failed_output(name, family, error) for name, family in names]
    log(f"  sr3-joint: {outputs[-1].status} ({time.perf_counter() - start:.0f} s)")
    return outputs


def baseline_output(name: str, condition: Condition, config: BenchmarkConfig,
                    device: torch.device, work_dir: Path) -> MethodOutput:
    """One baseline's output on ``condition``: a trained baseline once per training seed
    (in ``work_dir/baselines/seed<S>``, combined into one row), an untrained one once."""
    if name not in TRAINED_BASELINES:
        return run_baseline(name, condition, config, device, work_dir / "baselines")
    seeds = config.training_seeds
    return combine_seeds(
        [run_baseline(name, condition, config.for_training_seed(seed), device,
                      work_dir / "baselines" / f"seed{seed}") for seed in seeds],
        seeds, config.n_test_2d)


def seeded_sr3_outputs(condition: Condition, config: BenchmarkConfig, work_dir: Path,
                       checkpoint: str | os.PathLike | None, progress: bool,
                       log: Callable[[str], None]) -> tuple[list[MethodOutput], float | None]:
    """SR3's rows (:func:`_sr3_rows`) once per training seed, combined row by row, and SR3's
    mean training seconds (None when loaded). With ``checkpoint`` the one loaded model stands
    for the first seed, and every row built from it says so (:data:`CHECKPOINT_NOTE`, so
    that ``combine-results`` never merges such rows as seeds). Later seeds are sampled on
    the 2D test images only."""
    seeds, n_2d = config.training_seeds, config.n_test_2d
    sr3_seeds = seeds if checkpoint is None else seeds[:1]
    runs, seconds = [], []
    for seed in sr3_seeds:
        seeded = config.for_training_seed(seed)
        if runs:  # later seeds count in 2D only: sample the 2D test images alone
            seeded = dataclasses.replace(seeded, methods_3d=())
        rows, trained = _sr3_rows(condition, seeded, work_dir, checkpoint, progress, log)
        if runs:
            rows = [dataclasses.replace(r, images=None if r.images is None
                                        else r.images[:n_2d].clone()) for r in rows]
        runs.append({row.method: row for row in rows})
        seconds.append(trained)
    outputs = combine_seed_rows(runs, sr3_seeds, n_2d)
    for output in outputs:
        if checkpoint is not None and output.images is not None:
            output.note += f"; one trained model {CHECKPOINT_NOTE}" + (
                f": training seed {sr3_seeds[0]} only" if len(sr3_seeds) < len(seeds) else "")
    return outputs, None if checkpoint is not None else sum(seconds) / len(seconds)


def _sr3_rows(condition: Condition, config: BenchmarkConfig, work_dir: Path,
              checkpoint: str | os.PathLike | None, progress: bool,
              log: Callable[[str], None]) -> tuple[list[MethodOutput], float | None]:
    """SR3's rows (and the ``"sr3-mse"``, ``"sr3-pm"``, ``"sr3-x0ft"`` and ``"sr3-x0ft-ssim"``
    ones if requested, with a v-model's ``sr3v-pm+x0`` blend,
    :func:`~cryodiff.benchmark.methods.blend_row`) under
    ``config.training_seed``, trained in ``work_dir/sr3_<condition>_seed<S>`` (or loaded from
    ``checkpoint``), and SR3's training seconds (None when loaded)."""
    from cryodiff.benchmark.sr3_mse import run_sr3_mse
    from cryodiff.benchmark.sr3_pm import run_sr3_pm
    from cryodiff.benchmark.sr3_x0ft import run_sr3_x0ft, run_sr3_x0ft_ssim

    seed, start = config.training_seed, time.perf_counter()
    train_seconds, run_dir = None, None
    if checkpoint is not None:
        from cryodiff.benchmark.methods import check_sr3_checkpoint, load_sr3
        denoiser = load_sr3(checkpoint, config.device)
        check_sr3_checkpoint(denoiser.config, config, checkpoint)
    else:
        run_dir = work_dir / f"{config.sr3_name}_{condition.tag}_seed{seed}"
        denoiser, train_seconds = train_sr3(condition, config, run_dir, progress)
    log(f"  sr3 (training seed {seed}) trained/loaded ({time.perf_counter() - start:.0f} s)")
    start = time.perf_counter()
    rows = run_sr3(denoiser, condition, config, train_seconds, progress=False)
    log(f"  sr3 (training seed {seed}) sampled ({time.perf_counter() - start:.0f} s)")
    runs = {"sr3-mse": run_sr3_mse, "sr3-pm": run_sr3_pm, "sr3-x0ft": run_sr3_x0ft,
            "sr3-x0ft-ssim": run_sr3_x0ft_ssim}
    for method, family in REFINED_ROWS:
        if family not in config.methods:
            continue
        run = runs[family]
        start = time.perf_counter()
        try:
            rows += run(denoiser, condition, config, rows, cache_dir=run_dir)
        except Exception as error:  # the SR3 rows already measured stay in the table
            rows.append(failed_output(config.sr3_row(method), family, error))
        log(f"  {family} (training seed {seed}) trained and applied "
            f"({time.perf_counter() - start:.0f} s)")
    blend = blend_row(rows, config)
    if blend is not None:
        rows.append(blend)
    return rows, train_seconds


def run_benchmark(config: BenchmarkConfig, out_dir: str | os.PathLike,
                  checkpoint: str | os.PathLike | None = None, command: str | None = None,
                  progress: bool = True, figures: bool = True, save_denoised: bool = False,
                  log: Callable[[str], None] = print) -> list[dict]:
    """Run the whole comparison and write its outputs into ``out_dir``; returns the rows.

    ``checkpoint``: a trained SR3 run folder or file to use instead of training one per
    condition (its box and target must match). ``command`` is recorded in ``results.md``.
    ``save_denoised`` also writes ``denoised.star``/``.mrcs`` (the SR3 + post-processor output
    of the first condition's test set, or the best method's that covered it).
    """
    from cryodiff.benchmark.report import write_outputs

    config.validate()
    if checkpoint is not None and "sr3" in config.methods:
        from cryodiff.benchmark.methods import check_sr3_checkpoint, checkpoint_config
        # before anything is trained or written: a misfit would surface after the baselines
        check_sr3_checkpoint(checkpoint_config(checkpoint), config, checkpoint)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results = []
    n_conditions = len(config.maps) * len(config.snrs)
    for map_spec in config.maps:
        for snr in config.snrs:
            t0 = time.perf_counter()
            condition = make_condition(map_spec, snr, config)
            log(f"{condition.tag}: simulated {len(condition.train)}/{len(condition.val)}/"
                f"{len(condition.test)} particles ({time.perf_counter() - t0:.0f} s)")
            results.append(run_condition(condition, config, out / "work", checkpoint,
                                         progress, log))
            if len(results) < n_conditions:  # an interrupted run keeps what it measured
                write_outputs(out, config, results, command=command,
                              wall_seconds=time.perf_counter() - start, load=(load_start, None),
                              checkpoint=checkpoint, figures=False,
                              in_progress=f"{len(results)} of {n_conditions} conditions done")
    wall = time.perf_counter() - start
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    write_outputs(out, config, results, command=command, wall_seconds=wall,
                  load=(load_start, load_end), checkpoint=checkpoint, figures=figures,
                  save_denoised=save_denoised)
    return [row for result in results for row in result.rows]
