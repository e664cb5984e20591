"""Volume nodes as the engine's input: voxels and geometry read from MRML on the calling thread, the engine's
``VolumeInput`` made on the worker (it imports the engine, SimpleITK and torch), and the check that a result still
fits its volume."""

from typing import Any, Optional

from . import bridge


class VolumeSource:
    """A volume's voxels and LPS geometry as read from MRML; :meth:`volume` builds the engine's input (on the
    worker: it imports the engine, SimpleITK and torch) once."""

    def __init__(self, array: Any, spacing: Any, origin: Any, direction: Any, meta: Optional[dict]) -> None:
        self.array, self.spacing, self.origin, self.direction, self.meta = array, spacing, origin, direction, meta
        self._volume: Any = None

    def volume(self) -> Any:
        if self._volume is None:
            from ..engine import VolumeInput  # noqa: PLC0415

            self._volume = VolumeInput(self.array, self.spacing, self.origin, self.direction, self.meta)
        return self._volume


def check_grid(volumeNode: Any, result: Any) -> None:
    """Refuse to write a result computed on another grid (the volume changed while it was being segmented)."""
    dims = tuple(volumeNode.GetImageData().GetDimensions())
    if tuple(result.volume.image.GetSize()) != dims:
        raise bridge.BridgeError(
            f"volume '{volumeNode.GetName()}' changed (now {dims}) since it was segmented; segment it again"
        )
