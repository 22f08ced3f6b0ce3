"""Merging a learnt method's rows from runs of different training seeds
(``cryodiff.benchmark.seed_merge``, through ``cryodiff combine-results``)."""

from __future__ import annotations

import json
import statistics

import pytest

from cryodiff.benchmark.combine import combined_markdown, load_rows
from cryodiff.benchmark.seed_merge import merge_seed_rows, pooled_sd
from cryodiff.errors import CryodiffError


def _seed_row(method, seeds, seed_psnrs, seed_ssims, per_image, fsc, device="cuda"):
    """A learnt method's row as a benchmark over ``seeds`` writes it."""
    many = len(seeds) > 1
    return {"method": method, "family": method, "map": "phantom", "snr": 0.1,
            "psnr": statistics.fmean(seed_psnrs), "ssim": statistics.fmean(seed_ssims),
            "frc_0143": 12.0, "n_seeds": len(seeds), "training_seeds": list(seeds),
            "seed_psnrs": list(seed_psnrs),
            "psnr_seed_sd": statistics.stdev(seed_psnrs) if many else None,
            "ssim_seed_sd": statistics.stdev(seed_ssims) if many else None,
            "device": device, "seconds_per_image": 0.01, "fit_seconds": 100.0,
            "fsc_0143_A": fsc, "fsc_05_A": fsc + 2, "psnr_gain_db": None,
            "psnr_vs_best_db": None, "psnr_vs_best_sem": None, "n_test_2d": len(per_image),
            "psnr_per_image": per_image, "n_test_3d": 4000, "status": "ok", "note": "x"}


def _noisy(per_image):
    return {"method": "noisy", "family": "noisy", "map": "phantom", "snr": 0.1, "psnr": 7.5,
            "ssim": 0.03, "frc_0143": 13.0, "device": "cuda", "seconds_per_image": 0.0,
            "fsc_0143_A": 7.4, "n_test_2d": len(per_image), "psnr_per_image": per_image,
            "n_test_3d": 4000, "status": "ok", "note": "raw particles"}


def _run(folder, rows):
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(rows))
    return folder


def test_pooled_sd_is_the_sd_of_all_the_values():
    values = [[1.0, 2.5, 4.0], [3.0], [0.5, 7.0]]
    groups = [(statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else None, len(v))
              for v in values]
    assert pooled_sd(groups) == pytest.approx(statistics.stdev(sum(values, [])))
    assert pooled_sd([(1.0, None, 1)]) is None
    assert pooled_sd([(1.0, None, 2), (2.0, None, 1)]) is None  # a group's SD is missing


def test_runs_of_different_seeds_make_the_row_one_run_of_all_seeds_writes(tmp_path):
    images = {0: [20.0, 22.0, 24.0], 1: [21.0, 22.5, 23.0], 2: [19.0, 23.0, 25.0]}
    psnrs = {s: statistics.fmean(v) for s, v in images.items()}
    ssims = {0: 0.50, 1: 0.56, 2: 0.47}
    one = _run(tmp_path / "seed0", [_noisy([7.0, 7.5, 8.0]), _seed_row(
        "sr3v-x0_1", [0], [psnrs[0]], [ssims[0]], images[0], fsc=9.0)])
    rest = _run(tmp_path / "seeds12", [_noisy([7.0, 7.5, 8.0]), _seed_row(
        "sr3v-x0_1", [1, 2], [psnrs[1], psnrs[2]], [ssims[1], ssims[2]],
        [(a + b) / 2 for a, b in zip(images[1], images[2])], fsc=8.0)])
    # Either order gives one row; given later seeds first, 3D still comes from seed 0.
    row = next(r for r in load_rows([rest, one]) if r["method"] == "sr3v-x0_1")
    assert row == next(r for r in load_rows([one, rest]) if r["method"] == "sr3v-x0_1")
    assert row["training_seeds"] == [0, 1, 2] and row["n_seeds"] == 3
    assert row["psnr"] == pytest.approx(statistics.fmean(psnrs.values()))
    assert row["seed_psnrs"] == pytest.approx([psnrs[0], psnrs[1], psnrs[2]])
    assert row["psnr_seed_sd"] == pytest.approx(statistics.stdev(psnrs.values()))
    assert row["ssim"] == pytest.approx(statistics.fmean(ssims.values()))
    assert row["ssim_seed_sd"] == pytest.approx(statistics.stdev(ssims.values()))
    assert row["psnr_per_image"] == pytest.approx(
        [statistics.fmean(v) for v in zip(*images.values())])
    assert row["fsc_0143_A"] == 9.0
    # The note a run over seeds 0, 1, 2 writes, whatever the runs' own notes said of seeds.
    assert row["note"] == ("x; mean of 3 training seeds [0, 1, 2]; 3D, half maps and pose "
                           "search from training seed 0's images")
    assert row["device"] == "cuda"
    assert row["sources"] == [str(one / "results.json"), str(rest / "results.json")]
    # The merged row is paired with the best row again, from its merged per-image PSNR.
    assert row["psnr_vs_best_db"] == pytest.approx(0.0)
    text = combined_markdown(load_rows([one, rest]))
    assert f"| sr3v-x0_1 | **{row['psnr']:.2f} ± {row['psnr_seed_sd']:.2f}**" in text
    assert str(one / "results.json") in text and str(rest / "results.json") in text


def test_rows_of_a_run_that_loaded_a_checkpoint_are_not_merged_as_seeds(tmp_path):
    loaded = {**_seed_row("sr3v-x0_1", [1], [22.0], [0.5], [21.0, 23.0], fsc=9.0),
              "note": "1 pass; one trained model (--checkpoint)"}
    first = _run(tmp_path / "a", [_noisy([7.0, 8.0]), _seed_row(
        "sr3v-x0_1", [0], [22.0], [0.5], [21.0, 23.0], fsc=9.0)])
    with pytest.raises(CryodiffError, match="loaded with --checkpoint"):
        load_rows([first, _run(tmp_path / "b", [_noisy([7.0, 8.0]), loaded])])
    other = {**_seed_row("sr3v-x0_1", [2], [22.0], [0.5], [21.0, 23.0], fsc=9.0),
             "family": "sr3-pm"}
    with pytest.raises(CryodiffError, match="family"):
        load_rows([first, _run(tmp_path / "c", [_noisy([7.0, 8.0]), other])])


def test_merging_is_refused_for_the_same_seed_or_other_particles_and_keeps_failures(tmp_path):
    row = _seed_row("sr3v-x0_1", [0], [22.0], [0.5], [21.0, 23.0], fsc=9.0)
    first = _run(tmp_path / "a", [_noisy([7.0, 8.0]), row])
    again = _run(tmp_path / "b", [_noisy([7.0, 8.0]), row])
    with pytest.raises(CryodiffError, match="is also in"):
        load_rows([first, again])
    fewer = _run(tmp_path / "c", [_seed_row("sr3v-x0_1", [1], [22.0], [0.5], [21.0], fsc=9.0)])
    with pytest.raises(CryodiffError, match="training seeds cannot be merged"):
        load_rows([first, fewer])
    # A failed seed's row as a run writes it: no images, no 2D figures, its seeds recorded.
    failed = {**_seed_row("sr3v-x0_1", [1], [22.0], [0.5], [21.0, 23.0], fsc=9.0),
              "status": "failed", "note": "out of memory", "psnr": None, "ssim": None,
              "n_seeds": None, "seed_psnrs": None, "n_test_2d": None, "psnr_per_image": None,
              "fsc_0143_A": None}
    later = _seed_row("sr3v-x0_1", [2], [22.1], [0.5], [21.0, 23.2], fsc=9.0)
    rows = load_rows([first, _run(tmp_path / "d", [_noisy([7.0, 8.0]), failed]),
                      _run(tmp_path / "e", [_noisy([7.0, 8.0]), later])])
    merged = next(r for r in rows if r["method"] == "sr3v-x0_1")
    assert merged["status"] == "failed" and merged["training_seeds"] == [0, 1, 2]
    assert merged["note"] == "training seed 1: out of memory" and merged["n_seeds"] is None
    assert merge_seed_rows(failed, row)["note"] == "training seed 1: out of memory"


def test_seeds_from_two_devices_merge_only_when_mixed_devices_are_allowed(tmp_path):
    gpu = _run(tmp_path / "gpu", [_noisy([7.0, 8.0]), _seed_row(
        "supervised-2x", [0], [22.0], [0.5], [21.0, 23.0], fsc=9.0, device="cuda")])
    cpu = _run(tmp_path / "cpu", [{**_noisy([7.0, 8.0]), "device": "cpu"}, _seed_row(
        "supervised-2x", [1], [22.2], [0.52], [21.2, 23.2], fsc=9.0, device="cpu")])
    with pytest.raises(CryodiffError, match="different devices"):
        load_rows([gpu, cpu])
    rows = load_rows([gpu, cpu], allow_mixed_devices=True)
    row = next(r for r in rows if r["method"] == "supervised-2x")
    assert row["device"] == "cpu + cuda" and row["psnr_seed_sd"] == pytest.approx(
        statistics.stdev([22.0, 22.2]))
    third = _run(tmp_path / "gpu2", [_noisy([7.0, 8.0]), _seed_row(
        "supervised-2x", [2], [22.1], [0.51], [21.1, 23.1], fsc=9.0, device="cuda")])
    rows = load_rows([gpu, cpu, third], allow_mixed_devices=True)
    assert next(r for r in rows if r["method"] == "supervised-2x")["device"] == "cpu + cuda"
    assert "**Mixed devices (cpu, cuda)" in combined_markdown(rows)
