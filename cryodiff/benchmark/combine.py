"""One reproduction table from several benchmark runs (one run per map and SNR, say).

A slow preset is run one condition at a time (``benchmarks/parallel_conditions.sh``, or one
condition per session on a CPU), so each run folder holds its own ``results.json``. This
module reads them all and lays the rows out as the paper's Table 1 does: one row per method,
one column per SNR, for each map — 2D quality (PSNR / SSIM), 3D resolution at known poses,
and 3D at searched poses (median pose error / FSC-0.143). Runs that measured half maps add
a table of the half-map FSC-0.143 beside the FSC-0.5 against the truth; older
``results.json`` files without those keys combine as before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryodiff.errors import CryodiffError

REQUIRED_KEYS = ("method", "map", "snr", "psnr", "ssim", "fsc_0143_A", "status")
NUMBER_KEYS = ("psnr", "ssim", "fsc_0143_A", "fsc_0143_A_pose_search", "median_pose_error_deg",
               "n_test_2d", "fsc_05_A", "fsc_halfmap_0143_A", "halfmap_minus_truth_A",
               "fsc_halfmap_unmasked_0143_A", "halfmap_randomized_fsc")
# A median pose error above this (degrees) is close to random (126° on average): not a winner.
NEAR_RANDOM_DEG = 90.0


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
        if row.get(key) is not None and not _is_number(row[key]):
            raise CryodiffError(f"{where}: {key} must be a number or null, got {row[key]!r}",
                                path=path)


def load_rows(paths: list[str | os.PathLike]) -> list[dict]:
    """All rows of the given ``results.json`` files (or run folders), each tagged with its file.

    Raises :class:`CryodiffError` naming the file when it is missing, is not a benchmark's
    list of rows, or measures a (method, map, SNR) that an earlier file already measured.
    """
    rows: list[dict] = []
    seen: dict[tuple, Path] = {}
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
            if key in seen:
                raise CryodiffError(f"{row['method']} on {row['map']} at SNR {row['snr']:g} is "
                                    f"also in {seen[key]}", path=path)
            seen[key] = path
            rows.append({**row, "source": str(path)})
    return rows


def _cell(value, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _full_2d_count(rows: list[dict]) -> int | None:
    """Test-set size of the condition's 2D scores: the most images any measured row used."""
    return max((r["n_test_2d"] for r in rows if r["status"] == "ok" and r["psnr"] is not None
                and r.get("n_test_2d") is not None), default=None)


def _ranked_2d(row: dict, full: int | None) -> bool:
    return row["status"] == "ok" and row["psnr"] is not None and row["method"] != "noisy" \
        and row.get("n_test_2d") == full


# metric -> (digits shown, whether larger is better)
SHOWN = {"psnr": (2, True), "ssim": (3, True), "fsc_0143_A": (1, False),
         "median_pose_error_deg": (1, False)}


def winners(rows: list[dict]) -> dict[str, set[str]]:
    """The best methods of one condition per metric (all of them when tied as shown).

    PSNR and SSIM rank the denoisers scored on the full 2D test set; 3D at known poses ranks
    every measured method, the raw particles included (the clean row is the reference); the
    pose error does too, but names no winner when every method is near random.
    """
    full = _full_2d_count(rows)
    measured = [r for r in rows if r["status"] == "ok"]
    best: dict[str, set[str]] = {}
    for key, (digits, larger) in SHOWN.items():
        pool = [r for r in measured if r.get(key) is not None
                and (key not in ("psnr", "ssim") or _ranked_2d(r, full))]
        if not pool:
            continue
        shown = {r["method"]: round(r[key], digits) for r in pool}
        top = max(shown.values()) if larger else min(shown.values())
        if key == "median_pose_error_deg" and top > NEAR_RANDOM_DEG:
            continue
        best[key] = {method for method, value in shown.items() if value == top}
    return best


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on and text != "—" else text


def map_tables(rows: list[dict], map_name: str) -> str:
    """Markdown for one map: 2D, 3D at known poses, 3D at searched poses, SNRs as columns."""
    mine = [r for r in rows if r["map"] == map_name]
    snrs = sorted({_snr_key(r["snr"]) for r in mine}, reverse=True)
    methods = list(dict.fromkeys(r["method"] for r in mine))
    by_key = {(r["method"], _snr_key(r["snr"])): r for r in mine}
    condition = {snr: [r for r in mine if _snr_key(r["snr"]) == snr] for snr in snrs}
    won = {snr: winners(condition[snr]) for snr in snrs}
    full = {snr: _full_2d_count(condition[snr]) for snr in snrs}
    head = "| method | " + " | ".join(f"SNR {snr:g}" for snr in snrs) + " |"
    rule = "|---|" + "---|" * len(snrs)

    def body(cell) -> list[str]:
        lines = []
        for method in methods:
            cells = [cell(by_key.get((method, snr)), snr) for snr in snrs]
            if any(c != "—" for c in cells):
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
        return lines

    def shown(row, key: str, snr: float) -> str:
        return _bold(_cell(row.get(key), SHOWN[key][0]), row["method"] in won[snr].get(key, ()))

    def quality(row, snr) -> str:
        if row is None or row["psnr"] is None:
            return "—"
        text = shown(row, "psnr", snr) + " / " + shown(row, "ssim", snr)
        if row.get("n_test_2d") is not None and row["n_test_2d"] != full[snr]:
            text += f" ({row['n_test_2d']} images)"
        return text

    def known(row, snr) -> str:
        return "—" if row is None else shown(row, "fsc_0143_A", snr)

    def searched(row, snr) -> str:
        if row is None or row.get("median_pose_error_deg") is None:
            return "—"
        return (shown(row, "median_pose_error_deg", snr) + " / "
                + _cell(row.get("fsc_0143_A_pose_search"), 1))

    parts = [f"### {map_name}", "",
             "2D: PSNR (dB) / SSIM against the clean target (best of each column in bold; "
             "rows scored on fewer images say how many and are not ranked).", "",
             head, rule, *body(quality), "",
             "3D at known poses: FSC-0.143 against the true map (Å; best method in bold, "
             "raw particles included; the clean row is the reference).", "", head, rule,
             *body(known)]
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


def combined_markdown(rows: list[dict]) -> str:
    """The whole table: one section per map, in the order the maps first appear."""
    maps = list(dict.fromkeys(r["map"] for r in rows))
    sources = sorted({r["source"] for r in rows})
    text = ["# Benchmark results, combined", "",
            "From: " + ", ".join(f"`{s}`" for s in sources), ""]
    for map_name in maps:
        text += [map_tables(rows, map_name), ""]
    return "\n".join(text)
