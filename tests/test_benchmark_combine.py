"""``cryodiff combine-results``: runs of single conditions laid out as one maps × SNRs table."""

from __future__ import annotations

import json

import pytest

from cryodiff.benchmark.combine import combined_markdown, load_rows, map_tables
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
    ])
    low = _run(tmp_path / "snr0.01", [
        _row("noisy", 0.01, -2.0, 0.01, 8.8, pose=44.8),
        _row("cwf", 0.01, 21.0, 0.30, 11.0, pose=60.0),
        _row("sr3+pp_10", 0.01, 20.5, 0.31, 10.5, pose=70.0),
    ])
    return high, low


def test_rows_pivot_to_one_column_per_snr_with_winners_in_bold(two_runs):
    rows = load_rows(list(two_runs))
    assert {r["source"] for r in rows} == {str(run / "results.json") for run in two_runs}
    text = map_tables(rows, "phantom")
    quality = text.split("3D at known poses")[0]
    assert "| SNR 0.1 | SNR 0.01 |" in quality
    # The 250-step row beats every PSNR but was scored on 32 of 128 images: shown, not ranked.
    assert "| sr3+pp_250 | 26.90 / 0.700 (32 images) | — |" in quality
    assert "| sr3+pp_10 | **25.70** / **0.660** | 20.50 / **0.310** |" in quality
    assert "| cwf | 25.50 / 0.480 | **21.00** / 0.300 |" in quality
    # The raw particles are never a 2D winner, but they can win in 3D.
    assert "| noisy | 7.50 / 0.030 | -2.00 / 0.010 |" in quality
    known = text.split("3D at known poses")[1].split("3D at searched poses")[0]
    assert "| noisy | **7.4** | **8.8** |" in known
    assert "| clean | 6.0 | — |" in known  # the reference is shown, not ranked
    searched = text.split("3D at searched poses")[1]
    assert "| noisy | **2.4** / 8.4 | **44.8** / 9.8 |" in searched
    assert "sr3+pp_250" not in searched and "sr3+pp_250" not in known


def test_maps_get_their_own_sections(tmp_path, two_runs):
    ribosome = _run(tmp_path / "ribo", [_row("noisy", 0.1, 6.0, 0.05, 8.1,
                                             map_name="ribosome70S_65")])
    text = combined_markdown(load_rows([*two_runs, ribosome / "results.json"]))
    assert text.index("### phantom") < text.index("### ribosome70S_65")
    assert "| noisy | 6.00 / 0.050 |" in text.split("### ribosome70S_65")[1]


def test_a_condition_measured_twice_is_refused_naming_both_files(two_runs):
    high, _ = two_runs
    with pytest.raises(CryodiffError, match="also in .*snr0.1"):
        load_rows([high, high])


@pytest.mark.parametrize("content, problem", [
    (None, "no such results file"),
    ("{not json", "not valid JSON"),
    ('{"method": "noisy"}', "expected a list of rows"),
    ('[{"method": "noisy"}]', "a row lacks map, snr"),
])
def test_bad_results_files_get_one_line_errors(tmp_path, capsys, content, problem):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    assert main(["combine-results", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"cryodiff: error: {path}: ") and problem in error
    assert "\n" not in error


def test_cli_writes_markdown_and_json_atomically(tmp_path, two_runs, capsys):
    out, rows_json = tmp_path / "table.md", tmp_path / "rows.json"
    assert main(["combine-results", *map(str, two_runs), "--out", str(out),
                 "--json", str(rows_json)]) == 0
    assert "8 rows" in capsys.readouterr().out
    assert out.read_text().startswith("# Benchmark results, combined")
    assert len(json.loads(rows_json.read_text())) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.json", "snr0.01", "snr0.1",
                                                          "table.md"]
