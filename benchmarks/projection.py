"""Projection benchmark: cryodiff vs ASPIRE vs torch-fourier-slice, side by side in one run.

    python benchmarks/projection.py [--quick]

Measures images/s at 64² and 128² (same random rotations for all, best of several interleaved
repeats), each projector's error against RELION's projections in ../shared/data (per-image
relative L2 after standardising each stack, with each method's best rotation/shift convention
found by search), and the whole-process time of ``cryodiff project`` against an equivalent
ASPIRE script on 20,000 poses. Writes benchmarks/results/projection.md and prints it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CRYODIFF_REFERENCE_DATA", ROOT / "data"))
STACKS = {"rln_proj_65": "ribosome70S_65.mrc", "rln_proj_65_centered": "ribosome70S_65.mrc",
          "rln_proj_65_shifted": "ribosome70S_65.mrc",
          "rln_proj_64_centered": "ribosome70S_64_fourier_cropped.mrc",
          "rln_proj_64_shifted": "ribosome70S_64_fourier_cropped.mrc"}


def _aspire_project(volume: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    from aspire.utils import Rotation
    from aspire.volume import Volume

    return Volume(volume.astype(np.float32)).project(
        Rotation(rotations.astype(np.float32))).asnumpy()


def _tfs_project(volume: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    from torch_fourier_slice import project_3d_to_2d

    return project_3d_to_2d(torch.from_numpy(volume.astype(np.float32)),
                            torch.from_numpy(rotations.astype(np.float32))).numpy()


def _cryodiff_project(volume: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    from cryodiff.projection import project

    return project(torch.from_numpy(volume.astype(np.float32)),
                   torch.from_numpy(rotations)).numpy()


METHODS = {"cryodiff": _cryodiff_project, "ASPIRE 0.14": _aspire_project,
           "torch-fourier-slice": _tfs_project}


def throughput(box: int, n: int, repeats: int) -> dict[str, float]:
    """Best images/s of each method on a random ``box³`` map (interleaved repeats)."""
    from cryodiff.geometry import random_rotations

    volume = np.random.default_rng(0).standard_normal((box,) * 3).astype(np.float32)
    rotations = random_rotations(n, torch.Generator().manual_seed(0), torch.float64).numpy()
    best = dict.fromkeys(METHODS, 0.0)
    for name, method in METHODS.items():
        method(volume, rotations[:8])  # warm-up (FFT plans, imports)
    for _ in range(repeats):
        for name, method in METHODS.items():
            start = time.perf_counter()
            method(volume, rotations)
            best[name] = max(best[name], n / (time.perf_counter() - start))
    return best


def throughput_in_subprocess(box: int, n: int, repeats: int, threads: int | None) -> dict:
    """:func:`throughput` in a fresh process limited to ``threads`` (None: library defaults)."""
    env = dict(os.environ)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--throughput",
                             str(box), str(n), str(repeats)], env=env, check=True,
                            capture_output=True, text=True, cwd=os.getcwd())
    return json.loads(result.stdout.strip().splitlines()[-1])


def _standardised_errors(ours: np.ndarray, reference: np.ndarray, per_image: bool) -> np.ndarray:
    axes = (-1, -2) if per_image else None
    def std(x):
        return (x - x.mean(axis=axes, keepdims=True)) / x.std(axis=axes, keepdims=True)
    diff = (std(ours) - std(reference)).reshape(len(ours), -1)
    return np.linalg.norm(diff, axis=1) / np.linalg.norm(std(reference).reshape(len(ours), -1),
                                                          axis=1)


def relion_errors(name: str, method) -> tuple[float, float, str]:
    """(max per-stack-standardised error, max per-image-standardised error, convention)."""
    from cryodiff.fourier import shift_images
    from cryodiff.geometry import euler_to_matrix
    from cryodiff.io.mrc import read_map, read_stack
    from cryodiff.io.star import read_particles

    folder = DATA / "relion_reference"
    particles = read_particles(folder / f"{name}.star")
    volume = read_map(folder / STACKS[name])[0].numpy()
    reference = read_stack(folder / f"{name}.mrcs").double().numpy()
    a = euler_to_matrix(torch.tensor(particles.eulers_deg, dtype=torch.float64)).numpy()
    origins = torch.tensor(particles.shifts_A / particles.pixel_size_A[:, None])
    offsets = [0.0, 1.0, -1.0] if particles.box % 2 else [0.0]
    best = None
    for transpose_rot, transpose_img in itertools.product((False, True), repeat=2):
        rots = a.transpose(0, 2, 1) if transpose_rot else a
        images = method(volume, np.ascontiguousarray(rots)).astype(np.float64)
        if transpose_img:
            images = images.transpose(0, 2, 1)
        for sign, dx, dy in itertools.product((-1.0, 1.0), offsets, offsets):
            shifts = sign * origins + torch.tensor([dx, dy], dtype=torch.float64)
            moved = shift_images(torch.from_numpy(np.ascontiguousarray(images)), shifts).numpy()
            stack = _standardised_errors(moved, reference, per_image=False)
            image = _standardised_errors(moved, reference, per_image=True)
            label = (("Aᵀ" if transpose_rot else "A")
                     + (", image transposed" if transpose_img else "")
                     + f", shift {'−' if sign < 0 else '+'}origin"
                     + (f" + ({dx:+.0f}, {dy:+.0f}) px" if particles.box % 2 else ""))
            if best is None or stack.max() < best[0]:
                best = (float(stack.max()), float(image.max()), label)
    return best


ASPIRE_SCRIPT = textwrap.dedent("""
    import sys
    import mrcfile, numpy as np, starfile
    from aspire.utils import Rotation
    from aspire.volume import Volume
    map_path, star_path, out_path = sys.argv[1:4]
    table = starfile.read(star_path)
    particles, optics = table["particles"], table["optics"]
    pixel = float(optics["rlnImagePixelSize"][0])
    eulers = np.deg2rad(particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy())
    shifts = -particles[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy() / pixel
    volume = Volume(mrcfile.read(map_path).astype(np.float32))
    rotations = Rotation.from_euler(eulers.astype(np.float32))
    with mrcfile.new(out_path, overwrite=True) as out:
        images = []
        for start in range(0, len(eulers), 1024):
            block = volume.project(rotations[start:start + 1024])
            images.append(block.shift(shifts[start:start + 1024]).asnumpy()[:])
        out.set_data(np.concatenate(images).astype(np.float32))
        out.voxel_size = pixel
""")


def whole_process(n: int, repeats: int, workdir: Path) -> dict[str, float]:
    """Wall-clock seconds (best of ``repeats``) for projecting ``n`` poses at 64², end to end."""
    from cryodiff.geometry import random_eulers_deg
    from cryodiff.io.star import particles_from_arrays, write_particles

    map_path = DATA / "relion_reference" / "ribosome70S_64_fourier_cropped.mrc"
    eulers = random_eulers_deg(n, torch.Generator().manual_seed(0)).numpy()
    shifts = np.random.default_rng(0).normal(0, 2, (n, 2))
    star = workdir / "poses.star"
    write_particles(star, particles_from_arrays(workdir / "dummy.mrcs", eulers, shifts, None,
                                                1.0, 64, n=n))
    (workdir / "aspire_project.py").write_text(ASPIRE_SCRIPT)
    commands = {
        "cryodiff": [sys.executable, "-m", "cryodiff", "project", str(map_path), "--star",
                     str(star), "--out", str(workdir / "cryodiff.mrcs")],
        "ASPIRE 0.14": [sys.executable, str(workdir / "aspire_project.py"), str(map_path),
                        str(star), str(workdir / "aspire.mrcs")],
    }
    best = dict.fromkeys(commands, float("inf"))
    for _ in range(repeats):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, cwd=workdir, check=True, capture_output=True)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    parser.add_argument("--throughput", nargs=3, type=int, metavar=("BOX", "N", "REPEATS"),
                        help=argparse.SUPPRESS)  # internal: one measurement, JSON on stdout
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*no pixel size")
    if args.throughput:
        if "OMP_NUM_THREADS" in os.environ:
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        print(json.dumps(throughput(*args.throughput)))
        return
    workdir = Path(tempfile.mkdtemp(prefix="cryodiff-bench-"))
    os.chdir(workdir)  # ASPIRE writes ./logs on import
    repeats = 2 if args.quick else 3
    sizes = {64: 1000 if args.quick else 4000, 128: 200 if args.quick else 1000}
    n_poses = 2000 if args.quick else 20000
    load_before = os.getloadavg()[0]
    rates = {box: throughput_in_subprocess(box, n, repeats, None) for box, n in sizes.items()}
    rates_1 = {box: throughput_in_subprocess(box, n, repeats, 1) for box, n in sizes.items()}
    errors = {name: {stack: relion_errors(stack, method) for stack in STACKS}
              for name, method in METHODS.items()} if DATA.is_dir() else {}
    process = whole_process(n_poses, 1 if args.quick else 2, workdir) if DATA.is_dir() else {}

    load_after = os.getloadavg()[0]
    lines = [f"# Projection benchmark ({'quick' if args.quick else 'full'} run)", "",
             f"Machine: {os.cpu_count()} CPU cores (load average {load_before:.1f} before, "
             f"{load_after:.1f} after: other jobs share these cores), torch {torch.__version__}. "
             f"Wall-clock images/s, best of {repeats} interleaved repeats, library thread "
             "defaults (1 thread: OMP_NUM_THREADS=1).", "",
             "| method | img/s 64² | img/s 128² | img/s 64², 1 thread | img/s 128², 1 thread "
             "| RELION error, stack-standardised (max) | per-image-standardised (max) "
             "| best convention found |",
             "|---|---|---|---|---|---|---|---|"]
    for name in METHODS:
        worst = max(errors[name].values(), key=lambda e: e[0]) if errors else None
        conventions = sorted({e[2] for e in errors[name].values()}) if errors else []
        lines.append(f"| {name} | {rates[64][name]:,.0f} | {rates[128][name]:,.0f} | "
                     f"{rates_1[64][name]:,.0f} | {rates_1[128][name]:,.0f} | "
                     + (f"{100 * worst[0]:.2f} % | "
                        f"{100 * max(e[1] for e in errors[name].values()):.2f} % | "
                        + "; ".join(conventions) if worst else "n/a | n/a | n/a") + " |")
    lines += ["", f"Speed-up at 64²: {rates[64]['cryodiff'] / rates[64]['ASPIRE 0.14']:.1f}× "
              f"ASPIRE, {rates[64]['cryodiff'] / rates[64]['torch-fourier-slice']:.1f}× "
              f"torch-fourier-slice (1 thread: "
              f"{rates_1[64]['cryodiff'] / rates_1[64]['ASPIRE 0.14']:.1f}× and "
              f"{rates_1[64]['cryodiff'] / rates_1[64]['torch-fourier-slice']:.1f}×).", ""]
    if errors:
        lines += ["Per-stack RELION errors (stack-standardised / per-image-standardised, max):",
                  "", "| stack | " + " | ".join(METHODS) + " |",
                  "|---|" + "---|" * len(METHODS)]
        for stack in STACKS:
            lines.append(f"| {stack} | " + " | ".join(
                f"{100 * errors[m][stack][0]:.2f} / {100 * errors[m][stack][1]:.2f} %"
                for m in METHODS) + " |")
        lines.append("")
    if process:
        ratio = process["ASPIRE 0.14"] / process["cryodiff"]
        lines += [f"Whole process, {n_poses:,} poses at 64² (start-up, STAR reading, "
                  "projection, shifts, writing the stack):", "",
                  "| program | seconds |", "|---|---|"]
        lines += [f"| {name} | {seconds:.1f} |" for name, seconds in process.items()]
        lines += ["", f"cryodiff project is {ratio:.1f}× faster than the ASPIRE script.", ""]
    text = "\n".join(lines)
    out = ROOT / "benchmarks" / "results" / "projection.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
