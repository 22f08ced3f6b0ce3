"""Download one file through ``pooch``: temporary file, SHA-256 check, rename; gunzip atomically.

``pooch`` streams into a temporary file beside the target and renames it only once complete
and (when a hash is given) verified, so an interrupted or mismatched download never leaves a
file under the final name, and the next run starts again cleanly. A file already in the cache
is reused when it matches the given hash (or when no hash is given). Network failures become
one-line :class:`~cryodiff.errors.CryodiffError` messages.
"""

from __future__ import annotations

import gzip
import logging
import re
import shutil
import sys
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pooch
import requests

from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import atomic_path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60


@dataclass(frozen=True)
class Downloaded:
    """A file in the cache: ``path``, its ``sha256``, whether this run ``downloaded`` it and
    whether that hash was ``pinned`` (checked against a known value)."""

    path: Path
    sha256: str
    downloaded: bool
    pinned: bool


class HashMismatch(CryodiffError):
    """A download whose SHA-256 is not the expected one (it has been deleted)."""


def check_sha256(text: str | None) -> str | None:
    """``text`` as a lower-case SHA-256 hex digest (None passes); else a CryodiffError."""
    if text is None:
        return None
    digest = text.strip().lower().removeprefix("sha256:")
    if not _SHA256.match(digest):
        raise CryodiffError(f"--sha256 {text!r} is not a SHA-256 hex digest (64 hex digits)")
    return digest


def file_name_of(url: str) -> str:
    """The file name at the end of an http(s) URL; a CryodiffError if there is none."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CryodiffError(f"not an http(s) URL: {url}")
    name = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if not name or name in (".", ".."):
        raise CryodiffError(f"the URL names no file: {url}")
    return name


@contextmanager
def _quiet_pooch():
    # pooch logs every download on its own handler; cryodiff prints its own lines instead.
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _network_error(url: str, error: requests.RequestException) -> CryodiffError:
    host = urlsplit(url).netloc
    text = str(error)
    if isinstance(error, requests.HTTPError) and error.response is not None:
        response = error.response
        return CryodiffError(f"HTTP {response.status_code} {response.reason} for {url}")
    if isinstance(error, requests.Timeout):
        return CryodiffError(f"no answer from {host} within {_TIMEOUT_S} s ({url}); "
                             "try again later")
    if isinstance(error, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in text:
        return CryodiffError(f"the download of {url} was cut off before the end; nothing was "
                             "kept, run the command again to restart it")
    if isinstance(error, requests.ConnectionError):
        reason = ("host name not found" if re.search(r"NameResolution|resolve|not known", text)
                  else "connection refused" if "refused" in text.lower()
                  else "connection failed")
        return CryodiffError(f"cannot reach {host} ({reason}): is the network up? ({url})")
    return CryodiffError(f"download of {url} failed: {type(error).__name__}")


def download(url: str, target: Path, sha256: str | None = None) -> Downloaded:
    """Fetch ``url`` to ``target`` (a cached copy is reused), checked against ``sha256``.

    A mismatch removes the download and any stale copy under ``target`` and raises a
    CryodiffError naming both hashes.
    """
    sha256 = check_sha256(sha256)
    target = Path(target)
    # pooch reuses a cached file that matches (any cached file when no hash is given).
    reused = target.exists() and (sha256 is None or pooch.file_hash(str(target)) == sha256)
    downloader = pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), chunk_size=_CHUNK_BYTES,
                                      timeout=_TIMEOUT_S)
    try:
        with _quiet_pooch():
            path = pooch.retrieve(url, known_hash=sha256, fname=target.name,
                                  path=target.parent, downloader=downloader)
    except requests.RequestException as error:
        raise _network_error(url, error) from None
    except ValueError as error:
        found = re.search(r"but got ([0-9a-f]{64})", str(error))
        if found is None:
            raise CryodiffError(f"download of {url} failed: {error}") from None
        # A cached copy that fails the hash is not the file asked for either.
        target.unlink(missing_ok=True)
        raise HashMismatch(f"SHA-256 mismatch for {url}: expected {sha256}, got "
                           f"{found.group(1)}; the download was deleted") from None
    except OSError as error:
        raise CryodiffError(f"cannot write the download ({error.strerror or error})",
                            path=target.parent) from None
    path = Path(path)
    actual = sha256 if sha256 is not None else pooch.file_hash(str(path))
    return Downloaded(path=path, sha256=actual, downloaded=not reused, pinned=sha256 is not None)


def gunzip(path: Path, target: Path | None = None, force: bool = False) -> Path:
    """Decompress ``path`` (``NAME.gz``) to ``target`` (default ``NAME``) atomically.

    An existing ``target`` is kept unless ``force`` (its ``.gz`` was just downloaded).
    A corrupt archive raises a CryodiffError and leaves no ``target``.
    """
    path = Path(path)
    target = Path(target) if target is not None else path.with_suffix("")
    if target.exists() and not force:
        return target
    try:
        with atomic_path(target) as tmp, gzip.open(path, "rb") as source, open(tmp, "wb") as out:
            shutil.copyfileobj(source, out, _CHUNK_BYTES)
    except (OSError, EOFError, zlib.error) as error:
        raise CryodiffError(f"not a readable gzip file ({error})", path=path) from None
    return target


def fetch_url(url: str, dest: Path, sha256: str | None = None) -> tuple[Downloaded, Path]:
    """Fetch any http(s) URL into ``dest``; return the download and the usable file
    (``NAME`` decompressed from ``NAME.gz``)."""
    target = Path(dest) / file_name_of(url)
    unpacked = target.with_suffix("") if target.suffix == ".gz" else target
    try:
        fetched = download(url, target, sha256)
    except HashMismatch:
        if unpacked != target:
            unpacked.unlink(missing_ok=True)
        raise
    if unpacked == target:
        return fetched, target
    return fetched, gunzip(target, unpacked, force=fetched.downloaded)
