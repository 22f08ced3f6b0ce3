"""Keyed caches: reused only under the same key; missing, other or damaged files are not."""

from __future__ import annotations

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


def test_postprocessor_cache_is_keyed_by_weights_and_damage_resampled(tmp_path, monkeypatch):
    """The paper's post-processor cache (RUN/postprocess_cache.pt): a damaged one is sampled
    again rather than crashing or being trusted, and so is one made by other weights at the
    same step (a network retrained in the same folder)."""
    import cryodiff.training.postprocess as post
    from cryodiff.training import checkpoint as ckpt
    from cryodiff.training.data import PairedStackData
    from cryodiff.training.loop import train
    from training_helpers import blob_pairs, tiny_config

    config = tiny_config(steps=2, val_every=100)
    data = PairedStackData(*blob_pairs(20, 16), config)
    run = tmp_path / "run"
    train(config, run, data, progress=False)
    calls = []
    original = post.denoise_images
    monkeypatch.setattr(post, "denoise_images",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    first = post.sampler_outputs(run, data, torch.device("cpu"), progress=False)
    post.sampler_outputs(run, data, torch.device("cpu"), progress=False)
    assert calls == [1]  # reused
    (run / post.CACHE).write_bytes(b"\x00garbage")
    again = post.sampler_outputs(run, data, torch.device("cpu"), progress=False)
    assert calls == [1, 1] and torch.equal(first["sample"], again["sample"])  # same seed
    state = ckpt.load_checkpoint(run)
    state["ema"] = {k: v + 0.01 if v.is_floating_point() else v
                    for k, v in state["ema"].items()}
    ckpt.save_checkpoint(state.pop("path"), {k: v for k, v in state.items()
                                             if k not in ("format", "cryodiff_version")})
    post.sampler_outputs(run, data, torch.device("cpu"), progress=False)
    assert calls == [1, 1, 1]
