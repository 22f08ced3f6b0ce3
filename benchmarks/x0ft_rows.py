"""The ``sr3v-x0_1``, ``sr3v-x0ft_1`` and ``sr3v-x0ft-ssim_1`` rows of one condition.

For a ``cryodiff benchmark --sr3-prediction v`` run stopped after SR3 trained (its run folder
``OUT/work/sr3v_<condition>_seed<S>`` holds the finished checkpoint): rebuilds the condition's
data as the benchmark does (if ``RUN_DIR`` holds no finished SR3, trains it there exactly as
the benchmark's ``train_sr3`` does, resuming an interrupted run, but without the paper's
post-processor, which no row here uses; a later benchmark run over that folder adds it),
fine-tunes the x̂₀ readout exactly as the benchmark's ``sr3-x0ft``
(:func:`cryodiff.benchmark.sr3_x0ft.run_sr3_x0ft`, cached in the run folder) and its SSIM
stage (:func:`~cryodiff.benchmark.sr3_x0ft.run_sr3_x0ft_ssim`, cached too) and scores the
one-pass rows on the ``n_test_2d`` test particles, writing PSNR (dB), SSIM and both per
image (for pairing with another run's rows of the same particles) as JSON. The raw
particles' row is included, so the pairing can be checked. Training seed ``SEED`` (default
0) on ``DEVICE`` (default ``cpu``; ``cuda`` trains and reads out on the GPU, SR3 and the
fine-tuning in the preset's bf16 autocast there, as the benchmark does).

``OMP_NUM_THREADS=1 python benchmarks/x0ft_rows.py phantom 0.1 none
runs/cs_ph/work/sr3v_phantom_snr0.1_seed0 out.json`` (MAP SNR PIXEL_SIZE|none RUN_DIR OUT
[SEED [DEVICE]]).
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
from cryodiff.benchmark.methods import data_settings, one_pass_row, sr3_train_config
from cryodiff.benchmark.sr3_x0ft import run_sr3_x0ft, run_sr3_x0ft_ssim
from cryodiff.denoise import load_denoiser
from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import write_json_atomic
from cryodiff.metrics import psnr, ssim
from cryodiff.training.checkpoint import latest_checkpoint, load_checkpoint
from cryodiff.training.data import PairedStackData
from cryodiff.training.config import TrainConfig
from cryodiff.training.loop import device_label, select_device, train


def train_sr3_alone(condition, config, run_dir: Path,
                    train_config: TrainConfig | None = None) -> str:
    """Train (or finish) the condition's v SR3 in ``run_dir`` as the benchmark's ``train_sr3``
    does, without the post-processor; nothing to do when it is already fully trained. A run
    folder trained with other settings is refused, never overwritten (the device it trained
    on and how many checkpoints it kept aside). Returns the device its training was
    configured for (``cuda`` for an SR3 trained on a GPU and read out here).
    ``train_config``: SR3's configuration if not the benchmark's (``x0ft_levers.py``)."""
    train_config = train_config or sr3_train_config(config, condition)
    settings, settings_file = data_settings(condition, config), run_dir / "benchmark_data.json"
    latest, done, trained_on = latest_checkpoint(run_dir), 0, train_config.device
    if latest is not None:
        state = load_checkpoint(latest)
        saved = TrainConfig.from_json(state["config"])
        trained_on = saved.device
        saved = dataclasses.replace(saved, device=train_config.device,
                                    keep_checkpoints=train_config.keep_checkpoints)
        same_data = settings_file.is_file() and json.loads(settings_file.read_text()) == \
            json.loads(json.dumps(settings))
        if saved != train_config or not same_data:
            raise SystemExit(f"{run_dir}: trained with other settings or data than this "
                             "condition's SR3")
        done = int(state["step"])
    if done >= train_config.steps:
        return trained_on
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(settings_file, settings)
    data = PairedStackData(condition.train.noisy, condition.train.clean_ctf, train_config,
                           pixel_size_A=condition.pixel_size_A,
                           validation=(condition.val.noisy, condition.val.clean_ctf))
    train(train_config, run_dir, data, resume=done > 0, progress=False)
    return train_config.device


def scores(images: torch.Tensor, target: torch.Tensor) -> dict:
    """PSNR (dB) and SSIM of ``images`` (on any device) against ``target``: the means and the
    per-image values, for pairing with another file's rows of the same particles."""
    images = images.cpu()
    per_image, ssim_per_image = psnr(images.double(), target), ssim(images, target)
    return {"psnr": float(per_image.mean()), "ssim": float(ssim_per_image.mean()),
            "psnr_per_image": per_image.tolist(), "ssim_per_image": ssim_per_image.tolist()}


def main(argv: list[str]) -> int:
    map_spec, snr, pixel, run_dir, out = argv[0], float(argv[1]), argv[2], Path(argv[3]), \
        Path(argv[4])
    seed = int(argv[5]) if len(argv) > 5 else 0
    try:  # a wrong or absent device is refused now, not after an hour of training
        device = str(select_device(argv[6] if len(argv) > 6 else "cpu", verbose=False))
    except CryodiffError as error:
        raise SystemExit(f"x0ft_rows.py: {error}") from None
    torch.set_num_threads(1)
    config = dataclasses.replace(get_preset("cpu-small"), maps=(map_spec,), snrs=(snr,),
                                 pixel_size_A=None if pixel == "none" else float(pixel),
                                 training_seeds=(seed,), sr3_prediction="v", device=device,
                                 methods=("sr3", "sr3-x0ft", "sr3-x0ft-ssim"),
                                 pose_search=False)
    condition = make_condition(map_spec, snr, config)
    sr3_start = time.perf_counter()
    sr3_device = train_sr3_alone(condition, config, run_dir)
    sr3_seconds = time.perf_counter() - sr3_start
    denoiser = load_denoiser(run_dir, torch.device(device))
    n = config.n_test_2d
    noisy, target = condition.test.noisy[:n], condition.test.clean_ctf[:n]
    start = time.perf_counter()
    rows = {"noisy": noisy, "sr3v-x0_1": one_pass_row(denoiser, noisy, config, None).images}
    [tuned] = run_sr3_x0ft(denoiser, condition, config, [], cache_dir=run_dir)
    rows["sr3v-x0ft_1"] = tuned.images
    ssim_start = time.perf_counter()
    [ssim_tuned] = run_sr3_x0ft_ssim(denoiser, condition, config, [], cache_dir=run_dir)
    rows["sr3v-x0ft-ssim_1"] = ssim_tuned.images
    ssim_seconds = time.perf_counter() - ssim_start
    result = {"command": " ".join(argv), "training_seed": seed,
              "device": device_label(torch.device(device)), "sr3_trained_on": sr3_device,
              "sr3_training_seconds_this_call": sr3_seconds,
              "seconds": time.perf_counter() - start,
              "ssim_stage_seconds_with_row": ssim_seconds,
              "note": tuned.note, "ssim_note": ssim_tuned.note, "rows": {}}
    for name, images in rows.items():
        result["rows"][name] = scores(images, target)
    write_json_atomic(out, result, indent=1)  # an interrupted call leaves no half file
    print({k: (round(v["psnr"], 3), round(v["ssim"], 3)) for k, v in result["rows"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
