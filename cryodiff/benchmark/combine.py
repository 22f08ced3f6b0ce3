"""One reproduction table from several benchmark runs (one run per map and SNR, say).

A slow preset is run one condition at a time (``benchmarks/parallel_conditions.sh``, or one
condition per session on a CPU), so each run folder holds its own ``results.json``. This
module reads them all and lays the rows out as the paper's Table 1 does: one row per method,
one column per SNR, for each map — 2D quality (PSNR / SSIM), 3D resolution at known poses,
and 3D at searched poses (median pose error / FSC-0.143).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryodiff.errors import CryodiffError

REQUIRED_KEYS = ("method", "map", "snr", "psnr", "ssim", "fsc_0143_A", "status")


def results_file(path: str | os.PathLike) -> Path:
    """``path`` itself, or the ``results.json`` inside it when it is a run folder."""
    path = Path(path)
    return path / "results.json" if path.is_dir() else path


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
        if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
            raise CryodiffError("not a benchmark results.json (expected a list of rows)",
                                path=path)
        for row in loaded:
            missing = [key for key in REQUIRED_KEYS if key not in row]
            if missing:
                raise CryodiffError(f"a row lacks {', '.join(missing)}", path=path)
            key = (row["method"], row["map"], float(row["snr"]))
            if key in seen:
                raise CryodiffError(f"{row['method']} on {row['map']} at SNR {row['snr']:g} is "
                                    f"also in {seen[key]}", path=path)
            seen[key] = path
            rows.append({**row, "source": str(path)})
    return rows


def _cell(value, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _comparable_2d(rows: list[dict]) -> set[int]:
    """Ids of the rows scored on the condition's full 2D test set (others used fewer images)."""
    full = max((r["n_test_2d"] or 0 for r in rows if r["psnr"] is not None), default=0)
    return {id(r) for r in rows if r["psnr"] is not None and (r.get("n_test_2d") or 0) == full}


def _winners(rows: list[dict]) -> dict[tuple[str, str], str]:
    """(key, method) of the best scored method per metric, reference rows excluded."""
    measured = [r for r in rows if r["status"] == "ok"]
    full_2d = _comparable_2d(measured)
    best: dict[tuple[str, str], str] = {}
    for key, pick, pool in (
            ("psnr", max, [r for r in measured if id(r) in full_2d and r["method"] != "noisy"]),
            ("ssim", max, [r for r in measured if id(r) in full_2d and r["method"] != "noisy"]),
            ("fsc_0143_A", min, measured),
            ("median_pose_error_deg", min, measured)):
        scored = [r for r in pool if r.get(key) is not None]
        if scored:
            best[key] = pick(scored, key=lambda r: r[key])["method"]
    return best


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on and text != "—" else text


def map_tables(rows: list[dict], map_name: str) -> str:
    """Markdown for one map: 2D, 3D at known poses, 3D at searched poses, SNRs as columns."""
    mine = [r for r in rows if r["map"] == map_name]
    snrs = sorted({float(r["snr"]) for r in mine}, reverse=True)
    methods = list(dict.fromkeys(r["method"] for r in mine))
    by_key = {(r["method"], float(r["snr"])): r for r in mine}
    winners = {snr: _winners([r for r in mine if float(r["snr"]) == snr]) for snr in snrs}
    comparable = {snr: _comparable_2d([r for r in mine if float(r["snr"]) == snr])
                  for snr in snrs}
    head = "| method | " + " | ".join(f"SNR {snr:g}" for snr in snrs) + " |"
    rule = "|---|" + "---|" * len(snrs)

    def body(cell) -> list[str]:
        lines = []
        for method in methods:
            cells = [cell(by_key.get((method, snr)), snr) for snr in snrs]
            if any(c != "—" for c in cells):
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
        return lines

    def quality(row, snr) -> str:
        if row is None or row["psnr"] is None:
            return "—"
        won = winners[snr]
        text = (_bold(_cell(row["psnr"], 2), won.get("psnr") == row["method"]) + " / "
                + _bold(_cell(row["ssim"], 3), won.get("ssim") == row["method"]))
        if id(row) not in comparable[snr]:
            text += f" ({row['n_test_2d']} images)"
        return text

    def known(row, snr) -> str:
        if row is None:
            return "—"
        return _bold(_cell(row["fsc_0143_A"], 1),
                     winners[snr].get("fsc_0143_A") == row["method"])

    def searched(row, snr) -> str:
        if row is None or row.get("median_pose_error_deg") is None:
            return "—"
        return (_bold(_cell(row["median_pose_error_deg"], 1),
                      winners[snr].get("median_pose_error_deg") == row["method"])
                + " / " + _cell(row.get("fsc_0143_A_pose_search"), 1))

    parts = [f"### {map_name}", "",
             "2D: PSNR (dB) / SSIM against the clean target (best of each column in bold; "
             "rows scored on fewer images say how many and are not ranked).", "",
             head, rule, *body(quality), "",
             "3D at known poses: FSC-0.143 against the true map (Å; best method in bold, "
             "raw particles included; the clean row is the reference).", "", head, rule, *body(known)]
    searched_lines = body(searched)
    if searched_lines:
        parts += ["", "3D at searched poses: median pose error (°; lowest in bold, a random "
                  "orientation is 126° off on average) / FSC-0.143 (Å).", "", head, rule, *searched_lines]
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
