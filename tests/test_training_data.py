"""Training data: augmentation, deterministic sharded batches, normalisation, errors."""

from __future__ import annotations

import pytest
import torch

from cryodiff.errors import CryodiffError
from cryodiff.training.data import PairedStackData, augment_pairs, open_training_data
from training_helpers import blob_pairs, tiny_config


@pytest.mark.parametrize("box", [15, 16])
def test_augmentation_transforms_both_images_identically(box):
    condition = torch.randn(64, box, box)
    out_c, out_t = augment_pairs(condition, condition * 2 + 1, torch.Generator().manual_seed(0))
    assert torch.equal(out_t, out_c * 2 + 1)
    # Each output is one of the 8 dihedral images of its input, and not always the identity.
    changed = (out_c != condition).flatten(1).any(1)
    assert 0 < int(changed.sum()) < 64
    for c, o in zip(condition, out_c):
        variants = [torch.rot90(x, k, (-2, -1)) for x in (c, c.flip(-1)) for k in range(4)]
        assert any(torch.equal(o, v) for v in variants)


def test_augmentation_applies_the_generators_draw_to_each_pair():
    # Pair i gets dihedral element ops[i] of one randint draw: op ≥ 4 flips the last axis,
    # then op % 4 quarter turns (the mapping checkpoints and benchmark runs were made with).
    condition, generator = torch.randn(40, 12, 12), torch.Generator().manual_seed(3)
    ops = torch.randint(0, 8, (40,), generator=torch.Generator().manual_seed(3))
    out_c, _ = augment_pairs(condition, condition.clone(), generator)
    for c, o, op in zip(condition, out_c, ops.tolist()):
        expected = torch.rot90(c.flip(-1) if op >= 4 else c, op % 4, (-2, -1))
        assert torch.equal(o, expected)


def test_batches_are_deterministic_and_ranks_disjoint():
    config = tiny_config()
    data = PairedStackData(*blob_pairs(50, 16), config)
    n = len(data)
    assert n == 50 - 8 and data.val_condition.shape == (8, 16, 16)
    a = data.batch_indices(3, 4, rank=0, world=2)
    b = data.batch_indices(3, 4, rank=1, world=2)
    assert set(a.tolist()).isdisjoint(b.tolist())
    assert torch.equal(a, data.batch_indices(3, 4, rank=0, world=2))
    # One epoch of global batches covers every training pair exactly once.
    steps = n // 8
    seen = torch.cat([data.batch_indices(s, 4, r, 2) for s in range(steps) for r in range(2)])
    assert len(set(seen.tolist())) == len(seen) == steps * 8


def test_normalisation_uses_training_pairs_only():
    config = tiny_config()
    noisy, clean = blob_pairs(50, 16)
    data = PairedStackData(noisy, clean, config)
    norm = data.normalisation
    assert norm.condition_mean == pytest.approx(float(data.train_condition.mean()), rel=1e-5)
    assert norm.target_std == pytest.approx(float(data.train_target.std()), rel=1e-5)
    y = torch.randn(3, 16, 16)
    assert torch.allclose(norm.denormalise(norm.target(y)), y, atol=1e-5)


def test_bad_data_sources_raise_clear_errors(tmp_path):
    config = tiny_config()
    with pytest.raises(CryodiffError, match="not found"):
        open_training_data(config, data_dir=tmp_path / "missing")
    with pytest.raises(CryodiffError, match="missing particles.mrcs"):
        open_training_data(config, data_dir=tmp_path)
    with pytest.raises(CryodiffError, match="exactly one"):
        open_training_data(config)


@pytest.mark.parametrize("box", [32, 33])  # the phantom starts at 32 pixels
def test_simulated_data_is_seeded_fresh_and_at_the_requested_snr(box):
    from cryodiff.simulate import disk_variance
    from cryodiff.training.data import SimulatedData

    config = tiny_config(box=box, snr=0.2, n_val=6)
    data = open_training_data(config, map_spec="phantom")
    assert isinstance(data, SimulatedData) and data.box == box
    assert data.val_condition.shape == data.val_target.shape == (6, box, box)
    condition, target = data.train_batch(5, 32)
    assert condition.shape == target.shape == (32, box, box)
    again = data.train_batch(5, 32)
    assert torch.equal(condition, again[0]) and torch.equal(target, again[1])
    # New particles every step and on every rank; validation particles are never drawn.
    assert not torch.equal(target, data.train_batch(6, 32)[1])
    assert not torch.equal(target, data.train_batch(5, 32, rank=1, world=2)[1])
    assert not any(torch.allclose(v, t) for v in data.val_target for t in target)
    # The pairs carry the configured SNR (signal and noise variance in the particle disk).
    snr = float(disk_variance(target).mean() / disk_variance(condition - target).mean())
    assert snr == pytest.approx(0.2, rel=0.3)
    assert data.normalisation.condition_std > data.normalisation.target_std > 0


def test_simulated_data_clean_target_has_no_ctf():
    from cryodiff.training.data import SimulatedData

    with_ctf = SimulatedData("phantom", tiny_config(32, target="clean_ctf"), n_normalisation=8)
    restored = SimulatedData("phantom", tiny_config(32, target="clean"), n_normalisation=8)
    # Same seeds, so the same particles; only the target differs (CTF applied or not).
    assert torch.equal(with_ctf.val_condition, restored.val_condition)
    assert not torch.allclose(with_ctf.val_target, restored.val_target)


def test_given_validation_pairs_keep_every_training_pair_in_order():
    config = tiny_config()
    noisy, clean = blob_pairs(30, 16)
    data = PairedStackData(noisy[:24], clean[:24], config, validation=(noisy[24:], clean[24:]))
    assert torch.equal(data.train_condition, noisy[:24]) and torch.equal(data.train_target,
                                                                         clean[:24])
    assert torch.equal(data.val_condition, noisy[24:]) and torch.equal(data.val_target,
                                                                       clean[24:])
    assert data.normalisation.condition_mean == pytest.approx(float(noisy[:24].mean()),
                                                              rel=1e-5)
