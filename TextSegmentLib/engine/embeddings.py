"""Slice embeddings: computed on demand, once per volume, plane, model and intensity preset, kept in 16 bits under a
memory cap (bfloat16 when the model decodes in bfloat16: its encoder's outputs are bf16 values, kept exactly and read
without a conversion; float16 otherwise).

Only the slices a call decodes are encoded (the coarse pass and the slices across the target's box), so a first
prompt encodes a fraction of the volume; every slice, once encoded, is kept for later prompts and refinements. The
cache key joins the plane view's content hash (canonical voxels, so any stored orientation of the same volume hits),
the model's identity (weights hash) and the intensity preset (CT window or MR percentiles). When one plane's
embeddings would exceed the cap they are kept for the current call only: a warning says so and later calls encode
again what they need.
"""

import hashlib
import logging
import threading
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .batching import Batcher
from .volume import PlaneView, PreparedVolume, WindowLike

log = logging.getLogger(__name__)


def model_identity(model: torch.nn.Module) -> str:
    """Identity of a model's weights: the card's weights SHA-256 when loaded from a bundle, else a hash of the
    current parameters (so a model that keeps training never hits stale embeddings)."""
    card = getattr(model, "card", None) or {}
    if card.get("weights_sha256") and getattr(model, "bundle_dir", None) is not None:
        return f"{card.get('name')}:{card['weights_sha256'][:16]}"
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return "mem:" + digest.hexdigest()


def storage_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype slice embeddings are kept in for ``model``: bfloat16 when it decodes in bfloat16, else float16.

    Example:
        >>> storage_dtype(torch.nn.Linear(1, 1))
        torch.float16
    """
    return torch.bfloat16 if getattr(model, "inference_dtype", None) == torch.bfloat16 else torch.float16


class StoredEmbeddings:
    """16-bit embeddings (``dtype``) of the slices of one plane view, filled in as slices are encoded (``have`` marks
    them); with ``image_shape`` also the model inputs of those slices (float32), for a decoder that reads the image
    (``detail_channels``): recomputing them (window, resize) cost a tenth of a further prompt on a 512 x 512 CT."""

    def __init__(
        self,
        num_slices: int,
        shape: Tuple[int, int, int],
        image_shape: Optional[Tuple[int, int, int]] = None,
        dtype: torch.dtype = torch.float16,
    ) -> None:
        # channels-last (slice, row, column, channel): the decoder reads a slice's embedding as (tokens, channels)
        # rows, so a batch needs no transposing copy (a third of the time spent outside the decoder's matmuls)
        self.tensor = torch.empty((num_slices, *shape), dtype=dtype, memory_format=torch.channels_last)
        self.images = torch.empty((num_slices, *image_shape), dtype=torch.float32) if image_shape else None
        self.have = np.zeros(num_slices, dtype=bool)

    @property
    def nbytes(self) -> int:
        images = 0 if self.images is None else self.images.numel() * self.images.element_size()
        return self.tensor.numel() * self.tensor.element_size() + images


def _nbytes(item: object) -> int:
    if isinstance(item, torch.Tensor):
        return item.numel() * item.element_size()
    return int(item.nbytes)


class EmbeddingCache:
    """LRU cache of 16-bit slice embeddings (CPU tensors) with a memory cap in MB.

    Example:
        >>> cache = EmbeddingCache(limit_mb=1)
        >>> cache.put("a", torch.zeros(2, 4, 8, 8, dtype=torch.float16))
        True
        >>> cache.get("a").shape, cache.used_mb < 1
        (torch.Size([2, 4, 8, 8]), True)
    """

    def __init__(self, limit_mb: float = 2048.0) -> None:
        self.limit_bytes = int(limit_mb * 1024 * 1024)
        self._items: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def used_mb(self) -> float:
        return sum(_nbytes(t) for t in self._items.values()) / (1024 * 1024)

    def get(self, key: str) -> Optional[object]:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def holds(self, key: str, item: object) -> bool:
        """Whether ``item`` is the entry kept under ``key`` (no hit or miss counted, no LRU move)."""
        with self._lock:
            return self._items.get(key) is item

    def put(self, key: str, embeddings: object) -> bool:
        """Store a tensor or :class:`StoredEmbeddings` (evicting least recently used entries); False when it alone
        exceeds the cap."""
        size = _nbytes(embeddings)
        if size > self.limit_bytes:
            return False
        with self._lock:
            self._items.pop(key, None)
            while self._items and self.used_mb * 1024 * 1024 + size > self.limit_bytes:
                self._items.popitem(last=False)
            self._items[key] = embeddings
        return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class SliceEmbeddings:
    """Embeddings of one plane view for one preset; :meth:`get` encodes the slices not encoded yet."""

    def __init__(
        self,
        model: torch.nn.Module,
        volume: PlaneView,
        window: WindowLike,
        batcher: Batcher,
        stored: StoredEmbeddings,
        key: str,
    ) -> None:
        self.model = model
        self.volume = volume
        self.window = window
        self.batcher = batcher
        self.stored = stored
        self.key = key
        self.encoded_slices = 0

    def _encode(self, indices: List[int]) -> None:
        images = self.volume.model_inputs(indices, self.window)
        emb = self.model.encode_image(images).to("cpu", self.stored.tensor.dtype)  # type: ignore[operator]
        self.stored.tensor[torch.as_tensor(indices)] = emb
        if self.stored.images is not None:
            self.stored.images[torch.as_tensor(indices)] = images[:, : self.stored.images.shape[1]]
        self.stored.have[indices] = True
        self.encoded_slices += len(indices)

    def ensure(self, indices: Sequence[int]) -> None:
        """Encode the slices of ``indices`` that are not encoded yet (in batches of the batcher's size)."""
        missing = [int(k) for k in dict.fromkeys(indices) if not self.stored.have[int(k)]]
        size = max(1, self.batcher.batch_size)
        for start in range(0, len(missing), size):
            self._encode(missing[start : start + size])

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        """16-bit embeddings of slices ``indices`` (on the model's device; in the dtype the model decodes in when that
        is bfloat16, else float16, which the model converts once), encoding those not encoded yet."""
        self.ensure(indices)
        device = self.model.device  # type: ignore[attr-defined]
        return self.stored.tensor[list(indices)].to(device)

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        """(B, C, S, S) model inputs of slices ``indices`` (kept from their encoding when the store keeps them)."""
        if self.stored.images is None:
            return self.volume.model_inputs(list(indices), self.window)
        self.ensure(indices)
        kept = self.stored.images[list(indices)]
        channels = self.model.config.in_chans  # type: ignore[attr-defined]
        return kept if kept.shape[1] == channels else kept.expand(-1, channels, -1, -1).contiguous()


class ReversedEmbeddings:
    """The embeddings of a plane view read last slice first: a left-right mirrored volume's sagittal slices are the
    volume's own in reverse order (:meth:`PreparedVolume.mirrored`), so they need no encoding of their own."""

    def __init__(self, inner: SliceEmbeddings) -> None:
        self.inner = inner
        self.last = int(inner.stored.have.size) - 1

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        return self.inner.get([self.last - int(k) for k in indices])

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        return self.inner.images([self.last - int(k) for k in indices])


class EmbeddingStore:
    """Gives :class:`SliceEmbeddings` for (plane view, model, preset); each slice is encoded once."""

    def __init__(self, cache: EmbeddingCache, batcher: Batcher) -> None:
        self.cache = cache
        self.batcher = batcher
        self._model_id: Optional[Tuple[int, str]] = None

    def begin(self, model: torch.nn.Module) -> None:
        """Fix the model identity for the calls of one segment/refine (weights may change between calls)."""
        self._model_id = (id(model), model_identity(model))

    def key(self, model: torch.nn.Module, volume: PlaneView, window: WindowLike) -> str:
        if self._model_id is None or self._model_id[0] != id(model):
            self.begin(model)
        dtype = str(storage_dtype(model)).replace("torch.", "")
        return f"{volume.content_hash}|{self._model_id[1]}|{volume.window_key(window)}|{dtype}"  # type: ignore[index]

    def embeddings(
        self, model: torch.nn.Module, volume: PlaneView, window: WindowLike, use_cache: bool = True
    ) -> SliceEmbeddings:
        """The plane view's embeddings: the cached ones (partly encoded) or a new store, cached when it fits."""
        key = self.key(model, volume, window)
        stored = self.cache.get(key) if use_cache else None
        if stored is None:
            cfg = model.config  # type: ignore[attr-defined]
            # the model inputs are kept for a decoder that reads them; one channel unless slices have context
            image_shape = (3 if cfg.slice_context else 1, cfg.image_size, cfg.image_size)
            shape = (cfg.embed_dim, cfg.embedding_size, cfg.embedding_size)
            images = image_shape if cfg.detail_channels else None
            stored = StoredEmbeddings(volume.num_slices, shape, images, storage_dtype(model))
            if use_cache and not self.cache.put(key, stored):
                log.warning(
                    "slice embeddings of this volume's %s slices need %.1f MB, more than the cache limit of %.1f MB: "
                    "they are kept for this call only and later prompts or refinements encode again what they need; "
                    "raise cache_limit_mb to keep them",
                    volume.plane,
                    stored.nbytes / (1024 * 1024),
                    self.cache.limit_bytes / (1024 * 1024),
                )
        return SliceEmbeddings(model, volume, window, self.batcher, stored, key)  # type: ignore[arg-type]

    lazy = embeddings  # refinements use the same embeddings


def plane_embeddings(
    store: EmbeddingStore,
    model: torch.nn.Module,
    volume: PreparedVolume,
    planes: Sequence[str],
    window: WindowLike,
    use_cache: bool,
    groups: Dict[Tuple[str, str, str], Any],
    mirror_of: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """{plane: embeddings} of ``volume`` in ``window``, kept in ``groups`` for the prompts of one call. With
    ``mirror_of`` (the embeddings of the volume that ``volume`` mirrors, :meth:`PreparedVolume.mirrored`), the
    sagittal plane reads those in reverse order instead of encoding its own (a mirror's sagittal slices are the same
    pixels)."""
    out = {}
    for plane in planes:
        view = volume.view(plane)
        key = (view.content_hash, plane, view.window_key(window))
        if key not in groups:
            if mirror_of is not None and plane == "sagittal":
                groups[key] = ReversedEmbeddings(mirror_of[plane])
            else:
                groups[key] = store.embeddings(model, view, window, use_cache)
        out[plane] = groups[key]
    return out
