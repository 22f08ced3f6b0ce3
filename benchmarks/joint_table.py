"""Issue 16's verdict for ``sr3v-joint-ssim_1`` at ``cpu-small``: against every row measured.

``sr3v-joint-ssim_1`` (``cryodiff benchmark --only sr3-joint``; :mod:`cryodiff.benchmark.
sr3_joint`) is the staged readout of one v-network trained with readout share 0.9. Its rows
here are those of ``x0ft_levers.py --sr3-loss l2 --readout-fraction 0.9`` (the same network
and stage, bit for bit in configuration: ``cpu_small_x0ft_levers/<condition>/
joint_share0.9_l2.json`` for training seed 0, ``joint_share0.9_l2_seed<S>.json`` for seed S),
read under the benchmark's names (``x0ft`` → ``sr3v-joint_1``, ``x0ft-ssim`` →
``sr3v-joint-ssim_1``). Every other row comes from the files :mod:`x0ft_table` reads for
``sr3v-x0ft-ssim_1`` (its x0ft files, every committed benchmark run of the condition, the
pre-protocol runs of section 4), paired image by image after checking the raw particles.

Per condition: the row (PSNR mean ± SD over training seeds / SSIM), the best other row and
the best peer (not cryodiff's own ``sr3…`` rows) in PSNR and in SSIM, the paired gaps, and
the verdict as issue 16 words it: best or tied in PSNR (tied: within the larger seed SD of
the two rows; with one seed, the other row's), best in SSIM. Nothing is trained here.

``python benchmarks/joint_table.py benchmarks/results/cpu_small_x0ft_levers/joint_table.md``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from cryodiff.benchmark.evaluate import paired_difference
from x0ft_table import (OWN_ONE_PASS, RESULTS, SECTION_4, conditions, load_rows, section_4_rows,
                        seeds, summary)

OURS, READOUT = "sr3v-joint-ssim_1", "sr3v-joint_1"
NAMES = {"x0ft": READOUT, "x0ft-ssim": OURS}  # x0ft_levers.py's rows → the benchmark's
LEVERS = "cpu_small_x0ft_levers"
FOLDERS = {"phantom 0.1": "phantom_0.1", "phantom 0.05": "phantom_0.05",
           "phantom 0.01": "phantom_0.01", "ribosome 0.1": "ribosome70S_65_0.1",
           "ribosome 0.05": "ribosome70S_65_0.05", "ribosome 0.01": "ribosome70S_65_0.01"}
LARGE, X0FT = "supervised-large-2x-ssim", "sr3v-x0ft-ssim_1"


def joint_files(folder: str) -> list[Path]:
    """The condition's share-0.9 files, seed 0 first, then seeds 1 and 2 where present."""
    base = RESULTS / LEVERS / folder
    names = ["joint_share0.9_l2.json"] + [f"joint_share0.9_l2_seed{s}.json" for s in (1, 2)]
    return [base / name for name in names if (base / name).is_file()]


def joint_rows(files: list[Path], reference: torch.Tensor) -> dict[str, list[dict]]:
    """The files' readout and staged rows by benchmark name, one per training seed, after
    checking that each file's raw particles are the reference's (to 10⁻³ dB)."""
    rows: dict[str, list[dict]] = {}
    for path in files:
        data = json.loads(path.read_text())
        seed = data.get("training_seed", 0)
        if seed in [r["training_seed"] for r in rows.get(OURS, [])]:
            raise SystemExit(f"{path}: training seed {seed} twice")
        noisy = torch.tensor(data["rows"]["noisy"]["psnr_per_image"])
        if (noisy - reference).abs().max() > 1e-3:
            raise SystemExit(f"{path}: other raw particles than the committed rows'")
        if data.get("readout_fraction") != 0.9:
            raise SystemExit(f"{path}: readout share {data.get('readout_fraction')}, not 0.9")
        for name, method in NAMES.items():
            rows.setdefault(method, []).append(dict(data["rows"][name], device="cpu",
                                                    training_seed=seed))
    return rows


def cell(row: dict) -> str:
    """PSNR (dB) [± seed SD] / SSIM, to the digits the gaps here need."""
    spread = f" ± {row['psnr_sd']:.3f}" if row["psnr_sd"] is not None else ""
    return f"{row['psnr']:.3f}{spread} / {row['ssim']:.4f}"


def gap(row: dict, other: dict) -> str:
    """Paired PSNR gap (dB) ± SE over images."""
    mean, sem = paired_difference(row["per_image"], other["per_image"])
    return f"{mean:+.3f} ± {sem:.3f}"


def verdict(ours: dict, best: dict, older_best: float) -> str:
    """``yes`` when ``ours`` is best or tied in PSNR with ``best`` (within the larger seed SD
    of the two) and above the pre-protocol rows' best ``older_best`` (unpaired: no
    allowance)."""
    allowance = max(ours["psnr_sd"] or 0.0, best["psnr_sd"] or 0.0)
    return "yes" if ours["psnr"] >= best["psnr"] - allowance and ours["psnr"] > older_best \
        else "no"


def column(name: str) -> dict[str, str] | None:
    """The condition's cells, or None where no share-0.9 file exists yet."""
    files = joint_files(FOLDERS[name])
    if not files:
        return None
    x0ft_files, folders = conditions("cpu_small_cpu_x0ft_ssim")[name]
    rows = load_rows(x0ft_files, folders, OURS)
    reference = torch.tensor(rows["noisy"][0]["psnr_per_image"])
    rows |= joint_rows(files, reference)
    rows = {m: summary(r) for m, r in rows.items()}
    noisy, ours, readout = rows.pop("noisy"), rows.pop(OURS), rows.pop(READOUT)
    rows.pop(OWN_ONE_PASS)  # the fine-tuned SR3's own readout: a step of sr3v-x0ft, not a row
    n = len(noisy["per_image"])
    ranked = {m: r for m, r in rows.items() if len(r["per_image"]) == n}
    peers = {m: r for m, r in ranked.items() if not m.startswith("sr3")}
    older = section_4_rows(SECTION_4[name], noisy["psnr"])
    best_older_psnr = max(r["psnr"] for r in older.values())
    best_older_ssim = max(r["ssim"] for r in older.values())

    def best(pool: dict, key: str) -> str:
        return max(pool, key=lambda m: pool[m][key])

    other_psnr, other_ssim = best(ranked, "psnr"), best(ranked, "ssim")
    peer_psnr, peer_ssim = best(peers, "psnr"), best(peers, "ssim")

    def named(method: str, pool: dict) -> str:
        return f"`{method}` {cell(pool[method])} ({seeds(pool[method])})"

    def gap_to(method: str) -> str:
        return "not measured" if method not in ranked else gap(ours, ranked[method])

    ssim_best = ours["ssim"] > max(ranked[other_ssim]["ssim"], best_older_ssim)
    ssim_peer = ours["ssim"] > max(peers[peer_ssim]["ssim"], best_older_ssim)
    return {
        f"**`{OURS}`**": f"{cell(ours)} ({seeds(ours)})",
        f"`{READOUT}` (the same network before the stage; not ranked)": f"{cell(readout)}",
        "best other row, PSNR": named(other_psnr, ranked),
        "best other row, SSIM": named(other_ssim, ranked),
        "best peer (not cryodiff's), PSNR": named(peer_psnr, peers),
        "best peer (not cryodiff's), SSIM": named(peer_ssim, peers),
        "− best other PSNR row": gap(ours, ranked[other_psnr]),
        "− best peer PSNR row": gap(ours, peers[peer_psnr]),
        f"− `{LARGE}`": gap_to(LARGE),
        f"− `{X0FT}`": gap_to(X0FT),
        "best or tied PSNR / best SSIM, all rows": verdict(ours, ranked[other_psnr],
                                                           best_older_psnr)
        + " / " + ("yes" if ssim_best else "no"),
        "best or tied PSNR / best SSIM, peers only": verdict(ours, peers[peer_psnr],
                                                             best_older_psnr)
        + " / " + ("yes" if ssim_peer else "no"),
        "rows compared (paired + §4)": f"{len(ranked)} + {len(older)}",
    }


def main(argv: list[str]) -> int:
    columns = {name: cells for name in FOLDERS if (cells := column(name)) is not None}
    if not columns:
        raise SystemExit("no condition has a share-0.9 file yet")
    keys = list(next(iter(columns.values())))
    lines = [f"# `{OURS}` at `cpu-small` against every row measured there (issue 16)", "",
             f"Written by `python benchmarks/joint_table.py {' '.join(argv)}`. PSNR (dB) [± SD "
             "over training seeds] / SSIM, 128 test particles; gaps paired image by image "
             "(± SE over images; a row with several seeds by its per-image PSNR averaged over "
             "them). The joint rows are `x0ft_levers.py --sr3-loss l2 --readout-fraction 0.9` "
             "files (this CPU, fp32), the network `cryodiff benchmark --only sr3-joint` "
             "trains; the others are the rows `benchmarks/x0ft_table.py` ranks "
             "`sr3v-x0ft-ssim_1` against, on the devices its table names. Tied: within the "
             "larger seed SD of the two rows (none with one seed each). Best SSIM: above "
             "every other row and the pre-protocol (§4) rows.", "",
             "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {key} | " + " | ".join(c[key] for c in columns.values()) + " |"
              for key in keys]
    missing = [name for name in FOLDERS if name not in columns]
    if missing:
        lines += ["", "Not measured yet: " + ", ".join(missing) + "."]
    Path(argv[0]).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
