"""Parts of the TextSegment module's widget (Qt and the Slicer application only; nothing here runs without them).

The module folder holds four things:

- ``TextSegment.py``: the scripted module (Slicer loads every top-level ``.py`` of a module folder as a module, so
  there is only this one);
- ``TextSegmentWidgets/`` (this package): the widget's panels, each given the logic and callbacks it needs
  (``PromptsPanel``, ``RefineTools``, ``ModelPanel``, ``BackgroundPreparer``), the dependency dialog, the self-test
  flow;
- ``TextSegmentEffect/``: the Segment Editor effect "Text prompt" (registered by the module at startup);
- ``TextSegmentLib/``: the engine and the MRML logic (``TextSegmentLib/slicer/``), without Qt, shared with the Python
  console and the command line. A built extension has it next to this package; a source checkout has it one folder
  up (repository root).

Slicer puts the module folder on ``sys.path``, so ``import TextSegmentWidgets`` needs nothing else.
"""
