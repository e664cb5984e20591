"""The package data of TextSegmentLib: the model catalog, its schema, the terminology and the embedded model.

Everything lives in this folder, so that a wheel, an editable install and the Slicer extension (which copies the
package next to its module) find the same files. The one place that names where embedded model bundles live is
:data:`EMBEDDED_MODELS_DIR`; ``training/build_default_model.sh`` copies a new default bundle there and lists it
in the catalog with ``python -m TextSegmentLib models publish <folder> --embedded --set-default``.

Example:
    >>> from TextSegmentLib import resources
    >>> resources.CATALOG_FILE.name, resources.CATALOG_FILE.is_file()
    ('models.json', True)
    >>> resources.EMBEDDED_MODELS_DIR.parent == resources.RESOURCES_DIR
    True
"""

from pathlib import Path

#: this folder (package data of ``TextSegmentLib``)
RESOURCES_DIR = Path(__file__).resolve().parent
#: the catalog of models that can be used (``embedded`` entries are relative to its folder)
CATALOG_FILE = RESOURCES_DIR / "models.json"
#: the JSON schema documenting every catalog field
CATALOG_SCHEMA_FILE = RESOURCES_DIR / "models.schema.json"
#: prompt names -> Slicer/DICOM terminology codes and colours
TERMINOLOGY_FILE = RESOURCES_DIR / "terminology.json"
#: where embedded model bundles (``<id>/model.json`` + ``model.safetensors``) live; only the default ships
EMBEDDED_MODELS_DIR = RESOURCES_DIR / "models"
