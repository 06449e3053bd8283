"""Small durable-disk helpers shared by the blob store, the stream store and the
instance: private directories, making a directory entry durable, and the lock that
gives one server a data directory."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

if sys.platform != "win32":
    import fcntl

__all__ = ["ExclusiveLock", "LockHeldError", "fsync_dir", "private_dir"]


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


class LockHeldError(Exception):
    """Another open file holds the lock. ``pid`` is the holder's, as it wrote it in the
    lock file (None if unknown)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path} is locked by process {pid or 'unknown'}")
        self.path = path
        self.pid = pid


class ExclusiveLock:
    """An exclusive advisory lock (``flock``) on a file, with the holder's pid in it.

    The kernel drops the lock when its file is closed, which happens when the process
    ends however it ends (SIGKILL included), so a crashed holder never leaves a stale
    lock behind. The lock belongs to the open file, not the process: a second lock on
    the same file in the same process is refused too. Where ``flock`` does not exist
    (Windows) the lock is a no-op.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock at once, or raise `LockHeldError`."""
        if sys.platform == "win32" or self._fd is not None:
            return
        # Not inherited by child processes (os.open's default), which would otherwise
        # keep the lock after this process ends.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise LockHeldError(self.path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only for the message another server shows
        self._fd = fd

    def release(self) -> None:
        """Give the lock up. Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the file releases the lock


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode("ascii").strip())
        return pid if pid > 0 else None
    return None
