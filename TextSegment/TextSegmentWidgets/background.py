"""Preparing the selected volume in the background: the model is loaded and the volume's slices are encoded while the
user types the prompt, so that the first prompt only decodes (``TextSegmentLogic.precomputeAsync``).

Nothing is installed, downloaded or asked for here: without the Python packages or the chosen model nothing starts.
A segment, refine or download job cancels it first (it stops at the next batch; what it encoded stays cached).
"""

import logging

from TextSegmentLib.worker import DONE, FAILED, JobWatcher
from TextSegmentWidgets.dependencies import dependencyProblems


class BackgroundPrepareMixin:
    """For TextSegmentWidget: ``_prepareVolume`` on a volume change, ``_cancelBackground`` before any other job."""

    _background = None  # the JobWatcher of the running precompute, if any

    def _prepareVolume(self, *args) -> None:
        self._cancelBackground()
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        if volume is None or self._job is not None or dependencyProblems() or not self._modelInstalled():
            return
        self._configureLogic()
        options = {k: v for k, v in self._options().items() if k in ("slice_axis", "ct_window")}
        try:
            job = self.logic.precomputeAsync(volume, **options)
        except Exception:  # a volume the engine cannot read: the Segment button will say why
            logging.debug("TextSegment: not prepared", exc_info=True)
            return
        self._background = JobWatcher(job, self._showBackground, self._backgroundEnded)
        self._timer.start()

    def _cancelBackground(self) -> None:
        if self._background is not None:
            self._background.job.cancel()
            self._background = None

    def _showBackground(self, status) -> None:
        if status.message:
            self.ui.statusLabel.text = f"{status.message} ({100 * status.fraction:.0f} %)"

    def _backgroundEnded(self, job) -> None:
        if self._background is not None and self._background.job is job:
            self._background = None
        if job.state == DONE:
            self.ui.statusLabel.text = f"{job.description}: ready in {job.status().elapsed:.1f} s"
        elif job.state == FAILED:  # not shown as an error: the user asked for nothing yet
            logging.warning("TextSegment could not prepare the volume: %s", job.error)
            self.ui.statusLabel.text = ""
