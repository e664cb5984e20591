"""One session per segmentation node: the engine result behind it, which segment holds which prompt, and its undo.

The registry is per MRML scene and shared by everything that works on that scene: the TextSegment module's logic,
the Segment Editor effect "Text prompt" and the Python console (:func:`registry_for`). A new logic object therefore
finds the cached result (and the slice embeddings the engine keeps for it) of a segmentation made by another one.

Example:
    >>> registry = SessionRegistry()
    >>> registry.get(None) is None
    True
"""

import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

#: undo steps kept per segmentation node (each may hold segment copies, voxel changes and an engine result)
MAX_UNDO = 10


@dataclass
class VoxelChange:
    """What a refinement changed in one segment: flat voxel indices on the volume's grid and their previous values."""

    segment_id: str
    shape: Tuple[int, int, int]
    indices: np.ndarray  # int64 flat indices into a (k, j, i) array of ``shape``
    previous: np.ndarray  # bool, the values before the refinement

    @classmethod
    def between(cls, segment_id: str, before: np.ndarray, after: np.ndarray) -> "VoxelChange":
        """The voxels where ``after`` differs from ``before`` (both (k, j, i) masks of one shape)."""
        before, after = np.asarray(before, bool), np.asarray(after, bool)
        indices = np.flatnonzero(before != after)
        return cls(segment_id, tuple(before.shape), indices, before.reshape(-1)[indices].copy())

    def apply(self, mask: np.ndarray, undo: bool = True) -> np.ndarray:
        """``mask`` with the change undone (``undo``) or redone; a copy, ``mask`` is not modified."""
        if tuple(mask.shape) != self.shape:
            raise ValueError(f"the segment's grid changed ({mask.shape} instead of {self.shape}); cannot undo")
        out = np.array(mask, dtype=bool, copy=True)
        flat = out.reshape(-1)
        flat[self.indices] = self.previous if undo else ~self.previous
        return out

    @property
    def count(self) -> int:
        return int(self.indices.size)


@dataclass
class UndoStep:
    """One undoable call. ``segments``: (segment id, previous vtkSegment or None, index) per replaced segment (a
    Segment call); ``voxels``: the voxels a refinement changed; ``session``: for a Segment call, the node's session
    before it."""

    kind: str  # "segment" or "refine"
    segments: List[Tuple[str, Any, int]] = field(default_factory=list)
    session: Optional["Session"] = None
    voxels: Optional[VoxelChange] = None
    result: Any = None  # for "refine": the engine result that was refined (its engine state is undone too)


@dataclass
class Session:
    """The engine result behind a segmentation node, and which segment holds which prompt.

    ``result``/``segment_ids``: the last text run of the module (prompt index -> segment id); ``extra``: segments
    made by earlier runs or by the Segment Editor effect, segment id -> (their engine result, prompt index); every
    segment in either stays refinable."""

    volume_id: str
    result: Any
    segment_ids: Dict[int, str]
    undo: List[UndoStep] = field(default_factory=list)
    extra: Dict[str, Tuple[Any, int]] = field(default_factory=dict)
    #: segment id -> its content when a refinement started (what the refinement's change is measured against)
    pending: Dict[str, np.ndarray] = field(default_factory=dict)

    def prompt_index(self, segment_id: str) -> Optional[int]:
        """The prompt index of the last run whose segment is ``segment_id`` (None: not made by that run)."""
        for index, sid in self.segment_ids.items():
            if sid == segment_id:
                return index
        return None

    def lookup(self, segment_id: str) -> Optional[Tuple[Any, int]]:
        """``(engine result, prompt index)`` behind ``segment_id`` (None: no text run made it); the newest wins (a
        segment re-made by the effect is in ``extra``)."""
        if segment_id in self.extra:
            return self.extra[segment_id]
        index = self.prompt_index(segment_id)
        return (self.result, index) if index is not None else None

    def carried_over(self) -> Dict[str, Tuple[Any, int]]:
        """Every segment of this session as ``extra`` entries (for the session of the next text run)."""
        out = {sid: (self.result, index) for index, sid in self.segment_ids.items()}
        out.update(self.extra)  # newer than the run's own
        return out

    def push(self, step: UndoStep) -> None:
        """Add an undo step, keeping the last :data:`MAX_UNDO` (older engine results are released with them)."""
        self.undo.append(step)
        del self.undo[:-MAX_UNDO]
        for old in self.undo:
            if old.session is not None:
                old.session.undo = []  # an old session's own history is never used again (it gets the current one)


class SessionRegistry:
    """Sessions by segmentation node id (one scene). Each session remembers its node: after the scene was closed a
    new node may get the same id, and then the old session is not its session (it is dropped on the next lookup)."""

    def __init__(self) -> None:
        self._sessions: Dict[str, Session] = {}
        self._nodes: Dict[str, Any] = {}

    def _live(self, node_id: str) -> bool:
        """Whether the session of ``node_id`` still belongs to the node of that id in its scene."""
        node = self._nodes.get(node_id)
        scene = node.GetScene() if node is not None else None
        if scene is not None and scene.GetNodeByID(node_id) is node:
            return True
        self._sessions.pop(node_id, None)
        self._nodes.pop(node_id, None)
        return False

    def get(self, segmentation_node: Any) -> Optional[Session]:
        """The node's session, or None (also for ``None``)."""
        if segmentation_node is None:
            return None
        node_id = segmentation_node.GetID()
        if node_id not in self._sessions or not self._live(node_id) or self._nodes[node_id] is not segmentation_node:
            return None
        return self._sessions[node_id]

    def set(self, segmentation_node: Any, session: Session) -> None:
        self._sessions[segmentation_node.GetID()] = session
        self._nodes[segmentation_node.GetID()] = segmentation_node

    def pop(self, segmentation_node: Any) -> Optional[Session]:
        if segmentation_node is None:
            return None
        self._nodes.pop(segmentation_node.GetID(), None)
        return self._sessions.pop(segmentation_node.GetID(), None)

    def clear(self) -> None:
        self._sessions.clear()
        self._nodes.clear()

    def __getitem__(self, node_id: str) -> Session:
        if node_id in self._sessions and not self._live(node_id):
            raise KeyError(node_id)
        return self._sessions[node_id]

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, str) and node_id in self._sessions and self._live(node_id)

    def __iter__(self) -> Iterator[str]:
        return iter([k for k in list(self._sessions) if self._live(k)])

    def __len__(self) -> int:
        return len(list(iter(self)))


_REGISTRIES: "weakref.WeakKeyDictionary[Any, SessionRegistry]" = weakref.WeakKeyDictionary()


def registry_for(scene: Any) -> SessionRegistry:
    """The registry shared by everything that works on ``scene`` (created on first use, gone with the scene). A
    session whose node left the scene (closed, or replaced by a new node with the same id) is not returned. No scene
    observer is used: a Python callback run while VTK destroys a scene during garbage collection crashed the
    interpreter."""
    registry = _REGISTRIES.get(scene)
    if registry is None:
        registry = _REGISTRIES[scene] = SessionRegistry()
    return registry
