"""Inter-process file locks: OS locks (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on a lock file.

The OS drops a lock when its process dies, so a crash never leaves a stale lock: a lock file left behind by a killed
process is simply taken over by the next one.
"""

import os
import socket
import sys
from pathlib import Path
from typing import Optional


def try_lock(fd: int) -> bool:
    """Take the exclusive lock of an open file without waiting; False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def unlock(fd: int) -> None:
    """Release the lock taken by :func:`try_lock`."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


class Busy(RuntimeError):
    """Another process holds the lock; the message names it and what to do."""


class ExclusiveFile:
    """A lock file that exists only while one process holds it (``<target>.lock`` next to an output).

    ``acquire`` never waits: when another process holds the lock it raises :class:`Busy`, naming the process. The
    lock file is removed on release; one left by a killed process is taken over.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "labels.nii.gz"
        >>> with ExclusiveFile(target):
        ...     Path(str(target) + ".lock").exists()
        True
        >>> Path(str(target) + ".lock").exists()
        False
    """

    def __init__(self, target: Path, what: str = "writing") -> None:
        self.target = Path(target)
        self.path = Path(str(target) + ".lock")
        self.what = what
        self._fd: Optional[int] = None

    def _holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").strip() or "another process"
        except OSError:
            return "another process"

    def acquire(self) -> None:
        """Take the lock or raise :class:`Busy`."""
        while True:
            fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o666)
            if not try_lock(fd):
                os.close(fd)
                raise Busy(
                    f"{self.target} is being written by {self._holder()} (lock file {self.path}); nothing was "
                    "changed. Run again when that run has finished (delete the lock file only if no run is active)"
                )
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(str(self.path)))
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and lock: try again on the new one
                break
            unlock(fd)
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.what} process {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and release the lock."""
        if self._fd is None:
            return
        try:
            os.remove(str(self.path))
        except OSError:
            pass
        finally:
            unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ExclusiveFile":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
