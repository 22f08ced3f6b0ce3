"""A regular (non-editable) install from a wheel gives a working CLI and the tutorial notebooks.

The wheel is built offline from a copy of the sources, installed with ``--no-deps`` into a fresh
virtual environment outside the checkout; the heavy dependencies come from the test
environment through a ``.pth`` file (no network). Every command runs with its working
directory outside the checkout, and the test first proves that the installed copy, not the
checkout, is the one imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from cryodiff import notebook_runner
from cryodiff.cli.notebooks import copy_tutorials
from cryodiff.errors import CryodiffError

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "cryodiff", "notebooks"]


def _run(command: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(bin folder, environment, work folder, sources)`` of a fresh venv holding only the
    wheel built from ``sources`` (a copy of the checkout)."""
    tmp = tmp_path_factory.mktemp("packaging")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    source = tmp / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info",
                                                          ".ipynb_checkpoints"))
        else:
            shutil.copy2(ROOT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation",
          "-w", tmp / "wheels"], cwd=tmp, env=env)
    wheel = next((tmp / "wheels").glob("cryodiff-*.whl"))

    prefix = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(prefix)
    python = prefix / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", wheel],
         cwd=tmp, env=env)
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp, env=env).stdout.strip())
    # The dependencies (torch, mrcfile, ...) from the test environment, after the venv's own.
    (site / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp / "work"
    work.mkdir()
    return prefix / "bin", env, work, source


@pytest.mark.slow
def test_the_installed_package_is_imported_not_the_checkout(installed):
    bin_dir, env, work, _ = installed
    out = _run([bin_dir / "python", "-c", "import cryodiff; print(cryodiff.__file__)"],
               cwd=work, env=env).stdout.strip()
    assert Path(out).is_relative_to(bin_dir.parent) and not Path(out).is_relative_to(ROOT)


@pytest.mark.slow
def test_the_cli_works_from_the_wheel(installed, reference_data):
    bin_dir, env, work, _ = installed
    cli = bin_dir / "cryodiff"
    assert "cryodiff 0.1.0" in _run([cli, "--version"], cwd=work, env=env).stdout
    info = _run([cli, "info", reference_data / "real_particles" / "sample.star"], cwd=work,
                env=env).stdout
    assert "particles: 17" in info and "box: 200" in info
    _run([cli, "simulate", "--map", "phantom", "--box", "32", "--n", "4", "--snr", "0.1",
          "--out", work / "sim"], cwd=work, env=env)
    assert (work / "sim" / "particles.star").is_file()
    assert (work / "sim" / "particles.mrcs").is_file()


@pytest.mark.slow
def test_the_tutorials_ship_with_the_wheel(installed):
    bin_dir, env, work, source = installed
    cli = bin_dir / "cryodiff"
    expected = sorted(p.name for p in (source / "notebooks").glob("[0-9][0-9]_*")
                      if p.suffix in (".ipynb", ".py"))
    assert len(expected) >= 8
    listed = _run([cli, "notebooks", "--list"], cwd=work, env=env).stdout.split()
    assert [Path(p).name for p in listed] == [n for n in expected if n.endswith(".ipynb")]
    assert all(Path(p).is_relative_to(bin_dir.parent) for p in listed)

    _run([cli, "notebooks", "--copy-to", work / "tutorials"], cwd=work, env=env)
    assert sorted(p.name for p in (work / "tutorials").iterdir()) == expected
    for name in expected:
        assert (work / "tutorials" / name).read_bytes() == \
            (source / "notebooks" / name).read_bytes()


def test_notebooks_folder_checkout_then_installed_copy_then_one_clear_line(tmp_path,
                                                                          monkeypatch):
    assert notebook_runner.notebooks_folder() == ROOT / "notebooks"
    package = tmp_path / "site-packages" / "cryodiff"
    package.mkdir(parents=True)
    monkeypatch.setattr(notebook_runner, "__file__", str(package / "notebook_runner.py"))
    with pytest.raises(CryodiffError, match="no tutorial notebooks") as caught:
        notebook_runner.notebooks_folder()
    assert "\n" not in str(caught.value)
    (package / "tutorials").mkdir()
    assert notebook_runner.notebooks_folder() == package / "tutorials"
    # A notebooks/ folder beside an installed package is not a checkout (no pyproject.toml).
    (package.parent / "notebooks").mkdir()
    assert notebook_runner.notebooks_folder() == package / "tutorials"


def test_copy_tutorials_copies_pairs_and_never_overwrites(tmp_path):
    source = tmp_path / "notebooks"
    source.mkdir()
    for name in ("01_a.ipynb", "01_a.py", "02_b.ipynb", "02_b.py", "05_c.ipynb", "notes.ipynb"):
        (source / name).write_text(f"source {name}")
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "02_b.py").write_text("my edits")
    copied, kept = copy_tutorials(dest, source)
    assert sorted(p.name for p in copied) == ["01_a.ipynb", "01_a.py", "02_b.ipynb", "05_c.ipynb"]
    assert [p.name for p in kept] == ["02_b.py"]
    assert (dest / "02_b.py").read_text() == "my edits"
    assert (dest / "05_c.ipynb").read_text() == "source 05_c.ipynb"
    assert sorted(p.name for p in dest.iterdir()) == ["01_a.ipynb", "01_a.py", "02_b.ipynb",
                                                      "02_b.py", "05_c.ipynb"]
    assert copy_tutorials(dest, source) == ([], sorted(copied + kept))
