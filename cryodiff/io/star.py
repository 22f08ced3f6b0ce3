"""RELION STAR particle files: read RELION 3.0, 3.1, 4 and 5; write RELION 3.1 (:mod:`.star_write`).

A STAR file becomes a :class:`ParticleStack`: per-particle arrays (poses, origins in Å, CTF,
pixel size, the stack and 0-based index of each image) plus the raw particle table, so unknown
columns survive a round trip. Optics groups (RELION ≥ 3.1) are merged into the particles;
RELION 3.0 files carry everything per particle, with the pixel size given as
``rlnDetectorPixelSize`` (µm) and ``rlnMagnification``: ``pixel_size_A = detector_um·1e4/mag``.
Image names ``N@stack.mrcs`` (N 1-based) are resolved relative to the STAR file's folder, or to
the working directory where RELION's project-relative path exists there instead. Stacks are not
opened here (a STAR may be read without its images); :mod:`cryodiff.io.images` loads them.

Every value used is checked on reading (:mod:`cryodiff.io.star_checks`): finite, inside its
physical range, required columns present (no pose column is ever assumed 0); a table without
rows is refused. Errors name the file, the column and the first bad row.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
import torch

from cryodiff.ctf import CtfParams
from cryodiff.errors import CryodiffError
from cryodiff.io.star_checks import check_values
from cryodiff.io.star_columns import ANGLE_COLUMNS, CTF_COLUMNS, OPTICS_CTF_FIELDS
from cryodiff.io.star_write import write_particles

__all__ = ["ParticleStack", "particles_from_arrays", "read_particles", "write_particles"]



@dataclass(frozen=True, eq=False)
class ParticleStack:
    """The particles of a STAR file (N particles, square images of side ``box``).

    ``image_paths[i]`` is the absolute stack path and ``image_indices[i]`` the 0-based image
    index of particle i. ``box`` is None only when neither the STAR nor a readable stack says.
    ``pixel_size_A`` (N,) Å; ``eulers_deg`` (N, 3) RELION (rot, tilt, psi) or None;
    ``shifts_A`` (N, 2) origin (x, y) in Å; ``ctf`` per-particle CtfParams or None;
    ``optics_group`` (N,) int; ``table`` the raw particle columns; ``optics`` the raw optics
    table (None for RELION 3.0).
    """

    star_path: Path | None
    image_paths: list[Path]
    image_indices: np.ndarray
    box: int | None
    pixel_size_A: np.ndarray
    eulers_deg: np.ndarray | None
    shifts_A: np.ndarray
    ctf: CtfParams | None
    optics_group: np.ndarray
    table: pd.DataFrame
    optics: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.image_indices)

    def subset(self, indices: np.ndarray | Sequence[int]) -> ParticleStack:
        """The particles at ``indices`` (integer positions, in that order)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        ctf = None
        if self.ctf is not None:
            index = torch.from_numpy(idx)
            ctf = CtfParams(**{f.name: _take(getattr(self.ctf, f.name), index)
                               for f in fields(CtfParams)})
        return ParticleStack(
            star_path=self.star_path,
            image_paths=[self.image_paths[i] for i in idx],
            image_indices=self.image_indices[idx],
            box=self.box,
            pixel_size_A=self.pixel_size_A[idx],
            eulers_deg=None if self.eulers_deg is None else self.eulers_deg[idx],
            shifts_A=self.shifts_A[idx],
            ctf=ctf,
            optics_group=self.optics_group[idx],
            table=self.table.iloc[idx].reset_index(drop=True),
            optics=self.optics,
        )


def _take(value: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(value)
    return value if value.ndim == 0 else value[index.to(value.device)]


def _as_frame(block) -> pd.DataFrame:
    # starfile returns a dict for a block written as key-value pairs (a single row).
    return block if isinstance(block, pd.DataFrame) else pd.DataFrame([block])


def _read_blocks(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The particle table and the optics table (None if absent) of a STAR file."""
    if not path.exists():
        raise CryodiffError("file not found", path=path)
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as error:  # starfile raises many types for malformed text
        raise CryodiffError(f"not a readable STAR file ({error})", path=path) from None
    blocks = {name: _as_frame(block) for name, block in blocks.items()}
    optics = blocks.pop("optics", None)
    if "particles" in blocks:
        particles = blocks["particles"]
    else:
        candidates = [b for b in blocks.values() if "rlnImageName" in b.columns]
        if not candidates and len(blocks) != 1:
            raise CryodiffError("no particle table (a data block with column rlnImageName)",
                                path=path)
        particles = candidates[0] if candidates else next(iter(blocks.values()))
    if "rlnImageName" not in particles.columns:
        raise CryodiffError("column rlnImageName is missing", path=path)
    if len(particles) == 0:
        raise CryodiffError("the particle table has a header but no rows", path=path)
    return particles.reset_index(drop=True), optics


@dataclass(frozen=True, eq=False)
class _Table:
    """The merged particle table, where each column came from (for error messages)."""

    frame: pd.DataFrame
    path: Path
    group: np.ndarray
    optics_columns: frozenset[str]

    def __contains__(self, name: str) -> bool:
        return name in self.frame.columns

    def __len__(self) -> int:
        return len(self.frame)

    def column(self, name: str) -> np.ndarray:
        """Column ``name`` as float64, checked (finite, physical range)."""
        values = _column(self.frame, name, self.path)
        return check_values(values, name, self.path,
                            self.group if name in self.optics_columns else None)


def _optics_groups(particles: pd.DataFrame, optics: pd.DataFrame | None,
                   path: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Per-particle optics group and the particle table with optics columns merged in."""
    n = len(particles)
    if "rlnOpticsGroup" in particles.columns:
        group = _integers(particles, "rlnOpticsGroup", path)
    elif optics is None or len(optics) == 1:
        group = np.ones(n, dtype=np.int64)
    else:
        raise CryodiffError("column rlnOpticsGroup is missing but the optics table has "
                            f"{len(optics)} groups", path=path)
    if optics is None:
        return group, particles
    if "rlnOpticsGroup" not in optics.columns:
        raise CryodiffError("the optics table has no rlnOpticsGroup column", path=path)
    rows = optics.set_index(_integers(optics, "rlnOpticsGroup", path))
    unknown = sorted(set(np.unique(group)) - set(rows.index))
    if unknown:
        raise CryodiffError(f"optics group {unknown[0]} is used by particles but not defined "
                            "in data_optics", path=path)
    extra = [c for c in rows.columns if c not in particles.columns and c != "rlnOpticsGroup"]
    merged = particles.copy()
    for column in extra:
        merged[column] = rows[column].reindex(group).to_numpy()
    return group, merged


def _column(table: pd.DataFrame, name: str, path: Path) -> np.ndarray:
    try:
        return table[name].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise CryodiffError(f"column {name} is not numeric", path=path) from None


def _integers(table: pd.DataFrame, name: str, path: Path) -> np.ndarray:
    values = _column(table, name, path)
    bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
    if bad.size:
        raise CryodiffError(f"column {name}, row {int(bad[0]) + 1}: {values[bad[0]]:g} is not "
                            "an integer", path=path)
    return values.astype(np.int64)


def _parse_image_names(names: pd.Series, star_dir: Path,
                       path: Path) -> tuple[list[Path], np.ndarray]:
    """Absolute stack path and 0-based index for each ``N@stack`` (or plain file) name."""
    text = names.astype(str)
    split = text.str.split("@", n=1, expand=True)
    if split.shape[1] == 1:
        numbers, files = pd.Series(["1"] * len(text)), split[0]
    else:
        has_at = split[1].notna()
        numbers = split[0].where(has_at, "1")
        files = split[1].where(has_at, split[0])
    try:
        indices = numbers.astype(np.int64).to_numpy() - 1
    except (TypeError, ValueError):
        bad = next(t for t, n in zip(text, numbers) if not str(n).strip().isdigit())
        raise CryodiffError(f"rlnImageName '{bad}' is not of the form N@stack", path=path) \
            from None
    if len(indices) and indices.min() < 0:
        raise CryodiffError(f"rlnImageName '{text[int(np.argmin(indices))]}': image numbers "
                            "start at 1", path=path)
    resolved = {name: _resolve_stack(name, star_dir) for name in files.unique()}
    return [resolved[name] for name in files], indices


def _resolve_stack(name: str, star_dir: Path) -> Path:
    relative = Path(name)
    if relative.is_absolute():
        return relative
    beside_star = Path(os.path.abspath(star_dir / relative))
    # RELION writes paths relative to its project folder, usually the working directory.
    if not beside_star.exists() and relative.exists():
        return Path(os.path.abspath(relative))
    return beside_star


def _pixel_sizes(table: _Table, image_paths: list[Path], path: Path) -> np.ndarray:
    n = len(table)
    if "rlnImagePixelSize" in table:
        return table.column("rlnImagePixelSize")
    if "rlnDetectorPixelSize" in table and "rlnMagnification" in table:
        return table.column("rlnDetectorPixelSize") * 1e4 / table.column("rlnMagnification")
    header = _first_stack_header(image_paths)
    if header is not None and header[2] > 0:
        return np.full(n, header[2])
    warnings.warn(f"{path}: no pixel size in the STAR file or its stack header; assuming 1 Å",
                  RuntimeWarning, stacklevel=3)
    return np.ones(n)


def _first_stack_header(image_paths: list[Path]) -> tuple[int, int, float] | None:
    from cryodiff.io.mrc import stack_info

    if not image_paths or not image_paths[0].exists():
        return None
    return stack_info(image_paths[0])


def _box(table: _Table, image_paths: list[Path], path: Path) -> int | None:
    if "rlnImageSize" in table:
        sizes = np.unique(table.column("rlnImageSize"))
        if not np.all(sizes == np.round(sizes)):
            raise CryodiffError(f"column rlnImageSize holds a non-integer box {sizes[0]:g}",
                                path=path)
        sizes = sizes.astype(np.int64)
        if len(sizes) > 1:
            raise CryodiffError(f"particles have several box sizes {sizes.tolist()}; "
                                "cryodiff needs one", path=path)
        if len(sizes) == 1:
            return int(sizes[0])
    header = _first_stack_header(image_paths)
    return None if header is None else header[1]


def _ctf(table: _Table, path: Path) -> CtfParams | None:
    if "rlnDefocusU" not in table:
        return None
    values = {}
    for name, (column, default) in CTF_COLUMNS.items():
        if column == "rlnDefocusV" and column not in table:
            column = "rlnDefocusU"  # no astigmatism recorded
        if column in table:
            array = table.column(column)
        elif default is not None:
            array = np.full(len(table), default)
        else:
            raise CryodiffError(f"CTF column {column} is missing (rlnDefocusU is present)",
                                path=path)
        values[name] = torch.from_numpy(array.astype(np.float32))
    return CtfParams(**values)


def read_particles(path: str | os.PathLike) -> ParticleStack:
    """Read a RELION 3.0/3.1/4/5 particle STAR file (see the module docstring)."""
    path = Path(path)
    particles, optics = _read_blocks(path)
    group, merged = _optics_groups(particles, optics, path)
    table = _Table(merged, path, group,
                   frozenset(merged.columns) - frozenset(particles.columns))
    star_dir = Path(os.path.abspath(path)).parent
    image_paths, image_indices = _parse_image_names(merged["rlnImageName"], star_dir, path)
    pixel_size_A = _pixel_sizes(table, image_paths, path)
    eulers = None
    if any(a in table for a in ANGLE_COLUMNS):
        eulers = np.stack([table.column(a) for a in _all_or_none(table, ANGLE_COLUMNS)],
                          axis=1)
    if any(c in table for c in ("rlnOriginXAngst", "rlnOriginYAngst")):
        shifts = np.stack([table.column(c) for c in
                           _all_or_none(table, ("rlnOriginXAngst", "rlnOriginYAngst"))], axis=1)
    elif any(c in table for c in ("rlnOriginX", "rlnOriginY")):
        shifts = np.stack([table.column(c) for c in
                           _all_or_none(table, ("rlnOriginX", "rlnOriginY"))],
                          axis=1) * pixel_size_A[:, None]
    else:
        shifts = np.zeros((len(table), 2))
    return ParticleStack(
        star_path=Path(os.path.abspath(path)), image_paths=image_paths,
        image_indices=image_indices, box=_box(table, image_paths, path),
        pixel_size_A=pixel_size_A, eulers_deg=eulers, shifts_A=shifts, ctf=_ctf(table, path),
        optics_group=group, table=particles, optics=optics)


def _all_or_none(table: _Table, columns: Sequence[str]) -> Sequence[str]:
    """``columns`` if all are present; an error naming the first missing one otherwise
    (a missing angle or origin is never taken as 0)."""
    missing = [c for c in columns if c not in table]
    if missing:
        present = next(c for c in columns if c in table)
        raise CryodiffError(f"column {missing[0]} is missing ({present} is present); "
                            "cryodiff does not assume 0", path=table.path)
    return columns


def particles_from_arrays(image_names: str | os.PathLike | Sequence[str],
                          eulers_deg: np.ndarray | torch.Tensor | None,
                          shifts_A: np.ndarray | torch.Tensor | None,
                          ctf: CtfParams | None, pixel_size_A: float, box: int,
                          voltage_kV: float = 300.0, cs_mm: float = 2.7,
                          amplitude_contrast: float = 0.1, n: int | None = None,
                          base_dir: str | os.PathLike | None = None) -> ParticleStack:
    """Build a one-optics-group ParticleStack from arrays (e.g. for simulated particles).

    ``image_names``: one stack path (particle i is its image i) or per-particle names
    ``N@stack`` relative to ``base_dir`` (default: the working directory). ``eulers_deg``
    (N, 3) degrees; ``shifts_A`` (N, 2) Å (zeros if None); ``ctf`` per particle or None, in
    which case voltage (kV), Cs (mm) and amplitude contrast still fill the optics table.
    ``n`` gives N when neither poses nor shifts do.
    """
    arrays = [np.asarray(a.cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
              if a is not None else None for a in (eulers_deg, shifts_A)]
    eulers, shifts = arrays
    count = n if n is not None else len(eulers if eulers is not None else shifts)
    base = Path(os.path.abspath(base_dir if base_dir is not None else "."))
    if isinstance(image_names, (str, os.PathLike)) and "@" not in str(image_names):
        stack = Path(os.path.abspath(base / image_names))
        image_paths, indices = [stack] * count, np.arange(count)
    else:
        image_paths, indices = _parse_image_names(pd.Series(list(image_names)), base, base)
    if ctf is not None:
        voltage_kV, cs_mm, amplitude_contrast = (float(torch.as_tensor(getattr(ctf, f)).
                                                       reshape(-1)[0]) for f in OPTICS_CTF_FIELDS)
    optics = pd.DataFrame({
        "rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
        "rlnVoltage": [float(voltage_kV)], "rlnSphericalAberration": [float(cs_mm)],
        "rlnAmplitudeContrast": [float(amplitude_contrast)]})
    return ParticleStack(
        star_path=None, image_paths=image_paths, image_indices=np.asarray(indices),
        box=int(box), pixel_size_A=np.full(count, float(pixel_size_A)), eulers_deg=eulers,
        shifts_A=np.zeros((count, 2)) if shifts is None else shifts, ctf=ctf,
        optics_group=np.ones(count, dtype=np.int64), table=pd.DataFrame(index=range(count)),
        optics=optics)
