"""How good a ground truth is the closest projection? A check on particles with known truth.

    OMP_NUM_THREADS=1 python benchmarks/real_reference_check.py [--work runs/real_reference_check]
        [--n 64] [--snr 0.1] [--box 32]

Particles are simulated *with poses* from the bundled ribosome map (assumed 7.4 Å/px), so
their true clean images are known; a second, independent simulation is the training set.
``cryodiff benchmark --particles`` then scores low-pass, Wiener and Topaz-Denoise against the
closest-projection references it builds from the STAR and the map, and the same methods'
outputs (:func:`cryodiff.benchmark.real_compare.denoise_real`) are scored against the true
clean images: the two tables should rank the methods alike and agree in value. Prints both,
and the references' own PSNR / SSIM against the truth.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

MAP = Path(__file__).resolve().parents[1] / "data" / "ribosome70S" / "ribosome70S_65.mrc"
MAP_PIXEL_A = 7.4
METHODS = ("lowpass", "wiener", "topaz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/real_reference_check"))
    parser.add_argument("--n", type=int, default=64, help="particles scored")
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--box", type=int, default=32)
    args = parser.parse_args()

    from cryodiff.benchmark.evaluate import metrics_2d
    from cryodiff.benchmark.real import load_references
    from cryodiff.benchmark.real_compare import denoise_real
    from cryodiff.cli import main as cli
    from cryodiff.io.mrc import read_stack
    from cryodiff.simulate import SimulationConfig, load_map_or_phantom, simulate_dataset

    start = time.perf_counter()
    volume, pixel_size_A = load_map_or_phantom(str(MAP), args.box, MAP_PIXEL_A)
    for name, n, seed in (("real", args.n, 11), ("train", 1088, 12)):
        simulate_dataset(volume, pixel_size_A, SimulationConfig(box=args.box, n_particles=n,
                                                                snr=args.snr, seed=seed),
                         args.work / name, progress=False)
    star = args.work / "real" / "particles.star"
    truth = read_stack(args.work / "real" / "clean_ctf.mrcs")
    references = load_references(star, MAP, args.box, map_pixel_size_A=MAP_PIXEL_A)[0]
    check = metrics_2d(references.reference, truth, pixel_size_A)
    print(f"references vs truth: PSNR {check['psnr']:.2f} dB, SSIM {check['ssim']:.3f}; "
          f"fitted scale {float(references.scale.mean()):.3f} ± "
          f"{float(references.scale.std()):.3f} (truth: 1)")
    assert cli(["benchmark", "--particles", str(star), "--map", str(MAP), "--map-pixel-size",
                str(MAP_PIXEL_A), "--training", str(args.work / "train"), "--only", *METHODS,
                "--n-particles", str(args.n), "--out", str(args.work / "bench"),
                "--no-progress", "--device", "cpu"]) == 0
    rows = json.loads((args.work / "bench" / "results.json").read_text())["rows"]
    outputs = denoise_real(star, args.work / "train", METHODS, n_validation=64)
    print("| method | PSNR vs reference | SSIM vs reference | PSNR vs truth | SSIM vs truth |")
    print("|---|---|---|---|---|")
    for row in rows:
        if row["psnr"] is None or row["method"] not in outputs:
            continue
        true = metrics_2d(outputs[row["method"]], truth, pixel_size_A)
        print(f"| {row['method']} | {row['psnr']:.2f} | {row['ssim']:.3f} | {true['psnr']:.2f} "
              f"| {true['ssim']:.3f} |")
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
