"""An interrupted benchmark resumes: trained baselines and SR3 checkpoints are reused."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cryodiff.baselines import regression
from cryodiff.benchmark import get_preset, run_benchmark
from cryodiff.benchmark import methods as bench_methods
from cryodiff.benchmark.conditions import make_condition

SMALL = dataclasses.replace(
    get_preset("ci"), n_train=48, n_val=16, n_test_2d=16, n_test_slow=4, n_test_3d=64,
    train_steps=8, post_train_steps=4, sr3_steps=(2,), sr3_fast_steps=2, posterior_samples=1,
    methods=("supervised",), methods_3d=("supervised",), pose_search=False)


def _quiet(config, out):
    return {r["method"]: r for r in run_benchmark(config, out, progress=False, figures=False,
                                                  log=lambda _: None)}


@pytest.mark.slow
def test_a_rerun_reuses_the_trained_baseline_and_retrains_when_settings_change(tmp_path):
    first = _quiet(SMALL, tmp_path)
    assert (tmp_path / "work" / "baselines" / "seed0" / "phantom_snr0.1_supervised.pt").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(regression, "fit_image_to_image", no_training)
        again = _quiet(SMALL, tmp_path)
        assert again["supervised"]["status"] == "ok"
        assert "reused" in again["supervised"]["note"]
        assert again["supervised"]["psnr"] == first["supervised"]["psnr"]
        assert again["supervised"]["fit_seconds"] == first["supervised"]["fit_seconds"]
        changed = _quiet(dataclasses.replace(SMALL, train_steps=9), tmp_path)
    assert changed["supervised"]["status"] == "failed"  # it had to train, and could not
    assert "trained again" in changed["supervised"]["note"]


@pytest.mark.slow
def test_an_interrupted_sr3_training_continues_from_its_checkpoint(tmp_path, monkeypatch):
    from cryodiff.training import loop
    from cryodiff.training.checkpoint import latest_checkpoint, load_checkpoint
    from cryodiff.training.data import PairedStackData

    real_preset = bench_methods.get_preset
    monkeypatch.setattr(bench_methods, "get_preset",
                        lambda name: dataclasses.replace(real_preset(name), checkpoint_every=4,
                                                         val_every=4, log_every=1))
    config = dataclasses.replace(SMALL, methods=("sr3",), methods_3d=("sr3",))
    condition = make_condition("phantom", 0.1, config)
    train_config = bench_methods.train_config_for(config, condition)
    data = PairedStackData(condition.train.noisy, condition.train.clean_ctf, train_config,
                           validation=(condition.val.noisy, condition.val.clean_ctf))
    run_dir = tmp_path / "sr3"
    run_dir.mkdir()
    (run_dir / "benchmark_data.json").write_text(   # as train_sr3 writes it before training
        json.dumps(bench_methods.data_settings(condition, config)))
    loop.train(train_config, run_dir, data, stop_at=6, progress=False)  # killed at step 6
    assert int(load_checkpoint(latest_checkpoint(run_dir))["step"]) == 4

    calls = []
    real_train = loop.train

    def spy(*args, **kwargs):
        calls.append(kwargs.get("resume"))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(loop, "train", spy)
    denoiser, seconds = bench_methods.train_sr3(condition, config, run_dir, progress=False)
    assert calls == [True]
    # The time reported covers the steps trained before the interruption too.
    recorded = json.loads((run_dir / "train_seconds.json").read_text())
    before = [r for r in json.loads((run_dir / "metrics.json").read_text()) if r["step"] == 4]
    assert recorded["sr3_training_s"] > before[0]["elapsed_s"] > 0
    assert seconds == pytest.approx(recorded["sr3_training_s"] + recorded["postprocessor_s"])
    final = load_checkpoint(latest_checkpoint(run_dir))
    assert int(final["step"]) == 8 and final.get("postprocess") is not None
    assert denoiser.postprocessor is not None
    # finished: a third call trains nothing and reports the recorded training time
    _, again = bench_methods.train_sr3(condition, config, run_dir, progress=False)
    assert calls == [True]
    assert again == pytest.approx(seconds)
    # other data (the data seed) in the same folder: trained afresh, never reused
    other = dataclasses.replace(config, seed=1)
    bench_methods.train_sr3(make_condition("phantom", 0.1, other), other, run_dir,
                            progress=False)
    assert calls == [True, False]
