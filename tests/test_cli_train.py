"""`cryodiff train` and its errors, called through the CLI dispatcher."""

from __future__ import annotations

import json

import pytest

from cryodiff.cli import main as cli
from cryodiff.io.mrc import write_stack
from training_helpers import blob_pairs


def _dataset(folder):
    noisy, clean = blob_pairs(60, 32)
    write_stack(folder / "particles.mrcs", noisy, 2.0)
    write_stack(folder / "clean_ctf.mrcs", clean, 2.0)
    return folder


@pytest.mark.slow
def test_train_and_resume_from_a_data_folder(tmp_path):
    data = _dataset(tmp_path)
    run = tmp_path / "run"
    common = ["train", "--data", str(data), "--out", str(run), "--device", "cpu", "--no-progress"]
    assert cli(common + ["--steps", "2", "--batch-size", "4"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "ci" and config["steps"] == 2 and config["batch_size"] == 4
    assert cli(common + ["--resume", "--steps", "3"]) == 0
    rows = json.loads((run / "metrics.json").read_text())
    assert rows[-1]["step"] == 3 and "val_psnr" in rows[-1]
    assert (run / "checkpoints" / "step_00000003.pt").is_file()


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    assert cli(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "training data folder not found" in capsys.readouterr().err
    assert cli(["train", "--out", str(tmp_path / "r")]) == 2
    assert "--data DIR or --map" in capsys.readouterr().err
    assert cli(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                "--preset", "huge"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert cli(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "no config.json" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_on_the_fly_from_the_phantom_then_postprocess(tmp_path):
    """`--map phantom` training, resumed through the CLI with `--postprocess` (the run's own
    tiny configuration comes from its config.json)."""
    from cryodiff.denoise import load_denoiser
    from cryodiff.training.data import SimulatedData
    from cryodiff.training.loop import train
    from training_helpers import tiny_config

    run = tmp_path / "run"
    config = tiny_config(32, steps=2, val_every=2)
    train(config, run, SimulatedData("phantom", config), progress=False)
    assert load_denoiser(run).postprocessor is None
    assert cli(["train", "--map", "phantom", "--out", str(run), "--resume", "--steps", "3",
                "--postprocess", "--no-progress"]) == 0
    rows = json.loads((run / "metrics.json").read_text())
    assert [r["step"] for r in rows] == [1, 2, 3] and "val_psnr" in rows[-1]
    post_rows = json.loads((run / "postprocess_metrics.json").read_text())
    assert post_rows[-1]["step"] == config.post_train_steps
    denoiser = load_denoiser(run)
    assert denoiser.step == 3 and denoiser.postprocessor is not None


def test_a_readout_fraction_is_kept_in_the_run_and_checked(tmp_path, capsys):
    data = _dataset(tmp_path)
    run = tmp_path / "run"
    common = ["train", "--data", str(data), "--out", str(run), "--device", "cpu",
              "--no-progress", "--steps", "1", "--batch-size", "4"]
    assert cli(common + ["--readout-fraction", "0.5"]) == 2  # an ε-network has no readout
    err = capsys.readouterr().err
    assert "v-predicting" in err and len(err.strip().splitlines()) == 1
    assert cli(common + ["--prediction", "v", "--readout-fraction", "1"]) == 2
    assert "[0, 1)" in capsys.readouterr().err
    assert not run.exists()
    assert cli(common + ["--prediction", "v", "--readout-fraction", "0.25"]) == 0
    assert json.loads((run / "config.json").read_text())["readout_fraction"] == 0.25
    assert cli(common + ["--resume", "--readout-fraction", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "cannot change it on --resume" in err and "config.json" in err
