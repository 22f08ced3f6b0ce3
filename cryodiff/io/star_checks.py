"""Physical checks on the values read from a STAR file, so nothing impossible goes further.

Each checked column must be finite and inside its range; the error names the file, the
column and the first bad row (1-based particle row, or the optics group for a value from
``data_optics``), e.g. ``particles.star: column rlnVoltage, optics group 1: 0 is out of range
(must be > 0 kV)``. The ranges are wide physical limits, not typical values:

=========================  =======================  ============================================
column                     range                    why
=========================  =======================  ============================================
pixel size (any source)    > 0 Å                    a size
rlnVoltage                 > 0 and ≤ 3000 kV        acceleration voltage
rlnAmplitudeContrast       0 … 1                    a fraction; sqrt(1 − A²) needs ≤ 1
rlnDefocusU / V            −10 µm … 100 µm (in Å)   negative is overfocus; beyond is a unit slip
rlnSphericalAberration     −10 … 100 mm             correctors give ≈ 0 or slightly negative
angles, origins, B-factor  finite                   any finite angle is a pose
=========================  =======================  ============================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryodiff.errors import CryodiffError


@dataclass(frozen=True)
class Rule:
    """A closed or open interval (None = unbounded) with the unit for messages."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    unit: str = ""

    def ok(self, values: np.ndarray) -> np.ndarray:
        good = np.isfinite(values)
        if self.low is not None:
            good &= (values > self.low) if self.low_open else (values >= self.low)
        if self.high is not None:
            good &= values <= self.high
        return good

    def text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.low is not None and self.high is not None and not self.low_open:
            return f"must be in [{self.low:g}, {self.high:g}]{unit}"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '≥'} {self.low:g}{unit}")
        if self.high is not None:
            parts.append(f"≤ {self.high:g}{unit}")
        return "must be finite" + "".join(f", {part}" for part in parts[:-1]) + (
            f" and {parts[-1]}" if parts else "")


FINITE = Rule()
POSITIVE = Rule(low=0.0, low_open=True)
RULES = {
    "rlnImagePixelSize": Rule(0.0, None, True, "Å"),
    "rlnDetectorPixelSize": Rule(0.0, None, True, "µm"),
    "rlnMagnification": Rule(0.0, None, True),
    "rlnVoltage": Rule(0.0, 3000.0, True, "kV"),
    "rlnAmplitudeContrast": Rule(0.0, 1.0),
    "rlnDefocusU": Rule(-1e5, 1e6, unit="Å"),
    "rlnDefocusV": Rule(-1e5, 1e6, unit="Å"),
    "rlnSphericalAberration": Rule(-10.0, 100.0, unit="mm"),
    "rlnImageSize": Rule(0.0, None, True, "px"),
}


def rule_for(column: str) -> Rule:
    """The rule of a column (finite only for columns without a physical range)."""
    return RULES.get(column, FINITE)


def check_values(values: np.ndarray, column: str, path: Path | None,
                 optics_group: np.ndarray | None = None, rule: Rule | None = None) -> np.ndarray:
    """Return ``values`` if all pass ``rule`` (default :func:`rule_for`), else raise.

    ``optics_group`` (N,), given when the column came from ``data_optics``, makes the
    message name the optics group instead of the particle row.
    """
    rule = rule or rule_for(column)
    good = rule.ok(values)
    if good.all():
        return values
    bad = np.flatnonzero(~good)
    first = int(bad[0])
    where = (f"optics group {int(optics_group[first])}" if optics_group is not None
             else f"row {first + 1}")
    more = f" ({len(bad)} bad rows)" if optics_group is None and len(bad) > 1 else ""
    raise CryodiffError(f"column {column}, {where}: {values[first]:g} is out of range "
                        f"({rule.text()}){more}", path=path)
