"""One persistent worker thread that owns all torch work, and how a GUI waits on it (no Qt here).

cuDNN and other per-thread caches make the first call on a new thread slow, so every model load, encode and decode
runs on the same thread. Jobs report progress through ``job.report(fraction, message)``, check ``job.cancelled()``
(pass it to the engine as ``cancel``), and end as done, failed (with the exception and its traceback) or cancelled.
An exception in a job never kills the worker.

Inside Slicer, PythonQt keeps the interpreter lock while the main thread is in C++ (Qt's event loop, rendering), so a
Python worker thread runs only while the main thread runs Python. A GUI must therefore not poll a job from a slow
timer and return to Qt in between (the worker would crawl at a few percent of its speed), but wait on it in short
slices with the lock released: :class:`JobWatcher` does that, one slice per call of its :meth:`JobWatcher.tick`,
which the Slicer widget calls from a zero-interval timer so that Qt handles its events between slices.

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
from typing import Any, Callable, Optional, Tuple

from ..progress import Cancelled

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
#: seconds the main thread waits on a job (interpreter lock released) before it gives the GUI back its event loop
WAIT_SLICE_S = 0.03
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


class JobWatcher:
    """Waits on a :class:`Job` from a GUI's main thread in short slices, so that the job runs at full speed.

    Each :meth:`tick` blocks in ``job.wait(slice_s)`` (which releases the interpreter lock, so the worker thread runs
    even where the GUI toolkit holds the lock whenever it is in C++, as PythonQt does), then reports the status to
    ``on_status`` when it changed, and calls ``on_end(job)`` once when the job has ended. A GUI calls :meth:`tick`
    from a zero-interval timer and handles its own events between two calls; a job that ends mid-slice is noticed
    at once (the wait returns as soon as the job ends).

    Example:
        >>> worker = Worker()
        >>> ended = []
        >>> watcher = JobWatcher(worker.submit(lambda job: 6 * 7), on_end=lambda job: ended.append(job.result))
        >>> while not watcher.tick():
        ...     pass  # a GUI handles its events here
        >>> ended
        [42]
        >>> worker.shutdown()
    """

    def __init__(
        self,
        job: Job,
        on_status: Optional[Callable[[JobStatus], None]] = None,
        on_end: Optional[Callable[[Job], None]] = None,
        slice_s: float = WAIT_SLICE_S,
    ) -> None:
        self.job = job
        self.on_status = on_status
        self.on_end = on_end
        self.slice_s = slice_s
        self.ended = False
        self._last: Optional[Tuple[str, float, str, int]] = None

    def tick(self) -> bool:
        """Wait up to one slice for the job; report; True once the job has ended (``on_end`` was called)."""
        if self.ended:
            return True
        self.job.wait(self.slice_s)
        status = self.job.status()
        key = (status.state, status.fraction, status.message, int(status.elapsed))
        if self.on_status is not None and key != self._last:
            self._last = key
            self.on_status(status)
        if not self.job.done:
            return False
        self.ended = True
        if self.on_end is not None:
            self.on_end(self.job)
        return True

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Tick until the job ended (console use; no GUI events); False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.tick():
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True


_default_worker: Optional[Worker] = None


def default_worker() -> Worker:
    """The process-wide worker shared by every :class:`TextSegmentLogic` (one thread for all torch work)."""
    global _default_worker
    if _default_worker is None:
        _default_worker = Worker()
    return _default_worker
