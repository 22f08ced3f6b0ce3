"""Learnt methods over several training seeds: one row's mean, spread and paired comparison."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from cryodiff.benchmark.evaluate import metrics_2d, paired_difference, paired_psnr_difference
from cryodiff.benchmark.methods import MethodOutput
from cryodiff.benchmark.seeds import (SeededOutput, combine_seed_rows, combine_seeds,
                                      images_per_seed, per_image_psnr, seed_metrics)


def _images(n=6, size=16, levels=(0.1, 0.2, 0.4), seed=0):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randn(n, size, size, generator=gen)
    return target, [target + level * torch.randn(n, size, size, generator=gen)
                    for level in levels]


def test_combine_keeps_the_first_seeds_images_and_each_seeds_2d_ones():
    _, images = _images(n=10)
    runs = [MethodOutput("supervised", "supervised", im, 0.5 * (k + 1), 10.0 * (k + 1),
                         note=f"loss {k}") for k, im in enumerate(images)]
    out = combine_seeds(runs, (0, 1, 2), n_2d=4)
    assert isinstance(out, SeededOutput) and out.status == "ok"
    assert out.images is images[0]  # the whole test set of the first seed (3D)
    assert [len(im) for im in out.seed_images] == [4, 4, 4]
    for mine, theirs in zip(out.seed_images, images):
        torch.testing.assert_close(mine, theirs[:4])
    assert out.seconds_per_image == pytest.approx(1.0) and out.fit_seconds == pytest.approx(20.0)
    assert "mean of 3 training seeds [0, 1, 2]" in out.note and "other seeds differ" in out.note
    assert images_per_seed(out) == out.seed_images
    plain = MethodOutput("lowpass", "lowpass", images[0])
    assert images_per_seed(plain) == (images[0],)


def test_a_failed_seed_fails_the_row_and_names_the_seed():
    _, images = _images()
    runs = [MethodOutput("supervised", "supervised", images[0]),
            MethodOutput("supervised", "supervised", None, status="failed", note="boom")]
    out = combine_seeds(runs, (3, 7), n_2d=4)
    assert out.status == "failed" and out.images is None
    assert out.note == "training seed 7: boom"
    single = combine_seeds(runs[1:], (7,), n_2d=4)
    assert single.note == "boom"  # one seed: nothing to name
    # The failed row still records its seeds, so combine-results can merge it with the rows
    # of runs under other seeds (it then fails the merged row).
    from types import SimpleNamespace

    from cryodiff.benchmark.run import _row

    condition = SimpleNamespace(map_name="phantom", snr=0.1)
    assert _row(out, condition, "cpu")["training_seeds"] == [3, 7]
    assert _row(single, condition, "cpu")["training_seeds"] == [7]
    assert _row(runs[0], condition, "cpu")["training_seeds"] is None  # not a seeded row


def test_a_row_one_seed_did_not_produce_fails_naming_that_seed():
    """sr3v-pm+x0 exists under seed 0 but not under seed 1 (its sr3-pm failed there and was
    named otherwise): every name keeps its row, in first-seen order; none ends the condition."""
    _, images = _images()
    seed0 = {"sr3v_10": MethodOutput("sr3v_10", "sr3", images[0]),
             "sr3v-pm4_10": MethodOutput("sr3v-pm4_10", "sr3-pm", images[1]),
             "sr3v-pm+x0": MethodOutput("sr3v-pm+x0", "sr3-pm+x0", images[2])}
    seed1 = {"sr3v_10": MethodOutput("sr3v_10", "sr3", images[1]),
             "sr3v-pm": MethodOutput("sr3v-pm", "sr3-pm", None, status="failed", note="oom")}
    out = combine_seed_rows([seed0, seed1], (0, 1), n_2d=4)
    assert [o.method for o in out] == ["sr3v_10", "sr3v-pm4_10", "sr3v-pm+x0", "sr3v-pm"]
    by_name = {o.method: o for o in out}
    assert by_name["sr3v_10"].status == "ok" and len(by_name["sr3v_10"].seed_images) == 2
    assert by_name["sr3v-pm+x0"].status == "failed"
    assert by_name["sr3v-pm+x0"].family == "sr3-pm+x0"
    assert by_name["sr3v-pm+x0"].note.startswith("training seed 1: not produced")
    assert by_name["sr3v-pm"].status == "failed" and "training seed 0" in by_name["sr3v-pm"].note
    assert by_name["sr3v-pm"].family == "sr3-pm"


def test_seed_metrics_are_means_over_seeds_with_the_sample_spread():
    target, images = _images()
    out = SeededOutput("m", "m", images[0], seeds=(0, 1, 2), seed_images=tuple(images))
    row = seed_metrics(out, target, 2.0)
    each = [metrics_2d(im, target, 2.0) for im in images]
    psnrs = [m["psnr"] for m in each]
    assert row["seed_psnrs"] == pytest.approx(psnrs)
    assert row["psnr"] == pytest.approx(sum(psnrs) / 3)
    assert row["ssim"] == pytest.approx(sum(m["ssim"] for m in each) / 3)
    assert row["psnr_seed_sd"] == pytest.approx(statistics.stdev(psnrs))
    assert row["ssim_seed_sd"] == pytest.approx(statistics.stdev(m["ssim"] for m in each))
    assert row["n_seeds"] == 3 and row["training_seeds"] == [0, 1, 2]
    # white noise of std s on a unit-variance target: PSNR = 20 log10(range / s)
    expected = (20 * torch.log10((target.amax((-2, -1)) - target.amin((-2, -1))) / 0.1)).mean()
    assert psnrs[0] == pytest.approx(float(expected), abs=0.3)
    one = seed_metrics(SeededOutput("m", "m", images[0], seeds=(4,), seed_images=(images[0],)),
                       target, 2.0)
    assert one["n_seeds"] == 1 and one["psnr_seed_sd"] is None and one["ssim_seed_sd"] is None
    plain = seed_metrics(MethodOutput("lowpass", "lowpass", images[0]), target, 2.0)
    assert "n_seeds" not in plain and plain["psnr"] == pytest.approx(psnrs[0])


def test_paired_difference_on_seed_averaged_psnr():
    target, images = _images(n=12)
    # one seed: the same as pairing the images directly
    mean, sem = paired_difference(per_image_psnr((images[1],), target),
                                  per_image_psnr((images[0],), target))
    expected = paired_psnr_difference(images[1], images[0], target)
    assert mean == pytest.approx(expected[0]) and sem == pytest.approx(expected[1])
    # two seeds: each image's PSNR is averaged over the seeds before pairing
    averaged = per_image_psnr((images[1], images[2]), target)
    from cryodiff.metrics import psnr

    manual = (psnr(images[1].double(), target.double())
              + psnr(images[2].double(), target.double())) / 2
    torch.testing.assert_close(averaged, manual)
    difference = manual - psnr(images[0].double(), target.double())
    mean, sem = paired_difference(averaged, per_image_psnr((images[0],), target))
    assert mean == pytest.approx(float(difference.mean()))
    assert sem == pytest.approx(float(difference.std()) / math.sqrt(12))
    assert paired_difference(averaged[:1], averaged[:1])[1] is None


def test_the_seed_spread_of_a_diverged_seed_is_unknown_not_an_error():
    from cryodiff.benchmark.seeds import _sd

    assert _sd([1.0, 2.0]) == pytest.approx(2 ** -0.5)
    assert _sd([1.0, float("nan")]) is None and _sd([1.0, float("inf")]) is None
    assert _sd([1.0]) is None
