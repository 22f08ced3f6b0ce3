"""benchmarks/parallel_conditions.sh: which benchmark processes it starts, and (SPLIT=1) that
each condition's final run finds the networks its training processes saved.

A stand-in ``cryodiff`` on PATH records its arguments and writes what a real training run
would leave in ``--out``/work, so the script's own logic is tested in well under a second.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "parallel_conditions.sh"
TRAINED = ("noise2noise", "supervised", "supervised-l1", "supervised-large", "supervised-2x",
           "sr3")

FAKE_CRYODIFF = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    from pathlib import Path
    args = sys.argv[1:]
    def values(flag):
        if flag not in args:
            return []
        rest = args[args.index(flag) + 1:]
        return [a for a in rest[:next((i for i, a in enumerate(rest) if a.startswith("--")),
                                     len(rest))]]
    out = Path(values("--out")[0])
    tag = Path(values("--map")[0]).stem + "_snr" + values("--snr")[0]
    work = out / "work"
    only = values("--only")
    record = {{"args": args, "threads": os.environ.get("OMP_NUM_THREADS"),
              "found": sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
              if work.is_dir() else []}}
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps(record) + "\\n")
    for method in {trained}:
        if method in only:
            target = (work / f"sr3_{{tag}}_seed0" / "checkpoints" / "step.pt"
                      if method == "sr3" else work / "baselines" / "seed0"
                      / f"{{tag}}_{{method}}.pt")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(method)
    print("cryodiff: 1 method rows measured")
    """)


@pytest.fixture
def fake_cryodiff(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "cryodiff"
    fake.write_text(FAKE_CRYODIFF.format(python=sys.executable, trained=TRAINED))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def _run(tmp_path, bin_dir, split: bool) -> list[dict]:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    log = tmp_path / "calls.jsonl"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               FAKE_LOG=str(log), SNRS="0.1 0.01", THREADS="3", SPLIT="1" if split else "0")
    subprocess.run(["bash", str(SCRIPT), "cpu-small", "cuda", str(tmp_path / "out"), "phantom",
                    "maps/ribo.mrc"], env=env, check=True, capture_output=True, text=True)
    return [json.loads(line) for line in log.read_text().splitlines()]


def _flag(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def test_one_full_benchmark_per_condition(tmp_path, fake_cryodiff):
    calls = _run(tmp_path, fake_cryodiff, split=False)
    assert len(calls) == 4
    conditions = {(_flag(c["args"], "--map"), _flag(c["args"], "--snr")) for c in calls}
    assert conditions == {(m, s) for m in ("phantom", "maps/ribo.mrc") for s in ("0.1", "0.01")}
    for call in calls:
        args = call["args"]
        assert args[0] == "benchmark" and "--only" not in args and call["threads"] == "3"
        assert _flag(args, "--device") == "cuda" and _flag(args, "--preset") == "cpu-small"
        # Only the map without a header pixel size is given one.
        assert (_flag(args, "--pixel-size") == "2.0") == (_flag(args, "--map") != "phantom")
        name = Path(_flag(args, "--map")).stem
        assert _flag(args, "--out").endswith(f"out/{name}_{_flag(args, '--snr')}")


def test_split_trains_each_network_alone_then_reuses_it(tmp_path, fake_cryodiff):
    calls = _run(tmp_path, fake_cryodiff, split=True)
    training = [c for c in calls if "--only" in c["args"]]
    final = [c for c in calls if "--only" not in c["args"]]
    assert len(training) == 4 * len(TRAINED) and len(final) == 4
    assert calls.index(final[0]) == len(training)  # every network is trained before scoring
    for call in training:
        args = call["args"]
        kept = args[args.index("--only") + 1:args.index("--out")]
        # SR3's process also trains the post-processors that refine its samples
        assert kept in ([m] for m in TRAINED[:-1]) or kept == ["sr3", "sr3-mse", "sr3-pm"]
        assert "--no-pose-search" in args and call["threads"] == "1"
        assert (_flag(args, "--pixel-size") == "2.0") == (_flag(args, "--map") != "phantom")
        assert Path(_flag(args, "--out")).name.endswith("_" + kept[0])
    for call in final:
        args = call["args"]
        tag = Path(_flag(args, "--map")).stem + "_snr" + _flag(args, "--snr")
        assert call["found"] == sorted(
            [f"baselines/seed0/{tag}_{m}.pt" for m in TRAINED[:-1]]
            + [f"sr3_{tag}_seed0/checkpoints/step.pt"])
