"""Running every method of the comparison on one condition: fit/train, then denoise test images.

Each run returns :class:`MethodOutput` rows holding the denoised images of the first ``n``
test particles (prefixes of the same test set, so 2D subsets and the 3D set agree) and the
seconds per image of the denoising call alone (fitting/training time is reported apart).
A peer that is not installed is skipped with its install hint; a peer that fails is reported
as failed with the error — never dropped silently.

Resuming: the trained baselines (:data:`TRAINED_BASELINES`) save their weights into the
run's work folder once trained, and SR3 keeps its training checkpoints there; a later run with
the same settings and output folder reuses them (an interrupted SR3 training continues from
its last checkpoint) instead of training again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from cryodiff.baselines import make_baseline
from cryodiff.baselines.base import DenoisingData
from cryodiff.baselines.regression import RegressionRecipe
from cryodiff.benchmark.conditions import Condition
from cryodiff.benchmark.config import SLOW_METHODS, BenchmarkConfig
from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import write_json_atomic
from cryodiff.io.keyed_cache import load_keyed, store_keyed
from cryodiff.self_ensemble import self_ensemble
from cryodiff.training.config import TrainConfig, get_preset, with_overrides

TRAINED_BASELINES = ("noise2noise", "supervised", "supervised-l1", "supervised-large",
                     "supervised-2x", "supervised-large-2x", "supervised-2x-ssim",
                     "supervised-large-2x-ssim", "supervised-large-direct-2x",
                     "supervised-large-direct-2x-ssim")
# Trained as the baseline before "-ssim", then on for its SSIM stage (the one
# sr3-x0ft-ssim gets): the base network is the base row's own (its cache is shared).
SSIM_STAGE_BASELINES = ("supervised-2x-ssim", "supervised-large-2x-ssim",
                        "supervised-large-direct-2x-ssim")
SELF_ENSEMBLE_NOTE = "dihedral self-ensemble at test time (8 flips/rotations averaged)"
# The benchmark settings that decide what a trained baseline learns (with the training
# preset, in full): its cache key. Other settings may change without retraining it.
_TRAINING_SETTINGS = ("box", "pixel_size_A", "structural_snr", "n_train", "n_val", "seed")


@dataclass
class MethodOutput:
    """One row's denoised test images ``(n, L, L)`` (None when skipped or failed)."""

    method: str
    family: str
    images: torch.Tensor | None
    seconds_per_image: float | None = None
    fit_seconds: float | None = None
    status: str = "ok"
    note: str = ""


def failed_output(method: str, family: str, error: BaseException) -> MethodOutput:
    """A failed row whose note is the error's type and message on one line (at most 300
    characters, so the table stays a table), a crashing method showing in the table
    instead of ending the run."""
    message = traceback.format_exception_only(type(error), error)[-1]
    return MethodOutput(method, family, None, status="failed",
                        note=" ".join(message.split())[:300])


def train_config_for(config: BenchmarkConfig, condition: Condition) -> TrainConfig:
    """The training preset every trained method shares, at the condition's box and SNR,
    seeded with ``config.training_seed`` (the data keep ``config.seed``)."""
    base = get_preset(config.train_preset)
    steps = config.train_steps if config.train_steps is not None else base.steps
    post_steps = (config.post_train_steps if config.post_train_steps is not None
                  else base.post_train_steps)
    return with_overrides(base, box=config.box, snr=condition.snr, steps=steps,
                          post_train_steps=post_steps, n_val=config.n_val,
                          post_n_samples=min(base.post_n_samples, config.n_train),
                          seed=config.training_seed, device=config.device)


def sr3_train_config(config: BenchmarkConfig, condition: Condition) -> TrainConfig:
    """SR3's training configuration: :func:`train_config_for` with the network predicting
    ``config.sr3_prediction`` (ε or v)."""
    return with_overrides(train_config_for(config, condition),
                          prediction=config.sr3_prediction)


def one_pass_row(denoiser, noisy: torch.Tensor, config: BenchmarkConfig,
                  train_seconds: float | None) -> MethodOutput:
    """``sr3v-x0_1``: a v-predicting SR3's own estimate of the clean image at the noisiest
    level, one network pass from pure noise (there v̂ ≈ −x̂₀, so the network is a regressor of
    the clean image and its output is a posterior-mean estimate; an ε-model's is useless,
    :func:`cryodiff.denoise.one_pass_x0`), with the self-ensemble when the
    configuration has it, as every one-pass network here."""
    from cryodiff.denoise import one_pass_x0

    start = time.perf_counter()

    def x0(images):
        return one_pass_x0(denoiser, images, seed=config.training_seed)

    images = self_ensemble(x0, noisy) if config.self_ensemble else x0(noisy)
    return MethodOutput(config.sr3_row("sr3-x0_1"), "sr3-x0", images,
                        (time.perf_counter() - start) / len(noisy), train_seconds,
                        note="the network's x̂₀ at the noisiest level, one pass from pure noise"
                        + (f"; {SELF_ENSEMBLE_NOTE}" if config.self_ensemble else ""))


def blend_row(rows: list[MethodOutput], config: BenchmarkConfig) -> MethodOutput | None:
    """``sr3v-pm+x0``: the pixelwise mean of a v-predicting SR3's two posterior-mean estimates,
    ``sr3v-pm<K>_<steps>`` (draws refined by the post-processor) and ``sr3v-x0_1`` (the
    network's one-pass x̂₀), on the test particles both cover. Equal weights, fixed in advance
    (nothing is tuned on the test set); their errors are partly independent, so the mean has a
    lower squared error than either when they are about as good. None when ``rows`` lacks
    the x̂₀ row (an ε-run) or sr3-pm was not requested; a failed row when either failed."""
    name = config.sr3_row("sr3-pm+x0")
    x0 = next((row for row in rows if row.family == "sr3-x0"), None)
    pm = next((row for row in rows if row.family == "sr3-pm"), None)
    if pm is None or x0 is None:
        return None
    if pm.images is None or x0.images is None:
        failed = pm if pm.images is None else x0
        return MethodOutput(name, "sr3-pm+x0", None, status="failed",
                            note=f"needs {pm.method} and {x0.method}: {failed.method} "
                            f"{failed.status}")
    n = min(len(pm.images), len(x0.images))
    seconds = None if pm.seconds_per_image is None or x0.seconds_per_image is None \
        else pm.seconds_per_image + x0.seconds_per_image
    return MethodOutput(name, "sr3-pm+x0",
                        (pm.images[:n] + x0.images[:n]) / 2, seconds, pm.fit_seconds,
                        note=f"mean of {pm.method} and {x0.method} (equal weights, fixed in "
                        "advance)")


def _fit_data(name: str, condition: Condition) -> DenoisingData:
    """Trained methods learn from the training split; the rest set parameters on validation."""
    split = condition.train if name in TRAINED_BASELINES else condition.val
    return DenoisingData(noisy=split.noisy, clean_ctf=split.clean_ctf, clean=split.clean,
                         ctf=split.ctf_grid, noisy_pair=split.noisy_pair,
                         pixel_size_A=condition.pixel_size_A)


def _regression_recipe(name: str, train: TrainConfig) -> RegressionRecipe:
    """The trained baselines' recipe: the diffusion model's optimiser, budget and precision
    (issue 16's fair protocol), with the L1 loss for "supervised-l1" and L2 otherwise;
    "supervised-2x" and "supervised-large-2x" train twice the steps (SR3's and the sr3-pm
    post-processor's, or the sr3-x0ft fine-tuning's, together)."""
    if name.removesuffix("-ssim").endswith("-2x"):
        train = dataclasses.replace(train, steps=2 * train.steps)
    return RegressionRecipe.from_train_config(train, "l1" if name == "supervised-l1" else "l2")


def _baseline_options(name: str, train: TrainConfig, device: torch.device) -> dict:
    if name not in TRAINED_BASELINES:
        return {}
    options = {"recipe": _regression_recipe(name, train), "device": device}
    if name.startswith("supervised-large"):
        # SR3's own U-Net shape without its noise-level and condition inputs (matched size).
        return options | {"unet": train.model}
    # The post-processor's backbone without its condition input.
    return options | {"config": dataclasses.replace(train.postprocess, condition_channels=0)}


def test_count(name: str, config: BenchmarkConfig) -> int:
    """How many test particles a baseline denoises: all (3D), the 2D set, or the slow subset."""
    if name in config.methods_3d:
        return config.n_test_3d
    return config.n_test_slow if name in SLOW_METHODS else config.n_test_2d


def data_settings(condition: Condition, config: BenchmarkConfig) -> dict:
    """What decides the data a method trains on (condition, map, box, split sizes, the data
    seed): part of every trained network's cache key."""
    return {"condition": condition.tag, "map": condition.map_spec,
            "settings": {k: getattr(config, k) for k in _TRAINING_SETTINGS}}


def _cache_key(name: str, condition: Condition, config: BenchmarkConfig) -> str:
    settings = {k: getattr(config, k) for k in _TRAINING_SETTINGS}
    train = train_config_for(config, condition)
    # The recipe is in the key too, so weights trained by an older recipe are never reused.
    recipe = dataclasses.asdict(_regression_recipe(name, train)) \
        if name in TRAINED_BASELINES else None
    return json.dumps({"method": name, "condition": condition.tag, "map": condition.map_spec,
                       "settings": settings, "training": train.to_json(), "recipe": recipe},
                      sort_keys=True)


def _reuse_trained(baseline, cache: Path, key: str) -> float | None:
    """Load ``baseline`` from ``cache`` if it was trained with ``key``; its training seconds."""
    saved = load_keyed(cache, key)
    if saved is None:
        return None
    try:
        baseline.load_state(saved["state"])
        return float(saved["fit_seconds"])
    except Exception:  # a damaged cache is retrained, never trusted
        return None


def run_baseline(name: str, condition: Condition, config: BenchmarkConfig,
                 device: torch.device, cache_dir: Path | None = None) -> MethodOutput:
    """Fit baseline ``name`` and denoise the first :func:`test_count` test particles.

    With ``cache_dir``, a trained baseline is saved there (``<condition>_<name>.pt``) and a
    saved one trained with the same settings is reused instead of training again.
    """
    n = test_count(name, config)
    test = condition.test
    try:
        if name in SSIM_STAGE_BASELINES:
            baseline, fit_seconds, reused = _ssim_staged(name, condition, config, device,
                                                         cache_dir)
        else:
            baseline, fit_seconds, reused = _trained(name, condition, config, device,
                                                     cache_dir)
        start = time.perf_counter()
        ensemble = config.self_ensemble and name in TRAINED_BASELINES
        if ensemble:  # the trained networks take no CTF input: only the image is transformed
            images = self_ensemble(baseline.denoise, test.noisy[:n])
        else:
            images = baseline.denoise(test.noisy[:n], None if test.ctf_grid is None
                                      else test.ctf_grid[:n])
        seconds = (time.perf_counter() - start) / n
    except CryodiffError as error:
        return MethodOutput(name, name, None, status="skipped", note=str(error))
    except Exception as error:  # a peer crashing must show in the table, not end the run
        return failed_output(name, name, error)
    note = _baseline_note(name, baseline)
    if ensemble:
        note += f"; {SELF_ENSEMBLE_NOTE}"
    if reused:
        note += "; trained by an earlier run with the same settings (reused)"
    return MethodOutput(name, name, images.float(), seconds, fit_seconds, note=note)


def _trained(name: str, condition: Condition, config: BenchmarkConfig, device: torch.device,
             cache_dir: Path | None):
    """``(baseline, fit seconds, reused)``: ``name`` fitted, or a trained one loaded from
    ``cache_dir/<condition>_<name>.pt`` when it was trained with the same settings."""
    cache = cache_dir / f"{condition.tag}_{name}.pt" \
        if cache_dir is not None and name in TRAINED_BASELINES else None
    baseline = make_baseline(name, **_baseline_options(
        name, train_config_for(config, condition), device))
    key = _cache_key(name, condition, config)
    fit_seconds = None if cache is None else _reuse_trained(baseline, cache, key)
    reused = fit_seconds is not None
    if not reused:
        start = time.perf_counter()
        baseline.fit(_fit_data(name, condition))
        fit_seconds = time.perf_counter() - start
        if cache is not None:
            store_keyed(cache, key, state=baseline.state(), fit_seconds=fit_seconds)
    return baseline, fit_seconds, reused


def _ssim_staged(name: str, condition: Condition, config: BenchmarkConfig,
                 device: torch.device, cache_dir: Path | None):
    """``(baseline, fit seconds, reused)`` of an :data:`SSIM_STAGE_BASELINES` row: its base
    network (trained or reused as the base row's) trained on for the SSIM stage (a tenth of
    the training preset's steps, as ``sr3v-x0ft-ssim_1``'s), cached as
    ``cache_dir/<condition>_<name>.pt`` under a key of the stage and the base's exact
    weights, with both stages' seconds."""
    from cryodiff.baselines.regression import SSIM_WEIGHT, ssim_stage_recipe
    from cryodiff.training.checkpoint import weights_digest

    base_name = name.removesuffix("-ssim")
    train = train_config_for(config, condition)
    base, base_seconds, _ = _trained(base_name, condition, config, device, cache_dir)
    stage = ssim_stage_recipe(base.recipe, train.steps)
    key = json.dumps({"base": _cache_key(base_name, condition, config),
                      "base_weights": weights_digest(base.model.state_dict()),
                      "ssim_stage": dataclasses.asdict(stage), "ssim_weight": SSIM_WEIGHT,
                      "loss_units": "the target's variance"}, sort_keys=True)
    cache = None if cache_dir is None else cache_dir / f"{condition.tag}_{name}.pt"
    if cache is not None:
        staged = make_baseline(name, **_baseline_options(name, train, device))
        fit_seconds = _reuse_trained(staged, cache, key)
        if fit_seconds is not None:
            return staged, fit_seconds, True
    start = time.perf_counter()
    staged = base.ssim_stage(_fit_data(base_name, condition), budget_steps=train.steps)
    fit_seconds = base_seconds + time.perf_counter() - start
    if cache is not None:
        store_keyed(cache, key, state=staged.state(), fit_seconds=fit_seconds)
    return staged, fit_seconds, False


def _baseline_note(name: str, baseline) -> str:
    if name in ("lowpass", "bm3d", "topaz", "cwf", "cwf-2d"):
        return baseline.describe()  # the parameters chosen and where they came from
    if name in TRAINED_BASELINES:
        last = baseline.losses[-20:]
        note = (f"{baseline.recipe.describe(baseline.device)}, "
                f"{baseline.parameter_count() / 1e6:.2f} M "
                f"parameters, {baseline.recipe.steps} steps × {baseline.recipe.batch_size}")
        loss = "final training loss"
        if name in SSIM_STAGE_BASELINES:
            from cryodiff.baselines.regression import SSIM_WEIGHT

            stage_steps = len(baseline.losses) - baseline.recipe.steps
            note += (f", then its SSIM stage: {stage_steps} steps with L2 + {SSIM_WEIGHT} · "
                     "(1 − SSIM) at a fifth of the learning rate (as sr3v-x0ft-ssim_1)")
            loss = "final loss of the stage (L2 + SSIM term)"
        return note + f"; {loss} {sum(last) / max(len(last), 1):.4g}"
    return ""


def noisy_output(condition: Condition) -> MethodOutput:
    """The raw particles as a 'method' (the reference every denoiser must beat)."""
    return MethodOutput("noisy", "noisy", condition.test.noisy, 0.0, 0.0,
                        note="raw particles")


def _sr3_training_seconds(run_dir: Path) -> float:
    """SR3 training time recorded in the run's metrics (summed over resumed sessions)."""
    metrics = run_dir / "metrics.json"
    rows = json.loads(metrics.read_text()) if metrics.is_file() else []
    return float(rows[-1]["elapsed_s"]) if rows else 0.0


def train_sr3(condition: Condition, config: BenchmarkConfig, run_dir: Path,
              progress: bool = True, train_config: TrainConfig | None = None,
              postprocessor: bool = True):
    """Train SR3 and its post-processor on the condition (or reuse a finished identical run,
    or continue an interrupted one from its last checkpoint).

    SR3 trains on the training split, as the other trained methods, and validates on the
    validation split. ``train_config``: the network's configuration if not SR3's
    (:func:`sr3_train_config`; e.g. sr3-joint's); ``postprocessor=False`` trains none. A
    run trained with another configuration (the number of checkpoints kept aside) or other
    data is deleted and trained afresh.
    Returns ``(Denoiser, train_seconds)``: SR3's training time over every session that
    trained it plus the post-processor's, as recorded in ``RUN/train_seconds.json``.
    """
    from cryodiff.denoise import load_denoiser
    from cryodiff.training.checkpoint import latest_checkpoint, load_checkpoint
    from cryodiff.training.data import PairedStackData
    from cryodiff.training.loop import select_device, train
    from cryodiff.training.postprocess import train_postprocessor

    train_config = train_config or sr3_train_config(config, condition)
    device = select_device(config.device, verbose=False)
    latest, trained_steps = latest_checkpoint(run_dir), 0
    seconds_file = run_dir / "train_seconds.json"
    settings_file, settings = run_dir / "benchmark_data.json", data_settings(condition, config)
    if latest is not None:
        state = load_checkpoint(latest)
        same_data = settings_file.is_file() and json.loads(settings_file.read_text()) == \
            json.loads(json.dumps(settings))
        saved = dataclasses.replace(TrainConfig.from_json(state["config"]),  # not in what
                                    keep_checkpoints=train_config.keep_checkpoints)  # it learns
        if saved != train_config or not same_data:
            shutil.rmtree(run_dir)  # trained on other data or settings: start afresh
            trained_steps = 0
        elif int(state["step"]) == train_config.steps and (
                state.get("postprocess") is not None or not postprocessor):
            recorded = json.loads(seconds_file.read_text()) if seconds_file.is_file() \
                else {"sr3_training_s": _sr3_training_seconds(run_dir)}  # an older run
            return load_denoiser(latest, device), float(sum(recorded.values()))
        else:
            trained_steps = int(state["step"])
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(settings_file, settings)
    data = PairedStackData(condition.train.noisy, condition.train.clean_ctf, train_config,
                           pixel_size_A=condition.pixel_size_A,
                           validation=(condition.val.noisy, condition.val.clean_ctf))
    if trained_steps < train_config.steps:  # fresh, or continue an interrupted run
        train(train_config, run_dir, data, resume=trained_steps > 0, progress=progress)
    seconds = {"sr3_training_s": _sr3_training_seconds(run_dir)}
    if postprocessor:
        start = time.perf_counter()
        train_postprocessor(run_dir, data, device=str(device), progress=progress)
        seconds["postprocessor_s"] = time.perf_counter() - start
    write_json_atomic(seconds_file, seconds)
    return load_denoiser(run_dir, device), float(sum(seconds.values()))


def load_sr3(checkpoint, device: str = "auto"):
    """A trained denoiser from a run folder or checkpoint (e.g. notebook 02's run)."""
    from cryodiff.denoise import load_denoiser
    from cryodiff.training.loop import select_device

    return load_denoiser(checkpoint, select_device(device, verbose=False))


def check_sr3_checkpoint(train: TrainConfig, config: BenchmarkConfig, checkpoint) -> None:
    """Raise :class:`CryodiffError` (naming ``checkpoint``) unless the SR3 model trained with
    ``train`` fits ``config``: its box and what its network predicts (``sr3_prediction``, which
    names the rows ``sr3…`` or ``sr3v…``)."""
    if train.box != config.box:
        raise CryodiffError(f"the checkpoint was trained on {train.box} px images, the "
                            f"benchmark uses {config.box} px", path=checkpoint)
    if train.model.prediction != config.sr3_prediction:
        raise CryodiffError(f"the checkpoint predicts {train.model.prediction}, the benchmark "
                            f"expects {config.sr3_prediction}: pass --sr3-prediction "
                            f"{train.model.prediction}", path=checkpoint)


def checkpoint_config(checkpoint) -> TrainConfig:
    """The training configuration stored in a run folder's latest checkpoint or a file."""
    from cryodiff.training.checkpoint import load_checkpoint, resolve_checkpoint

    return TrainConfig.from_json(load_checkpoint(resolve_checkpoint(checkpoint))["config"])


def find_trained_run(folder) -> TrainConfig | None:
    """The training configuration of the run in ``folder`` if it holds a checkpoint (e.g.
    notebook 02's ``{run_dir}/train``), else None."""
    from cryodiff.training.checkpoint import latest_checkpoint, load_checkpoint

    latest = latest_checkpoint(folder) if Path(folder).is_dir() else None
    if latest is None:
        return None
    return TrainConfig.from_json(load_checkpoint(latest)["config"])


@torch.no_grad()
def _postprocess(denoiser, samples: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """Apply the post-processor to raw-unit samples, as ``posterior_samples`` does."""
    norm, device = denoiser.normalisation, next(denoiser.postprocessor.parameters()).device
    out = []
    for start in range(0, len(samples), 256):
        s = norm.target(samples[start:start + 256])[:, None].to(device)
        c = norm.condition(noisy[start:start + 256])[:, None].to(device)
        out.append(norm.denormalise(denoiser.postprocessor(s, c)[:, 0]).cpu())
    return torch.cat(out)


def run_sr3(denoiser, condition: Condition, config: BenchmarkConfig,
            train_seconds: float | None = None, progress: bool = False) -> list[MethodOutput]:
    """SR3 rows: plain and post-processed at every step count, and the posterior mean.

    Each step count is sampled once (``config.sr3_sampler``, draws seeded by
    ``config.training_seed``); the post-processor is applied to those same
    samples, so the two rows differ only by it. The ``sr3_fast_steps`` rows cover the whole
    test set when SR3 is in ``methods_3d``; slow step counts use the ``n_test_slow`` subset.
    """
    from cryodiff.denoise import denoise_images

    test, rows = condition.test, []
    device = next(denoiser.model.parameters()).device
    if denoiser.config.target != "clean_ctf":
        raise CryodiffError(f"the benchmark compares against clean_ctf; this model was trained "
                            f"for the {denoiser.config.target!r} target")
    for steps in config.sr3_steps:
        if steps == config.sr3_fast_steps and "sr3" in config.methods_3d:
            n = config.n_test_3d
        else:
            n = config.n_test_slow if steps > config.slow_step_threshold else config.n_test_2d
        noisy = test.noisy[:n]
        start = time.perf_counter()
        samples = denoise_images(denoiser.model, noisy, denoiser.normalisation,
                                 denoiser.schedule, steps=steps, sampler=config.sr3_sampler,
                                 seed=config.training_seed, batch_size=256, device=device,
                                 progress=progress).mean
        seconds = (time.perf_counter() - start) / n
        rows.append(MethodOutput(config.sr3_row(f"sr3_{steps}"), "sr3", samples, seconds, train_seconds,
                                 note=f"{steps} {config.sr3_sampler.upper()} steps, no post-processor"))
        if denoiser.postprocessor is None:
            continue
        start = time.perf_counter()
        refined = _postprocess(denoiser, samples, noisy)
        rows.append(MethodOutput(config.sr3_row(f"sr3+pp_{steps}"), "sr3+pp", refined,
                                 seconds + (time.perf_counter() - start) / n, train_seconds,
                                 note=f"{steps} {config.sr3_sampler.upper()} steps + post-processor"))
    k, steps, n = config.posterior_samples, config.sr3_fast_steps, config.n_test_2d
    if k > 1:
        start = time.perf_counter()
        result = denoise_images(denoiser.model, test.noisy[:n], denoiser.normalisation,
                                denoiser.schedule, steps=steps, sampler=config.sr3_sampler, n_samples=k,
                                postprocessor=denoiser.postprocessor,
                                seed=config.training_seed + 1,
                                batch_size=256, device=device, progress=progress)
        pp = " + post-processor" if denoiser.postprocessor is not None else ""
        rows.append(MethodOutput(config.sr3_row(f"sr3_mean{k}_{steps}"), "sr3-mean", result.mean,
                                 (time.perf_counter() - start) / n, train_seconds,
                                 note=f"mean of {k} samples, {steps} {config.sr3_sampler.upper()} steps{pp}"))
    if config.sr3_prediction == "v":
        try:
            rows.append(one_pass_row(denoiser, test.noisy[:n], config, train_seconds))
        except Exception as error:  # the SR3 rows already measured stay in the table
            rows.append(failed_output(config.sr3_row("sr3-x0_1"), "sr3-x0", error))
    return rows

