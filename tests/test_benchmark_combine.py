"""``cryodiff combine-results``: runs of single conditions laid out as one maps × SNRs table."""

from __future__ import annotations

import json

import pytest

from cryodiff.benchmark.combine import (check_devices, combined_markdown, load_rows, map_tables,
                                        winners)
from cryodiff.cli import main
from cryodiff.errors import CryodiffError


def _row(method, snr, psnr, ssim, fsc, pose=None, n_2d=128, status="ok", map_name="phantom",
         fsc_05=None):
    """A row as a benchmark writes it; FSC-0.5 defaults to 2 Å coarser than FSC-0.143."""
    return {"method": method, "family": method, "map": map_name, "snr": snr, "psnr": psnr,
            "ssim": ssim, "frc_0143": 12.0, "seconds_per_image": 0.01, "fsc_0143_A": fsc,
            "fsc_05_A": fsc_05 if fsc_05 is not None or fsc is None else fsc + 2.0,
            "fsc_0143_A_pose_search": None if pose is None else fsc + 1,
            "median_pose_error_deg": pose, "n_test_2d": n_2d, "n_test_3d": 4000,
            "status": status, "note": ""}


def _run(folder, rows):
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(rows))
    return folder


@pytest.fixture()
def two_runs(tmp_path):
    high = _run(tmp_path / "snr0.1", [
        _row("noisy", 0.1, 7.5, 0.03, 7.4, pose=2.4),
        _row("clean", 0.1, None, None, 6.0, pose=0.5, n_2d=None, status="reference"),
        _row("cwf", 0.1, 25.5, 0.48, 9.2, pose=3.0),
        _row("sr3+pp_10", 0.1, 25.7, 0.66, 9.1, pose=4.0),
        _row("sr3+pp_250", 0.1, 26.9, 0.70, None, n_2d=32),
        _row("topaz", 0.1, None, None, None, n_2d=None, status="skipped"),
    ])
    low = _run(tmp_path / "snr0.01", [
        _row("noisy", 0.01, -2.0, 0.01, 8.8, pose=44.8),
        _row("cwf", 0.01, 21.0, 0.30, 11.0, pose=60.0),
        _row("sr3+pp_10", 0.01, 20.5, 0.31, 10.5, pose=70.0),
        _row("topaz", 0.01, 15.0, 0.10, 9.5),
    ])
    return high, low


def test_rows_pivot_to_one_column_per_snr_with_winners_in_bold(two_runs):
    high, low = two_runs
    rows = load_rows([low, high])  # columns run from high to low SNR whatever the order given
    assert {r["source"] for r in rows} == {str(run / "results.json") for run in two_runs}
    text = map_tables(rows, "phantom")
    quality = text.split("3D at known poses")[0]
    assert "| SNR 0.1 | SNR 0.01 |" in quality
    # The 250-step row beats every PSNR but was scored on 32 of 128 images: shown, not ranked.
    assert "| sr3+pp_250 | 26.90 / 0.700 (32 images) | — |" in quality
    assert "| sr3+pp_10 | **25.70** / **0.660** | 20.50 / **0.310** |" in quality
    assert "| topaz | — | 15.00 / 0.100 |" in quality  # skipped at 0.1, measured at 0.01
    assert "| cwf | 25.50 / 0.480 | **21.00** / 0.300 |" in quality
    # The raw particles are never a 2D winner, but they can win in 3D.
    assert "| noisy | 7.50 / 0.030 | -2.00 / 0.010 |" in quality
    known = text.split("3D at known poses")[1].split("3D at searched poses")[0]
    assert "| noisy | **9.4** / 7.4 | **10.8** / 8.8 |" in known  # FSC-0.5 / FSC-0.143
    assert "| clean | 8.0 / 6.0 | — |" in known  # the reference is shown, not ranked
    searched = text.split("3D at searched poses")[1]
    assert "| noisy | **2.4** / 8.4 | **44.8** / 9.8 |" in searched
    assert "| topaz | — | 44.8 / 9.8 |" not in searched  # topaz has no pose row here
    assert "sr3+pp_250" not in searched and "sr3+pp_250" not in known


def test_maps_get_their_own_sections(tmp_path, two_runs):
    ribosome = _run(tmp_path / "ribo", [_row("noisy", 0.1, 6.0, 0.05, 8.1,
                                             map_name="ribosome70S_65")])
    text = combined_markdown(load_rows([*two_runs, ribosome / "results.json"]))
    assert text.index("### phantom") < text.index("### ribosome70S_65")
    assert "| noisy | 6.00 / 0.050 |" in text.split("### ribosome70S_65")[1]


def test_ties_as_shown_are_all_bold_and_near_random_poses_name_no_winner():
    rows = [_row("noisy", 0.1, 7.5, 0.03, 8.1249, pose=116.2, fsc_05=10.1249),
            _row("topaz", 0.1, 18.8, 0.035, 8.1251, pose=117.2, fsc_05=10.1251),
            _row("wiener", 0.1, 19.6, 0.149, 9.3, pose=118.1)]
    best = winners(rows)
    assert best["fsc_05_A"] == {"noisy", "topaz"}  # both 10.1 Å as printed
    assert best["fsc_0143_A"] == {"noisy", "topaz"}
    assert best["psnr"] == {"wiener"} and best["ssim"] == {"wiener"}
    assert "median_pose_error_deg" not in best  # every error above 90°: all near random
    rows[2]["median_pose_error_deg"] = 60.0
    assert winners(rows)["median_pose_error_deg"] == {"wiener"}


def test_runs_without_pose_search_have_no_searched_table(tmp_path):
    old = _run(tmp_path / "old", [_row("noisy", 0.1, 7.5, 0.03, 7.4),
                                  _row("cwf", 0.1, 25.5, 0.48, 9.2)])
    text = combined_markdown(load_rows([old]))
    assert "3D at known poses" in text and "3D at searched poses" not in text


def test_a_condition_measured_twice_is_refused_naming_both_files(tmp_path, two_runs):
    high, _ = two_runs
    again = _run(tmp_path / "again", [_row("cwf", 0.1000000001, 25.0, 0.4, 9.0)])
    with pytest.raises(CryodiffError) as error:
        load_rows([high, again])
    message = str(error.value)
    assert message.startswith(str(again / "results.json"))
    assert f"cwf on phantom at SNR 0.1 is also in {high / 'results.json'}" in message


@pytest.mark.parametrize("content, problem", [
    (None, "no such results file"),
    ("{not json", "not valid JSON"),
    ('{"method": "noisy"}', "expected a list of rows"),
    ("[]", "holds no rows"),
    ("[3]", "row 0 is not an object"),
    ('[{"method": "noisy"}]', "row 0 lacks map, snr"),
    (json.dumps([_row("noisy", 0.1, 7.5, 0.03, 7.4), {**_row("cwf", 0.1, 1, 1, 1), "snr": None}]),
     "row 1: snr must be a positive number, got None"),
    (json.dumps([{**_row("cwf", 0.1, 1, 1, 1), "psnr": "25"}]),
     "row 0: psnr must be a finite number or null, got '25'"),
    (json.dumps([{**_row("cwf", 0.1, 1, 1, 1), "psnr": float("nan")}]),
     "row 0: psnr must be a finite number or null, got nan"),
    (json.dumps([{**_row("cwf", 0.1, 1, 1, 1), "psnr_vs_best_db": "-0.3"}]),
     "row 0: psnr_vs_best_db must be a finite number or null"),
    (json.dumps([{**_row("cwf", 0.1, 1, 1, 1), "psnr_per_image": [20.0, float("nan")]}]),
     "row 0: psnr_per_image must be a list of finite numbers or null"),
    (json.dumps([{**_row("cwf", 0.1, 1, 1, 1), "psnr_per_image": "20.0"}]),
     "row 0: psnr_per_image must be a list of finite numbers or null"),
    (json.dumps([{**_row("cwf", 0.1, 1, 1, 1), "method": ["cwf"]}]),
     "row 0: method must be text"),
])
def test_bad_results_files_get_one_line_errors(tmp_path, capsys, content, problem):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    assert main(["combine-results", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"cryodiff: error: {path}: ") and problem in error
    assert "\n" not in error


def test_cli_writes_markdown_and_json_atomically(tmp_path, two_runs):
    out, rows_json = tmp_path / "table.md", tmp_path / "rows.json"
    assert main(["combine-results", *map(str, two_runs), "--out", str(out),
                 "--json", str(rows_json)]) == 0
    assert out.read_text() == combined_markdown(load_rows(list(two_runs)))
    assert len(json.loads(rows_json.read_text())) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.json", "snr0.01", "snr0.1",
                                                          "table.md"]


def test_half_map_table_only_for_runs_that_measured_half_maps(tmp_path, two_runs):
    high, low = two_runs
    assert "3D half maps against the truth" not in combined_markdown(load_rows([high, low]))
    rows = [_row("noisy", 0.05, 7.0, 0.02, 7.7), _row("cwf", 0.05, 24.0, 0.4, 9.5),
            _row("lowpass", 0.05, 20.0, 0.1, 30.0)]
    claims = {"noisy": (8.0, 7.5, 0.01), "cwf": (7.0, 10.5, 0.02), "lowpass": (6.0, 31.8, 0.6)}
    for row in rows:
        halfmap, truth, randomized = claims[row["method"]]
        row |= {"fsc_halfmap_0143_A": halfmap, "fsc_05_A": truth,
                "halfmap_minus_truth_A": halfmap - truth, "halfmap_randomized_fsc": randomized,
                "fsc_halfmap_unmasked_0143_A": truth}
    new = _run(tmp_path / "snr0.05", rows)
    text = combined_markdown(load_rows([high, low, new]))  # old and new files combine
    assert "3D half maps against the truth" in text
    assert "| cwf | — | 7.0 / 10.5 | — |" in text
    assert "| lowpass | — | 6.0* / 31.8 | — |" in text  # mask-limited figure marked


def test_fsc_05_against_the_truth_decides_the_3d_winner(tmp_path):
    # cwf is sharper at 0.143, supervised at 0.5: the table bolds the 0.5 winner only.
    rows = [_row("noisy", 0.1, 7.5, 0.03, 9.0, fsc_05=12.0),
            _row("cwf", 0.1, 25.5, 0.48, 8.0, fsc_05=11.5),
            _row("supervised", 0.1, 25.9, 0.60, 8.6, fsc_05=10.2)]
    best = winners(rows)
    assert best["fsc_05_A"] == {"supervised"} and best["fsc_0143_A"] == {"cwf"}
    known = map_tables(load_rows([_run(tmp_path / "run", rows)]), "phantom").split(
        "3D at known poses")[1]
    assert "| supervised | **10.2** / 8.6 |" in known
    assert "| cwf | 11.5 / 8.0 |" in known and "FSC-0.5 / FSC-0.143" in known


def _seeded(row, psnr_sd, ssim_sd, n_seeds=3):
    return {**row, "n_seeds": n_seeds, "psnr_seed_sd": psnr_sd, "ssim_seed_sd": ssim_sd}


def test_psnr_ties_within_the_larger_seed_sd_of_the_two_rows(tmp_path):
    rows = [_row("noisy", 0.1, 7.5, 0.03, 9.0),
            _seeded(_row("supervised", 0.1, 26.00, 0.600, 9.0), 0.05, 0.002),
            # 0.10 dB behind, within its own SD (0.15): tied
            _seeded(_row("sr3+pp-mse_10", 0.1, 25.90, 0.640, 9.5), 0.15, 0.010),
            # 0.20 dB behind, beyond both SDs (0.10, 0.05): not tied
            _seeded(_row("noise2noise", 0.1, 25.80, 0.500, 9.6), 0.10, 0.004),
            # trained once (no SD): 0.04 dB behind, within the best row's SD: tied
            _row("cwf", 0.1, 25.96, 0.550, 9.1),
            # 0.06 dB behind, beyond the best row's 0.05: not tied
            _row("wiener", 0.1, 25.94, 0.400, 9.8)]
    best = winners(rows)
    assert best["psnr"] == {"supervised", "sr3+pp-mse_10", "cwf"}
    assert best["ssim"] == {"sr3+pp-mse_10"}  # SSIM: the best as printed, no seed tie
    quality = map_tables(load_rows([_run(tmp_path / "run", rows)]), "phantom").split(
        "3D at known poses")[0]
    assert "| sr3+pp-mse_10 | **25.90 ± 0.15** / **0.640 ± 0.010** |" in quality
    assert "| noise2noise | 25.80 ± 0.10 / 0.500 ± 0.004 |" in quality
    assert "| cwf | **25.96** / 0.550 |" in quality  # one seed: no ± shown
    assert "| wiener | 25.94 / 0.400 |" in quality
    # One seed with an SD key present (None): shown plainly, ties only as printed.
    rows[1] = {**rows[1], "n_seeds": 1, "psnr_seed_sd": None, "ssim_seed_sd": None}
    assert winners(rows)["psnr"] == {"supervised", "sr3+pp-mse_10"}


def _device_run(folder, device, snr=0.1, methods=("noisy", "cwf")):
    rows = [_row(m, snr, 20.0 + i, 0.3, 9.0 + i) for i, m in enumerate(methods)]
    if device is not None:
        rows = [{**r, "device": device} for r in rows]
    return _run(folder, rows)


def test_runs_from_different_devices_are_refused_naming_the_files(tmp_path):
    gpu = _device_run(tmp_path / "gpu", "cuda (NVIDIA H100 80GB HBM3)", snr=0.1)
    cpu = _device_run(tmp_path / "cpu", "cpu", snr=0.05)
    with pytest.raises(CryodiffError) as error:
        load_rows([gpu, cpu])
    message = str(error.value)
    assert "\n" not in message and "different devices" in message
    assert f"cuda (NVIDIA H100 80GB HBM3) in {gpu / 'results.json'}" in message
    assert f"cpu in {cpu / 'results.json'}" in message and "--allow-mixed-devices" in message
    # Asked for, they combine with the device in every column heading and a warning.
    text = combined_markdown(load_rows([gpu, cpu], allow_mixed_devices=True))
    assert "**Mixed devices (cpu, cuda (NVIDIA H100 80GB HBM3))" in text
    assert "| SNR 0.1 (cuda (NVIDIA H100 80GB HBM3)) | SNR 0.05 (cpu) |" in text


def test_two_gpu_models_are_two_devices(tmp_path):
    h100 = _device_run(tmp_path / "h100", "cuda (NVIDIA H100 80GB HBM3)", snr=0.1)
    h200 = _device_run(tmp_path / "h200", "cuda (NVIDIA H200)", snr=0.05)
    with pytest.raises(CryodiffError, match="different devices"):
        load_rows([h100, h200])
    # A row written before rows named the GPU model cannot show it was the same GPU.
    old = _device_run(tmp_path / "old", "cuda", snr=0.01)
    with pytest.raises(CryodiffError, match="different devices"):
        load_rows([h200, old])
    text = combined_markdown(load_rows([h200, old], allow_mixed_devices=True))
    assert "| SNR 0.05 (cuda (NVIDIA H200)) | SNR 0.01 (cuda) |" in text


def test_one_device_passes_and_old_files_without_a_device_combine_with_a_note(tmp_path):
    first = _device_run(tmp_path / "a", "cpu", snr=0.1)
    second = _device_run(tmp_path / "b", "cpu", snr=0.05)
    old = _device_run(tmp_path / "old", None, snr=0.01)
    text = combined_markdown(load_rows([first, second, old]))
    assert "Device: cpu." in text and "Mixed devices" not in text
    assert f"No device recorded in `{old / 'results.json'}`" in text
    assert "| SNR 0.1 | SNR 0.05 | SNR 0.01 |" in text  # one device: plain headings
    # Rows are checked as given, too (one file holding two devices is refused).
    rows = [{"device": "cpu", "source": "x.json"}, {"device": "cuda", "source": "x.json"}]
    with pytest.raises(CryodiffError, match="cpu in x.json; cuda in x.json"):
        check_devices(rows)
    check_devices(rows, allow_mixed_devices=True)


def test_cli_refuses_mixed_devices_in_one_line_unless_allowed(tmp_path, capsys):
    gpu = _device_run(tmp_path / "gpu", "cuda", snr=0.1)
    cpu = _device_run(tmp_path / "cpu", "cpu", snr=0.05)
    assert main(["combine-results", str(gpu), str(cpu)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("cryodiff: error: runs on different devices") and "\n" not in error
    out = tmp_path / "table.md"
    assert main(["combine-results", str(gpu), str(cpu), "--allow-mixed-devices",
                 "--out", str(out)]) == 0
    assert "| SNR 0.1 (cuda) | SNR 0.05 (cpu) |" in out.read_text()


def test_a_device_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([{**_row("cwf", 0.1, 1, 1, 1), "device": 0}]))
    with pytest.raises(CryodiffError, match="row 0: device must be text or null, got 0"):
        load_rows([path])


def _split_runs(tmp_path, sr3_noisy_psnr=7.5, sr3_noisy_first_image=7.0):
    """One condition measured by two runs split by method (each skips the other's), both
    measuring the raw particles; per-image PSNRs of four images."""
    def measured(method, psnr, per_image):
        # Gaps as each run stored them, against its own best row: combining must redo them.
        return {**_row(method, 0.1, psnr, 0.5, 9.0, n_2d=4), "psnr_per_image": per_image,
                "psnr_vs_best_db": 0.0, "psnr_vs_best_sem": 0.0, "device": "cuda"}

    def skipped(method):
        return _row(method, 0.1, None, None, None, n_2d=None, status="skipped")

    peers = _run(tmp_path / "peers", [
        measured("noisy", 7.5, [7.0, 7.5, 8.0, 7.5]),
        _row("clean", 0.1, None, None, 6.0, n_2d=None, status="reference"),
        measured("cwf", 25.0, [24.0, 25.0, 26.0, 25.0]), skipped("sr3-pm4_10")])
    sr3 = _run(tmp_path / "sr3", [
        measured("noisy", sr3_noisy_psnr, [sr3_noisy_first_image, 7.5, 8.0, 7.5]),
        _row("clean", 0.1, None, None, 6.0, n_2d=None, status="reference"),
        skipped("cwf"), measured("sr3-pm4_10", 25.5, [24.0, 25.5, 27.0, 25.5])])
    return peers, sr3


def test_runs_split_by_method_merge_into_one_column_paired_image_by_image(tmp_path):
    rows = load_rows(list(_split_runs(tmp_path)))
    by_method = {r["method"]: r for r in rows}
    assert sorted(by_method) == ["clean", "cwf", "noisy", "sr3-pm4_10"]  # each once
    assert by_method["cwf"]["status"] == "ok" and by_method["sr3-pm4_10"]["status"] == "ok"
    # Paired against the best (sr3-pm): gaps 0, -0.5, -1, -0.5 → mean -0.5, SD 0.408.
    assert by_method["sr3-pm4_10"]["psnr_vs_best_db"] == pytest.approx(0.0)
    assert by_method["cwf"]["psnr_vs_best_db"] == pytest.approx(-0.5)
    assert by_method["cwf"]["psnr_vs_best_sem"] == pytest.approx(0.40825 / 2, abs=1e-4)
    text = map_tables(rows, "phantom")
    assert "| cwf | -0.50 ± 0.20 |" in text and "| sr3-pm4_10 | best |" in text
    assert "| sr3-pm4_10 | **25.50** / **0.500** |" in text


@pytest.mark.parametrize("changed, shown", [({"sr3_noisy_psnr": 9.0}, "psnr 9.0 against 7.5"),
                                            ({"sr3_noisy_first_image": 6.0},
                                             "its per-image PSNR")])
def test_split_runs_on_different_particles_are_refused(tmp_path, changed, shown):
    with pytest.raises(CryodiffError, match=f"noisy on phantom at SNR 0.1 differs "
                                            f".*\\({shown}\\): not the same particles"):
        load_rows(list(_split_runs(tmp_path, **changed)))


def test_split_runs_on_different_devices_are_refused(tmp_path):
    peers, sr3 = _split_runs(tmp_path)
    rows = json.loads((sr3 / "results.json").read_text())
    (sr3 / "results.json").write_text(json.dumps([{**r, "device": "cpu"} for r in rows]))
    with pytest.raises(CryodiffError, match="runs on different devices"):
        load_rows([peers, sr3])


def test_a_gap_that_rounds_to_zero_prints_without_a_sign(tmp_path):
    peers, sr3 = _split_runs(tmp_path)
    rows = json.loads((peers / "results.json").read_text())
    for row in rows:
        if row["method"] == "cwf":  # 0.001 dB behind sr3-pm on every image but one
            row["psnr_per_image"] = [24.0, 25.499, 26.999, 25.499]
    (peers / "results.json").write_text(json.dumps(rows))
    text = map_tables(load_rows([peers, sr3]), "phantom")
    assert "| cwf | 0.00 ± 0.00 |" in text and "-0.00" not in text


def test_rows_without_per_image_psnr_are_not_paired_across_runs(tmp_path):
    peers, sr3 = _split_runs(tmp_path)
    rows = json.loads((sr3 / "results.json").read_text())
    for row in rows:
        row.pop("psnr_per_image", None)
    (sr3 / "results.json").write_text(json.dumps(rows))
    by_method = {r["method"]: r for r in load_rows([peers, sr3])}
    # The best row (sr3-pm) has no per-image PSNR: no row can be paired with it.
    assert by_method["cwf"]["psnr_vs_best_db"] is None
    assert by_method["sr3-pm4_10"]["psnr_vs_best_db"] is None
