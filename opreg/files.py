"""The files opreg writes and the ``.npz`` archives it reads, handled so that nothing a user saved is lost and no
file can make opreg allocate what the machine cannot hold.

Every file opreg writes (a model, a plot) is written to a temporary file in the same folder, which ``os.replace``
puts in place only once it is complete: a write that fails midway (a full disk, Ctrl-C) leaves the previous file
as it was. :func:`check_writable` creates and removes such a temporary file, so that a command can find out,
before an hour of training, that its output cannot be written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from opreg.errors import OpregError
from opreg.memory import require_memory

if TYPE_CHECKING:  # imported where an archive is read: `import opreg` need not load zipfile
    import zipfile

NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


class OutputFileError(OpregError, OSError):
    """A file opreg cannot write; a file already at that path is left as it was."""


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise :class:`OutputFileError`, saying why, unless :func:`atomic_write` can write ``path``: by creating and
    removing the temporary file it would write."""
    descriptor, temporary = _create_temporary(os.fspath(path))
    os.close(descriptor)
    os.remove(temporary)


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new contents to: they replace the file at ``path`` when the block ends,
    and if the block raises, the temporary file is removed and ``path`` is untouched. An ``OSError`` (a full
    disk) becomes an :class:`OutputFileError` saying so."""
    name = os.fspath(path)
    descriptor, temporary = _create_temporary(name)
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())  # on disk before it replaces the previous file, not only in a cache
        os.replace(temporary, name)
    except BaseException as exc:
        with suppress(FileNotFoundError):
            os.remove(temporary)
        if isinstance(exc, OSError) and not isinstance(exc, OutputFileError):
            previous = "; the file already there is unchanged" if os.path.exists(name) else ""
            raise OutputFileError(f"cannot write {name!r}: {exc.strerror or exc}{previous}") from exc
        raise


def _create_temporary(name: str) -> tuple[int, str]:
    """A new empty file beside ``name`` (the same folder, so that ``os.replace`` never crosses file systems) with
    the permissions any new file gets; ``tempfile.mkstemp``'s would be the owner's alone."""
    if os.path.isdir(name):
        raise OutputFileError(f"cannot write {name!r}: it is a folder; name a file in it")
    folder, base = os.path.split(name)
    temporary = os.path.join(folder, f".{base}.{os.urandom(4).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        return os.open(temporary, flags, 0o666), temporary
    except OSError as exc:
        folder = folder or os.curdir
        if not os.path.exists(folder):
            reason = f"the folder {folder!r} does not exist; create it first"
        elif not os.path.isdir(folder):
            reason = f"{folder!r} is a file, not a folder"
        else:
            reason = exc.strerror or str(exc)
        raise OutputFileError(f"cannot write {name!r}: {reason}") from exc


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive by name, read without pickle, and only once their headers show that they
    fit in memory: a kilobyte file can claim terabytes. Anything else raises ``ValueError`` (or ``OSError``),
    saying what the file is instead: ``np.load`` would call any file it does not recognise pickled, and suggest
    ``allow_pickle``."""
    import zipfile

    name = os.fspath(path)
    with open(name, "rb") as file:
        magic = file.read(len(NPY_MAGIC))
    if magic.startswith(NPY_MAGIC):
        raise ValueError(
            "it is a single NumPy array (.npy), not an .npz archive of named arrays, as np.savez(file, name=array, "
            "...) writes"
        )
    if not magic.startswith(ZIP_MAGIC):
        raise ValueError("it is not an .npz (zip) archive")
    try:
        with zipfile.ZipFile(name) as archive:
            headers = {member.removesuffix(".npy"): _npy_header(archive, member) for member in archive.namelist()}
        sizes = {key: math.prod(shape) * dtype.itemsize for key, (shape, dtype) in headers.items()}
        if sizes:
            largest = max(sizes, key=lambda key: sizes[key])
            shape, dtype = headers[largest]
            require_memory(sum(sizes.values()), f"its arrays (the largest: {largest!r}, {dtype} {shape})")
        with np.load(name, allow_pickle=False) as loaded:
            return {key: loaded[key] for key in loaded.files}
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"it is a damaged .npz archive: {exc}") from exc


def _npy_header(archive: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an ``.npy`` member of ``archive`` declares, read from its header alone."""
    if not member.endswith(".npy"):
        raise ValueError(f"its entry {member!r} is not an array")
    with archive.open(member) as file:
        version = np.lib.format.read_magic(file)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(file)
    return shape, dtype
