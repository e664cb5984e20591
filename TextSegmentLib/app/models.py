"""Model resolution, in one place: what the user named (a catalog id, a name, "default", an archive, a bundle folder,
or a loaded model) -> a verified bundle folder -> a :class:`~TextSegmentLib.engine.Segmenter`.

The command line, the Slicer logic and the Slicer module's model panel all call :func:`resolve_bundle`; the engine
itself only ever sees a bundle folder or a loaded model.

Example:
    >>> segmenter = open_segmenter("default", device="cpu")  # doctest: +SKIP
    >>> segmenter.segment("T1.nii.gz", ["brain"]).segments[0].found  # doctest: +SKIP
    True
"""

from pathlib import Path
from typing import Any, Optional, Union

from ..progress import CancelFn, ProgressFn

ModelLike = Union[str, Path, Any]


def resolve_bundle(
    model: Optional[Union[str, Path]] = "default",
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    catalog: Any = None,
) -> Path:
    """The folder of a verified bundle for ``model``: ``None``/"default", a catalog id ``name-v1.2.3``, a bare name
    (its newest version), an installed custom id, an archive or ``file://`` URL (imported), or a bundle folder.

    Uses embedded or cached models with no network; downloads others, reporting ``progress(fraction, message)`` and
    stopping with :class:`~TextSegmentLib.progress.Cancelled` when ``cancel()`` is true. Raises the catalog's
    ``CatalogError`` (unknown or invalid id), ``VerificationError`` or ``DownloadError``.
    """
    from ..catalog import resolve_model

    label = str(model) if model is not None else "default"

    def on_bytes(done: int, total: Optional[int]) -> None:
        if progress is not None:
            fraction = min(1.0, done / total) if total else 0.0
            progress(fraction, f"downloading model {label}: {done / 1e6:.1f} MB")

    return Path(resolve_model(model, progress=on_bytes, cancel=cancel, catalog=catalog))


def open_segmenter(
    model: ModelLike = "default",
    device: str = "auto",
    batch_size: int = 16,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    **options: Any,
) -> Any:
    """A :class:`~TextSegmentLib.engine.Segmenter` for ``model`` (anything :func:`resolve_bundle` takes, or a loaded
    model), loaded once. ``options`` go to the Segmenter (``cache_limit_mb``)."""
    import torch

    from ..engine import Segmenter

    if not isinstance(model, torch.nn.Module):
        model = resolve_bundle(model, progress, cancel)
    return Segmenter(model, device=device, batch_size=batch_size, **options)
