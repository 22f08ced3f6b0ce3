"""The table of :mod:`x0ft_levers` runs: each lever beside the committed rows it must beat.

For every ``cpu_small_x0ft_levers/<condition>/*.json`` (written by ``x0ft_levers.py``; the
two files of the twentieth session's note script, which ran the same computation as
``x0ft_levers.py --from-step 3000`` and wrote ``sr3v-x0_1 (step 3000)``, ``x0ft 5000`` and
``x0ft 5000 + stage``, are read under those names) it writes PSNR (dB) / SSIM of the SR3
readout, the fine-tuned and the staged network, and the staged network's paired gaps (± SE
over images) to seed 0 of ``sr3v-x0ft-ssim_1`` (``cpu_small_cpu_x0ft_ssim/<condition>/
x0ft_rows.json``, the same training seed), to seed 0 of ``supervised-large-2x-ssim`` (the
H200 lease's run) and to its mean over seeds 0–2 where this CPU's seeds 1 and 2 exist
(``cpu_small_cpu_seeds``), and to seed 0 of ``supervised-large-direct-2x-ssim`` (this CPU,
``cpu_small_cpu_seeds/<condition>/sldirect2x_seed0``) where it was run. A file with the raw
particles' row must match the committed rows' raw particles image by image (to 10⁻³ dB).
Nothing is trained here.

``python benchmarks/x0ft_levers_table.py benchmarks/results/cpu_small_x0ft_levers/table.md``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from cryodiff.benchmark.evaluate import paired_difference
from x0ft_table import summary

RESULTS = Path(__file__).resolve().parent / "results"
LEVERS = RESULTS / "cpu_small_x0ft_levers"
CONDITIONS = {"phantom_0.1": "phantom 0.1", "phantom_0.05": "phantom 0.05",
              "phantom_0.01": "phantom 0.01", "ribosome70S_65_0.1": "ribosome 0.1",
              "ribosome70S_65_0.05": "ribosome 0.05", "ribosome70S_65_0.01": "ribosome 0.01"}
NOTE_SCRIPT = {"sr3v-x0_1 (step 3000)": "sr3v-x0_1", "x0ft 5000": "x0ft",
               "x0ft 5000 + stage": "x0ft-ssim"}
OURS, PEER = "sr3v-x0ft-ssim_1", "supervised-large-2x-ssim"
DIRECT = "supervised-large-direct-2x-ssim"  # the SR3-sized peer with a direct output


def lever_rows(path: Path) -> tuple[dict, dict[str, dict]]:
    """A lever file's settings and its rows under ``x0ft_levers.py``'s names."""
    data = json.loads(path.read_text())
    rows = {NOTE_SCRIPT.get(name, name): row for name, row in data["rows"].items()}
    settings = {"sr3_loss": data.get("sr3_loss", "l1") or "— (no SR3)",
                "sr3_steps": data.get("sr3_steps", data.get("sr3_step")),
                "finetune_steps": data["finetune_steps"],
                "readout_fraction": data.get("readout_fraction", 0.0),
                "training_seed": data.get("training_seed", 0)}
    return settings, rows


def steps_cell(settings: dict) -> str:
    """``SR3 + fine-tuning`` steps, with the readout share of a jointly trained network."""
    share = settings["readout_fraction"]
    return (f"{settings['sr3_steps']} + {settings['finetune_steps']}"
            + (f", readout share {share:g}" if share else ""))


def draws_cell(rows: dict) -> str:
    """PSNR (dB) of one 10-step DDPM draw and of the mean of four, where scored."""
    if "sr3v_10" not in rows:
        return "—"
    return f"{rows['sr3v_10']['psnr']:.2f} / {rows['sr3v_mean4_10']['psnr']:.2f}"


def reference_rows(folder: str) -> tuple[dict | None, dict, dict | None]:
    """Seed 0 of ``sr3v-x0ft-ssim_1`` (its file's rows; None where seed 0 was not run, the
    ribosome at 0.01) and of ``supervised-large-2x-ssim``,
    and the latter's row over every training seed measured (per-image PSNR averaged over the
    H200's seed 0 and this CPU's seeds 1 and 2), None where seeds 1 and 2 are not."""
    ours_file = RESULTS / "cpu_small_cpu_x0ft_ssim" / folder / "x0ft_rows.json"
    ours = json.loads(ours_file.read_text())["rows"] if ours_file.is_file() else None
    seed_files = [RESULTS / "cpu_small_lease_h200" / folder / "slarge2x" / "results.json"] + [
        RESULTS / "cpu_small_cpu_seeds" / folder / f"slarge2x_seed{s}" / "results.json"
        for s in (1, 2)]
    peers = [method_rows(path) for path in seed_files if path.is_file()]
    if len(peers) < len(seed_files):
        return ours, peers[0], None
    over_seeds = summary([rows[PEER] for rows in peers])["per_image"]
    return ours, peers[0], {"psnr_per_image": over_seeds.tolist()}


def direct_peer(folder: str) -> dict | None:
    """Seed 0 of ``supervised-large-direct-2x-ssim`` (this CPU), None where not measured."""
    path = RESULTS / "cpu_small_cpu_seeds" / folder / "sldirect2x_seed0" / "results.json"
    if not path.is_file():
        return None
    return method_rows(path)[DIRECT]


def method_rows(results: Path) -> dict[str, dict]:
    """A benchmark run's ``results.json`` rows by method."""
    return {row["method"]: row for row in json.loads(results.read_text())}


def gap(row: dict, other: dict) -> str:
    mean, sem = paired_difference(torch.tensor(row["psnr_per_image"]),
                                  torch.tensor(other["psnr_per_image"]))
    return f"{mean:+.3f} ± {sem:.3f}"


def gap_or_missing(row: dict, other: dict | None) -> str:
    """:func:`gap`, or ``"not measured"`` where the row to pair with does not exist."""
    return "not measured" if other is None else gap(row, other)


def check_pairing(path: Path, rows: dict, reference: dict) -> str:
    """``"yes"`` when the file's raw particles equal the ``reference`` rows' (the committed
    x0ft rows', or the U-Net's where those are missing); ``"no row"`` when it has none (the
    note script's files); a mismatch stops the table."""
    if "noisy" not in rows:
        return "no row"
    difference = (torch.tensor(rows["noisy"]["psnr_per_image"])
                  - torch.tensor(reference["noisy"]["psnr_per_image"])).abs().max()
    if difference > 1e-3:
        raise SystemExit(f"{path}: other raw particles than the committed rows it is paired with")
    return "yes"


def cell(row: dict) -> str:
    return f"{row['psnr']:.3f} / {row['ssim']:.4f}"


def readout_cell(settings: dict, rows: dict) -> str:
    """SR3's readout at the fine-tuning's start; none for ``--from-step 0`` (no SR3 trained)."""
    return "— (initial weights)" if settings["sr3_steps"] == 0 else cell(rows["sr3v-x0_1"])


def table() -> list[str]:
    lines = ["| condition | SR3 loss | SR3 steps + fine-tuning | SR3 readout | fine-tuned | "
             f"+ SSIM stage | − `{OURS}` (seed 0) | − `{PEER}` (seed 0) | − `{PEER}` (mean "
             f"of seeds 0–2) | − `{DIRECT}` (seed 0) | 10-step draw / mean of 4 (PSNR) | "
             "raw particles checked |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for folder, label in CONDITIONS.items():
        files = sorted((LEVERS / folder).glob("*.json"))
        if not files:
            continue
        ours, peer, peer_seeds = reference_rows(folder)
        direct = direct_peer(folder)

        ours_row = None if ours is None else ours[OURS]
        if ours is not None:
            lines.append(f"| {label} | l1 | 4000 + 4000 (`{OURS}`) | "
                         f"{cell(ours['sr3v-x0_1'])} | {cell(ours['sr3v-x0ft_1'])} | "
                         f"{cell(ours_row)} | 0 | {gap(ours_row, peer[PEER])} | "
                         f"{gap_or_missing(ours_row, peer_seeds)} | "
                         f"{gap_or_missing(ours_row, direct)} | — | yes |")
        levers = sorted((lever for lever in ((path, *lever_rows(path)) for path in files)
                         if lever[1]["training_seed"] == 0),  # other seeds: joint_table.py
                        key=lambda lever: (lever[1]["sr3_steps"], lever[1]["sr3_loss"],
                                           lever[1]["readout_fraction"]))
        for path, settings, rows in levers:
            staged = rows["x0ft-ssim"]
            lines.append(
                f"| {label} | {settings['sr3_loss']} | {steps_cell(settings)} "
                f"([{path.name}]({folder}/{path.name})) | "
                f"{readout_cell(settings, rows)} | {cell(rows['x0ft'])} | {cell(staged)} | "
                f"{gap_or_missing(staged, ours_row)} | {gap(staged, peer[PEER])} | "
                f"{gap_or_missing(staged, peer_seeds)} | {gap_or_missing(staged, direct)} | "
                f"{draws_cell(rows)} | "
                f"{check_pairing(path, rows, ours or peer)} |")
    return lines


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else LEVERS / "table.md"
    header = ["# Levers on `sr3v-x0ft-ssim_1` within its budget (`cpu-small`, training seed 0)",
              "", f"Written by `python benchmarks/x0ft_levers_table.py {out}` from the "
              "`x0ft_levers.py` files beside it. PSNR (dB) / SSIM, 128 test particles; gaps "
              "of the staged network paired image by image (± SE over images), against the "
              "three-seed mean of the SR3-sized U-Net by its per-image PSNR averaged over the "
              "seeds (seed 0 from an H200, seeds 1 and 2 from this CPU), and against its "
              "direct-output twin's seed 0 (this CPU) where measured. A 0 + 8000 row "
              "fine-tunes SR3's initial weights (`--from-step 0`): no diffusion training. A row "
              "with a readout share trains one network for all 8,000 steps, that share of every "
              "batch on the readout and the rest on SR3's objective (`--readout-fraction`), "
              "without fine-tuning; its draws are scored too (its files of training seeds 1 "
              "and 2 are ranked by `benchmarks/joint_table.py`, not here). "
              "Every row "
              "trains 8,000 steps (SR3 + fine-tuning) and the 400-step SSIM stage; one "
              "training seed, so a gap within the rows' seed SD (≤ 0.021 dB, "
              "docs/benchmarks.md section 10) says nothing.", ""]
    out.write_text("\n".join(header + table()) + "\n")
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
