"""Segmenter: the whole-volume engine behind the Slicer module, the console and the command line."""

import contextlib
import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..checkpoint import BundleError, load_bundle
from ..device import resolve_device, resolve_precision
from ..imaging.pose import HeadPose
from ..model import TextSegmentModel
from ..prompts import Query, card_windows, parse_query, read_side, vocabulary_names, words
from .allocator import keep_freed_memory
from .batching import Batcher, CancelFn, ProgressFn, check_cancel
from .coords import Coords, in_plane, slice_of
from .embeddings import EmbeddingCache, EmbeddingStore, SliceEmbeddings, plane_embeddings
from .headpose import HeadPoses
from .io import INPUT_WARNINGS, InputError, InputLike, check_prompts, check_refine_prompts, load_input
from .options import DEFAULT_OPTIONS, resolve_options
from .queries import absent_state, decode_text, segment_query
from .rebase import rebase
from .refine import SlicePrompts, apply_changes, refine_slices
from .result import PromptState, Result, _Change
from .vocabulary import DEFAULT_MASK_THRESHOLD
from .volume import SLICE_AXES, PreparedVolume, check_axis

log = logging.getLogger(__name__)


def load_model(model: Union[str, Path, torch.nn.Module], device: str = "auto") -> TextSegmentModel:
    """A bundle folder or a loaded model -> model in eval mode. Raises BundleError.

    Catalog ids ("default", "name-v1.2.3") and archives are resolved above the engine, once:
    ``TextSegmentLib.app.resolve_bundle`` turns them into a bundle folder (``app.open_segmenter`` does both).
    """
    if isinstance(model, torch.nn.Module):
        if device != "auto":
            model.to(resolve_device(device))
        return model  # type: ignore[return-value]  # switched to eval only during each call (see _eval_mode)
    path = Path(model)
    if not path.is_dir():
        raise BundleError(
            f"model '{model}' is not a bundle folder; the engine takes a loaded model or a bundle folder. For a "
            "catalog id or an archive use TextSegmentLib.app.open_segmenter (or resolve_bundle) instead"
        )
    return load_bundle(path, resolve_device(device))


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module, dtype: torch.dtype) -> Iterator[None]:
    """Eval mode, no autograd and the engine's inference dtype for one call; a caller's model gets its mode and dtype
    back afterwards."""
    was_training, was_dtype = model.training, getattr(model, "inference_dtype", torch.float32)
    model.eval()
    model.inference_dtype = dtype  # type: ignore[assignment]
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
        model.inference_dtype = was_dtype  # type: ignore[assignment]


class Segmenter:
    """Segments 3D volumes from text prompts with a TextSegment model; slice embeddings are cached.

    ``precision``: "auto" (bfloat16 on a CPU that computes it natively, about twice as fast there; float32 elsewhere),
    "float32" or "bfloat16": the dtype the image encoder and mask decoder run in (see ``resolve_precision``).

    Example:
        >>> import numpy as np, tempfile
        >>> from TextSegmentLib.model import build_model
        >>> from TextSegmentLib.engine import Segmenter, VolumeInput
        >>> m = build_model({"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64})
        >>> seg = Segmenter(model=m, device="cpu")
        >>> vol = VolumeInput(np.random.rand(4, 20, 20).astype(np.float32), (1, 1, 2), (0, 0, 0), np.eye(3).ravel())
        >>> result = seg.segment(vol, ["brain"])
        >>> result.labelmap.GetSize(), result.segments[0].label
        ((20, 20, 4), 1)
    """

    def __init__(
        self,
        model: Union[str, Path, torch.nn.Module],
        device: str = "auto",
        batch_size: int = 16,
        cache_limit_mb: float = 2048.0,
        precision: str = "auto",
        conform_oblique: bool = True,
        align_head: bool = True,
    ) -> None:
        keep_freed_memory()  # the next prompt reuses this one's memory instead of faulting it in again
        #: resample grids tilted by more than 5 degrees onto the anatomical axes (imaging/conform.py) for text
        #: segmentation (the model sees the head as in a straight acquisition); refinements still work on the
        #: volume's own grid (engine/rebase.py), so a box on a slice of an oblique volume refines exactly that slice
        self.conform_oblique = bool(conform_oblique)
        #: for a model whose card says ``input.align_head`` (heads posed like its training subject), an MR head
        #: turned by more than 10 degrees is segmented on the head's own axes (imaging/pose.py); False keeps the
        #: input's grid
        self.align_head = bool(align_head)
        self._poses = HeadPoses()
        self.model = load_model(model, device)
        self.model.to(memory_format=torch.channels_last)  # convolution weights to match channels-last inputs
        self.dtype = resolve_precision(precision, self.model.device)
        self.batcher = Batcher(batch_size, self.model)
        self.cache = EmbeddingCache(cache_limit_mb)
        self.store = EmbeddingStore(self.cache, self.batcher)
        self._mr_ranges: Dict[str, Tuple[float, float]] = {}  # MR intensity ranges by volume content (PreparedVolume)
        self._lock = threading.RLock()

    @property
    def card(self) -> Dict[str, Any]:
        return getattr(self.model, "card", None) or {}

    def _options(self, options: Dict[str, Any]) -> Dict[str, Any]:
        return resolve_options(options, self.card_planes(), self.card)

    @staticmethod
    def _window(name: Optional[str], table: Dict[str, Tuple[float, float]]) -> Any:
        """A window name from the vocabulary -> the name (built-in value) or the card's own (level, width)."""
        from ..imaging import CT_WINDOWS

        if name is None or name not in table:
            return name
        value = table[name]
        return name if tuple(float(v) for v in CT_WINDOWS.get(name, ())) == value else value

    def _common_window(self) -> Any:
        """The CT window most of the card's vocabulary entries use (None without any: a prompt's default)."""
        names = [e.get("ct_window") for e in self.card.get("vocabulary", []) if e.get("ct_window")]
        if not names:
            return None
        return self._window(max(sorted(set(names)), key=names.count), card_windows(self.card))

    def card_planes(self) -> Tuple[str, ...]:
        """The planes the model was trained on (its card's ``input.planes``; axial only for older cards)."""
        spec = self.card.get("input", {})
        planes = spec.get("planes") or [spec.get("slice_axis", "axial")]
        return tuple(check_axis(p) for p in planes)

    def refine_planes(self) -> Tuple[str, ...]:
        """The planes a box or points can be drawn on for :meth:`refine` (the planes the model was trained on)."""
        return self.card_planes()

    def prepare(self, source: InputLike, slice_axis: str = "axial", modality: Optional[str] = None) -> PreparedVolume:
        """Read, check and prepare an input (no model work)."""
        image, meta, name = load_input(source)
        spec = self.card.get("input", {})
        volume = PreparedVolume(
            image,
            meta,
            self.model.config.image_size,
            slice_axis,
            self.model.config.slice_context,
            modality,
            spec.get("mr_percentiles", (0.5, 99.5)),
            self._mr_ranges,
            conform_oblique=self.conform_oblique,
            pose=self.head_pose(image, meta, modality),
        )
        while len(self._mr_ranges) > 64:  # a batch over many volumes: the oldest ranges go
            self._mr_ranges.pop(next(iter(self._mr_ranges)))
        volume.name = name  # type: ignore[attr-defined]
        volume.source_path = Path(source) if isinstance(source, (str, Path)) else None  # type: ignore[attr-defined]
        volume.input_warnings = [w for w in meta.get(INPUT_WARNINGS, "").split("\n") if w]  # type: ignore[attr-defined]
        return volume

    def head_pose(self, image: Any, metadata: Any, modality: Optional[str] = None) -> Optional[HeadPose]:
        """How the head is turned in an MR ``image`` (engine/headpose.py), or None where the engine does not align
        (``align_head`` off, a model whose card does not ask for it, a CT, thick slices)."""
        return self._poses.get(image, metadata, self.card, modality) if self.align_head else None

    def parse(self, prompts: Union[str, Query, Sequence[Union[str, Query]]]) -> List[Query]:
        """Each prompt read once against this model's vocabulary (a :class:`Query` passes as it is). InputError for
        unusable prompts. The application layer calls this once per prompt; :meth:`segment` takes the queries."""
        vocabulary = self.card.get("vocabulary", [])
        table = card_windows(self.card)
        out = []
        for p in check_prompts(prompts):
            out.append(p if isinstance(p, Query) else parse_query(p, vocabulary, windows=table))
        return out

    def segment(
        self,
        input: InputLike,
        prompts: Union[str, Query, Sequence[Union[str, Query]]],
        progress: ProgressFn = None,
        cancel: CancelFn = None,
        **options: Any,
    ) -> Result:
        """Segment ``input`` for each prompt; one labelmap, label i + 1 = prompt i. See DEFAULT_OPTIONS.

        ``prompts``: texts or queries from :meth:`parse` (texts are parsed here, once each).

        Raises :class:`InputError` for unusable inputs or prompts and :class:`Cancelled` when ``cancel()`` is true.
        """
        with self._lock, _eval_mode(self.model, self.dtype):
            return self._segment(input, self.parse(prompts), progress, cancel, self._options(options))

    def precompute(
        self,
        input: InputLike,
        views: Optional[Sequence[str]] = None,
        ct_window: Any = None,
        modality: Optional[str] = None,
        progress: ProgressFn = None,
        cancel: CancelFn = None,
    ) -> Dict[str, int]:
        """Encode every slice of ``input`` along ``views`` (default: the card's planes) ahead of the first prompt;
        returns the slices newly encoded per plane. A later :meth:`segment` of the same volume then only decodes
        (the text encoder is loaded too). On 2 CPU cores a 197 x 233 x 189 brain takes 0.9 s in three views
        (bfloat16; 1.5 s in float32), after which the first prompt takes 0.19 s instead of 0.40 s.

        Meant to run while the user types the prompt (the Slicer module starts it when a volume is selected).
        Cancel is checked between batches and what was encoded stays cached, so cancelling it to segment loses
        nothing. The embeddings are those of a prompt's intensity preset: an MR volume has one; a CT volume is
        encoded in ``ct_window`` (a name or (level, width); None: the window most of the card's vocabulary uses,
        e.g. "brain" for the brain model; prompts in another window encode their slices when they run). A plane
        whose embeddings exceed the cache limit is not encoded (a warning says so).

        Example:
            >>> import numpy as np
            >>> from TextSegmentLib.model import build_model
            >>> from TextSegmentLib.engine import Segmenter, VolumeInput
            >>> m = build_model({"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64})
            >>> seg = Segmenter(model=m, device="cpu")
            >>> vol = VolumeInput(np.random.rand(4, 20, 20).astype(np.float32), (1, 1, 2), (0, 0, 0), np.eye(3).ravel())
            >>> seg.precompute(vol), seg.precompute(vol)
            ({'axial': 4}, {'axial': 0})
        """
        opts = self._options({"views": views, "ct_window": ct_window, "modality": modality})
        planes = opts["views"]
        with self._lock, _eval_mode(self.model, self.dtype):
            check_cancel(cancel)
            volume = self.prepare(input, planes[0], opts["modality"])
            window = (opts["ct_window"] or self._common_window()) if volume.is_ct else None
            self.model.encode_text([None])  # loads the text encoder (about a second), encodes nothing
            self.store.begin(self.model)
            todo = {}
            views = [(plane, volume.view(plane)) for plane in planes]
            if opts["mirror"]:  # the mirror's sagittal slices are the volume's own
                views += [(f"mirrored {p}", volume.mirrored().view(p)) for p in planes if p != "sagittal"]
            for plane, view in views:
                emb = self.store.embeddings(self.model, view, window)
                if self.cache.holds(emb.key, emb.stored):  # else too large to keep: no help to a later prompt
                    todo[plane] = (emb, [int(k) for k in np.flatnonzero(~emb.stored.have)])
            total = sum(len(missing) for _, missing in todo.values())
            encoded = {p: 0 for p, _ in views}
            start = 0.0
            for plane, (emb, missing) in todo.items():
                span = len(missing) / max(total, 1)

                def run(batch: List[int], emb: SliceEmbeddings = emb) -> List[int]:
                    emb.ensure(batch)
                    return batch

                encoded[plane] = len(
                    self.batcher.run(run, missing, progress, cancel, f"encoding {plane} slices", start, span)
                )
                start += span
            if progress is not None:
                progress(1.0, "done")
            return encoded

    def _segment(self, source, queries: List[Query], progress, cancel, opts) -> Result:
        start = time.perf_counter()
        check_cancel(cancel)
        views = opts["views"]
        volume = self.prepare(source, views[0], opts["modality"])
        model = self.model
        vocabulary = self.card.get("vocabulary", [])
        table = card_windows(self.card)
        windows = [(opts["ct_window"] or self._window(q.window, table)) if volume.is_ct else None for q in queries]
        self.store.begin(model)
        groups: Dict[Tuple[str, str, str], Any] = {}
        states: List[PromptState] = []
        memo: Dict[Any, Any] = {}  # parts decoded in this call, shared by the prompts that name them
        for n, (query, window) in enumerate(zip(queries, windows)):
            t0 = time.perf_counter()
            refused = query.reason is not None and opts["vocabulary_gate"] > 0
            if refused or not self.knows(query, opts["vocabulary_gate"]):
                states.append(absent_state(volume, query, window, views, time.perf_counter() - t0, known=False))
                continue
            if query.reason is not None:  # the gate is off: the model reads the request as typed
                query = Query(query.prompt, side=query.side, side_read=query.side_read, window=query.window,
                              color=query.color, warnings=query.warnings)  # fmt: skip
            embeddings = plane_embeddings(self.store, model, volume, views, window, opts["use_cache"], groups)
            mirror = None
            if opts["mirror"] and opts["prompt_text"] == "matched":
                other = volume.mirrored()
                found = plane_embeddings(self.store, model, other, views, window, opts["use_cache"], groups, embeddings)
                mirror = (other, found)
            decode = decode_text(
                model, volume, embeddings, self.batcher, opts, vocabulary, progress, cancel, memo, mirror
            )
            states.append(
                segment_query(query, volume, decode, opts, vocabulary, window, n / len(queries), 1.0 / len(queries))
            )
        card = self.card
        info = {
            "input": getattr(volume, "name", "volume"),
            "input_warnings": list(getattr(volume, "input_warnings", [])),
            "model": {"name": card.get("name"), "version": card.get("version"), "image_size": model.config.image_size},
            "device": str(model.device),
            "precision": str(self.dtype).replace("torch.", ""),
            "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()},
            "seconds": round(time.perf_counter() - start, 3),
        }
        if progress is not None:
            progress(1.0, "done")
        return Result(volume, states, info)

    def knows(self, prompt: Union[str, Query], min_similarity: float = 0.65) -> bool:
        """Whether a prompt (or its query) names something in the model card's vocabulary: a name or synonym occurs
        in it (or a group, both sides of a paired structure...), or, side words set aside on both sides, its sentence
        embedding has cosine similarity >= ``min_similarity`` to a vocabulary name. A finding ("tumour") or a spatial
        request TextSegment does not answer never passes. Side words are set aside because they dominate a short
        prompt's embedding: "left kidney" is as close to "left thalamus" as "left hipocampus" is to "left
        hippocampus". The default 0.65 keeps "kidney" out of a vocabulary with "liver" (MiniLM cosine 0.62) and lets
        "thalamic nuclei" (0.67 to "thalamus") and "pallidum" (0.72) in. True without a vocabulary or with
        ``min_similarity`` <= 0.

        Example:
            >>> from TextSegmentLib.app import open_segmenter
            >>> seg = open_segmenter("default", device="cpu")
            >>> seg.knows("left hipocampus"), seg.knows("left kidney"), seg.knows("the thalamus")
            (True, False, True)
        """
        vocabulary = self.card.get("vocabulary", [])
        if min_similarity <= 0 or not vocabulary:
            return True
        query = prompt if isinstance(prompt, Query) else self.parse(prompt)[0]
        if query.reason is not None:
            return False
        if query.term or query.parts:
            return True
        text = " ".join(query.content)
        if not text:
            return False  # side words only: names nothing
        names = sorted({" ".join(read_side(words(n)).rest) for n in vocabulary_names(vocabulary)} - {""})
        if getattr(self, "_vocabulary_names", None) != names:
            self._vocabulary_embeddings = self.model.encode_text(names).sentence
            self._vocabulary_names = names
        sentence = self.model.encode_text([text]).sentence[0]
        return float((self._vocabulary_embeddings @ sentence).max()) >= min_similarity

    # --- refinement --------------------------------------------------------------------------------------------
    def _check_plane(self, result: Result, plane: Optional[str]) -> str:
        plane = result.volume.axis if plane is None else plane
        if plane not in SLICE_AXES:
            raise InputError(f"plane must be one of {SLICE_AXES}, got {plane!r}")
        trained = self.refine_planes()
        if plane not in trained:
            raise InputError(
                f"this model was trained on {', '.join(trained)} slices only and cannot refine on a {plane} slice; "
                f"draw the box or points on {' or '.join(f'an {p}' if p[0] in 'aeiou' else f'a {p}' for p in trained)}"
                " view, or use a model trained on all three planes"
            )
        return plane

    def refine(
        self,
        result: Result,
        prompt_index: int,
        slice_index: Any,
        box: Optional[Sequence[Any]] = None,
        points: Optional[Sequence[Coords]] = None,
        labels: Optional[Sequence[int]] = None,
        coords: str = "voxel",
        plane: Optional[str] = None,
        progress: ProgressFn = None,
        cancel: CancelFn = None,
        max_propagation: Optional[int] = None,
        current: Optional[np.ndarray] = None,
    ) -> Result:
        """Fix prompt ``prompt_index`` on one slice of ``plane`` with a box and/or +/- points; propagate along the
        plane's normal while the structure continues (the rules: :mod:`TextSegmentLib.engine.refine`).

        A box says "the structure is here and only here on this slice": afterwards the segment on that slice lies
        inside the box. A + point adds the region around it, a - point removes the part of the segment it is on.
        Propagation stops where the structure ends and never goes beyond the segment's extent along the normal;
        only the refined and propagated slices of that plane change.

        ``plane``: "axial", "coronal" or "sagittal" in the patient frame, the plane of the view the user drew on
        (default: the result's primary plane); it must be one the model was trained on (:meth:`refine_planes`),
        else :class:`InputError` says which views to use. ``slice_index``: an int is the index along the **input's
        own index axis** nearest to the plane's normal (for an axial plane of an axial acquisition: k); a 3-tuple
        is a voxel (i, j, k) (``coords="voxel"``) or a physical LPS point in mm (``coords="physical"``) on the
        slice. ``box``: two 3-tuples (opposite corners; their coordinate along the normal is ignored), or
        (a0, b0, a1, b1) where a, b are the input's two index axes in the plane in increasing order (with
        ``coords="physical"`` the two in-plane LPS coordinates in mm). ``points`` are 3-tuples or pairs in the same
        convention, ``labels`` 1 (inside) / 0 (outside), default all 1. ``max_propagation``: slices each way at most
        (default ``refine.DEFAULT_MAX_PROPAGATION``; 0 refines the one slice).

        ``current``: the segment as the user has it now (e.g. after Segment Editor edits), a bool/uint8 array with
        the shape of :meth:`Result.mask` (input ``(k, j, i)`` order, non-zero = inside); it replaces the prompt's
        segment before refining, so the refinement starts from it and :meth:`undo` gives it back exactly. It is
        not modified. Updates ``result`` in place (undo with :meth:`undo`); returns it. A result segmented on a
        resampled grid (an oblique grid, a turned head) is first carried onto the input's own grid (engine/rebase.py).
        """
        with self._lock:
            rebase(result)  # a resampled grid's result onto the input's own: the slice drawn on is the one refined
        plane = self._check_plane(result, plane)
        check_refine_prompts(result, prompt_index, slice_index, box, points, labels, coords, plane)
        given = self._check_current(result, prompt_index, current)
        with self._lock, _eval_mode(self.model, self.dtype):
            t0 = time.perf_counter()
            volume = result.volume
            view = volume.view(plane)
            state = result.states[prompt_index]
            s = slice_of(volume, plane, slice_index, coords)
            fit = view.fit
            prompts = SlicePrompts()
            if box is not None:
                corners = [box[0], box[1]] if len(box) == 2 else [box[0:2], box[2:4]]
                rc = np.array([in_plane(volume, plane, s, c, coords) for c in corners])
                y, x = fit.to_model(rc[:, 0], rc[:, 1])
                prompts.box = (float(x.min()), float(y.min()), float(x.max()), float(y.max()))
                prompts.box_rc = (
                    float(rc[:, 0].min()),
                    float(rc[:, 1].min()),
                    float(rc[:, 0].max()),
                    float(rc[:, 1].max()),
                )
            if points:
                rc = np.array([in_plane(volume, plane, s, p, coords) for p in points])
                y, x = fit.to_model(rc[:, 0], rc[:, 1])
                prompts.points = np.stack([x, y], axis=1)
                prompts.points_rc = rc
                prompts.labels = np.asarray(labels if labels is not None else [1] * len(points), dtype=np.int64)
                if prompts.labels.shape != (len(points),):
                    raise InputError("labels must give one 1/0 value per point")
            start = state if given is None else dataclasses.replace(state, mask=given)  # state kept until done
            self.store.begin(self.model)
            emb = self.store.lazy(self.model, view, state.window)
            opts = result.info.get("options", DEFAULT_OPTIONS)
            changes = refine_slices(
                self.model,
                emb,
                self.model.encode_text([state.text or state.prompt]),
                start,
                s,
                prompts,
                opts.get("presence_threshold", 0.5),
                DEFAULT_MASK_THRESHOLD if opts.get("mask_threshold") is None else opts["mask_threshold"],
                max_propagation,
                progress=progress,
                cancel=cancel,
            )
            state.mask = start.mask  # the user's segment (``current``) becomes the one undo returns to
            old = apply_changes(state, plane, changes)
            state.refinements += 1
            result._history.append(_Change(prompt_index, plane, old, time.perf_counter() - t0))
            result._invalidate()
            return result

    @staticmethod
    def _check_current(result: Result, prompt_index: int, current: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """``current`` (input order, shape of ``result.mask``) -> a canonical bool copy; InputError when unusable."""
        if current is None:
            return None
        array = np.asarray(current)
        expected = tuple(result.states[prompt_index].mask.shape)
        shape = tuple(result.volume.to_input_array(np.zeros(expected, dtype=bool)).shape)
        if array.shape != shape:
            raise InputError(
                f"current has shape {array.shape} but the segment has {shape} (the input's (k, j, i) order, as "
                "result.mask returns it); pass the segment as it is now on the input's own grid"
            )
        if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
            raise InputError(f"current must be a bool or integer (uint8) mask, got {array.dtype}")
        return result.volume.from_input_mask(array)

    def undo(self, result: Result) -> Result:
        """Revert the last refinement of ``result`` (in place; nothing happens when there is none)."""
        with self._lock:
            if not result._history:
                log.info("nothing to undo")
                return result
            change = result._history.pop()
            state = result.states[change.prompt_index]
            apply_changes(state, change.plane, change.slices)
            state.refinements -= 1
            result._invalidate()
            return result
