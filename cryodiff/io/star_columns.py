"""The RELION STAR columns cryodiff reads and writes, and how they map to :class:`CtfParams`.

Shared by the reader (:mod:`cryodiff.io.star`) and the writer (:mod:`cryodiff.io.star_write`).
"""

ANGLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
# CtfParams field -> (STAR column, default when absent; None = required).
CTF_COLUMNS = {
    "defocus_u_A": ("rlnDefocusU", None),
    "defocus_v_A": ("rlnDefocusV", None),
    "defocus_angle_deg": ("rlnDefocusAngle", 0.0),
    "voltage_kV": ("rlnVoltage", None),
    "cs_mm": ("rlnSphericalAberration", None),
    "amplitude_contrast": ("rlnAmplitudeContrast", None),
    "bfactor_A2": ("rlnCtfBfactor", 0.0),
    "phase_shift_deg": ("rlnPhaseShift", 0.0),
}
OPTICS_CTF_FIELDS = ("voltage_kV", "cs_mm", "amplitude_contrast")
# Columns the writer recomputes from the arrays, or moves to the optics table.
REWRITTEN_COLUMNS = {
    "rlnImageName", "rlnOpticsGroup", "rlnOriginX", "rlnOriginY", "rlnOriginXAngst",
    "rlnOriginYAngst", "rlnMagnification", "rlnDetectorPixelSize", "rlnImagePixelSize",
    "rlnImageSize", "rlnImageDimensionality", *ANGLE_COLUMNS,
    *(column for column, _ in CTF_COLUMNS.values())}
