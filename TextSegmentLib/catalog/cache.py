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
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..filelock import try_lock, unlock
from .errors import CatalogError, DownloadCancelled, DownloadError

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


#: what a model id may look like: a name (letters, digits, '.', '_', '-', '+'), never a path
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


def check_model_id(model_id: Any) -> str:
    """``model_id`` if it is a name that can be a folder of the cache; :class:`CatalogError` otherwise.

    No path separators, no ``..``, no absolute paths, no control characters, no leading dot (the cache's own
    ``.tmp``/``.locks``/``.partial`` folders): an id from outside never becomes a path outside the cache.

    Example:
        >>> check_model_id("ct-organs-v1.0.0")
        'ct-organs-v1.0.0'
        >>> try:
        ...     check_model_id("../x")
        ... except CatalogError as exc:
        ...     print(str(exc)[:36])
        model id '../x' is not a model name:
    """
    text = model_id if isinstance(model_id, str) else repr(model_id)
    if not isinstance(model_id, str) or not _ID_RE.match(model_id) or ".." in model_id:
        shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
        raise CatalogError(
            f"model id '{shown}' is not a model name: ids look like ct-organs-v1.0.0 (letters, digits, '.', '_', "
            "'-'; no folders, no '..'); nothing was changed. To use a model folder, give its path to --model"
        )
    return model_id


def model_dir(model_id: str) -> Path:
    """Folder of an installed model (it may not exist); :class:`CatalogError` for an id that is not a name."""
    return cache_dir() / check_model_id(model_id)


def _unwritable(exc: OSError) -> str:
    return f"cannot write to the model cache {cache_dir()} ({exc}); set {HOME_ENV} to a writable folder"


def work_dir(kind: str) -> Path:
    """``.partial``, ``.tmp`` or ``.locks`` under the cache folder, created."""
    path = cache_dir() / kind
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(_unwritable(exc)) from exc
    return path


def work_temp_dir(prefix: str) -> Path:
    """A new folder of this process in ``.tmp`` (DownloadError naming the cache when it cannot be made, e.g. a
    read-only cache that still holds a ``.tmp`` left over from an earlier run)."""
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=work_dir(".tmp")))
    except OSError as exc:
        raise DownloadError(_unwritable(exc)) from exc


def read_install_record(folder: Path) -> Optional[Dict[str, Any]]:
    """The ``install.json`` written when the model was installed, or None (missing or unreadable)."""
    try:
        return install_record_or_problem(folder)[0]
    except FileNotFoundError:
        return None


def install_record_or_problem(folder: Path) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """``(record, None)``, or ``(None, what is wrong)`` for an unreadable record; FileNotFoundError when absent."""
    path = Path(folder) / INSTALL_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        return None, f"its install record {path} cannot be read ({exc})"
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), (str, type(None))):
        return None, f"its install record {path} is not a TextSegment install record"
    return record, None


def write_install_record(folder: Path, record: Dict[str, Any]) -> None:
    with open(Path(folder) / INSTALL_FILE, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2)


def installed_ids() -> List[str]:
    """Ids of the folders in the cache that hold an install record, sorted."""
    root = cache_dir()
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if _ID_RE.match(p.name) and ".." not in p.name and (p / INSTALL_FILE).is_file()
    )


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
        self.path = work_dir(".locks") / f"{check_model_id(model_id)}.lock"
        self.timeout = timeout
        self.cancel = cancel
        self.on_wait = on_wait
        self.poll = poll
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        try:
            fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise DownloadError(_unwritable(exc)) from None
        start = time.monotonic()
        waited = False
        try:
            while not try_lock(fd):
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
                unlock(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "ModelLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
