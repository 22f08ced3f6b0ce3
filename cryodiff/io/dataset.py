"""A simulated data set folder appears whole or is recognisably incomplete.

``cryodiff simulate`` writes several files (three stacks, a STAR file, ``simulation.json``);
each is written atomically, but a run killed between two renames would leave new stacks beside
an old STAR file. So a writer, just before it replaces the first file, puts the marker
:data:`INCOMPLETE` in the folder and removes the old manifest ``simulation.json``; it writes
the manifest and removes the marker last (:func:`begin_dataset`, :func:`finish_dataset`). A
run that fails before that point leaves the old data set as it was. Readers call
:func:`check_dataset`: a marker, or a manifest whose counts and boxes disagree with the stacks,
is refused with one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import write_json_atomic, write_text_atomic

MANIFEST = "simulation.json"
INCOMPLETE = ".simulate-incomplete"


def begin_dataset(folder: str | os.PathLike) -> None:
    """Mark ``folder`` as being written (before any data file in it is replaced)."""
    folder = Path(folder)
    write_text_atomic(folder / INCOMPLETE, "a `cryodiff simulate` run is writing this folder; "
                      "if no run is, it was interrupted: simulate again\n")
    (folder / MANIFEST).unlink(missing_ok=True)


def finish_dataset(folder: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Write the manifest (it names the files and ``n_particles``, ``box``), then unmark."""
    folder = Path(folder)
    write_json_atomic(folder / MANIFEST, manifest)
    (folder / INCOMPLETE).unlink(missing_ok=True)


def check_dataset(folder: str | os.PathLike, stacks: list[str]) -> None:
    """Refuse an interrupted or inconsistent data set folder (see the module docstring).

    ``stacks``: the stack files (names in ``folder``) the caller will read. A folder with no
    manifest and no marker (pairs assembled by hand) is accepted; its stacks must agree with
    each other in count and box.
    """
    from cryodiff.io.mrc import stack_info

    folder = Path(folder)
    if (folder / INCOMPLETE).exists():
        raise CryodiffError(f"incomplete data set: a `cryodiff simulate` run was interrupted "
                            f"while writing it ({INCOMPLETE} is present); simulate again",
                            path=folder)
    shapes = {name: stack_info(folder / name)[:2] for name in stacks}
    manifest = folder / MANIFEST
    if manifest.exists():
        try:
            summary = json.loads(manifest.read_text(encoding="utf-8"))
            expected = (int(summary["n_particles"]), int(summary["box"]))
        except (OSError, ValueError, KeyError, TypeError):
            raise CryodiffError("unreadable manifest (not a `cryodiff simulate` "
                                "simulation.json)", path=manifest) from None
        for name, shape in shapes.items():
            if shape != expected:
                raise CryodiffError(
                    f"inconsistent data set: {name} holds {shape[0]} images of {shape[1]} px "
                    f"but {MANIFEST} says {expected[0]} of {expected[1]} px; simulate again",
                    path=folder)
    if len(set(shapes.values())) > 1:
        detail = ", ".join(f"{name} {n} x {box} px" for name, (n, box) in shapes.items())
        raise CryodiffError(f"inconsistent data set: the stacks differ ({detail})", path=folder)
