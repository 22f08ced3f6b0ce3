"""The training loop: exact resume after an interruption, and DDP on two CPU processes."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from cryodiff.errors import CryodiffError
from cryodiff.training.checkpoint import load_checkpoint
from cryodiff.training.data import PairedStackData
from cryodiff.training.loop import device_label, ema_decay_at, initial_model, select_device, train
from training_helpers import blob_pairs, tiny_config


def _losses(run_dir):
    return [row["loss"] for row in json.loads((run_dir / "metrics.json").read_text())]


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    config = tiny_config(steps=6, checkpoint_every=3, val_every=100)
    data = PairedStackData(*blob_pairs(40, 16), config)
    full = train(config, tmp_path / "full", data, progress=False)
    # "Kill" the run after step 4 (one step past the checkpoint at 3), then resume it.
    train(config, tmp_path / "cut", data, progress=False, stop_at=4)
    resumed = train(config, tmp_path / "cut", data, progress=False, resume=True)
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "full")
    assert len(_losses(tmp_path / "full")) == 6
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(full.ema.parameters(), resumed.ema.parameters()):
        assert torch.equal(a, b)
    # The losses change from step to step, so equality above is not trivially true.
    assert len(set(_losses(tmp_path / "full"))) == 6
    # Training time goes on across the resume instead of starting again from zero.
    rows = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    elapsed = [row["elapsed_s"] for row in rows]
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert all(later > earlier for earlier, later in zip(elapsed, elapsed[1:]))


def test_a_shorter_run_ends_where_a_longer_run_is_at_that_step(tmp_path):
    # The learning rate and the EMA ramp depend on the step only, never on the total: an
    # N-step run is the first N steps of a longer one (x0ft_levers.py --sr3-stops-there).
    data = PairedStackData(*blob_pairs(40, 16), tiny_config())
    short = train(tiny_config(steps=3, val_every=100), tmp_path / "short", data, progress=False)
    train(tiny_config(steps=6, val_every=100), tmp_path / "long", data, progress=False)
    at_3 = load_checkpoint(tmp_path / "long" / "checkpoints" / "step_00000003.pt")
    for name, tensor in short.model.state_dict().items():
        assert torch.equal(tensor, at_3["model"][name]), name
    for name, tensor in short.ema.state_dict().items():
        assert torch.equal(tensor, at_3["ema"][name]), name
    assert _losses(tmp_path / "short") == _losses(tmp_path / "long")[:3]


def test_a_run_starts_from_its_initial_model(tmp_path):
    # x0ft_levers.py --from-step 0 fine-tunes initial_model(config): the weights train()
    # starts from. One step at a negligible learning rate leaves them within 1e-7.
    config = tiny_config(steps=1, lr=1e-10, checkpoint_every=1, val_every=100)
    train(config, tmp_path / "run", PairedStackData(*blob_pairs(40, 16), config),
          progress=False)
    after_one_step = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000001.pt")
    start, other_seed = initial_model(config), initial_model(tiny_config(seed=1))
    for name, tensor in start.state_dict().items():
        assert torch.allclose(tensor, after_one_step["model"][name], atol=1e-7), name
    assert not all(torch.allclose(tensor, other_seed.state_dict()[name], atol=1e-3)
                   for name, tensor in start.state_dict().items())


def test_a_readout_fraction_teaches_the_network_its_one_pass_readout(tmp_path):
    # Measured (60 steps, seeds 0, 1, 2): the readout rows lift the one-pass x̂₀ on held-out
    # blobs by 1.4, 0.6 and 0.8 dB over SR3's objective at the same steps.
    from cryodiff.denoise import load_denoiser, one_pass_x0
    from cryodiff.metrics import psnr
    from cryodiff.training.config import TrainConfig

    noisy, clean = blob_pairs(200, 16)
    held_out_noisy, held_out_clean = blob_pairs(64, 16, seed=9)
    scores = {}
    for fraction in (0.0, 0.5):
        config = tiny_config(steps=60, val_every=1000, checkpoint_every=60, loss="l2",
                             prediction="v", readout_fraction=fraction)
        train(config, tmp_path / str(fraction), PairedStackData(noisy, clean, config),
              progress=False)
        denoiser = load_denoiser(tmp_path / str(fraction))
        assert denoiser.config.readout_fraction == fraction  # kept in the checkpoint
        scores[fraction] = float(psnr(one_pass_x0(denoiser, held_out_noisy),
                                      held_out_clean).mean())
    assert scores[0.5] > scores[0.0] + 0.3, scores
    saved = json.loads((tmp_path / "0.5" / "config.json").read_text())
    assert saved["readout_fraction"] == 0.5
    # SR3's objective leaves the field out, so earlier runs and caches keep their keys.
    assert "readout_fraction" not in json.loads((tmp_path / "0.0" / "config.json").read_text())
    assert TrainConfig.from_dict(saved) == tiny_config(
        steps=60, val_every=1000, checkpoint_every=60, loss="l2", prediction="v",
        readout_fraction=0.5)
    with pytest.raises(CryodiffError, match="v-predicting"):
        tiny_config(readout_fraction=0.5)  # an ε-network has no readout to train


def test_resume_refuses_a_different_configuration(tmp_path):
    config = tiny_config(steps=3, val_every=100)
    data = PairedStackData(*blob_pairs(40, 16), config)
    train(config, tmp_path / "run", data, progress=False)
    with pytest.raises(CryodiffError, match="different configuration"):
        train(tiny_config(steps=6, lr=1e-2, val_every=100), tmp_path / "run", data,
              progress=False, resume=True)
    with pytest.raises(CryodiffError, match="already holds checkpoints"):
        train(config, tmp_path / "run", data, progress=False)
    with pytest.raises(CryodiffError, match="no checkpoint"):
        train(config, tmp_path / "other", data, progress=False, resume=True)


def test_training_lowers_the_loss(tmp_path):
    config = tiny_config(steps=60, log_every=20, val_every=1000, checkpoint_every=1000,
                         lr=2e-3, batch_size=8)
    data = PairedStackData(*blob_pairs(200, 16), config)
    losses = [r["loss"] for r in train(config, tmp_path / "run", data, progress=False).metrics]
    assert losses[-1] < 0.8 * losses[0]


def test_ema_decay_ramps_up():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(10**6, 0.999) == 0.999


def test_explicit_unavailable_device_is_a_clear_error():
    if not torch.cuda.is_available():
        with pytest.raises(CryodiffError, match="CUDA is not available"):
            select_device("cuda", verbose=False)
    assert select_device("cpu", verbose=False).type == "cpu"


def test_a_benchmark_row_names_the_gpu_model_so_two_gpus_do_not_pass_as_one(monkeypatch):
    assert device_label(torch.device("cpu")) == "cpu"
    models = {0: "NVIDIA H100 80GB HBM3", 1: "NVIDIA H200"}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: models[device.index])
    assert device_label(torch.device("cuda", 0)) == "cuda (NVIDIA H100 80GB HBM3)"
    assert device_label(torch.device("cuda", 1)) == "cuda (NVIDIA H200)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    config = tiny_config(steps=4, val_every=100, checkpoint_every=2)
    data = PairedStackData(*blob_pairs(40, 16), config)
    result = train(config, os.path.join(out_dir, "run"), data, progress=False)
    torch.save({k: v.clone() for k, v in result.model.state_dict().items()},
               os.path.join(out_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_identical_weights(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # Only rank 0 wrote the run folder; the logged loss is averaged over both ranks.
    assert (tmp_path / "run" / "checkpoints" / "step_00000004.pt").is_file()
    assert len(json.loads((tmp_path / "run" / "metrics.json").read_text())) == 4
