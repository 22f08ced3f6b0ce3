"""Write RELION 3.1 STAR files (data_optics + data_particles) from a :class:`ParticleStack`.

Floats are written as their shortest decimal text so a file read back gives the same values;
particle columns cryodiff does not know are kept. :func:`write_derived_particles` writes the
STAR of a new stack made image by image from a STAR that was read (denoised or downsampled
particles): the input's own tables, with only the image names (and the size columns) changed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from cryodiff.ctf import CtfParams
from cryodiff.io.atomic import write_text_atomic
from cryodiff.io.star_columns import (ANGLE_COLUMNS, CTF_COLUMNS, OPTICS_CTF_FIELDS,
                                      REWRITTEN_COLUMNS)

if TYPE_CHECKING:
    from cryodiff.io.star import ParticleStack


def _shortest(values: torch.Tensor | np.ndarray | float, n: int) -> np.ndarray:
    """float32 values as the float64 of their shortest decimal, so text round-trips exactly."""
    array = np.broadcast_to(np.asarray(torch.as_tensor(values).cpu(), dtype=np.float32), (n,))
    return array.astype(str).astype(np.float64)


def _optics_table(particles: ParticleStack, ctf_values: dict[str, np.ndarray],
                  ) -> tuple[pd.DataFrame, np.ndarray]:
    """RELION 3.1 optics rows and the per-particle group; groups split if values differ."""
    n = len(particles)
    keys = pd.DataFrame({"group": particles.optics_group, "pixel": particles.pixel_size_A,
                         **{k: ctf_values[k] for k in OPTICS_CTF_FIELDS if k in ctf_values}})
    unique = keys.drop_duplicates().reset_index(drop=True)
    consistent = not unique["group"].duplicated().any()
    numbers = unique["group"].to_numpy() if consistent else np.arange(1, len(unique) + 1)
    lookup = {tuple(row): number for row, number in zip(unique.itertuples(index=False), numbers)}
    group = np.array([lookup[tuple(row)] for row in keys.itertuples(index=False)], np.int64) \
        if len(unique) > 1 else np.full(n, numbers[0] if n else 1, np.int64)
    old = particles.optics
    if old is not None and "rlnOpticsGroup" in old.columns:
        old = old.set_index(old["rlnOpticsGroup"].astype(np.int64))
    rows = []
    for row, number in zip(unique.itertuples(index=False), numbers):
        base = {}
        if old is not None and row.group in old.index:
            base = {k: v for k, v in old.loc[row.group].items() if k not in REWRITTEN_COLUMNS}
        base["rlnOpticsGroup"] = int(number)
        if "rlnOpticsGroupName" not in base or not consistent:
            base["rlnOpticsGroupName"] = f"opticsGroup{number}"
        for name in OPTICS_CTF_FIELDS:
            if name in ctf_values:
                base[CTF_COLUMNS[name][0]] = getattr(row, name)
        base["rlnImagePixelSize"] = row.pixel
        if particles.box is not None:
            base["rlnImageSize"] = int(particles.box)
        base["rlnImageDimensionality"] = 2
        rows.append(base)
    table = pd.DataFrame(rows)
    first = ["rlnOpticsGroup", "rlnOpticsGroupName"]
    return table[first + [c for c in table.columns if c not in first]], group


def _loop_text(name: str, table: pd.DataFrame) -> str:
    header = "".join(f"_{column} #{i + 1}\n" for i, column in enumerate(table.columns))
    table = table.copy()
    for column in table.columns:
        if pd.api.types.is_float_dtype(table[column]):
            # numpy's str() is the shortest text that reads back to the same float64.
            table[column] = table[column].to_numpy(np.float64).astype(str)
    body = table.to_csv(sep=" ", header=False, index=False, na_rep="nan",
                        lineterminator="\n")
    return f"\n# version 30001\n\ndata_{name}\n\nloop_\n{header}{body}\n"


def _relative_name(stack: Path, star_dir: Path) -> str:
    """Stack path relative to the STAR's folder, or absolute if it lies outside that folder."""
    absolute = os.path.abspath(stack)
    relative = os.path.relpath(absolute, star_dir)
    return absolute if relative.startswith("..") else relative


def write_particles(path: str | os.PathLike, particles: ParticleStack) -> None:
    """Write a RELION 3.1 STAR file (data_optics + data_particles) atomically.

    Image names are written as ``000001@stack.mrcs`` relative to the new STAR's folder; origins
    as ``rlnOriginXAngst/YAngst``; per-particle CTF columns; voltage, Cs, amplitude contrast,
    pixel size and box in the optics table. Unknown particle columns are kept.
    """
    path = Path(path)
    n = len(particles)
    ctf_values: dict[str, np.ndarray] = {}
    if particles.ctf is not None:
        ctf_values = {f.name: _shortest(getattr(particles.ctf, f.name), n)
                      for f in fields(CtfParams)}
    elif particles.optics is not None:
        for name in OPTICS_CTF_FIELDS:
            column = CTF_COLUMNS[name][0]
            if column in particles.optics.columns:
                rows = particles.optics.set_index(particles.optics["rlnOpticsGroup"])
                ctf_values[name] = rows[column].reindex(particles.optics_group).to_numpy()
    optics, group = _optics_table(particles, ctf_values)

    star_dir = Path(os.path.abspath(path)).parent
    relative = {p: _relative_name(p, star_dir) for p in dict.fromkeys(particles.image_paths)}
    columns = {"rlnImageName": [f"{i + 1:06d}@{relative[p]}" for i, p in
                                zip(particles.image_indices.tolist(), particles.image_paths)]}
    if particles.eulers_deg is not None:
        columns.update(zip(ANGLE_COLUMNS, np.asarray(particles.eulers_deg, np.float64).T))
    columns["rlnOriginXAngst"] = particles.shifts_A[:, 0]
    columns["rlnOriginYAngst"] = particles.shifts_A[:, 1]
    if particles.ctf is not None:
        columns.update({CTF_COLUMNS[k][0]: v for k, v in ctf_values.items()
                        if k not in OPTICS_CTF_FIELDS})
    columns["rlnOpticsGroup"] = group
    table = pd.DataFrame(columns)
    extra = particles.table.drop(
        columns=[c for c in particles.table.columns if c in REWRITTEN_COLUMNS])
    table = pd.concat([table, extra.reset_index(drop=True)], axis=1)
    text = "# written by cryodiff\n" + _loop_text("optics", optics) + \
        _loop_text("particles", table)
    write_text_atomic(path, text)


# Per-particle CTF columns a model that restores the CTF (target ``clean``) makes obsolete.
PARTICLE_CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnCtfBfactor",
                        "rlnCtfScalefactor", "rlnPhaseShift")


def write_derived_particles(path: str | os.PathLike, particles: ParticleStack,
                            stack: str | os.PathLike, *, drop_ctf: bool = False,
                            box: int | None = None, pixel_size_A: float | None = None) -> None:
    """Write the STAR of ``stack``, whose image i was made from particle i, atomically.

    A ParticleStack read from a STAR keeps that file's optics table and every particle column
    (poses, origins, CTF, micrographs, coordinates, unknown columns) as read, in their order;
    only ``rlnImageName`` changes, to ``000001@stack`` relative to the new STAR's folder. With
    ``box`` (pixels) and ``pixel_size_A`` (Å) the images were resampled: ``rlnImageSize``,
    ``rlnImagePixelSize`` (or RELION 3.0's ``rlnMagnification``) and origins in pixels
    (``rlnOriginX/Y``) follow; origins in Å do not change. ``drop_ctf`` removes the
    per-particle CTF columns (:data:`PARTICLE_CTF_COLUMNS`) for images whose CTF was undone;
    voltage, Cs and amplitude contrast stay. A ParticleStack built from arrays (no table
    read from a file) is written by :func:`write_particles` with the new image names.
    """
    path, n = Path(path), len(particles)
    star_dir = Path(os.path.abspath(path)).parent
    relative = _relative_name(Path(stack), star_dir)
    names = [f"{i + 1:06d}@{relative}" for i in range(n)]
    if "rlnImageName" not in particles.table.columns:
        write_particles(path, dataclasses.replace(
            particles, image_paths=[Path(os.path.abspath(stack))] * n,
            image_indices=np.arange(n), box=box if box is not None else particles.box,
            pixel_size_A=(np.full(n, float(pixel_size_A)) if pixel_size_A is not None
                          else particles.pixel_size_A),
            shifts_A=particles.shifts_A, ctf=None if drop_ctf else particles.ctf))
        return
    table = particles.table.copy()
    table["rlnImageName"] = names
    optics = None if particles.optics is None else particles.optics.copy()
    old_pixel_A = particles.pixel_size_A
    if pixel_size_A is not None:
        ratio = old_pixel_A / float(pixel_size_A)  # new pixels per old pixel, per particle
        for column in ("rlnOriginX", "rlnOriginY"):
            if column in table.columns:
                table[column] = table[column].to_numpy(np.float64) * ratio
    for frame in (table, optics):
        if frame is None:
            continue
        if box is not None and "rlnImageSize" in frame.columns:
            frame["rlnImageSize"] = int(box)
        if pixel_size_A is not None:
            if "rlnImagePixelSize" in frame.columns:
                frame["rlnImagePixelSize"] = float(pixel_size_A)
            if "rlnMagnification" in frame.columns and frame is table:
                frame["rlnMagnification"] = frame["rlnMagnification"].to_numpy(np.float64) \
                    / (float(pixel_size_A) / old_pixel_A)
    if drop_ctf:
        table = table.drop(columns=[c for c in PARTICLE_CTF_COLUMNS if c in table.columns])
    text = "# written by cryodiff\n"
    if optics is not None:
        text += _loop_text("optics", optics) + _loop_text("particles", table)
    else:  # RELION 3.0: one data block, everything per particle
        text += _loop_text("", table)
    write_text_atomic(path, text)
