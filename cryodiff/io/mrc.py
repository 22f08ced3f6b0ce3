"""MRC maps and image stacks (via mrcfile): validated reading, atomic and streaming writing.

Maps are ``(L, L, L)`` float32 tensors indexed ``[z, y, x]``; stacks are ``(N, L, L)`` indexed
``[image, y, x]``. Pixel sizes are in Å; ``0.0`` means the header does not record one.
Stacks are memory-mapped, so reading a few images of a large stack touches only those images.
Bad files raise :class:`~cryodiff.errors.CryodiffError` naming the file: a non-finite or negative
pixel size in the header, a map with NaN/inf values, and images with NaN/inf pixels (checked as
they are read, naming the first bad image) are refused.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import TracebackType

import mrcfile
import mrcfile.constants
import mrcfile.dtypes
import mrcfile.utils
import numpy as np
import torch

from cryodiff.errors import CryodiffError
from cryodiff.io.atomic import atomic_path

_HEADER_BYTES = 1024


def _expected_bytes(header) -> int | None:
    """File size the header promises (header + extended header + data), or None if unknown."""
    try:
        dtype = mrcfile.utils.dtype_from_mode(int(header.mode))
    except ValueError:
        return None
    n_values = int(header.nx) * int(header.ny) * int(header.nz)
    return _HEADER_BYTES + int(header.nsymbt) + n_values * np.dtype(dtype).itemsize


def _open(path: str | os.PathLike, mmap: bool):
    """Open an MRC file permissively (odd but readable headers pass) and validate it.

    Permissive mode only warns on a bad file; the warnings are turned into one clear error:
    not an MRC file, truncated, or unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise CryodiffError("file not found", path=path)
    if path.is_dir():
        raise CryodiffError("is a folder, not an MRC file", path=path)
    opener = mrcfile.mmap if mmap else mrcfile.open
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mrc = opener(path, mode="r", permissive=True)
        except (ValueError, OSError) as error:
            raise CryodiffError(f"not a readable MRC file ({error})", path=path) from None
    messages = [str(w.message) for w in caught]
    if mrc.data is not None:
        return mrc
    header = mrc.header
    mrc.close()
    if any("Map ID string not found" in m for m in messages):
        raise CryodiffError("not an MRC file (no 'MAP ' identifier in the header)", path=path)
    expected = _expected_bytes(header) if header is not None else None
    size = path.stat().st_size
    if expected is not None and size < expected:
        raise CryodiffError(
            f"truncated MRC file: the header describes {int(header.nz)} x {int(header.ny)} x "
            f"{int(header.nx)} values ({expected} bytes) but the file has {size} bytes",
            path=path)
    detail = "; ".join(messages) or "no data block"
    raise CryodiffError(f"unreadable MRC file ({detail})", path=path)


def _pixel_size(mrc, path: Path) -> float:
    # The header stores the float32 cell length (box x pixel size); 6 significant digits is
    # what that carries, and gives back 1.7 rather than 1.6999999284744263.
    with np.errstate(all="ignore"):  # a NaN or zero-sized cell is reported below
        value = float(f"{float(mrc.voxel_size.x):.6g}")
    if not np.isfinite(value) or value < 0:
        raise CryodiffError(f"the header's pixel size is {value:g} Å (cell length / box); "
                            "it must be a finite number ≥ 0", path=path)
    return value


def _to_numpy_images(images: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().to("cpu", torch.float32).numpy()
    return np.asarray(images, dtype=np.float32)


def read_map(path: str | os.PathLike) -> tuple[torch.Tensor, float]:
    """Read a cubic 3D map.

    Returns ``(volume, pixel_size_A)``: volume ``(L, L, L)`` float32 indexed ``[z, y, x]``
    (non-standard MRC axis orders are transposed to that), pixel size in Å (0.0 if the header
    has none). Raises CryodiffError for a missing or non-MRC file, a 2D image, a non-cubic map
    or a map with NaN/inf values.
    """
    with _open(path, mmap=False) as mrc:
        data = np.asarray(mrc.data)
        pixel_size_A = _pixel_size(mrc, Path(path))
        axis_labels = [int(mrc.header.maps), int(mrc.header.mapr), int(mrc.header.mapc)]
    if data.ndim != 3 or data.shape[0] == 1:
        raise CryodiffError(f"is a 2D image (shape {tuple(data.shape)}), not a 3D map", path=path)
    if sorted(axis_labels) == [1, 2, 3] and axis_labels != [3, 2, 1]:
        data = np.transpose(data, [axis_labels.index(3), axis_labels.index(2),
                                   axis_labels.index(1)])
    if len(set(data.shape)) != 1:
        raise CryodiffError(f"map is not cubic (shape {tuple(data.shape)})", path=path)
    volume = np.array(data, dtype=np.float32, order="C")
    if not np.isfinite(volume).all():
        raise CryodiffError(f"map contains {int((~np.isfinite(volume)).sum())} NaN or "
                            "infinite values", path=path)
    return torch.from_numpy(volume), pixel_size_A


def write_map(path: str | os.PathLike, volume: torch.Tensor | np.ndarray,
              pixel_size_A: float) -> None:
    """Write a ``(L, L, L)`` map as float32 MRC with its pixel size (Å), atomically."""
    data = _to_numpy_images(volume)
    if data.ndim != 3:
        raise ValueError(f"write_map expects a 3D volume, got shape {data.shape}")
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.set_volume()
            mrc.voxel_size = float(pixel_size_A)


class StackFile:
    """An open, validated, memory-mapped image stack; use as a context manager.

    Attributes: ``path``, ``n_images``, ``box`` (L), ``pixel_size_A`` (0.0 if not recorded).
    A single 2D image counts as a stack of one.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._mrc = _open(self.path, mmap=True)
        data = self._mrc.data
        if data.ndim == 2:
            data = data[None]
        if data.ndim != 3 or data.shape[1] != data.shape[2]:
            shape = tuple(data.shape)
            self._mrc.close()
            raise CryodiffError(f"not a stack of square images (shape {shape})", path=path)
        self._data = data
        self.n_images, self.box = int(data.shape[0]), int(data.shape[1])
        try:
            self.pixel_size_A = _pixel_size(self._mrc, self.path)
        except CryodiffError:
            self._mrc.close()
            raise

    def read(self, indices: np.ndarray | list[int] | None = None,
             check_finite: bool = True) -> torch.Tensor:
        """Images at 0-based ``indices`` (all if None) as a ``(n, L, L)`` float32 tensor.

        Raises CryodiffError naming the first image with a NaN or infinite pixel, unless
        ``check_finite`` is False (to find such images, see :func:`nonfinite_images`).
        """
        if indices is None:
            unique, inverse = np.arange(self.n_images), None
            block = np.array(self._data, dtype=np.float32)
        else:
            indices = np.asarray(indices, dtype=np.int64).reshape(-1)
            bad = indices[(indices < 0) | (indices >= self.n_images)]
            if bad.size:
                raise CryodiffError(f"image {int(bad[0]) + 1} requested but the stack has only "
                                    f"{self.n_images} images", path=self.path)
            # Sorted unique reads walk the memory map forwards; the order is restored after.
            unique, inverse = np.unique(indices, return_inverse=True)
            block = np.asarray(self._data[unique], dtype=np.float32)
        if check_finite:
            bad = nonfinite_images(block)
            if bad.size:
                raise CryodiffError(
                    f"image {int(unique[bad[0]]) + 1} has NaN or infinite pixels; such images "
                    "are refused (remove them, or use --skip-bad where a command offers it)",
                    path=self.path)
        return torch.from_numpy(np.ascontiguousarray(block if inverse is None else block[inverse]))

    def close(self) -> None:
        self._data = None
        self._mrc.close()

    def __enter__(self) -> StackFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def nonfinite_images(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Positions (along the first axis) of the images with any NaN or infinite pixel."""
    images = np.asarray(images)
    flat = images.reshape(images.shape[0], -1)
    # In blocks of images, so the temporary mask stays small for a whole stack.
    found = [start + np.flatnonzero(~np.isfinite(flat[start:start + 256]).all(axis=1))
             for start in range(0, flat.shape[0], 256)]
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def is_stack_file(path: str | os.PathLike) -> bool:
    """True for an image stack (``.mrcs``, one 2D image, or a non-cubic file whose header
    says image stack), False for a volume.

    Some programs write maps with the image-stack space group 0, so a cubic ``.mrc`` is a map.
    """
    if Path(path).suffix.lower() == ".mrcs":
        return True
    with _open(path, mmap=True) as mrc:
        shape = mrc.data.shape
        if len(shape) < 3 or shape[0] == 1:
            return True
        return int(mrc.header.ispg) == 0 and len(set(shape)) != 1


def describe_mrc(path: str | os.PathLike) -> dict:
    """Summary of a map or stack: kind, shape, pixel size (Å), min, max, mean.

    A map is validated as :func:`read_map` does (3D, cubic, finite); a stack is scanned with
    the memory map, so it is never loaded whole.
    """
    if is_stack_file(path):
        with StackFile(path) as stack:
            kind, shape, pixel_size_A = "stack", list(stack._data.shape), stack.pixel_size_A
            summary = _statistics(stack._data)
    else:
        volume, pixel_size_A = read_map(path)
        kind, shape, summary = "map", list(volume.shape), _statistics(volume.numpy())
    return {"path": str(path), "kind": kind, "shape": shape, "pixel_size_A": pixel_size_A,
            **summary}


def _statistics(data: np.ndarray) -> dict:
    """min, max, mean of the finite values (None when there are none: JSON null, not inf),
    and, when there are any, the count of NaN/inf values and of images holding them."""
    # Block by block, so a memory-mapped stack is read once without a full float64 copy.
    low, high, total, count, bad_values, bad_images = np.inf, -np.inf, 0.0, 0, 0, 0
    for start in range(0, data.shape[0], 256):
        block = np.asarray(data[start:start + 256], dtype=np.float64)
        finite = np.isfinite(block)
        if not finite.all():
            bad_values += int((~finite).sum())
            bad_images += len(nonfinite_images(block))
        values = block[finite]
        if values.size:
            low, high = min(low, values.min()), max(high, values.max())
            total += values.sum()
            count += values.size
    summary = ({"min": float(low), "max": float(high), "mean": float(total / count)} if count
               else {"min": None, "max": None, "mean": None})
    if bad_values:
        summary |= {"nonfinite_values": bad_values, "images_with_nonfinite_values": bad_images}
    return summary


def stack_info(path: str | os.PathLike) -> tuple[int, int, float]:
    """``(n_images, box, pixel_size_A)`` of a stack, reading only its header."""
    with StackFile(path) as stack:
        return stack.n_images, stack.box, stack.pixel_size_A


def read_stack(path: str | os.PathLike,
               indices: np.ndarray | list[int] | None = None) -> torch.Tensor:
    """Read a stack (or only the images at 0-based ``indices``) as ``(n, L, L)`` float32."""
    with StackFile(path) as stack:
        return stack.read(indices)


def write_stack(path: str | os.PathLike, images: torch.Tensor | np.ndarray,
                pixel_size_A: float) -> None:
    """Write ``(N, L, L)`` images as a float32 MRC stack with pixel size in Å, atomically."""
    data = _to_numpy_images(images)
    if data.ndim != 3 or data.shape[1] != data.shape[2]:
        raise ValueError(f"write_stack expects (N, L, L) images, got shape {data.shape}")
    with StackWriter(path, data.shape[-1], pixel_size_A) as writer:
        writer.write(data)


class StackWriter:
    """Stream images to an MRC stack chunk by chunk; memory use is one chunk.

    Data go to a temporary file beside ``path`` as they arrive; on a clean exit the header
    (image count, pixel size, statistics) is written and the file renamed over ``path``. If the
    block raises, the temporary file is removed and ``path`` is untouched::

        with StackWriter("particles.mrcs", box=128, pixel_size_A=1.5) as out:
            for chunk in chunks:          # each (n, 128, 128)
                out.write(chunk)
    """

    def __init__(self, path: str | os.PathLike, box: int, pixel_size_A: float):
        self.path = Path(path)
        self.box = int(box)
        self.pixel_size_A = float(pixel_size_A)
        self.n_written = 0
        self._min, self._max = np.inf, -np.inf
        self._sum = self._sum_sq = 0.0
        self._atomic = None
        self._file = None

    def __enter__(self) -> StackWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._file = open(tmp, "wb")
        self._file.write(bytes(_HEADER_BYTES))
        return self

    def write(self, images: torch.Tensor | np.ndarray) -> None:
        """Append ``(n, L, L)`` (or one ``(L, L)``) images."""
        data = _to_numpy_images(images)
        if data.ndim == 2:
            data = data[None]
        if data.ndim != 3 or data.shape[1:] != (self.box, self.box):
            raise ValueError(f"expected images of shape (n, {self.box}, {self.box}), "
                             f"got {data.shape}")
        if self._file is None:
            raise RuntimeError("StackWriter.write called outside its 'with' block")
        if data.shape[0] == 0:
            return
        data = np.ascontiguousarray(data, dtype="<f4")
        self._file.write(memoryview(data).cast("B"))
        flat = data.reshape(-1)
        self._min = min(self._min, float(flat.min()))
        self._max = max(self._max, float(flat.max()))
        self._sum += float(flat.sum(dtype=np.float64))
        self._sum_sq += float(np.dot(flat, flat))  # float32 BLAS: ample for a header's rms
        self.n_written += data.shape[0]

    def _header(self) -> bytes:
        header = np.zeros((), dtype=mrcfile.dtypes.HEADER_DTYPE.newbyteorder("<"))
        n, box = self.n_written, self.box
        header["nx"], header["ny"], header["nz"] = box, box, n
        header["mode"] = 2
        header["mx"], header["my"], header["mz"] = box, box, 1
        header["cella"] = (box * self.pixel_size_A, box * self.pixel_size_A, self.pixel_size_A)
        header["cellb"] = (90.0, 90.0, 90.0)
        header["mapc"], header["mapr"], header["maps"] = 1, 2, 3
        header["ispg"] = mrcfile.constants.IMAGE_STACK_SPACEGROUP
        header["nversion"] = 20140
        header["map"] = mrcfile.constants.MAP_ID
        header["machst"] = mrcfile.utils.machine_stamp_from_byte_order("<")
        count = max(n * box * box, 1)
        mean = self._sum / count
        if n:
            header["dmin"], header["dmax"], header["dmean"] = self._min, self._max, mean
            header["rms"] = np.sqrt(max(self._sum_sq / count - mean * mean, 0.0))
        else:
            # MRC2014's "statistics not computed" marker: dmax < dmin, rms < 0.
            header["dmin"], header["dmax"], header["dmean"], header["rms"] = 0, -1, -2, -1
        return header.tobytes()

    def __exit__(self, exc_type, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self._file.seek(0)
                self._file.write(self._header())
            self._file.close()
        finally:
            self._file = None
            self._atomic.__exit__(exc_type, exc, tb)
