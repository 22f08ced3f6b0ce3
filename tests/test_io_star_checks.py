"""STAR values are checked on reading: finite, in physical range, required columns present.

Includes a Hypothesis property: a generated particle table is either read with every value
finite and in range, or refused with one line naming the file, the bad column and its row.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryodiff.errors import CryodiffError
from cryodiff.io.star import read_particles
from cryodiff.io.star_checks import RULES, check_values

OPTICS_COLUMNS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
                  "rlnImagePixelSize")
PARTICLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
                    "rlnOriginYAngst", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
GOOD_OPTICS = (300.0, 2.7, 0.1, 1.5)
GOOD_PARTICLE = (10.0, 20.0, 30.0, 1.0, -1.0, 15000.0, 14000.0, 45.0)


def _star(path, optics=GOOD_OPTICS, rows=(GOOD_PARTICLE,), drop=()):
    """A RELION 3.1 STAR file; ``drop`` leaves particle columns out."""
    keep = [i for i, c in enumerate(PARTICLE_COLUMNS) if c not in drop]
    header = ["data_optics", "", "loop_", "_rlnOpticsGroup", "_rlnImageSize",
              *(f"_{c}" for c in OPTICS_COLUMNS), " ".join(["1", "16", *map(repr, optics)]), "",
              "data_particles", "", "loop_", "_rlnImageName", "_rlnOpticsGroup",
              *(f"_{PARTICLE_COLUMNS[i]}" for i in keep)]
    lines = [" ".join([f"{n + 1}@stack.mrcs", "1", *(repr(row[i]) for i in keep)])
             for n, row in enumerate(rows)]
    path.write_text("\n".join(header + lines) + "\n")
    return path


def _in_range(column: str, value: float) -> bool:
    return bool(RULES[column].ok(np.array([value]))[0]) if column in RULES else math.isfinite(value)


@pytest.mark.parametrize("column, value, words", [
    ("rlnVoltage", 0.0, "rlnVoltage, optics group 1: 0"),
    ("rlnVoltage", float("nan"), "rlnVoltage, optics group 1: nan"),
    ("rlnAmplitudeContrast", 1.5, "rlnAmplitudeContrast, optics group 1: 1.5"),
    ("rlnAmplitudeContrast", -0.1, "rlnAmplitudeContrast"),
    ("rlnImagePixelSize", float("nan"), "rlnImagePixelSize, optics group 1: nan"),
    ("rlnImagePixelSize", 0.0, "rlnImagePixelSize"),
    ("rlnSphericalAberration", float("inf"), "rlnSphericalAberration"),
])
def test_impossible_optics_values_are_refused(tmp_path, column, value, words):
    optics = list(GOOD_OPTICS)
    optics[OPTICS_COLUMNS.index(column)] = value
    star = _star(tmp_path / "p.star", optics=optics)
    with pytest.raises(CryodiffError) as error:
        read_particles(star)
    message = str(error.value)
    assert words in message and str(star) in message and "\n" not in message


@pytest.mark.parametrize("column, value", [
    ("rlnDefocusU", float("nan")), ("rlnDefocusV", 1e12), ("rlnDefocusU", -2e5),
    ("rlnAngleTilt", float("nan")), ("rlnAnglePsi", float("-inf")),
    ("rlnOriginXAngst", float("nan")), ("rlnDefocusAngle", float("inf")),
])
def test_bad_particle_value_names_column_and_first_row(tmp_path, column, value):
    bad = list(GOOD_PARTICLE)
    bad[PARTICLE_COLUMNS.index(column)] = value
    star = _star(tmp_path / "p.star", rows=[GOOD_PARTICLE, bad, GOOD_PARTICLE, bad])
    with pytest.raises(CryodiffError, match=rf"column {column}, row 2: .*\(2 bad rows\)"):
        read_particles(star)


@pytest.mark.parametrize("dropped", ["rlnAngleRot", "rlnAnglePsi", "rlnOriginYAngst"])
def test_a_missing_pose_column_is_never_taken_as_zero(tmp_path, dropped):
    star = _star(tmp_path / "p.star", drop=(dropped,))
    with pytest.raises(CryodiffError, match=f"column {dropped} is missing"):
        read_particles(star)


def test_no_pose_columns_at_all_is_a_stack_without_poses(tmp_path):
    star = _star(tmp_path / "p.star", drop=("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"))
    assert read_particles(star).eulers_deg is None


def test_header_without_rows_is_refused(tmp_path):
    star = _star(tmp_path / "p.star", rows=())
    with pytest.raises(CryodiffError, match="header but no rows"):
        read_particles(star)


def test_non_integer_optics_group_is_refused(tmp_path):
    star = _star(tmp_path / "p.star")
    star.write_text(star.read_text().replace("1@stack.mrcs 1 ", "1@stack.mrcs 1.5 "))
    with pytest.raises(CryodiffError, match="rlnOpticsGroup, row 1: 1.5 is not an integer"):
        read_particles(star)


def test_check_values_passes_good_values_through():
    values = np.array([0.0, 0.5, 1.0])
    assert check_values(values, "rlnAmplitudeContrast", None) is values


values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from([0.0, -1.0, 1.0, 0.1, 300.0, 15000.0, 1e7]))


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(optics=st.tuples(*[values] * 4), rows=st.lists(st.tuples(*[values] * 8), min_size=1,
                                                      max_size=4))
def test_generated_tables_are_read_valid_or_refused_in_one_line(tmp_path, optics, rows):
    star = _star(tmp_path / "gen.star", optics=optics, rows=rows)
    table = {c: [v] for c, v in zip(OPTICS_COLUMNS, optics)}
    for i, column in enumerate(PARTICLE_COLUMNS):
        table[column] = [row[i] for row in rows]
    valid = all(_in_range(c, float(np.float64(repr(v)))) for c, vs in table.items() for v in vs)
    try:
        particles = read_particles(star)
    except CryodiffError as error:
        message = str(error)
        assert not valid, message
        assert "\n" not in message and str(star) in message and "column rln" in message
        return
    assert valid
    assert particles.eulers_deg.shape == (len(rows), 3)
    assert np.isfinite(particles.eulers_deg).all() and np.isfinite(particles.shifts_A).all()
    assert (particles.pixel_size_A > 0).all()
    ctf = particles.ctf
    assert (ctf.voltage_kV > 0).all() and ((ctf.amplitude_contrast >= 0)
                                           & (ctf.amplitude_contrast <= 1)).all()
