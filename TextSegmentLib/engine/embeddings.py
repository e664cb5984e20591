"""Slice embeddings: computed once per volume, model and intensity preset, stored in fp16 under a memory cap.

The cache key joins the volume's content hash (canonical slices, so any stored orientation of the same volume hits),
the model's identity (weights hash) and the intensity preset (CT window or MR percentiles). When one volume's
embeddings would exceed the cap they are not stored: a warning says so and the slices a later call needs
(a refinement, another prompt) are encoded again on demand.
"""

import hashlib
import logging
import threading
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch

from .batching import Batcher, CancelFn, ProgressFn
from .volume import PreparedVolume, WindowLike

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


class EmbeddingCache:
    """LRU cache of fp16 slice embeddings (CPU tensors) with a memory cap in MB.

    Example:
        >>> cache = EmbeddingCache(limit_mb=1)
        >>> cache.put("a", torch.zeros(2, 4, 8, 8, dtype=torch.float16))
        True
        >>> cache.get("a").shape, cache.used_mb < 1
        (torch.Size([2, 4, 8, 8]), True)
    """

    def __init__(self, limit_mb: float = 2048.0) -> None:
        self.limit_bytes = int(limit_mb * 1024 * 1024)
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def used_mb(self) -> float:
        return sum(t.numel() * t.element_size() for t in self._items.values()) / (1024 * 1024)

    def get(self, key: str) -> Optional[torch.Tensor]:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: str, embeddings: torch.Tensor) -> bool:
        """Store (evicting least recently used entries); False when it alone exceeds the cap."""
        size = embeddings.numel() * embeddings.element_size()
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


def estimate_mb(model: torch.nn.Module, num_slices: int) -> float:
    """fp16 size of one volume's slice embeddings in MB."""
    cfg = model.config  # type: ignore[attr-defined]
    return num_slices * cfg.embed_dim * cfg.embedding_size**2 * 2 / (1024 * 1024)


class SliceEmbeddings:
    """Embeddings of one volume for one preset: all slices in fp16, or encoded on demand when over the cap."""

    def __init__(
        self,
        model: torch.nn.Module,
        volume: PreparedVolume,
        window: WindowLike,
        batcher: Batcher,
        stored: Optional[torch.Tensor],
        key: str,
    ) -> None:
        self.model = model
        self.volume = volume
        self.window = window
        self.batcher = batcher
        self.stored = stored
        self.key = key
        self.encoded_slices = 0

    def _encode(self, indices: List[int]) -> List[torch.Tensor]:
        images = self.volume.model_inputs(indices, self.window)
        emb = self.model.encode_image(images).to("cpu", torch.float16)  # type: ignore[operator]
        self.encoded_slices += len(indices)
        return list(emb)

    def encode_all(self, progress: ProgressFn, cancel: CancelFn, start: float, span: float) -> torch.Tensor:
        items = list(range(self.volume.num_slices))
        parts = self.batcher.run(self._encode, items, progress, cancel, "encoding slices", start, span)
        return torch.stack(parts)

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        """fp32 embeddings of slices ``indices`` (on the model's device)."""
        device = self.model.device  # type: ignore[attr-defined]
        if self.stored is not None:
            return self.stored[list(indices)].to(device, torch.float32)
        return torch.stack(self._encode(list(indices))).to(device, torch.float32)


class EmbeddingStore:
    """Gives :class:`SliceEmbeddings` for (volume, model, preset), encoding each combination once."""

    def __init__(self, cache: EmbeddingCache, batcher: Batcher) -> None:
        self.cache = cache
        self.batcher = batcher
        self._model_id: Optional[Tuple[int, str]] = None

    def begin(self, model: torch.nn.Module) -> None:
        """Fix the model identity for the calls of one segment/refine (weights may change between calls)."""
        self._model_id = (id(model), model_identity(model))

    def key(self, model: torch.nn.Module, volume: PreparedVolume, window: WindowLike) -> str:
        if self._model_id is None or self._model_id[0] != id(model):
            self.begin(model)
        return f"{volume.content_hash}|{self._model_id[1]}|{volume.window_key(window)}"  # type: ignore[index]

    def lazy(self, model: torch.nn.Module, volume: PreparedVolume, window: WindowLike) -> SliceEmbeddings:
        """Cached embeddings if present, else embeddings encoded slice by slice on demand (for refinements)."""
        key = self.key(model, volume, window)
        return SliceEmbeddings(model, volume, window, self.batcher, self.cache.get(key), key)

    def embeddings(
        self,
        model: torch.nn.Module,
        volume: PreparedVolume,
        window: WindowLike,
        progress: ProgressFn = None,
        cancel: CancelFn = None,
        start: float = 0.0,
        span: float = 1.0,
        use_cache: bool = True,
    ) -> SliceEmbeddings:
        key = self.key(model, volume, window)
        stored = self.cache.get(key) if use_cache else None
        emb = SliceEmbeddings(model, volume, window, self.batcher, stored, key)
        if stored is not None:
            if progress is not None:
                progress(start + span, "slice embeddings from cache")
            return emb
        full = emb.encode_all(progress, cancel, start, span)
        if not use_cache:
            emb.stored = full
        elif self.cache.put(key, full):
            emb.stored = full
        else:
            mb = full.numel() * 2 / (1024 * 1024)
            log.warning(
                "slice embeddings of this volume need %.1f MB, more than the cache limit of %.1f MB: they are used "
                "for this call only and slices are encoded again for later prompts or refinements; raise "
                "cache_limit_mb to keep them",
                mb,
                self.cache.limit_bytes / (1024 * 1024),
            )
            emb.stored = full
        return emb
