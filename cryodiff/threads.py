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

**Re-checked while computing** (:func:`adapt_threads`): when the count was chosen
automatically, the long loops (training steps, denoising batches, projection batches) call
:func:`adapt_threads`; at most once a second it measures how many of this process's cores
*other* processes kept busy since the last check (``/proc/stat`` for the cores in the
affinity mask, less this process's own CPU time) and sets torch's count to the cores left
(:func:`threads_for_others`): a busy process that starts after cryodiff costs one interval,
not the whole run. It goes down at once and back up only after two checks agree that
others use less than :data:`RAISE_THRESHOLD` of a core. Where the counters are missing (not
Linux) nothing changes. A count the user chose is never changed, nor is anything done for a
GPU loop or from a worker thread (torch's count is process-wide).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryodiff.errors import CryodiffError

if TYPE_CHECKING:
    import torch

# Sleep, don't spin, when waiting at an OpenMP barrier (GNU libgomp, LLVM libomp, Intel
# libiomp5 all read OMP_WAIT_POLICY; the other two are their own knobs for the same thing).
PASSIVE_WAITING: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0",
                                   "KMP_BLOCKTIME": "0"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Others' busy cores below which the adapter raises the count again (it lowers it from 0.4).
RAISE_THRESHOLD = 0.2
# Set to the count cryodiff chose itself (the load, not the user): adapt_threads may change it.
AUTO_MARKER = "CRYODIFF_AUTO_THREADS"


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count chosen and where it came from (``reason``); ``automatic`` when it
    came from the machine (cores and load), not from the user."""

    threads: int
    reason: str
    automatic: bool = False


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
    # A count inherited from cryodiff's own automatic choice (a notebook kernel started by
    # ``cryodiff notebooks``) is decided again from the load now; the user's is kept.
    if environ.get("OMP_NUM_THREADS") and not chosen_automatically(environ):
        return ThreadChoice(parse_thread_count(environ["OMP_NUM_THREADS"], "OMP_NUM_THREADS"),
                            "OMP_NUM_THREADS")
    cores = usable_cores() if cores is None else cores
    load = load_average() if load is None else load
    if load is None:
        return ThreadChoice(cores, f"{cores} usable cores, load unknown", automatic=True)
    busy = int(math.floor(load + 0.5))
    return ThreadChoice(max(1, cores - busy), f"{cores} usable cores, load average {load:.1f}",
                        automatic=True)


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
        if choice.automatic:
            os.environ[AUTO_MARKER] = str(choice.threads)
        else:
            os.environ.pop(AUTO_MARKER, None)
        return choice
    import torch

    if requested is None and (not os.environ.get("OMP_NUM_THREADS") or chosen_automatically()):
        # The load average now counts this process's own work: keep the count (the
        # adapter still follows other processes).
        return ThreadChoice(torch.get_num_threads(), "kept: torch was already loaded",
                            automatic=chosen_automatically())
    choice = choose_threads(requested)
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice


def chosen_automatically(environ: Mapping[str, str] | None = None) -> bool:
    """True when the thread count in force is cryodiff's own choice, not the user's: the
    marker :func:`configure_threads` leaves still matches ``OMP_NUM_THREADS``."""
    environ = os.environ if environ is None else environ
    marker = environ.get(AUTO_MARKER)
    return marker is not None and marker == environ.get("OMP_NUM_THREADS")


def threads_for_others(cores: int, others_busy_cores: float, threshold: float = 0.4) -> int:
    """Threads to compute with on ``cores`` when other processes keep ``others_busy_cores``
    busy (cores, measured): the cores left, at least one. A competitor squeezed by our
    spinning threads shows as less than a core, so from ``threshold`` (0.4) of a core it
    counts as one; :class:`ThreadAdapter` raises the count only against a lower threshold
    (0.2), so a competitor using about half a core does not make it flap."""
    busy = int(math.floor(max(others_busy_cores, 0.0) + 1.0 - threshold))
    return max(1, min(cores, cores - busy))


def parse_cpu_busy_ticks(proc_stat: str, cpus: set[int] | None = None) -> int:
    """Ticks the ``cpus`` (all when None) spent busy, from the text of ``/proc/stat``:
    user + nice + system + irq + softirq + steal (idle and iowait excluded)."""
    total = 0
    for line in proc_stat.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit():
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]] + [0] * max(0, 8 - len(fields))
        user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
        total += user + nice + system + irq + softirq + steal
    return total


def _busy_seconds_of_cores() -> float | None:
    """Seconds the cores of this process's affinity mask have been busy since boot, or None
    where ``/proc/stat`` is not available."""
    try:
        with open("/proc/stat") as handle:
            text = handle.read()
        cpus = set(os.sched_getaffinity(0))
        return parse_cpu_busy_ticks(text, cpus) / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, ValueError):
        return None


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class ThreadAdapter:
    """Re-checks the load while computing (see the module docstring); :meth:`check` is cheap
    between intervals. ``set_threads`` / ``get_threads`` default to torch's; the readers and
    the clock can be replaced (tests)."""

    def __init__(self, cores: int | None = None, interval_s: float = 1.0,
                 busy_seconds: Callable[[], float | None] = _busy_seconds_of_cores,
                 own_seconds: Callable[[], float] = _own_cpu_seconds,
                 clock: Callable[[], float] = time.monotonic,
                 get_threads: Callable[[], int] | None = None,
                 set_threads: Callable[[int], None] | None = None):
        import torch

        self.cores = usable_cores() if cores is None else cores
        self.interval_s = interval_s
        self._busy, self._own, self._clock = busy_seconds, own_seconds, clock
        self._get = get_threads or torch.get_num_threads
        self._set = set_threads or torch.set_num_threads
        self._last = None
        self._raise_votes = 0
        self.disabled = False
        self.changes: list[tuple[int, int, float]] = []  # (from, to, others' busy cores)

    def check(self) -> int:
        """Adjust the thread count if an interval has passed; returns the count in force."""
        now = self._clock()
        if self._last is not None and now - self._last[0] < self.interval_s:
            return self._get()
        if self.disabled:
            return self._get()
        busy = self._busy()
        if busy is None:  # no counters on this system: stop asking
            self.disabled = True
            return self._get()
        own = self._own()
        previous, self._last = self._last, (now, busy, own)
        if previous is None:
            return self._get()
        wall = now - previous[0]
        others = ((busy - previous[1]) - (own - previous[2])) / wall
        current = self._get()
        down, up = threads_for_others(self.cores, others), \
            threads_for_others(self.cores, others, threshold=RAISE_THRESHOLD)
        if down < current:
            self._apply(current, down, others)
        elif up > current:
            self._raise_votes += 1
            if self._raise_votes >= 2:
                self._apply(current, up, others)
        else:
            self._raise_votes = 0
        return self._get()

    def _apply(self, current: int, wanted: int, others: float) -> None:
        self._set(wanted)
        self._raise_votes = 0
        self.changes.append((current, wanted, round(others, 2)))


_ADAPTER: ThreadAdapter | None = None


def adapt_threads(device: torch.device | str | None = None) -> int | None:
    """Called from cryodiff's long loops: when the thread count was chosen automatically
    (:func:`chosen_automatically`) and the work runs on the CPU (``device``: the device of
    the loop's tensors; None: the CPU), re-check the load (:class:`ThreadAdapter`) and return
    the count in force. None (nothing done) for the user's count, another device, or a
    call from a thread other than the main one (torch's count is process-wide, and worker
    threads such as :func:`cryodiff.reconstruct.reconstruct`'s run one thread each)."""
    global _ADAPTER
    if device is not None and str(getattr(device, "type", device)).split(":")[0] != "cpu":
        return None
    if threading.current_thread() is not threading.main_thread() or not chosen_automatically():
        return None
    if _ADAPTER is None:
        _ADAPTER = ThreadAdapter()
    return _ADAPTER.check()
