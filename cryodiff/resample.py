"""Resampling a particle STAR + stack to another box by Fourier cropping (or padding).

Real particles are often extracted at a box and pixel size far finer than a CPU-sized model
(EMPIAR-10076: 320² at 1.31 Å/px); a model is applied only at the box and pixel size it was
trained on, so the particles are resampled first. Fourier cropping keeps the field of view:
the pixel size becomes ``pixel_size_A · L / box`` and the information beyond the new
Nyquist frequency is dropped (no aliasing, unlike binning).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cryodiff.errors import CryodiffError


def resample_particles(star: str | os.PathLike, out_stack: str | os.PathLike, box: int,
                       batch_size: int = 256) -> Path:
    """Write ``out_stack`` (every particle of ``star`` Fourier-resized to ``box`` pixels) and
    its STAR ``out_stack.with_suffix(".star")``; returns the STAR's path.

    The STAR keeps the input's optics table and particle columns, with the new image names,
    box and pixel size (:func:`cryodiff.io.star_write.write_derived_particles`).
    """
    from cryodiff.fourier import fourier_resize
    from cryodiff.io.images import iter_image_batches
    from cryodiff.io.mrc import StackWriter
    from cryodiff.io.star import read_particles
    from cryodiff.io.star_write import write_derived_particles

    out_stack = Path(out_stack)
    out_star = out_stack.with_suffix(".star")
    if out_stack.suffix != ".mrcs":
        raise CryodiffError("the resampled stack must be an .mrcs file", path=out_stack)
    if box < 8:
        raise CryodiffError(f"box must be at least 8 pixels, not {box}")
    particles = read_particles(star)
    if out_star.resolve() == particles.star_path:
        raise CryodiffError("the resampled STAR would overwrite the input", path=out_star)
    sizes = np.unique(particles.pixel_size_A)
    if len(sizes) != 1 or particles.box is None:
        raise CryodiffError("resampling needs one box and one pixel size for all particles",
                            path=star)
    pixel_size_A = float(sizes[0]) * particles.box / box
    with StackWriter(out_stack, box, pixel_size_A) as writer:
        for _, images in iter_image_batches(particles, batch_size):
            writer.write(fourier_resize(images.double(), box, 2).float())
    write_derived_particles(out_star, particles, out_stack, box=box, pixel_size_A=pixel_size_A)
    return out_star
