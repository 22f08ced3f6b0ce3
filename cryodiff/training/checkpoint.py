"""Training checkpoints: everything needed to resume a run exactly, or to denoise with it.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, lists and
dicts, so it loads with ``torch.load(..., weights_only=True)`` (no pickled classes). The
configuration travels as a JSON string. Files live in ``RUN/checkpoints/step_00001000.pt``
and are written atomically, so a run killed while saving leaves the previous one intact.

Keys: ``format``, ``cryodiff_version``, ``step``, ``config`` (JSON of
:class:`~cryodiff.training.config.TrainConfig`), ``normalisation`` (dict of floats),
``model``, ``ema``, ``optimizer`` (state dicts), ``rng`` (torch CPU / CUDA generator states),
``postprocess`` (state dict of the post-processing U-Net, or absent), ``pm_postprocess``
(``sr3-pm``'s post-processor, or absent: ``weights`` (state dict), ``draws``,
``sampling_steps``, ``sampler``, ``particles``, ``steps``), ``x0_finetune`` (``x0ft``'s fine-tuned
copy of the network, or absent: ``weights``, ``particles``, ``steps``), ``pixel_size_A`` (Å of the
training images; absent when unknown, e.g. in-memory pairs without one, or older runs).

Loading never executes anything from the file (``weights_only=True`` refuses pickled code) and
checks the content before use; every failure is one plain line naming the file: missing,
unreadable, truncated, not a PyTorch file, holding objects other than tensors, not a cryodiff
checkpoint, or with a damaged configuration, normalisation or weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from cryodiff import __version__
from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import atomic_path, describe_os_error

FORMAT = "cryodiff-checkpoint-1"
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    """``RUN/checkpoints/step_{step:08d}.pt``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The checkpoints of a run folder sorted by step (oldest first); empty if none."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``run_dir``, or ``None`` if there is none."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file from a run folder (its latest checkpoint) or a file path.

    Raises :class:`CryodiffError` if the path does not exist or the folder has no checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CryodiffError(f"no checkpoint found (expected {CHECKPOINT_DIR}/step_*.pt)",
                                path=path)
        return latest
    if not path.is_file():
        raise CryodiffError("checkpoint not found", path=path)
    return path


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (see the module docstring for keys) atomically; adds format/version."""
    payload = {"format": FORMAT, "cryodiff_version": __version__, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def store_entry(path: str | os.PathLike, key: str, value: Any) -> Path:
    """Add (or replace) entry ``key`` of the checkpoint file ``path`` or a run folder's
    latest, re-read just before writing so that entries stored meanwhile are kept (a
    post-processor trained beside another); atomic. Returns the file."""
    file = resolve_checkpoint(path)
    state = load_checkpoint(file)
    state = {k: v for k, v in state.items() if k not in ("format", "cryodiff_version", "path")}
    return save_checkpoint(file, state | {key: value})


def weights_digest(weights: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, shapes, dtypes and values: identifies the exact
    weights a cached result was computed with (a retrained network at the same step differs)."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes()
                      if tensor.numel() else b"")
    return digest.hexdigest()


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Load a checkpoint file or a run folder's latest checkpoint with ``weights_only=True``.

    Raises :class:`CryodiffError` (one line, naming the file) when it is missing, truncated,
    not a torch file, or not a cryodiff checkpoint.
    """
    file = resolve_checkpoint(path)
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for damaged files (even IndexError)
        raise CryodiffError(_load_failure(error), path=file) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CryodiffError(f"not a cryodiff checkpoint (expected format {FORMAT})", path=file)
    missing = [k for k in ("step", "config", "normalisation", "model", "ema") if k not in state]
    if missing:
        raise CryodiffError(f"checkpoint is missing {', '.join(missing)}", path=file)
    _check_content(state, file)
    state["path"] = str(file)
    return state


def _load_failure(error: Exception) -> str:
    """Why ``torch.load`` failed, in plain words (PyTorch's own text is long and technical)."""
    text = str(error)
    if isinstance(error, OSError):
        return f"not a readable checkpoint: {describe_os_error(error)}"
    if isinstance(error, pickle.UnpicklingError) and "weights only" in text.lower():
        return ("not a readable checkpoint: it holds Python objects other than tensors and "
                "plain values, refused without running them (only cryodiff checkpoints load)")
    if isinstance(error, (EOFError, zipfile.BadZipFile)) or "central directory" in text \
            or "PytorchStreamReader" in text or "Ran out of input" in text:
        return "not a readable checkpoint: truncated or damaged (not a complete PyTorch file)"
    if isinstance(error, pickle.UnpicklingError) or "invalid load key" in text:
        return "not a readable checkpoint: not a PyTorch file"
    return f"not a readable checkpoint ({type(error).__name__})"


def _check_content(state: dict[str, Any], file: Path) -> None:
    """The loaded values have the types and ranges the rest of the package relies on."""
    from cryodiff.training.config import TrainConfig

    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CryodiffError("the checkpoint's step is not a count ≥ 0", path=file)
    try:
        TrainConfig.from_json(state["config"])
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError, CryodiffError):
        raise CryodiffError("the checkpoint's configuration is damaged (not a cryodiff "
                            "training configuration)", path=file) from None
    norm = state["normalisation"]
    keys = ("condition_mean", "condition_std", "target_mean", "target_std")
    if (not isinstance(norm, dict) or set(norm) != set(keys)
            or not all(isinstance(norm[k], (int, float)) and math.isfinite(norm[k])
                       for k in keys)
            or not (norm["condition_std"] > 0 and norm["target_std"] > 0)):
        raise CryodiffError("the checkpoint's normalisation is damaged (needs finite means and "
                            "positive standard deviations)", path=file)
    for key in ("model", "ema", "postprocess"):
        weights = state.get(key)
        if key == "postprocess" and weights is None:
            continue
        _check_weights(weights, key, file)
    _check_mean_refiner(state.get("pm_postprocess"), file)
    _check_x0_finetune(state.get("x0_finetune"), file)


def _check_weights(weights: Any, key: str, file: Path) -> None:
    """``weights`` maps names to finite tensors (else a one-line error naming ``key``)."""
    if not isinstance(weights, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise CryodiffError(f"the checkpoint's {key} weights are damaged (not a mapping of "
                            "names to tensors)", path=file)
    bad = next((k for k, v in weights.items()
                if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise CryodiffError(f"the checkpoint's {key} weight {bad} holds NaN or infinite "
                            "values (the run diverged?)", path=file)


def _check_mean_refiner(saved: Any, file: Path) -> None:
    """The optional ``pm_postprocess`` entry: weights and positive counts, a known sampler."""
    if saved is None:
        return
    counts = ("draws", "sampling_steps", "particles", "steps")
    if not isinstance(saved, dict) or not all(
            isinstance(saved.get(k), int) and not isinstance(saved.get(k), bool)
            and saved[k] >= 1 for k in counts) or saved.get("sampler") not in ("ddpm", "ddim"):
        raise CryodiffError("the checkpoint's pm_postprocess entry is damaged (needs weights, "
                            "positive draws, sampling_steps, particles and steps, and a sampler "
                            "ddpm or ddim)", path=file)
    _check_weights(saved.get("weights"), "pm_postprocess", file)


def _check_x0_finetune(saved: Any, file: Path) -> None:
    """The optional ``x0_finetune`` entry: weights and positive ``particles`` and ``steps``."""
    if saved is None:
        return
    if not isinstance(saved, dict) or not all(
            isinstance(saved.get(k), int) and not isinstance(saved.get(k), bool)
            and saved[k] >= 1 for k in ("particles", "steps")):
        raise CryodiffError("the checkpoint's x0_finetune entry is damaged (needs weights and "
                            "positive particles and steps)", path=file)
    _check_weights(saved.get("weights"), "x0_finetune", file)


def weights_mismatch(module: torch.nn.Module, weights: dict[str, torch.Tensor]) -> str | None:
    """Why ``weights`` do not fit ``module`` (missing/unexpected names, first wrong shape), in
    one short line; None if they fit."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shape = next((k for k in expected if k in weights
                  and tuple(weights[k].shape) != tuple(expected[k].shape)), None)
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (first {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]})")
    if shape is not None:
        parts.append(f"{shape} has shape {tuple(weights[shape].shape)}, the model expects "
                     f"{tuple(expected[shape].shape)}")
    return "; ".join(parts) or None


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` most recent checkpoints of a run folder."""
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU and, if present, every CUDA device)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only if CUDA is present)."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
