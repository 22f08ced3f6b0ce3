"""``cryodiff fetch`` end to end against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib

import pytest
from fetch_server import MAP_PATH, closed_port, serve

from cryodiff.cli import main


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Every test starts pointed at a closed local port and a temporary cache: a test that
    forgets to choose its server fails instead of reaching the real archive."""
    monkeypatch.setenv("CRYODIFF_FETCH_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("CRYODIFF_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory.mktemp("archive"))


@pytest.fixture
def archive(server, monkeypatch):
    monkeypatch.setenv("CRYODIFF_FETCH_BASE_URL", server.url)
    return server


def test_map_prints_the_header_pixel_size_and_the_hash_to_pin(archive, tmp_path, capsys):
    assert main(["fetch", "EMD-8511", "--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    digest = hashlib.sha256((archive.root / MAP_PATH).read_bytes()).hexdigest()
    assert "HCN1" in out and "box 12^3, pixel size 2.5 Å (from the MRC header" in out
    assert f"sha256 {digest} (no known hash: pass --sha256" in out
    assert str(tmp_path / "EMD-8511" / "emd_8511.map") in out

    assert main(["fetch", "EMD-8511", "--dest", str(tmp_path), "--sha256", digest]) == 0
    assert "checked against the known hash" in capsys.readouterr().out


def test_hash_mismatch_exits_2_with_one_line(archive, tmp_path, capsys):
    assert main(["fetch", "EMD-8511", "--dest", str(tmp_path), "--sha256", "1" * 64]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cryodiff: error: SHA-256 mismatch")
    assert not (tmp_path / "EMD-8511" / "emd_8511.map.gz").exists()
    assert not (tmp_path / "EMD-8511" / "emd_8511.map").exists()


def test_empiar_subset(archive, tmp_path, capsys):
    assert main(["fetch", "EMPIAR-10081", "--particles", "3", "--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 of 12 particles" in out and "stacks: 1 (1 downloaded, 0 cached)" in out
    assert (tmp_path / "EMPIAR-10081" / "particles_first3.star").exists()


def test_default_destination_is_the_cache_variable(archive, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRYODIFF_CACHE", str(tmp_path / "cache"))
    assert main(["fetch", f"{archive.url}/{MAP_PATH}"]) == 0
    assert (tmp_path / "cache" / "emd_8511.map").exists()
    assert "no known hash" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["fetch", "EMD-8511", "--particles", "5"], "--particles applies to EMPIAR"),
    (["fetch", "EMPIAR-10028"], "no particle STAR is recorded for EMPIAR-10028"),
    (["fetch", "EMPIAR-10081", "--sha256", "a" * 64], "--sha256 checks one file"),
    (["fetch", "EMPIAR-10081", "--particles", "0"], "--particles must be at least 1"),
    (["fetch", "ribosome"], "unknown source 'ribosome'"),
    (["fetch"], "name what to fetch"),
])
def test_user_mistakes_are_one_line(argv, message, tmp_path, capsys):
    assert main([*argv, "--dest", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_no_network(tmp_path, capsys):  # the offline fixture's closed port
    assert main(["fetch", "EMD-2660", "--dest", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach 127.0.0.1" in err and "refused" in err


def test_list(capsys):
    assert main(["fetch", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(a in out for a in ("EMD-8511", "EMD-24928", "EMD-2660", "EMPIAR-10081"))
