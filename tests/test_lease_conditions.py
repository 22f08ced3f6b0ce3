"""benchmarks/lease_conditions.sh: which benchmark processes it starts for each condition
(PARTS), with which threads and arguments, that it refuses an unknown part, and what it packs.

A stand-in ``python3`` on PATH records its arguments and writes a results file where a real
benchmark would, so the script's own logic is tested in about a second.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "lease_conditions.sh"
KNOWN = "sr3 sup2x peers n2n sup large sr3v x0ft large2x joint"  # the parts, as the script lists them
SCRIPT_SETTINGS = ("PACK", "START", "PARTS", "EXTRA", "TRAINING_SEEDS", "PEER_THREADS",
                   "PIXEL_SIZE", "POLL_S")

FAKE_PYTHON = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    from pathlib import Path
    args = sys.argv[1:]
    out = Path(args[args.index("--out") + 1])
    (out / "work").mkdir(parents=True, exist_ok=True)
    (out / "work" / "net.pt").write_text("weights")
    (out / "results.json").write_text("[]")
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps({{"args": args, "threads": os.environ.get("OMP_NUM_THREADS")}})
                  + "\\n")
    """)


@pytest.fixture
def fake_python(tmp_path):
    if shutil.which("bash") is None or shutil.which("setsid") is None:
        pytest.skip("bash or setsid is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def _run(tmp_path, bin_dir, *conditions, **env):
    log = tmp_path / "calls.jsonl"
    # the script's own settings come from the test alone, never from the caller's shell
    environ = {k: v for k, v in os.environ.items() if k not in SCRIPT_SETTINGS}
    environ.update({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "FAKE_LOG": str(log), "POLL_S": "0.2", **env})
    done = subprocess.run(["bash", str(SCRIPT), "cpu-small", "cuda", str(tmp_path / "out"), "60",
                           *conditions], env=environ, cwd=tmp_path, capture_output=True,
                          text=True)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def _only(args: list[str]) -> list[str]:
    rest = args[args.index("--only") + 1:]
    return rest[:rest.index("--out")]


def test_default_parts_start_three_processes_per_condition(tmp_path, fake_python):
    done, calls = _run(tmp_path, fake_python, "phantom 0.01", "maps/ribo.mrc 0.05",
                       PEER_THREADS="3", TRAINING_SEEDS="0 1")
    assert done.returncode == 0, done.stderr
    assert "0 of 6 still running" in done.stdout
    parts = {(Path(c["args"][c["args"].index("--out") + 1]).relative_to(tmp_path / "out")
              .as_posix(), tuple(_only(c["args"])), c["threads"]) for c in calls}
    expected = set()
    for name in ("phantom_0.01", "ribo_0.05"):
        expected |= {(f"{name}/sr3", ("sr3", "sr3-pm"), "1"),
                     (f"{name}/sup2x", ("supervised-2x", "supervised-2x-ssim"), "1"),
                     (f"{name}/peers", ("lowpass", "wiener", "bm3d", "cwf", "cwf-2d"), "3")}
    assert parts == expected
    for call in calls:
        args = call["args"]
        assert args[:3] == ["-m", "cryodiff", "benchmark"] and "--no-pose-search" in args
        seeds = args[args.index("--training-seeds") + 1:args.index("--no-pose-search")]
        assert seeds == ["0", "1"]
        # only the map without a header pixel size is given one
        assert ("--pixel-size" in args) == ("maps/ribo.mrc" in args)
    # the pack holds results and logs, not the trained networks
    with tarfile.open(tmp_path / "out" / "results.tgz") as pack:
        names = set(pack.getnames())
    assert "./phantom_0.01/sr3/results.json" in names
    assert "./ribo_0.05/peers/benchmark.log" in names
    assert not any("/work" in n for n in names) and "./pids" not in names


def test_parts_choose_the_processes(tmp_path, fake_python):
    done, calls = _run(tmp_path, fake_python, "phantom 0.1", PARTS="n2n sup large")
    assert done.returncode == 0, done.stderr
    assert sorted(tuple(_only(c["args"])) for c in calls) == [
        ("noise2noise",), ("supervised", "supervised-l1"), ("supervised-large",)]
    assert {Path(c["args"][c["args"].index("--out") + 1]).name for c in calls} == {
        "n2n", "sup", "large"}
    (tmp_path / "v").mkdir()
    done, calls = _run(tmp_path / "v", fake_python, "phantom 0.1", PARTS="sr3v")
    assert done.returncode == 0, done.stderr
    [call] = calls
    assert _only(call["args"]) == ["sr3", "sr3-pm"]
    assert call["args"][call["args"].index("--sr3-prediction") + 1] == "v"
    assert Path(call["args"][call["args"].index("--out") + 1]).name == "sr3v"
    (tmp_path / "ft").mkdir()
    done, calls = _run(tmp_path / "ft", fake_python, "phantom 0.1",
                       PARTS="x0ft large2x joint")
    assert done.returncode == 0, done.stderr
    by_folder = {Path(c["args"][c["args"].index("--out") + 1]).name: c["args"] for c in calls}
    assert _only(by_folder["x0ft"]) == ["sr3", "sr3-pm", "sr3-x0ft", "sr3-x0ft-ssim"]
    assert by_folder["x0ft"][by_folder["x0ft"].index("--sr3-prediction") + 1] == "v"
    assert _only(by_folder["large2x"]) == ["supervised-large-2x", "supervised-large-2x-ssim"]
    assert "--sr3-prediction" not in by_folder["large2x"]
    assert _only(by_folder["joint"]) == ["sr3-joint"]  # its own v-network: no flag needed


@pytest.mark.parametrize("setting, message", [
    ({"PARTS": "sr3 sup2X"}, f"PARTS: unknown part 'sup2X' ({KNOWN})"),
    ({"PARTS": "*"}, f"PARTS: unknown part '*' ({KNOWN})"),
    ({"PARTS": "sr3 peers sr3"}, "PARTS: part 'sr3' named twice"),
    ({"PARTS": "x0ft sr3v"}, "PARTS: x0ft runs sr3v's rows too; name one of them"),
    ({"PARTS": "  "}, f"PARTS names no part ({KNOWN})"),
    ({"POLL_S": "abc"}, "POLL_S must be a number of seconds, got 'abc'"),
])
def test_bad_settings_are_refused_before_anything_starts(tmp_path, fake_python, setting,
                                                          message):
    (tmp_path / "sr3").mkdir()  # in the script's folder: PARTS="*" must not expand to it
    done, calls = _run(tmp_path, fake_python, "phantom 0.1", **setting)
    assert done.returncode == 2 and calls == []
    assert done.stderr.strip().splitlines() == [f"lease_conditions.sh: {message}"]
    assert not (tmp_path / "out").exists()
