"""CPU throughput quiet and next to one busy process, torch's default threads vs cryodiff's.

    python benchmarks/cpu_contention.py [--seconds 3] [--policies ...]

Each measurement runs in a fresh Python process (OpenMP reads its settings when torch loads),
with ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` and the waiting variables removed from its
environment, as for a user who set nothing. Policies:

* ``torch default``: torch's own choice (one thread per core, spinning OpenMP threads) —
  what cryodiff did before :mod:`cryodiff.threads`;
* ``cryodiff``: :func:`cryodiff.threads.configure_threads` as the CLI calls it;
* ``passive, all cores``: two threads that sleep when idle (``OMP_WAIT_POLICY=PASSIVE``), an
  alternative the policy does not take by default (it costs on a quiet machine);
* ``1 thread``: what the policy picks when the load average shows other work at start-up
  (on an idle machine it picks ``torch default``'s two threads).

Loads: ``as found`` (the machine as it is: quiet, if nothing else runs), ``+1 busy`` (one
single-threaded Python process spinning for the whole measurement, started before the
worker — a browser tab, a second notebook) and ``+1 busy later`` (the worker starts on the
quiet machine and computes through its warm-up, then the busy process starts and the timing begins:
the competitor arrives after the thread count was chosen, which
:func:`cryodiff.threads.adapt_threads` must notice). Workloads: the
``ci`` U-Net's training steps (batch 16, 32², AdamW, the diffusion loss), DDPM denoising with
that U-Net (16 images × 4 steps per call) and Fourier-slice projection (64² map, 256 poses).
Each runs for ``--seconds`` after 3 s of untimed warm-up calls (a long run's start-up, in
which :mod:`cryodiff.threads` settles its count); the worker prints images/s as JSON. The
table goes to ``benchmarks/results/cpu_contention.md`` (and ``.json``) and to stdout; the
ratio column is the ``+1 busy`` throughput over the ``as found`` one of the same policy. On an
idle 2-core machine the run (four policies, twelve processes) takes 5–6 minutes (torch's
default next to a busy process is the slow part: one warm-up and one timed call at least).
Run it with nothing else on the machine: other jobs are more competing processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
           "KMP_BLOCKTIME")
# cryodiff first: its thread count reads the load average, which the later runs raise.
POLICIES = ("cryodiff", "passive, all cores", "1 thread", "torch default")
WORKLOADS = ("training", "denoising", "projection")
LOADS = ("as found", "+1 busy", "+1 busy later")
WARMUP_S = 3.0  # untimed calls before each timing (every policy and load alike)
BUSY_LOOP = "while True: pass"


def _worker_environment(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    if policy == "passive, all cores":
        from cryodiff.threads import set_passive_waiting

        set_passive_waiting(env)
    elif policy == "1 thread":
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    return env


def _timed(step, images_per_call: int, seconds: float, busy_later: bool = False,
           warmup_s: float = WARMUP_S) -> float:
    """Images/s of ``step()`` repeated for at least ``seconds`` after ``warmup_s`` of untimed
    calls (at least one: a long run's start-up, in which the thread count settles); with
    ``busy_later``, a busy process starts after the warm-up and the timing with it (the
    process is stopped afterwards)."""
    step()
    warm_until = time.perf_counter() + warmup_s
    while time.perf_counter() < warm_until:
        step()
    spinner = None
    if busy_later:
        spinner = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        return _rate(step, images_per_call, seconds)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def _rate(step, images_per_call: int, seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls * images_per_call / (time.perf_counter() - start)


def worker(policy: str, seconds: float, busy_later: bool = False) -> dict:
    """Run in the child process: set the policy up, then time the three workloads."""
    choice = None
    if policy == "cryodiff":
        from cryodiff.threads import configure_threads

        choice = configure_threads()
    import torch

    from cryodiff.denoise import denoise_images
    from cryodiff.diffusion import diffusion_loss, make_schedule
    from cryodiff.geometry import random_rotations
    from cryodiff.models.unet import SR3UNet
    from cryodiff.phantom import make_phantom
    from cryodiff.projection import prepare_volume, project
    from cryodiff.threads import adapt_threads
    from cryodiff.training.config import get_preset
    from cryodiff.training.data import Normalisation

    config = get_preset("ci")
    torch.manual_seed(0)
    model = SR3UNet(config.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    schedule = make_schedule(config.schedule, config.timesteps)
    generator = torch.Generator().manual_seed(0)
    y0 = torch.randn(config.batch_size, 1, config.box, config.box, generator=generator)
    condition = torch.randn(y0.shape, generator=generator)

    def train_step() -> None:
        adapt_threads()  # as the training loop does before each step
        loss = diffusion_loss(model, y0, condition, schedule, config.loss, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    noisy = torch.randn(16, config.box, config.box, generator=generator)
    identity = Normalisation(0.0, 1.0, 0.0, 1.0)

    def denoise_step() -> None:
        denoise_images(model, noisy, identity, schedule, steps=4, batch_size=16, device="cpu")

    volume = prepare_volume(make_phantom(64))
    rotations = random_rotations(256, generator)

    def project_step() -> None:
        project(volume, rotations)

    rates = {"training": _timed(train_step, config.batch_size, seconds, busy_later),
             "denoising": _timed(denoise_step, 16, seconds, busy_later),
             "projection": _timed(project_step, 256, seconds, busy_later)}
    import cryodiff.threads

    adapter = cryodiff.threads._ADAPTER
    return {"threads": torch.get_num_threads(), "choice": choice.reason if choice else None,
            "thread_changes": adapter.changes if adapter is not None else [],
            "wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"), **rates}


def _measure(policy: str, load: str, seconds: float) -> dict:
    spinner = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if load == "+1 busy" else None
    later = ["--busy-later"] if load == "+1 busy later" else []
    try:
        if spinner is not None:
            time.sleep(0.5)  # let the spinner reach its loop before the worker starts
        out = subprocess.run([sys.executable, __file__, "--worker", policy,
                              "--seconds", str(seconds), *later],
                             env=_worker_environment(policy),
                             cwd=ROOT, capture_output=True, text=True, check=True)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return {"policy": policy, "load": load,
            **json.loads(out.stdout.strip().splitlines()[-1])}


def table(rows: list[dict]) -> str:
    """Markdown: one row per policy and load, images/s per workload, and two ratios: to the
    same policy on the machine as found, and to torch's default as found (the speed users
    had before :mod:`cryodiff.threads`)."""
    quiet = {r["policy"]: r for r in rows if r["load"] == "as found"}
    before = quiet.get("torch default")
    lines = ["| policy | load | threads at the end | "
             + " | ".join(f"{w} img/s" for w in WORKLOADS)
             + " | ÷ same policy as found | ÷ torch default as found |",
             "|---|---|---|" + "---|" * len(WORKLOADS) + "---|---|"]
    for r in rows:
        own = before_ratio = ""
        if r["load"] != "as found" and r["policy"] in quiet:
            own = ", ".join(f"{r[w] / quiet[r['policy']][w]:.2f}" for w in WORKLOADS)
        if before is not None and r is not before:
            before_ratio = ", ".join(f"{r[w] / before[w]:.2f}" for w in WORKLOADS)
        lines.append(f"| {r['policy']} | {r['load']} | {r['threads']} | "
                     + " | ".join(f"{r[w]:.1f}" for w in WORKLOADS)
                     + f" | {own} | {before_ratio} |")
    return "\n".join(lines) + ("\n\nRatios list " + ", ".join(WORKLOADS) + " in that order.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per workload and run")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--out", type=Path, default=RESULTS / "cpu_contention.md")
    parser.add_argument("--loads", nargs="+", default=list(LOADS), choices=LOADS)
    parser.add_argument("--worker", choices=POLICIES, help=argparse.SUPPRESS)
    parser.add_argument("--busy-later", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seconds, args.busy_later)))
        return
    load_before, start = os.getloadavg()[0], time.perf_counter()
    rows = []
    for policy in args.policies:
        for load in args.loads:
            rows.append(_measure(policy, load, args.seconds))
            print(f"{policy}, {rows[-1]['load']}: threads {rows[-1]['threads']}, "
                  + ", ".join(f"{w} {rows[-1][w]:.1f} img/s" for w in WORKLOADS), flush=True)
    import torch

    header = (f"`python benchmarks/cpu_contention.py --seconds {args.seconds:g}"
              f"{' --policies ' + ' '.join(map(repr, args.policies)) if args.policies != list(POLICIES) else ''}`: torch "
              f"{torch.__version__}, {os.cpu_count()} CPUs, load average {load_before:.1f} "
              f"before, {os.getloadavg()[0]:.1f} after (the load includes this script's own "
              f"busy process), {time.perf_counter() - start:.0f} s.")
    text = header + "\n\n" + table(rows) + "\n"
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"seconds": args.seconds, "load_before": load_before, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
