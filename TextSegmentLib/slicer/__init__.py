"""Slicer-side code without Qt, shared by the TextSegment module, its Segment Editor effect and the Python console.

- :mod:`.bridge`: the only module importing ``slicer``/``vtk`` (lazily): volumes and segments <-> arrays, transforms;
- :mod:`.planes`: the plane of a view in the volume's own index frame (slice normals recorded in world coordinates);
- :mod:`.markups`: ROI / point lists -> the slice, box and +/- points of a refinement;
- :mod:`.edits`: a segment's current content in the node, written back slice-exactly, undo of exactly what changed;
- :mod:`.inputs`: volume nodes as the engine's input (voxels read here, the engine's input made on the worker);
- :mod:`.session`: one session per segmentation node (engine result, prompt -> segment, undo), one registry per scene;
- :mod:`.logic`: :class:`~.logic.TextSegmentLogic` (MRML on the calling thread, torch on the worker);
- :mod:`.effect_logic`: what the Segment Editor effect "Text prompt" does, without Qt;
- :mod:`.worker`: the one persistent worker thread that owns all torch work.

Nothing here imports ``slicer``, ``vtk``, ``qt``, torch, SimpleITK or scipy when it is imported.
"""
