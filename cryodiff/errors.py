"""The one exception type for user-caused problems (bad files, bad arguments)."""

from __future__ import annotations

from os import PathLike


class CryodiffError(Exception):
    """A problem the user can fix; the CLI prints its message alone and exits non-zero.

    Messages name the file (when there is one) and the problem in one line, e.g.
    ``particles.star: column rlnImageName is missing``.
    """

    def __init__(self, message: str, path: str | PathLike | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
