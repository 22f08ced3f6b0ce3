"""``cryodiff combine-results``: runs of single conditions laid out as one maps × SNRs table."""

from __future__ import annotations

import json

import pytest

from cryodiff.benchmark.combine import combined_markdown, load_rows, map_tables, winners
from cryodiff.cli import main
from cryodiff.errors import CryodiffError


def _row(method, snr, psnr, ssim, fsc, pose=None, n_2d=128, status="ok", map_name="phantom"):
    return {"method": method, "family": method, "map": map_name, "snr": snr, "psnr": psnr,
            "ssim": ssim, "frc_0143": 12.0, "seconds_per_image": 0.01, "fsc_0143_A": fsc,
            "fsc_05_A": None, "fsc_0143_A_pose_search": None if pose is None else fsc + 1,
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
    assert "| noisy | **7.4** | **8.8** |" in known
    assert "| clean | 6.0 | — |" in known  # the reference is shown, not ranked
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
    rows = [_row("noisy", 0.1, 7.5, 0.03, 8.1249, pose=116.2),
            _row("topaz", 0.1, 18.8, 0.035, 8.1251, pose=117.2),
            _row("wiener", 0.1, 19.6, 0.149, 9.3, pose=118.1)]
    best = winners(rows)
    assert best["fsc_0143_A"] == {"noisy", "topaz"}  # both 8.1 Å as printed
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
     "row 0: psnr must be a number or null, got '25'"),
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
