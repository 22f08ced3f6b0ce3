"""How many CPU threads cryodiff computes with, and how idle threads wait.

Why: torch's intra-op pool (OpenMP, which MKL and oneDNN share) spin-waits at every barrier.
When another busy process holds one of the cores, a spinning thread burns the time slice its
partner needs, and every parallel region waits for the scheduler: on 2 cores, two torch
threads trained the ``ci`` U-Net ≈ 50× slower than one thread (``docs/benchmarks.md``).

The policy: **count** (:func:`choose_threads`): the user's explicit request (``--threads``),
else ``OMP_NUM_THREADS`` when set, else one thread per usable core less the cores that the
1-minute load average shows busy at start-up (at least one): on a 2-core laptop with a busy
browser tab that is one thread, on an idle one two. It is set (``OMP_NUM_THREADS``,
``MKL_NUM_THREADS``) before torch is imported: by the ``cryodiff`` command before it imports
a command module (notebook kernels started by ``cryodiff notebooks`` inherit it), and by
:func:`configure_threads` in each notebook's first code cell. The count depends on the load,
and results are bitwise reproducible only at one thread count: give ``--threads`` to pin it.

**Waiting is left as the runtime has it.** Passive waiting (:func:`set_passive_waiting`:
``OMP_WAIT_POLICY=PASSIVE``, ``GOMP_SPINCOUNT=0``, ``KMP_BLOCKTIME=0``) stops the collapse
when a busy process starts *after* cryodiff, but on a quiet 2-core machine it cut ``ci``
training from 118 to 49 images/s (``benchmarks/results/cpu_contention.md``), so it is not
set by default; users who expect competing work later can export those variables.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from cryodiff.errors import CryodiffError

# Sleep, don't spin, when waiting at an OpenMP barrier (GNU libgomp, LLVM libomp, Intel
# libiomp5 all read OMP_WAIT_POLICY; the other two are their own knobs for the same thing).
PASSIVE_WAITING: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0",
                                   "KMP_BLOCKTIME": "0"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count chosen and where it came from (``reason``)."""

    threads: int
    reason: str


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), ``None`` where unknown (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def parse_thread_count(text: str, source: str) -> int:
    """A positive thread count from ``text``; :class:`CryodiffError` naming ``source`` else."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise CryodiffError(f"{source} must be a positive number of threads, not {text!r}")
    return value


def choose_threads(requested: int | None = None, *, cores: int | None = None,
                   load: float | None = None, environ: Mapping[str, str] | None = None
                   ) -> ThreadChoice:
    """The intra-op thread count (a pure decision; :func:`configure_threads` applies it).

    ``requested`` (``--threads``) wins, then ``OMP_NUM_THREADS`` in ``environ``; otherwise
    ``max(1, cores - round(load))``: ``load`` (the 1-minute load average, taken before this
    process computes) counts the runnable processes of others. ``cores`` and ``load`` default
    to this machine's :func:`usable_cores` and :func:`load_average` (unknown load: all cores).
    """
    environ = os.environ if environ is None else environ
    if requested is not None:
        if requested < 1:
            raise CryodiffError(f"--threads must be at least 1, not {requested}")
        return ThreadChoice(requested, "--threads")
    if environ.get("OMP_NUM_THREADS"):
        return ThreadChoice(parse_thread_count(environ["OMP_NUM_THREADS"], "OMP_NUM_THREADS"),
                            "OMP_NUM_THREADS")
    cores = usable_cores() if cores is None else cores
    load = load_average() if load is None else load
    if load is None:
        return ThreadChoice(cores, f"{cores} usable cores, load unknown")
    busy = int(math.floor(load + 0.5))
    return ThreadChoice(max(1, cores - busy), f"{cores} usable cores, load average {load:.1f}")


def set_passive_waiting(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Add :data:`PASSIVE_WAITING` to ``environ`` (default ``os.environ``) where unset.

    Takes effect only for an OpenMP runtime loaded afterwards (set it before importing torch,
    or pass the mapping to a child process). Returns what it set.
    """
    environ = os.environ if environ is None else environ
    added = {k: v for k, v in PASSIVE_WAITING.items() if k not in environ}
    environ.update(added)
    return added


def configure_threads(requested: int | None = None) -> ThreadChoice:
    """Choose the thread count (:func:`choose_threads`) and apply it.

    In a process that has not imported torch yet (the ``cryodiff`` command, a notebook's first
    cell) this sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, which torch,
    MKL and OpenMP read when they load and which child processes and notebook kernels
    inherit. Once torch is loaded (the CLI called from Python, a re-run cell) only an explicit
    request (``requested`` or ``OMP_NUM_THREADS``) changes torch's count: a process that has
    been computing keeps its count, since results depend on it bit for bit.
    """
    if "torch" not in sys.modules:
        choice = choose_threads(requested)
        for name in THREAD_VARIABLES:
            os.environ[name] = str(choice.threads)
        return choice
    import torch

    if requested is None and not os.environ.get("OMP_NUM_THREADS"):
        return ThreadChoice(torch.get_num_threads(), "kept: torch was already loaded")
    choice = choose_threads(requested)
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice
