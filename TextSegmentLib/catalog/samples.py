"""Sample data listed by a catalog entry (``sample_data``): downloaded once, verified, kept in the cache."""

import os
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

from .cache import ModelLock, cache_dir
from .catalog import Catalog, load_catalog
from .download import CancelFn, DownloadOptions, ProgressFn, fetch
from .errors import CatalogError, DownloadCancelled, DownloadError
from .install import sha256_of


def download_sample(
    model_id: str,
    name: Optional[str] = None,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelFn] = None,
    catalog: Optional[Catalog] = None,
    options: Optional[DownloadOptions] = None,
) -> Path:
    """The local file of sample ``name`` (default: the first) of catalog model ``model_id``, downloaded if needed.

    The file is checked against the entry's SHA-256 and size; a cached copy that verifies is used without network.

    Example:
        >>> download_sample("ct-organs-v1.0.0")  # doctest: +SKIP
        PosixPath('/home/me/.cache/TextSegment/models/samples/abdomen-ct/abdomen-ct.nii.gz')
    """
    catalog = catalog if catalog is not None else load_catalog()
    entry = catalog.get(model_id) or catalog.newest(model_id)
    if entry is None:
        raise CatalogError(f"'{model_id}' is not in the model catalog")
    samples = [s for s in entry.sample_data if name is None or s.get("name") == name]
    if not samples:
        listed = ", ".join(str(s.get("name")) for s in entry.sample_data) or "none"
        raise CatalogError(f"model '{entry.id}' lists no sample data named {name!r} (listed: {listed})")
    sample = samples[0]
    sample_name = str(sample["name"])
    if "/" in sample_name or "\\" in sample_name or sample_name.startswith("."):
        raise CatalogError(f"sample name {sample_name!r} must be a plain name")
    filename = os.path.basename(unquote(urlsplit(sample["url"]).path)) or sample_name
    target = cache_dir() / "samples" / sample_name / filename
    if target.is_file() and target.stat().st_size == sample["size"] and sha256_of(target) == sample["sha256"]:
        return target
    with ModelLock(f"sample-{sample_name}", cancel=cancel):
        part = target.with_name(f".{filename}.part")
        try:
            fetch([sample["url"]], part, sample["size"], progress, cancel, options)
        except DownloadCancelled:
            if part.exists():
                part.unlink()
            raise
        if part.stat().st_size != sample["size"] or sha256_of(part) != sample["sha256"]:
            part.unlink()
            raise DownloadError(f"sample '{sample_name}' does not match the SHA-256 and size in the catalog")
        os.replace(part, target)
    return target
