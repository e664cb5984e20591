"""Inter-process file locks: OS locks (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on a lock file.

The OS drops a lock when its process dies, so a crash never blocks the next run: a lock file left behind by a killed
process (recognised by its content, and unlocked) is removed and taken over by the next one.

A lock file is never written through: it is made complete (content, lock) under a temporary name of its own and linked
to ``<target>.lock`` (a link never follows or replaces anything at that name). A symbolic link, a folder or a user's
own file at that name is refused, never opened for writing, truncated or removed; only the lock file this process
made is removed on release.
"""

import errno
import os
import re
import socket
import stat
import sys
import uuid
from pathlib import Path
from typing import Optional

#: the first words of every lock file TextSegment writes
LOCK_MARK = "TextSegment lock: "
#: what a lock file of TextSegment holds (this release's, or an older one's without the mark)
_LOCK_RE = re.compile(r"^(?:TextSegment lock: )?[A-Za-z][A-Za-z -]{0,40} process \d+ on [^\n]{0,255}\n?$")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


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


class NotALock(FileExistsError):
    """Something that is not a TextSegment lock file (a link, a folder, a user's file) has the lock file's name."""


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class ExclusiveFile:
    """A lock file that exists only while one process holds it (``<target>.lock`` next to an output).

    ``acquire`` never waits: when another process holds the lock it raises :class:`Busy`, naming the process. The
    lock file is removed on release; one left by a killed process is taken over. Anything else at that name (a
    symbolic link, a folder, a file the user made) raises :class:`NotALock` and is left exactly as it was.

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

    # --- what is at the lock's name -------------------------------------------------------------------------------
    def _foreign(self, kind: str) -> NotALock:
        return NotALock(
            f"{self.path} exists and is {kind}, not a TextSegment lock file; nothing was changed (it is never opened "
            f"or removed). Move it away, or write {self.target.name} to another folder"
        )

    def _existing(self) -> None:
        """The lock's name is taken: Busy when a live process holds it; remove a stale lock (ours, unlocked);
        NotALock for anything else. Returns when the caller may try to create the lock again."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise self._foreign("a symbolic link")
        if not stat.S_ISREG(st.st_mode):
            raise self._foreign("a folder" if stat.S_ISDIR(st.st_mode) else "a special file")
        if st.st_size > 512:
            raise self._foreign("a file of its own")
        try:
            fd = os.open(str(self.path), os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return  # its holder removed it meanwhile
        except OSError as exc:
            raise self._foreign(f"a file that cannot be read ({exc.strerror})") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise self._foreign("a special file")
            text = os.read(fd, 600).decode("utf-8", errors="replace")
            if not _LOCK_RE.match(text):
                if text == "" and not try_lock(fd):
                    raise self._busy("another process")  # the lock of a file system without hard links, being made
                raise self._foreign("a file of its own")
            if not try_lock(fd):
                raise self._busy(text.strip().replace(LOCK_MARK, "", 1) or "another process")
            try:  # stale: left by a process that was killed; remove it only if it is still the file we read
                if os.path.samestat(os.fstat(fd), os.lstat(self.path)):
                    os.remove(str(self.path))
            except FileNotFoundError:
                pass
        finally:
            _close_quietly(fd)

    def _busy(self, holder: str) -> Busy:
        return Busy(
            f"{self.target} is being written by {holder} (lock file {self.path}); nothing was changed. Run again "
            "when that run has finished (delete the lock file only if no run is active)"
        )

    # --- taking and giving back -------------------------------------------------------------------------------------
    def _make(self) -> int:
        """A complete, locked lock file under a temporary name; linked to :attr:`path` (EEXIST if taken)."""
        text = f"{LOCK_MARK}{self.what} process {os.getpid()} on {socket.gethostname()}\n".encode()
        tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp"
        fd = os.open(str(tmp), os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
        try:
            try_lock(fd)
            written = os.write(fd, text)
            if written != len(text):
                raise OSError(errno.ENOSPC, "the lock file was cut short")
            try:
                os.link(str(tmp), str(self.path))  # never follows nor replaces what is at the name
            except FileExistsError:
                raise
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                self._make_direct(fd, text)
                return fd
            return fd
        except BaseException:
            _close_quietly(fd)
            raise
        finally:
            try:
                os.remove(str(tmp))
            except OSError:
                pass

    def _make_direct(self, tmp_fd: int, text: bytes) -> None:
        """A file system without hard links: create the name itself exclusively (never through a link)."""
        fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
        try:
            try_lock(fd)
            os.write(fd, text)
        except BaseException:
            os.close(fd)
            os.remove(str(self.path))
            raise
        os.dup2(fd, tmp_fd)
        os.close(fd)

    def acquire(self) -> None:
        """Take the lock, or raise :class:`Busy` (held by a live process), :class:`NotALock` (something else has
        the name) or ``OSError`` naming the lock file (a full disk, a folder that cannot be written)."""
        for _ in range(20):
            self._existing()
            try:
                self._fd = self._make()
                return
            except FileExistsError:
                continue  # made by another process meanwhile: look at it again
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"cannot create the lock file {self.path} ({exc.strerror or exc}); nothing was written. "
                    "Free some disk space or choose a folder you can write",
                ) from None
        raise self._busy("another process")

    def release(self) -> None:
        """Remove the lock file (only if it is still the one this process made) and release the lock."""
        if self._fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self._fd), os.lstat(self.path)):
                os.remove(str(self.path))
        except OSError:
            pass
        finally:
            try:
                unlock(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "ExclusiveFile":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
