"""Keyed caches: reused only under the same key; missing, other or damaged files are not."""

from __future__ import annotations

import shutil

import torch

from cryodiff.io.keyed_cache import load_keyed, store_keyed


def test_round_trip_and_other_key(tmp_path):
    cache = tmp_path / "c.pt"
    key = {"recipe": [1, 2.5, "ddpm"], "step": 400}
    store_keyed(cache, key, state={"w": torch.arange(3.0)}, fit_seconds=1.5)
    saved = load_keyed(cache, {"step": 400, "recipe": [1, 2.5, "ddpm"]})
    assert saved["fit_seconds"] == 1.5 and torch.equal(saved["state"]["w"], torch.arange(3.0))
    assert load_keyed(cache, {"recipe": [1, 2.5, "ddim"], "step": 400}) is None
    assert load_keyed(tmp_path / "missing.pt", key) is None and load_keyed(None, key) is None
    assert not any(p.name.startswith(".c") for p in tmp_path.iterdir())  # no temporary left


def test_damaged_or_foreign_files_are_not_trusted(tmp_path):
    cache = tmp_path / "c.pt"
    cache.write_bytes(b"not a torch file")
    assert load_keyed(cache, "k") is None
    torch.save([1, 2], cache)  # not a dict
    assert load_keyed(cache, "k") is None
    store_keyed(cache, "k", x=torch.ones(4))
    cache.write_bytes(cache.read_bytes()[:40])  # truncated
    assert load_keyed(cache, "k") is None


def test_damaged_postprocessor_cache_is_sampled_again(tmp_path):
    """The paper's post-processor cache (RUN/postprocess_cache.pt) is keyed the same way: a
    damaged one is sampled again rather than crashing or being trusted."""
    from cryodiff.training.data import PairedStackData
    from cryodiff.training.loop import train
    from cryodiff.training.postprocess import CACHE, sampler_outputs
    from training_helpers import blob_pairs, tiny_config

    config = tiny_config(steps=2, val_every=100)
    data = PairedStackData(*blob_pairs(20, 16), config)
    run = tmp_path / "run"
    train(config, run, data, progress=False)
    first = sampler_outputs(run, data, torch.device("cpu"), progress=False)
    shutil.copy(run / CACHE, tmp_path / "good.pt")
    (run / CACHE).write_bytes(b"\x00garbage")
    again = sampler_outputs(run, data, torch.device("cpu"), progress=False)
    assert torch.equal(first["sample"], again["sample"])  # same seed: the same samples
    assert load_keyed(run / CACHE, [2, config.post_n_samples, config.post_sampling_steps,
                                    config.post_sampler]) is not None
