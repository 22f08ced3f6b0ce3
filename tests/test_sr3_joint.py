"""sr3-joint: one v-network trained on SR3's objective and its own readout, as a benchmark
method (issue 16)."""

import dataclasses

import pytest
import torch

from cryodiff.errors import CryodiffError


def _config(**changes):
    from cryodiff.benchmark.config import get_preset

    settings = dict(n_train=32, n_val=8, n_test_2d=8, n_test_slow=4, n_test_3d=24,
                    train_steps=3, post_train_steps=3, sr3_steps=(1,), sr3_fast_steps=1,
                    slow_step_threshold=1, posterior_samples=1, methods=("sr3-joint",),
                    methods_3d=(), pose_search=False)
    return dataclasses.replace(get_preset("ci"), **(settings | changes))


def test_the_network_is_sr3s_recipe_with_the_readout_share_and_twice_the_steps():
    """v, the squared error, the share, SR3's + the fine-tuning's steps; the rest is the
    shared preset's (so every learnt method keeps one recipe), whatever SR3 predicts."""
    from cryodiff.benchmark.conditions import make_condition
    from cryodiff.benchmark.methods import train_config_for
    from cryodiff.benchmark.sr3_joint import JOINT_SHARE, joint_train_config

    config = _config(sr3_prediction="eps")
    condition = make_condition("phantom", 0.1, config)
    shared, joint = train_config_for(config, condition), joint_train_config(config, condition)
    assert (joint.model.prediction, joint.loss, joint.readout_fraction, joint.steps) == (
        "v", "l2", JOINT_SHARE, 2 * shared.steps)
    assert dataclasses.replace(joint, model=shared.model, loss=shared.loss,
                               readout_fraction=0.0, steps=shared.steps) == shared


@pytest.mark.slow
def test_the_benchmark_rows_their_seeds_and_their_caches(tmp_path):
    from cryodiff.benchmark import run as bench_run
    from cryodiff.benchmark.conditions import make_condition
    from cryodiff.benchmark.methods import train_sr3
    from cryodiff.benchmark.sr3_joint import joint_train_config
    from cryodiff.denoise import load_denoiser, one_pass_x0
    from cryodiff.models.unet import SR3UNet
    from cryodiff.self_ensemble import self_ensemble
    from cryodiff.training.checkpoint import latest_checkpoint, load_checkpoint

    config = _config(training_seeds=(0, 1))
    condition = make_condition("phantom", 0.1, config)
    work = tmp_path / "work"

    def run():
        return {o.method: o for o in bench_run.run_condition(
            condition, config, work, progress=False, log=lambda _: None).outputs}

    first = run()
    readout, staged = first["sr3v-joint_1"], first["sr3v-joint-ssim_1"]
    assert (readout.status, readout.family, staged.status, staged.family) == (
        "ok", "sr3-joint", "ok", "sr3-joint-ssim")
    assert "6 steps × " in readout.note and "0.9 of every batch" in readout.note
    assert "1 steps × " in staged.note and "(1 − SSIM)" in staged.note
    assert readout.seeds == staged.seeds == (0, 1)
    assert not torch.equal(*readout.seed_images)  # each seed its own network
    assert staged.fit_seconds > readout.fit_seconds > 0
    for seed in (0, 1):
        run_dir = work / f"sr3joint_phantom_snr0.1_seed{seed}"
        state = load_checkpoint(latest_checkpoint(run_dir))
        assert state["step"] == 6 and state.get("postprocess") is None
        assert (run_dir / "joint_ssim.pt").is_file()
    # the rows are the trained network's one-pass x̂₀ (and the staged copy's), self-ensembled
    run_dir = work / "sr3joint_phantom_snr0.1_seed0"
    denoiser = load_denoiser(run_dir, torch.device("cpu"))
    assert denoiser.config.readout_fraction == 0.9
    noisy = condition.test.noisy[:config.n_test_2d]
    expected = self_ensemble(lambda y: one_pass_x0(denoiser, y, seed=0), noisy)
    torch.testing.assert_close(readout.seed_images[0], expected)
    net = SR3UNet(denoiser.config.model)
    net.load_state_dict(torch.load(run_dir / "joint_ssim.pt", weights_only=True)["state"])
    staged_denoiser = dataclasses.replace(denoiser, model=net.eval())
    torch.testing.assert_close(staged.seed_images[0], self_ensemble(
        lambda y: one_pass_x0(staged_denoiser, y, seed=0), noisy))
    assert (staged.seed_images[0] - readout.seed_images[0]).abs().max() > 1e-6
    # a second run trains nothing: the networks and the stage are reused, the rows the same
    checkpoint = latest_checkpoint(run_dir)
    mtime = checkpoint.stat().st_mtime_ns
    again = run()
    assert checkpoint.stat().st_mtime_ns == mtime
    assert "reused" in again["sr3v-joint-ssim_1"].note
    for name in ("sr3v-joint_1", "sr3v-joint-ssim_1"):
        for seed_images, before in zip(again[name].seed_images, first[name].seed_images):
            torch.testing.assert_close(seed_images, before)
    # how many checkpoints a run keeps is not what it learns: a finished run is kept
    seeded = config.for_training_seed(0)
    keeping_more = dataclasses.replace(joint_train_config(seeded, condition), keep_checkpoints=9)
    train_sr3(condition, seeded, run_dir, False, train_config=keeping_more, postprocessor=False)
    assert checkpoint.stat().st_mtime_ns == mtime


def test_the_rows_are_skipped_unless_asked_for_and_2d_only(tmp_path):
    from cryodiff.benchmark.conditions import make_condition
    from cryodiff.benchmark.run import joint_outputs

    config = _config(methods=("lowpass",))
    condition = make_condition("phantom", 0.1, config)
    rows = joint_outputs(condition, config, tmp_path, False, lambda _: None)
    assert [(r.method, r.status) for r in rows] == [("sr3v-joint_1", "skipped"),
                                                    ("sr3v-joint-ssim_1", "skipped")]
    assert not any(tmp_path.iterdir())  # nothing trained
    with pytest.raises(CryodiffError, match="sr3-joint is scored in 2D only"):
        _config(methods_3d=("sr3-joint",)).validate()


def test_a_failed_training_fails_both_rows_with_the_error(tmp_path, monkeypatch):
    from cryodiff.benchmark import sr3_joint
    from cryodiff.benchmark.conditions import make_condition
    from cryodiff.benchmark.run import joint_outputs

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(sr3_joint, "train_sr3", broken)
    config = _config()
    rows = joint_outputs(make_condition("phantom", 0.1, config), config, tmp_path, False,
                         lambda _: None)
    assert [(r.status, r.note) for r in rows] == [("failed", "RuntimeError: out of memory")] * 2


def test_train_sr3_resumes_across_checkpoint_counts_and_restarts_a_changed_recipe(
        tmp_path, monkeypatch):
    """How many checkpoints a run keeps is not what it learns: an interrupted run continues
    under another count; a run of another recipe (here the learning rate) starts afresh."""
    from cryodiff.benchmark.conditions import make_condition
    from cryodiff.benchmark.methods import train_sr3
    from cryodiff.benchmark.sr3_joint import joint_train_config
    from cryodiff.training import loop
    from cryodiff.training.checkpoint import latest_checkpoint, load_checkpoint
    from cryodiff.training.config import TrainConfig

    config = _config().for_training_seed(0)
    condition = make_condition("phantom", 0.1, config)
    joint = dataclasses.replace(joint_train_config(config, condition), checkpoint_every=2)
    run_dir, train = tmp_path / "run", loop.train
    monkeypatch.setattr(loop, "train", lambda *args, **kwargs: train(*args, stop_at=4, **kwargs))
    train_sr3(condition, config, run_dir, False, train_config=joint, postprocessor=False)
    monkeypatch.undo()  # killed after step 4: checkpoints at steps 2 and 4
    first = run_dir / "checkpoints" / "step_00000002.pt"
    mtime = first.stat().st_mtime_ns
    train_sr3(condition, config, run_dir, False,
              train_config=dataclasses.replace(joint, keep_checkpoints=9), postprocessor=False)
    assert first.stat().st_mtime_ns == mtime  # continued from step 4, not restarted
    assert load_checkpoint(latest_checkpoint(run_dir))["step"] == joint.steps == 6
    other = dataclasses.replace(joint, lr=joint.lr / 2, keep_checkpoints=9)
    train_sr3(condition, config, run_dir, False, train_config=other, postprocessor=False)
    assert first.stat().st_mtime_ns != mtime  # retrained from scratch, to the end
    latest = load_checkpoint(latest_checkpoint(run_dir))
    assert latest["step"] == joint.steps and TrainConfig.from_json(latest["config"]) == other


def test_a_seed_that_fails_fails_the_rows_naming_it(tmp_path, monkeypatch):
    from cryodiff.benchmark import sr3_joint
    from cryodiff.benchmark.conditions import make_condition

    def broken(condition, config, run_dir, *args, **kwargs):
        raise RuntimeError(f"disk full in {run_dir.name}")

    monkeypatch.setattr(sr3_joint, "train_sr3", broken)
    config = _config(training_seeds=(3, 4))
    rows = sr3_joint.run_sr3_joint(make_condition("phantom", 0.1, config), config, tmp_path)
    assert [(r.method, r.status) for r in rows] == [("sr3v-joint_1", "failed"),
                                                    ("sr3v-joint-ssim_1", "failed")]
    assert rows[0].note == ("training seed 3: RuntimeError: disk full in "
                            "sr3joint_phantom_snr0.1_seed3")
