"""GUI helpers of the TextSegment module (Slicer only): dependency setup and widget parts."""
