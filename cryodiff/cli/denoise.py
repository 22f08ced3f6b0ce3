"""``cryodiff denoise``: apply a trained checkpoint to a particle stack or STAR file."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np

from cryodiff.cli.arguments import device, nonnegative_int, positive_int
from cryodiff.errors import CryodiffError

METHODS = ("sr3", "sr3+pp", "sr3-pm", "x0", "x0ft", "pm+x0")
# The methods that average the sr3-pm post-processor's draws and refine them, those that
# read a v-model's one-pass x̂₀, and those run through the dihedral self-ensemble.
PM_METHODS = ("sr3-pm", "pm+x0")
ONE_PASS_METHODS = ("x0", "x0ft", "pm+x0")
SELF_ENSEMBLE_METHODS = ("sr3-pm", "x0", "x0ft", "pm+x0")
X0_METHODS = ("x0", "x0ft")  # one network pass per view and nothing else


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT.star|INPUT.mrcs", help="particles to denoise")
    parser.add_argument("--checkpoint", required=True, metavar="RUN|CKPT",
                        help="a run folder (its latest checkpoint) or a checkpoint file; its "
                             "box and pixel size must be the particles'")
    parser.add_argument("--out", required=True, metavar="OUT.mrcs",
                        help="denoised stack; OUT_std.mrcs with --samples > 1 (sr3-pm: "
                             "--std); OUT.star for STAR input: the input's optics table and "
                             "particle columns with rlnImageName pointing at OUT.mrcs "
                             "(without the per-particle "
                             "CTF columns when the model restores the CTF, i.e. was trained "
                             "with --target clean)")
    parser.add_argument("--method", choices=METHODS,
                        help="sr3: the mean of --samples samples; sr3+pp: each sample refined "
                             "by the paper's post-processor (`cryodiff train --postprocess`); "
                             "sr3-pm: the mean of the K samples its post-processor was trained "
                             "on, refined (`cryodiff train --pm-postprocess`; the best PSNR). "
                             "x0: a v-predicting model's (`cryodiff train --prediction v`) "
                             "own estimate of the clean image, one network pass per view "
                             "(the fastest). x0ft: the same from the network fine-tuned for "
                             "it (`cryodiff train --x0-finetune`). pm+x0: the mean of "
                             "sr3-pm and x0 (a v-model with "
                             "its sr3-pm post-processor; the benchmark's best cryodiff row). "
                             "Default: sr3+pp when the checkpoint has its post-processor, "
                             "else sr3")
    parser.add_argument("--no-self-ensemble", action="store_true",
                        help="sr3-pm, x0, x0ft, pm+x0: one pass instead of averaging the 8 flips "
                             "and rotations (8x faster, slightly lower PSNR)")
    parser.add_argument("--steps", type=positive_int,
                        help="sampling steps (default: the post-processor's training steps "
                             "when it is used, else 100)")
    parser.add_argument("--sampler", choices=("ddpm", "ddim"),
                        help="default: the post-processor's sampler when it is used, else ddpm")
    parser.add_argument("--samples", type=positive_int, default=1,
                        help="samples per particle; K > 1 writes the mean and a std map "
                             "(sr3, sr3+pp; sr3-pm averages the K its post-processor was "
                             "trained on, and writes their std map with --std)")
    parser.add_argument("--std", action="store_true",
                        help="sr3-pm: also write OUT_std.mrcs, the std of its K samples "
                             "(before refinement; not recalibrated)")
    parser.add_argument("--sigma-scale", type=float, default=1.0, metavar="S",
                        help="multiply the std map by S (a recalibration factor fitted on "
                             "held-out particles for the band you will read, e.g. +-2 std for "
                             "95 %%: see benchmarks/calibration.py and notebook 02; default 1: "
                             "the raw spread of the samples)")
    parser.add_argument("--sigma-floor", type=float, default=0.0, metavar="TAU",
                        help="write sqrt((S*std)^2 + TAU^2) instead (TAU in the output's "
                             "units; fitted with S, see benchmarks/calibration.py)")
    parser.add_argument("--no-postprocess", action="store_true",
                        help="the same as --method sr3: no post-processor")
    parser.add_argument("--keep-scale", action="store_true",
                        help="feed the images in their own grey levels (they come from the "
                             "training simulation); by default each image is mapped to the "
                             "training data's mean and std and the output mapped back")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--device", type=device, default="auto")
    parser.add_argument("--seed", type=nonnegative_int, default=0)


def _star_batches(source: Path, batch_size: int):
    """``(particles, batches, n, box, pixel_size_A)`` of a STAR file (one pixel size)."""
    from cryodiff.io.images import iter_image_batches
    from cryodiff.io.star import read_particles

    particles = read_particles(source)
    sizes = np.unique(particles.pixel_size_A)
    if len(sizes) > 1:
        raise CryodiffError(f"particles have several pixel sizes {sizes.tolist()} Å; denoise "
                            "each optics group with a model trained at its pixel size",
                            path=source)
    pixel_size_A = float(sizes[0]) if len(sizes) else None
    return (particles, iter_image_batches(particles, batch_size), len(particles), particles.box,
            pixel_size_A)


def _stack_batches(source: Path, batch_size: int):
    """``(None, batches, n, box, pixel_size_A)`` of an MRC stack."""
    from cryodiff.io.mrc import StackFile, stack_info

    n, box, pixel_size_A = stack_info(source)

    def batches():
        with StackFile(source) as stack:
            for start in range(0, n, batch_size):
                idx = np.arange(start, min(start + batch_size, n))
                yield idx, stack.read(idx)

    return None, batches(), n, box, pixel_size_A


def _check_outputs(args, source: Path, out: Path, particles, n: int) -> None:
    """No output may replace an input (the STAR, its stacks, the checkpoint); no empty input."""
    from cryodiff.io.outputs import check_outputs

    if n == 0:
        raise CryodiffError("no images to denoise", path=source)
    outputs = [out, *([out.with_name(out.stem + "_std.mrcs")] if _writes_std(args) else []),
               *([out.with_suffix(".star")] if particles is not None else [])]
    stacks = set(particles.image_paths) if particles is not None else set()
    check_outputs(outputs, inputs=[source, args.checkpoint, *stacks])


def _writes_std(args: argparse.Namespace) -> bool:
    """Whether a std map is written: ``--samples K > 1``, or ``--std`` with sr3-pm."""
    return args.std if args.method == "sr3-pm" else args.samples > 1


def _method(args: argparse.Namespace, denoiser) -> str:
    """The method to run: ``--method``, checked against the checkpoint and the other flags,
    or the default (sr3+pp when its post-processor is there, else sr3)."""
    method = args.method or ("sr3+pp" if denoiser.postprocessor is not None
                             and not args.no_postprocess else "sr3")
    if args.no_postprocess and method != "sr3":
        raise CryodiffError(f"--no-postprocess contradicts --method {method}")
    if method == "sr3+pp" and denoiser.postprocessor is None:
        raise CryodiffError("the checkpoint has no post-processor for sr3+pp; train it with "
                            "`cryodiff train --resume --postprocess`", path=denoiser.checkpoint)
    if method in PM_METHODS and denoiser.mean_refiner is None:
        raise CryodiffError("the checkpoint has no sr3-pm post-processor; train it with "
                            "`cryodiff train --resume --pm-postprocess`",
                            path=denoiser.checkpoint)
    if method in PM_METHODS and args.samples > 1:
        raise CryodiffError(f"--samples is for sr3 and sr3+pp: {method} averages the "
                            f"{denoiser.mean_refiner.draws} samples its post-processor was "
                            "trained on (--std with sr3-pm writes their std map)")
    if method != "sr3-pm" and args.std:
        raise CryodiffError("--std is for --method sr3-pm (sr3 and sr3+pp write a std map "
                            "with --samples K > 1)")
    if method not in SELF_ENSEMBLE_METHODS and args.no_self_ensemble:
        raise CryodiffError("--no-self-ensemble is for --method sr3-pm, x0, x0ft and pm+x0")
    if method in ONE_PASS_METHODS:
        from cryodiff.denoise import check_one_pass

        check_one_pass(denoiser, method)
    if method == "x0ft":
        from cryodiff.denoise import check_x0ft

        check_x0ft(denoiser)
    if method in X0_METHODS:
        if args.samples > 1 or args.steps is not None or args.sampler is not None:
            raise CryodiffError(f"--method {method} is one network pass: --samples, --steps "
                                "and --sampler do not apply")
    if method == "sr3-pm" and args.std and denoiser.mean_refiner.draws == 1:
        raise CryodiffError("--std: this sr3-pm post-processor refines a single sample "
                            "(trained with --pm-draws 1), so there is no spread to write",
                            path=denoiser.checkpoint)
    recalibrating = args.sigma_scale != 1.0 or args.sigma_floor != 0.0
    if recalibrating and (method == "sr3-pm" or args.samples == 1):
        raise CryodiffError("--sigma-scale and --sigma-floor recalibrate the std map of sr3 "
                            "and sr3+pp (--samples K > 1), fitted on their samples "
                            "(benchmarks/calibration.py); sr3-pm's is not calibrated")
    return method


def main(args: argparse.Namespace) -> int:
    from cryodiff.denoise import (check_particles_fit, denoise_one_pass, denoise_pm_x0,
                                  denoise_posterior_mean, denoise_with, load_denoiser)
    from cryodiff.io.mrc import StackWriter
    from cryodiff.io.star_write import write_derived_particles
    from cryodiff.training.loop import select_device
    from cryodiff.uncertainty import recalibrate

    source, out = Path(args.input), Path(args.out)
    if not source.is_file():
        raise CryodiffError("input not found", path=source)
    if out.suffix != ".mrcs":
        raise CryodiffError("the output must be an .mrcs stack", path=out)
    if args.samples < 1 or args.batch_size < 1:
        raise CryodiffError("--samples and --batch-size must be at least 1")
    if not (args.sigma_scale > 0 and np.isfinite(args.sigma_scale)):
        raise CryodiffError(f"--sigma-scale must be a positive number, got {args.sigma_scale}")
    if not (args.sigma_floor >= 0 and np.isfinite(args.sigma_floor)):
        raise CryodiffError(f"--sigma-floor must be a number ≥ 0, got {args.sigma_floor}")
    read = _star_batches if source.suffix == ".star" else _stack_batches
    particles, batches, n, box, pixel_size_A = read(source, args.batch_size)
    _check_outputs(args, source, out, particles, n)
    denoiser = load_denoiser(args.checkpoint, select_device(args.device))
    check_particles_fit(denoiser, box, pixel_size_A, source)
    method = _method(args, denoiser)
    use_post = method == "sr3+pp"
    if method in X0_METHODS:
        steps, sampler = 1, "one pass"
    elif method in PM_METHODS:
        steps = args.steps or denoiser.mean_refiner.sampling_steps
        sampler = args.sampler or denoiser.mean_refiner.sampler
    else:
        steps = args.steps or (denoiser.config.post_sampling_steps if use_post else 100)
        sampler = args.sampler or (denoiser.config.post_sampler if use_post else "ddpm")
    header_A = pixel_size_A if pixel_size_A is not None and pixel_size_A > 0 else 1.0

    with contextlib.ExitStack() as files:
        mean_writer = files.enter_context(StackWriter(out, box, header_A))
        std_writer = None
        if _writes_std(args):
            std_path = out.with_name(out.stem + "_std.mrcs")
            std_writer = files.enter_context(StackWriter(std_path, box, header_A))
        for number, (_, images) in enumerate(batches):
            if method in X0_METHODS:
                result = denoise_one_pass(denoiser, images,
                                          self_ensemble=not args.no_self_ensemble,
                                          batch_size=args.batch_size, seed=args.seed + number,
                                          match_scale=not args.keep_scale,
                                          finetuned=method == "x0ft")
            elif method == "pm+x0":
                result = denoise_pm_x0(
                    denoiser, images, steps=steps, sampler=sampler,
                    self_ensemble=not args.no_self_ensemble, batch_size=args.batch_size,
                    seed=args.seed + number, match_scale=not args.keep_scale)
            elif method == "sr3-pm":
                result = denoise_posterior_mean(
                    denoiser, images, steps=steps, sampler=sampler,
                    self_ensemble=not args.no_self_ensemble, batch_size=args.batch_size,
                    seed=args.seed + number, match_scale=not args.keep_scale)
            else:
                result = denoise_with(denoiser, images, steps=steps, sampler=sampler,
                                      n_samples=args.samples, postprocess=use_post,
                                      batch_size=args.batch_size, seed=args.seed + number,
                                      match_scale=not args.keep_scale)
            mean_writer.write(result.mean)
            if std_writer is not None:
                std_writer.write(recalibrate(result.std, args.sigma_scale, args.sigma_floor))
    print(f"cryodiff: denoised {n} particles ({_describe(method, denoiser, sampler, steps)}) "
          f"-> {out}")
    if particles is not None:
        star = out.with_suffix(".star")
        restored = denoiser.config.target == "clean"
        write_derived_particles(star, particles, out, drop_ctf=restored)
        note = (" (CTF restored: no per-particle CTF columns, reconstruct without CTF "
                "weighting)" if restored else " (the CTF is still in the images)")
        print(f"cryodiff: wrote {star}{note}")
    return 0


def _describe(method: str, denoiser, sampler: str, steps: int) -> str:
    """``sr3-pm: mean of 4 DDPM samples of 10 steps, refined`` and the like."""
    if method == "x0":
        return "x0: the network's estimate of the clean image, one pass per view"
    if method == "x0ft":
        return ("x0ft: the fine-tuned network's estimate of the clean image, one pass per "
                "view")
    if method == "pm+x0":
        return (f"pm+x0: sr3-pm (mean of {denoiser.mean_refiner.draws} {sampler} samples of "
                f"{steps} steps, refined) averaged with x0")
    if method == "sr3-pm":
        return (f"sr3-pm: mean of {denoiser.mean_refiner.draws} {sampler} samples of {steps} "
                f"steps, refined")
    return (f"{method}: {sampler}, {steps} steps, "
            f"{'with' if method == 'sr3+pp' else 'without'} post-processor")
