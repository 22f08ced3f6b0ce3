"""The ``cpu-small`` table of ``sr3v-x0ft_1`` (or of ``sr3v-x0ft-ssim_1``) against every row
measured in its six conditions.

Reads the one-pass rows written by :mod:`x0ft_rows` (``cpu_small_cpu_x0ft/<condition>/``, or
the folder given, one file per training seed) and the committed benchmark runs of the same
conditions (their ``results.json``), pairs them image by image (the raw particles' per-image
PSNR must agree, so the rows are of the same 128 particles) and writes one Markdown table:
PSNR (dB) / SSIM, the mean ± SD over training seeds where a row has several, and the paired
gaps of ``sr3v-x0ft_1`` (± SE over images, per-image PSNR averaged over seeds), against every
row and against the peers' (the rows not cryodiff's own, ``sr3…``). Rows scored on fewer
images are not ranked. Nothing is trained here.

``python benchmarks/x0ft_table.py benchmarks/results/cpu_small_cpu_x0ft/table.md``;
``python benchmarks/x0ft_table.py benchmarks/results/cpu_small_cpu_x0ft_ssim/table.md
sr3v-x0ft-ssim_1 cpu_small_cpu_x0ft_ssim`` ranks the SSIM stage's row instead (its files
also hold ``sr3v-x0ft_1``, which is then ranked among the other rows, with the paired SSIM
gap between the two: both are in the same file, per image).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

import torch

from cryodiff.benchmark.evaluate import paired_difference

RESULTS = Path(__file__).resolve().parent / "results"
H100, H200, X0FT = "cpu_small_lease_h100", "cpu_small_lease_h200", "cpu_small_cpu_x0ft"
SEEDS = "cpu_small_cpu_seeds/ribosome70S_65_0.01"
SR3_SIZED = "slarge2x"
LARGE = "supervised-large-2x-ssim"  # the SR3-sized peer given the same SSIM stage


def _local_or(local: str, other: str) -> str:
    """``local`` (a run folder beside the x0ft rows) when it holds a ``results.json``."""
    return local if (RESULTS / local / "results.json").is_file() else other


def lease_condition(rows_folder: str, folder: str, supervised: str = "sup2x"
                    ) -> tuple[list[str], list[str]]:
    """One seed-0 condition: its x0ft rows (with those of training seeds 1 and 2, where
    ``x0ft_rows_seed<S>.json`` files are beside them) and the lease runs' folders
    (``supervised``: the folder of its ``supervised-2x`` run; a ``sup2x_cpu`` run beside the
    x0ft rows, of ``supervised-2x`` and ``supervised-2x-ssim`` on this CPU, takes its place)."""
    sup = _local_or(f"{rows_folder}/{folder}/sup2x_cpu", f"{H100}/{folder}/{supervised}")
    seed_files = [f"{rows_folder}/{folder}/x0ft_rows_seed{s}.json" for s in (1, 2)]
    return ([f"{rows_folder}/{folder}/x0ft_rows.json"]
            + [name for name in seed_files if (RESULTS / name).is_file()],
            [sup] + [f"{H100}/{folder}/{r}" for r in ("sr3", "peers")]
            + [f"{H200}/{folder}/sr3v"] + sr3_sized_peer(folder))


def sr3_sized_peer(folder: str) -> list[str]:
    """The runs of ``supervised-large-2x`` and its SSIM stage (SR3's backbone, as many steps as
    the x0ft rows) made for the condition: seed 0 an H200 lease's, seeds 1 and 2 this CPU's."""
    runs = [f"{H200}/{folder}/{SR3_SIZED}"] + [
        f"cpu_small_cpu_seeds/{folder}/{SR3_SIZED}_seed{s}" for s in (1, 2)]
    return [run for run in runs if (RESULTS / run / "results.json").is_file()]


def conditions(rows_folder: str = X0FT) -> dict[str, tuple[list[str], list[str]]]:
    """Column → (x0ft_rows files, results.json folders), paths under RESULTS."""
    return {
        "phantom 0.1": lease_condition(rows_folder, "phantom_0.1", "sup2x_cpu"),
        "phantom 0.05": lease_condition(rows_folder, "phantom_0.05"),
        "phantom 0.01": lease_condition(rows_folder, "phantom_0.01"),
        "ribosome 0.1": lease_condition(rows_folder, "ribosome70S_65_0.1", "sup2x_cpu"),
        "ribosome 0.05": lease_condition(rows_folder, "ribosome70S_65_0.05"),
        "ribosome 0.01": (
            [f"{rows_folder}/ribosome70S_65_0.01/x0ft_rows_seed{s}.json" for s in (1, 2)],
            [_local_or(f"{rows_folder}/ribosome70S_65_0.01/sup2x_cpu_seed{s}",
                       f"{SEEDS}/sup2x_seed{s}") for s in (1, 2)]
            + [f"{SEEDS}/sr3v_seed{s}" for s in (1, 2)]
            + [f"{H100}/ribosome70S_65_0.01/{r}" for r in ("sup2x", "sr3", "peers")]
            + [f"{H200}/ribosome70S_65_0.01/sr3v"]  # seed 0 of sup2x and sr3v
            + sr3_sized_peer("ribosome70S_65_0.01")),
    }
SECTION_4 = {"phantom 0.1": "cpu_small_phantom_snr0.1_h100_rerun",  # the pre-protocol runs: no
             "phantom 0.05": "cpu_small_phantom_snr0.05_h100",  # per-image PSNR, so unpaired
             "phantom 0.01": "cpu_small_phantom_snr0.01_cpu",
             "ribosome 0.1": "cpu_small_ribosome_snr0.1_cpu",
             "ribosome 0.05": "cpu_small_ribosome_snr0.05_h100",
             "ribosome 0.01": "cpu_small_ribosome_snr0.01_h100"}
ONE_PASS = "sr3v-x0_1"
OWN_ONE_PASS = "sr3v-x0_1 of the fine-tuned SR3"


def sr3_device(name: str, x0ft: dict) -> str:
    """Where the v SR3 under an x0ft file's rows was trained: when the training record of a
    seed trained in a GPU lease and fine-tuned here (``sr3v_h200_seed<S>/h200.log``) lies
    beside the file, the device its training line names (``cryodiff: training on cuda
    (NVIDIA H200)``, which names the GPU), else the file's ``sr3_trained_on``, else this CPU
    (the file was written before it named the device)."""
    seed = x0ft.get("training_seed", 0)
    record = (RESULTS / name).parent / f"sr3v_h200_seed{seed}" / "h200.log"
    if not record.is_file():
        return x0ft.get("sr3_trained_on", "cpu")
    trained = re.search(r"training on (.+)", record.read_text())
    if trained is None:
        raise SystemExit(f"{record}: no 'training on <device>' line")
    return trained.group(1).strip()


def load_rows(x0ft_files: list[str], folders: list[str], ours: str) -> dict[str, list[dict]]:
    """Method → its measured rows (one per training seed), each with ``psnr``, ``ssim``,
    ``psnr_per_image`` and ``device``. The x0ft files' ``sr3v-x0_1`` (the readout of the very
    SR3 that was fine-tuned) is kept apart from the runs' own. Every run's raw particles must
    equal the x0ft files' image by image (to 10⁻³ dB), so that all rows pair."""
    rows: dict[str, list[dict]] = {}
    for name in x0ft_files:
        x0ft = json.loads((RESULTS / name).read_text())
        for method, row in x0ft["rows"].items():
            method = {"noisy": "noisy", ONE_PASS: OWN_ONE_PASS}.get(method, method)
            rows.setdefault(method, []).append(dict(row, device="cpu",
                                                    sr3_device=sr3_device(name, x0ft)))
    reference = torch.tensor(rows["noisy"][0]["psnr_per_image"])
    for folder in folders:
        for row in json.loads((RESULTS / folder / "results.json").read_text()):
            if row["method"] == "noisy":
                if (torch.tensor(row["psnr_per_image"]) - reference).abs().max() > 1e-3:
                    raise SystemExit(f"{folder}: other raw particles than the x0ft run's")
            elif row.get("status", "ok") == "ok" and row.get("psnr") is not None:
                if not row.get("psnr_per_image"):
                    raise SystemExit(f"{folder}: row {row['method']} has no per-image PSNR")
                if row["method"] == ours:
                    raise SystemExit(f"{folder}: holds {ours} itself; list it as an x0ft file")
                rows.setdefault(row["method"], []).append(row)
    return rows


def summary(seed_rows: list[dict]) -> dict:
    """Mean PSNR/SSIM over seeds, their seed SDs, and the seed-averaged per-image PSNR (and
    SSIM, where every seed's row has it)."""
    psnrs, ssims = [r["psnr"] for r in seed_rows], [r["ssim"] for r in seed_rows]
    per_image = torch.tensor([r["psnr_per_image"] for r in seed_rows]).double().mean(0)
    ssim_per_image = (torch.tensor([r["ssim_per_image"] for r in seed_rows]).double().mean(0)
                      if all("ssim_per_image" in r for r in seed_rows) else None)
    sd = statistics.stdev(psnrs) if len(psnrs) > 1 else None
    return {"psnr": statistics.fmean(psnrs), "ssim": statistics.fmean(ssims), "psnr_sd": sd,
            "n_seeds": len(psnrs), "per_image": per_image, "ssim_per_image": ssim_per_image,
            "devices": sorted({str(r.get("device", "?")) for r in seed_rows}),
            "sr3_devices": sorted({r["sr3_device"] for r in seed_rows if "sr3_device" in r})}


def cell(row: dict, digits: int = 2) -> str:
    """PSNR (dB) [± seed SD] to ``digits`` decimals / SSIM to one more."""
    spread = f" ± {row['psnr_sd']:.{digits}f}" if row["psnr_sd"] is not None else ""
    return f"{row['psnr']:.{digits}f}{spread} / {row['ssim']:.{digits + 1}f}"


def seeds(row: dict) -> str:
    return "1 seed" if row["n_seeds"] == 1 else f"{row['n_seeds']} seeds"


def gap(row: dict, other: dict, key: str = "per_image", digits: int = 2) -> str:
    mean, sem = paired_difference(row[key], other[key])
    return f"{mean:+.{digits}f} ± {sem:.{digits}f}"


def section_4_rows(folder: str, noisy_psnr: float) -> dict[str, dict]:
    """The pre-protocol run's rows scored on all 128 particles (PSNR and SSIM only), after
    checking that its raw particles are the same as ours (mean PSNR to 10⁻³ dB)."""
    rows = {r["method"]: r for r in json.loads((RESULTS / folder / "results.json").read_text())
            if r.get("psnr") is not None and r.get("n_test_2d", 128) == 128}
    if abs(rows.pop("noisy")["psnr"] - noisy_psnr) > 1e-3:
        raise SystemExit(f"{folder}: other raw particles than the x0ft run's")
    rows.pop("clean", None)
    return {f"{m} (§4)": {"psnr": r["psnr"], "ssim": r["ssim"]} for m, r in rows.items()}


def condition_column(name: str, x0ft_files: list[str], folders: list[str],
                     ours_name: str) -> dict[str, str]:
    rows = {m: summary(r) for m, r in load_rows(x0ft_files, folders, ours_name).items()}
    noisy, own = rows.pop("noisy"), rows.pop(OWN_ONE_PASS)
    ours, n = rows.pop(ours_name), len(noisy["per_image"])
    rows.pop("sr3v-x0ft-ssim_1", None)  # an sr3v-x0ft_1 table ranks it in its own table
    ranked = {m: r for m, r in rows.items() if len(r["per_image"]) == n}
    older = section_4_rows(SECTION_4[name], noisy["psnr"])
    best_older = max(older, key=lambda m: older[m]["psnr"])
    best_older_ssim = max(older, key=lambda m: older[m]["ssim"])
    best_psnr = max(ranked, key=lambda m: ranked[m]["psnr"])
    best_ssim = max(ranked, key=lambda m: ranked[m]["ssim"])
    sup = rows["supervised-2x"]
    tied = ours["psnr"] >= ranked[best_psnr]["psnr"] - max(
        ours["psnr_sd"] or 0.0, ranked[best_psnr]["psnr_sd"] or 0.0)
    paired_ssim = {  # rows of the same x0ft files, which store per-image SSIM
        f"`{ours_name}` − {label}, SSIM (paired)": gap(ours, other, "ssim_per_image", 3)
        for label, other in (("`sr3v-x0ft_1`", rows.get("sr3v-x0ft_1")),
                             (f"`{ONE_PASS}` of the same SR3", own))
        if other is not None and other["ssim_per_image"] is not None
        and ours["ssim_per_image"] is not None}
    peers = {m: r for m, r in ranked.items() if not m.startswith("sr3")}  # not cryodiff's
    peer_psnr = max(peers, key=lambda m: peers[m]["psnr"])
    peer_ssim = max(peers, key=lambda m: peers[m]["ssim"])
    large = rows.get(LARGE)

    def with_devices(row: dict | None) -> str:
        return ("not measured" if row is None
                else f"{cell(row)} ({', '.join(row['devices'])}, {seeds(row)})")

    return {
        "`supervised-2x`": with_devices(sup),
        f"`{LARGE}` (SR3's size)": with_devices(large),
        "best other row, PSNR": f"`{best_psnr}` {cell(ranked[best_psnr])} "
        f"({seeds(ranked[best_psnr])})",
        "best other row, SSIM": f"`{best_ssim}` {cell(ranked[best_ssim])}",
        "best peer row (not cryodiff's), PSNR; SSIM": f"`{peer_psnr}` "
        f"{cell(peers[peer_psnr])}; `{peer_ssim}` {cell(peers[peer_ssim])}",
        f"`{ONE_PASS}` (the runs' SR3)": f"{cell(rows[ONE_PASS])} "
        f"({', '.join(rows[ONE_PASS]['devices'])}, {seeds(rows[ONE_PASS])})",
        f"`{ONE_PASS}` of the fine-tuned SR3 (cpu)": cell(own),
        f"**`{ours_name}`** (cpu)": f"{cell(ours)} ({seeds(ours)}; SR3 trained on "
        f"{', '.join(ours['sr3_devices'])})",
        f"`{ours_name}` − `supervised-2x`": gap(ours, sup),
        f"`{ours_name}` − `{LARGE}`": "not measured" if large is None else gap(ours, large),
        f"`{ours_name}` − best other PSNR row": gap(ours, ranked[best_psnr]),
        f"`{ours_name}` − best peer PSNR row": gap(ours, peers[peer_psnr]),
        f"`{ours_name}` − `{ONE_PASS}` of the same SR3": gap(ours, own),
        **paired_ssim,
        "best pre-protocol row (§4), PSNR; SSIM": (
            f"`{best_older}` {older[best_older]['psnr']:.2f}; "
            f"`{best_older_ssim}` {older[best_older_ssim]['ssim']:.3f}"),
        "best or tied PSNR / best SSIM": ("yes" if tied and ours["psnr"] > older[best_older][
            "psnr"] else "no") + " / " + ("yes" if ours["ssim"] > max(
                ranked[best_ssim]["ssim"], older[best_older_ssim]["ssim"]) else "no"),
        "best in PSNR / SSIM among the peers (not cryodiff's rows) and §4": (
            "yes" if ours["psnr"] > max(peers[peer_psnr]["psnr"], older[best_older]["psnr"])
            else "no") + " / " + ("yes" if ours["ssim"] > max(
                peers[peer_ssim]["ssim"], older[best_older_ssim]["ssim"]) else "no"),
        "rows compared (paired + §4)": f"{len(ranked)} + {len(older)}",
    }


def main(argv: list[str]) -> int:
    ours = argv[1] if len(argv) > 1 else "sr3v-x0ft_1"
    table = conditions(argv[2] if len(argv) > 2 else X0FT)
    columns = {name: condition_column(name, *spec, ours) for name, spec in table.items()
               if all((RESULTS / f).is_file() for f in spec[0])}
    if not columns:
        raise SystemExit("no condition has its x0ft rows yet")
    lines = [f"# `{ours}` at `cpu-small` against every row measured there", "",
             f"Written by `python benchmarks/x0ft_table.py {' '.join(argv)}` from the files it "
             "names (`conditions`). PSNR (dB) [± SD over training seeds] / SSIM, 128 test "
             "particles; gaps paired image by image (± SE over images). The rows of the x0ft "
             "files (`sr3v-x0_1` of the fine-tuned SR3, `sr3v-x0ft_1`, `sr3v-x0ft-ssim_1`) "
             "were computed on this CPU (fp32), on v SR3s trained on the device their row "
             "names (a GPU's in bf16); the other rows come from the runs "
             "named, on the device each says. Tied: within the larger seed SD of the two "
             "rows (none with one seed); a row trained with several seeds pairs by its per-image "
             "PSNR averaged over them. The (§4) rows are those of the pre-protocol runs of "
             "docs/benchmarks.md section 4 (the same particles, no per-image PSNR stored, so "
             "unpaired and with no tie allowance). Rows scored on fewer images (BM3D, 250 "
             "steps) are not ranked.", ""]
    write_table(Path(argv[0]), lines, columns,
                [name for name in table if name not in columns], "Not measured")
    return 0


def write_table(out: Path, header: list[str], columns: dict[str, dict[str, str]],
                missing: list[str], missing_label: str) -> None:
    """``header``, then one Markdown column per condition of ``columns`` (each a row key →
    cell dict, the same keys in each), then ``missing_label: …`` for the conditions without
    one; written to ``out`` and printed."""
    keys = list(next(iter(columns.values())))
    lines = header + ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {key} | " + " | ".join(c[key] for c in columns.values()) + " |"
              for key in keys]
    if missing:
        lines += ["", f"{missing_label}: " + ", ".join(missing) + "."]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
