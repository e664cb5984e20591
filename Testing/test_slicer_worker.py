"""The persistent worker thread: progress, cancel within a second, errors delivered without killing it."""

import threading
import time

import pytest

from TextSegmentLib.slicer.worker import CANCELLED, DONE, FAILED, JobCancelled, Worker


@pytest.fixture
def worker():
    w = Worker(name="test-worker")
    yield w
    w.shutdown()


def test_progress_is_reported_and_same_thread(worker):
    gate = threading.Event()
    threads = []

    def job_fn(job):
        threads.append(threading.get_ident())
        job.report(0.25, "a quarter")
        gate.wait(5)
        job.report(0.75, "three quarters")
        return "ok"

    job = worker.submit(job_fn, description="progress")
    deadline = time.monotonic() + 5
    while job.status().fraction < 0.25 and time.monotonic() < deadline:
        time.sleep(0.01)
    status = job.status()
    assert status.state == "running" and status.fraction == 0.25 and status.message == "a quarter"
    gate.set()
    assert job.get(5) == "ok" and job.state == DONE and job.status().fraction == 1.0
    second = worker.submit(lambda j: threads.append(threading.get_ident()))
    second.get(5)
    assert threads[0] == threads[1] == worker.thread_id != threading.get_ident()


def test_cancel_stops_within_a_second(worker):
    started = threading.Event()

    def long_job(job):
        started.set()
        for _ in range(100000):
            job.check()
            time.sleep(0.01)

    job = worker.submit(long_job)
    assert started.wait(5)
    t0 = time.monotonic()
    job.cancel()
    assert job.wait(1.0), "job did not stop within a second"
    assert time.monotonic() - t0 < 1.0
    assert job.state == CANCELLED
    with pytest.raises(JobCancelled):
        job.get()
    # An engine-style cancel callable (returns True) with its own exception type is also a cancellation.

    class Cancelled(Exception):
        pass

    def engine_job(job):
        while not job.cancelled():
            time.sleep(0.01)
        raise Cancelled("stopped")

    job2 = worker.submit(engine_job)
    time.sleep(0.05)
    job2.cancel()
    assert job2.wait(1.0) and job2.state == CANCELLED


def test_queued_job_cancelled_before_start(worker):
    gate = threading.Event()
    first = worker.submit(lambda job: gate.wait(5))
    second = worker.submit(lambda job: "never")
    second.cancel()
    gate.set()
    assert first.get(5) is True
    assert second.wait(5) and second.state == CANCELLED and second.result is None


def test_exception_is_delivered_and_worker_survives(worker):
    def broken(job):
        raise RuntimeError("model exploded")

    job = worker.submit(broken)
    assert job.wait(5)
    assert job.state == FAILED and isinstance(job.error, RuntimeError)
    assert "model exploded" in job.traceback and "broken" in job.traceback
    with pytest.raises(RuntimeError, match="model exploded"):
        job.get()
    assert worker.run(lambda job, x: x + 1, 41) == 42
    assert worker.alive
