"""Inference is not starved by the GUI thread: an emulation of PythonQt's interpreter-lock rule.

Inside Slicer, PythonQt holds the interpreter lock whenever the main thread is in C++ (Qt's event loop, rendering)
and releases it only while the main thread runs Python. The emulation: the main thread "is in C++" by calling
``usleep`` through ``ctypes.PyDLL``, which (unlike ``ctypes.CDLL``) keeps the interpreter lock during the call, exactly
as a C++ event loop under PythonQt does. The worker is the module's real worker thread running a real segment call.

- Without a GUI (console, batch): the main thread simply waits on the job.
- The module's design: a zero-interval timer calls :meth:`JobWatcher.tick`, which waits on the job for a short slice
  with the lock released; between ticks the event loop handles its events (here 2 ms of C++ per iteration, an idle
  GUI repainting a progress bar).
- The old design: a 100 ms timer polls ``job.status()`` and returns to the event loop, which keeps the lock.

A segment call and a cancel must finish within 1.5x of their time without the GUI; with the old design the segment has
not even finished after three times that.
"""

import ctypes
import ctypes.util
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from TextSegmentLib.slicer.worker import CANCELLED, DONE, JobWatcher, Worker  # noqa: E402

LIBC = ctypes.PyDLL(ctypes.util.find_library("c"))  # PyDLL: the interpreter lock stays held during the call
EVENT_S = 0.002  # C++ time of one event-loop iteration between two ticks
OLD_POLL_S = 0.1  # the former QTimer interval
CANCEL_AT = 0.25  # the user presses Cancel once the progress bar shows this fraction
#: a fixed amount of work: every slice encoded and decoded (no cache, no coarse pass, no presence gating)
WORK = {"use_cache": False, "slice_stride": 1, "presence_threshold": 0.0}


def in_cpp(seconds: float) -> None:
    """The main thread in C++ under PythonQt: busy elsewhere, holding the interpreter lock."""
    LIBC.usleep(int(seconds * 1e6))


@pytest.fixture(scope="module")
def run(tiny_bundle):
    from TextSegmentLib.engine import Segmenter, VolumeInput

    segmenter = Segmenter(str(tiny_bundle), device="cpu", batch_size=2)
    volume = VolumeInput(
        np.random.RandomState(0).rand(32, 64, 64).astype(np.float32), (1, 1, 1), (0, 0, 0), np.eye(3).ravel()
    )
    worker = Worker(name="test-gil-worker")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier timings on a shared machine; the lock rule does not depend on it

    def start():
        def segment(job):
            return segmenter.segment(volume, ["brain"], progress=job.report, cancel=job.cancelled, **WORK)

        return worker.submit(segment, description="segmenting")

    start().wait(60)  # warm-up: model, text encoder, first-call allocations
    yield start
    worker.shutdown()
    torch.set_num_threads(threads)


def _no_gui(job, cancel_at=None):
    """Console: the main thread waits on the job (lock released). Returns (end time, cancel time)."""
    cancelled_at = None
    while not job.wait(0.001):
        if cancel_at is not None and cancelled_at is None and job.status().fraction >= cancel_at:
            cancelled_at = time.perf_counter()
            job.cancel()
    return time.perf_counter(), cancelled_at


def _module_gui(job, cancel_at=None):
    """The module's design: event-loop iterations in C++ with a JobWatcher tick between them."""
    watcher = JobWatcher(job)
    cancelled_at = None
    while True:
        in_cpp(EVENT_S)  # Qt handles its events; a click on Cancel arrives here
        if cancel_at is not None and cancelled_at is None and job.status().fraction >= cancel_at:
            cancelled_at = time.perf_counter()
            job.cancel()  # the Cancel button's Python slot
        if watcher.tick():
            return time.perf_counter(), cancelled_at


def _old_gui(job, deadline_s, cancel_after_s=None):
    """The old design: a 100 ms QTimer polls the job; the event loop holds the lock in between."""
    t0 = time.perf_counter()
    cancelled_at = None
    while not job.done and time.perf_counter() - t0 < deadline_s:
        in_cpp(OLD_POLL_S)
        if cancel_after_s is not None and cancelled_at is None and time.perf_counter() - t0 >= cancel_after_s:
            cancelled_at = time.perf_counter()
            job.cancel()
        job.status()
    return time.perf_counter(), cancelled_at


def _compare(run, repeats, **kwargs):
    """Best of ``repeats`` runs without and with the module's GUI, interleaved so both see the same machine load.

    Returns ``{waiter: (total seconds, seconds from Cancel to the end, states)}``.
    """
    out = {}
    for _ in range(repeats):
        for waiter in (_no_gui, _module_gui):
            job = run()
            t0 = time.perf_counter()
            end, cancelled_at = waiter(job, **kwargs)
            assert job.done
            total, latency, states = out.get(waiter, (np.inf, np.inf, set()))
            out[waiter] = (
                min(total, end - t0),
                min(latency, end - cancelled_at if cancelled_at is not None else 0.0),
                states | {job.state},
            )
    return out


def test_segment_and_cancel_run_at_full_speed_under_the_gui_lock_rule(run):
    timed = _compare(run, repeats=4)
    (base, _, base_states), (gui, _, gui_states) = timed[_no_gui], timed[_module_gui]
    assert base_states == gui_states == {DONE}
    timed = _compare(run, repeats=4, cancel_at=CANCEL_AT)
    (base_cancel, base_latency, base_states), (gui_cancel, gui_latency, gui_states) = timed[_no_gui], timed[_module_gui]
    assert base_states == gui_states == {CANCELLED}
    print(
        f"\nsegment: {base:.2f} s without GUI, {gui:.2f} s with the module's GUI ({gui / base:.2f}x); "
        f"segment + cancel at {CANCEL_AT:.0%}: {base_cancel:.2f} s / {gui_cancel:.2f} s "
        f"({gui_cancel / base_cancel:.2f}x); "
        f"cancel latency {1000 * base_latency:.0f} ms / {1000 * gui_latency:.0f} ms"
    )
    assert gui <= 1.5 * base, f"segment took {gui:.2f} s with the GUI vs {base:.2f} s without"
    assert gui_cancel <= 1.5 * base_cancel, f"cancel ended after {gui_cancel:.2f} s vs {base_cancel:.2f} s"
    assert gui_latency < 0.5, f"the GUI saw the cancel {gui_latency:.2f} s after the click"

    # The old 100 ms poll: the worker runs only during the few Python instructions of each poll.
    job = run()
    _old_gui(job, deadline_s=3 * base)
    old_done, progress = job.done, job.status().fraction
    end, cancelled_at = _old_gui(job, deadline_s=10.0, cancel_after_s=0.0)
    old_latency = end - cancelled_at
    job.cancel()
    assert job.wait(60)
    print(
        f"old 100 ms poll: after {3 * base:.2f} s (3x) the segment was {'done' if old_done else 'not done'} "
        f"({progress:.0%}); the GUI saw a cancel {1000 * old_latency:.0f} ms after the click"
    )
    assert not old_done, "the old polling design was expected to starve the worker"
    # (How late the old design sees a Cancel depends on where the starved worker is: at a cancel check it is one
    # poll or two, in the middle of a batch it is that batch at a few percent of its speed; printed, not asserted.)
    assert old_latency >= OLD_POLL_S
