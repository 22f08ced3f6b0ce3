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

Loads: ``as found`` (the machine as it is: quiet, if nothing else runs) and ``+1 busy`` (one
single-threaded Python process spinning for the whole measurement, started before the
worker — a browser tab, a second notebook). Workloads: the
``ci`` U-Net's training steps (batch 16, 32², AdamW, the diffusion loss), DDPM denoising with
that U-Net (16 images × 4 steps per call) and Fourier-slice projection (64² map, 256 poses).
Each runs for ``--seconds`` after one warm-up call; the worker prints images/s as JSON. The
table goes to ``benchmarks/results/cpu_contention.md`` (and ``.json``) and to stdout; the
ratio column is the ``+1 busy`` throughput over the ``as found`` one of the same policy. On an
idle 2-core machine the run (four policies, eight processes) should take 2–3 minutes (torch's
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
BUSY_LOOP = "while True: pass"


def _worker_environment(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    if policy == "passive, all cores":
        from cryodiff.threads import set_passive_waiting

        set_passive_waiting(env)
    elif policy == "1 thread":
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    return env


def _timed(step, images_per_call: int, seconds: float) -> float:
    """Images/s of ``step()`` repeated for at least ``seconds`` after one warm-up call."""
    step()
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls * images_per_call / (time.perf_counter() - start)


def worker(policy: str, seconds: float) -> dict:
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

    rates = {"training": _timed(train_step, config.batch_size, seconds),
             "denoising": _timed(denoise_step, 16, seconds),
             "projection": _timed(project_step, 256, seconds)}
    return {"threads": torch.get_num_threads(), "choice": choice.reason if choice else None,
            "wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"), **rates}


def _measure(policy: str, busy: bool, seconds: float) -> dict:
    spinner = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
    try:
        if spinner is not None:
            time.sleep(0.5)  # let the spinner reach its loop before the worker starts
        out = subprocess.run([sys.executable, __file__, "--worker", policy,
                              "--seconds", str(seconds)], env=_worker_environment(policy),
                             cwd=ROOT, capture_output=True, text=True, check=True)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return {"policy": policy, "load": "+1 busy" if busy else "as found",
            **json.loads(out.stdout.strip().splitlines()[-1])}


def table(rows: list[dict]) -> str:
    """Markdown: one row per policy and load, images/s per workload, busy/quiet ratios."""
    quiet = {r["policy"]: r for r in rows if r["load"] == "as found"}
    lines = ["| policy | load | threads | " + " | ".join(f"{w} img/s" for w in WORKLOADS)
             + " | +1 busy ÷ as found (" + ", ".join(WORKLOADS) + ") |",
             "|---|---|---|" + "---|" * len(WORKLOADS) + "---|"]
    for r in rows:
        ratios = ""
        if r["load"] != "as found" and r["policy"] in quiet:
            ratios = ", ".join(f"{r[w] / quiet[r['policy']][w]:.2f}" for w in WORKLOADS)
        lines.append(f"| {r['policy']} | {r['load']} | {r['threads']} | "
                     + " | ".join(f"{r[w]:.1f}" for w in WORKLOADS) + f" | {ratios} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per workload and run")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--out", type=Path, default=RESULTS / "cpu_contention.md")
    parser.add_argument("--worker", choices=POLICIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.seconds)))
        return
    load_before, start = os.getloadavg()[0], time.perf_counter()
    rows = []
    for policy in args.policies:
        for busy in (False, True):
            rows.append(_measure(policy, busy, args.seconds))
            print(f"{policy}, {rows[-1]['load']}: threads {rows[-1]['threads']}, "
                  + ", ".join(f"{w} {rows[-1][w]:.1f} img/s" for w in WORKLOADS), flush=True)
    import torch

    header = (f"`python benchmarks/cpu_contention.py --seconds {args.seconds:g}`: torch "
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
