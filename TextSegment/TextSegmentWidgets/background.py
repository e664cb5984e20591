"""Preparing the selected volume in the background: the model is loaded and the volume's slices are encoded while the
user types the prompt, so that the first prompt only decodes (``TextSegmentLogic.precomputeAsync``).

Nothing is installed, downloaded or asked for here: without the Python packages or the chosen model nothing starts.
A segment, refine or download job cancels it first (it stops at the next batch; what it encoded stays cached).
"""

import logging

from TextSegmentLib.slicer.worker import DONE, FAILED, JobWatcher
from TextSegmentWidgets.dependencies import dependencyProblems


class BackgroundPrepareMixin:
    """For TextSegmentWidget: ``_prepareVolume`` on a volume change, ``_cancelBackground`` before any other job."""

    _background = None  # the JobWatcher of the running precompute, if any
    _preparedFor = None  # the settings the last preparation was started (or found impossible) for

    def _preparation(self):
        """What the embeddings depend on: volume, model, device, planes and CT window (None without a volume)."""
        p = self._parameterNode
        if not p or p.inputVolume is None:
            return None
        return (p.inputVolume.GetID(), p.model, p.device, p.sliceAxis, p.ctWindow)

    def _prepareIfChanged(self, *args) -> None:
        """On any parameter change: prepare again when the embeddings the next prompt needs are other ones (another
        volume, model, device, plane or CT window); nothing happens while the settings stay the same."""
        if self._timer is not None and self._job is None and self._preparation() != self._preparedFor:
            self._prepareVolume()

    def _prepareVolume(self, *args) -> None:
        self._cancelBackground()
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        if self._job is None:
            self._preparedFor = self._preparation()
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
