"""Every tutorial notebook runs headless through papermill with its small (ci) parameters.

The notebooks run in pipeline order into one shared run folder (02 trains on the data 01
simulated, 04 reconstructs from it), then each test asserts on the numbers the notebook
recorded in ``run_dir/NN_name.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cryodiff.notebook_runner import discover_notebooks, notebook_parameters, run_notebook

NOTEBOOKS = discover_notebooks()
EXPECTED = {"01_simulate_projections", "02_train_diffusion", "03_denoise_and_compare",
            "04_reconstruct_and_fsc", "05_real_particles"}


def test_no_notebook_went_missing():
    stems = {p.stem for p in NOTEBOOKS}
    assert EXPECTED <= stems, f"missing notebooks: {sorted(EXPECTED - stems)}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_percent_script_and_notebook_are_in_sync(notebook):
    jupytext = pytest.importorskip("jupytext")
    script = notebook.with_suffix(".py")
    assert script.exists(), f"{script.name} (the jupytext percent pair) is missing"
    from_script = [(c.cell_type, c.source.strip()) for c in jupytext.read(script).cells]
    from_notebook = [(c.cell_type, c.source.strip()) for c in jupytext.read(notebook).cells]
    assert from_script == from_notebook, f"run `jupytext --sync {script}`"


@pytest.fixture(scope="session")
def shared_run_dir(tmp_path_factory) -> Path:
    # CI keeps the executed notebooks ($CRYODIFF_NOTEBOOK_RUN_DIR) for the course site
    kept = os.environ.get("CRYODIFF_NOTEBOOK_RUN_DIR")
    return Path(kept) if kept else tmp_path_factory.mktemp("notebooks")


def _check_saved_outputs(executed: Path) -> None:
    """A saved notebook shows no widget as text: every widget output (a viewer) carries a
    static picture, and no progress bar is left as a widget."""
    import nbformat

    for cell in nbformat.read(executed, as_version=4).cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                assert "image/png" in data, f"a widget without a static picture: {data}"
                assert "VBox(children" not in data.get("text/plain", "")


def _check_summary(stem: str, summary: dict) -> None:
    check = SUMMARY_CHECKS.get(stem)
    if check is not None:
        check(summary)


def _check_simulate(summary: dict) -> None:
    assert summary["n_particles"] > 0
    assert abs(summary["measured_snr"] / summary["snr"] - 1) < 0.1
    assert abs(summary["measured_structural_snr"] / summary["structural_snr"] - 1) < 0.15
    assert summary["pixel_size_A"] == pytest.approx(192 / summary["box"])


def _check_train(summary: dict) -> None:
    assert summary["psnr_denoised"] > summary["psnr_noisy"] + 1.0
    assert summary["psnr_denoised_no_postprocess"] > summary["psnr_noisy"]
    # sr3-pm refines the mean of several samples: above one sample's PSNR.
    assert summary["psnr_sr3_pm"] > summary["psnr_denoised_no_postprocess"]
    assert summary["loss_last"] < 0.5 * summary["loss_first"]
    assert summary["ssim_denoised"] > summary["ssim_noisy"]


def _check_compare(summary: dict) -> None:
    assert summary["n_methods_ok"] >= 5
    assert summary["psnr_best"] > summary["psnr_noisy"] + 8
    assert summary["fsc_clean_A"] <= summary["fsc_noisy_A"]
    assert summary["pose_error_clean_deg"] < summary["pose_error_noisy_deg"]
    assert summary["fsc_noisy_pose_search_A"] >= summary["fsc_noisy_A"] - 0.5
    assert summary["denoised_star"]


def _check_reconstruct(summary: dict) -> None:
    gold = summary["resolution_0143_A"]
    nyquist = summary["nyquist_A"]
    assert summary["n_particles"] > 0
    assert gold["clean"] <= 1.1 * nyquist
    assert nyquist < gold["noisy"] < 60
    assert gold["clean"] < gold["noisy"]
    if "denoised" in gold:  # notebook 03 ran first: its raw particles come along
        counts = summary["n_particles_by_source"]
        assert counts["same particles, raw"] == counts["denoised"] > 0
        assert nyquist <= gold["same particles, raw"] < 60
    judged = summary["halfmap_vs_truth"]
    # Invented detail common to both halves: the half maps claim Nyquist, the truth says no.
    assert judged["invented detail"]["halfmap_0143_A"] <= 1.1 * nyquist
    assert judged["invented detail"]["truth_05_A"] > 2 * judged["invented detail"]["halfmap_0143_A"]
    assert abs(judged["noisy"]["halfmap_minus_truth_A"]) < 0.25 * judged["noisy"]["truth_05_A"]


def _check_real(summary: dict) -> None:
    assert summary["n_particles"] > 0 and not summary["has_poses"]  # the bundled particles
    assert summary["pixel_size_A"] == pytest.approx(
        summary["pixel_size_original_A"] * summary["box_original"] / summary["box"])
    assert summary["snr_estimate"] > 0
    assert abs(summary["simulated_snr"] / summary["snr_estimate"] - 1) < 0.25
    assert summary["val_psnr"] > summary["val_input_psnr"]  # it learnt the matched simulation
    assert "sr3" in summary["methods"] and "wiener" in summary["methods"]
    assert summary["background_ratio"]["wiener"] < 1
    assert Path(summary["denoised_star"]).is_file()


SUMMARY_CHECKS = {
    "01_simulate_projections": _check_simulate,
    "02_train_diffusion": _check_train,
    "03_denoise_and_compare": _check_compare,
    "04_reconstruct_and_fsc": _check_reconstruct,
    "05_real_particles": _check_real,
}


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(notebook, shared_run_dir):
    pytest.importorskip("papermill")
    summary = run_notebook(notebook, shared_run_dir,
                           notebook_parameters(notebook.stem, "ci", shared_run_dir))
    assert summary, f"{notebook.stem} wrote no {notebook.stem}.json summary"
    _check_summary(notebook.stem, summary)
    _check_saved_outputs(shared_run_dir / "executed" / notebook.name)
