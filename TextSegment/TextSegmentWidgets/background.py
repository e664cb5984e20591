"""Preparing the selected volume in the background: the model is loaded and the volume's slices are encoded while the
user types the prompt, so that the first prompt only decodes (``TextSegmentLogic.precomputeAsync``).

Nothing is installed, downloaded or asked for here: without the Python packages or the chosen model nothing starts.
A segment, refine or download job cancels it first (it stops at the next batch; what it encoded stays cached).
Only the voxels are read here (MRML); the engine, torch and SimpleITK are imported on the worker.
"""

import logging
from typing import Any, Callable, Optional

from TextSegmentLib.slicer.worker import DONE, FAILED, JobWatcher
from TextSegmentWidgets.dependencies import dependencyProblems


class BackgroundPreparer:
    """``logic``: the module's logic; ``ui``: the module's widgets (status line); ``parameters()``: the parameter
    node; ``options()``: the segment options; ``models``: the :class:`ModelPanel` (is the model installed, configure
    the logic); ``busy()``: whether the user's own job runs; ``startTimer()``: starts the widget's job timer."""

    def __init__(
        self,
        logic: Any,
        ui: Any,
        parameters: Callable[[], Any],
        options: Callable[[], dict],
        models: Any,
        busy: Callable[[], bool],
        startTimer: Callable[[], None],
    ) -> None:
        self.logic, self.ui, self.parameters, self.options, self.models = logic, ui, parameters, options, models
        self.busy, self.startTimer = busy, startTimer
        self.watcher: Optional[JobWatcher] = None  # the running precompute, if any
        self.preparedFor: Any = None  # the settings the last preparation was started (or found impossible) for

    @property
    def job(self):
        return self.watcher.job if self.watcher is not None else None

    def preparation(self):
        """What the embeddings depend on: volume, model, device, planes and CT window (None without a volume)."""
        p = self.parameters()
        if not p or p.inputVolume is None:
            return None
        return (p.inputVolume.GetID(), p.model, p.device, p.sliceAxis, p.ctWindow)

    def prepareIfChanged(self, *args) -> None:
        """On any parameter change: prepare again when the embeddings the next prompt needs are other ones (another
        volume, model, device, plane or CT window); nothing happens while the settings stay the same."""
        if not self.busy() and self.preparation() != self.preparedFor:
            self.prepare()

    def prepare(self, *args) -> None:
        self.cancel()
        p = self.parameters()
        volume = p.inputVolume if p else None
        if not self.busy():
            self.preparedFor = self.preparation()
        if volume is None or self.busy() or dependencyProblems() or not self.models.modelInstalled():
            return
        self.models.configureLogic()
        options = {k: v for k, v in self.options().items() if k in ("slice_axis", "ct_window")}
        try:
            job = self.logic.precomputeAsync(volume, **options)
        except Exception:  # a volume that cannot be read: the Segment button will say why
            logging.debug("TextSegment: not prepared", exc_info=True)
            return
        self.watcher = JobWatcher(job, self._show, self._ended)
        self.startTimer()

    def cancel(self) -> None:
        if self.watcher is not None:
            self.watcher.job.cancel()
            self.watcher = None

    def _show(self, status) -> None:
        if status.message:
            self.ui.statusLabel.text = f"{status.message} ({100 * status.fraction:.0f} %)"

    def _ended(self, job) -> None:
        if self.watcher is not None and self.watcher.job is job:
            self.watcher = None
        if job.state == DONE:
            self.ui.statusLabel.text = f"{job.description}: ready in {job.status().elapsed:.1f} s"
        elif job.state == FAILED:  # not shown as an error: the user asked for nothing yet
            logging.warning("TextSegment could not prepare the volume: %s", job.error)
            self.ui.statusLabel.text = ""
