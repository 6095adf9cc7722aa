"""Writing run outputs (checkpoints, artifacts, demonstration bags): one clear error for a full disk
or a directory that cannot be written.

Left alone, a full disk surfaces as whatever the writing library raises (torch.save: a
`RuntimeError` "unexpected pos 576 vs 534"; numpy, zipfile, mcap: a bare `OSError` deep in a
traceback) and a read-only `--out` as an `OSError` traceback. Writers translate those errors into
`OutputError`, which names the path and the reason in words ("no space left on device",
"read-only file system"); `rrl` prints it and exits with status 2. Each writer removes its own
temporary files before raising, so the error is all that is left of the failed write.
"""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REASONS: dict[int, str] = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
"""The OS errors that mean "this output cannot be written here", and how the message words them."""


class OutputError(Exception):
    """An output could not be written (full disk, read-only or forbidden directory).

    `path` is the file or directory being written, `reason` the words for the OS error; the
    message is "cannot write PATH: REASON" plus what was kept, when the writer knows.
    """

    def __init__(self, path: str | os.PathLike, reason: str, kept: str = ""):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot write {self.path}: {reason}" + (f"; {kept}" if kept else ""))


def as_output_error(error: BaseException, path: str | os.PathLike, kept: str = "") -> OutputError | None:
    """The `OutputError` for an OS error that means the output cannot be written, else None.

    The path is the one the OS names (`error.filename`, set when `open`/`mkdir` fail), else `path`
    (a failing `write` names no file).
    """
    if isinstance(error, OutputError):
        return error
    if not isinstance(error, OSError) or error.errno not in REASONS:
        return None
    return OutputError(error.filename or path, REASONS[error.errno], kept)


@contextmanager
def writing(path: str | os.PathLike, kept: str = "") -> Iterator[None]:
    """Turn an OS error that means "cannot write here" inside the block into `OutputError` (others pass)."""
    try:
        yield
    except OSError as e:
        err = as_output_error(e, path, kept)
        if err is None:
            raise
        raise err from None


@contextmanager
def removing_new_files(directory: str | os.PathLike) -> Iterator[None]:
    """If the block raises, remove what it created directly in `directory` (the directory too, if it
    created it): a failed export leaves its `--out` as it found it, temporaries included."""
    directory = Path(directory)
    existed = directory.is_dir()
    before = set(os.listdir(directory)) if existed else set()
    try:
        yield
    except BaseException:
        try:
            if not existed:
                shutil.rmtree(directory, ignore_errors=True)
            elif directory.is_dir():
                for name in set(os.listdir(directory)) - before:
                    remove_path(directory / name)
        except OSError:
            pass
        raise


def remove_path(path: Path) -> None:
    """Remove a file or a directory tree; what cannot be removed is left (best effort, never raises)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or unlink inside `path` durable (the directory entry itself is fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
