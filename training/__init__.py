"""Training pipeline of TextSegment: prepare -> train -> evaluate -> export (see training/README.md)."""
