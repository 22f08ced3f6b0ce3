"""``cryodiff fetch``: download an EMDB map, an EMPIAR particle subset or any URL (hash-checked).

Files go to ``--dest`` or the cache (``$CRYODIFF_CACHE``, default ``~/.cache/cryodiff``);
``$CRYODIFF_FETCH_BASE_URL`` replaces the EBI archive host (a mirror, or a test server).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PARTICLES = 1000


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", metavar="ID|URL",
                        help="EMD-N (an EMDB map), EMPIAR-10081 (a particle subset) or an "
                             "http(s) URL")
    parser.add_argument("--sha256", metavar="HEX", default=None,
                        help="expected SHA-256 of the downloaded file (the .gz for EMDB maps)")
    parser.add_argument("--dest", type=Path, default=None,
                        help="folder for the files (default $CRYODIFF_CACHE or ~/.cache/cryodiff)")
    parser.add_argument("--particles", type=int, default=None, metavar="N",
                        help=f"EMPIAR: the first N particles (default {DEFAULT_PARTICLES})")
    parser.add_argument("--list", action="store_true", help="list the known accessions")


def _hash_line(fetched, label: str) -> str:
    if fetched.pinned:
        state = "checked against the known hash"
    elif fetched.downloaded:
        state = ("no known hash: pass --sha256 to check it next time, or record it in "
                 "cryodiff/fetch/registry.py")
    else:
        state = "cached copy; no known hash to check it against"
    return f"  {label} sha256 {fetched.sha256} ({state})"


def _list() -> int:
    from cryodiff.fetch.registry import MAPS, PARTICLES

    for entry in [*MAPS.values(), *PARTICLES.values()]:
        pinned = "sha256 known" if (getattr(entry, "file", None) or entry.star).sha256 \
            else "sha256 not recorded"
        print(f"{entry.accession}: {entry.name or '?'} ({pinned})")
    print("any other EMD-N accession follows the EMDB layout; any http(s) URL works")
    return 0


def _fetch_map(entry, dest: Path, sha256: str | None) -> None:
    from cryodiff.fetch.emdb import fetch_map

    fetched = fetch_map(entry, dest, sha256)
    print(f"{entry.accession}: {entry.name or 'EMDB map'}")
    print(f"  map {fetched.path}")
    print(f"  box {fetched.box}^3, pixel size {fetched.pixel_size_A:g} Å (from the MRC header"
          f"{'; 0 means not recorded' if fetched.pixel_size_A == 0 else ''})")
    expected = [(entry.expected_box, fetched.box, "box"),
                (entry.expected_pixel_size_A, fetched.pixel_size_A, "pixel size")]
    for want, got, what in expected:
        if want is not None and abs(got - want) > 0.01 * want:
            print(f"  note: the registry expects {what} {want:g}, the file says {got:g}")
    if entry.note:
        print(f"  note: {entry.note}")
    print(_hash_line(fetched.archive, fetched.archive.path.name))


def _fetch_particles(accession: str, entry, dest: Path, n: int) -> None:
    from cryodiff.fetch.empiar import fetch_particles

    fetched = fetch_particles(entry, dest, n)
    new = sum(s.downloaded for s in fetched.stacks)
    print(f"{accession}: {entry.name or 'EMPIAR particles'}")
    print(f"  {fetched.n_particles} of {fetched.n_available} particles -> {fetched.star_path}")
    print(f"  stacks: {len(fetched.stacks)} ({new} downloaded, {len(fetched.stacks) - new} "
          f"cached) under {fetched.star_path.parent}")
    if entry.note:
        print(f"  note: {entry.note}")
    print(_hash_line(fetched.source_star, fetched.source_star.path.name))
    for stack in fetched.stacks:
        if stack.downloaded:
            print(_hash_line(stack, stack.path.name))


def main(args: argparse.Namespace) -> int:
    from cryodiff.errors import CryodiffError
    from cryodiff.fetch.registry import PARTICLES, default_cache, map_entry, particle_entry

    if args.list:
        return _list()
    if not args.source:
        raise CryodiffError("name what to fetch: EMD-N, EMPIAR-10081 or an http(s) URL "
                            "(cryodiff fetch --list shows the known ones)")
    from cryodiff.fetch.download import check_sha256

    sha256 = check_sha256(args.sha256)
    dest = Path(args.dest if args.dest is not None else default_cache()).expanduser()
    source = args.source.strip()
    particles = particle_entry(source)
    if args.particles is not None and particles is None:
        raise CryodiffError("--particles applies to EMPIAR entries only")
    if particles is not None:
        accession, entry = particles
        if entry is None:
            raise CryodiffError(f"no particle STAR is recorded for {accession}; known: "
                                f"{', '.join(PARTICLES)} (or fetch files by URL)")
        if sha256 is not None:
            raise CryodiffError("--sha256 checks one file; an EMPIAR subset is several "
                                "(record their hashes in cryodiff/fetch/registry.py)")
        _fetch_particles(accession, entry, dest,
                         DEFAULT_PARTICLES if args.particles is None else args.particles)
        return 0
    entry = map_entry(source)
    if entry is not None:
        _fetch_map(entry, dest, sha256)
        return 0
    if "://" not in source:
        raise CryodiffError(f"unknown source {source!r}: give EMD-N, EMPIAR-10081 or an "
                            "http(s) URL")
    from cryodiff.fetch.download import fetch_url

    fetched, path = fetch_url(source, dest, sha256)
    print(f"{source}\n  file {path}")
    print(_hash_line(fetched, fetched.path.name))
    return 0
