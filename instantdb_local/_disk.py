"""Small durable-disk helpers shared by the blob store, the stream store and the
instance: private directories and making a directory entry durable."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "private_dir"]


def private_dir(path: Path, *, parents: bool = False) -> bool:
    """Create ``path`` readable by its owner only (0700) unless it exists; whether it was
    made. An existing path that is not a directory raises `NotADirectoryError`."""
    try:
        path.mkdir(mode=0o700, parents=parents)
    except FileExistsError:
        if not path.is_dir():
            raise NotADirectoryError(f"{path} exists and is not a directory.") from None
        return False
    path.chmod(0o700)  # mkdir's mode is filtered by the umask; set it exactly
    return True


def fsync_dir(path: Path) -> None:
    """Make the entries made in ``path`` (a new file, a rename) durable.

    Directories cannot be opened on Windows; there an entry is as durable as the
    platform makes it.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
