"""EMDB maps by accession: download ``emd_N.map.gz``, check it, decompress, read the header."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryodiff.fetch.download import Downloaded, HashMismatch, download, gunzip
from cryodiff.fetch.registry import MapEntry


@dataclass(frozen=True)
class FetchedMap:
    """A map in the cache: ``path`` (decompressed MRC), the ``archive`` it came from, and its
    ``box`` (voxels per side) and ``pixel_size_A`` (Å, 0.0 if absent) read from the header."""

    entry: MapEntry
    path: Path
    archive: Downloaded
    box: int
    pixel_size_A: float


def fetch_map(entry: MapEntry, dest: Path, sha256: str | None = None,
              base_url: str | None = None) -> FetchedMap:
    """Fetch ``entry``'s map into ``dest/EMD-N/`` and read its box and pixel size.

    ``sha256`` (of the ``.gz``) overrides the registry's. The map is validated as
    :func:`cryodiff.io.mrc.read_map` does (MRC, 3D, cubic, finite).
    """
    from cryodiff.io.mrc import read_map

    url = entry.file.url(base_url)
    folder = Path(dest) / entry.accession
    target = folder / url.rsplit("/", 1)[-1]
    unpacked = target.with_suffix("") if target.suffix == ".gz" else target
    try:
        archive = download(url, target, sha256 or entry.file.sha256)
    except HashMismatch:
        unpacked.unlink(missing_ok=True)  # made from a file that failed the check
        raise
    path = gunzip(archive.path, unpacked, force=archive.downloaded) \
        if unpacked != target else archive.path
    volume, pixel_size_A = read_map(path)
    return FetchedMap(entry=entry, path=path, archive=archive, box=int(volume.shape[-1]),
                      pixel_size_A=pixel_size_A)
