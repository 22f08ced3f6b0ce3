"""The SSIM stage offered to every learnt method of a benchmark run: its rows, side by side.

For a finished ``cryodiff benchmark --sr3-prediction v --only sr3 sr3-x0ft supervised-2x
supervised-large-2x …`` run whose work folder ``WORK`` holds the trained networks of each
training seed (``WORK/baselines/seed<S>``, ``WORK/sr3v_<condition>_seed<S>``; missing ones
are trained there as the benchmark would), scores on the ``n_test_2d`` test particles, for
every seed: ``supervised-2x``, ``supervised-large-2x`` and ``sr3v-x0ft_1``, each before and
after the same SSIM stage (:func:`cryodiff.baselines.regression.ssim_stage_recipe`, a tenth
of the preset's steps more, with ``SSIM_WEIGHT · (1 − SSIM)`` added to the squared error in
units of the target's variance; rows
``supervised-2x-ssim``, ``supervised-large-2x-ssim``, ``sr3v-x0ft-ssim_1``), and
``sr3v-x0_1``. Writes per-seed PSNR (dB), SSIM, their per-image values and each row's note
and fit seconds (which say whether a network was reused) as JSON, and a
Markdown table beside it: mean ± SD over seeds, and the paired gaps (per-image values
averaged over seeds, ± SE over images) of ``sr3v-x0ft-ssim_1`` against every other row.
Uses the benchmark's own code paths and caches (the stages are cached beside their base
networks), so the rows are the benchmark's. The preset's device (``auto``, as the run's: the
trained baselines' cache key holds it); here the CPU, one thread.

``OMP_NUM_THREADS=1 python benchmarks/ssim_stage_rows.py ci phantom 0.1 none
runs/ft/ci_ph_0.1/work out.json 0 1 2`` (PRESET MAP SNR PIXEL_SIZE|none WORK OUT SEEDS…).
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

from cryodiff.benchmark.conditions import make_condition
from cryodiff.benchmark.config import get_preset
from cryodiff.benchmark.evaluate import paired_difference
from cryodiff.benchmark.methods import one_pass_row, run_baseline, sr3_train_config
from cryodiff.benchmark.sr3_x0ft import run_sr3_x0ft, run_sr3_x0ft_ssim
from cryodiff.denoise import load_denoiser
from cryodiff.io.atomic import write_json_atomic
from cryodiff.metrics import psnr, ssim
from cryodiff.training.checkpoint import latest_checkpoint, load_checkpoint

OURS = "sr3v-x0ft-ssim_1"
BASELINES = ("supervised-2x", "supervised-2x-ssim", "supervised-large-2x",
             "supervised-large-2x-ssim")


def seed_rows(config, condition, work: Path) -> dict:
    """Every row (a :class:`MethodOutput`) under ``config.training_seed``."""
    device, seed = torch.device("cpu"), config.training_seed
    sr3_dir = work / f"{config.sr3_name}_{condition.tag}_seed{seed}"
    latest = latest_checkpoint(sr3_dir)
    steps = sr3_train_config(config, condition).steps
    if latest is None or int(load_checkpoint(latest)["step"]) < steps:
        raise SystemExit(f"{sr3_dir}: no SR3 trained for {steps} steps (run the benchmark "
                         "with sr3 first)")
    rows = {name: run_baseline(name, condition, config, device,
                               work / "baselines" / f"seed{seed}") for name in BASELINES}
    denoiser = load_denoiser(sr3_dir, device)
    noisy = condition.test.noisy[:config.n_test_2d]
    rows["sr3v-x0_1"] = one_pass_row(denoiser, noisy, config, None)
    [rows["sr3v-x0ft_1"]] = run_sr3_x0ft(denoiser, condition, config, [], cache_dir=sr3_dir)
    [rows[OURS]] = run_sr3_x0ft_ssim(denoiser, condition, config, [], cache_dir=sr3_dir)
    failed = [f"{name}: {row.note}" for name, row in rows.items() if row.images is None]
    if failed:
        raise SystemExit("; ".join(failed))
    return rows


def table(result: dict) -> str:
    """Markdown: mean ± seed SD of PSNR and SSIM, and paired gaps of ``OURS``."""
    names = list(result["seeds"][0]["rows"])

    def stacked(name: str, key: str) -> torch.Tensor:
        return torch.tensor([s["rows"][name][key] for s in result["seeds"]]).double()

    def spread(values: torch.Tensor, digits: int) -> str:
        sd = statistics.stdev(values.tolist()) if len(values) > 1 else 0.0
        return f"{float(values.mean()):.{digits}f} ± {sd:.{digits}f}"

    lines = [f"# The SSIM stage for every learnt method: `{result['preset']}`, "
             f"{result['map']}, SNR {result['snr']}", "",
             f"Written by `python benchmarks/ssim_stage_rows.py {result['command']}`. "
             f"{result['n_test_2d']} test particles, training seeds "
             f"{', '.join(str(s['training_seed']) for s in result['seeds'])}; mean ± SD over "
             "seeds; gaps of `sr3v-x0ft-ssim_1` paired image by image (per-image values "
             "averaged over seeds, ± SE over images). This CPU, fp32.", "",
             "| row | PSNR (dB) | SSIM | `sr3v-x0ft-ssim_1` − row, PSNR | … SSIM |",
             "|---|---|---|---|---|"]
    for name in names:
        psnrs = torch.tensor([s["rows"][name]["psnr"] for s in result["seeds"]])
        ssims = torch.tensor([s["rows"][name]["ssim"] for s in result["seeds"]])
        if name == OURS:
            gaps = "", ""
        else:
            gaps = tuple(
                "{:+.{d}f} ± {:.{d}f}".format(*paired_difference(
                    stacked(OURS, key).mean(0), stacked(name, key).mean(0)), d=d)
                for key, d in (("psnr_per_image", 3), ("ssim_per_image", 4)))
        label = f"**`{name}`**" if name == OURS else f"`{name}`"
        lines.append(f"| {label} | {spread(psnrs, 3)} | {spread(ssims, 4)} | {gaps[0]} | "
                     f"{gaps[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    preset, map_spec, snr, pixel = argv[0], argv[1], float(argv[2]), argv[3]
    work, out, seeds = Path(argv[4]), Path(argv[5]), [int(s) for s in argv[6:]] or [0]
    torch.set_num_threads(1)
    base = dataclasses.replace(get_preset(preset), maps=(map_spec,), snrs=(snr,),
                               pixel_size_A=None if pixel == "none" else float(pixel),
                               sr3_prediction="v", pose_search=False,  # device: as the run's
                               methods=("sr3", "sr3-x0ft", "sr3-x0ft-ssim", *BASELINES))
    condition = make_condition(map_spec, snr, base)
    target = condition.test.clean_ctf[:base.n_test_2d]
    result = {"command": " ".join(argv), "preset": preset, "map": map_spec, "snr": snr,
              "n_test_2d": base.n_test_2d, "seeds": []}
    for seed in seeds:
        start = time.perf_counter()
        outputs = seed_rows(base.for_training_seed(seed), condition, work)
        rows = {}
        for name, row in outputs.items():
            per_psnr, per_ssim = psnr(row.images.double(), target), ssim(row.images, target)
            rows[name] = {"psnr": float(per_psnr.mean()), "ssim": float(per_ssim.mean()),
                          "fit_seconds": row.fit_seconds, "note": row.note,
                          "psnr_per_image": per_psnr.tolist(),
                          "ssim_per_image": per_ssim.tolist()}
        result["seeds"].append({"training_seed": seed, "rows": rows,
                                "seconds": time.perf_counter() - start})
        print(seed, {k: (round(v["psnr"], 3), round(v["ssim"], 4)) for k, v in rows.items()},
              flush=True)
    write_json_atomic(out, result, indent=1)
    markdown = table(result)
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
