"""TextSegmentLib: the engine of the TextSegment 3D Slicer extension (no Qt, no Slicer needed).

Text-prompted segmentation of CT and MRI volumes with a light 2D promptable model (LangMedSAM design):
type "left hippocampus", get a 3D segment; fix it with a box or +/- points.

Example:
    >>> import TextSegmentLib
    >>> TextSegmentLib.__version__
    '0.1.0'
"""

__version__ = "0.1.0"
