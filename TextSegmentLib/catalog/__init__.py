"""Model catalog, cache and verified downloads.

``resolve_model`` turns what the user named into the folder of a verified, loadable bundle::

    >>> from TextSegmentLib.catalog import cache_dir, load_catalog
    >>> catalog = load_catalog()
    >>> isinstance(catalog.entries, list)
    True

See docs/models.md for the catalog format, the cache and offline installation.
"""

from .cache import HOME_ENV, ModelLock, cache_dir, check_model_id, installed_ids, model_dir
from .catalog import CATALOG_ENV, Catalog, CatalogEntry, default_catalog_path, load_catalog, parse_id
from .download import DownloadOptions, fetch
from .errors import (
    CatalogError,
    DownloadCancelled,
    DownloadError,
    ModelIncompatible,
    UnsafeArchive,
    VerificationError,
)
from .models import (
    ModelStatus,
    download_model,
    import_model,
    list_models,
    remove_model,
    resolve_model,
    verify_model,
)
from .samples import download_sample

__all__ = [
    "CATALOG_ENV",
    "HOME_ENV",
    "Catalog",
    "CatalogEntry",
    "CatalogError",
    "DownloadCancelled",
    "DownloadError",
    "DownloadOptions",
    "ModelIncompatible",
    "ModelLock",
    "ModelStatus",
    "UnsafeArchive",
    "VerificationError",
    "cache_dir",
    "check_model_id",
    "default_catalog_path",
    "download_model",
    "download_sample",
    "fetch",
    "import_model",
    "installed_ids",
    "list_models",
    "load_catalog",
    "model_dir",
    "parse_id",
    "remove_model",
    "resolve_model",
    "verify_model",
]
