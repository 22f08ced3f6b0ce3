"""``cryodiff notebooks``: execute every tutorial notebook headless into a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"),
                        help="run folder for executed notebooks, data and figures (default runs/demo)")
    parser.add_argument("--preset", default="ci", help="ci (laptop CPU, minutes), cpu-small or gpu-paper")
    parser.add_argument("--only", nargs="*", default=None, metavar="NN",
                        help="run only the notebooks whose name starts with these (e.g. 01 04)")
    parser.add_argument("--notebooks", type=Path, default=None, help="folder holding the notebooks")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")


def main(args: argparse.Namespace) -> int:
    from cryodiff.notebook_runner import run_notebooks

    report = run_notebooks(args.out, preset=args.preset, names=args.only, folder=args.notebooks,
                           kernel=args.kernel)
    print(f"executed {len(report)} notebooks into {args.out.resolve()}:")
    for stem, entry in report.items():
        print(f"  {stem}: {entry['seconds']} s")
    return 0
