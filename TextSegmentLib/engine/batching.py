"""Running work over slices in batches: progress, cooperative cancel, GPU out-of-memory back-off.

On a GPU out-of-memory error the batch is halved and retried; at batch size 1 the model moves to the CPU (with a
warning) and the work goes on there instead of failing.
"""

import logging
from typing import Callable, List, Optional, Sequence, TypeVar

import torch

from ..progress import CancelFn, Cancelled, ProgressFn, check_cancel

log = logging.getLogger(__name__)

__all__ = ["Batcher", "CancelFn", "Cancelled", "ProgressFn", "check_cancel", "is_oom"]
T = TypeVar("T")


def is_oom(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors."""
    if isinstance(exc, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class Batcher:
    """Batch size that shrinks on out-of-memory errors; shared by the calls of one Segmenter.

    Example:
        >>> b = Batcher(4)
        >>> b.run(lambda idx: [i * 2 for i in idx], list(range(6)), None, None, "x")
        [0, 2, 4, 6, 8, 10]
    """

    def __init__(self, batch_size: int, model: Optional[torch.nn.Module] = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.model = model

    def _fallback(self) -> bool:
        """Halve the batch or move the model to the CPU; False when nothing is left to try."""
        if self.batch_size > 1:
            self.batch_size = max(1, self.batch_size // 2)
            log.warning("out of GPU memory: retrying with batch size %d", self.batch_size)
        elif self.model is not None and next(self.model.parameters()).device.type != "cpu":
            log.warning("out of GPU memory at batch size 1: continuing on the CPU (slower)")
            self.model.to("cpu")
        else:
            return False
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return True

    def run(
        self,
        fn: Callable[[List[int]], List[T]],
        items: Sequence[int],
        progress: ProgressFn,
        cancel: CancelFn,
        message: str,
        start: float = 0.0,
        span: float = 1.0,
    ) -> List[T]:
        """``fn`` over ``items`` in batches; ``fn(batch) -> list`` of one result per item. Cancel is checked
        before each batch; progress goes from ``start`` to ``start + span``."""
        out: List[T] = []
        pos = 0
        n = len(items)
        while pos < n:
            check_cancel(cancel)
            batch = list(items[pos : pos + self.batch_size])
            try:
                with torch.no_grad():
                    res = fn(batch)
            except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if is_oom(exc) and self._fallback():
                    continue
                raise
            out.extend(res)
            pos += len(batch)
            if progress is not None:
                progress(min(1.0, start + span * pos / max(n, 1)), message)
        return out
