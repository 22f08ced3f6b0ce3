"""Checks on a command's output paths before any work starts, so nothing is lost.

A command states its inputs and the files (or folder) it will write; :func:`check_outputs`
refuses, with one :class:`~cryodiff.errors.CryodiffError` line naming the path:

* an output that is one of the inputs (the same file, through any path or link),
* a file output that is an existing folder, or a folder output that is an existing file,
* an output under a path component that is a file, or under a folder that is not writable.

A full disk cannot be foreseen; :mod:`cryodiff.io.atomic` turns it into one line while
writing and leaves the old file in place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cryodiff.errors import CryodiffError

PathLike = str | os.PathLike


def same_file(a: PathLike, b: PathLike) -> bool:
    """True if ``a`` and ``b`` name the same file (existing: same inode; else same path)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable_place(path: Path) -> None:
    """The folder ``path`` would be created in exists as a writable folder (or can be made)."""
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise CryodiffError(f"cannot write there: {ancestor} is a file, not a folder", path=path)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise CryodiffError(f"cannot write there: the folder {ancestor} is not writable",
                            path=path)


def check_outputs(files: Iterable[PathLike] = (), inputs: Iterable[PathLike | None] = (),
                  folder: PathLike | None = None) -> None:
    """Refuse outputs that would overwrite an input or cannot be written (module docstring).

    ``files``: files the command will write; ``folder``: an output folder (may exist);
    ``inputs``: every file or folder the command reads (None entries are ignored).
    """
    inputs = [Path(p) for p in inputs if p is not None]
    files = [Path(p) for p in files]
    if folder is not None:
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise CryodiffError("is an existing file; the output must be a folder", path=folder)
        if folder.is_dir():
            if not os.access(folder, os.W_OK | os.X_OK):
                raise CryodiffError("the output folder is not writable", path=folder)
        else:
            _check_writable_place(folder)
    for file in files:
        for source in inputs:
            if same_file(file, source):
                raise CryodiffError(f"the output is the input {source}; refusing to "
                                    "overwrite it (choose another output path)", path=file)
        if file.is_dir():
            raise CryodiffError("is an existing folder; give a file name", path=file)
        if file.exists() and not os.access(file.parent, os.W_OK | os.X_OK):
            raise CryodiffError(f"cannot replace it: the folder {file.parent} is not writable",
                                path=file)
        _check_writable_place(file)
