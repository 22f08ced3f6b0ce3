"""``results.md`` under the fair protocol: FSC-0.5 first, seed spreads, one device, new rows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cryodiff.benchmark import report
from cryodiff.benchmark.combine import winners as combine_winners
from cryodiff.benchmark.config import BenchmarkConfig
from cryodiff.benchmark.report import devices_line, table, verdict, with_seed_sd
from cryodiff.fsc import FscResult


def _row(method, psnr, ssim, fsc_05=None, fsc_0143=None, n_2d=128, status="ok", **extra):
    return {"method": method, "family": method, "psnr": psnr, "ssim": ssim,
            "fsc_05_A": fsc_05, "fsc_0143_A": fsc_0143, "n_test_2d": n_2d, "status": status,
            "note": "", **extra}


def _seeds(psnr_sd, ssim_sd, n=3, **extra):
    return {"n_seeds": n, "psnr_seed_sd": psnr_sd, "ssim_seed_sd": ssim_sd, **extra}


@pytest.fixture()
def rows():
    return [
        _row("noisy", 7.0, 0.03, fsc_05=12.5, fsc_0143=7.4),
        _row("cwf", 25.96, 0.55, fsc_05=11.5, fsc_0143=8.0),  # sharpest at 0.143 only
        _row("supervised", 26.00, 0.60, fsc_05=10.2, fsc_0143=8.6, **_seeds(0.05, 0.002),
             psnr_vs_best_db=0.0, psnr_vs_best_sem=0.0),
        _row("sr3+pp_10", 25.70, 0.66, fsc_05=10.9, fsc_0143=8.9, **_seeds(0.04, 0.003),
             psnr_vs_best_db=-0.30, psnr_vs_best_sem=0.02),
        _row("sr3+pp-mse_10", 25.90, 0.64, **_seeds(0.15, 0.01),
             psnr_vs_best_db=-0.10, psnr_vs_best_sem=0.03),
        _row("sr3+pp_250", 27.0, 0.70, n_2d=32),  # fewer particles: not comparable
    ]


def test_with_seed_sd_only_for_rows_trained_with_several_seeds():
    assert with_seed_sd(_row("a", 25.9, 0.6, **_seeds(0.15, 0.01)), "psnr", 2) == "25.90 ± 0.15"
    assert with_seed_sd(_row("a", 25.9, 0.6, **_seeds(0.15, 0.01)), "ssim", 3) == "0.600 ± 0.010"
    assert with_seed_sd(_row("a", 25.9, 0.6, **_seeds(None, None, n=1)), "psnr", 2) == "25.90"
    assert with_seed_sd(_row("a", 25.9, 0.6), "psnr", 2) == "25.90"  # classical method
    assert with_seed_sd(_row("a", None, None), "psnr", 2) == "—"


def test_table_puts_fsc_05_first_and_bolds_the_protocol_winners(rows):
    text = table(rows)
    head = text.splitlines()[0].split(" | ")
    assert head.index("FSC-0.5 vs truth (Å)") < head.index("FSC-0.143 (Å)")
    assert "PSNR (dB) ± seed SD" in head and head[-2] == "seeds"
    lines = {line.split(" | ")[0][2:]: line for line in text.splitlines()[2:]}
    # PSNR: supervised is best; sr3+pp-mse_10 (0.10 dB behind, seed SD 0.15) and cwf (0.04 dB
    # behind the best's SD 0.05) are tied; sr3+pp_10 (0.30 dB behind) is not.
    assert "| **26.00 ± 0.05** |" in lines["supervised"]
    assert "| **25.90 ± 0.15** |" in lines["sr3+pp-mse_10"]
    assert "| **25.96** |" in lines["cwf"]
    assert "| 25.70 ± 0.04 | — | -0.30 ± 0.02 | **0.660 ± 0.003** |" in lines["sr3+pp_10"]
    # 3D: FSC-0.5 decides (supervised 10.2 Å), although cwf is sharper at 0.143.
    assert "| **10.2** | 8.6 |" in lines["supervised"] and "| 11.5 | 8.0 |" in lines["cwf"]
    assert "| 27.00 |" in lines["sr3+pp_250"]  # shown, not ranked
    assert lines["sr3+pp_10"].endswith("| 3 | ok |") and lines["cwf"].endswith("| — | ok |")
    # The raw particles take part in the 3D ranking of the table.
    rows[0]["fsc_05_A"] = 9.0
    lines = {line.split(" | ")[0][2:]: line for line in table(rows).splitlines()[2:]}
    assert "| **9.0** | 7.4 |" in lines["noisy"] and "| 10.2 | 8.6 |" in lines["supervised"]


def test_verdict_leads_3d_with_fsc_05_and_names_the_seed_ties(rows):
    text = verdict(rows, "sr3+pp_10")
    assert text.startswith("best PSNR: **supervised** (26.000); tied within the seed spread: "
                           "**cwf** (25.960), **sr3+pp-mse_10** (25.900); sr3+pp_10 25.700 "
                           "(-0.300 ± 0.020 dB, paired over 128 images; seed SD 0.040 dB "
                           "over 3 seeds)")
    assert "best SSIM: **sr3+pp_10** (0.660);" in text
    primary = text.index("best 3D FSC-0.5 against the truth (primary): **supervised** (10.200); "
                         "sr3+pp_10 10.900; raw particles 12.500;")
    assert primary < text.index("best 3D FSC-0.143: **cwf** (8.000); sr3+pp_10 8.900; raw "
                                "particles 7.400 (no denoiser beats them)")


def test_verdict_and_combined_table_share_one_winner_rule(rows):
    """The verdict's winners are :func:`combine.winners` among the denoisers."""
    won = combine_winners(rows)
    assert won["psnr"] == {"supervised", "cwf", "sr3+pp-mse_10"}
    assert won["fsc_05_A"] == {"supervised"} and won["fsc_0143_A"] == {"noisy"}
    text = verdict(rows, "supervised")
    for method in won["psnr"]:
        assert f"**{method}**" in text.split("; best SSIM")[0]


def test_devices_line():
    assert devices_line([{"device": "cpu"}, {"device": "cpu"}, {}]) == "Device: cpu (every row)."
    assert devices_line([{"method": "noisy"}]) is None  # older rows record none
    assert devices_line([{"device": "cpu"}, {"device": "cuda"}]).startswith(
        "**Mixed devices: cpu, cuda**")


def _curve(resolution_05_A: float) -> FscResult:
    """An FSC that falls linearly through 0.5 at ``1 / resolution_05_A``."""
    frequency = np.linspace(0.0, 0.25, 26)
    curve = np.clip(1.0 - 0.5 * frequency * resolution_05_A, -0.2, 1.0)
    return FscResult.from_curve(frequency, curve)


def test_figures_show_the_new_rows_and_fsc_05(monkeypatch, tmp_path):
    """The gallery has a column per new row, the FSC legend reads 0.5, and the PSNR-vs-steps
    figure has the L2/EMA post-processor's points."""
    import cryodiff.plots.gallery as gallery

    saved = {}
    monkeypatch.setattr(gallery, "save_figure", lambda fig, path: saved.setdefault(path.name, fig))
    config = BenchmarkConfig(sr3_steps=(10, 50), sr3_fast_steps=10, posterior_samples=2,
                             n_test_slow=2)
    generator = torch.Generator().manual_seed(0)

    def images():
        return torch.randn(4, 8, 8, generator=generator)

    names = ["noisy", "supervised", "supervised-l1", "supervised-large", "cwf", "cwf-2d",
             "sr3_10", "sr3+pp_10", "sr3+pp-mse_10", "sr3_50", "sr3+pp_50", "sr3+pp-mse_50",
             "sr3-x0_1"]
    outputs = [SimpleNamespace(method=name, images=images()) for name in names]
    test = SimpleNamespace(clean_ctf=images(), noisy=images())
    result = SimpleNamespace(
        condition=SimpleNamespace(tag="phantom_snr0.1", test=test), outputs=outputs,
        maps={"truth": torch.zeros(8, 8, 8)},
        fsc_curves={"supervised-large": _curve(10.0), "cwf": _curve(12.5)},
        fsc_curves_halfmap={}, fsc_curves_pose_search={})
    curves = report.write_figures(tmp_path, config, [result])
    titles = [ax.get_title() for ax in saved["gallery.png"].axes]
    for name in ("supervised-l1", "supervised-large", "cwf-2d", "sr3+pp-mse_10"):
        assert name in titles
    assert "sr3+pp-mse_50" not in titles and "sr3-x0_1" not in titles  # fast steps only
    legend = [t.get_text() for t in saved["fsc.png"].axes[0].get_legend().get_texts()]
    assert "supervised-large (10.0 Å)" in legend and "FSC = 0.5" in legend
    steps = [t.get_text() for t in saved["psnr_vs_steps.png"].axes[0].get_legend().get_texts()]
    assert "phantom_snr0.1: SR3 + L2/EMA post-processor" in steps
    target = test.clean_ctf[:2].double()
    expected = float(report.psnr(outputs[names.index("sr3+pp-mse_50")].images[:2].double(),
                                 target).mean())
    assert curves["phantom_snr0.1"]["postprocessed_mse"][1] == (50, pytest.approx(expected))


def test_results_md_states_the_protocol_the_device_and_each_seed(rows, tmp_path):
    """``write_outputs`` (figures off): the device line, the shared recipe and seeds, the
    spread legend under the table and each training seed's PSNR in the notes."""
    rows = [{**r, "device": "cpu", "note": r["note"], "fit_seconds": None,
             "frc_0143": None, "seconds_per_image": None} for r in rows]
    rows[3] |= {"seed_psnrs": [25.66, 25.70, 25.74], "note": "10 DDPM steps"}
    config = BenchmarkConfig(training_seeds=(0, 1, 2), sr3_steps=(10,), n_test_2d=128,
                             n_test_slow=32, n_test_3d=128)
    condition = SimpleNamespace(tag="phantom_snr0.1", map_name="phantom", snr=0.1,
                                pixel_size_A=4.0)
    result = SimpleNamespace(condition=condition, rows=rows, outputs=[])
    report.write_outputs(tmp_path, config, [result], command="pytest", wall_seconds=60.0,
                         load=(1.0, 1.0), figures=False)
    text = (tmp_path / "results.md").read_text()
    assert "Device: cpu (every row)." in text
    assert "AdamW (lr" in text and "linear warm-up over" in text and "EMA of the weights" in text
    assert "Training seeds 0, 1, 2" in text and "No network gets the CTF as an input" in text
    table_end = text.index(report.SPREAD_LEGEND)
    assert text.index("| method | PSNR (dB) ± seed SD |") < table_end < text.index("best PSNR:")
    assert "- sr3+pp_10 [ok]: 10 DDPM steps; PSNR per training seed: 25.66, 25.70, 25.74 dB" \
        in text
    for family in ("supervised-l1", "supervised-large", "cwf-2d", "sr3+pp-mse"):
        assert f"- **{family}**: " in text
