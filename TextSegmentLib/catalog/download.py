"""HTTP(S) download of one file: streamed, resumable, with timeouts, retries, progress and cancel.

Only the standard library is used. Proxies come from the usual environment variables (``http_proxy``,
``https_proxy``, ``no_proxy``); HTTPS certificates are checked against the system store (``SSL_CERT_FILE`` adds a
site's own authority). ``file://`` URLs work too, for mirrors on a shared drive.
"""

import http.client
import logging
import os
import socket
import ssl
import stat
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence
from urllib.parse import urlsplit
from urllib.request import url2pathname

from .errors import DownloadCancelled, DownloadError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, Optional[int]], None]
CancelFn = Callable[[], bool]
#: HTTP statuses worth another try (server trouble, rate limits)
RETRY_STATUS = (408, 425, 429, 500, 502, 503, 504)


@dataclass
class DownloadOptions:
    """Network settings of a download; the defaults suit a slow hospital network, tests shrink them.

    ``connect_timeout``/``read_timeout``: seconds to open the connection / to wait for the next bytes.
    ``retries``: further tries per URL after the first; the wait before try k is ``backoff * 2**(k-1)`` seconds
    (at most ``max_backoff``). A try that fails mid-way resumes with an HTTP Range request where the server allows.
    """

    connect_timeout: float = 20.0
    read_timeout: float = 60.0
    retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    chunk_size: int = 1 << 16

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, got {self.retries!r}")
        for name in ("connect_timeout", "read_timeout", "backoff", "max_backoff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


class _Retryable(Exception):
    """An attempt failed in a way that another attempt may fix."""


class _LocalFailure(DownloadError):
    """Writing on this machine failed (disk full, permissions): no other URL will help."""


def _user_agent() -> str:
    from .. import __version__

    return f"TextSegment/{__version__} (+python-urllib)"


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler())


def _set_read_timeout(response, seconds: float) -> None:
    """Switch the socket of an open HTTP response from the connect timeout to the read timeout."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _check_cancel(cancel: Optional[CancelFn]) -> None:
    if cancel is not None and cancel():
        raise DownloadCancelled("download cancelled")


def _sleep(seconds: float, cancel: Optional[CancelFn]) -> None:
    end = time.monotonic() + seconds
    while True:
        _check_cancel(cancel)
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))


def _check_local_source(url: str) -> None:
    """A ``file://`` URL must name a regular file: a FIFO or a device would block the download forever."""
    parts = urlsplit(url)
    share = f"//{parts.netloc}" if parts.netloc and parts.netloc != "localhost" else ""
    path = url2pathname(share + parts.path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DownloadError(f"{url} cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DownloadError(f"{url} is not a regular file (a folder, FIFO or device); check the URL in the catalog")


def _attempt(
    url: str,
    dest: Path,
    expected_size: Optional[int],
    opts: DownloadOptions,
    progress: Optional[ProgressFn],
    cancel: Optional[CancelFn],
) -> None:
    """One request; appends to ``dest`` from its current size. Raises _Retryable or DownloadError."""
    host = urlsplit(url).netloc or url
    if urlsplit(url).scheme.lower() == "file":
        _check_local_source(url)
    offset = dest.stat().st_size if dest.exists() else 0
    if expected_size is not None and offset > expected_size:
        dest.unlink()
        offset = 0
    if expected_size is not None and offset == expected_size:
        return  # complete already (an earlier try ended just before verification); the caller checks it
    request = urllib.request.Request(url, headers={"User-Agent": _user_agent(), "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = _opener().open(request, timeout=opts.connect_timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            dest.unlink()  # our partial file does not fit the server's file: start again
            raise _Retryable(f"{url}: the server refused to resume; starting again") from exc
        if exc.code in RETRY_STATUS:
            raise _Retryable(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        hint = " (the file is not on the server: check the URL in the catalog)" if exc.code == 404 else ""
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}{hint}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise _Retryable(f"{host} did not answer within {opts.connect_timeout:g} s") from exc
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise DownloadError(
                f"the HTTPS certificate of {host} cannot be verified ({reason.verify_message}); behind a proxy that "
                "re-signs HTTPS, set SSL_CERT_FILE to a file with your site's certificate authority"
            ) from exc
        if isinstance(reason, socket.gaierror):  # no DNS: offline, or a proxy is needed; retrying will not help
            raise DownloadError(
                f"cannot find the server {host} ({reason}); is this machine offline or behind a proxy?"
            ) from exc
        raise _Retryable(f"cannot connect to {host}: {reason} (check the network and proxy settings)") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise _Retryable(f"{host} did not answer within {opts.connect_timeout:g} s") from exc
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        raise _Retryable(f"connection to {host} failed: {exc}") from exc

    with response:
        status = response.getcode()
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.strip().isdigit() else None
        if offset and status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                dest.unlink()
                raise _Retryable(f"{url}: the server resumed at the wrong place ({content_range!r}); starting again")
            log.info("resuming %s at byte %d", url, offset)
        elif offset:
            offset = 0  # the server ignores Range: it sends the whole file
        total = offset + length if length is not None else None
        if total is not None and expected_size is not None and total != expected_size:
            raise DownloadError(
                f"{url} has {total} bytes but the catalog lists {expected_size}; "
                "the file on the server is not the one the catalog describes"
            )
        _set_read_timeout(response, opts.read_timeout)
        done = offset
        if progress is not None:
            progress(done, total)
        with open(dest, "ab" if offset else "wb") as out:
            while True:
                _check_cancel(cancel)
                try:
                    chunk = response.read(opts.chunk_size)
                except (socket.timeout, TimeoutError) as exc:
                    raise _Retryable(
                        f"{host} stopped sending data: nothing arrived for {opts.read_timeout:g} s "
                        f"after {done} bytes (read timeout)"
                    ) from exc
                except (ConnectionError, http.client.HTTPException, OSError) as exc:
                    raise _Retryable(f"connection to {host} dropped after {done} bytes: {exc}") from exc
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise _LocalFailure(f"cannot write the download to {dest}: {exc} (is the disk full?)") from exc
                done += len(chunk)
                if expected_size is not None and done > expected_size:
                    out.close()
                    dest.unlink()
                    raise DownloadError(
                        f"{url} is larger than the {expected_size} bytes listed in the catalog; "
                        "the file on the server is not the one the catalog describes"
                    )
                if progress is not None:
                    progress(done, total)
    short_of = total if total is not None else expected_size
    if short_of is not None and done < short_of:
        raise _Retryable(f"connection to {host} dropped after {done} of {short_of} bytes")


def fetch(
    urls: Sequence[str],
    dest: Path,
    expected_size: Optional[int] = None,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelFn] = None,
    options: Optional[DownloadOptions] = None,
) -> Path:
    """Download the first URL that works into ``dest``, resuming a partial ``dest`` left by an earlier try.

    ``progress(bytes_done, total_or_None)`` is called as data arrives (total is None when the server sends no
    length); ``cancel()`` returning True stops the download with :class:`DownloadCancelled`. The caller checks the
    SHA-256; ``dest`` is left in place on failure so that the next call resumes.

    Example:
        >>> import tempfile
        >>> src = Path(tempfile.mkdtemp()) / "a.bin"
        >>> _ = src.write_bytes(b"x" * 10)
        >>> fetch([src.as_uri()], src.with_suffix(".part")).stat().st_size
        10
    """
    opts = options or DownloadOptions()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors: List[str] = []
    for url in urls:
        for attempt in range(opts.retries + 1):
            _check_cancel(cancel)
            if attempt:
                wait = min(opts.backoff * 2 ** (attempt - 1), opts.max_backoff)
                log.warning(
                    "download failed (%s); try %d of %d in %.1f s", errors[-1], attempt + 1, opts.retries + 1, wait
                )
                _sleep(wait, cancel)
            try:
                _attempt(url, dest, expected_size, opts, progress, cancel)
                return dest
            except _Retryable as exc:
                errors.append(str(exc))
            except (DownloadCancelled, _LocalFailure):
                raise
            except DownloadError as exc:
                errors.append(str(exc))
                break  # a permanent error for this URL: try the next one
    tries = "; ".join(dict.fromkeys(errors))
    raise DownloadError(
        f"download failed after {len(errors)} tries: {tries}. Without internet access, install the model from a "
        "file instead (python -m TextSegmentLib models import FILE, or Import in the Slicer module)"
    )
