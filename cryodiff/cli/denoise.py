"""``cryodiff denoise``: apply a trained checkpoint to a particle stack or STAR file."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from cryodiff.errors import CryodiffError


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT.star|INPUT.mrcs", help="particles to denoise")
    parser.add_argument("--checkpoint", required=True, metavar="RUN|CKPT",
                        help="a run folder (its latest checkpoint) or a checkpoint file")
    parser.add_argument("--out", required=True, metavar="OUT.mrcs",
                        help="denoised stack; OUT_std.mrcs with --samples > 1; OUT.star for "
                             "STAR input (without CTF columns when the model restores the "
                             "CTF, i.e. was trained with --target clean)")
    parser.add_argument("--steps", type=int,
                        help="sampling steps (default: the post-processor's training steps "
                             "when it is used, else 100)")
    parser.add_argument("--sampler", choices=("ddpm", "ddim"),
                        help="default: the post-processor's sampler when it is used, else ddpm")
    parser.add_argument("--samples", type=int, default=1,
                        help="samples per particle; K > 1 writes the mean and a std map")
    parser.add_argument("--no-postprocess", action="store_true",
                        help="do not apply the post-processing U-Net")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    from cryodiff.denoise import denoise_with, load_denoiser
    from cryodiff.io.mrc import StackWriter, stack_info
    from cryodiff.training.loop import select_device

    source, out = Path(args.input), Path(args.out)
    if not source.is_file():
        raise CryodiffError("input not found", path=source)
    if out.suffix != ".mrcs":
        raise CryodiffError("the output must be an .mrcs stack", path=out)
    if args.samples < 1 or args.batch_size < 1:
        raise CryodiffError("--samples and --batch-size must be at least 1")
    denoiser = load_denoiser(args.checkpoint, select_device(args.device))
    use_post = denoiser.postprocessor is not None and not args.no_postprocess
    steps = args.steps or (denoiser.config.post_sampling_steps if use_post else 100)
    sampler = args.sampler or (denoiser.config.post_sampler if use_post else "ddpm")

    if source.suffix == ".star":
        from cryodiff.io.images import iter_image_batches
        from cryodiff.io.star import read_particles, write_particles

        particles = read_particles(source)
        batches = iter_image_batches(particles, args.batch_size)
        n, box, pixel_size_A = len(particles), particles.box, float(particles.pixel_size_A[0])
    else:
        from cryodiff.io.mrc import StackFile

        n, box, pixel_size_A = stack_info(source)
        particles = None

        def read_batches():
            with StackFile(source) as stack:
                for start in range(0, n, args.batch_size):
                    idx = np.arange(start, min(start + args.batch_size, n))
                    yield idx, stack.read(idx)

        batches = read_batches()

    std_path = out.with_name(out.stem + "_std.mrcs")
    with StackWriter(out, box, pixel_size_A) as mean_writer, \
            (StackWriter(std_path, box, pixel_size_A) if args.samples > 1 else _Null()) as std_writer:
        for number, (_, images) in enumerate(batches):
            result = denoise_with(denoiser, images, steps=steps, sampler=sampler,
                                  n_samples=args.samples, postprocess=use_post,
                                  batch_size=args.batch_size, seed=args.seed + number)
            mean_writer.write(result.mean)
            if result.std is not None:
                std_writer.write(result.std)
    print(f"cryodiff: denoised {n} particles ({sampler}, {steps} steps, "
          f"{'with' if use_post else 'without'} post-processor) -> {out}")
    if particles is not None:
        star = out.with_suffix(".star")
        write_particles(star, denoised_particles(particles, out, denoiser.config.target))
        note = (" (the CTF is still in the images)" if denoiser.config.target == "clean_ctf"
                else " (CTF restored: no CTF columns, reconstruct without CTF weighting)")
        print(f"cryodiff: wrote {star}{note}")
    return 0


def denoised_particles(particles, stack: Path, target: str):
    """The ParticleStack for the denoised ``stack`` (particle i is image i): same poses,
    shifts and optics; the CTF kept for the ``clean_ctf`` target and dropped for ``clean``.

    A ``clean`` model has already undone the CTF, so a reconstruction must not weight by it
    again. RELION has no label for "CTF fully corrected" (``rlnCtfDataArePhaseFlipped`` would
    make it weight by |CTF|, ``rlnCtfDataAreCtfPremultiplied`` by CTF²), so the defocus
    columns are removed: RELION then treats the images as CTF-free (run it with CTF
    correction off) and `cryodiff reconstruct` skips the CTF. Voltage, Cs and amplitude
    contrast stay in the optics table.
    """
    n = len(particles)
    return dataclasses.replace(particles, image_paths=[stack.resolve()] * n,
                               image_indices=np.arange(n),
                               ctf=particles.ctf if target == "clean_ctf" else None)


class _Null:
    """Stand-in writer when no std map is written."""

    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def write(self, images) -> None:
        return None
