"""The ``sr3v-x0_1`` and ``sr3v-x0ft_1`` rows of one condition whose v SR3 is already trained.

For a ``cryodiff benchmark --sr3-prediction v`` run stopped after SR3 trained (its run folder
``OUT/work/sr3v_<condition>_seed<S>`` holds the finished checkpoint): rebuilds the condition's
data as the benchmark does, fine-tunes the x̂₀ readout exactly as the benchmark's ``sr3-x0ft``
(:func:`cryodiff.benchmark.sr3_x0ft.run_sr3_x0ft`, cached in the run folder) and scores both
one-pass rows on the ``n_test_2d`` test particles, writing PSNR, SSIM and per-image PSNR
(dB, for pairing with another run's rows of the same particles) as JSON. The raw particles'
row is included, so the pairing can be checked. Training seed 0, the CPU.

``OMP_NUM_THREADS=1 python benchmarks/x0ft_rows.py phantom 0.1 none
runs/cs_ph/work/sr3v_phantom_snr0.1_seed0 out.json`` (MAP SNR PIXEL_SIZE|none RUN_DIR OUT).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from cryodiff.benchmark.conditions import make_condition
from cryodiff.benchmark.config import get_preset
from cryodiff.benchmark.methods import one_pass_row
from cryodiff.benchmark.sr3_x0ft import run_sr3_x0ft
from cryodiff.denoise import load_denoiser
from cryodiff.metrics import psnr, ssim


def main(argv: list[str]) -> int:
    map_spec, snr, pixel, run_dir, out = argv[0], float(argv[1]), argv[2], Path(argv[3]), \
        Path(argv[4])
    torch.set_num_threads(1)
    config = dataclasses.replace(get_preset("cpu-small"), maps=(map_spec,), snrs=(snr,),
                                 pixel_size_A=None if pixel == "none" else float(pixel),
                                 training_seeds=(0,), sr3_prediction="v", device="cpu",
                                 methods=("sr3", "sr3-x0ft"), pose_search=False)
    condition = make_condition(map_spec, snr, config)
    denoiser = load_denoiser(run_dir, torch.device("cpu"))
    n = config.n_test_2d
    noisy, target = condition.test.noisy[:n], condition.test.clean_ctf[:n]
    start = time.perf_counter()
    rows = {"noisy": noisy, "sr3v-x0_1": one_pass_row(denoiser, noisy, config, None).images}
    [tuned] = run_sr3_x0ft(denoiser, condition, config, [], cache_dir=run_dir)
    rows["sr3v-x0ft_1"] = tuned.images
    result = {"command": " ".join(argv), "seconds": time.perf_counter() - start,
              "note": tuned.note, "rows": {}}
    for name, images in rows.items():
        per_image = psnr(images.double(), target)
        result["rows"][name] = {"psnr": float(per_image.mean()),
                                "ssim": float(ssim(images, target).mean()),
                                "psnr_per_image": per_image.tolist()}
    out.write_text(json.dumps(result, indent=1))
    print({k: (round(v["psnr"], 3), round(v["ssim"], 3)) for k, v in result["rows"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
