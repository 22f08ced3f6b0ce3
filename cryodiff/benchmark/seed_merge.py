"""One row from a learnt method's rows of runs with different training seeds.

A short GPU lease, or a CPU that cannot run three seeds in a day, measures a condition one
training seed at a time, each into its own folder. Every such run writes the method's row
over its own seeds (:mod:`cryodiff.benchmark.seeds`); :func:`merge_seed_rows` turns two of
them into the row one run over all their seeds would have written: 2D figures averaged over
the seeds (each run's mean weighted by its number of seeds), the spread between seeds
(:func:`pooled_sd`, exact from each run's mean, SD and count), each test image's PSNR
averaged over the seeds, and the 3D figures of the run that holds the lowest seed (a run
reconstructs from its first seed's images only). A merged row lists the files it came from
in ``sources``.
"""

from __future__ import annotations

import math
import re

from cryodiff.errors import CryodiffError

# 2D figures and costs of a row: means over its seeds.
MEAN_KEYS = ("psnr", "ssim", "frc_0143", "psnr_gain_db", "seconds_per_image", "fit_seconds")
# What a run adds to a row's note about its seeds (cryodiff.benchmark.seeds.combine_seeds).
_SEEDS_NOTE = re.compile(r" \(seed -?\d+; other seeds differ\)|; mean of \d+ training seeds "
                         r"\[[-\d, ]*\]|; 3D, half maps and pose search from training seed "
                         r"-?\d+'s images")
# A run that loaded SR3 from --checkpoint says so in the note of every row built from it.
CHECKPOINT_NOTE = "(--checkpoint)"


def training_seeds(row: dict) -> list[int] | None:
    """The training seeds of a learnt method's row (None for a method trained once or not
    at all, or a row that does not record them)."""
    seeds = row.get("training_seeds")
    if isinstance(seeds, list) and seeds and all(
            isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        return seeds
    return None


def disjoint_seeds(a: dict, b: dict) -> bool:
    """Whether two rows are one learnt method trained under different seeds."""
    seeds_a, seeds_b = training_seeds(a), training_seeds(b)
    return seeds_a is not None and seeds_b is not None and not set(seeds_a) & set(seeds_b)


def sources(row: dict) -> list[str]:
    """The files a row came from: its ``source``, or every file merged into it."""
    return row.get("sources") or ([row["source"]] if row.get("source") else [])


def devices(row: dict) -> list[str]:
    """The devices a row was measured on (a row merged across devices names several)."""
    return [d for d in (row.get("device") or "").split(" + ") if d]


def pooled_sd(groups: list[tuple[float, float | None, int]]) -> float | None:
    """Sample SD (n − 1) of all the values of several groups, each given as (mean, sample
    SD or None, count); None when a group of two or more has no SD or fewer than two values
    are pooled."""
    total = sum(n for _, _, n in groups)
    if total < 2 or any(n > 1 and sd is None for _, sd, n in groups):
        return None
    mean = sum(m * n for m, _, n in groups) / total
    squares = sum((n - 1) * (sd or 0.0) ** 2 + n * (m - mean) ** 2 for m, sd, n in groups)
    return math.sqrt(squares / (total - 1))


def _weighted(a, b, weight_a: float):
    return None if a is None or b is None else weight_a * a + (1 - weight_a) * b


def _base_note(row: dict) -> str:
    return _SEEDS_NOTE.sub("", row.get("note") or "")


def _failed(row: dict, seeds: list[int], files: list[str]) -> dict:
    """The merged row when ``row``, a run's failed or skipped row, stops the method."""
    note = row.get("note") or row["status"]
    own = training_seeds(row)
    if len(own) == 1 and not note.startswith("training seed"):
        note = f"training seed {own[0]}: {note}"
    return {**row, "training_seeds": seeds, "n_seeds": None, "note": note, "sources": files}


def merge_seed_rows(a: dict, b: dict) -> dict:
    """The row of one method over the training seeds of ``a`` and ``b`` (two rows of the
    same method, map and SNR with disjoint ``training_seeds``; see :func:`disjoint_seeds`).
    A failed or skipped row makes the merged row so, its note naming its seed. Paired gaps
    (``psnr_vs_best_*``) are left to be recomputed. Raises :class:`CryodiffError` for rows of
    a model loaded from ``--checkpoint`` (one model, not several seeds) or of another family
    or 3D test size."""
    where = f"{a['method']} on {a['map']} at SNR {a['snr']:g}"
    if any(CHECKPOINT_NOTE in (row.get("note") or "") for row in (a, b)):
        raise CryodiffError(f"{where}: a run's rows come from a model loaded with --checkpoint, "
                            f"so its training seeds are not separate models and cannot be "
                            f"merged ({', '.join(sources(a) + sources(b))})")
    for key in ("family", "n_test_3d"):
        if a.get(key) != b.get(key):
            raise CryodiffError(f"{where}: {key} {a.get(key)!r} in {', '.join(sources(a))} but "
                                f"{b.get(key)!r} in {', '.join(sources(b))}, so its training "
                                "seeds cannot be merged")
    first, second = sorted((a, b), key=lambda r: min(training_seeds(r)))
    seeds = training_seeds(first) + training_seeds(second)
    files = sources(first) + sources(second)
    for row in (first, second):
        if row["status"] != "ok":
            return _failed(row, seeds, files)
    n_first, n_second = len(training_seeds(first)), len(training_seeds(second))
    weight = n_first / (n_first + n_second)
    merged = dict(first)
    for key in MEAN_KEYS:
        merged[key] = _weighted(first.get(key), second.get(key), weight)
    images_a, images_b = first.get("psnr_per_image"), second.get("psnr_per_image")
    merged["psnr_per_image"] = (
        [weight * x + (1 - weight) * y for x, y in zip(images_a, images_b)]
        if images_a is not None and images_b is not None and len(images_a) == len(images_b)
        else None)
    psnrs = (first.get("seed_psnrs") or [None]) + (second.get("seed_psnrs") or [None])
    merged["seed_psnrs"] = None if None in psnrs else psnrs
    for key, sd_key in (("psnr", "psnr_seed_sd"), ("ssim", "ssim_seed_sd")):
        groups = [(row[key], row.get(sd_key), n)
                  for row, n in ((first, n_first), (second, n_second))]
        merged[sd_key] = (None if any(m is None for m, _, _ in groups)
                          else pooled_sd(groups))
    base = _base_note(first)
    notes = (first.get("note") or "") + (second.get("note") or "")
    differ = (f" (seed {seeds[0]}; other seeds differ)"
              if _base_note(second) != base or " other seeds differ)" in notes else "")
    on = sorted(set(devices(first) + devices(second)))
    merged |= {"training_seeds": seeds, "n_seeds": len(seeds),
               "device": " + ".join(on) if on else None, "sources": files,
               "psnr_vs_best_db": None, "psnr_vs_best_sem": None,
               "note": f"{base}{differ}; mean of {len(seeds)} training seeds {seeds}"}
    if first.get("fsc_0143_A") is not None:
        merged["note"] += (f"; 3D, half maps and pose search from training seed {seeds[0]}'s "
                           "images")
    return merged
