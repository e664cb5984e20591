"""The model cache folder and its inter-process lock.

Layout under :func:`cache_dir` (``$TEXTSEGMENT_HOME``, default ``~/.cache/TextSegment/models``)::

    <id>/               an installed bundle (model.json, model.safetensors, install.json)
    .partial/           downloads in progress, kept after a network failure so the next try resumes
    .tmp/               unpack folders; renamed to <id>/ only after every check passed
    .locks/<id>.lock    held by the process that downloads, installs or removes <id>

The lock is an OS file lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows); the OS releases it when the
holding process dies, so a crashed download never leaves a stale lock behind.
"""

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .errors import DownloadCancelled, DownloadError

HOME_ENV = "TEXTSEGMENT_HOME"
INSTALL_FILE = "install.json"


def cache_dir() -> Path:
    """The model cache folder (created on demand by the functions that write to it).

    Example:
        >>> import os
        >>> os.environ["TEXTSEGMENT_HOME"] = "/tmp/ts-models"
        >>> str(cache_dir())
        '/tmp/ts-models'
        >>> del os.environ["TEXTSEGMENT_HOME"]
    """
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "TextSegment" / "models"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "TextSegment" / "models"


def model_dir(model_id: str) -> Path:
    """Folder of an installed model (it may not exist)."""
    return cache_dir() / model_id


def work_dir(kind: str) -> Path:
    """``.partial``, ``.tmp`` or ``.locks`` under the cache folder, created."""
    path = cache_dir() / kind
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot write to the model cache {cache_dir()} ({exc}); set {HOME_ENV} to a writable folder"
        ) from exc
    return path


def read_install_record(folder: Path) -> Optional[Dict[str, Any]]:
    """The ``install.json`` written when the model was installed, or None."""
    try:
        with open(Path(folder) / INSTALL_FILE, encoding="utf-8") as fh:
            record = json.load(fh)
        return record if isinstance(record, dict) else None
    except (OSError, ValueError):
        return None


def write_install_record(folder: Path, record: Dict[str, Any]) -> None:
    with open(Path(folder) / INSTALL_FILE, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2)


def installed_ids() -> List[str]:
    """Ids of the folders in the cache that hold an install record, sorted."""
    root = cache_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and (p / INSTALL_FILE).is_file())


def _try_lock(fd: int) -> bool:
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


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


class ModelLock:
    """Exclusive lock on one model id across processes; waits (polling ``cancel``) while another process holds it.

    Example:
        >>> import os, tempfile
        >>> os.environ["TEXTSEGMENT_HOME"] = tempfile.mkdtemp()
        >>> with ModelLock("tiny-v1.0.0"):
        ...     pass
        >>> del os.environ["TEXTSEGMENT_HOME"]
    """

    def __init__(
        self,
        model_id: str,
        timeout: Optional[float] = None,
        cancel: Optional[Callable[[], bool]] = None,
        on_wait: Optional[Callable[[], None]] = None,
        poll: float = 0.1,
    ):
        self.path = work_dir(".locks") / f"{model_id}.lock"
        self.timeout = timeout
        self.cancel = cancel
        self.on_wait = on_wait
        self.poll = poll
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        start = time.monotonic()
        waited = False
        try:
            while not _try_lock(fd):
                if not waited and self.on_wait is not None:
                    self.on_wait()
                waited = True
                if self.cancel is not None and self.cancel():
                    raise DownloadCancelled("cancelled while waiting for another process to finish")
                if self.timeout is not None and time.monotonic() - start > self.timeout:
                    raise DownloadError(
                        f"another process has held {self.path} for over {self.timeout:.0f} s; "
                        "wait for it to finish or stop it"
                    )
                time.sleep(self.poll)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                _unlock(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "ModelLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
