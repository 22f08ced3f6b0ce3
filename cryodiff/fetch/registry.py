"""The files ``cryodiff fetch`` knows: where they live, their SHA-256 where known, what they are.

URLs are kept as paths below the EBI archive host (``https://ftp.ebi.ac.uk``), which
``$CRYODIFF_FETCH_BASE_URL`` replaces (a mirror, or the tests' server on 127.0.0.1). EMDB maps
follow the archive's layout ``pub/databases/emdb/structures/EMD-N/map/emd_N.map.gz``, so any
``EMD-N`` accession can be fetched; the entries below add what is known about the maps the
project uses.

A ``sha256`` of None means the hash was not recorded: such a file downloads and its hash is
printed, to be pinned here (or passed as ``--sha256`` next time). None of the hashes could be
computed where this registry was written (no access to EBI), and none is guessed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

EBI_BASE_URL = "https://ftp.ebi.ac.uk"
BASE_URL_ENV = "CRYODIFF_FETCH_BASE_URL"
CACHE_ENV = "CRYODIFF_CACHE"

_EMD = re.compile(r"^EMD[-_]?(\d{4,6})$", re.IGNORECASE)
_EMPIAR = re.compile(r"^EMPIAR[-_]?(\d{5})$", re.IGNORECASE)


@dataclass(frozen=True)
class RemoteFile:
    """One file of the archive: ``path`` below the base URL and its SHA-256 (None: unknown)."""

    path: str
    sha256: str | None = None

    def url(self, base_url: str | None = None) -> str:
        return f"{(base_url or archive_base_url()).rstrip('/')}/{self.path.lstrip('/')}"


@dataclass(frozen=True)
class MapEntry:
    """An EMDB map: the gzipped MRC file and what is known about it.

    ``expected_box`` (voxels per side) and ``expected_pixel_size_A`` (Å) are for comparison
    with the header only; None where not confirmed. The printed values always come from the
    downloaded file's header.
    """

    accession: str
    file: RemoteFile
    name: str | None = None
    expected_box: int | None = None
    expected_pixel_size_A: float | None = None
    note: str = ""


@dataclass(frozen=True)
class ParticleEntry:
    """An EMPIAR particle set: its particle STAR and the folder its image names are relative to.

    ``stack_root`` is the archive folder (path below the base URL) that the STAR's
    ``rlnImageName`` stack paths are relative to; the local copy mirrors it.
    """

    accession: str
    star: RemoteFile
    stack_root: str
    name: str | None = None
    map_accession: str | None = None
    note: str = ""


def _emdb_file(number: str, sha256: str | None = None) -> RemoteFile:
    return RemoteFile(f"pub/databases/emdb/structures/EMD-{number}/map/emd_{number}.map.gz",
                      sha256)


MAPS: dict[str, MapEntry] = {
    "EMD-8511": MapEntry(
        "EMD-8511", _emdb_file("8511"),
        name="human HCN1 channel, apo (Lee & MacKinnon, Cell 2017); the paper's real-data map",
        note="the particles are EMPIAR-10081 (1.3 Å/px as ASPIRE's EMPIAR-10081 example "
             "uses them); box and map pixel size not confirmed here"),
    "EMD-24928": MapEntry(
        "EMD-24928", _emdb_file("24928"),
        name="map used by Zhang et al. (ICASSP 2024) for simulated particles",
        note="identity, box and pixel size not recorded here: see the EMDB entry page"),
    "EMD-2660": MapEntry(
        "EMD-2660", _emdb_file("2660"),
        name="Plasmodium falciparum 80S ribosome (Wong et al., eLife 2014)",
        expected_box=360, expected_pixel_size_A=1.34,
        note="data/ribosome70S/ribosome70S_65.mrc is this map downsampled (ASPIRE's test "
             "volume)"),
}

PARTICLES: dict[str, ParticleEntry] = {
    "EMPIAR-10081": ParticleEntry(
        "EMPIAR-10081",
        RemoteFile("empiar/world_availability/10081/data/Particles/micrographs/data.star"),
        stack_root="empiar/world_availability/10081/data",
        name="human HCN1 particles (Lee & MacKinnon, Cell 2017), one stack per micrograph",
        map_accession="EMD-8511",
        note="STAR path and image-name layout inferred from ASPIRE's EMPIAR-10081 example "
             "(data/Particles/micrographs/data.star, image names relative to data/), not "
             "checked against the archive here"),
}


def archive_base_url() -> str:
    """``$CRYODIFF_FETCH_BASE_URL`` or the EBI archive host."""
    return os.environ.get(BASE_URL_ENV) or EBI_BASE_URL


def default_cache() -> str:
    """``$CRYODIFF_CACHE`` or ``~/.cache/cryodiff`` (outside any checkout, never committed)."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache",
                                                     "cryodiff")


def map_entry(identifier: str) -> MapEntry | None:
    """The map entry for ``EMD-N`` (also ``emd_N``, ``EMD8511``); a bare one for unknown N."""
    match = _EMD.match(identifier.strip())
    if match is None:
        return None
    accession = f"EMD-{match.group(1)}"
    return MAPS.get(accession) or MapEntry(accession, _emdb_file(match.group(1)))


def particle_entry(identifier: str) -> tuple[str, ParticleEntry | None] | None:
    """``(accession, entry)`` for ``EMPIAR-N`` (entry None if not registered), else None."""
    match = _EMPIAR.match(identifier.strip())
    if match is None:
        return None
    accession = f"EMPIAR-{match.group(1)}"
    return accession, PARTICLES.get(accession)
