"""The first N particles of an EMPIAR entry: its particle STAR and only the stacks they use.

The particle STAR is downloaded into ``dest/EMPIAR-N/``, which mirrors the archive folder its
image names are relative to (``ParticleEntry.stack_root``); the stacks the first N particles
reference are downloaded to the same relative paths, and ``particles_first{N}.star`` (RELION
3.1) lists those N particles with image names pointing at the local stacks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from cryodiff.errors import CryodiffError
from cryodiff.fetch.download import Downloaded, download
from cryodiff.fetch.registry import ParticleEntry, archive_base_url


@dataclass(frozen=True)
class FetchedParticles:
    """``star_path``: the subset STAR; ``source_star``: the downloaded particle STAR;
    ``stacks``: the downloaded (or cached) stacks; ``n_particles`` of ``n_available``."""

    entry: ParticleEntry
    star_path: Path
    source_star: Downloaded
    stacks: list[Downloaded]
    n_particles: int
    n_available: int


def _stack_name(image_name: str, star: Path) -> PurePosixPath:
    """The stack path of ``N@path`` as a safe relative path (no absolute path, no ``..``)."""
    name = PurePosixPath(image_name.split("@", 1)[-1].strip())
    if name.is_absolute() or ".." in name.parts or not name.parts:
        raise CryodiffError(f"rlnImageName '{image_name}' is not a path inside the entry; "
                            "cannot map it to the archive", path=star)
    return name


def fetch_particles(entry: ParticleEntry, dest: Path, n_particles: int,
                    base_url: str | None = None) -> FetchedParticles:
    """Fetch the particle STAR of ``entry``, the stacks of its first ``n_particles`` particles,
    and write the subset STAR. Cached files are reused; every file is fetched through
    :func:`cryodiff.fetch.download.download`."""
    from cryodiff.io.images import check_stacks
    from cryodiff.io.star import read_particles, write_particles

    if n_particles < 1:
        raise CryodiffError(f"--particles must be at least 1, got {n_particles}")
    root = Path(dest) / entry.accession
    star_url = entry.star.url(base_url)
    source = download(star_url, root / star_url.rsplit("/", 1)[-1], entry.star.sha256)
    with warnings.catch_warnings():
        # Before its stacks are here a STAR without a pixel-size column warns; read again below.
        warnings.simplefilter("ignore", RuntimeWarning)
        particles = read_particles(source.path)
    n = min(n_particles, len(particles))
    if n == 0:
        raise CryodiffError("the particle STAR lists no particles", path=source.path)
    names = particles.table["rlnImageName"].astype(str).iloc[:n]
    stack_names = list(dict.fromkeys(_stack_name(name, source.path) for name in names))
    stack_base = f"{(base_url or archive_base_url()).rstrip('/')}/{entry.stack_root.strip('/')}"
    stacks = [download(f"{stack_base}/{quote(str(name))}", root / name) for name in stack_names]

    subset = read_particles(source.path).subset(range(n))
    local = {(root / name).resolve() for name in stack_names}
    if not set(p.resolve() for p in subset.image_paths) <= local:
        raise CryodiffError("image names resolve outside the downloaded stacks", path=source.path)
    check_stacks(subset)
    star_path = root / f"particles_first{n}.star"
    write_particles(star_path, subset)
    return FetchedParticles(entry=entry, star_path=star_path, source_star=source, stacks=stacks,
                            n_particles=n, n_available=len(particles))
