"""cryodiff.fetch against a local HTTP server on 127.0.0.1 (nothing beyond it is contacted)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
from fetch_server import (EMPIAR_ROOT, MAP_BOX, MAP_PATH, MAP_PIXEL_A, PER_STACK,
                          STACK_PIXEL_A, STAR_PATH, closed_port, serve)

from cryodiff.errors import CryodiffError
from cryodiff.fetch.download import HashMismatch, download, fetch_url
from cryodiff.fetch.emdb import fetch_map
from cryodiff.fetch.empiar import fetch_particles
from cryodiff.fetch.registry import MAPS, PARTICLES, RemoteFile, default_cache, map_entry
from cryodiff.io.images import load_images
from cryodiff.io.mrc import read_map
from cryodiff.io.star import read_particles


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test falls back to the real archive: the default base URL is a closed local port."""
    monkeypatch.setenv("CRYODIFF_FETCH_BASE_URL", f"http://127.0.0.1:{closed_port()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory.mktemp("archive"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    """The names in ``folder`` (a leftover temporary file would show up here)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_map_is_downloaded_decompressed_and_read_from_its_header(server, tmp_path):
    fetched = fetch_map(MAPS["EMD-8511"], tmp_path, base_url=server.url)
    assert fetched.path == tmp_path / "EMD-8511" / "emd_8511.map"
    assert fetched.box == MAP_BOX and fetched.pixel_size_A == pytest.approx(MAP_PIXEL_A)
    volume, _ = read_map(fetched.path)
    np.testing.assert_array_equal(volume.numpy(), server.volume)
    assert fetched.archive.sha256 == _sha256(server.root / MAP_PATH)
    assert fetched.archive.downloaded and not fetched.archive.pinned
    assert _leftovers(fetched.path.parent) == ["emd_8511.map", "emd_8511.map.gz"]

    before = server.requested("emd_8511.map.gz")
    again = fetch_map(MAPS["EMD-8511"], tmp_path, base_url=server.url)
    assert not again.archive.downloaded and server.requested("emd_8511.map.gz") == before


def test_a_pinned_hash_is_checked(server, tmp_path):
    right = _sha256(server.root / MAP_PATH)
    entry = dataclasses.replace(MAPS["EMD-8511"], file=RemoteFile(MAP_PATH, right))
    fetched = fetch_map(entry, tmp_path, base_url=server.url)
    assert fetched.archive.pinned and fetched.archive.sha256 == right


def test_hash_mismatch_leaves_no_file_under_the_final_name(server, tmp_path):
    folder = tmp_path / "EMD-8511"
    # A cached copy from an earlier, unpinned run is not the file asked for either.
    fetch_map(MAPS["EMD-8511"], tmp_path, base_url=server.url)
    wrong = "0" * 64
    with pytest.raises(HashMismatch) as caught:
        fetch_map(MAPS["EMD-8511"], tmp_path, sha256=wrong, base_url=server.url)
    message = str(caught.value)
    assert "\n" not in message and wrong in message and _sha256(server.root / MAP_PATH) in message
    assert _leftovers(folder) == []


def test_a_download_cut_half_way_leaves_nothing_and_the_next_run_completes(server, tmp_path):
    server.cut_next.add(MAP_PATH)
    with pytest.raises(CryodiffError, match="cut off") as caught:
        fetch_map(MAPS["EMD-8511"], tmp_path, base_url=server.url)
    assert "\n" not in str(caught.value)
    assert _leftovers(tmp_path / "EMD-8511") == []
    fetched = fetch_map(MAPS["EMD-8511"], tmp_path, base_url=server.url)
    assert fetched.archive.sha256 == _sha256(server.root / MAP_PATH)
    np.testing.assert_array_equal(read_map(fetched.path)[0].numpy(), server.volume)


def test_no_network_is_one_clear_line(tmp_path):
    with pytest.raises(CryodiffError, match="cannot reach 127.0.0.1.*connection refused") as e:
        fetch_map(MAPS["EMD-8511"], tmp_path, base_url=f"http://127.0.0.1:{closed_port()}")
    assert "\n" not in str(e.value)


def test_missing_file_names_the_http_status(server, tmp_path):
    with pytest.raises(CryodiffError, match="HTTP 404"):
        fetch_map(map_entry("EMD-1234"), tmp_path, base_url=server.url)


def test_any_url_with_and_without_a_hash(server, tmp_path):
    url = f"{server.url}/{MAP_PATH}"
    fetched, path = fetch_url(url, tmp_path)
    assert path == tmp_path / "emd_8511.map" and not fetched.pinned
    assert path.read_bytes() == gzip.decompress((server.root / MAP_PATH).read_bytes())
    star, star_file = fetch_url(f"{server.url}/{STAR_PATH}", tmp_path / "s",
                                sha256=_sha256(server.root / STAR_PATH))
    assert star.pinned and star_file.read_bytes() == (server.root / STAR_PATH).read_bytes()
    with pytest.raises(CryodiffError, match="not an http"):
        fetch_url("ftp://example.org/x.mrc", tmp_path)


def test_a_bad_sha256_argument_is_refused_before_any_download(tmp_path):
    with pytest.raises(CryodiffError, match="64 hex"):
        download("http://127.0.0.1:1/x", tmp_path / "x", sha256="abc")


def test_empiar_subset_downloads_only_the_stacks_it_needs(server, tmp_path):
    n = PER_STACK + 1  # the first two stacks
    fetched = fetch_particles(PARTICLES["EMPIAR-10081"], tmp_path, n, base_url=server.url)
    root = tmp_path / "EMPIAR-10081"
    assert fetched.star_path == root / f"particles_first{n}.star"
    assert (fetched.n_particles, fetched.n_available) == (n, 3 * PER_STACK)
    assert [s.path.name for s in fetched.stacks] == ["mic_001_DW.mrcs", "mic_002_DW.mrcs"]
    assert server.requested("mic_003_DW.mrcs") == 0
    assert not (root / "Particles" / "micrographs" / "mic_003_DW.mrcs").exists()

    subset = read_particles(fetched.star_path)
    assert len(subset) == n
    assert all(p.is_relative_to(root) and p.exists() for p in subset.image_paths)
    # The pixel size comes from the stacks' header: the source STAR has no pixel-size column.
    np.testing.assert_allclose(subset.pixel_size_A, STACK_PIXEL_A)
    np.testing.assert_array_equal(load_images(subset).numpy(), server.images[:n])
    with pytest.warns(RuntimeWarning, match="no pixel size"):  # its stacks are not beside it
        source = read_particles(server.root / STAR_PATH)
    np.testing.assert_array_equal(subset.ctf.defocus_u_A.numpy(),
                                  source.ctf.defocus_u_A[:n].numpy())

    before = len(server.requests)
    again = fetch_particles(PARTICLES["EMPIAR-10081"], tmp_path, n, base_url=server.url)
    assert not any(s.downloaded for s in again.stacks) and len(server.requests) == before


def test_empiar_names_outside_the_entry_are_refused(server, tmp_path):
    star = server.root / EMPIAR_ROOT / "evil.star"
    star.write_text("\ndata_\n\nloop_\n_rlnImageName #1\n000001@../../secret.mrcs\n")
    entry = dataclasses.replace(PARTICLES["EMPIAR-10081"],
                                star=RemoteFile(f"{EMPIAR_ROOT}/evil.star"))
    with pytest.raises(CryodiffError, match="not a path inside the entry"):
        fetch_particles(entry, tmp_path, 1, base_url=server.url)


def test_registry_and_cache_defaults(monkeypatch, tmp_path):
    assert map_entry("emd_8511") is MAPS["EMD-8511"]
    assert map_entry("EMD-1234").file.url("http://h") == \
        "http://h/pub/databases/emdb/structures/EMD-1234/map/emd_1234.map.gz"
    assert map_entry("8511") is None
    # No hash is invented: each known one is a real 64-digit digest or None.
    for entry in [*MAPS.values(), *PARTICLES.values()]:
        digest = (entry.file if hasattr(entry, "file") else entry.star).sha256
        assert digest is None or len(digest) == 64
    monkeypatch.setenv("CRYODIFF_CACHE", str(tmp_path))
    assert default_cache() == str(tmp_path)
    monkeypatch.delenv("CRYODIFF_CACHE")
    assert Path(default_cache()) == Path.home() / ".cache" / "cryodiff"


def test_pooch_is_not_imported_at_start_up():
    import subprocess

    # What `cryodiff <any command>` loads to build its parser for fetch: no pooch, no requests.
    code = ("import argparse, sys, cryodiff.cli, cryodiff.cli.fetch as f, cryodiff.fetch.registry; "
            "f.add_args(argparse.ArgumentParser()); "
            "sys.exit(1 if {'pooch', 'requests'} & set(sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
