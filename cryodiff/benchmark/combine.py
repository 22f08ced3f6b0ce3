"""One reproduction table from several benchmark runs (one run per map and SNR, say).

A slow preset is run one condition at a time (``benchmarks/parallel_conditions.sh``, or one
condition per session on a CPU), so each run folder holds its own ``results.json``. This
module reads them all and lays the rows out as the paper's Table 1 does: one row per method,
one column per SNR, for each map — 2D quality (PSNR / SSIM), 3D resolution at known poses,
and 3D at searched poses (median pose error / FSC-0.143). 3D at known poses shows the
FSC-0.5 against the true map (the primary figure, which decides the winner) with FSC-0.143
beside it. Learnt rows trained with several seeds show their mean ± the SD across seeds, and
PSNR ties within that spread (:mod:`cryodiff.benchmark.ranking`). Runs that measured half
maps add a table of the half-map FSC-0.143 beside the FSC-0.5 against the truth; older
``results.json`` files without those keys combine as before.

A learnt method's rows from runs of different training seeds (one run per seed, say) merge
into one row over all the seeds (:mod:`cryodiff.benchmark.seed_merge`).

One table, one device: rows record the ``device`` they were measured on, and runs from
different devices are refused unless ``allow_mixed_devices`` (then every column names its
device). Files written before rows recorded a device combine unchecked, with a note.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from cryodiff.benchmark.ranking import (NEAR_RANDOM_DEG, SHOWN, best_row, full_2d_count,
                                        winners)
from cryodiff.benchmark.seed_merge import (devices as row_devices, disjoint_seeds,
                                           merge_seed_rows, sources)
from cryodiff.errors import CryodiffError

# Rows every benchmark run measures on its particles (the raw particles and the clean target):
# runs of one condition split by method each hold them.
SHARED_ROWS = ("noisy", "clean")
REQUIRED_KEYS = ("method", "map", "snr", "psnr", "ssim", "fsc_0143_A", "status")
NUMBER_KEYS = ("psnr", "ssim", "psnr_vs_best_db", "psnr_vs_best_sem", "fsc_0143_A",
               "fsc_0143_A_pose_search", "median_pose_error_deg", "n_test_2d", "n_test_3d",
               "fsc_05_A", "fsc_halfmap_0143_A", "halfmap_minus_truth_A",
               "fsc_halfmap_unmasked_0143_A", "halfmap_randomized_fsc", "n_seeds",
               "psnr_seed_sd", "ssim_seed_sd")


def results_file(path: str | os.PathLike) -> Path:
    """``path`` itself, or the ``results.json`` inside it when it is a run folder."""
    path = Path(path)
    return path / "results.json" if path.is_dir() else path


def _snr_key(snr: float) -> float:
    """SNRs equal to 6 significant digits are one column."""
    return float(f"{snr:.6g}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_row(row, index: int, path: Path) -> None:
    """One-line :class:`CryodiffError` for a row a benchmark cannot have written."""
    where = f"row {index}"
    if not isinstance(row, dict):
        raise CryodiffError(f"{where} is not an object", path=path)
    missing = [key for key in REQUIRED_KEYS if key not in row]
    if missing:
        raise CryodiffError(f"{where} lacks {', '.join(missing)}", path=path)
    for key in ("method", "map", "status"):
        if not isinstance(row[key], str):
            raise CryodiffError(f"{where}: {key} must be text, got {row[key]!r}", path=path)
    if not _is_number(row["snr"]) or not row["snr"] > 0:
        raise CryodiffError(f"{where}: snr must be a positive number, got {row['snr']!r}",
                            path=path)
    for key in NUMBER_KEYS:
        if row.get(key) is not None and not (_is_number(row[key]) and math.isfinite(row[key])):
            raise CryodiffError(f"{where}: {key} must be a finite number or null, got "
                                f"{row[key]!r}", path=path)
    per_image = row.get("psnr_per_image")
    if per_image is not None and not (isinstance(per_image, list) and all(
            _is_number(v) and math.isfinite(v) for v in per_image)):
        raise CryodiffError(f"{where}: psnr_per_image must be a list of finite numbers or "
                            f"null", path=path)
    if row.get("device") is not None and not isinstance(row["device"], str):
        raise CryodiffError(f"{where}: device must be text or null, got {row['device']!r}",
                            path=path)


def check_devices(rows: list[dict], allow_mixed_devices: bool = False) -> None:
    """Refuse rows measured on more than one device (one line naming the files of each),
    unless ``allow_mixed_devices``. Rows without a ``device`` (older files) are not checked."""
    files: dict[str, list[str]] = {}
    for row in rows:
        if row.get("device"):
            names = files.setdefault(row["device"], [])
            if row["source"] not in names:
                names.append(row["source"])
    if len(files) > 1 and not allow_mixed_devices:
        listed = "; ".join(f"{device} in {', '.join(names)}" for device, names in files.items())
        raise CryodiffError(f"runs on different devices do not make one table ({listed}); "
                            "combine runs of one device, or pass --allow-mixed-devices "
                            "(allow_mixed_devices=True) to lay them out with each column's "
                            "device named")


def load_rows(paths: list[str | os.PathLike],
              allow_mixed_devices: bool = False) -> list[dict]:
    """All rows of the given ``results.json`` files (or run folders), each tagged with its file.

    Raises :class:`CryodiffError` naming the file when it is missing, is not a benchmark's
    list of rows, or measures a (method, map, SNR) that an earlier file already measured;
    and naming the files of each device when the rows come from several devices (see
    :func:`check_devices`).
    """
    rows: list[dict] = []
    as_loaded: list[dict] = []  # every row's device and file, before seeds are merged
    seen: dict[tuple, int] = {}  # (method, map, SNR) -> its row's position in rows
    for given in paths:
        path = results_file(given)
        if not path.is_file():
            raise CryodiffError("no such results file (pass a run folder or its results.json)",
                                path=path)
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CryodiffError(f"not valid JSON ({error})", path=path) from None
        if not isinstance(loaded, list):
            raise CryodiffError("not a benchmark results.json (expected a list of rows)",
                                path=path)
        if not loaded:
            raise CryodiffError("holds no rows", path=path)
        for index, row in enumerate(loaded):
            _check_row(row, index, path)
            key = (row["method"], row["map"], _snr_key(row["snr"]))
            row = {**row, "source": str(path)}
            as_loaded.append({"device": row.get("device"), "source": row["source"]})
            if key in seen:
                rows[seen[key]] = _merged(rows[seen[key]], row, path)
                continue
            seen[key] = len(rows)
            rows.append(row)
    check_devices(as_loaded, allow_mixed_devices)
    pair_across_runs(rows)
    return rows


def _merged(earlier: dict, row: dict, path: Path) -> dict:
    """The one row to keep when two files hold the same (method, map, SNR): the measured one
    when the other was skipped (runs of one condition split by method, each skipping the
    others' methods); the first of two ``noisy``/``clean`` rows, which every run measures,
    when they agree (the same particles); one row over both runs' training seeds when a
    learnt method was trained under different seeds in each
    (:func:`~cryodiff.benchmark.seed_merge.merge_seed_rows`); else a one-line
    :class:`CryodiffError`."""
    where = f"{row['method']} on {row['map']} at SNR {row['snr']:g}"
    if row["status"] == "skipped":
        return earlier
    if earlier["status"] == "skipped":
        return row
    if row["method"] in SHARED_ROWS:
        for key in ("psnr", "fsc_0143_A", "n_test_2d", "n_test_3d", "psnr_per_image"):
            a, b = earlier.get(key), row.get(key)
            if key == "psnr_per_image" and (a is None or b is None):
                continue  # written before rows recorded it
            if not _agree(a, b):
                shown = "its per-image PSNR" if key == "psnr_per_image" else f"{key} {b} " \
                    f"against {a}"
                raise CryodiffError(f"{where} differs from {earlier['source']} ({shown}): not "
                                    f"the same particles", path=path)
        return earlier
    if disjoint_seeds(earlier, row):
        if "ok" == earlier["status"] == row["status"] and \
                earlier.get("n_test_2d") != row.get("n_test_2d"):
            raise CryodiffError(f"{where}: scored on {row.get('n_test_2d')} images here and "
                                f"{earlier.get('n_test_2d')} in {earlier['source']}, so its "
                                "training seeds cannot be merged", path=path)
        return merge_seed_rows(earlier, row)
    raise CryodiffError(f"{where} is also in {earlier['source']}", path=path)


def _agree(a, b, tolerance: float = 1e-3) -> bool:
    """Whether two values of a shared row agree: both None, numbers within ``tolerance``, or
    lists of the same length that agree element by element."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) \
            and all(_agree(x, y, tolerance) for x, y in zip(a, b))
    return abs(a - b) <= tolerance


def pair_across_runs(rows: list[dict]) -> None:
    """Recompute ``psnr_vs_best_db`` ± ``psnr_vs_best_sem`` (each row's PSNR minus the best
    denoiser's, image by image) for conditions whose rows come from several files, from their
    ``psnr_per_image``; rows without it then get None (they cannot be paired). The best row
    and the pairing are the benchmark's own (:func:`~cryodiff.benchmark.ranking.best_row`,
    :func:`~cryodiff.benchmark.evaluate.paired_difference`)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["map"], _snr_key(row["snr"])), []).append(row)
    for group in groups.values():
        if len({s for r in group for s in sources(r)}) < 2:
            continue
        for row in group:
            row["psnr_vs_best_db"] = row["psnr_vs_best_sem"] = None
        best = best_row(group, "psnr", denoisers_only=True)
        if best is None or not _per_image(best, best["n_test_2d"]):
            continue
        import torch

        from cryodiff.benchmark.evaluate import paired_difference

        reference = torch.tensor(best["psnr_per_image"], dtype=torch.float64)
        for row in group:
            if row["status"] == "ok" and _per_image(row, best["n_test_2d"]):
                row["psnr_vs_best_db"], row["psnr_vs_best_sem"] = paired_difference(
                    torch.tensor(row["psnr_per_image"], dtype=torch.float64), reference)


def _per_image(row: dict, n: int | None) -> bool:
    """Whether ``row`` has the PSNR of each of the ``n`` images (:func:`_check_row` has
    checked that it is a list of finite numbers)."""
    values = row.get("psnr_per_image")
    return values is not None and row.get("n_test_2d") == n and len(values) == n


def _cell(value, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def with_seed_sd(row: dict, key: str, digits: int) -> str:
    """``25.70 ± 0.12``: the mean over training seeds ± their sample SD when the row was
    trained with more than one seed, the plain value otherwise (``—`` when not measured)."""
    text = _cell(row.get(key), digits)
    if (row.get("n_seeds") or 1) > 1 and row.get(f"{key}_seed_sd") is not None:
        text += f" ± {row[f'{key}_seed_sd']:.{digits}f}"
    return text


def markdown_bold(text: str, on: bool) -> str:
    """``text`` in Markdown bold when ``on`` (a missing value, "—", stays plain)."""
    return f"**{text}**" if on and text != "—" else text


def map_tables(rows: list[dict], map_name: str) -> str:
    """Markdown for one map: 2D, 3D at known poses, 3D at searched poses, SNRs as columns."""
    mine = [r for r in rows if r["map"] == map_name]
    snrs = sorted({_snr_key(r["snr"]) for r in mine}, reverse=True)
    methods = list(dict.fromkeys(r["method"] for r in mine))
    by_key = {(r["method"], _snr_key(r["snr"])): r for r in mine}
    condition = {snr: [r for r in mine if _snr_key(r["snr"]) == snr] for snr in snrs}
    won = {snr: winners(condition[snr]) for snr in snrs}
    full = {snr: full_2d_count(condition[snr]) for snr in snrs}
    devices = {snr: sorted({d for r in condition[snr] for d in row_devices(r)})
               for snr in snrs}
    mixed = len({d for r in rows for d in row_devices(r)}) > 1

    def column(snr: float) -> str:
        named = ", ".join(devices[snr]) or "device not recorded"
        return f"SNR {snr:g} ({named})" if mixed else f"SNR {snr:g}"

    head = "| method | " + " | ".join(column(snr) for snr in snrs) + " |"
    rule = "|---|" + "---|" * len(snrs)

    def body(cell) -> list[str]:
        lines = []
        for method in methods:
            cells = [cell(by_key.get((method, snr)), snr) for snr in snrs]
            if any(c != "—" for c in cells):
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
        return lines

    def shown(row, key: str, snr: float) -> str:
        return markdown_bold(with_seed_sd(row, key, SHOWN[key][0]),
                     row["method"] in won[snr].get(key, ()))

    def quality(row, snr) -> str:
        if row is None or row["psnr"] is None:
            return "—"
        text = shown(row, "psnr", snr) + " / " + shown(row, "ssim", snr)
        if row.get("n_test_2d") is not None and row["n_test_2d"] != full[snr]:
            text += f" ({row['n_test_2d']} images)"
        return text

    def paired_gap(row, snr) -> str:
        if row is None or row.get("psnr_vs_best_db") is None:
            return "—"
        gap, sem = row["psnr_vs_best_db"], row.get("psnr_vs_best_sem")
        if not sem and abs(gap) < 1e-12:
            return "best"
        text = "0.00" if round(gap, 2) == 0 else f"{gap:+.2f}"  # never "-0.00"
        return text if sem is None else f"{text} ± {sem:.2f}"

    def known(row, snr) -> str:
        if row is None or (row.get("fsc_05_A") is None and row.get("fsc_0143_A") is None):
            return "—"
        return shown(row, "fsc_05_A", snr) + " / " + _cell(row.get("fsc_0143_A"), 1)

    def searched(row, snr) -> str:
        if row is None or row.get("median_pose_error_deg") is None:
            return "—"
        return (shown(row, "median_pose_error_deg", snr) + " / "
                + _cell(row.get("fsc_0143_A_pose_search"), 1))

    parts = [f"### {map_name}", "",
             "2D: PSNR (dB) / SSIM against the clean target; learnt rows trained with "
             "several seeds give the mean ± the SD across seeds. Bold: best of each column, "
             "or tied — in PSNR within the larger seed SD of the row and the best, in SSIM "
             "equal as printed. Rows scored on fewer images say how many and are not "
             "ranked.", "",
             head, rule, *body(quality), ""]
    gap_lines = body(paired_gap)
    if gap_lines:
        parts += ["PSNR of each row minus the best row's, paired image by image (dB ± the "
                  "standard error over images; learnt rows: per-image PSNR averaged over "
                  "their seeds).", "", head, rule, *gap_lines, ""]
    parts += ["3D at known poses: FSC-0.5 / FSC-0.143 against the true map (Å). FSC-0.5, the "
              "criterion for a map against the truth, is the primary figure: its best method "
              "is in bold (raw particles included; the clean row is the reference).", "",
              head, rule, *body(known)]
    def claimed(row, snr) -> str:
        if row is None or row.get("fsc_halfmap_0143_A") is None:
            return "—"
        limited = (row.get("halfmap_randomized_fsc") or 0) > 0.1
        return (_cell(row["fsc_halfmap_0143_A"], 1) + ("*" if limited else "") + " / "
                + _cell(row.get("fsc_05_A"), 1))

    claimed_lines = body(claimed)
    if claimed_lines:
        parts += ["", "3D half maps against the truth: gold-standard half-map FSC-0.143 "
                  "(mask-corrected; what a cryo-EM user reports) / FSC-0.5 of the full map "
                  "against the true map (Å). A first figure below the second means the half "
                  "maps agree on detail the map does not have; * marks a mask-limited "
                  "figure (phase-randomised FSC above 0.1 there: not to be trusted).", "",
                  head, rule,
                  *claimed_lines]
    searched_lines = body(searched)
    if searched_lines:
        parts += ["", "3D at searched poses: median pose error (°) / FSC-0.143 (Å). The "
                  f"lowest error is in bold unless every method is above {NEAR_RANDOM_DEG:g}°, "
                  "close to random (126° on average); there the FSC is reference bias.", "",
                  head, rule, *searched_lines]
    return "\n".join(parts)


def _device_notes(rows: list[dict]) -> list[str]:
    """Lines saying which device the rows were measured on: one device, several (each
    column names its own), and the files that record none."""
    devices = sorted({d for r in rows for d in row_devices(r)})
    unrecorded = sorted({s for r in rows if not r.get("device") for s in sources(r)})
    lines = []
    if len(devices) == 1:
        lines.append(f"Device: {devices[0]}.")
    elif devices:
        lines.append("**Mixed devices (" + ", ".join(devices) + "), combined on request: "
                     "timings and precision differ between columns, so this is not one table "
                     "under the protocol; each column names its device.**")
    if unrecorded:
        lines.append("No device recorded in " + ", ".join(f"`{s}`" for s in unrecorded)
                     + " (written before rows recorded one): combined without the "
                     "one-device check.")
    return [*lines, ""] if lines else []


def combined_markdown(rows: list[dict]) -> str:
    """The whole table: one section per map, in the order the maps first appear."""
    maps = list(dict.fromkeys(r["map"] for r in rows))
    files = sorted({s for r in rows for s in sources(r)})
    text = ["# Benchmark results, combined", "",
            "From: " + ", ".join(f"`{s}`" for s in files), "", *_device_notes(rows)]
    for map_name in maps:
        text += [map_tables(rows, map_name), ""]
    return "\n".join(text)
