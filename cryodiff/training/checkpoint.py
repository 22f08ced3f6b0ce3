"""Training checkpoints: everything needed to resume a run exactly, or to denoise with it.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, lists and
dicts, so it loads with ``torch.load(..., weights_only=True)`` (no pickled classes). The
configuration travels as a JSON string. Files live in ``RUN/checkpoints/step_00001000.pt``
and are written atomically, so a run killed while saving leaves the previous one intact.

Keys: ``format``, ``cryodiff_version``, ``step``, ``config`` (JSON of
:class:`~cryodiff.training.config.TrainConfig`), ``normalisation`` (dict of floats),
``model``, ``ema``, ``optimizer`` (state dicts), ``rng`` (torch CPU / CUDA generator states),
``postprocess`` (state dict of the post-processing U-Net, or absent).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from cryodiff import __version__
from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import atomic_path

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
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CryodiffError(f"not a readable checkpoint ({reason[:120]})", path=file) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CryodiffError(f"not a cryodiff checkpoint (expected format {FORMAT})", path=file)
    missing = [k for k in ("step", "config", "normalisation", "model", "ema") if k not in state]
    if missing:
        raise CryodiffError(f"checkpoint is missing {', '.join(missing)}", path=file)
    state["path"] = str(file)
    return state


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
