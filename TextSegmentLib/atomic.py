"""Write files and folders so that nothing is lost: temporary file next to the target, checked, then renamed.

Rules every writer of TextSegment follows through these helpers:

- the new content goes to a temporary file in the destination folder, created with the user's umask (never 0600);
- it is flushed to disk (``fsync``) and checked by the caller's ``verify`` before it is renamed into place, so a full
  disk or a writer that does not report its errors (ITK's) never leaves a short file under the final name;
- without ``overwrite`` an existing target is never replaced, even one that another process created meanwhile
  (``link`` gives a rename that refuses to replace);
- on any failure the temporary file is removed and the target is as it was.
"""

import errno
import os
import re
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional


class TargetExists(FileExistsError):
    """The target appeared while it was being written and ``overwrite`` was not given; it was left as it was."""


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (``/proc``), else by setting it back.

    Example:
        >>> 0 <= current_umask() <= 0o777
        True
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            found = re.search(r"^Umask:\s*([0-7]+)", fh.read(), re.M)
        if found:
            return int(found.group(1), 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from the umask (0o644 with the usual umask 022)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode a new folder gets from the umask (0o755 with the usual umask 022)."""
    return 0o777 & ~current_umask()


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new, uniquely named folder in ``parent`` with the umask's mode (``tempfile.mkdtemp`` gives 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=str(parent)))
    os.chmod(path, dir_mode())
    return path


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: str, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails with EEXIST instead of replacing what another process wrote meanwhile
    except FileExistsError:
        raise TargetExists(f"{path} appeared while it was being written; it was left as it is") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(path):  # a file system without hard links: check, then rename
            raise TargetExists(f"{path} appeared while it was being written; it was left as it is") from None
        os.replace(tmp, path)
        return
    os.remove(tmp)


@contextmanager
def atomic_file(
    path: Path, suffix: str = "", overwrite: bool = True, verify: Optional[Callable[[str], None]] = None
) -> Iterator[str]:
    """Yield a temporary file name next to ``path``; when the block succeeds the file is synced, checked by
    ``verify(tmp)`` (which raises on a problem) and renamed to ``path``. On any failure the temporary file is removed
    and ``path`` is untouched. Without ``overwrite`` an existing ``path`` is never replaced (:class:`TargetExists`).
    The file gets the mode of the user's umask, also when it replaces an existing one.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "report.json"
        >>> with atomic_file(target) as tmp:
        ...     _ = Path(tmp).write_text("{}")
        >>> target.read_text()
        '{}'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(8):  # a new name of our own: never a file or link that is already there
        tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
        try:  # the umask applies, as for any new file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
            break
        except FileExistsError:
            if attempt == 7:
                raise
    os.close(fd)
    try:
        yield tmp
        if os.path.getsize(tmp) == 0:
            raise OSError(errno.EIO, f"nothing was written to {path} (the disk may be full); it was left as it was")
        _fsync(tmp)
        if verify is not None:
            verify(tmp)
        _commit(tmp, path, overwrite)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def replace_dir(new: Path, target: Path, aside_parent: Optional[Path] = None) -> None:
    """Move the finished folder ``new`` to ``target``.

    An existing ``target`` is first moved aside (into ``aside_parent``, default its own parent) and deleted only after
    ``new`` is in place; if that move fails the old folder is put back. Both paths must be on one file system.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "new").mkdir(); (root / "old").mkdir(); _ = (root / "new" / "f").write_text("v2")
        >>> replace_dir(root / "new", root / "old"); (root / "old" / "f").read_text()
        'v2'
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    parent = Path(aside_parent) if aside_parent is not None else target.parent
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=str(parent)))
    os.rmdir(old)
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
