"""Atomic file writes: write to ``NAME.tmp-<pid>SUFFIX`` beside the target, then rename.

An interrupted run therefore never leaves a half-written file under the final name, and a
reader never sees a partial file. The temporary name keeps the target's suffix at the end
(``.particles.tmp-123.mrcs``) because some writers (mrcfile, torch, pandas) look at it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temp_path_for(path: str | os.PathLike) -> Path:
    """The temporary sibling of ``path`` used while it is being written."""
    path = Path(path)
    suffix = "".join(path.suffixes[-1:])
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.tmp-{os.getpid()}{suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    On an exception the temporary file (if any) is removed and the target is left untouched.
    The parent folder is created if needed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (keys kept in insertion order)."""
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")
