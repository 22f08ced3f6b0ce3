"""environment.yml (conda) and pyproject.toml (pip) must name the same packages and versions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
# conda name -> PyPI name, where they differ
CONDA_TO_PYPI = {"pytorch": "torch"}
# conda-only entries that are not Python dependencies of the package
NOT_DEPENDENCIES = {"python", "pip"}


def _split(requirement: str) -> tuple[str, str]:
    """``'Torch >= 2.1'`` -> (``'torch'``, ``'>=2.1'``), names normalised as in PEP 503."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement)
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    return CONDA_TO_PYPI.get(name, name), match.group(2).replace(" ", "")


def _conda_packages() -> dict[str, str]:
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    packages = {}
    for entry in spec["dependencies"]:
        for requirement in entry["pip"] if isinstance(entry, dict) else [entry]:
            if requirement.startswith("-"):  # pip options such as "-e ."
                continue
            name, version = _split(requirement)
            if name not in NOT_DEPENDENCIES:
                packages[name] = version
    return packages


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_packages = dict(_split(r) for r in project["dependencies"])
    assert _conda_packages() == pip_packages


def test_environment_basics():
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert spec["name"] == "cryodiff"
    assert {"conda-forge", "pytorch"} <= set(spec["channels"])
    assert "python=3.11" in spec["dependencies"]
    pip_section = next(e["pip"] for e in spec["dependencies"] if isinstance(e, dict))
    assert "-e ." in pip_section


def test_split_normalises_names():
    assert _split("PyTorch>=2.1") == ("torch", ">=2.1")
    assert _split("torch_fourier-slice >= 0.6") == ("torch-fourier-slice", ">=0.6")
