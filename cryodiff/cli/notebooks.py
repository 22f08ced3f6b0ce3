"""``cryodiff notebooks``: execute every tutorial notebook headless into a run folder.

``--copy-to DIR`` copies the tutorials out instead (for JupyterLab; existing files are kept),
and ``--list`` shows where they are found: a checkout's ``notebooks/`` or the installed copy.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"),
                        help="run folder for executed notebooks, data and figures (default runs/demo)")
    parser.add_argument("--preset", default="ci",
                        help="ci (laptop CPU, minutes), cpu-small, gpu-medium or gpu-paper")
    parser.add_argument("--only", nargs="*", default=None, metavar="NN",
                        help="run only the notebooks whose name starts with these (e.g. 01 04)")
    parser.add_argument("--notebooks", type=Path, default=None, help="folder holding the notebooks")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    parser.add_argument("--copy-to", type=Path, default=None, metavar="DIR",
                        help="copy the tutorial notebooks (.ipynb and .py) into DIR instead of "
                             "running them; existing files are never overwritten")
    parser.add_argument("--list", action="store_true",
                        help="list the tutorial notebooks found instead of running them")


def copy_tutorials(dest: Path, folder: Path | None = None) -> tuple[list[Path], list[Path]]:
    """Copy each ``NN_name.ipynb`` (and its jupytext ``.py`` twin) of ``folder`` (default: the
    tutorials found by :func:`~cryodiff.notebook_runner.notebooks_folder`) into ``dest``.

    Returns ``(copied, kept)``: files written, and files already in ``dest`` left untouched.
    """
    from cryodiff.io.atomic import atomic_path
    from cryodiff.notebook_runner import discover_notebooks

    sources = []
    for notebook in discover_notebooks(folder):
        twin = notebook.with_suffix(".py")
        sources += [notebook, twin] if twin.is_file() else [notebook]
    copied, kept = [], []
    for source in sources:
        target = Path(dest) / source.name
        if target.exists():
            kept.append(target)
            continue
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        copied.append(target)
    return copied, kept


def main(args: argparse.Namespace) -> int:
    from cryodiff.notebook_runner import discover_notebooks, run_notebooks

    if args.list:
        for notebook in discover_notebooks(args.notebooks):
            print(notebook)
        return 0
    if args.copy_to is not None:
        copied, kept = copy_tutorials(args.copy_to, args.notebooks)
        print(f"copied {len(copied)} files into {args.copy_to.resolve()}"
              + (f"; kept {len(kept)} existing: {', '.join(p.name for p in kept)}" if kept else ""))
        return 0

    report = run_notebooks(args.out, preset=args.preset, names=args.only, folder=args.notebooks,
                           kernel=args.kernel)
    print(f"executed {len(report)} notebooks into {args.out.resolve()}:")
    for stem, entry in report.items():
        print(f"  {stem}: {entry['seconds']} s")
    return 0
