"""One persistent worker thread that owns all torch work; the GUI polls it (no Qt here).

cuDNN and other per-thread caches make the first call on a new thread slow, so every model load, encode and decode
runs on the same thread. Jobs report progress through ``job.report(fraction, message)``, check ``job.cancelled()``
(pass it to the engine as ``cancel``), and end as done, failed (with the exception and its traceback) or cancelled.
An exception in a job never kills the worker.

Example:
    >>> worker = Worker()
    >>> job = worker.submit(lambda job, x: x * 2, 21)
    >>> job.wait(5), job.result
    (True, 42)
    >>> worker.shutdown()
"""

import logging
import queue
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .progress import Cancelled

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
#: the one cancel exception (:class:`TextSegmentLib.progress.Cancelled`); this name is kept for callers
JobCancelled = Cancelled


@dataclass
class JobStatus:
    """A consistent snapshot of a job for the GUI's timer."""

    state: str
    fraction: float
    message: str
    elapsed: float


class Job:
    """A unit of work for the :class:`Worker`; thread-safe to poll and cancel from any thread."""

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, description: str = "") -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.description = description or getattr(fn, "__name__", "job")
        self.state = QUEUED
        self.fraction = 0.0
        self.message = ""
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.traceback = ""
        self.started: Optional[float] = None
        self.finished: Optional[float] = None
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()

    # -- called from the job (worker thread)
    def report(self, fraction: float, message: str = "") -> None:
        """Progress callback: ``fraction`` in [0, 1] and a short message."""
        with self._lock:
            self.fraction = max(0.0, min(1.0, float(fraction)))
            if message:
                self.message = str(message)

    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called (pass this as the engine's ``cancel`` callable)."""
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`~TextSegmentLib.progress.Cancelled` if the job was asked to stop."""
        if self._cancel.is_set():
            raise Cancelled(f"{self.description} was cancelled")

    # -- called from anywhere
    def cancel(self) -> None:
        """Ask the job to stop; it ends at its next cancellation check."""
        self._cancel.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the job ended (or ``timeout`` seconds); True when it ended."""
        return self._done.wait(timeout)

    def status(self) -> JobStatus:
        """Snapshot for polling."""
        with self._lock:
            start = self.started or time.monotonic()
            end = self.finished or time.monotonic()
            return JobStatus(self.state, self.fraction, self.message, end - start if self.started else 0.0)

    def get(self, timeout: Optional[float] = None) -> Any:
        """Wait and return the result; re-raise the job's exception (or :class:`~TextSegmentLib.progress.Cancelled`)."""
        if not self.wait(timeout):
            raise TimeoutError(f"{self.description} did not finish within {timeout} s")
        if self.state == CANCELLED:
            raise (self.error if isinstance(self.error, Cancelled) else Cancelled(f"{self.description} was cancelled"))
        if self.state == FAILED and self.error is not None:
            raise self.error
        return self.result

    def _finish(self, state: str, result: Any = None, error: Optional[BaseException] = None) -> None:
        with self._lock:
            self.state, self.result, self.error = state, result, error
            if error is not None:
                self.traceback = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            if state == DONE:
                self.fraction = 1.0
            self.finished = time.monotonic()
        self._done.set()


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, Cancelled)


class Worker:
    """A daemon thread running submitted jobs one at a time, in order.

    ``submit(fn, *args, **kwargs)`` calls ``fn(job, *args, **kwargs)`` on the worker thread and returns the
    :class:`Job` at once. ``run(fn, ...)`` submits and waits (for console/batch use; same thread, same caches).
    """

    def __init__(self, name: str = "TextSegment-worker") -> None:
        self.name = name
        self._queue: queue.Queue = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self.current: Optional[Job] = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def thread_id(self) -> Optional[int]:
        return self._thread.ident if self._thread is not None else None

    def _ensure_thread(self) -> None:
        with self._lock:
            if not self.alive:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any, description: str = "", **kwargs: Any) -> Job:
        """Queue ``fn(job, *args, **kwargs)``; returns its :class:`Job`."""
        job = Job(fn, args, kwargs, description)
        self._ensure_thread()
        self._queue.put(job)
        return job

    def run(self, fn: Callable[..., Any], *args: Any, description: str = "", **kwargs: Any) -> Any:
        """Submit and wait; returns the result or raises the job's exception. Runs inline on the worker thread."""
        if threading.current_thread() is self._thread:
            job = Job(fn, args, kwargs, description)
            self._execute(job)
        else:
            job = self.submit(fn, *args, description=description, **kwargs)
        return job.get()

    def cancel_all(self) -> None:
        """Cancel the running job and every queued one."""
        if self.current is not None:
            self.current.cancel()
        for job in list(self._queue.queue):
            if job is not None:
                job.cancel()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel everything and stop the thread (a later submit starts a new one)."""
        self.cancel_all()
        if self.alive:
            self._queue.put(None)
            assert self._thread is not None
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._execute(job)

    def _execute(self, job: Job) -> None:
        self.current = job
        try:
            if job.cancelled():
                job._finish(CANCELLED, error=Cancelled(f"{job.description} was cancelled before it started"))
                return
            job.started = time.monotonic()
            job.state = RUNNING
            try:
                result = job.fn(job, *job.args, **job.kwargs)
            except BaseException as exc:  # noqa: BLE001 (delivered to the caller, never kills the worker)
                if _is_cancellation(exc) or job.cancelled():
                    job._finish(CANCELLED, error=exc)
                else:
                    log.debug("job %s failed", job.description, exc_info=True)
                    job._finish(FAILED, error=exc)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                return
            job._finish(DONE, result=result)
        finally:
            self.current = None


_default_worker: Optional[Worker] = None


def default_worker() -> Worker:
    """The process-wide worker shared by every :class:`TextSegmentLogic` (one thread for all torch work)."""
    global _default_worker
    if _default_worker is None:
        _default_worker = Worker()
    return _default_worker
