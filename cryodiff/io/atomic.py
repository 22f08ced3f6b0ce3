"""Atomic file writes: write to ``NAME.tmp-<pid>SUFFIX`` beside the target, then rename.

An interrupted run therefore never leaves a half-written file under the final name, and a
reader never sees a partial file. The temporary name keeps the target's suffix at the end
(``.particles.tmp-123.mrcs``) because some writers (mrcfile, torch, pandas) look at it.

A run killed with SIGKILL cannot clean up; its temporary files keep the recognisable
``.NAME.tmp-<pid>`` form, and the next write of the same target removes those whose process
is gone (:func:`remove_stale_temps`). Operating-system failures while writing (disk full,
permission denied, read-only file system) become one-line
:class:`~cryodiff.errors.CryodiffError`\\ s naming the target; the old target stays intact.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryodiff.errors import CryodiffError

_TEMP = re.compile(r"^\.(?P<stem>.*)\.tmp-(?P<pid>\d+)(?P<suffix>(\.[^.]*)?)$")

# errno -> what the user is told (the rest use the system's own wording).
_PLAIN = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "file name too long",
}


def describe_os_error(error: OSError) -> str:
    """A short plain-words reason for an ``OSError`` (no errno numbers, no traceback)."""
    return _PLAIN.get(error.errno, (error.strerror or type(error).__name__).lower())


def temp_path_for(path: str | os.PathLike) -> Path:
    """The temporary sibling of ``path`` used while it is being written."""
    path = Path(path)
    suffix = "".join(path.suffixes[-1:])
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.tmp-{os.getpid()}{suffix}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files of ``path`` left by killed runs (their process is gone).

    Returns the files removed. Temporary files of live processes (a concurrent run) are kept.
    """
    target = Path(path)
    if not target.parent.is_dir():
        return []
    own = temp_path_for(target)
    match = _TEMP.match(own.name)
    removed = []
    for candidate in target.parent.glob(f".{match['stem']}.tmp-*{match['suffix']}"):
        found = _TEMP.match(candidate.name)
        if (found is None or found["stem"] != match["stem"]
                or found["suffix"] != match["suffix"]):
            continue
        pid = int(found["pid"])
        if pid != os.getpid() and not _process_alive(pid) and candidate.is_file():
            try:
                candidate.unlink()
            except OSError:
                continue
            removed.append(candidate)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    On an exception the temporary file (if any) is removed and the target is left untouched;
    an ``OSError`` (disk full, no permission…) becomes a :class:`CryodiffError` naming
    ``path``. The parent folder is created if needed. A target that is an existing folder is
    refused.
    """
    target = Path(path)
    if target.is_dir():
        raise CryodiffError("is an existing folder; give a file name", path=target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CryodiffError(f"cannot create the folder {target.parent} "
                            f"({describe_os_error(error)})", path=target) from None
    remove_stale_temps(target)
    tmp = temp_path_for(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as error:
        _unlink_quietly(tmp)
        if error.filename is not None and str(error.filename) not in (str(tmp), str(target)):
            raise  # about some other file (an input): not this write's problem
        raise CryodiffError(f"cannot write ({describe_os_error(error)}); nothing was "
                            "changed there", path=target) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by None, recursively.

    JSON has no NaN or Infinity; ``json.dumps`` would write them as invalid tokens.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    return obj


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as strict JSON to ``path`` atomically (keys kept in insertion order).

    Non-finite floats are written as ``null`` (see :func:`json_safe`); callers that can
    produce them say why in the object itself.
    """
    text = json.dumps(json_safe(obj), indent=indent, allow_nan=False)
    write_text_atomic(path, text + "\n")
