"""The public model API: resolve, download, import, verify, remove and list models.

``resolve_model`` is what the engine, the Slicer module and the CLI call to turn what the user named (a folder,
a catalog id, a bare name, or nothing) into the folder of a verified bundle, downloading it only when needed.
"""

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Union
from urllib.parse import urlsplit
from urllib.request import url2pathname

from .archive import find_bundle_root, safe_unpack
from .cache import (
    INSTALL_FILE,
    ModelLock,
    check_model_id,
    installed_ids,
    model_dir,
    read_install_record,
    work_dir,
    work_temp_dir,
)
from .catalog import Catalog, CatalogEntry, archive_format, id_from_card, load_catalog, parse_id
from .download import CancelFn, DownloadOptions, ProgressFn, fetch
from .errors import CatalogError, DownloadCancelled, DownloadError, VerificationError
from .install import (
    card_matches_entry,
    check_compatible,
    check_folder,
    forget_verified,
    install_archive,
    install_folder,
    quick_problem,
    sha256_of,
    uninstall,
    verify_embedded,
    verify_installed,
)

log = logging.getLogger(__name__)
PathLike = Union[str, Path]


def _catalog(catalog: Optional[Catalog]) -> Catalog:
    return catalog if catalog is not None else load_catalog()


def _local_path(text: str) -> Optional[Path]:
    """A filesystem path if ``text`` names one (``file://`` URL, path with a separator, or an existing path)."""
    if text.startswith("file:"):
        parts = urlsplit(text)
        share = f"//{parts.netloc}" if parts.netloc and parts.netloc != "localhost" else ""  # UNC file://host/share
        return Path(url2pathname(share + parts.path))
    if re.match(r"^[a-z][a-z0-9+.-]*://", text, re.I):
        return None
    if os.sep in text or "/" in text or text.startswith(("~", ".")) or Path(text).exists():
        return Path(text).expanduser()
    return None


def _entry_for(model_id: str, catalog: Catalog) -> CatalogEntry:
    entry = catalog.get(model_id)
    if entry is None and parse_id(model_id) is None:
        entry = catalog.newest(model_id)
    if entry is None:
        known = ", ".join(e.id for e in catalog.entries) or "none"
        raise CatalogError(f"'{model_id}' is not in the model catalog {catalog.path} (known: {known})")
    return entry


def _partial_path(entry: CatalogEntry) -> Path:
    suffix = ".tar.gz" if entry.archive == "tar.gz" else ".zip"
    return work_dir(".partial") / f"{entry.id}-{entry.sha256[:16]}{suffix}.part"


def _installed_ok(entry: CatalogEntry) -> Optional[Path]:
    try:
        return verify_installed(entry.id, entry)
    except VerificationError as exc:
        if model_dir(entry.id).exists():
            log.warning("%s; it will be downloaded again", exc)
        return None


def download_model(
    model_id: str,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelFn] = None,
    catalog: Optional[Catalog] = None,
    options: Optional[DownloadOptions] = None,
    force: bool = False,
) -> Path:
    """Make catalog model ``model_id`` (an id or a bare name) available in the cache; returns its folder.

    Nothing is fetched when a verified copy is there (unless ``force``). Otherwise the archive is streamed to
    ``.partial/`` (``progress(done, total_or_None)``, ``cancel()``), checked for size and SHA-256, unpacked safely,
    checked as a bundle and renamed into place. On any failure the installed models are exactly as before; after a
    network failure the partial file stays so the next call resumes, after a cancel or a bad file it is deleted.

    Example:
        >>> download_model("tiny-v1.0.0")  # doctest: +SKIP
        PosixPath('/home/me/.cache/TextSegment/models/tiny-v1.0.0')
    """
    check_model_id(model_id)
    catalog = _catalog(catalog)
    entry = _entry_for(model_id, catalog)
    if entry.embedded:
        return verify_embedded(entry)
    check_compatible(entry)
    waiting = lambda: log.warning("another process is downloading '%s'; waiting for it", entry.id)  # noqa: E731
    with ModelLock(entry.id, cancel=cancel, on_wait=waiting):
        if not force:
            found = _installed_ok(entry)
            if found is not None:
                return found
        return _download_locked(entry, progress, cancel, options)


def _download_locked(
    entry: CatalogEntry, progress: Optional[ProgressFn], cancel: Optional[CancelFn], options: Optional[DownloadOptions]
) -> Path:
    part = _partial_path(entry)
    for stale in part.parent.glob(f"{entry.id}-*.part"):
        if stale != part:
            stale.unlink()  # a partial file of an older build of this id
    for attempt in (1, 2):
        resumed = part.exists() and part.stat().st_size > 0
        try:
            fetch(entry.urls, part, entry.size, progress, cancel, options)
        except DownloadCancelled:
            _unlink(part)
            raise
        size = part.stat().st_size
        digest = sha256_of(part)
        if size == entry.size and digest == entry.sha256:
            break
        _unlink(part)
        if resumed and attempt == 1:
            log.warning("the resumed download of '%s' does not verify; downloading it again from the start", entry.id)
            continue
        raise DownloadError(
            f"the downloaded file for '{entry.id}' is not the one in the catalog (size {size}, expected {entry.size}; "
            f"SHA-256 {digest}, expected {entry.sha256}); it was deleted and the installed models were not changed"
        )
    try:
        return install_archive(part, entry.id, entry.sha256, entry=entry, source=entry.urls[0])
    finally:
        _unlink(part)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _installed_fallback(entry: CatalogEntry, catalog: Catalog) -> Optional[Path]:
    """An older installed, non-deprecated version of the same name, verified (used when a download fails)."""
    older = [e for e in catalog.entries if e.name == entry.name and not e.deprecated and e.version < entry.version]
    for candidate in sorted(older, key=lambda e: e.version, reverse=True):
        found = verify_embedded(candidate) if candidate.embedded else _installed_ok(candidate)
        if found is not None:
            return found
    return None


def resolve_model(
    id_or_path: Optional[PathLike] = None,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelFn] = None,
    catalog: Optional[Catalog] = None,
    options: Optional[DownloadOptions] = None,
) -> Path:
    """The folder of a verified, loadable bundle for what the user named.

    ``id_or_path`` is a bundle folder (checked), an archive file or ``file://`` URL (imported), a catalog id
    (``name-v1.2.3``), a bare name (its newest non-deprecated version), an installed custom model id, or
    None/``"default"`` (the catalog's default). Embedded and cached verified models are used with no network
    access at all; other catalog models are downloaded. When the newest version of a bare name cannot be
    downloaded, an older installed version is used with a warning.

    Example:
        >>> from TextSegmentLib.checkpoint import load_bundle
        >>> model = load_bundle(resolve_model("default"))  # doctest: +SKIP
    """
    text = str(id_or_path) if id_or_path is not None else "default"
    local = _local_path(text) if isinstance(id_or_path, str) else Path(text) if id_or_path is not None else None
    if local is not None:
        if local.is_dir():
            check_folder(local)
            return local
        if local.is_file():
            return import_model(local, catalog=catalog)
        raise CatalogError(f"model path {local} does not exist")
    try:
        catalog = _catalog(catalog)
    except CatalogError:
        if text in installed_ids():  # an installed model stays usable when the catalog file is broken or missing
            return verify_installed(text)
        raise
    bare = text == "default" or parse_id(text) is None
    if text == "default":
        default = catalog.default_id()
        if default is None:
            raise CatalogError(f"the model catalog {catalog.path} names no default model; give a model id or folder")
        text = default
    entry = catalog.get(text) or (catalog.newest(text) if parse_id(text) is None else None)
    if entry is None:
        if text in installed_ids():
            return verify_installed(text)
        versions = [e.id for e in catalog.entries if e.name == text]
        if versions:
            raise CatalogError(
                f"every version of '{text}' is deprecated ({', '.join(versions)}); ask for one by its id"
            )
        _entry_for(text, catalog)  # raises the unknown-model error with the known ids
        raise CatalogError(f"'{text}' is not in the model catalog")
    if entry.embedded:
        return verify_embedded(entry)
    found = _installed_ok(entry)
    if found is not None:
        return found
    try:
        return download_model(entry.id, progress=progress, cancel=cancel, catalog=catalog, options=options)
    except DownloadCancelled:
        raise
    except DownloadError as exc:
        fallback = _installed_fallback(entry, catalog) if bare else None
        if fallback is None:
            raise
        log.warning("%s; using the installed older model %s instead", exc, fallback.name)
        return fallback


def import_model(path_or_file_url: PathLike, model_id: Optional[str] = None, catalog: Optional[Catalog] = None) -> Path:
    """Install a model from a local archive (``.zip``/``.tar.gz``), a bundle folder or a ``file://`` URL.

    The file is matched to a catalog entry by ``model_id`` or by its SHA-256 and then must match it exactly;
    a file that matches no entry is installed as a custom model (id ``<name>-v<version>`` from its card, or
    ``model_id``) once its bundle checks pass. Returns the installed folder.

    Example:
        >>> import_model("/media/usb/ct-organs-v1.0.0.zip")  # doctest: +SKIP
        PosixPath('/home/me/.cache/TextSegment/models/ct-organs-v1.0.0')
    """
    source = _local_path(str(path_or_file_url)) if isinstance(path_or_file_url, str) else Path(path_or_file_url)
    if source is None or not source.exists():
        raise CatalogError(f"{path_or_file_url} is not a local file or folder (give a path or a file:// URL)")
    catalog = _catalog(catalog)
    if model_id is not None and parse_id(model_id) is None:  # an id is a name, never a path
        raise CatalogError(f"model id {model_id!r} is not of the form <name>-v<major>.<minor>.<patch>")
    entry = catalog.get(model_id) if model_id else None
    if source.is_dir():
        digest = sha256_of(source / "model.safetensors") if (source / "model.safetensors").is_file() else ""
        if entry is None and model_id is None and digest:
            entry = catalog.find_by_sha256(digest)  # a folder named by no id: is it a catalog model?
        card = check_folder(source)
        if entry is not None:
            expected = entry.sha256 if entry.embedded else entry.weights_sha256
            if expected is None:
                raise VerificationError(
                    f"catalog entry '{entry.id}' lists no weights_sha256, so a folder cannot be checked against it; "
                    "import the archive file instead"
                )
            differs = "the weights' SHA-256 differs" if digest != expected else card_matches_entry(card, source, entry)
            if differs:
                raise VerificationError(
                    f"{source} is not catalog model '{entry.id}': {differs}; nothing was installed. To install it "
                    "as a custom model, give it its own id (--id <name>-v<version>)"
                )
        return _install(
            entry, model_id or id_from_card(card), catalog, lambda mid: install_folder(source, mid, entry, str(source))
        )
    if archive_format(source.name) is None and (entry is None or entry.archive is None):
        raise CatalogError(f"{source} is neither a model folder nor a .zip / .tar.gz archive")
    digest = sha256_of(source)
    entry = entry or catalog.find_by_sha256(digest)
    if entry is not None and (digest != entry.sha256 or source.stat().st_size != entry.size):
        raise VerificationError(
            f"{source} is not catalog model '{entry.id}' (SHA-256 {digest}, expected {entry.sha256}); "
            "nothing was installed"
        )
    if entry is not None or model_id:
        return _install(
            entry, model_id or "", catalog, lambda mid: install_archive(source, mid, digest, entry, str(source))
        )
    # a custom archive: unpack once to learn its id from the card, then install that folder under the lock
    staging = work_temp_dir("import.")
    try:
        root = find_bundle_root(safe_unpack(source, staging / "unpacked"))
        card = check_folder(root)
        return _install(None, id_from_card(card), catalog, lambda mid: install_folder(root, mid, None, str(source)))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _install(entry: Optional[CatalogEntry], model_id: str, catalog: Catalog, do_install: Callable[[str], Path]) -> Path:
    if entry is not None:
        check_compatible(entry)
        model_id = entry.id
    elif catalog.get(model_id) is not None:
        raise VerificationError(
            f"the model would be installed as '{model_id}', a catalog id, but it does not match that catalog entry; "
            "give another model id to install it as a custom model"
        )
    with ModelLock(model_id):
        return do_install(model_id)


def verify_model(model_id: str, catalog: Optional[Catalog] = None, raise_error: bool = True) -> bool:
    """Check an installed (or embedded) model against the catalog and as a bundle, with no network access.

    Returns True; on a problem raises :class:`VerificationError` (or returns False with ``raise_error=False``).

    Example:
        >>> verify_model("tiny-v1.0.0", raise_error=False)  # doctest: +SKIP
        True
    """
    check_model_id(model_id)
    catalog = _catalog(catalog)
    entry = catalog.get(model_id)
    forget_verified()  # an explicit check always hashes the files again
    try:
        if entry is not None and entry.embedded and not model_dir(model_id).exists():
            verify_embedded(entry)
        else:
            verify_installed(model_id, entry)
        return True
    except CatalogError:
        if raise_error:
            raise
        return False


def remove_model(model_id: str, catalog: Optional[Catalog] = None) -> bool:
    """Delete an installed model (and any partial download of it); False when it was not installed.

    Embedded models are part of the extension and cannot be removed.

    Example:
        >>> remove_model("tiny-v1.0.0")  # doctest: +SKIP
        True
    """
    check_model_id(model_id)
    catalog = _catalog(catalog)
    entry = catalog.get(model_id)
    if entry is not None and entry.embedded and not model_dir(model_id).exists():
        raise CatalogError(f"model '{model_id}' is embedded in the TextSegment extension and cannot be removed")
    folder = model_dir(model_id)
    if os.path.lexists(folder) and model_id not in installed_ids():
        raise CatalogError(
            f"{folder} was not installed by TextSegment (it has no install record {INSTALL_FILE}, and `models list` "
            "does not show it); nothing was removed. Delete it yourself if it is yours to delete"
        )
    partial = list(work_dir(".partial").glob(f"{model_id}-*.part"))
    if not folder.exists() and not partial:
        return False  # nothing to remove: no lock file is created for it
    with ModelLock(model_id):
        for part in work_dir(".partial").glob(f"{model_id}-*.part"):
            _unlink(part)
        if os.path.lexists(folder) and (folder.is_symlink() or model_id not in installed_ids()):
            raise CatalogError(f"{folder} is not a model folder TextSegment installed; nothing was removed")
        return uninstall(model_id)


@dataclass
class ModelStatus:
    """One line of :func:`list_models`: a catalog entry or a custom installed model."""

    id: str
    title: str
    installed: bool
    embedded: bool
    size: Optional[int]
    default: bool
    deprecated: bool
    in_catalog: bool
    path: Optional[Path]
    broken: Optional[str] = None  # what is wrong with an installed copy (then ``installed`` is False)
    downloadable: bool = False  # the catalog lists URLs for it

    @property
    def offered(self) -> bool:
        """Whether a model list should offer it: usable now, or a current (not deprecated) version to download.

        Example:
            >>> ModelStatus("a-v1.0.0", "a", False, False, 1, False, True, True, None, downloadable=True).offered
            False
        """
        return self.installed or (self.downloadable and not self.deprecated)


def list_models(catalog: Optional[Catalog] = None) -> List[ModelStatus]:
    """Catalog entries then custom installed models, with install state; fast (no hashing, no network).

    Example:
        >>> [m.id for m in list_models() if m.default]  # doctest: +SKIP
        ['ct-organs-v1.0.0']
    """
    catalog = _catalog(catalog)
    default = catalog.default_id()
    installed = installed_ids()
    out: List[ModelStatus] = []
    for e in catalog.entries:
        cached = e.id in installed
        broken = quick_problem(e.id, e) if cached else None
        embedded = bool(e.embedded and e.embedded_path is not None and e.embedded_path.is_dir())
        path = model_dir(e.id) if cached else (e.embedded_path if embedded else None)
        usable = (cached and broken is None) or embedded
        out.append(
            ModelStatus(
                e.id,
                e.title,
                usable,
                bool(e.embedded),
                e.size,
                e.id == default,
                e.deprecated,
                True,
                path,
                broken,
                bool(e.urls),
            )
        )
    for model_id in installed:
        if catalog.get(model_id) is None:
            folder = model_dir(model_id)
            broken = quick_problem(model_id)
            record = read_install_record(folder) or {}
            weights = folder / "model.safetensors"
            size = weights.stat().st_size if weights.is_file() else None
            title = f"custom model from {record.get('source') or 'an import'}"
            out.append(ModelStatus(model_id, title, broken is None, False, size, False, False, False, folder, broken))
    return out
