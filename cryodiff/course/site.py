"""Assemble the course site's sources: the docs, the benchmark tables and executed notebooks.

``make site`` runs the notebooks (or reuses a run folder's executed ones), then
``python -m cryodiff.course.site EXECUTED_DIR OUT_DIR`` lays out, under ``OUT_DIR``, the same
paths as the repository (``index.md`` from the README, ``docs/``, ``benchmarks/results/``,
``notebooks/NN_*.ipynb``) so that relative links keep working, and ``mkdocs build`` renders
it (``mkdocs.yml``: MkDocs + mkdocs-jupyter, which shows each notebook with its outputs).

Executed notebooks lose their saved widget state here: nbconvert would otherwise embed the
widget manager from a CDN (the site must load offline) and render each viewer as a live
widget without a kernel; without the state it shows the viewer's static picture.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import nbformat

from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parents[2]
DOC_SUFFIXES = (".md", ".png", ".svg")


def static_notebook(source: Path, target: Path) -> None:
    """Copy an executed notebook without its widget state (outputs and pictures are kept)."""
    notebook = nbformat.read(source, as_version=4)
    notebook.metadata.pop("widgets", None)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, nbformat.writes(notebook))


def _copy_tree(source: Path, target: Path, suffixes: tuple[str, ...]) -> list[Path]:
    copied = []
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix in suffixes:
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
            copied.append(destination)
    return copied


def assemble(executed_dir: Path, out_dir: Path, root: Path = ROOT) -> list[Path]:
    """Lay out the site's sources in ``out_dir`` (emptied first); returns the notebook pages.

    ``executed_dir`` holds the executed ``NN_name.ipynb`` (``cryodiff notebooks --out RUN``
    writes them to ``RUN/executed``). Raises :class:`CryodiffError` when it holds none.
    """
    executed_dir, out_dir = Path(executed_dir), Path(out_dir)
    notebooks = sorted(executed_dir.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise CryodiffError("no executed notebooks (NN_name.ipynb) to put on the site: run "
                            "`cryodiff notebooks --out RUN` first", path=executed_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    shutil.copyfile(root / "README.md", out_dir / "index.md")
    _copy_tree(root / "docs", out_dir / "docs", DOC_SUFFIXES)
    _copy_tree(root / "benchmarks" / "results", out_dir / "benchmarks" / "results", DOC_SUFFIXES)
    pages = []
    for notebook in notebooks:
        static_notebook(notebook, out_dir / "notebooks" / notebook.name)
        pages.append(out_dir / "notebooks" / notebook.name)
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cryodiff.course.site",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("executed", type=Path, help="folder of executed NN_name.ipynb notebooks")
    parser.add_argument("out", type=Path, help="folder to lay the site's sources out in")
    args = parser.parse_args(argv)
    try:
        pages = assemble(args.executed, args.out)
    except CryodiffError as error:
        print(f"cryodiff: error: {error}")
        return 2
    print(f"site sources in {args.out}: {len(pages)} notebooks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
