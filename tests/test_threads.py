"""The CPU thread policy: the decision function, and that the CLI and notebooks apply it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryodiff.errors import CryodiffError
from cryodiff.threads import PASSIVE_WAITING, choose_threads, set_passive_waiting

ROOT = Path(__file__).resolve().parents[1]
CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
           "KMP_BLOCKTIME")


@pytest.mark.parametrize(("cores", "load", "expected"), [
    (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.2, 1), (2, 7.5, 1), (1, 0.0, 1),
    (16, 0.2, 16), (16, 3.4, 13), (16, 40.0, 1)])
def test_idle_cores_set_the_default_count(cores, load, expected):
    choice = choose_threads(cores=cores, load=load, environ={})
    assert choice.threads == expected
    assert f"{cores} usable cores" in choice.reason


def test_an_unknown_load_uses_every_core(monkeypatch):
    import cryodiff.threads

    monkeypatch.setattr(cryodiff.threads, "load_average", lambda: None)
    assert choose_threads(cores=4, environ={}).threads == 4


def test_the_user_choice_wins_over_the_machine():
    assert choose_threads(3, cores=2, load=5.0, environ={"OMP_NUM_THREADS": "1"}).threads == 3
    environ = {"OMP_NUM_THREADS": "4"}
    assert choose_threads(cores=2, load=5.0, environ=environ) == (
        choose_threads(cores=16, load=0.0, environ=environ))
    assert choose_threads(cores=2, load=5.0, environ=environ).threads == 4
    assert choose_threads(cores=2, load=0.0, environ={"OMP_NUM_THREADS": ""}).threads == 2


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_thread_counts_are_user_errors(value):
    with pytest.raises(CryodiffError, match="OMP_NUM_THREADS"):
        choose_threads(environ={"OMP_NUM_THREADS": value})
    with pytest.raises(CryodiffError, match="--threads"):
        choose_threads(0, environ={})


def test_passive_waiting_keeps_what_the_user_set():
    environ = {"OMP_WAIT_POLICY": "ACTIVE", "PATH": "/bin"}
    added = set_passive_waiting(environ)
    assert environ["OMP_WAIT_POLICY"] == "ACTIVE" and "OMP_WAIT_POLICY" not in added
    assert environ["GOMP_SPINCOUNT"] == PASSIVE_WAITING["GOMP_SPINCOUNT"] == "0"
    assert environ["KMP_BLOCKTIME"] == "0" and set(added) == {"GOMP_SPINCOUNT", "KMP_BLOCKTIME"}


# Runs the CLI dispatcher in a fresh interpreter with a user's bare environment, then reports
# what torch (imported only afterwards, as a command would) and OpenMP's variables say.
PROBE = """
import json, os, sys
from cryodiff.cli import main
code = main(sys.argv[1:])
import torch
print(json.dumps({"code": code, "threads": torch.get_num_threads(),
                  "env": {k: os.environ.get(k) for k in %r}}))
""" % (CLEARED,)


def _probe(argv: list[str], **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in CLEARED} | env
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], env=environ, cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_cli_applies_threads_before_torch_loads_and_leaves_waiting_alone():
    report = _probe(["info", str(ROOT / "tests" / "nonexistent.star"), "--threads", "2"],
                    OMP_NUM_THREADS="1")
    assert report["code"] == 2  # the command ran (and refused the missing file)
    assert report["threads"] == 2  # the flag wins over the variable
    # Passive waiting costs 2.4x on a quiet machine (benchmarks/results/cpu_contention.md).
    assert all(report["env"].get(name) is None for name in PASSIVE_WAITING)
    # Child processes (notebook kernels, benchmark workers) inherit the choice.
    assert report["env"]["OMP_NUM_THREADS"] == report["env"]["MKL_NUM_THREADS"] == "2"


@pytest.mark.slow
def test_the_cli_honours_omp_num_threads_and_the_users_wait_policy():
    report = _probe(["info", str(ROOT / "tests" / "nonexistent.star")],
                    OMP_NUM_THREADS="1", OMP_WAIT_POLICY="ACTIVE")
    assert report["threads"] == 1 and report["env"]["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.slow
def test_the_cli_default_follows_the_decision_function():
    """No flag, no variable: the count is choose_threads' for this machine and load (read
    by the child a moment after this process reads it: allow one step of load change)."""
    before = os.getloadavg()[0]
    report = _probe(["info", str(ROOT / "tests" / "nonexistent.star")])
    after = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0))
    lower = choose_threads(cores=cores, load=max(before, after) + 1, environ={}).threads
    upper = choose_threads(cores=cores, load=max(0.0, min(before, after) - 1), environ={}).threads
    assert lower <= report["threads"] <= upper


def test_a_bad_thread_count_is_a_one_line_cli_error(capsys):
    from cryodiff.cli import main

    assert main(["info", "x.star", "--threads", "0"]) == 2
    assert capsys.readouterr().err.strip() == "cryodiff: error: --threads must be at least 1, not 0"


def test_every_notebook_configures_threads_before_importing_torch():
    for source in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        text = source.read_text()
        assert "configure_threads()" in text, source.name
        torch_import = text.find("import torch")
        assert torch_import == -1 or text.index("configure_threads()") < torch_import, source.name


def test_a_running_process_keeps_its_thread_count_unless_asked(monkeypatch):
    """Called again once torch is loaded (the CLI from Python, a re-run notebook cell), the
    policy leaves a computing process's count alone: results depend on it bit for bit."""
    import torch

    from cryodiff.threads import configure_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    choice = configure_threads()
    assert choice.threads == before == torch.get_num_threads() and "kept" in choice.reason
    assert configure_threads(before).reason == "--threads"
    monkeypatch.setenv("OMP_NUM_THREADS", str(before))
    assert configure_threads().reason == "OMP_NUM_THREADS"


@pytest.mark.parametrize(("argv", "expected"), [
    (["train", "--out", "run", "--threads", "3"], 3), (["project", "m.mrc", "--threads=2"], 2),
    (["train", "--threads", "two"], None), (["train", "--target", "clean"], None),
    (["train", "--thr", "2"], None)])
def test_the_cli_reads_threads_before_importing_the_command(argv, expected):
    from cryodiff.cli import _requested_threads

    assert _requested_threads(argv) == expected


# --- re-checking the load while computing (adapt_threads) ---------------------------------

from cryodiff.threads import (AUTO_MARKER, ThreadAdapter, chosen_automatically,  # noqa: E402
                              parse_cpu_busy_ticks, threads_for_others)


@pytest.mark.parametrize(("cores", "others", "expected"), [
    (2, 0.0, 2), (2, 0.3, 2), (2, 0.45, 1), (2, 0.67, 1), (2, 1.0, 1), (2, 3.0, 1),
    (16, 0.2, 16), (16, 2.5, 13), (1, 0.9, 1), (2, -0.2, 2)])
def test_threads_left_by_other_processes(cores, others, expected):
    assert threads_for_others(cores, others) == expected


PROC_STAT = """cpu  300 0 30 900 10 0 0 0 0 0
cpu0 100 0 10 450 5 0 0 0 0 0
cpu1 200 5 20 450 5 1 2 3 0 0
intr 12345
ctxt 678
"""


def test_busy_ticks_count_only_the_cores_asked_for():
    assert parse_cpu_busy_ticks(PROC_STAT) == 110 + 231
    assert parse_cpu_busy_ticks(PROC_STAT, {1}) == 200 + 5 + 20 + 1 + 2 + 3
    assert parse_cpu_busy_ticks(PROC_STAT, {7}) == 0


class _FakeMachine:
    """A clock, the busy seconds of 2 cores and this process's CPU seconds, advanced by hand."""

    def __init__(self):
        self.now, self.busy, self.own, self.threads = 0.0, 0.0, 0.0, 2

    def advance(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.now += seconds
        self.own += seconds * own_cores
        self.busy += seconds * (own_cores + other_cores)

    def adapter(self) -> ThreadAdapter:
        return ThreadAdapter(cores=2, interval_s=1.0, busy_seconds=lambda: self.busy,
                             own_seconds=lambda: self.own, clock=lambda: self.now,
                             get_threads=lambda: self.threads,
                             set_threads=lambda n: setattr(self, "threads", n))


def test_a_competitor_arriving_mid_run_drops_a_thread_and_its_leaving_restores_it():
    machine = _FakeMachine()
    adapter = machine.adapter()
    counts = []
    # Quiet: two threads keep both cores; then a busy process gets 2/3 of a core (three
    # runnable threads on two cores); then it leaves.
    for own, others in [(2.0, 0.0)] * 3 + [(1.33, 0.67)] + [(1.0, 1.0)] * 3 + [(1.0, 0.0)] * 3:
        machine.advance(1.0, own, others)
        counts.append(adapter.check())
    assert counts[:3] == [2, 2, 2]
    assert counts[3] == 1          # down at the first check that sees the competitor
    assert counts[4:6] == [1, 1]
    assert counts[7] == 1 and counts[8] == 2   # up only after two quiet checks
    assert [(a, b) for a, b, _ in adapter.changes] == [(2, 1), (1, 2)]


def test_checks_between_intervals_change_nothing():
    machine = _FakeMachine()
    adapter = machine.adapter()
    machine.advance(1.0, 2.0, 0.0)
    adapter.check()
    machine.advance(0.5, 1.0, 1.0)
    assert adapter.check() == 2 and adapter.changes == []


def test_only_an_automatic_count_is_adapted(monkeypatch):
    assert chosen_automatically({AUTO_MARKER: "2", "OMP_NUM_THREADS": "2"})
    assert not chosen_automatically({AUTO_MARKER: "2", "OMP_NUM_THREADS": "1"})
    assert not chosen_automatically({"OMP_NUM_THREADS": "2"})
    import cryodiff.threads

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv(AUTO_MARKER, raising=False)
    assert cryodiff.threads.adapt_threads() is None   # the user's choice: left alone


def test_an_inherited_automatic_count_is_decided_again():
    inherited = {"OMP_NUM_THREADS": "2", AUTO_MARKER: "2"}
    choice = choose_threads(cores=2, load=1.0, environ=inherited)
    assert choice.threads == 1 and choice.automatic
    user = {"OMP_NUM_THREADS": "2"}
    assert choose_threads(cores=2, load=1.0, environ=user).threads == 2


def test_the_cli_marks_its_own_choice_for_child_processes():
    env = {k: v for k, v in os.environ.items() if k not in CLEARED + (AUTO_MARKER,)}
    code = ("import os; from cryodiff.threads import configure_threads; c = configure_threads();"
            " import json; print(json.dumps([c.automatic, os.environ.get('CRYODIFF_AUTO_THREADS'),"
            " os.environ['OMP_NUM_THREADS']]))")
    auto = json.loads(subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                                     capture_output=True, text=True, check=True).stdout)
    assert auto[0] is True and auto[1] == auto[2]
    pinned = json.loads(subprocess.run([sys.executable, "-c", code],
                                       env={**env, "OMP_NUM_THREADS": "1"}, cwd=ROOT,
                                       capture_output=True, text=True, check=True).stdout)
    assert pinned == [False, None, "1"]


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc/stat")
def test_a_real_busy_process_is_seen_by_the_adapter():
    import time

    threads = [os.cpu_count() or 2]
    adapter = ThreadAdapter(cores=threads[0], interval_s=0.5,
                            get_threads=lambda: threads[0],
                            set_threads=lambda n: threads.__setitem__(0, n))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        adapter.check()
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline:
            time.sleep(0.05)
            adapter.check()
    finally:
        spinner.kill()
        spinner.wait()
    assert adapter.changes, "a process spinning on one core was not noticed"
    assert adapter.changes[0][2] >= 0.45 and threads[0] <= (os.cpu_count() or 2) - 1


def test_adapt_threads_asks_the_adapter_only_for_an_automatic_count(monkeypatch):
    import cryodiff.threads

    class Stub:
        calls = 0

        def check(self):
            Stub.calls += 1
            return 7

    monkeypatch.setattr(cryodiff.threads, "_ADAPTER", Stub())
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv(AUTO_MARKER, "3")
    assert cryodiff.threads.adapt_threads() == 7 and Stub.calls == 1
    monkeypatch.setenv(AUTO_MARKER, "2")  # the user changed OMP_NUM_THREADS since
    assert cryodiff.threads.adapt_threads() is None and Stub.calls == 1


def test_the_sampler_and_the_projector_recheck_at_every_step(monkeypatch):
    import torch

    import cryodiff.projection
    import cryodiff.sampling
    from cryodiff.diffusion import linear_schedule, respace
    from cryodiff.geometry import random_rotations
    from cryodiff.phantom import make_phantom

    calls = []
    for module in (cryodiff.sampling, cryodiff.projection):
        monkeypatch.setattr(module, "adapt_threads", lambda device=None: calls.append(device))
    schedule = respace(linear_schedule(100), 4)
    cryodiff.sampling.sample(lambda y, c, level: torch.zeros_like(y), torch.zeros(2, 1, 8, 8),
                             schedule, "ddpm", generator=torch.Generator().manual_seed(0))
    assert len(calls) == 4
    volume = cryodiff.projection.prepare_volume(make_phantom(32))
    cryodiff.projection.project(volume, random_rotations(5, torch.Generator().manual_seed(0)),
                                chunk_size=2)
    assert len(calls) == 4 + 3 and all(str(device) == "cpu" for device in calls)


def test_a_competitor_near_the_threshold_does_not_make_the_count_flap():
    machine = _FakeMachine()
    adapter = machine.adapter()
    machine.advance(1.0, 2.0, 0.0)
    adapter.check()
    machine.advance(1.0, 1.4, 0.6)      # half a core or more: down to one thread
    assert adapter.check() == 1
    for _ in range(4):                  # the competitor now uses 0.3 of a core: stay at one
        machine.advance(1.0, 1.0, 0.3)
        assert adapter.check() == 1
    assert len(adapter.changes) == 1


def test_without_counters_the_adapter_stops_asking():
    asked = []
    adapter = ThreadAdapter(cores=2, busy_seconds=lambda: asked.append(1),
                            own_seconds=lambda: 0.0, clock=lambda: 0.0,
                            get_threads=lambda: 2, set_threads=lambda n: None)
    assert adapter.check() == 2 and adapter.check() == 2
    assert len(asked) == 1 and adapter.disabled


def test_adapt_threads_leaves_gpus_and_worker_threads_alone(monkeypatch):
    import threading

    import cryodiff.threads

    class Stub:
        def check(self):
            return 5

    monkeypatch.setattr(cryodiff.threads, "_ADAPTER", Stub())
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv(AUTO_MARKER, "2")
    assert cryodiff.threads.adapt_threads("cpu") == 5
    assert cryodiff.threads.adapt_threads("cuda:0") is None
    seen = []
    worker = threading.Thread(target=lambda: seen.append(cryodiff.threads.adapt_threads()))
    worker.start()
    worker.join()
    assert seen == [None]


def test_a_second_configure_call_keeps_the_running_count():
    env = {k: v for k, v in os.environ.items() if k not in CLEARED + (AUTO_MARKER,)}
    code = ("from cryodiff.threads import configure_threads; first = configure_threads();"
            " import torch; again = configure_threads();"
            " import json; print(json.dumps([first.threads, again.threads, again.reason,"
            " again.automatic, torch.get_num_threads()]))")
    first, again, reason, automatic, running = json.loads(subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
        check=True).stdout)
    assert again == running == first and reason.startswith("kept") and automatic
