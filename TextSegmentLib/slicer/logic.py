"""TextSegmentLogic: text prompts -> segments in Slicer's scene; refine with a box or +/- points; undo; batches.

Usable without the widget, from Slicer's Python console or under plain Python with ``slicer-core``. MRML is read
and written on the calling (main) thread only; every torch, SimpleITK and scipy call (and import) runs on the one
persistent worker thread (:mod:`.worker`), so the GUI can stay responsive (``segmentAsync`` / ``refineAsync`` +
``apply*``) and the console can simply block (``segment`` / ``refine``). Sessions (engine result, undo) live in the
scene's registry (:mod:`.session`), shared with the Segment Editor effect.

Example (Slicer's Python console)::

    import TextSegment
    logic = TextSegment.TextSegmentLogic()
    volume = slicer.util.getNode("CTACardio")
    seg = logic.segment(volume, ["liver", "left kidney", "aorta"])
    logic.refine(seg, seg.GetSegmentation().GetSegmentIdBySegmentName("liver"), roiNode=getNode("R"))
    logic.undo(seg)
"""

import inspect
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..prompts import TAG_CONFIDENCE, TAG_FOUND, TAG_PROMPT, TAG_READING, TAG_VOLUME
from . import bridge
from .edits import apply_voxels, current_mask, load_current
from .inputs import VolumeSource, check_grid
from .markups import PLANE_VIEW, RefinePrompts, markups_to_prompts
from .session import MAX_UNDO, Session, SessionRegistry, UndoStep, VoxelChange, registry_for
from .worker import Job, JobWatcher, Worker, default_worker

log = logging.getLogger(__name__)

ProgressFn = Optional[Callable[[float, str], None]]
__all__ = ["MAX_UNDO", "TextSegmentLogic"]

#: segmenters per (model key, device): loading a model once per session is enough
_SEGMENTERS: Dict[Tuple[Any, str], Any] = {}


def _model_key(model: Any) -> Any:
    return model if isinstance(model, (str, Path)) else id(model)


class TextSegmentLogic:
    """Text-prompted segmentation of volume nodes into segmentation nodes.

    ``scene`` defaults to Slicer's scene; ``model`` is a catalog id, a bundle folder or a loaded model; ``device`` is
    auto, cuda, mps or cpu. Options of :meth:`segment` are the engine's (``slice_axis``, ``ct_window``,
    ``presence_threshold``, ``min_component_ml``, ``fill_holes``, ``largest_only``, ...).

    Example:
        >>> logic = TextSegmentLogic(scene, model=tiny_model, device="cpu")  # doctest: +SKIP
        >>> seg = logic.segment(volume_node, ["brain", "left hippocampus"])  # doctest: +SKIP
    """

    def __init__(
        self,
        scene: Any = None,
        model: Any = "default",
        device: str = "auto",
        worker: Optional[Worker] = None,
        sessions: Optional[SessionRegistry] = None,
    ) -> None:
        if scene is None:
            import slicer  # noqa: PLC0415

            scene = slicer.mrmlScene
        self.scene = scene
        self.model = model
        self.device = device
        self.worker = worker or default_worker()
        #: one session per segmentation node, shared with the Segment Editor effect (see :mod:`.session`)
        self._sessions: SessionRegistry = sessions if sessions is not None else registry_for(scene)
        self._inputs: Dict[str, Tuple[Any, Any]] = {}  # volume node id -> (stamp, VolumeSource)

    # ------------------------------------------------------------------------------------------ engine access
    def segmenter(self) -> Any:
        """The engine :class:`Segmenter` for the current model and device (loaded once; call on the worker)."""
        key = (_model_key(self.model), self.device)
        if key not in _SEGMENTERS:
            try:
                from ..app import open_segmenter  # noqa: PLC0415
            except ImportError as exc:
                raise ImportError(
                    f"TextSegment needs PyTorch and its other Python packages ({exc}); open the TextSegment module "
                    "once so that it offers to install them"
                ) from exc
            # 16 slices per batch on any device: on 2 CPU cores a brain in three views took 1.2 s (first prompt) and
            # 0.46 s (further) at 2 slices per batch against 0.64 s and 0.29 s at 16; cancel is still checked
            # between batches, a few tens of milliseconds apart (docs/engine.md)
            _SEGMENTERS[key] = open_segmenter(self.model, device=self.device, batch_size=16)  # resolved once
        return _SEGMENTERS[key]

    @staticmethod
    def clearModelCache() -> None:
        """Forget loaded models (e.g. after a model update)."""
        _SEGMENTERS.clear()

    def volumeSource(self, volumeNode: Any) -> "VolumeSource":
        """Volume node -> its voxels and LPS geometry (read on the calling thread, MRML only; cached per node, image
        modified time and geometry). :meth:`VolumeSource.volume` makes the engine's input on the worker."""
        if volumeNode is None:
            raise bridge.BridgeError("no input volume was given")
        image = volumeNode.GetImageData()
        stamp = (image.GetMTime() if image is not None else None, volumeNode.GetMTime())
        cached = self._inputs.get(volumeNode.GetID())
        if cached is not None and cached[0] == stamp:
            return cached[1]
        array, ijk_to_ras = bridge.volume_to_array(volumeNode)
        spacing, origin, direction = bridge.lps_geometry(ijk_to_ras)
        modality = volumeNode.GetAttribute("DICOM.Modality")
        source = VolumeSource(array, spacing, origin, direction, {"0008|0060": modality} if modality else None)
        self._inputs = {volumeNode.GetID(): (stamp, source)}  # keep one volume's copy only
        return source

    def volumeInput(self, volumeNode: Any) -> Any:
        """Volume node -> engine ``VolumeInput`` (imports the engine: call it on the worker, or from the console)."""
        return self.volumeSource(volumeNode).volume()

    # ------------------------------------------------------------------------------------------ ahead of a prompt
    def precomputeAsync(self, volumeNode: Any, **options: Any) -> Job:
        """Load the model and encode ``volumeNode``'s slices on the worker while the user types a prompt; returns
        the :class:`Job` (result: slices encoded per plane). ``options``: ``slice_axis`` and ``ct_window`` as for
        :meth:`segment` (the planes and CT window the next prompt will use). Cancel it before submitting other work
        (it would run first): it stops at the next batch and what it encoded stays, so the prompt loses nothing.
        """
        source = self.volumeSource(volumeNode)
        axis = options.get("slice_axis")
        views = None if axis in (None, "auto") else (axis,)
        window = options.get("ct_window")

        def run(job: Job) -> Any:
            job.report(0.0, "loading the model")
            segmenter = self.segmenter()
            return segmenter.precompute(source.volume(), views, window, progress=job.report, cancel=job.cancelled)

        return self.worker.submit(run, description=f"preparing {volumeNode.GetName()} for prompts")

    # ------------------------------------------------------------------------------------------ segment
    def segmentAsync(self, volumeNode: Any, prompts: Union[str, Sequence[str]], **options: Any) -> Job:
        """Start segmenting on the worker; returns the :class:`Job` (its result goes to :meth:`applySegmentation`)."""
        source = self.volumeSource(volumeNode)
        prompts = prompts.splitlines() if isinstance(prompts, str) else list(prompts)  # one prompt per line
        prompts = [p.strip() for p in prompts if isinstance(p, str) and p.strip()] or list(prompts)

        def run(job: Job) -> Any:
            from ..app import segment_case  # noqa: PLC0415

            job.report(0.0, "loading the model")
            return segment_case(self.segmenter(), source.volume(), prompts, job.report, job.cancelled, **options)

        return self.worker.submit(run, description=f"segmenting {volumeNode.GetName()}")

    def applySegmentation(self, volumeNode: Any, result: Any, segmentationNode: Any = None) -> Any:
        """Write an engine result into ``segmentationNode`` (a new one when None): one segment per prompt."""
        _, ijk_to_ras = bridge.volume_to_array(volumeNode, copy=False)
        check_grid(volumeNode, result)
        created = segmentationNode is None
        if created:
            segmentationNode = self.scene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", f"{volumeNode.GetName()} TextSegment"
            )
        segmentation = segmentationNode.GetSegmentation()
        changed: List[Tuple[str, Any, int]] = []
        ids: Dict[int, str] = {}
        try:
            bridge.prepare_segmentation_node(segmentationNode, volumeNode)
            for index, report in enumerate(result.segments):
                query = result.states[index].query  # the prompt as read once (colour, terminology): no re-matching
                mask = result.mask(index)
                segment_id, previous = bridge.write_segment(
                    segmentationNode, mask, ijk_to_ras, report.prompt, query.color, query.entry, volumeNode
                )
                changed.append((segment_id, previous, segmentation.GetSegmentIndex(segment_id)))
                self._tag(segmentationNode, segment_id, report)
                ids[index] = segment_id
            bridge.share_layers(segmentationNode)
        except BaseException:  # leave the scene as it was
            self._revert(segmentationNode, changed)
            if created:
                self.scene.RemoveNode(segmentationNode)
            raise
        if created:
            bridge.place_with_volume(segmentationNode, volumeNode)
        old = self._sessions.get(segmentationNode)
        session = Session(volumeNode.GetID(), result, ids, list(old.undo) if old else [])
        if old is not None and old.volume_id == volumeNode.GetID():  # earlier segments stay refinable
            replaced = set(ids.values())
            session.extra = {sid: v for sid, v in old.carried_over().items() if sid not in replaced}
        session.push(UndoStep("segment", changed, old))
        self._sessions.set(segmentationNode, session)
        return segmentationNode

    def segment(
        self,
        volumeNode: Any,
        prompts: Union[str, Sequence[str]],
        segmentationNode: Any = None,
        progress: ProgressFn = None,
        **options: Any,
    ) -> Any:
        """Segment ``volumeNode`` for each prompt and return the segmentation node (blocks until done).

        ``prompts`` is a list, or a string with one prompt per line.

        Segments are named after the prompts and coloured/coded with Slicer terminology when the name is a known
        structure; a segment of the same name is replaced (undo restores it). Prompts the model does not find give
        an empty segment (tag ``TextSegment.Found`` = ``false``) that can be refined with a box.
        """
        job = self.segmentAsync(volumeNode, prompts, **options)
        result = self._wait(job, progress)
        return self.applySegmentation(volumeNode, result, segmentationNode)

    def results(self, segmentationNode: Any) -> List[Any]:
        """The engine's per-prompt reports (prompt, found, confidence, volume_ml, ...) of the last run, if any."""
        session = self._sessions.get(segmentationNode)
        return list(session.result.segments) if session else []

    def segmentIds(self, segmentationNode: Any, existingOnly: bool = True) -> List[str]:
        """Ids of the segments of the last run on this node, in prompt order (refinable); with
        ``existingOnly=False`` also those the user has deleted since (one per prompt, like :meth:`results`)."""
        session = self._sessions.get(segmentationNode)
        if session is None:
            return []
        segmentation = segmentationNode.GetSegmentation()
        ids = [session.segment_ids[i] for i in sorted(session.segment_ids)]
        return [sid for sid in ids if not existingOnly or segmentation.GetSegment(sid) is not None]

    # ------------------------------------------------------------------------------------------ refine
    def session(self, segmentationNode: Any) -> Optional[Session]:
        """The node's session (engine result, prompt -> segment, undo), shared with the Segment Editor effect."""
        return self._sessions.get(segmentationNode)

    def adoptSegment(self, segmentationNode: Any, volumeNode: Any, result: Any, index: int, segmentId: str) -> None:
        """Make ``segmentId`` refinable as prompt ``index`` of ``result`` (a segment written by someone else, e.g. the
        Segment Editor effect, from this engine result)."""
        session = self._sessions.get(segmentationNode)
        if session is None or session.volume_id != volumeNode.GetID():
            self._sessions.set(segmentationNode, Session(volumeNode.GetID(), result, {index: segmentId}))
            return
        session.extra[segmentId] = (result, index)  # the module's results table keeps its rows

    def _session_for(self, segmentationNode: Any, segmentId: str) -> Tuple[Session, Any, int]:
        """``(session, engine result, prompt index)`` behind a segment, or a BridgeError saying what to do."""
        session = self._sessions.get(segmentationNode)
        if session is None:
            raise bridge.BridgeError(
                "this segmentation was not made by TextSegment in this session; run Segment first, then refine"
            )
        found = session.lookup(segmentId)
        if found is not None:
            return session, found[0], found[1]
        raise bridge.BridgeError(f"segment '{segmentId}' was not made by the last TextSegment run; segment it first")

    def refinePrompts(
        self,
        segmentationNode: Any,
        segmentId: str,
        roiNode: Any = None,
        pointListNode: Any = None,
        plane: Optional[str] = None,
    ) -> Tuple[int, RefinePrompts]:
        """Markups -> ``(prompt index, RefinePrompts)``: the plane, slice, box and +/- points in voxels.

        The plane is that of the volume's slices the view the box or points were drawn on shows (see
        :mod:`.markups` and :mod:`.planes`), or ``plane``; an oblique view or a plane the model cannot refine in
        raises :class:`BridgeError` with what to do instead.
        """
        session, result, index = self._session_for(segmentationNode, segmentId)
        volumeNode = self.scene.GetNodeByID(session.volume_id)
        if volumeNode is None:
            raise bridge.BridgeError("the volume this segmentation was made from is no longer in the scene")
        check_grid(volumeNode, result)
        prompts = markups_to_prompts(roiNode, pointListNode, volumeNode, plane, _result_plane(result))
        planes = self._loadedRefinePlanes()  # not loaded yet: the engine checks on the worker
        if planes is not None and prompts.plane not in planes:
            views = " or ".join(PLANE_VIEW[p] for p in planes)
            raise bridge.BridgeError(
                f"this model cannot refine on the {prompts.plane} plane; draw the box or points on the {views} view"
            )
        return index, prompts

    def refinePlanes(self, result: Any = None) -> Tuple[str, ...]:
        """The planes the current model can refine in (the planes it was trained on; its card says which).

        Before the model is loaded this is the result's own plane (always refinable).
        """
        planes = self._loadedRefinePlanes()
        if planes is not None:
            return planes
        return (_result_plane(result),) if result is not None else ("axial",)

    def _loadedRefinePlanes(self) -> Optional[Tuple[str, ...]]:
        segmenter = _SEGMENTERS.get((_model_key(self.model), self.device))
        return tuple(segmenter.refine_planes()) if segmenter is not None else None

    def refineAsync(
        self,
        segmentationNode: Any,
        segmentId: str,
        roiNode: Any = None,
        pointListNode: Any = None,
        plane: Optional[str] = None,
        maxPropagation: Optional[int] = None,
    ) -> Job:
        """Start a refinement on the worker; its result goes to :meth:`applyRefinement`.

        It starts from the segment as it is now in the node (Segment Editor edits included), not from the engine's
        last result.
        """
        _, p = self.refinePrompts(segmentationNode, segmentId, roiNode, pointListNode, plane)
        return self.refinePromptsAsync(segmentationNode, segmentId, p, maxPropagation)

    def refinePromptsAsync(
        self, segmentationNode: Any, segmentId: str, p: RefinePrompts, maxPropagation: Optional[int] = None
    ) -> Job:
        """:meth:`refineAsync` with the slice, box and points given in voxels (see :meth:`refinePrompts`)."""
        session, result, index = self._session_for(segmentationNode, segmentId)
        volumeNode = self.scene.GetNodeByID(session.volume_id)
        before = current_mask(segmentationNode, segmentId, volumeNode)
        session.pending[segmentId] = before

        def run(job: Job) -> Any:
            segmenter = self.segmenter()
            extra = {}
            if "current" in inspect.signature(segmenter.refine).parameters:
                extra["current"] = before  # the engine starts from it and its undo restores what it changed
            else:
                load_current(result, index, before)  # the same for an engine without ``current=``
            return segmenter.refine(
                result, index, p.slice_ijk, box=p.box, points=p.points, labels=p.labels, coords="voxel",
                plane=p.plane, progress=job.report, cancel=job.cancelled, max_propagation=maxPropagation, **extra,
            )  # fmt: skip

        return self.worker.submit(run, description=f"refining on the {p.plane} plane")

    def applyRefinement(self, segmentationNode: Any, segmentId: str) -> Any:
        """Write what the refinement changed into ``segmentId`` as it is now (other voxels keep their content; undo
        puts back exactly the changed voxels)."""
        session, result, index = self._session_for(segmentationNode, segmentId)
        change = self.refinementChange(segmentationNode, segmentId)
        volumeNode = self.scene.GetNodeByID(session.volume_id)
        apply_voxels(segmentationNode, volumeNode, change, undo=False)
        self._tag(segmentationNode, segmentId, result.segments[index])
        session.push(UndoStep("refine", voxels=change, result=result))
        return segmentationNode

    def refinementChange(self, segmentationNode: Any, segmentId: str) -> VoxelChange:
        """What the finished refinement of ``segmentId`` changed, against its content when the refinement started
        (nothing is written; :meth:`applyRefinement` writes it, the Segment Editor effect writes it its own way)."""
        session, result, index = self._session_for(segmentationNode, segmentId)
        before = session.pending.pop(segmentId, None)
        if before is None:
            raise bridge.BridgeError(f"no refinement of '{segmentId}' is waiting to be applied; refine it first")
        return VoxelChange.between(segmentId, before, result.mask(index))

    def refine(
        self,
        segmentationNode: Any,
        segmentId: str,
        roiNode: Any = None,
        pointListNode: Any = None,
        progress: ProgressFn = None,
        plane: Optional[str] = None,
        maxPropagation: Optional[int] = None,
    ) -> Any:
        """Fix ``segmentId`` on one slice with an ROI box and/or +/- points, propagated along the slice's normal.

        The slice is in the plane of the view the markups were drawn on (axial, coronal or sagittal; ``plane``
        overrides). ``pointListNode`` is one point list (a label starting with ``-`` marks a negative point) or a
        pair ``(positives, negatives)``. ``maxPropagation`` limits how many neighbouring slices change on each side
        (0: only the drawn slice). Blocks until done; returns the segmentation node (undo with :meth:`undo`).

        Example:
            >>> logic.refine(seg, "brain", roiNode=getNode("TextSegment box"))  # doctest: +SKIP
        """
        job = self.refineAsync(segmentationNode, segmentId, roiNode, pointListNode, plane, maxPropagation)
        self._wait(job, progress)
        return self.applyRefinement(segmentationNode, segmentId)

    # ------------------------------------------------------------------------------------------ undo
    def forget(self, segmentationNode: Any = None) -> None:
        """Drop the undo history and engine results of one segmentation node (or of all; e.g. on scene close)."""
        if segmentationNode is None:
            self._sessions.clear()
            self._inputs.clear()
        else:
            self._sessions.pop(segmentationNode)

    def canUndo(self, segmentationNode: Any) -> bool:
        session = self._sessions.get(segmentationNode)
        return bool(session and session.undo)

    def undo(self, segmentationNode: Any) -> bool:
        """Undo the last segment or refine call on this node; False when there is nothing to undo."""
        session = self._sessions.get(segmentationNode)
        if not session or not session.undo:
            return False
        step = session.undo.pop()
        if step.kind == "refine":  # exactly the voxels the refinement changed; the engine's state follows
            volumeNode = self.scene.GetNodeByID(session.volume_id)
            apply_voxels(segmentationNode, volumeNode, step.voxels, undo=True)
            result = step.result if step.result is not None else session.result
            self.worker.run(lambda job: self.segmenter().undo(result), description="undo")
            return True
        self._revert(segmentationNode, step.segments)
        bridge.share_layers(segmentationNode)
        if step.session is None:
            self._sessions.pop(segmentationNode)
        else:
            step.session.undo = session.undo
            self._sessions.set(segmentationNode, step.session)
        return True

    # ------------------------------------------------------------------------------------------ batches
    def segmentFiles(
        self,
        inputs: Union[str, Path, Sequence[Union[str, Path]]],
        prompts: Union[str, Sequence[str]],
        outputFolder: Union[str, Path],
        suffix: str = ".seg.nrrd",
        overwrite: bool = False,
        progress: ProgressFn = None,
        overlap: str = "smaller",
        **options: Any,
    ) -> List[Path]:
        """Segment every input file (or every scan of a folder) and write ``<name><suffix>`` + a JSON report each.

        The same batch path as the command line (:mod:`TextSegmentLib.app`): every job is checked first (a
        ``RequestError`` names the problem, nothing is computed: e.g. an output that would replace an input), an
        existing complete output is skipped unless ``overwrite``, a file that fails is logged and skipped, outputs
        are verified before they are renamed into place. Returns the written paths. ``suffix=".dcm"``: DICOM SEG.

        Example:
            >>> logic.segmentFiles("/data/scans", ["liver", "spleen"], "/data/out")  # doctest: +SKIP
            [PosixPath('/data/out/case01.seg.nrrd'), ...]
        """
        from ..app import check_options, check_overlap, plan_jobs, run_jobs, validate_jobs  # noqa: PLC0415

        items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
        prompt_list = [p for p in prompts.splitlines() if p.strip()] if isinstance(prompts, str) else list(prompts)
        jobs, _ = plan_jobs(items, prompt_list, Path(outputFolder), suffix, folder_output=True)
        jobs = validate_jobs(jobs)
        options, overlap = check_options(options), check_overlap(overlap)

        def run(job: Job) -> Any:
            return run_jobs(jobs, self.segmenter, options, overwrite, overlap, job.report, job.cancelled)

        summary = self._wait(self.worker.submit(run, description="segmenting files"), progress)
        for outcome in summary.outcomes:
            if outcome.state in ("failed", "busy"):
                log.error("%s failed: %s", outcome.job.input, outcome.message)
            elif outcome.state == "written":
                found = ", ".join(f"{s.prompt}: {s.volume_ml:.1f} mL" if s.found else f"{s.prompt}: not found"
                                  for s in outcome.segments)  # fmt: skip
                log.info("%s -> %s (%s)", outcome.job.input.name, outcome.job.output.name, found)
        if progress is not None:
            progress(1.0, f"{len(summary.written)} of {len(jobs)} written")
        return summary.written

    # ------------------------------------------------------------------------------------------ helpers
    def _wait(self, job: Job, progress: ProgressFn) -> Any:
        """Block until ``job`` ended, in short waits that release the interpreter lock (full worker speed)."""
        on_status = None if progress is None else (lambda status: progress(status.fraction, status.message))
        JobWatcher(job, on_status).wait()
        return job.get()

    @staticmethod
    def _revert(segmentationNode: Any, changed: List[Tuple[str, Any, int]]) -> None:
        """Put back what ``write_segment`` calls replaced (newest first); new segments are removed."""
        segmentation = segmentationNode.GetSegmentation()
        for segment_id, previous, index in reversed(changed):
            if previous is None:
                segmentation.RemoveSegment(segment_id)
            else:
                bridge.restore_segment(segmentationNode, segment_id, previous, index)

    @staticmethod
    def _tag(segmentationNode: Any, segmentId: str, report: Any) -> None:
        segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
        segment.SetTag(TAG_PROMPT, str(report.prompt))
        segment.SetTag(TAG_READING, str(getattr(report, "reading", "")))
        segment.SetTag(TAG_FOUND, "true" if report.found else "false")
        segment.SetTag(TAG_CONFIDENCE, f"{report.confidence:.3f}")
        segment.SetTag(TAG_VOLUME, f"{report.volume_ml:.3f}")


def _result_plane(result: Any) -> str:
    """The plane an engine result was segmented in (its primary plane)."""
    return str(getattr(result.volume, "axis", "axial"))
