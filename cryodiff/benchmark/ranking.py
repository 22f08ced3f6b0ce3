"""Who wins a condition: the one rule shared by ``results.md`` and the combined table.

Rows are the benchmark's result dictionaries (``results.json``). For each metric the best
value among the comparable rows wins, and so does every row equal to it as printed. PSNR
adds the spread between training seeds: a row is best-or-tied when its mean PSNR is within
``max(seed SD of the row, seed SD of the best row)`` of the best mean — a gap smaller than
what retraining alone moves is not a ranking. Rows trained once (or methods without
training) have no seed SD, which counts as 0 there.

Comparable rows: PSNR and SSIM rank the denoisers scored on the condition's full 2D test
set (rows of slow methods, scored on fewer images, are shown but not ranked; the raw
particles are never a 2D winner); the 3D metrics rank every measured row, the raw
particles included unless ``denoisers_only``; the clean reference (status ``reference``)
is never ranked. 3D at known poses is decided by the FSC-0.5 against the true map (the
criterion for a map against the truth); FSC-0.143 is ranked beside it.
"""

from __future__ import annotations

# metric -> (digits shown, whether larger is better)
SHOWN = {"psnr": (2, True), "ssim": (3, True), "fsc_05_A": (1, False), "fsc_0143_A": (1, False),
         "fsc_halfmap_0143_A": (1, False), "fsc_0143_A_pose_search": (1, False),
         "median_pose_error_deg": (1, False)}
TWO_D = ("psnr", "ssim")
# Metrics whose ties include the spread between training seeds.
SEED_TIED = ("psnr",)
# A median pose error above this (degrees) is close to random (126° on average): not a winner.
NEAR_RANDOM_DEG = 90.0


def full_2d_count(rows: list[dict]) -> int | None:
    """Test-set size of the condition's 2D scores: the most images any measured row used."""
    return max((r["n_test_2d"] for r in rows if r["status"] == "ok" and r.get("psnr") is not None
                and r.get("n_test_2d") is not None), default=None)


def ranked_2d(row: dict, full: int | None) -> bool:
    """Whether ``row`` takes part in the PSNR/SSIM ranking (a denoiser on the full 2D set)."""
    return row["status"] == "ok" and row.get("psnr") is not None and row["method"] != "noisy" \
        and row.get("n_test_2d") == full


def seed_sd(row: dict, key: str) -> float:
    """The row's sample SD of ``key`` across training seeds (``<key>_seed_sd``), 0 if none."""
    return row.get(f"{key}_seed_sd") or 0.0


def tied(row: dict, best: dict, key: str) -> bool:
    """Whether ``row`` is best-or-tied with ``best`` on ``key``: equal as printed, or, for
    :data:`SEED_TIED` metrics, within the larger of the two rows' seed SDs."""
    digits, _ = SHOWN[key]
    if round(row[key], digits) == round(best[key], digits):
        return True
    if key in SEED_TIED:
        return abs(best[key] - row[key]) <= max(seed_sd(row, key), seed_sd(best, key))
    return False


def winners(rows: list[dict], keys=tuple(SHOWN),
            denoisers_only: bool = False) -> dict[str, set[str]]:
    """The best-or-tied methods of one condition for each metric in ``keys`` that any
    comparable row measured (see the module docstring for the pool and the tie rule).

    The median pose error names no winner when even the best is near random
    (above :data:`NEAR_RANDOM_DEG`).
    """
    full = full_2d_count(rows)
    measured = [r for r in rows if r["status"] == "ok"
                and not (denoisers_only and r["method"] == "noisy")]
    best: dict[str, set[str]] = {}
    for key in keys:
        _, larger = SHOWN[key]
        pool = [r for r in measured if r.get(key) is not None
                and (key not in TWO_D or ranked_2d(r, full))]
        if not pool:
            continue
        top = (max if larger else min)(pool, key=lambda r: r[key])
        if key == "median_pose_error_deg" and top[key] > NEAR_RANDOM_DEG:
            continue
        best[key] = {r["method"] for r in pool if tied(r, top, key)}
    return best


def best_row(rows: list[dict], key: str, denoisers_only: bool = False) -> dict | None:
    """The row with the best value of ``key`` among the rows :func:`winners` ranks (None if
    none): the reference that ties are measured from."""
    won = winners(rows, (key,), denoisers_only).get(key)
    if not won:
        return None
    pool = [r for r in rows if r["method"] in won]
    return (max if SHOWN[key][1] else min)(pool, key=lambda r: r[key])
