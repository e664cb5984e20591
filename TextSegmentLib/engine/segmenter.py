"""Segmenter: the whole-volume engine behind the Slicer module, the console and the command line."""

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..checkpoint import BundleError, load_bundle
from ..device import resolve_device
from ..model import TextSegmentModel
from ..model.mask_decoder import ABSENT_LOGIT
from ..vocabulary import find_term, match_prompt, vocabulary_names
from .batching import Batcher, CancelFn, ProgressFn, check_cancel
from .decode import cleanup_3d, decode_volume, prob_to_logit, upscale_masks
from .embeddings import EmbeddingCache, EmbeddingStore, SliceEmbeddings
from .io import InputError, InputLike, check_refine_prompts, load_input
from .refine import apply_changes, refine_slices
from .result import PromptState, Result, _Change
from .volume import AXIS_NORMAL, PreparedVolume, check_axis, resolve_window

log = logging.getLogger(__name__)

DEFAULT_OPTIONS: Dict[str, Any] = {
    "slice_axis": None,  # None: the model card's input slice_axis (axial)
    "ct_window": None,  # None: chosen per prompt from the vocabulary / anatomy
    "modality": None,  # None: detected (DICOM Modality, else Hounsfield range); "CT" or "MR" to override
    "presence_threshold": 0.5,  # probability; slices below are absent (0 keeps all, 1 drops all)
    "mask_threshold": 0.5,  # probability of a voxel being inside
    "min_component_ml": 0.05,  # 3D components smaller than this are removed
    "min_slices": 2,  # 3D components spanning fewer slices are removed
    "fill_holes": True,
    "largest_only": False,
    "slice_stride": 1,  # >1: decode every n-th slice first, then only near present ones (faster, see decode.py)
    "use_cache": True,  # False: re-encode the volume (the naive path, for comparisons)
    # a prompt naming nothing in the card's vocabulary (no name/synonym in it, and its sentence embedding less similar
    # than this to every vocabulary name) is reported not found without segmenting; 0 turns the check off
    "vocabulary_gate": 0.6,
}
Coords = Sequence[float]


def check_prompts(prompts: Union[str, Sequence[str]]) -> List[str]:
    """Validate prompts: a string or a non-empty list of non-empty strings. Raises InputError."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts or [])
    if not prompts:
        raise InputError("no prompt given; give at least one text prompt such as 'liver'")
    out = []
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise InputError(f"prompt {p!r} is empty; every prompt must name what to segment")
        out.append(" ".join(p.split()))
    return out


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
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for one call; a caller's training model gets its mode back afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


class Segmenter:
    """Segments 3D volumes from text prompts with a TextSegment model; slice embeddings are cached.

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
        model: Union[str, Path, torch.nn.Module] = "default",
        device: str = "auto",
        batch_size: int = 8,
        cache_limit_mb: float = 2048.0,
    ) -> None:
        self.model = load_model(model, device)
        self.batcher = Batcher(batch_size, self.model)
        self.cache = EmbeddingCache(cache_limit_mb)
        self.store = EmbeddingStore(self.cache, self.batcher)
        self._lock = threading.RLock()

    @property
    def card(self) -> Dict[str, Any]:
        return getattr(self.model, "card", None) or {}

    def _options(self, options: Dict[str, Any]) -> Dict[str, Any]:
        unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
        if unknown:
            raise TypeError(f"unknown segment options {unknown}; known: {sorted(DEFAULT_OPTIONS)}")
        opts = dict(DEFAULT_OPTIONS, **options)
        opts["slice_axis"] = check_axis(opts["slice_axis"] or self.card.get("input", {}).get("slice_axis", "axial"))
        if opts["ct_window"] is not None:
            resolve_window(opts["ct_window"])
        if isinstance(opts["ct_window"], (list, tuple)):
            opts["ct_window"] = tuple(float(v) for v in opts["ct_window"])
        return opts

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
        )
        volume.name = name  # type: ignore[attr-defined]
        return volume

    def segment(
        self,
        input: InputLike,
        prompts: Union[str, Sequence[str]],
        progress: ProgressFn = None,
        cancel: CancelFn = None,
        **options: Any,
    ) -> Result:
        """Segment ``input`` for each prompt; one labelmap, label i + 1 = prompt i. See DEFAULT_OPTIONS.

        Raises :class:`InputError` for unusable inputs or prompts and :class:`Cancelled` when ``cancel()`` is true.
        """
        with self._lock, _eval_mode(self.model):
            return self._segment(input, check_prompts(prompts), progress, cancel, self._options(options))

    def _segment(self, source, prompts, progress, cancel, opts) -> Result:
        start = time.perf_counter()
        check_cancel(cancel)
        volume = self.prepare(source, opts["slice_axis"], opts["modality"])
        model = self.model
        vocabulary = self.card.get("vocabulary", [])
        matches = [match_prompt(p, vocabulary) for p in prompts]
        windows = [(opts["ct_window"] or m.window) if volume.is_ct else None for m in matches]
        keys = [volume.window_key(w) for w in windows]
        n = volume.num_slices
        self.store.begin(model)
        to_encode = set()
        for window, key in zip(windows, keys):
            if not (opts["use_cache"] and self.cache.get(self.store.key(model, volume, window)) is not None):
                to_encode.add(key)
        units = len(to_encode) * n + 0.3 * n * len(prompts)
        done = 0.0
        groups: Dict[str, SliceEmbeddings] = {}
        states: List[PromptState] = []
        gate = prob_to_logit(opts["presence_threshold"])
        for prompt, match, window, key in zip(prompts, matches, windows, keys):
            t0 = time.perf_counter()
            if not self.knows(prompt, opts["vocabulary_gate"]):
                states.append(self._unknown_state(volume, prompt, match, window, time.perf_counter() - t0))
                continue
            if key not in groups:
                span = n / units if key in to_encode else 0.0
                groups[key] = self.store.embeddings(
                    model, volume, window, progress, cancel, done / units, span, opts["use_cache"]
                )
                done += span * units
            text = model.encode_text([prompt])
            dec = decode_volume(
                model,
                groups[key],
                text,
                self.batcher,
                opts["presence_threshold"],
                progress,
                cancel,
                done / units,
                0.3 * n / units,
                opts["slice_stride"],
            )
            done += 0.3 * n
            present = (dec.presence >= gate).numpy() if gate > -np.inf else None
            mask = upscale_masks(dec.logits, volume.fit, opts["mask_threshold"], present)
            mask = cleanup_3d(
                mask,
                volume.voxel_ml,
                opts["min_component_ml"],
                opts["min_slices"],
                opts["fill_holes"],
                opts["largest_only"],
            )
            states.append(
                PromptState(prompt, match, window, dec.logits, dec.presence, dec.iou, mask, time.perf_counter() - t0)
            )
        card = self.card
        info = {
            "input": getattr(volume, "name", "volume"),
            "model": {"name": card.get("name"), "version": card.get("version"), "image_size": model.config.image_size},
            "device": str(model.device),
            "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()},
            "seconds": round(time.perf_counter() - start, 3),
        }
        if progress is not None:
            progress(1.0, "done")
        return Result(volume, states, info)

    def knows(self, prompt: str, min_similarity: float = 0.6) -> bool:
        """Whether ``prompt`` names something in the model card's vocabulary: a name or synonym occurs in it, or its
        sentence embedding has cosine similarity >= ``min_similarity`` to a vocabulary name. True without a
        vocabulary or with ``min_similarity`` <= 0."""
        vocabulary = self.card.get("vocabulary", [])
        if min_similarity <= 0 or not vocabulary or find_term(prompt, vocabulary):
            return True
        names = vocabulary_names(vocabulary)
        if getattr(self, "_vocabulary_names", None) != names:
            self._vocabulary_embeddings = self.model.encode_text(names).sentence
            self._vocabulary_names = names
        sentence = self.model.encode_text([prompt]).sentence[0]
        return float((self._vocabulary_embeddings @ sentence).max()) >= min_similarity

    def _unknown_state(self, volume: PreparedVolume, prompt, match, window, seconds: float) -> PromptState:
        """An empty, not-found state for a prompt outside the vocabulary (no model work; a box can still refine it)."""
        n, size = volume.num_slices, self.model.config.image_size
        logits = torch.full((n, size, size), ABSENT_LOGIT, dtype=torch.float16)
        presence = torch.full((n,), ABSENT_LOGIT)
        mask = upscale_masks(logits, volume.fit, 0.5, np.zeros(n, dtype=bool))
        return PromptState(prompt, match, window, logits, presence, torch.zeros(n), mask, seconds, known=False)

    # --- refinement --------------------------------------------------------------------------------------------
    def _view_point(self, volume: PreparedVolume, point: Coords, coords: str) -> Tuple[float, float, float]:
        ijk = volume.physical_to_index(point) if coords == "physical" else point
        return volume.input_index_to_view(ijk)

    def _slice_of(self, volume: PreparedVolume, slice_index: Any, coords: str) -> int:
        if isinstance(slice_index, (int, np.integer)):
            c = AXIS_NORMAL[volume.axis]
            p = volume.reorientation.permutation[c]
            size = volume.image.GetSize()[p]
            if not 0 <= int(slice_index) < size:
                raise InputError(f"slice_index {slice_index} is outside 0..{size - 1}")
            return size - 1 - int(slice_index) if volume.reorientation.flips[c] else int(slice_index)
        s = int(round(self._view_point(volume, slice_index, coords)[0]))
        if not 0 <= s < volume.num_slices:
            raise InputError(f"slice {slice_index} lies outside the volume")
        return s

    def _in_plane(self, volume: PreparedVolume, s: int, pair: Coords, coords: str) -> Tuple[float, float]:
        """A 2-value in-plane coordinate (or a 3D point) -> (row, col) on view slice ``s``."""
        if len(pair) == 3:
            _, r, c = self._view_point(volume, pair, coords)
            return r, c
        normal = AXIS_NORMAL[volume.axis]
        if coords == "physical":
            centre = self._centre_index(volume, s)
            phys = list(volume.image.TransformContinuousIndexToPhysicalPoint(centre))
            axes = [a for a in range(3) if a != normal]
        else:
            phys = list(self._centre_index(volume, s))
            p = volume.reorientation.permutation[normal]
            axes = [a for a in range(3) if a != p]
        phys[axes[0]], phys[axes[1]] = float(pair[0]), float(pair[1])
        _, r, c = self._view_point(volume, phys, coords)
        return r, c

    def _centre_index(self, volume: PreparedVolume, s: int) -> List[float]:
        size = volume.image.GetSize()
        normal = AXIS_NORMAL[volume.axis]
        p = volume.reorientation.permutation[normal]
        ijk = [(n - 1) / 2.0 for n in size]
        ijk[p] = float(size[p] - 1 - s if volume.reorientation.flips[normal] else s)
        return ijk

    def refine(
        self,
        result: Result,
        prompt_index: int,
        slice_index: Any,
        box: Optional[Sequence[Any]] = None,
        points: Optional[Sequence[Coords]] = None,
        labels: Optional[Sequence[int]] = None,
        coords: str = "voxel",
        progress: ProgressFn = None,
        cancel: CancelFn = None,
        max_propagation: Optional[int] = None,
    ) -> Result:
        """Fix prompt ``prompt_index`` on one slice with a box and/or +/- points; propagate to neighbours.

        ``slice_index``: an int is the index along the **input's own index axis** nearest to the slice normal
        (for an axial acquisition: k); a 3-tuple is a voxel (i, j, k) (``coords="voxel"``) or a physical LPS
        point in mm (``coords="physical"``) on the slice. ``box``: (a0, b0, a1, b1) on that slice, where a, b are
        the input's two in-plane index axes in increasing order (i, j for an axial acquisition), or with
        ``coords="physical"`` the two in-plane LPS coordinates in mm (x, y axial; x, z coronal; y, z sagittal);
        or two 3-tuples (opposite corners). ``points`` are pairs or 3-tuples in the same convention, ``labels``
        1 (inside) / 0 (outside), default all 1. Updates ``result`` in place (undo with :meth:`undo`); returns it.
        """
        check_refine_prompts(result, prompt_index, slice_index, box, points, labels, coords)
        if coords not in ("voxel", "physical"):
            raise ValueError("coords must be 'voxel' or 'physical'")
        if box is None and not points:
            raise InputError("refine needs a box or at least one point")
        with self._lock, _eval_mode(self.model):
            t0 = time.perf_counter()
            volume = result.volume
            state = result.states[prompt_index]
            s = self._slice_of(volume, slice_index, coords)
            fit = volume.fit
            box_model = None
            if box is not None:
                corners = [box[0], box[1]] if len(box) == 2 else [box[0:2], box[2:4]]
                rc = np.array([self._in_plane(volume, s, c, coords) for c in corners])
                y, x = fit.to_model(rc[:, 0], rc[:, 1])
                box_model = (float(x.min()), float(y.min()), float(x.max()), float(y.max()))
            pts = lab = None
            if points:
                rc = np.array([self._in_plane(volume, s, p, coords) for p in points])
                y, x = fit.to_model(rc[:, 0], rc[:, 1])
                pts = np.stack([x, y], axis=1)
                lab = np.asarray(labels if labels is not None else [1] * len(points), dtype=np.int64)
                if lab.shape != (len(points),):
                    raise InputError("labels must give one 1/0 value per point")
            self.store.begin(self.model)
            emb = self.store.lazy(self.model, volume, state.window)
            opts = result.info.get("options", DEFAULT_OPTIONS)
            changes = refine_slices(
                self.model,
                emb,
                self.model.encode_text([state.prompt]),
                state,
                s,
                box_model,
                pts,
                lab,
                opts.get("presence_threshold", 0.5),
                opts.get("mask_threshold", 0.5),
                max_propagation,
                progress=progress,
                cancel=cancel,
            )
            old = apply_changes(state, changes)
            state.refinements += 1
            result._history.append(_Change(prompt_index, old, time.perf_counter() - t0))
            result._invalidate()
            return result

    def undo(self, result: Result) -> Result:
        """Revert the last refinement of ``result`` (in place; nothing happens when there is none)."""
        with self._lock:
            if not result._history:
                log.info("nothing to undo")
                return result
            change = result._history.pop()
            state = result.states[change.prompt_index]
            apply_changes(state, change.slices)
            state.refinements -= 1
            result._invalidate()
            return result
